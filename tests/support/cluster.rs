//! A real Kubernetes control plane for the tests: kube-apiserver, etcd and
//! kube-controller-manager built from Kubernetes' Go modules, on loopback with TLS and RBAC,
//! started by `scripts/kube-up.sh DIR` and stopped by `scripts/kube-down.sh DIR`.
//!
//! - [`Cluster::shared`]: the control plane of the whole run when `LORG_TEST_KUBECONFIG` names
//!   its admin kubeconfig (`scripts/test.sh` starts one), else one started on first use by this
//!   test binary and stopped once the binary has exited. The CRDs are installed once.
//!   Tests share it, so each works in namespaces of its own ([`Cluster::namespace`]) and runs
//!   its operator limited to them.
//! - [`Cluster::private`]: a control plane of the test's own, without CRDs, stopped when the
//!   handle is dropped: for a test that changes what every test would see (the CRDs, an operator
//!   watching every namespace).
//!
//! The operator runs as a ServiceAccount with exactly the RBAC the Helm chart renders for the
//! test's values ([`Cluster::operator_access`]), so a verb the chart forgot fails the test as it
//! would fail a user.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use kube::api::PostParams;
use serde_json::{Value, json};

use litellm_org_operator::crd::{Organization, OrganizationMember};

use super::TestDb;
use super::helm;
use super::kube::{Kubectl, kubectl_path};
use super::operator::{Operator, Options, poll};

/// Names the admin kubeconfig of a running control plane the tests should share.
pub const KUBECONFIG_ENV: &str = "LORG_TEST_KUBECONFIG";
/// The committed CRDs, relative to the repository root.
pub const CRDS: &str = "crds/litellm.dev.yaml";
/// The names of the project's CRDs.
pub const CRD_NAMES: [&str; 2] = [
    "organizations.litellm.dev",
    "organizationmembers.litellm.dev",
];
/// The kinds of the chart's objects a test applies: the ServiceAccount and its RBAC.
const RBAC_KINDS: [&str; 5] = [
    "ServiceAccount",
    "Role",
    "RoleBinding",
    "ClusterRole",
    "ClusterRoleBinding",
];

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Eight random lowercase hex digits, for names no other test uses.
pub fn suffix() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..8].to_string()
}

/// One control plane: kube-up.sh's directory and the admin kubeconfig in it.
struct Plane {
    dir: PathBuf,
    kubeconfig: PathBuf,
    /// Started here and stopped when dropped (private planes; the shared one is a static,
    /// stopped by its watcher).
    owned: bool,
}

/// kube-up.sh builds the control plane on first use: one start at a time in this process.
static STARTING: Mutex<()> = Mutex::new(());

impl Plane {
    /// `scripts/kube-up.sh DIR` (its output in `DIR/kube-up.log`), plus a detached watcher
    /// that runs `scripts/kube-down.sh DIR` once this process has exited, however it ends.
    fn start(dir: PathBuf) -> Plane {
        let _one = STARTING.lock().unwrap_or_else(|p| p.into_inner());
        std::fs::create_dir_all(&dir).expect("control plane directory");
        let log_path = dir.join("kube-up.log");
        let log = std::fs::File::create(&log_path).expect("kube-up.log");
        let started = Instant::now();
        let status = Command::new("bash")
            .arg(repo().join("scripts/kube-up.sh"))
            .arg(&dir)
            .current_dir(repo())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .status()
            .expect("run scripts/kube-up.sh");
        stop_when_this_process_exits(&dir);
        let plane = Plane {
            kubeconfig: dir.join("admin.kubeconfig"),
            dir,
            owned: true,
        };
        assert!(
            status.success() && plane.kubeconfig.is_file(),
            "scripts/kube-up.sh {} failed ({status}):\n{}",
            plane.dir.display(),
            std::fs::read_to_string(&log_path).unwrap_or_default()
        );
        eprintln!(
            "control plane {} up in {:.1} s",
            plane.dir.display(),
            started.elapsed().as_secs_f64()
        );
        plane
    }
}

