//! The Helm chart as the real `helm` CLI (`.tools/bin/helm`, built from helm.sh/helm/v4 by
//! `scripts/go-tools.sh helm`) lints and renders it, for the tests that need the chart's
//! objects (its RBAC, its container arguments, its NOTES). Every call is one `helm` process
//! given its own values file, so the tests share no files and run in parallel. Helm's own
//! refusals (schema violations, `fail`, `required`) come back as answers carrying Helm's
//! output; only a `helm` that cannot be run at all fails the test.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

/// The chart, relative to the repository root.
pub const CHART: &str = "charts/litellm-org-operator";
/// The Kubernetes version `lint` checks the chart against (its `kubeVersion`, deprecations).
pub const LINT_KUBE_VERSION: &str = "v1.31.0";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The real helm CLI, when `scripts/go-tools.sh helm` built it.
pub fn helm_cli() -> Option<PathBuf> {
    let path = repo().join(".tools/bin/helm");
    path.is_file().then_some(path)
}

/// The real helm CLI; the test fails with how to build it when it is missing.
pub fn helm_bin() -> PathBuf {
    helm_cli().unwrap_or_else(|| {
        panic!(
            "{} is missing: the chart tests run the real helm CLI. Build it with \
             `bash scripts/go-tools.sh helm` (scripts/test.sh does)",
            repo().join(".tools/bin/helm").display()
        )
    })
}

/// What one `helm` run printed, and whether Helm accepted the request.
#[derive(Debug)]
pub struct Run {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `helm ARGS` in the repository root, with a private cache, stdin closed.
pub fn run<I, S>(args: I) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let helm = helm_bin();
    let args: Vec<_> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
    let out = Command::new(&helm)
        .args(&args)
        .current_dir(repo())
        .env(
            "HELM_CACHE_HOME",
            std::env::temp_dir().join("lorg-helm-cache"),
        )
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {} {args:?}: {e}", helm.display()));
    Run {
        success: out.status.success(),
        stdout: String::from_utf8(out.stdout).expect("helm prints UTF-8"),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `values` written to a file for `helm -f` (JSON is YAML).
fn values_file(values: &Value) -> tempfile::NamedTempFile {
    let mut file = tempfile::Builder::new()
        .suffix(".yaml")
        .tempfile()
        .expect("values file");
    file.write_all(values.to_string().as_bytes())
        .expect("write values");
    file
}

/// `helm lint --strict CHART -f VALUES --namespace NAMESPACE --kube-version LINT_KUBE_VERSION`.
/// Helm prints its findings on stdout (`[INFO]`, `[WARNING]`, `[ERROR]` lines and the
/// `N chart(s) linted, M chart(s) failed` summary); strict makes warnings fail as errors do.
pub fn lint(values: &Value, namespace: &str) -> Run {
    let file = values_file(values);
    let mut args: Vec<&OsStr> = ["lint", "--strict", CHART, "--namespace", namespace]
        .map(OsStr::new)
        .to_vec();
    args.extend(["--kube-version", LINT_KUBE_VERSION, "-f"].map(OsStr::new));
    args.push(file.path().as_os_str());
    run(args)
}

/// One rendered file of the chart, as Helm names it in its `# Source: PATH` line
/// (`litellm-org-operator/templates/rbac.yaml`, `litellm-org-operator/crds/litellm.dev.yaml`).
#[derive(Debug, Clone)]
pub struct Source {
    pub path: String,
    pub text: String,
}

/// A release as `helm install --dry-run=client -o json` renders it: the manifest by source
/// file, and the rendered NOTES.txt.
#[derive(Debug)]
pub struct Rendered {
    pub sources: Vec<Source>,
    pub notes: String,
}

/// Splits a rendered stream at Helm's `# Source: PATH` lines: each entry holds the lines up to
/// the next `# Source:` line (documents of one file that Helm prints under separate
/// `# Source:` lines stay separate entries; `---` separators are left in, YAML skips them).
pub fn split_sources(stream: &str) -> Vec<Source> {
    let mut sources: Vec<Source> = Vec::new();
    for line in stream.lines() {
        if let Some(path) = line.strip_prefix("# Source: ") {
            sources.push(Source {
                path: path.trim().to_string(),
                text: String::new(),
            });
        } else if let Some(source) = sources.last_mut() {
            source.text.push_str(line);
            source.text.push('\n');
        } else {
            assert!(
                line.trim().is_empty() || line == "---",
                "helm printed {line:?} before any `# Source:` line:\n{stream}"
            );
        }
    }
    sources
}

/// `helm install RELEASE CHART --dry-run=client --namespace NAMESPACE -f VALUES -o json`: the
/// chart rendered as an install renders it, offline (`lookup` finds nothing). `Err` holds
/// Helm's refusal (its stderr) when it rejects the values.
pub fn install_dry_run(values: &Value, release: &str, namespace: &str) -> Result<Rendered, String> {
    let file = values_file(values);
    let mut args: Vec<&OsStr> = ["install", release, CHART, "--dry-run=client"]
        .map(OsStr::new)
        .to_vec();
    args.extend(["--namespace", namespace, "-o", "json", "-f"].map(OsStr::new));
    args.push(file.path().as_os_str());
    let out = run(args);
    if !out.success {
        return Err(out.stderr);
    }
    let release: Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "helm install --dry-run=client -o json printed no JSON ({e}):\n{}\n{}",
            out.stdout, out.stderr
        )
    });
    let manifest = release["manifest"].as_str().expect("release manifest");
    let mut sources = split_sources(manifest);
    for hook in release["hooks"].as_array().into_iter().flatten() {
        sources.push(Source {
            path: hook["path"].as_str().expect("hook path").to_string(),
            text: hook["manifest"]
                .as_str()
                .expect("hook manifest")
                .to_string(),
        });
    }
    let notes = release["info"]["notes"].as_str().unwrap_or_default();
    Ok(Rendered {
        sources,
        notes: notes.to_string(),
    })
}

