//! The Helm chart `charts/litellm-org-operator`, linted and rendered by the real `helm` CLI
//! (`.tools/bin/helm`, built from helm.sh/helm/v4 by `scripts/go-tools.sh helm`): `helm lint
//! --strict`, `helm install --dry-run=client -o json` (the manifest and NOTES.txt as an
//! install renders them) and `helm template --include-crds` (`support::helm`). Each call is
//! one process with its own values file, so the tests share no files and run in parallel.
//! Helm's refusals come back as its error text. Rendered objects are read back into
//! `k8s-openapi` types, so a field of the wrong type or shape fails here as it would at
//! `helm install`.

mod support;

use std::collections::BTreeSet;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Container, PodSpec, Secret, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule, Role};
use litellm_org_operator::controller::tenancy::Grant;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use support::helm::{CHART, Rendered};

const RELEASE: &str = "lorg";
const NAMESPACE: &str = "litellm-system";
const FULLNAME: &str = "lorg-litellm-org-operator";
const DB_URL: &str = "postgres://litellm:secret@postgres.db:5432/litellm";

/// The only (API group, resource, verb) triples the operator may ever be granted.
const ALLOWED_RULES: &[(&str, &str, &[&str])] = &[
    (
        "litellm.dev",
        "organizations",
        &["get", "list", "watch", "patch", "update"],
    ),
    (
        "litellm.dev",
        "organizationmembers",
        &["get", "list", "watch", "patch", "update"],
    ),
    (
        "litellm.dev",
        "organizations/status",
        &["get", "patch", "update"],
    ),
    (
        "litellm.dev",
        "organizationmembers/status",
        &["get", "patch", "update"],
    ),
    ("litellm.dev", "organizations/finalizers", &["update"]),
    ("litellm.dev", "organizationmembers/finalizers", &["update"]),
    ("events.k8s.io", "events", &["create", "patch"]),
    ("coordination.k8s.io", "leases", &["get", "create", "patch"]),
    (
        "apiextensions.k8s.io",
        "customresourcedefinitions",
        &["get", "create", "patch"],
    ),
];

const CRD_NAMES: [&str; 2] = [
    "organizations.litellm.dev",
    "organizationmembers.litellm.dev",
];

type Triple = (String, String, String);

fn with_database(mut values: Value) -> Value {
    if values.get("database").is_none() {
        values["database"] = json!({ "url": DB_URL });
    }
    values
}

/// A rendered release: its objects (every document of every template) and NOTES.txt.
struct Release {
    objects: Vec<Value>,
    notes: String,
}

impl Release {
    fn all(&self, kind: &str) -> Vec<&Value> {
        self.objects.iter().filter(|o| o["kind"] == kind).collect()
    }

    fn one<T: DeserializeOwned>(&self, kind: &str, name: &str) -> T {
        let found: Vec<&Value> = self
            .all(kind)
            .into_iter()
            .filter(|o| o["metadata"]["name"] == name)
            .collect();
        assert_eq!(found.len(), 1, "exactly one {kind} {name}");
        serde_json::from_value(found[0].clone())
            .unwrap_or_else(|e| panic!("{kind} {name} is not a valid {kind}: {e}"))
    }

    fn kinds(&self) -> Vec<String> {
        let mut kinds: Vec<String> = self
            .objects
            .iter()
            .map(|o| o["kind"].as_str().unwrap_or_default().to_string())
            .collect();
        kinds.sort();
        kinds
    }

    fn deployment(&self) -> Deployment {
        self.one("Deployment", FULLNAME)
    }

    fn pod(&self) -> PodSpec {
        self.deployment().spec.template.spec.expect("pod spec")
    }

    fn container(&self) -> Container {
        let pod = self.pod();
        assert_eq!(pod.containers.len(), 1);
        pod.containers[0].clone()
    }

    fn args(&self) -> Vec<String> {
        self.container().args.expect("args")
    }

    /// Every (group, resource, verb) granted by the rendered Roles and ClusterRoles.
    fn granted(&self) -> BTreeSet<Triple> {
        let mut rules: Vec<PolicyRule> = Vec::new();
        for o in self.all("ClusterRole") {
            let role: ClusterRole = serde_json::from_value(o.clone()).expect("ClusterRole");
            assert!(role.aggregation_rule.is_none());
            rules.extend(role.rules.unwrap_or_default());
        }
        for o in self.all("Role") {
            let role: Role = serde_json::from_value(o.clone()).expect("Role");
            rules.extend(role.rules.unwrap_or_default());
        }
        let mut granted = BTreeSet::new();
        for rule in rules {
            assert!(rule.non_resource_urls.is_none(), "{rule:?}");
            for group in rule.api_groups.unwrap_or_default() {
                for resource in rule.resources.clone().unwrap_or_default() {
                    for verb in &rule.verbs {
                        granted.insert((group.clone(), resource.clone(), verb.clone()));
                    }
                }
            }
        }
        granted
    }
}

fn render_result(values: &Value) -> Result<Rendered, String> {
    support::helm::install_dry_run(values, RELEASE, NAMESPACE)
}

fn render(values: Value) -> Release {
    let rendered =
        render_result(&values).unwrap_or_else(|e| panic!("render failed for {values}: {e}"));
    let mut objects = Vec::new();
    for source in &rendered.sources {
        let path = &source.path;
        for doc in support::helm::objects_of(&source.text, path) {
            for field in ["apiVersion", "kind"] {
                assert!(doc[field].is_string(), "{path}: no {field}");
            }
            assert!(doc["metadata"]["name"].is_string(), "{path}: no name");
            objects.push(doc);
        }
    }
    assert!(!rendered.notes.is_empty(), "NOTES.txt renders");
    Release {
        objects,
        notes: rendered.notes,
    }
}

/// Renders values that must be refused; returns Helm's error message.
fn render_error(values: Value) -> String {
    match render_result(&values) {
        Ok(_) => panic!("rendered, yet should fail: {values}"),
        Err(error) => error,
    }
}