impl Drop for Plane {
    fn drop(&mut self) {
        if !self.owned {
            return;
        }
        let stopped = Command::new("bash")
            .arg(repo().join("scripts/kube-down.sh"))
            .arg(&self.dir)
            .current_dir(repo())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .status();
        if matches!(stopped, Ok(s) if s.success()) {
            std::fs::remove_dir_all(&self.dir).ok();
        } else {
            eprintln!(
                "scripts/kube-down.sh {} failed: {stopped:?}",
                self.dir.display()
            );
        }
    }
}

/// A process in a session of its own (it outlives this one) that waits for this test process
/// to exit, then stops the control plane in `dir` and removes the directory.
fn stop_when_this_process_exits(dir: &Path) {
    let script = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 1; done; bash '{down}' '{dir}' >'{dir}/kube-down.log' 2>&1 && rm -rf '{dir}'",
        pid = std::process::id(),
        down = repo().join("scripts/kube-down.sh").display(),
        dir = dir.display(),
    );
    // setsid --fork: the watcher is a grandchild, so nothing here waits on it.
    let started = Command::new("setsid")
        .args(["--fork", "bash", "-c", &script])
        .current_dir(repo())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("start the control plane's watcher");
    assert!(started.success(), "setsid: {started}");
}

static SHARED: OnceLock<Plane> = OnceLock::new();

/// The control plane of the run (`LORG_TEST_KUBECONFIG`) or of this test binary, with the
/// CRDs installed.
fn shared_plane() -> &'static Plane {
    SHARED.get_or_init(|| {
        let plane = match std::env::var_os(KUBECONFIG_ENV) {
            Some(path) if !path.is_empty() => {
                let kubeconfig = PathBuf::from(path);
                Plane {
                    dir: kubeconfig.parent().expect("a directory").to_path_buf(),
                    kubeconfig,
                    owned: false,
                }
            }
            _ => Plane::start(
                Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("kube-{}", std::process::id())),
            ),
        };
        install_crds_blocking(&plane.kubeconfig, &repo().join(CRDS));
        plane
    })
}

