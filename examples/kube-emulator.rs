//! The test suite's Kubernetes API emulator as a standalone program, so a person can point
//! `kubectl` and the operator at it by hand:
//!
//! ```text
//! cargo run --example kube-emulator -- --crds crds/ --port 6443
//! export KUBECONFIG=<the path it prints>
//! kubectl get lorg -A
//! ```
//!
//! Plain HTTP on 127.0.0.1, no authentication. Ctrl-C stops it.
#[path = "../tests/support/emulator/mod.rs"]
mod emulator;

use std::path::PathBuf;

fn usage() -> ! {
    eprintln!("usage: kube-emulator [--crds DIR_OR_FILE] [--port N] [--kubeconfig PATH] [--log]");
    std::process::exit(2)
}

#[tokio::main]
async fn main() {
    let mut options = emulator::Options::default();
    let mut kubeconfig: Option<PathBuf> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--crds" => options.crds = Some(PathBuf::from(args.next().unwrap_or_else(|| usage()))),
            "--port" => {
                options.port = args
                    .next()
                    .and_then(|p| p.parse().ok())
                    .unwrap_or_else(|| usage())
            }
            "--log" => options.log_requests = true,
            "--kubeconfig" => {
                kubeconfig = Some(PathBuf::from(args.next().unwrap_or_else(|| usage())))
            }
            _ => usage(),
        }
    }
    let emu = match emulator::Emulator::start_with(options).await {
        Ok(e) => e,
        Err(e) => {
            eprintln!("kube-emulator: {e}");
            std::process::exit(1)
        }
    };
    println!("kube-emulator listening on {}", emu.url());
    let path = match kubeconfig {
        Some(path) => {
            if let Err(e) = std::fs::write(&path, emulator::kubeconfig_yaml(&emu.url())) {
                eprintln!("kube-emulator: writing {}: {e}", path.display());
                std::process::exit(1)
            }
            path
        }
        None => emu.kubeconfig_path().to_path_buf(),
    };
    println!("KUBECONFIG={}", path.display());
    if let Err(e) = tokio::signal::ctrl_c().await {
        eprintln!("kube-emulator: waiting for Ctrl-C: {e}");
    }
}