/// Helm refuses `values` with a message containing `expected`.
fn assert_refused(values: Value, expected: &str) {
    let error = render_error(values.clone());
    assert!(
        error.contains(expected),
        "{values}: {expected:?} not in {error:?}"
    );
}

fn triples(rules: &[(&str, &str, &[&str])]) -> BTreeSet<Triple> {
    let mut set = BTreeSet::new();
    for (group, resource, verbs) in rules {
        for verb in *verbs {
            set.insert((group.to_string(), resource.to_string(), verb.to_string()));
        }
    }
    set
}

fn allowed() -> BTreeSet<Triple> {
    triples(ALLOWED_RULES)
}

fn watch_triples() -> BTreeSet<Triple> {
    allowed()
        .into_iter()
        .filter(|(g, _, _)| g == "litellm.dev" || g == "events.k8s.io")
        .collect()
}

fn group_triples(group: &str) -> BTreeSet<Triple> {
    allowed()
        .into_iter()
        .filter(|(g, _, _)| g == group)
        .collect()
}

fn union(sets: &[BTreeSet<Triple>]) -> BTreeSet<Triple> {
    sets.iter().flatten().cloned().collect()
}

/// Lint runs Helm's own checks (Chart.yaml, YAML of every template, schema). In lint mode Helm
/// logs a template's `fail` instead of failing, so the database checks are tested by rendering.
#[test]
fn lint_passes_strict_with_a_database() {
    for database in [
        json!({ "url": DB_URL }),
        json!({ "existingSecret": "litellm-db", "secretKey": "DATABASE_URL" }),
    ] {
        let lint = support::helm::lint(&json!({ "database": database }), NAMESPACE);
        assert!(lint.success, "{lint:?}");
        assert!(
            lint.stdout.contains("1 chart(s) linted, 0 chart(s) failed"),
            "{lint:?}"
        );
        // [INFO] ("icon is recommended") is fine; strict fails on warnings, yet none is wanted.
        for level in ["[WARNING]", "[ERROR]"] {
            assert!(!lint.stdout.contains(level), "{lint:?}");
        }
    }
}

#[test]
fn lint_reports_values_that_break_the_schema() {
    let lint = support::helm::lint(
        &json!({ "database": { "url": DB_URL }, "replicaCount": 0 }),
        NAMESPACE,
    );
    assert!(!lint.success, "{lint:?}");
    assert!(
        lint.stdout
            .lines()
            .any(|l| l.starts_with("[ERROR] values.yaml:") && l.contains("/replicaCount")),
        "{lint:?}"
    );
    assert!(
        lint.stderr.contains("1 chart(s) linted, 1 chart(s) failed"),
        "{lint:?}"
    );
}

#[test]
fn default_release_renders_exactly_the_expected_objects() {
    let release = render(with_database(json!({})));
    assert_eq!(
        release.kinds(),
        [
            "ClusterRole",
            "ClusterRole",
            "ClusterRoleBinding",
            "ClusterRoleBinding",
            "Deployment",
            "Secret",
            "Service",
            "ServiceAccount",
        ]
    );
    for o in &release.objects {
        let labels = &o["metadata"]["labels"];
        assert_eq!(labels["app.kubernetes.io/instance"], RELEASE, "{o}");
        assert_eq!(labels["app.kubernetes.io/name"], "litellm-org-operator");
        let cluster_scoped =
            ["ClusterRole", "ClusterRoleBinding"].contains(&o["kind"].as_str().unwrap_or_default());
        if !cluster_scoped {
            assert_eq!(o["metadata"]["namespace"], NAMESPACE, "{o}");
        }
    }
    assert_eq!(release.deployment().spec.replicas, Some(1));
    assert!(release.notes.contains(&format!("deployment/{FULLNAME}")));
}

