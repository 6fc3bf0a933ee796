//! The chart installed, upgraded and uninstalled by the real `helm` (`.tools/bin/helm`, built by
//! `scripts/go-tools.sh helm`) on the test control plane. The control plane has no nodes, so
//! the operator's pod is never scheduled: these tests assert the objects Helm creates, keeps and
//! removes, not a running pod. Each test has its own release name and namespace.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::{Value, json};
use support::TestDb;
use support::cluster::{Cluster, suffix};
use support::helm::{CHART, helm_cli, notes_manifest};

const BIN: &str = env!("CARGO_BIN_EXE_litellm-org-operator");
const CRD: &str = "organizations.litellm.dev";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The real helm against one control plane, with homes of its own.
struct Helm {
    bin: PathBuf,
    kubeconfig: PathBuf,
    home: tempfile::TempDir,
}

impl Helm {
    fn new(cluster: &Cluster) -> Self {
        let bin = helm_cli().expect(".tools/bin/helm: run `bash scripts/go-tools.sh helm`");
        Helm {
            bin,
            kubeconfig: cluster.kubeconfig().to_path_buf(),
            home: tempfile::tempdir().expect("helm home"),
        }
    }

    fn run(&self, args: &[&str]) -> Output {
        let home = self.home.path();
        Command::new(&self.bin)
            .args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("HELM_CACHE_HOME", home.join("cache"))
            .env("HELM_CONFIG_HOME", home.join("config"))
            .env("HELM_DATA_HOME", home.join("data"))
            .current_dir(repo())
            .stdin(Stdio::null())
            .output()
            .expect("run helm")
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "helm {args:?} failed: {text}");
        text
    }

    /// A values file of `values` in helm's home.
    fn values(&self, values: &Value) -> String {
        let path = self.home.path().join(format!("values-{}.json", suffix()));
        std::fs::write(&path, values.to_string()).expect("write values");
        path.display().to_string()
    }
}

async fn kubectl_json(cluster: &Cluster, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    serde_json::from_str(&cluster.kubectl().ok(&all).await).expect("kubectl JSON")
}

/// Names of the objects of `kinds` in `namespace` that carry the release's instance label.
async fn release_objects(cluster: &Cluster, namespace: &str, release: &str) -> Vec<String> {
    let selector = format!("app.kubernetes.io/instance={release}");
    let namespaced =
        "deployments,services,serviceaccounts,secrets,roles,rolebindings,poddisruptionbudgets";
    let mut names = Vec::new();
    for args in [
        vec!["get", namespaced, "-n", namespace, "-l", &selector],
        vec!["get", "clusterroles,clusterrolebindings", "-l", &selector],
    ] {
        let list = kubectl_json(cluster, &args).await;
        names.extend(list["items"].as_array().expect("items").iter().map(|o| {
            format!(
                "{}/{}",
                o["kind"].as_str().unwrap_or(""),
                o["metadata"]["name"].as_str().unwrap_or("")
            )
        }));
    }
    names.sort();
    names
}