/// `kubectl apply --server-side` of a CRD file as the admin, then wait until each of the
/// project's CRDs is Established (idempotent: the shared plane already has them after the
/// first test binary).
fn install_crds_blocking(kubeconfig: &Path, crds: &Path) {
    let home = tempfile::tempdir().expect("kubectl home");
    let kubectl = |args: &[&str]| {
        let out = Command::new(kubectl_path())
            .args(args)
            .env("KUBECONFIG", kubeconfig)
            .env("HOME", home.path())
            .env("KUBECACHEDIR", home.path().join("cache"))
            .current_dir(repo())
            .stdin(Stdio::null())
            .output()
            .expect("run kubectl");
        assert!(
            out.status.success(),
            "kubectl {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let file = crds.display().to_string();
    kubectl(&["apply", "--server-side", "--force-conflicts", "-f", &file]);
    let mut wait = vec!["wait", "--for=condition=Established", "--timeout=60s"];
    let names: Vec<String> = CRD_NAMES.iter().map(|n| format!("crd/{n}")).collect();
    wait.extend(names.iter().map(String::as_str));
    kubectl(&wait);
}

/// A kube-rs client from a kubeconfig file.
pub async fn client_for(kubeconfig: &Path) -> kube::Client {
    let file = kube::config::Kubeconfig::read_from(kubeconfig)
        .unwrap_or_else(|e| panic!("read {}: {e}", kubeconfig.display()));
    let config = kube::Config::from_custom_kubeconfig(file, &Default::default())
        .await
        .unwrap_or_else(|e| panic!("kubeconfig {}: {e}", kubeconfig.display()));
    kube::Client::try_from(config).expect("kube client")
}

/// What the chart grants one release of the operator, as a kubeconfig.
pub struct OperatorAccess {
    /// The ServiceAccount's token and the cluster's CA (the namespace is the release's).
    pub kubeconfig: PathBuf,
    /// The arguments of the chart's container that decide what the operator may touch:
    /// `--namespace` (one per watched namespace), `--install-crds`, `--leader-elect` (with
    /// `--lease-namespace`, which the chart's pod gets from `POD_NAMESPACE`), `--grant=…`
    /// (one per namespace and organization id of `tenancy.grants`).
    pub args: Vec<String>,
}

impl OperatorAccess {
    /// The tests' operator defaults with this database and the chart's scope arguments.
    pub fn options(&self, database_url: &str) -> Options {
        Options::new(database_url).args(&self.args)
    }
}

enum Which {
    Shared(&'static Plane),
    Private(Plane),
}

/// One test's view of a control plane: an admin client, kubectl, and a scratch directory.
pub struct Cluster {
    plane: Which,
    scratch: tempfile::TempDir,
    client: kube::Client,
}

impl Cluster {
    /// The shared control plane (started on first use), with the CRDs installed.
    pub async fn shared() -> Cluster {
        let plane = tokio::task::spawn_blocking(shared_plane)
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
        Self::on(Which::Shared(plane)).await
    }

    /// A control plane of this test's own, without the project's CRDs; stopped on drop.
    pub async fn private() -> Cluster {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("kube-{}", suffix()));
        let plane = tokio::task::spawn_blocking(move || Plane::start(dir))
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
        Self::on(Which::Private(plane)).await
    }

    async fn on(plane: Which) -> Cluster {
        let kubeconfig = match &plane {
            Which::Shared(p) => p.kubeconfig.clone(),
            Which::Private(p) => p.kubeconfig.clone(),
        };
        Cluster {
            plane,
            scratch: tempfile::tempdir().expect("scratch directory"),
            client: client_for(&kubeconfig).await,
        }
    }

    fn plane(&self) -> &Plane {
        match &self.plane {
            Which::Shared(p) => p,
            Which::Private(p) => p,
        }
    }

    /// The admin's kubeconfig (client certificate in `system:masters`).
    pub fn kubeconfig(&self) -> &Path {
        &self.plane().kubeconfig
    }

    /// A scratch directory of this test's (kubectl's HOME and cache, rendered files).
    pub fn dir(&self) -> &Path {
        self.scratch.path()
    }

    /// A kube-rs client as the admin.
    pub fn client(&self) -> kube::Client {
        self.client.clone()
    }

    /// The real kubectl as the admin.
    pub fn kubectl(&self) -> Kubectl {
        Kubectl::new(self.kubeconfig(), self.dir())
    }

    /// Install CRDs from a file as the admin and wait until the project's are Established.
    pub async fn install_crds(&self, crds: &Path) {
        let kubeconfig = self.kubeconfig().to_path_buf();
        let crds = crds.to_path_buf();
        tokio::task::spawn_blocking(move || install_crds_blocking(&kubeconfig, &crds))
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
    }

    /// A new namespace named `prefix-<8 random hex digits>` (at most 63 characters).
    pub async fn namespace(&self, prefix: &str) -> String {
        let suffix = suffix();
        let prefix: String = prefix
            .to_ascii_lowercase()
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
            .take(63 - 1 - suffix.len())
            .collect();
        let prefix = prefix.trim_matches('-');
        let name = if prefix.is_empty() {
            format!("t-{suffix}")
        } else {
            format!("{prefix}-{suffix}")
        };
        let namespace: Namespace =
            serde_json::from_value(json!({"metadata": {"name": name}})).expect("namespace");
        Api::<Namespace>::all(self.client())
            .create(&PostParams::default(), &namespace)
            .await
            .unwrap_or_else(|e| panic!("create namespace {name}: {e}"));
        name
    }

    /// Install the operator's ServiceAccount and RBAC as the Helm chart renders them for a
    /// release of its own in `namespace`, with `values` over the tests' defaults
    /// (`watchNamespaces: [namespace]`, `installCRDs: false`, a database Secret name), and
    /// return a kubeconfig with a token of that ServiceAccount. Returns once the API server
    /// grants every rule the chart wrote.
    pub async fn operator_access(&self, namespace: &str, values: Value) -> OperatorAccess {
        let release = format!("t{}", suffix());
        let mut all = json!({
            "database": {"existingSecret": "litellm-db"},
            "watchNamespaces": [namespace],
            "installCRDs": false,
        });
        merge(&mut all, values);
        let objects = {
            let (all, release, namespace) = (all.clone(), release.clone(), namespace.to_string());
            tokio::task::spawn_blocking(move || helm::render_objects(&all, &release, &namespace))
                .await
                .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
        };
        let args = scope_args(&helm::container_args(&objects), namespace);
        let rbac: Vec<Value> = objects
            .into_iter()
            .filter(|o| RBAC_KINDS.iter().any(|k| o["kind"] == *k))
            .collect();
        let account = rbac
            .iter()
            .find(|o| o["kind"] == "ServiceAccount")
            .and_then(|o| o["metadata"]["name"].as_str())
            .expect("the chart renders a ServiceAccount")
            .to_string();
        let file = self.dir().join(format!("{release}-rbac.yaml"));
        let stream: String = rbac.iter().map(|o| format!("---\n{o}\n")).collect();
        std::fs::write(&file, stream).expect("write the chart's RBAC");
        let kubectl = self.kubectl();
        kubectl
            .ok(&["apply", "--server-side", "-f", &file.display().to_string()])
            .await;
        let token = kubectl
            .ok(&[
                "create",
                "token",
                &account,
                "-n",
                namespace,
                "--duration=2h",
            ])
            .await;
        let kubeconfig = self.dir().join(format!("{release}.kubeconfig"));
        std::fs::write(
            &kubeconfig,
            token_kubeconfig(self.kubeconfig(), token.trim(), namespace),
        )
        .expect("write the operator's kubeconfig");
        wait_until_granted(&kubeconfig, &rbac).await;
        OperatorAccess { kubeconfig, args }
    }
}

/// `overlay` merged into `base`: objects key by key, anything else replaced.
fn merge(base: &mut Value, overlay: Value) {
    match (base, overlay) {
        (Value::Object(base), Value::Object(overlay)) => {
            for (key, value) in overlay {
                merge(base.entry(key).or_insert(Value::Null), value);
            }
        }
        (base, overlay) => *base = overlay,
    }
}

/// The arguments of the chart's container that scope the operator (see
/// [`OperatorAccess::args`]); the Lease lives in the release namespace.
fn scope_args(chart_args: &[String], release_namespace: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut it = chart_args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--namespace" => {
                out.push(arg.clone());
                out.extend(it.next().cloned());
            }
            "--install-crds" => out.push(arg.clone()),
            // Which namespaces may reach which organizations (`tenancy.grants`).
            grant if grant.starts_with("--grant=") => out.push(arg.clone()),
            "--leader-elect" => out.extend([
                arg.clone(),
                "--lease-namespace".into(),
                release_namespace.into(),
            ]),
            _ => {}
        }
    }
    out
}