#[test]
fn pod_runs_restricted_with_probes_and_resources() {
    let release = render(with_database(json!({})));
    let pod = release.pod();
    let psc = pod.security_context.clone().expect("pod securityContext");
    assert_eq!(psc.run_as_non_root, Some(true));
    assert_eq!(psc.run_as_user, Some(65532));
    assert_eq!(psc.run_as_group, Some(65532));
    assert_eq!(psc.fs_group, Some(65532));
    assert_eq!(
        psc.seccomp_profile.expect("seccomp").type_,
        "RuntimeDefault"
    );
    assert_eq!(pod.automount_service_account_token, Some(true));
    assert_eq!(pod.service_account_name.as_deref(), Some(FULLNAME));
    assert!(pod.host_network.is_none() && pod.host_pid.is_none());

    let sa: ServiceAccount = release.one("ServiceAccount", FULLNAME);
    assert_eq!(sa.automount_service_account_token, Some(false));

    let c = release.container();
    let sc = c
        .security_context
        .clone()
        .expect("container securityContext");
    assert_eq!(sc.run_as_non_root, Some(true));
    assert_eq!(sc.run_as_user, Some(65532));
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(sc.privileged, Some(false));
    let caps = sc.capabilities.expect("capabilities");
    assert_eq!(caps.drop, Some(vec!["ALL".to_string()]));
    assert!(caps.add.is_none());
    assert_eq!(sc.seccomp_profile.expect("seccomp").type_, "RuntimeDefault");

    assert_eq!(c.image.as_deref(), Some("litellm-org-operator:0.1.0"));
    let ports = c.ports.clone().expect("ports");
    assert_eq!(ports.len(), 1);
    assert_eq!(
        (ports[0].name.as_deref(), ports[0].container_port),
        (Some("http"), 8080)
    );
    for (probe, path) in [
        (&c.liveness_probe, "/healthz"),
        (&c.readiness_probe, "/readyz"),
    ] {
        let get = probe
            .clone()
            .and_then(|p| p.http_get)
            .expect("httpGet probe");
        assert_eq!(get.path.as_deref(), Some(path));
        assert_eq!(
            serde_json::to_value(&get.port).expect("port"),
            json!("http")
        );
    }

    let resources = serde_json::to_value(c.resources.expect("resources")).expect("json");
    assert_eq!(
        resources,
        json!({"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}})
    );
    let env: Vec<String> = c
        .env
        .unwrap_or_default()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(env, ["RUST_LOG", "POD_NAME", "POD_NAMESPACE"]);
}

#[test]
fn args_follow_the_values() {
    let defaults = render(with_database(json!({}))).args();
    assert_eq!(
        defaults,
        [
            "run",
            "--concurrency",
            "4",
            "--resync-interval",
            "5m",
            "--database-url-file",
            "/etc/litellm-org-operator/database/url",
            "--http-addr",
            "0.0.0.0:8080",
            "--log-format",
            "json",
            "--manager",
            "operator",
            "--ledger-schema",
            "litellm_org_operator",
            "--install-crds",
        ]
    );

    let tuned = render(with_database(json!({
        "concurrency": 16, "resyncInterval": "90s", "logFormat": "text",
        "installCRDs": false, "leaderElection": {"enabled": true},
        "watchNamespaces": ["team-a", "team-b"],
        "manager": "cluster-eu", "ledgerSchema": "ops",
        "newUserDefaults": {"models": ["gpt-4o", "claude"], "maxBudget": 0, "budgetDuration": "30d"},
    })))
    .args();
    assert_eq!(
        tuned,
        [
            "run",
            "--concurrency",
            "16",
            "--resync-interval",
            "90s",
            "--database-url-file",
            "/etc/litellm-org-operator/database/url",
            "--http-addr",
            "0.0.0.0:8080",
            "--log-format",
            "text",
            "--manager",
            "cluster-eu",
            "--ledger-schema",
            "ops",
            "--new-user-models",
            "gpt-4o,claude",
            "--new-user-max-budget",
            "0",
            "--new-user-budget-duration",
            "30d",
            "--leader-elect",
            "--namespace",
            "team-a",
            "--namespace",
            "team-b",
        ]
    );
}

/// The database volume and its mount; returns (secret name, key mounted as `url`).
fn database_mount(release: &Release) -> (String, String) {
    let c = release.container();
    let mounts = c.volume_mounts.expect("mounts");
    let mount = mounts
        .iter()
        .find(|m| m.mount_path == "/etc/litellm-org-operator/database")
        .expect("database mount");
    assert_eq!(mount.read_only, Some(true));
    assert!(mount.sub_path.is_none());
    let volumes = release.pod().volumes.expect("volumes");
    let volume = volumes
        .iter()
        .find(|v| v.name == mount.name)
        .expect("volume");
    let secret = volume.secret.clone().expect("a Secret volume");
    let items = secret.items.expect("items");
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].path, "url", "mounted as .../database/url");
    assert_eq!(secret.default_mode, Some(0o440));
    // The URL reaches the operator only as that file.
    let env = serde_json::to_string(&c.env).expect("env");
    assert!(
        !env.contains("postgres://") && !env.contains("secretKeyRef"),
        "{env}"
    );
    assert!(
        !c.args
            .unwrap_or_default()
            .iter()
            .any(|a| a.contains("postgres"))
    );
    (
        secret.secret_name.expect("secretName"),
        items[0].key.clone(),
    )
}

#[test]
fn database_url_value_renders_a_secret_mounted_read_only() {
    let release = render(with_database(json!({})));
    let name = format!("{FULLNAME}-database");
    let secret: Secret = release.one("Secret", &name);
    let data = secret.string_data.expect("stringData");
    assert_eq!(data.get("url").map(String::as_str), Some(DB_URL));
    assert_eq!(database_mount(&release), (name, "url".to_string()));
    let annotations = release
        .deployment()
        .spec
        .template
        .metadata
        .and_then(|m| m.annotations)
        .unwrap_or_default();
    assert!(
        annotations.contains_key("checksum/database"),
        "a URL change restarts the pod"
    );
    let other = render(with_database(
        json!({"database": {"url": "postgres://x@other/db"}}),
    ));
    let other_annotations = other
        .deployment()
        .spec
        .template
        .metadata
        .and_then(|m| m.annotations)
        .unwrap_or_default();
    assert_ne!(
        annotations.get("checksum/database"),
        other_annotations.get("checksum/database")
    );
}

#[test]
fn existing_secret_is_mounted_and_no_secret_is_rendered() {
    let release = render(json!({
        "database": {"existingSecret": "litellm-db", "secretKey": "DATABASE_URL"},
    }));
    assert!(release.all("Secret").is_empty());
    assert_eq!(
        database_mount(&release),
        ("litellm-db".to_string(), "DATABASE_URL".to_string())
    );
    assert!(release.notes.contains("litellm-db"));
}

/// Every combination of the values that shape RBAC, with the exact grants expected.
fn rbac_cases() -> Vec<(Value, BTreeSet<Triple>)> {
    let crds = group_triples("apiextensions.k8s.io");
    let leases = group_triples("coordination.k8s.io");
    let watch = watch_triples();
    vec![
        (json!({}), union(&[watch.clone(), crds.clone()])),
        (
            json!({"leaderElection": {"enabled": true}}),
            union(&[watch.clone(), crds.clone(), leases.clone()]),
        ),
        (
            json!({"replicaCount": 3}),
            union(&[watch.clone(), crds.clone(), leases.clone()]),
        ),
        (json!({"installCRDs": false}), watch.clone()),
        (
            json!({"watchNamespaces": ["team-a", "team-b"]}),
            union(&[watch.clone(), crds.clone()]),
        ),
        (
            json!({"watchNamespaces": ["team-a"], "installCRDs": false, "replicaCount": 2}),
            union(&[watch.clone(), leases.clone()]),
        ),
        (
            json!({"serviceMonitor": {"enabled": true}, "networkPolicy": {"enabled": true}}),
            union(&[watch, crds]),
        ),
    ]
}

