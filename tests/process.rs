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
        .env("RUST_LOG", "info")
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
    // A log that is not a terminal carries no colour codes.
    assert!(
        stderr.contains("INFO") && stderr.contains("starting"),
        "{stderr}"
    );
    assert!(!stderr.contains('\u{1b}'), "{stderr:?}");
    drop(taken);
}

/// A malformed `--grant` (or `LITELLM_ORG_OPERATOR_GRANTS`) stops `run` before it connects to
/// anything, naming the flag, the value and the shape of a grant; no panic.
#[test]
fn run_refuses_a_malformed_grant_at_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = |args: &[&str], env: Option<&str>| {
        let mut cmd = Command::new(BIN);
        cmd.current_dir(dir.path())
            .arg("run")
            .args(args)
            .env("DATABASE_URL", "postgres://user:secret@127.0.0.1:1/db")
            .env("KUBECONFIG", dir.path().join("no-kubeconfig"))
            .env_remove("LITELLM_ORG_OPERATOR_GRANTS")
            .stdin(Stdio::null());
        if let Some(value) = env {
            cmd.env("LITELLM_ORG_OPERATOR_GRANTS", value);
        }
        cmd.output().expect("run the binary")
    };
    for (args, env, value, says) in [
        (&["--grant", "tenant-b"][..], None, "tenant-b", "has no '='"),
        (
            &["--grant=tenant-b=org*x"][..],
            None,
            "tenant-b=org*x",
            "not at its end",
        ),
        (
            &["--grant", "Tenant_B=org"][..],
            None,
            "Tenant_B=org",
            "is not a namespace name",
        ),
        (&[][..], Some("a=b,=c"), "=c", "the namespace is empty"),
    ] {
        let out = run(args, env);
        let stderr = String::from_utf8_lossy(&out.stderr);
        // A usage error exits 1: 2 is `plan`'s "changes pending".
        assert_eq!(out.status.code(), Some(1), "{args:?} {env:?}: {stderr}");
        assert!(
            stderr.contains(&format!(
                "invalid value '{value}' for '--grant <NAMESPACE=ORGANIZATION_ID>'"
            )),
            "{stderr}"
        );
        assert!(stderr.contains(says), "{stderr}");
        assert!(
            stderr.contains("a grant is NAMESPACE=ORGANIZATION_ID"),
            "{stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}
