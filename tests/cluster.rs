//! What only a real control plane shows: apiextensions accepting the committed CRDs (structural
//! schema, CEL cost) and `kubectl explain` reading their descriptions; the namespace controller
//! deleting a namespace that holds objects with the operator's finalizer; the chart's defaults
//! (`--install-crds`, every namespace) on a cluster without the CRDs; and `kubectl wait`,
//! `describe` and `get events` over the operator's real work.

mod support;

use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use litellm_org_operator::crd::{Organization, OrganizationMember};
use serde_json::{Value, json};
use support::cluster::{CRD_NAMES, CRDS, Cluster, World};
use support::helm;
use support::kube::{Kubectl, member, organization};
use support::operator::{Operator, Options, http_get, member_ready, org_ready, poll, wait_for};

/// Whitespace collapsed to single spaces (kubectl wraps and aligns its text).
fn squeeze(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The committed CRDs as JSON documents.
fn committed_crds() -> Vec<Value> {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/crds/litellm.dev.yaml"
    ))
    .expect("read crds/");
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| serde::Deserialize::deserialize(doc).expect("CRD YAML"))
        .collect()
}

/// The CRD of `kind` with its group renamed to `group`: the same schema under a name no test
/// installs, for server-side dry runs of a create.
fn renamed(crd: &Value, group: &str) -> Value {
    let mut crd = crd.clone();
    let plural = crd["spec"]["names"]["plural"]
        .as_str()
        .expect("plural")
        .to_string();
    crd["metadata"] = json!({"name": format!("{plural}.{group}")});
    crd["spec"]["group"] = json!(group);
    crd
}

/// `kubectl get crd NAME -o jsonpath=TEMPLATE`.
async fn crd_jsonpath(kubectl: &Kubectl, name: &str, template: &str) -> String {
    let output = format!("jsonpath={template}");
    kubectl.ok(&["get", "crd", name, "-o", &output]).await
}

/// `kubectl create --dry-run=server -f FILE` of these documents: success and the output.
async fn dry_run_create(cluster: &Cluster, name: &str, docs: &[Value]) -> (bool, String) {
    let file = cluster.dir().join(name);
    let stream: String = docs.iter().map(|d| format!("---\n{d}\n")).collect();
    std::fs::write(&file, stream).expect("write");
    cluster
        .kubectl()
        .status(&[
            "create",
            "--dry-run=server",
            "-f",
            &file.display().to_string(),
        ])
        .await
}