#[test]
fn rbac_grants_nothing_beyond_the_allow_list() {
    let allowed = allowed();
    for (values, expected) in rbac_cases() {
        let release = render(with_database(values.clone()));
        let granted = release.granted();
        let extra: Vec<&Triple> = granted.difference(&allowed).collect();
        assert!(
            extra.is_empty(),
            "{values}: grants beyond the allow-list: {extra:?}"
        );
        assert_eq!(granted, expected, "{values}");
        let text = serde_json::to_string(&release.objects).expect("json");
        assert!(!text.contains("\"*\""), "{values}: a wildcard in RBAC");
    }
}

#[test]
fn crd_rules_are_limited_to_the_two_crds() {
    let release = render(with_database(json!({})));
    let role: ClusterRole = release.one("ClusterRole", &format!("{FULLNAME}-crds"));
    for rule in role.rules.expect("rules") {
        let names = rule.resource_names.clone().unwrap_or_default();
        if rule.verbs == ["create"] {
            // A create carries its name in the body: RBAC cannot limit it by name.
            assert!(names.is_empty());
        } else {
            assert_eq!(names, CRD_NAMES, "{rule:?}");
        }
    }
}

#[test]
fn watch_namespaces_give_a_role_per_namespace_instead_of_a_cluster_role() {
    let release = render(with_database(
        json!({"watchNamespaces": ["team-a", "team-b"]}),
    ));
    // The only cluster-wide grant left is the CRD one (CRDs are cluster-scoped).
    let cluster_roles: Vec<&Value> = release.all("ClusterRole");
    assert_eq!(cluster_roles.len(), 1);
    assert_eq!(
        cluster_roles[0]["metadata"]["name"],
        format!("{FULLNAME}-crds")
    );
    let mut namespaces = Vec::new();
    for o in release.all("Role") {
        let role: Role = serde_json::from_value(o.clone()).expect("Role");
        let ns = role.metadata.namespace.clone().expect("namespace");
        let rules = role.rules.expect("rules");
        assert!(
            rules
                .iter()
                .all(|r| r.api_groups.as_deref() != Some(&["apiextensions.k8s.io".to_string()]))
        );
        namespaces.push(ns);
    }
    namespaces.sort();
    assert_eq!(namespaces, ["team-a", "team-b"]);
    check_bindings(&release);
}

/// Every binding points at a rendered role, in its namespace, for the operator's ServiceAccount.
fn check_bindings(release: &Release) {
    let mut count = 0;
    for binding_kind in ["RoleBinding", "ClusterRoleBinding"] {
        for b in release.all(binding_kind) {
            let role_kind = b["roleRef"]["kind"].as_str().expect("roleRef.kind");
            let role_name = &b["roleRef"]["name"];
            let role = release
                .all(role_kind)
                .into_iter()
                .find(|r| {
                    &r["metadata"]["name"] == role_name
                        && r["metadata"]["namespace"] == b["metadata"]["namespace"]
                })
                .unwrap_or_else(|| panic!("{binding_kind} {b} points at no rendered {role_kind}"));
            assert_eq!(role["metadata"]["name"], *role_name);
            assert_eq!(
                b["subjects"],
                json!([{"kind": "ServiceAccount", "name": FULLNAME, "namespace": NAMESPACE}])
            );
            count += 1;
        }
    }
    assert!(count >= 2);
}

#[test]
fn leader_election_follows_replicas_and_gets_a_lease_role() {
    let one = render(with_database(json!({})));
    assert!(!one.args().contains(&"--leader-elect".to_string()));
    assert_eq!(
        strategy(&one),
        "Recreate",
        "two operators never overlap without a lease"
    );
    assert!(one.all("Role").is_empty());

    for values in [
        json!({"replicaCount": 2}),
        json!({"leaderElection": {"enabled": true}}),
    ] {
        let release = render(with_database(values.clone()));
        assert!(
            release.args().contains(&"--leader-elect".to_string()),
            "{values}"
        );
        assert_eq!(strategy(&release), "RollingUpdate");
        let role: Role = release.one("Role", &format!("{FULLNAME}-leader-election"));
        assert_eq!(role.metadata.namespace.as_deref(), Some(NAMESPACE));
        check_bindings(&release);
    }
}

fn strategy(release: &Release) -> String {
    release
        .deployment()
        .spec
        .strategy
        .and_then(|s| s.type_)
        .expect("strategy")
}

#[test]
fn install_crds_off_drops_the_flag_and_the_crd_rules() {
    let release = render(with_database(json!({"installCRDs": false})));
    assert!(!release.args().contains(&"--install-crds".to_string()));
    assert!(
        release
            .granted()
            .iter()
            .all(|(g, _, _)| g != "apiextensions.k8s.io")
    );
    assert!(
        release
            .notes
            .contains("kubectl apply --server-side --force-conflicts -f crds/")
    );
}