#[test]
fn lint_and_template_check_values_against_the_schema() {
    let helm = Helm {
        bin: helm_cli().expect(".tools/bin/helm: run `bash scripts/go-tools.sh helm`"),
        kubeconfig: PathBuf::from("/nonexistent"),
        home: tempfile::tempdir().expect("helm home"),
    };
    let good = helm.values(&json!({"database": {"existingSecret": "litellm-db"}}));
    let lint = helm.ok(&["lint", "--strict", CHART, "-f", &good]);
    assert!(
        lint.contains("1 chart(s) linted, 0 chart(s) failed"),
        "{lint}"
    );
    let rendered = helm.ok(&["template", "r", CHART, "-f", &good]);
    assert!(rendered.contains("kind: Deployment"), "{rendered}");

    for (values, field) in [
        (
            json!({"database": {"existingSecret": "db"}, "replicaCount": 0}),
            "replicaCount",
        ),
        (
            json!({"database": {"existingSecret": "db"}, "prometheusRule": {"enabled": "yes"}}),
            "prometheusRule",
        ),
        (
            json!({"database": {"existingSecret": "db"}, "grafanaDashboard": {"labelz": {}}}),
            "labelz",
        ),
    ] {
        let file = helm.values(&values);
        let out = helm.run(&["template", "r", CHART, "-f", &file]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{values} rendered");
        assert!(
            stderr.contains("schema") && stderr.contains(field),
            "{values}: {stderr}"
        );
        let out = helm.run(&["lint", "--strict", CHART, "-f", &file]);
        assert!(!out.status.success(), "{values} linted");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn install_upgrade_and_uninstall_on_the_control_plane() {
    let cluster = Cluster::shared().await;
    let ns = cluster.namespace("chart-install").await;
    let release = format!("lorg-{}", suffix());
    let helm = Helm::new(&cluster);
    let values = helm.values(&json!({
        "database": {"existingSecret": "litellm-db"},
        "replicaCount": 2,
    }));
    helm.ok(&["install", &release, CHART, "-n", &ns, "-f", &values]);

    let fullname = format!("{release}-litellm-org-operator");
    let installed = release_objects(&cluster, &ns, &release).await;
    let expected: Vec<String> = {
        let mut v = vec![
            format!("ClusterRole/{fullname}-crds"),
            format!("ClusterRole/{fullname}"),
            format!("ClusterRoleBinding/{fullname}-crds"),
            format!("ClusterRoleBinding/{fullname}"),
            format!("Deployment/{fullname}"),
            format!("PodDisruptionBudget/{fullname}"),
            format!("Role/{fullname}-leader-election"),
            format!("RoleBinding/{fullname}-leader-election"),
            format!("Service/{fullname}-metrics"),
            format!("ServiceAccount/{fullname}"),
        ];
        v.sort();
        v
    };
    assert_eq!(installed, expected);
    let deployment = kubectl_json(&cluster, &["get", "deployment", &fullname, "-n", &ns]).await;
    assert_eq!(deployment["spec"]["replicas"], 2);
    let args = deployment["spec"]["template"]["spec"]["containers"][0]["args"].to_string();
    assert!(args.contains("--leader-elect"), "{args}");

    // An upgrade changes the Deployment in place: one replica, no leader election, no PDB.
    let one =
        helm.values(&json!({"database": {"existingSecret": "litellm-db"}, "replicaCount": 1}));
    helm.ok(&["upgrade", &release, CHART, "-n", &ns, "-f", &one]);
    let deployment = kubectl_json(&cluster, &["get", "deployment", &fullname, "-n", &ns]).await;
    assert_eq!(deployment["spec"]["replicas"], 1);
    // From RollingUpdate (leader election) to Recreate: the API server accepts the change.
    assert_eq!(deployment["spec"]["strategy"], json!({"type": "Recreate"}));
    assert!(
        !deployment["spec"]["template"]["spec"]["containers"][0]["args"]
            .to_string()
            .contains("--leader-elect")
    );
    let upgraded = release_objects(&cluster, &ns, &release).await;
    assert!(
        !upgraded
            .iter()
            .any(|o| o.starts_with("PodDisruptionBudget/")),
        "{upgraded:?}"
    );
    let history = helm.ok(&["history", &release, "-n", &ns]);
    assert!(
        history.contains("deployed") && history.contains("superseded"),
        "{history}"
    );

    helm.ok(&["uninstall", &release, "-n", &ns]);
    assert_eq!(
        release_objects(&cluster, &ns, &release).await,
        Vec::<String>::new()
    );
    // The CRDs of the shared control plane are still there.
    let (ok, out) = cluster.kubectl().status(&["get", "crd", CRD]).await;
    assert!(ok, "{out}");
}

/// The chart's CRD file with one printer column of Organization left out: what an older chart
/// shipped.
fn older_crds(chart_copy: &Path) -> String {
    let path = chart_copy.join("crds/litellm.dev.yaml");
    let text = std::fs::read_to_string(&path).expect("read CRDs");
    let mut docs: Vec<serde_yaml::Value> = serde_yaml::Deserializer::from_str(&text)
        .map(|d| <serde_yaml::Value as serde::Deserialize>::deserialize(d).expect("YAML"))
        .filter(|d| !d.is_null())
        .collect();
    let mut dropped = String::new();
    for doc in &mut docs {
        if doc["metadata"]["name"].as_str() != Some(CRD) {
            continue;
        }
        let columns = doc["spec"]["versions"][0]["additionalPrinterColumns"]
            .as_sequence_mut()
            .expect("printer columns");
        let last = columns.pop().expect("a printer column");
        dropped = last["name"].as_str().expect("column name").to_string();
    }
    let out: Vec<String> = docs
        .iter()
        .map(|d| serde_yaml::to_string(d).expect("YAML"))
        .collect();
    std::fs::write(&path, out.join("---\n")).expect("write CRDs");
    dropped
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copy");
        }
    }
}

async fn printer_columns(cluster: &Cluster) -> Vec<String> {
    let crd = kubectl_json(cluster, &["get", "crd", CRD]).await;
    crd["spec"]["versions"][0]["additionalPrinterColumns"]
        .as_array()
        .expect("columns")
        .iter()
        .map(|c| c["name"].as_str().expect("name").to_string())
        .collect()
}

/// Helm installs `crds/` once and never upgrades it: an upgrade to a chart whose CRD changed
/// leaves the old CRD; the README's step (`kubectl apply --server-side --force-conflicts -f
/// crds/`) brings it up to date and keeps the custom objects. Uninstalling leaves the CRDs,
/// the custom objects and the organizations' rows. On a control plane of its own: the test
/// changes CRDs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_leaves_crds_to_the_documented_step_and_uninstall_keeps_data() {
    let cluster = Cluster::private().await;
    let ns = cluster.namespace("chart-upgrade").await;
    let release = format!("lorg-{}", suffix());
    let helm = Helm::new(&cluster);
    let old_chart = helm.home.path().join("old-chart");
    copy_dir(&repo().join(CHART), &old_chart);
    let dropped = older_crds(&old_chart);
    let values = helm.values(&json!({
        "database": {"existingSecret": "litellm-db"},
        "installCRDs": false,
        "watchNamespaces": [ns],
    }));
    let old_chart = old_chart.display().to_string();
    helm.ok(&["install", &release, &old_chart, "-n", &ns, "-f", &values]);
    let old_columns = printer_columns(&cluster).await;
    assert!(!old_columns.contains(&dropped), "{old_columns:?}");

    // The example NOTES.txt prints (an organization and a member in the watched namespace),
    // accepted by the API server as it stands, and (applied by the CLI, as the operator
    // would) written to the database.
    let notes = helm.ok(&["get", "notes", &release, "-n", &ns]);
    let manifest = helm.home.path().join("notes-example.yaml");
    std::fs::write(&manifest, notes_manifest(&notes)).expect("write manifest");
    let manifest = manifest.display().to_string();
    cluster.kubectl().ok(&["apply", "-f", &manifest]).await;
    let db = TestDb::litellm().await;
    let out = Command::new(BIN)
        .args(["apply", "-f", &manifest, "--manager", "operator"])
        .env("DATABASE_URL", db.url())
        .output()
        .expect("run the CLI");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows = db.snapshot().await;
    assert_eq!(db.count("LiteLLM_OrganizationTable").await, 1);
    assert_eq!(db.count("LiteLLM_OrganizationMembership").await, 1);

    helm.ok(&["upgrade", &release, CHART, "-n", &ns, "-f", &values]);
    assert_eq!(
        printer_columns(&cluster).await,
        old_columns,
        "Helm left the CRD"
    );

    // Helm's field manager owns the CRD it created: a plain server-side apply conflicts with
    // it and changes nothing, hence --force-conflicts in the documented step.
    let (ok, out) = cluster
        .kubectl()
        .status(&["apply", "--server-side", "-f", "crds/"])
        .await;
    assert!(!ok && out.contains("conflict with \"helm\""), "{out}");
    assert_eq!(printer_columns(&cluster).await, old_columns);
    // The documented step.
    let (ok, out) = cluster
        .kubectl()
        .status(&["apply", "--server-side", "--force-conflicts", "-f", "crds/"])
        .await;
    assert!(ok, "{out}");
    let columns = printer_columns(&cluster).await;
    assert!(columns.contains(&dropped), "{columns:?}");
    let org = kubectl_json(&cluster, &["get", "organization", "research", "-n", &ns]).await;
    assert_eq!(org["spec"]["alias"], "Research");

    helm.ok(&["uninstall", &release, "-n", &ns]);
    let deployments = kubectl_json(&cluster, &["get", "deployments", "-n", &ns]).await;
    assert_eq!(deployments["items"], json!([]));
    let (ok, out) = cluster
        .kubectl()
        .status(&["get", "crd", CRD, "organizationmembers.litellm.dev"])
        .await;
    assert!(ok, "{out}");
    let org = kubectl_json(&cluster, &["get", "organization", "research", "-n", &ns]).await;
    assert_eq!(org["spec"]["alias"], "Research");
    let member = kubectl_json(
        &cluster,
        &["get", "organizationmember", "research-alice", "-n", &ns],
    )
    .await;
    assert_eq!(member["spec"]["organizationRef"]["name"], "research");
    assert_eq!(db.snapshot().await, rows, "the database is untouched");
}
