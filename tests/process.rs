//! The `run` process itself, without a cluster: what stops it before any controller starts.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_litellm-org-operator");

/// A second instance on a port already taken does not run unseen: it exits non-zero at
/// once, naming the address it could not serve on.
#[test]
fn run_exits_when_its_http_address_is_taken() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = Command::new(BIN)
        .current_dir(dir.path())
        .args(["run", "--http-addr", &addr])
        .env("DATABASE_URL", "postgres://user:secret@127.0.0.1:1/db")
        .env("KUBECONFIG", dir.path().join("no-kubeconfig"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the binary");
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            child.kill().ok();
            panic!("the process still runs 20 s after failing to bind {addr}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = child.wait_with_output().expect("output");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!status.success(), "{status}: {stderr}");
    assert!(
        stderr.contains(&format!(
            "cannot serve /healthz, /readyz and /metrics on {addr}: address in use"
        )),
        "{stderr}"
    );
    assert!(!stderr.contains("secret"), "{stderr}");
    drop(taken);
}