#[test]
fn service_monitor_and_network_policy() {
    let release = render(with_database(json!({
        "serviceMonitor": {"enabled": true, "labels": {"release": "prometheus"}},
        "networkPolicy": {"enabled": true, "database": {"port": 6432}},
    })));
    let pod_labels = release
        .deployment()
        .spec
        .template
        .metadata
        .and_then(|m| m.labels)
        .expect("pod labels");

    let service: Service = release.one("Service", &format!("{FULLNAME}-metrics"));
    let spec = service.spec.expect("service spec");
    for (k, v) in spec.selector.expect("selector") {
        assert_eq!(
            pod_labels.get(&k),
            Some(&v),
            "the Service selects the operator pods"
        );
    }
    let ports = spec.ports.expect("ports");
    assert_eq!(ports.len(), 1);
    assert_eq!(
        (ports[0].name.as_deref(), ports[0].port),
        (Some("http"), 8080)
    );

    let monitors = release.all("ServiceMonitor");
    assert_eq!(monitors.len(), 1);
    let monitor = monitors[0];
    assert_eq!(monitor["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(monitor["metadata"]["labels"]["release"], "prometheus");
    assert_eq!(
        monitor["spec"]["endpoints"],
        json!([{"port": "http", "path": "/metrics", "interval": "30s", "scrapeTimeout": "10s",
                "honorLabels": true}])
    );
    let service_labels = serde_json::to_value(service.metadata.labels).expect("labels");
    for (k, v) in monitor["spec"]["selector"]["matchLabels"]
        .as_object()
        .expect("matchLabels")
    {
        assert_eq!(
            &service_labels[k], v,
            "the ServiceMonitor selects the metrics Service"
        );
    }

    let policy: NetworkPolicy = release.one("NetworkPolicy", FULLNAME);
    let spec = policy.spec.expect("policy spec");
    let selector = spec
        .pod_selector
        .and_then(|s| s.match_labels)
        .expect("podSelector");
    for (k, v) in selector {
        assert_eq!(pod_labels.get(&k), Some(&v));
    }
    assert_eq!(
        spec.policy_types,
        Some(vec!["Ingress".into(), "Egress".into()])
    );
    let port_list = |ports: Option<Vec<k8s_openapi::api::networking::v1::NetworkPolicyPort>>| {
        ports
            .unwrap_or_default()
            .into_iter()
            .map(|p| {
                let port = serde_json::to_value(p.port).expect("port");
                format!("{}/{port}", p.protocol.unwrap_or_default())
            })
            .collect::<Vec<_>>()
    };
    let ingress = spec.ingress.expect("ingress");
    assert_eq!(ingress.len(), 1);
    assert_eq!(port_list(ingress[0].ports.clone()), ["TCP/8080"]);
    let egress: Vec<Vec<String>> = spec
        .egress
        .expect("egress")
        .into_iter()
        .map(|rule| port_list(rule.ports))
        .collect();
    assert_eq!(
        egress,
        [
            vec!["UDP/53", "TCP/53"],
            vec!["TCP/6432"],
            vec!["TCP/443", "TCP/6443"]
        ]
    );
}

#[test]
fn pod_settings_pass_through() {
    let release = render(with_database(json!({
        "image": {"repository": "registry.example.com/litellm-org-operator", "tag": "0.1.1", "pullPolicy": "Always"},
        "imagePullSecrets": [{"name": "regcred"}],
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ops", "effect": "NoSchedule"}],
        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [{"key": "pool", "operator": "In", "values": ["ops"]}]}]}}},
        "podAnnotations": {"example.com/team": "platform"},
        "extraEnv": [{"name": "OTEL_SERVICE_NAME", "value": "litellm-org-operator"}],
        "logLevel": "litellm_org_operator=debug,info",
    })));
    let deployment = serde_json::to_value(release.deployment()).expect("json");
    let pod = &deployment["spec"]["template"];
    assert_eq!(
        pod["metadata"]["annotations"]["example.com/team"],
        "platform"
    );
    assert_eq!(
        pod["spec"]["imagePullSecrets"],
        json!([{"name": "regcred"}])
    );
    assert_eq!(
        pod["spec"]["nodeSelector"],
        json!({"kubernetes.io/os": "linux"})
    );
    assert_eq!(pod["spec"]["tolerations"][0]["key"], "dedicated");
    assert_eq!(
        pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
            [0]["matchExpressions"][0]["key"],
        "pool"
    );
    let c = release.container();
    assert_eq!(
        c.image.as_deref(),
        Some("registry.example.com/litellm-org-operator:0.1.1")
    );
    assert_eq!(c.image_pull_policy.as_deref(), Some("Always"));
    let env = serde_json::to_value(c.env).expect("env");
    assert_eq!(
        env[0],
        json!({"name": "RUST_LOG", "value": "litellm_org_operator=debug,info"})
    );
    assert_eq!(
        env[3],
        json!({"name": "OTEL_SERVICE_NAME", "value": "litellm-org-operator"})
    );
}

#[test]
fn invalid_values_are_rejected_naming_the_value() {
    let url = json!({"url": DB_URL});
    let cases = [
        (json!({"replicaCount": 0, "database": url}), "/replicaCount"),
        (json!({"concurrency": 0, "database": url}), "/concurrency"),
        (json!({"logFormat": "xml", "database": url}), "/logFormat"),
        (
            json!({"resyncInterval": "5 minutes", "database": url}),
            "/resyncInterval",
        ),
        (
            json!({"replicas": 2, "database": url}),
            "'replicas' not allowed",
        ),
        (
            json!({"database": {"existingsecret": "pg"}}),
            "'existingsecret' not allowed",
        ),
        (
            json!({"watchNamespaces": ["Team_A"], "database": url}),
            "/watchNamespaces/0",
        ),
        (json!({}), "database.url"),
        (
            json!({"database": {"url": DB_URL, "existingSecret": "pg"}}),
            "not both",
        ),
        (
            json!({"replicaCount": 2, "leaderElection": {"enabled": false}, "database": url}),
            "leaderElection.enabled",
        ),
    ];
    for (values, expected) in cases {
        assert_refused(values, expected);
    }
}