/// `helm template RELEASE CHART --namespace NAMESPACE -f VALUES [EXTRA…]`: the rendered
/// stream by source file. `Err` holds Helm's refusal (its stderr).
pub fn template(
    values: &Value,
    release: &str,
    namespace: &str,
    extra: &[&str],
) -> Result<Vec<Source>, String> {
    let file = values_file(values);
    let mut args: Vec<&OsStr> = ["template", release, CHART, "--namespace", namespace]
        .map(OsStr::new)
        .to_vec();
    args.extend(extra.iter().map(OsStr::new));
    args.push(OsStr::new("-f"));
    args.push(file.path().as_os_str());
    let out = run(args);
    if out.success {
        Ok(split_sources(&out.stdout))
    } else {
        Err(out.stderr)
    }
}

/// The files under the chart's `crds/` as `helm template --include-crds` lists them.
pub fn crds(values: &Value, release: &str, namespace: &str) -> Vec<Source> {
    template(values, release, namespace, &["--include-crds"])
        .unwrap_or_else(|e| panic!("helm template --include-crds failed for {values}: {e}"))
        .into_iter()
        .filter(|s| {
            s.path
                .split_once('/')
                .is_some_and(|(_, p)| p.starts_with("crds/"))
        })
        .collect()
}

/// Every YAML document of `text` that is not empty, as JSON.
pub fn objects_of(text: &str, path: &str) -> Vec<Value> {
    let mut objects = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(text) {
        let doc = <serde_yaml::Value as serde::Deserialize>::deserialize(doc)
            .unwrap_or_else(|e| panic!("{path} renders invalid YAML ({e}):\n{text}"));
        if !doc.is_null() {
            objects.push(serde_json::to_value(doc).expect("JSON"));
        }
    }
    objects
}

/// Every object of every template (NOTES.txt left out) of the chart rendered by
/// `helm template` for `release` in `namespace` with `values`, in Helm's order; the test
/// fails if Helm refuses the values.
pub fn render_objects(values: &Value, release: &str, namespace: &str) -> Vec<Value> {
    template(values, release, namespace, &[])
        .unwrap_or_else(|e| panic!("helm template failed for {values}: {e}"))
        .iter()
        .flat_map(|s| objects_of(&s.text, &s.path))
        .collect()
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
