//! The Helm chart rendered as `helm template` renders it, for the tests that need the chart's
//! objects (its RBAC, its container arguments): the real `helm` from `.tools/bin/helm` when it
//! is installed, else Helm's Go SDK through `helm-python-sdk` (`tests/helm/render.py`, run
//! with `$HELM_PYTHON` from `.tools/env.sh`).
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{Value, json};

/// The chart, relative to the repository root.
pub const CHART: &str = "charts/litellm-org-operator";
/// The Python driver of Helm's SDK, relative to the repository root.
pub const DRIVER: &str = "tests/helm/render.py";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The real helm CLI, when `scripts/install-tools.sh` installed it.
pub fn helm_cli() -> Option<PathBuf> {
    let path = repo().join(".tools/bin/helm");
    path.is_file().then_some(path)
}

fn helm_python() -> String {
    std::env::var("HELM_PYTHON").unwrap_or_else(|_| {
        panic!(
            "HELM_PYTHON is not set: it names the Python with helm-python-sdk that renders the \
             chart. Run `source .tools/env.sh` first (scripts/install-tools.sh creates it; \
             scripts/test.sh does both)"
        )
    })
}

/// Sends one request to the Python driver (`lint` or `render`, see its docstring) and returns
/// its JSON answer. Helm's own errors are answers (`"ok": false`), not failures.
pub fn drive(request: Value) -> Value {
    let python = helm_python();
    let mut child = Command::new(&python)
        .arg(DRIVER)
        .current_dir(repo())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {python} {DRIVER}: {e}"));
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(request.to_string().as_bytes())
        .expect("write request");
    let out = child.wait_with_output().expect("driver output");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{DRIVER} failed ({}): {stderr}",
        out.status
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{DRIVER} printed no JSON ({e}); stderr: {stderr}"))
}

/// Every object of every template (NOTES.txt left out) of the chart rendered for `release`
/// in `namespace` with `values`, in template order; the test fails if Helm refuses the values.
pub fn render_objects(values: &Value, release: &str, namespace: &str) -> Vec<Value> {
    let texts = match helm_cli() {
        Some(helm) => vec![helm_template(&helm, values, release, namespace)],
        None => {
            let answer = drive(json!({
                "action": "render", "chart": CHART, "values": values,
                "name": release, "namespace": namespace,
            }));
            assert_eq!(answer["ok"], true, "render failed for {values}: {answer}");
            answer["templates"]
                .as_object()
                .expect("templates")
                .iter()
                .filter(|(path, _)| !path.ends_with("NOTES.txt"))
                .map(|(_, text)| text.as_str().expect("template text").to_string())
                .collect()
        }
    };
    let mut objects = Vec::new();
    for text in texts {
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let doc = <serde_yaml::Value as serde::Deserialize>::deserialize(doc)
                .unwrap_or_else(|e| panic!("the chart renders invalid YAML ({e}):\n{text}"));
            if !doc.is_null() {
                objects.push(serde_json::to_value(doc).expect("JSON"));
            }
        }
    }
    objects
}

/// `helm template RELEASE CHART --namespace NAMESPACE -f VALUES`: the rendered stream.
fn helm_template(helm: &Path, values: &Value, release: &str, namespace: &str) -> String {
    let mut file = tempfile::NamedTempFile::new().expect("values file");
    file.write_all(values.to_string().as_bytes())
        .expect("write values");
    let out = Command::new(helm)
        .args(["template", release, CHART, "--namespace", namespace, "-f"])
        .arg(file.path())
        .current_dir(repo())
        .env(
            "HELM_CACHE_HOME",
            std::env::temp_dir().join("lorg-helm-cache"),
        )
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", helm.display()));
    assert!(
        out.status.success(),
        "helm template failed for {values}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8")
}

/// The operator container's arguments in the rendered Deployment.
pub fn container_args(objects: &[Value]) -> Vec<String> {
    let deployment = objects
        .iter()
        .find(|o| o["kind"] == "Deployment")
        .expect("the chart renders a Deployment");
    deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .expect("args")
        .iter()
        .map(|a| a.as_str().unwrap_or_default().to_string())
        .collect()
}

/// The manifest NOTES.txt shows inline (`kubectl apply -f - <<EOF` … `EOF`, indented by two
/// spaces), unindented.
pub fn notes_manifest(notes: &str) -> String {
    notes
        .split("kubectl apply -f - <<EOF\n")
        .nth(1)
        .and_then(|rest| rest.split("\n  EOF").next())
        .unwrap_or_else(|| panic!("no inline manifest in NOTES:\n{notes}"))
        .lines()
        .map(|l| l.strip_prefix("  ").unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n")
}