#[test]
fn tenancy_grants_render_one_grant_arg_each_and_bad_entries_are_refused() {
    // No grant by default: each namespace reaches only what it declares.
    let defaults = render(with_database(json!({}))).args();
    assert!(
        !defaults.iter().any(|a| a.starts_with("--grant")),
        "{defaults:?}"
    );

    let granted = render(with_database(json!({"tenancy": {"grants": [
        {"namespace": "tenant-b", "organizationIds": ["org-finance-2024", "org-shared-*"]},
        {"namespace": "team-*", "organizationIds": ["org-team"]},
        {"namespace": "*", "organizationIds": ["*"]},
    ]}})))
    .args();
    let grants: Vec<&String> = granted
        .iter()
        .filter(|a| a.starts_with("--grant"))
        .collect();
    assert_eq!(
        grants,
        [
            "--grant=tenant-b=org-finance-2024",
            "--grant=tenant-b=org-shared-*",
            "--grant=team-*=org-team",
            "--grant=*=*",
        ]
    );
    // Each one is a grant the operator reads, and means what the values say.
    let parsed: Vec<Grant> = grants
        .iter()
        .map(|a| {
            let text = a.strip_prefix("--grant=").expect("--grant=");
            text.parse::<Grant>().unwrap_or_else(|e| panic!("{a}: {e}"))
        })
        .collect();
    assert!(parsed[0].covers("tenant-b", "org-finance-2024"));
    assert!(!parsed[0].covers("tenant-c", "org-finance-2024"));
    assert!(parsed[1].covers("tenant-b", "org-shared-eu"));
    assert!(parsed[2].covers("team-a", "org-team"));
    assert!(parsed[3].covers("anywhere", "anything"));

    let url = json!({"url": DB_URL});
    let grant = |g: Value| json!({"database": url, "tenancy": {"grants": [g]}});
    let cases = [
        (
            grant(json!({"namespace": "tenant-b", "organizationIds": []})),
            "/tenancy/grants/0/organizationIds",
        ),
        (
            grant(json!({"namespace": "tenant-b", "organizationIds": [""]})),
            "/tenancy/grants/0/organizationIds/0",
        ),
        (grant(json!({"namespace": "tenant-b"})), "organizationIds"),
        (
            grant(
                json!({"namespace": "tenant-b", "organizationIds": ["x"], "organizationId": "y"}),
            ),
            "'organizationId' not allowed",
        ),
        (
            grant(json!({"namespace": "Tenant_B", "organizationIds": ["x"]})),
            "/tenancy/grants/0/namespace",
        ),
        (
            grant(json!({"namespace": "tenant-b", "organizationIds": ["org*x"]})),
            "/tenancy/grants/0/organizationIds/0",
        ),
        (
            grant(json!({"namespace": 7, "organizationIds": ["x"]})),
            "/tenancy/grants/0/namespace",
        ),
        (
            json!({"database": url, "tenancy": {"grant": []}}),
            "'grant' not allowed",
        ),
    ];
    for (values, expected) in cases {
        assert_refused(values, expected);
    }
}

/// Every key of values.yaml is declared in values.schema.json (down to the free-form maps), so
/// no value escapes validation and `additionalProperties: false` never rejects a default.
#[test]
fn values_schema_declares_every_value() {
    let values: Value = serde_yaml::from_str(
        &std::fs::read_to_string(format!("{CHART}/values.yaml")).expect("values.yaml"),
    )
    .expect("values.yaml parses");
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{CHART}/values.schema.json")).expect("schema"),
    )
    .expect("values.schema.json parses");
    assert_eq!(schema["$schema"], "http://json-schema.org/draft-07/schema#");
    assert_eq!(schema["additionalProperties"], false);

    fn walk(path: &str, value: &Value, schema: &Value, checked: &mut usize) {
        let Some(map) = value.as_object() else { return };
        let Some(props) = schema["properties"].as_object() else {
            return;
        };
        for (key, child) in map {
            let child_schema = props
                .get(key)
                .unwrap_or_else(|| panic!("{path}{key} is not in values.schema.json"));
            assert!(
                child_schema.get("type").is_some(),
                "{path}{key} has no type in values.schema.json"
            );
            *checked += 1;
            walk(&format!("{path}{key}."), child, child_schema, checked);
        }
    }
    let mut checked = 0;
    walk("", &values, &schema, &mut checked);
    assert!(checked >= 40, "checked {checked} values");
}

#[test]
fn chart_crds_are_the_generated_crds_byte_for_byte() {
    let generated = std::fs::read("crds/litellm.dev.yaml").expect("crds/litellm.dev.yaml");
    let chart = std::fs::read(format!("{CHART}/crds/litellm.dev.yaml")).expect("chart CRDs");
    assert!(
        generated == chart,
        "{CHART}/crds/litellm.dev.yaml differs from crds/litellm.dev.yaml: \
         cp crds/litellm.dev.yaml {CHART}/crds/"
    );
    let files: Vec<String> = std::fs::read_dir(format!("{CHART}/crds"))
        .expect("chart crds/")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        files,
        ["litellm.dev.yaml"],
        "the chart's crds/ holds that one file"
    );

    // Helm itself finds both CRDs there.
    let crds = support::helm::crds(&with_database(json!({})), RELEASE, NAMESPACE);
    assert_eq!(crds.len(), 1, "{crds:?}");
    assert_eq!(crds[0].path, "litellm-org-operator/crds/litellm.dev.yaml");
    let names: Vec<String> = support::helm::objects_of(&crds[0].text, &crds[0].path)
        .iter()
        .filter_map(|v| v["metadata"]["name"].as_str().map(str::to_string))
        .collect();
    assert_eq!(names, CRD_NAMES);
}

#[test]
fn pod_disruption_budget_follows_replicas_and_values() {
    assert!(
        render(with_database(json!({})))
            .all("PodDisruptionBudget")
            .is_empty()
    );
    let two = render(with_database(json!({"replicaCount": 2})));
    let pdb: k8s_openapi::api::policy::v1::PodDisruptionBudget =
        two.one("PodDisruptionBudget", FULLNAME);
    let spec = pdb.spec.expect("spec");
    assert_eq!(
        serde_json::to_value(&spec.max_unavailable).expect("json"),
        json!(1)
    );
    assert!(spec.min_available.is_none());
    let selector = spec
        .selector
        .expect("selector")
        .match_labels
        .expect("labels");
    let pod_labels = two
        .deployment()
        .spec
        .template
        .metadata
        .expect("meta")
        .labels
        .expect("labels");
    for (k, v) in &selector {
        assert_eq!(
            pod_labels.get(k),
            Some(v),
            "the PDB selects the operator pods"
        );
    }
    let forced = render(with_database(json!({
        "podDisruptionBudget": {"enabled": true, "minAvailable": "50%"}
    })));
    let pdb: k8s_openapi::api::policy::v1::PodDisruptionBudget =
        forced.one("PodDisruptionBudget", FULLNAME);
    let spec = pdb.spec.expect("spec");
    assert_eq!(
        serde_json::to_value(&spec.min_available).expect("json"),
        json!("50%")
    );
    assert!(spec.max_unavailable.is_none());
    let off = render(with_database(
        json!({"replicaCount": 3, "podDisruptionBudget": {"enabled": false}}),
    ));
    assert!(off.all("PodDisruptionBudget").is_empty());
}