/// A kubeconfig for the admin kubeconfig's cluster (server and CA) with a bearer token.
fn token_kubeconfig(admin: &Path, token: &str, namespace: &str) -> String {
    let text = std::fs::read_to_string(admin).expect("read the admin kubeconfig");
    let config: Value = serde_yaml::from_str(&text).expect("kubeconfig YAML");
    let mut cluster = config["clusters"][0]["cluster"].clone();
    if let Some(ca) = cluster["certificate-authority"].as_str()
        && Path::new(ca).is_relative()
    {
        let dir = admin.parent().expect("a directory");
        cluster["certificate-authority"] = json!(dir.join(ca).display().to_string());
    }
    let config = json!({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "test", "cluster": cluster}],
        "users": [{"name": "operator", "user": {"token": token}}],
        "contexts": [{"name": "operator", "context": {"cluster": "test", "user": "operator", "namespace": namespace}}],
        "current-context": "operator",
    });
    serde_yaml::to_string(&config).expect("YAML")
}

/// Poll SelfSubjectAccessReviews as the kubeconfig's user until the first verb of every rule
/// of every rendered Role and ClusterRole is allowed (the authorizer sees new bindings a
/// moment after they are written).
async fn wait_until_granted(kubeconfig: &Path, rbac: &[Value]) {
    let client = client_for(kubeconfig).await;
    let reviews: Api<SelfSubjectAccessReview> = Api::all(client);
    let mut checks = Vec::new();
    for role in rbac
        .iter()
        .filter(|o| o["kind"] == "Role" || o["kind"] == "ClusterRole")
    {
        for rule in role["rules"].as_array().into_iter().flatten() {
            let resource = rule["resources"][0].as_str().unwrap_or_default();
            let (resource, subresource) = match resource.split_once('/') {
                Some((r, s)) => (r, Some(s.to_string())),
                None => (resource, None),
            };
            checks.push(ResourceAttributes {
                group: rule["apiGroups"][0].as_str().map(str::to_string),
                resource: Some(resource.to_string()),
                subresource,
                verb: rule["verbs"][0].as_str().map(str::to_string),
                name: rule["resourceNames"][0].as_str().map(str::to_string),
                namespace: role["metadata"]["namespace"].as_str().map(str::to_string),
                ..Default::default()
            });
        }
    }
    for attributes in checks {
        let review = SelfSubjectAccessReview {
            spec: SelfSubjectAccessReviewSpec {
                resource_attributes: Some(attributes),
                ..Default::default()
            },
            ..Default::default()
        };
        poll(30, "the chart's RBAC in force", || async {
            let answer = reviews.create(&PostParams::default(), &review).await;
            match answer.map(|r| r.status) {
                Ok(Some(status)) if status.allowed => Ok(()),
                other => Err(format!("{:?}: {other:?}", review.spec.resource_attributes)),
            }
        })
        .await;
    }
}