/// `kubectl explain FIELD`, asked again (for at most a minute) while kubectl reports that
/// the resource is not in the published OpenAPI yet; any other failure fails at once.
async fn explain_when_published(kubectl: &Kubectl, field: &str) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let (ok, out) = kubectl.status(&["explain", field]).await;
        if ok {
            return out;
        }
        assert!(
            out.contains("couldn't find resource") && std::time::Instant::now() < deadline,
            "kubectl explain {field}: {out}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apiextensions_accepts_the_committed_crds_and_kubectl_explains_them() {
    let cluster = Cluster::shared().await;
    let kubectl = cluster.kubectl();
    // Installed by the admin when the control plane was first used: Established, names
    // accepted. An apply of the same file is accepted again (the update path).
    for name in CRD_NAMES {
        let template = "{range .status.conditions[*]}{.type}={.status};{end}";
        let conditions = crd_jsonpath(&kubectl, name, template).await;
        assert!(
            conditions.contains("Established=True") && conditions.contains("NamesAccepted=True"),
            "{name}: {conditions}"
        );
    }
    kubectl
        .ok(&["apply", "--server-side", "--dry-run=server", "-f", CRDS])
        .await;
    // The create path, through every check apiextensions makes on a new CRD (structural
    // schema, defaults, list-map keys, CEL compilation and cost): the same CRDs under
    // another group.
    let crds: Vec<Value> = committed_crds()
        .iter()
        .map(|c| renamed(c, "dry-run.litellm.dev"))
        .collect();
    let (ok, out) = dry_run_create(&cluster, "renamed.yaml", &crds).await;
    assert!(ok, "{out}");
    assert!(out.contains("created (server dry run)"), "{out}");

    // kubectl explain reads the published OpenAPI: our descriptions, field by field. The
    // apiserver publishes a CRD's OpenAPI some time after it is Established (on a shared
    // control plane the CRDs may have been installed a moment ago), so explain is asked
    // again, bounded, while the resource is not published yet.
    let explained = squeeze(&explain_when_published(&kubectl, "organization.spec.budget").await);
    let organization = committed_crds()
        .into_iter()
        .find(|c| c["spec"]["names"]["kind"] == "Organization")
        .expect("the Organization CRD");
    let budget = &organization["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
        ["properties"]["budget"];
    assert!(explained.contains("KIND: Organization"), "{explained}");
    let mut descriptions = vec![budget["description"].as_str().expect("description")];
    for (field, schema) in budget["properties"].as_object().expect("properties") {
        assert!(explained.contains(field.as_str()), "{field}: {explained}");
        descriptions.push(schema["description"].as_str().expect("description"));
    }
    for description in descriptions {
        assert!(
            explained.contains(&squeeze(description)),
            "{description:?} in: {explained}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apiextensions_refuses_a_cel_rule_over_the_cost_budget() {
    let cluster = Cluster::shared().await;
    // The models list without its maxItems, each item checked by a regular expression: a
    // CRD no test installs.
    let mut crd = committed_crds()
        .into_iter()
        .find(|c| c["spec"]["names"]["kind"] == "Organization")
        .map(|c| renamed(&c, "cost.litellm.dev"))
        .expect("the Organization CRD");
    let models = &mut crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
        ["properties"]["models"];
    models.as_object_mut().expect("models").remove("maxItems");
    models["x-kubernetes-validations"] = json!([{"rule": "self.all(m, m.matches('^[a-z]+$'))"}]);
    let (ok, out) = dry_run_create(&cluster, "costly.yaml", &[crd]).await;
    assert!(!ok, "accepted: {out}");
    assert!(
        out.contains("x-kubernetes-validations[0].rule")
            && out.contains("estimated rule cost exceeds budget"),
        "{out}"
    );
}

/// `SELECT count(*)` as text.
async fn count(world: &World, sql: &str) -> String {
    world.db.strings(sql).await.concat()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_namespace_runs_the_finalizers_and_leaves_no_rows() {
    // The chart's cluster-wide RBAC (its ClusterRole does not live in the namespace being
    // deleted); the operator, released in a namespace of its own, watches only `doomed`.
    let world = World::with_values("ns-delete", json!({"watchNamespaces": []})).await;
    let doomed = world.cluster.namespace("doomed").await;
    let op = world.operator(&["--namespace", &doomed]).await;
    let orgs: Api<Organization> = Api::namespaced(world.client(), &doomed);
    let members: Api<OrganizationMember> = Api::namespaced(world.client(), &doomed);
    for (name, spec) in [
        ("acme", json!({"budget": {"maxBudget": 100}})),
        ("globex", json!({})),
    ] {
        orgs.create(&PostParams::default(), &organization(name, spec))
            .await
            .expect("create organization");
    }
    for (name, org, email, budget) in [
        ("ann", "acme", "ann@example.com", Some(5)),
        ("bob", "acme", "bob@example.com", None),
        ("cy", "globex", "cy@example.com", None),
    ] {
        let mut spec = json!({"organizationRef": {"name": org}, "user": {"email": email}, "role": "internal_user"});
        if let Some(b) = budget {
            spec["maxBudgetInOrganization"] = json!(b);
        }
        members
            .create(&PostParams::default(), &member(name, spec))
            .await
            .expect("create member");
    }
    let mut ids = Vec::new();
    for name in ["acme", "globex"] {
        let org = wait_for(&orgs, name, 60, "Ready", org_ready).await;
        assert!(
            org.metadata
                .finalizers
                .iter()
                .flatten()
                .any(|f| f == "litellm.dev/cleanup")
        );
        ids.push(format!(
            "'{}'",
            org.status.and_then(|s| s.organization_id).expect("id")
        ));
    }
    for name in ["ann", "bob", "cy"] {
        wait_for(&members, name, 60, "Ready", member_ready).await;
    }
    let ids = ids.join(",");
    let budgets = world.db.strings(&format!(
        r#"SELECT budget_id FROM "LiteLLM_OrganizationTable" WHERE organization_id IN ({ids})
           UNION SELECT budget_id FROM "LiteLLM_OrganizationMembership" WHERE organization_id IN ({ids}) AND budget_id IS NOT NULL"#
    ))
    .await;
    assert_eq!(
        budgets.len(),
        3,
        "two organization budgets and ann's: {budgets:?}"
    );
    let budgets = budgets
        .iter()
        .map(|b| format!("'{b}'"))
        .collect::<Vec<_>>()
        .join(",");
    let ledger = format!(
        r#"SELECT count(*)::text FROM "litellm_org_operator"."ledger" WHERE "resource" LIKE '%/{doomed}/%'"#
    );
    assert_ne!(count(&world, &ledger).await, "0");

    // LiteLLM's UI gives globex a team: its delete will wait for an opt-in.
    let globex_id = ids.split(',').nth(1).expect("globex id").to_string();
    world
        .db
        .exec(&format!(
            r#"INSERT INTO "LiteLLM_TeamTable" (team_id, organization_id) VALUES ('ui-team', {globex_id})"#
        ))
        .await;

    // The namespace controller deletes the content; the objects wait on the finalizer, the
    // operator's cleanup runs: acme goes, globex waits (DeletionBlocked) and holds the
    // namespace in Terminating, its rows untouched.
    let namespaces: Api<Namespace> = Api::all(world.client());
    namespaces
        .delete(&doomed, &DeleteParams::default())
        .await
        .expect("delete the namespace");
    wait_for(
        &orgs,
        "globex",
        120,
        "DeletionBlocked",
        |o: &Organization| {
            o.status.as_ref().is_some_and(|s| {
                s.conditions.iter().any(|c| {
                    c.type_ == "Stalled" && c.status == "True" && c.reason == "DeletionBlocked"
                })
            })
        },
    )
    .await;
    poll(120, "acme's rows are deleted", || async {
        let left = count(
            &world,
            &format!(
                r#"SELECT count(*)::text FROM "LiteLLM_OrganizationTable" WHERE organization_id IN ({ids})"#
            ),
        )
        .await;
        (left == "1").then_some(()).ok_or(left)
    })
    .await;
    let terminating = namespaces.get(&doomed).await.expect("the namespace waits");
    assert_eq!(
        terminating.status.and_then(|s| s.phase).as_deref(),
        Some("Terminating")
    );
    assert_eq!(
        count(
            &world,
            r#"SELECT count(*)::text FROM "LiteLLM_TeamTable" WHERE team_id = 'ui-team'"#
        )
        .await,
        "1"
    );
    // The opt-in, on an object of a namespace being deleted: the cascade runs, the namespace
    // goes.
    orgs.patch(
        "globex",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"deleteTeamsAndKeys": true}})),
    )
    .await
    .expect("opt in");
    poll(180, "the namespace is deleted", || async {
        match namespaces.get_opt(&doomed).await {
            Ok(None) => Ok(()),
            Ok(Some(ns)) => Err(format!("still there: {:?}", ns.status)),
            Err(e) => Err(e.to_string()),
        }
    })
    .await;
    for (what, sql) in [
        (
            "organizations",
            format!(
                r#"SELECT count(*)::text FROM "LiteLLM_OrganizationTable" WHERE organization_id IN ({ids})"#
            ),
        ),
        (
            "memberships",
            format!(
                r#"SELECT count(*)::text FROM "LiteLLM_OrganizationMembership" WHERE organization_id IN ({ids})"#
            ),
        ),
        (
            "budgets",
            format!(
                r#"SELECT count(*)::text FROM "LiteLLM_BudgetTable" WHERE budget_id IN ({budgets})"#
            ),
        ),
        ("ledger entries", ledger.clone()),
        (
            "teams",
            r#"SELECT count(*)::text FROM "LiteLLM_TeamTable""#.to_string(),
        ),
    ] {
        assert_eq!(count(&world, &sql).await, "0", "{what} left behind");
    }
    assert_eq!(
        world.db.count("LiteLLM_UserTable").await,
        3,
        "users are never deleted"
    );
    op.kill().await;
    world.db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_wait_describe_and_get_events_show_the_operators_work() {
    let world = World::new("kubectl-ops").await;
    let op = world.operator(&[]).await;
    let kubectl = world.kubectl();
    let ns = world.ns.as_str();
    world
        .orgs
        .create(
            &PostParams::default(),
            &organization("research", json!({"budget": {"maxBudget": 10}})),
        )
        .await
        .expect("create");
    world
        .orgs
        .create(
            &PostParams::default(),
            &organization(
                "dangling",
                json!({"budgetRef": {"budgetId": "no-such-budget"}}),
            ),
        )
        .await
        .expect("create");
    let (ok, out) = kubectl
        .wait_ready(ns, &["lorg/research"], Duration::from_secs(60))
        .await;
    assert!(ok, "{out}");
    assert!(
        out.contains("organization.litellm.dev/research condition met"),
        "{out}"
    );
    let (ok, out) = kubectl
        .status(&[
            "wait",
            "-n",
            ns,
            "lorg/dangling",
            "--for=condition=Stalled",
            "--timeout=60s",
        ])
        .await;
    assert!(ok, "{out}");

    // The operator's events (events.k8s.io/v1), read back through core/v1 as kubectl does.
    let events = poll(30, "both events listed", || async {
        let table = squeeze(&kubectl.ok(&["get", "events", "-n", ns]).await);
        if table.contains("Normal Created organization/research")
            && table.contains("Warning BudgetNotFound organization/dangling")
        {
            Ok(table)
        } else {
            Err(table)
        }
    })
    .await;
    assert!(
        events.starts_with("LAST SEEN TYPE REASON OBJECT MESSAGE"),
        "{events}"
    );
    let described = squeeze(
        &kubectl
            .ok(&["describe", "lorg", "research", "-n", ns])
            .await,
    );
    let section = described
        .split_once("Events:")
        .map(|(_, e)| e)
        .unwrap_or_default();
    assert!(
        section.contains("Normal Created") && section.contains("litellm-org-operator"),
        "the operator's event in describe: {described}"
    );
    assert!(described.contains("Max Budget: 10"), "{described}");
    let selected = kubectl
        .ok(&[
            "get",
            "events",
            "-n",
            ns,
            "--field-selector",
            "involvedObject.kind=Organization,reason=BudgetNotFound",
            "-o",
            "jsonpath={.items[*].involvedObject.name}",
        ])
        .await;
    assert_eq!(selected.trim(), "dangling");
    op.kill().await;
    world.db.cleanup().await;
}

/// The operator as the chart deploys it by default, on a control plane without the CRDs: it
/// watches every namespace (a ClusterRole) and installs the CRDs itself (`--install-crds`,
/// the chart's RBAC on two named CRDs), which apiextensions accepts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_charts_defaults_install_the_crds_and_reconcile_every_namespace() {
    let cluster = Cluster::private().await;
    let world = World::on(
        cluster,
        "litellm-system",
        json!({"watchNamespaces": [], "installCRDs": true}),
    )
    .await;
    assert_eq!(world.access.args, ["--install-crds"]);
    // The container's arguments as the chart renders them by default, with the Secret's mount
    // path and the listen address swapped for local ones.
    let args = helm::container_args(&helm::render_objects(
        &json!({"database": {"existingSecret": "litellm-db"}}),
        "lorg",
        &world.ns,
    ));
    assert_eq!(args.first().map(String::as_str), Some("run"), "{args:?}");
    assert!(args.iter().any(|a| a == "--install-crds"), "{args:?}");
    assert!(
        !args.iter().any(|a| a == "--namespace"),
        "every namespace: {args:?}"
    );
    let url_file = world.cluster.dir().join("url");
    std::fs::write(&url_file, world.db.url()).expect("write url file");
    let mut local: Vec<String> = Vec::new();
    let mut it = args.iter().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--database-url-file" => {
                it.next();
                local.extend(["--database-url-file".into(), url_file.display().to_string()]);
            }
            // Replaced by the local address `Operator` gives every process.
            "--http-addr" => {
                it.next();
            }
            other => local.push(other.to_string()),
        }
    }
    let op = Operator::start_with(
        &world.access.kubeconfig,
        Options::default()
            .args(&local)
            .resync_interval(None)
            .rust_log("warn")
            .pod_name(None)
            .inherit_log(),
    )
    .await;
    let kubectl = world.kubectl();
    for name in CRD_NAMES {
        let managers = crd_jsonpath(&kubectl, name, "{.metadata.managedFields[*].manager}").await;
        assert!(
            managers.contains("litellm-org-operator"),
            "{name}: {managers}"
        );
    }
    // What `helm install` applies from the chart's crds/ is accepted over them.
    kubectl
        .ok(&[
            "apply",
            "--server-side",
            "-f",
            "charts/litellm-org-operator/crds/",
        ])
        .await;
    // Objects of both kinds in another namespace are reconciled.
    let team = world.cluster.namespace("ai-platform").await;
    let (ok, out) = kubectl
        .status(&[
            "apply",
            "-R",
            "-f",
            &kubectl
                .examples(&team)
                .join("quickstart")
                .display()
                .to_string(),
        ])
        .await;
    assert!(ok, "objects of both kinds are accepted: {out}");
    let (ok, out) = kubectl
        .wait_ready(
            &team,
            &["organizations,organizationmembers", "--all"],
            Duration::from_secs(90),
        )
        .await;
    assert!(ok, "{out}");
    let (code, metrics) = http_get(op.http(), "/metrics").await.expect("metrics");
    assert_eq!(code, 200);
    assert!(
        metrics.contains("litellm_org_operator_reconciles_total"),
        "{metrics}"
    );
    op.kill().await;
    world.db.cleanup().await;
}