#[test]
fn pod_values_reach_the_deployment() {
    let release = render(with_database(json!({
        "revisionHistoryLimit": 3,
        "priorityClassName": "platform-critical",
        "podSecurityContext": {"fsGroup": 2000},
        "securityContext": {"runAsUser": 1001},
        "topologySpreadConstraints": [
            {"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "ScheduleAnyway"},
            {"maxSkew": 2, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "DoNotSchedule",
             "labelSelector": {"matchLabels": {"team": "x"}}},
        ],
        "extraArgs": ["--lease-name=lorg-eu"],
        "extraEnv": [{"name": "PGAPPNAME", "value": "litellm-org-operator"}],
        "extraVolumes": [{"name": "db-ca", "secret": {"secretName": "db-ca"}}],
        "extraVolumeMounts": [{"name": "db-ca", "mountPath": "/etc/db-ca", "readOnly": true}],
        "extraContainers": [{"name": "cloud-sql-proxy", "image": "gcr.io/cloud-sql-connectors/cloud-sql-proxy:2",
                             "args": ["--port=5432", "project:region:instance"]}],
    })));
    assert_eq!(release.deployment().spec.revision_history_limit, Some(3));
    let pod = release.pod();
    assert_eq!(
        pod.priority_class_name.as_deref(),
        Some("platform-critical")
    );
    // Overrides merge over the restricted defaults.
    let psc = pod.security_context.clone().expect("pod securityContext");
    assert_eq!(
        (psc.fs_group, psc.run_as_non_root, psc.run_as_user),
        (Some(2000), Some(true), Some(65532))
    );
    assert_eq!(pod.containers.len(), 2);
    assert_eq!(pod.containers[1].name, "cloud-sql-proxy");
    let c = pod.containers[0].clone();
    assert_eq!(c.name, "operator");
    let sc = c
        .security_context
        .clone()
        .expect("container securityContext");
    assert_eq!(
        (
            sc.run_as_user,
            sc.read_only_root_filesystem,
            sc.allow_privilege_escalation
        ),
        (Some(1001), Some(true), Some(false))
    );
    assert_eq!(
        sc.capabilities.and_then(|c| c.drop),
        Some(vec!["ALL".to_string()])
    );
    let args = c.args.clone().expect("args");
    assert_eq!(
        args.last().map(String::as_str),
        Some("--lease-name=lorg-eu")
    );
    // Every item as JSON text, to look for the ones the values added.
    fn texts<T: serde::Serialize>(items: &Option<Vec<T>>) -> Vec<String> {
        let items = items.as_deref().unwrap_or_default();
        items
            .iter()
            .map(|i| serde_json::to_string(i).expect("json"))
            .collect()
    }
    let env = texts(&c.env);
    assert!(
        env.contains(&json!({"name": "PGAPPNAME", "value": "litellm-org-operator"}).to_string()),
        "{env:?}"
    );
    let mounts = texts(&c.volume_mounts);
    assert!(
        mounts.contains(
            &json!({"name": "db-ca", "mountPath": "/etc/db-ca", "readOnly": true}).to_string()
        ),
        "{mounts:?}"
    );
    let volumes = texts(&pod.volumes);
    assert!(
        volumes.contains(&json!({"name": "db-ca", "secret": {"secretName": "db-ca"}}).to_string()),
        "{volumes:?}"
    );

    let spread = pod
        .topology_spread_constraints
        .clone()
        .expect("topologySpreadConstraints");
    assert_eq!(spread.len(), 2);
    let selector = |i: usize| {
        spread[i]
            .label_selector
            .clone()
            .expect("labelSelector")
            .match_labels
            .expect("labels")
    };
    let own = selector(0);
    assert_eq!(
        own.get("app.kubernetes.io/instance").map(String::as_str),
        Some(RELEASE)
    );
    assert_eq!(
        own.get("app.kubernetes.io/name").map(String::as_str),
        Some("litellm-org-operator")
    );
    assert_eq!(selector(1).get("team").map(String::as_str), Some("x"));
    assert_eq!(
        selector(1).len(),
        1,
        "a labelSelector given is kept as it is"
    );
}

#[test]
fn service_monitor_relabelings() {
    let relabel =
        json!([{"sourceLabels": ["__meta_kubernetes_pod_node_name"], "targetLabel": "node"}]);
    let drop = json!([{"sourceLabels": ["__name__"], "regex": "litellm_org_operator_database_.*", "action": "drop"}]);
    let release = render(with_database(json!({"serviceMonitor": {
        "enabled": true, "honorLabels": false, "relabelings": relabel, "metricRelabelings": drop,
    }})));
    let monitors = release.all("ServiceMonitor");
    let endpoint = &monitors[0]["spec"]["endpoints"][0];
    assert_eq!(endpoint["honorLabels"], false);
    assert_eq!(endpoint["relabelings"], relabel);
    assert_eq!(endpoint["metricRelabelings"], drop);
}

#[test]
fn schema_refuses_malformed_pod_values() {
    for (values, expected) in [
        (json!({"extraArgs": [1]}), "extraArgs"),
        (json!({"extraVolumeMounts": [{"name": "x"}]}), "mountPath"),
        (
            json!({"topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "zone"}]}),
            "whenUnsatisfiable",
        ),
        (
            json!({"podDisruptionBudget": {"maxUnavailable": "half"}}),
            "maxUnavailable",
        ),
        (json!({"revisionHistoryLimit": -1}), "revisionHistoryLimit"),
    ] {
        assert_refused(with_database(values), expected);
    }
}

/// The database from the keys of one Secret (CloudNativePG's application Secret), with
/// sslmode and a CA bundle: libpq's PG* variables from secretKeyRef, `--database postgres://`.
#[test]
fn database_from_the_keys_of_a_cloudnativepg_secret() {
    let release = render(json!({"database": {
        "existingSecret": "pg-app", "format": "keys", "keys": {"user": "username"},
        "sslmode": "verify-full", "ca": {"secretName": "pg-ca"},
    }}));
    let c = release.container();
    let args = c.args.clone().expect("args");
    let at = args
        .iter()
        .position(|a| a == "--database")
        .expect("--database");
    assert_eq!(args[at + 1], "postgres://");
    assert!(!args.iter().any(|a| a == "--database-url-file"), "{args:?}");
    let mut from_secret = Vec::new();
    let mut plain = Vec::new();
    for env in c.env.clone().unwrap_or_default() {
        match env.value_from.and_then(|v| v.secret_key_ref) {
            Some(r) => {
                assert_eq!(r.name, "pg-app");
                from_secret.push((env.name, r.key));
            }
            None => plain.push((env.name, env.value.unwrap_or_default())),
        }
    }
    from_secret.sort();
    let expected: Vec<(String, String)> = [
        ("PGDATABASE", "dbname"),
        ("PGHOST", "host"),
        ("PGPASSWORD", "password"),
        ("PGPORT", "port"),
        ("PGUSER", "username"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(from_secret, expected);
    assert!(
        plain.contains(&("PGSSLMODE".into(), "verify-full".into())),
        "{plain:?}"
    );
    assert!(
        plain.contains(&(
            "PGSSLROOTCERT".into(),
            "/etc/litellm-org-operator/database-ca/ca.crt".into()
        )),
        "{plain:?}"
    );
    let pod = release.pod();
    let volumes = serde_json::to_value(pod.volumes.clone().unwrap_or_default()).expect("json");
    assert!(
        !volumes.to_string().contains("\"database\""),
        "no URL file: {volumes}"
    );
    assert!(
        volumes.to_string().contains("\"secretName\":\"pg-ca\""),
        "{volumes}"
    );
    assert!(
        release.all("Secret").is_empty(),
        "the chart renders no Secret of its own"
    );
    assert!(
        release
            .notes
            .contains("Secret pg-app (keys host, port, dbname, username, password)"),
        "{}",
        release.notes
    );

    // A CA from a ConfigMap works with the URL layout too.
    let url = render(
        json!({"database": {"existingSecret": "db", "ca": {"configMapName": "db-ca", "key": "bundle.pem"}}}),
    );
    let env = serde_json::to_value(url.container().env)
        .expect("json")
        .to_string();
    assert!(
        env.contains("/etc/litellm-org-operator/database-ca/bundle.pem"),
        "{env}"
    );
    assert!(url.args().contains(&"--database-url-file".to_string()));

    for (values, expected) in [
        (
            json!({"database": {"url": DB_URL, "format": "keys"}}),
            "set database.existingSecret",
        ),
        (
            json!({"database": {"existingSecret": "x", "format": "parts"}}),
            "format",
        ),
        (
            json!({"database": {"existingSecret": "x", "sslmode": "verify"}}),
            "sslmode",
        ),
        (
            json!({"database": {"existingSecret": "x", "ca": {"secretName": "a", "configMapName": "b"}}}),
            "ca",
        ),
    ] {
        assert_refused(values, expected);
    }
}

/// NOTES.txt names only what the chart ships: no file of the repository (the chart has none
/// but its own), an inline manifest the CRDs accept, and the monitoring objects when enabled.
#[test]
fn notes_mention_only_what_the_chart_ships() {
    let release = render(with_database(json!({"watchNamespaces": ["team-a"]})));
    let notes = &release.notes;
    for absent in [
        "examples/",
        "quickstart",
        ".yaml",
        "crds/",
        "Alerts:",
        "Dashboard:",
    ] {
        assert!(!notes.contains(absent), "{absent:?} in NOTES:\n{notes}");
    }
    assert!(notes.contains("kubectl apply -f - <<EOF"), "{notes}");
    // The inline manifest parses into both kinds, in a watched namespace, and the CRD schema
    // accepts it.
    let manifest = support::helm::notes_manifest(notes);
    let docs: Vec<Value> = serde_yaml::Deserializer::from_str(&manifest)
        .map(|d| {
            serde_json::to_value(
                <serde_yaml::Value as serde::Deserialize>::deserialize(d).expect("YAML"),
            )
            .expect("json")
        })
        .collect();
    let kinds: Vec<&str> = docs
        .iter()
        .map(|d| d["kind"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(kinds, ["Organization", "OrganizationMember"]);
    for doc in &docs {
        assert_eq!(doc["metadata"]["namespace"], "team-a");
    }
    let _: litellm_org_operator::crd::Organization =
        serde_json::from_value(docs[0].clone()).expect("an Organization");
    let _: litellm_org_operator::crd::OrganizationMember =
        serde_json::from_value(docs[1].clone()).expect("an OrganizationMember");

    let full = render(with_database(json!({
        "installCRDs": false, "prometheusRule": {"enabled": true}, "grafanaDashboard": {"enabled": true},
    })));
    assert!(
        full.notes
            .contains("kubectl apply --server-side --force-conflicts -f crds/"),
        "{}",
        full.notes
    );
    assert!(full.notes.contains(&format!("prometheusrule/{FULLNAME}")));
    assert!(
        full.notes
            .contains(&format!("configmap/{FULLNAME}-dashboard"))
    );
}