/// What most operator tests work with: a clone of LiteLLM's schema, a namespace of their own
/// on the shared control plane, the APIs of both kinds in it, and the chart's access for an
/// operator released in that namespace and watching it alone.
pub struct World {
    pub db: TestDb,
    pub cluster: Cluster,
    pub ns: String,
    pub orgs: Api<Organization>,
    pub members: Api<OrganizationMember>,
    pub access: OperatorAccess,
}

impl World {
    /// On the shared control plane, with the chart's defaults for the tests.
    pub async fn new(prefix: &str) -> World {
        Self::with_values(prefix, json!({})).await
    }

    /// On the shared control plane, with these chart values over the tests' defaults.
    pub async fn with_values(prefix: &str, values: Value) -> World {
        Self::on(Cluster::shared().await, prefix, values).await
    }

    /// On `cluster` (a private one: its CRDs must be installed first).
    pub async fn on(cluster: Cluster, prefix: &str, values: Value) -> World {
        let db = TestDb::litellm().await;
        let ns = cluster.namespace(prefix).await;
        let access = cluster.operator_access(&ns, values).await;
        World {
            db,
            orgs: Api::namespaced(cluster.client(), &ns),
            members: Api::namespaced(cluster.client(), &ns),
            cluster,
            ns,
            access,
        }
    }

    /// The operator with the tests' defaults, the chart's scope and `extra` arguments; returns
    /// once it is ready.
    pub async fn operator(&self, extra: &[&str]) -> Operator {
        self.operator_with(self.options().args(extra)).await
    }

    /// The tests' defaults with this world's database and the chart's scope arguments.
    pub fn options(&self) -> Options {
        self.access.options(&self.db.url())
    }

    /// The operator started with `options` as the chart's ServiceAccount.
    pub async fn operator_with(&self, options: Options) -> Operator {
        Operator::start_with(&self.access.kubeconfig, options).await
    }

    /// The real kubectl as the admin.
    pub fn kubectl(&self) -> Kubectl {
        self.cluster.kubectl()
    }

    /// The admin's client.
    pub fn client(&self) -> kube::Client {
        self.cluster.client()
    }
}
