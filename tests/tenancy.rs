//! Tenancy end to end: a namespace reaches only the LiteLLM organizations it declares, and
//! others only where the chart's `tenancy.grants` (the operator's `--grant`) allow it. The
//! operator runs on the real control plane with exactly the chart's RBAC and arguments, on a
//! clone of LiteLLM's schema; each test has its own namespaces and database.

mod support;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use litellm_org_operator::crd::{Organization, OrganizationMember};
use serde_json::{Value, json};
use support::TestDb;
use support::cluster::{Cluster, World};
use support::kube::{member, organization};
use support::operator::{Operator, member_ready, org_ready, poll, wait_event, wait_for};

/// The memberships of an organization, as `user_id|user_role`.
async fn memberships(db: &TestDb, organization_id: &str) -> Vec<String> {
    db.strings_with(
        r#"SELECT user_id || '|' || user_role FROM "LiteLLM_OrganizationMembership" WHERE organization_id = $1 ORDER BY 1"#,
        &[organization_id],
    )
    .await
}

/// The organization's row and the budget row it points at, whole (every column), and its
/// ledger entries: equal before and after proves nothing of it was written.
async fn organization_rows(db: &TestDb, organization_id: &str) -> Vec<String> {
    let mut out = db.strings_with(
        r#"SELECT to_jsonb(o)::text FROM "LiteLLM_OrganizationTable" o WHERE organization_id = $1"#,
        &[organization_id],
    )
    .await;
    out.extend(
        db.strings_with(
            r#"SELECT to_jsonb(b)::text FROM "LiteLLM_BudgetTable" b JOIN "LiteLLM_OrganizationTable" o ON o.budget_id = b.budget_id WHERE o.organization_id = $1"#,
            &[organization_id],
        )
        .await,
    );
    out.extend(ledger(db, organization_id).await);
    out
}

/// The operator's ledger entry of an organization row, as `resource|created`.
async fn ledger(db: &TestDb, organization_id: &str) -> Vec<String> {
    db.strings_with(
        r#"SELECT resource || '|' || created::text FROM litellm_org_operator.ledger WHERE row_key = 'organization/' || $1"#,
        &[organization_id],
    )
    .await
}

/// An organization made in LiteLLM's UI: its own budget row (1000 USD) and the org row.
async fn ui_organization(db: &TestDb, organization_id: &str) {
    let budget = format!("{organization_id}-budget");
    db.exec_with(
        r#"INSERT INTO "LiteLLM_BudgetTable" (budget_id, max_budget, created_by, updated_by) VALUES ($1, 1000, 'admin', 'admin')"#,
        &[&budget],
    )
    .await;
    db.exec_with(
        r#"INSERT INTO "LiteLLM_OrganizationTable" (organization_id, organization_alias, budget_id, metadata, models, created_by, updated_by) VALUES ($1, 'Made in the UI', $2, '{}', '{}', 'admin', 'admin')"#,
        &[organization_id, &budget],
    )
    .await;
}

/// The `Stalled` condition when it is True with reason `NotGranted`.
fn refused(conditions: &[Condition]) -> Option<&Condition> {
    let ready_false = conditions
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "False" && c.reason == "NotGranted");
    conditions
        .iter()
        .find(|c| c.type_ == "Stalled" && c.status == "True" && c.reason == "NotGranted")
        .filter(|_| ready_false)
}

fn member_refused(m: &OrganizationMember) -> bool {
    m.status
        .as_ref()
        .is_some_and(|s| refused(&s.conditions).is_some())
}

fn org_refused(o: &Organization) -> bool {
    o.status
        .as_ref()
        .is_some_and(|s| refused(&s.conditions).is_some())
}

/// The message of a refused object's `Stalled` condition.
fn stalled_message(
    conditions: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
) -> String {
    refused(conditions).expect("refused").message.clone()
}

/// The refusal text: the rule, and both ways to grant it.
fn refusal(namespace: &str, action: &str, organization_id: &str, why: &str) -> String {
    format!(
        "namespace {namespace} may not {action} organization {organization_id}: {why} and no --grant covers it; grant it with the chart value tenancy.grants (namespace: {namespace}, organizationIds: [{organization_id}]) or --grant {namespace}={organization_id}"
    )
}

/// An operator released in `release_ns`, watching `namespaces`, with these `tenancy.grants`:
/// exactly the chart's RBAC and arguments for those values.
async fn operator(
    cluster: &Cluster,
    db: &TestDb,
    release_ns: &str,
    namespaces: &[&str],
    grants: Value,
) -> Operator {
    let access = cluster
        .operator_access(
            release_ns,
            json!({"watchNamespaces": namespaces, "tenancy": {"grants": grants}}),
        )
        .await;
    let grant_args: Vec<&String> = access
        .args
        .iter()
        .filter(|a| a.starts_with("--grant"))
        .collect();
    assert_eq!(
        grant_args.len(),
        grants.as_array().map_or(0, |g| g
            .iter()
            .map(|g| g["organizationIds"].as_array().map_or(0, Vec::len))
            .sum()),
        "the chart renders one --grant per namespace and id: {:?}",
        access.args
    );
    Operator::start_with(&access.kubeconfig, access.options(&db.url())).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_reaches_another_namespaces_organization_only_with_a_grant() {
    let cluster = Cluster::shared().await;
    let db = TestDb::litellm().await;
    let a = cluster.namespace("tenancy-a").await;
    let b = cluster.namespace("tenancy-b").await;
    let (orgs_a, members_b): (Api<Organization>, Api<OrganizationMember>) = (
        Api::namespaced(cluster.client(), &a),
        Api::namespaced(cluster.client(), &b),
    );
    let op = operator(&cluster, &db, &a, &[&a, &b], json!([])).await;

    // The platform team declares an organization in its namespace.
    orgs_a
        .create(
            &PostParams::default(),
            &organization("finance", json!({"organizationId": "org-finance-2024"})),
        )
        .await
        .expect("create finance");
    wait_for(&orgs_a, "finance", 60, "Ready", org_ready).await;
    let users_before = db.count("LiteLLM_UserTable").await;

    // Another namespace tries to make itself an admin there.
    members_b
        .create(
            &PostParams::default(),
            &member(
                "intruder",
                json!({"organizationId": "org-finance-2024", "user": {"email": "mallory@example.com"}, "role": "org_admin"}),
            ),
        )
        .await
        .expect("create the member");
    let stalled = wait_for(
        &members_b,
        "intruder",
        60,
        "Stalled NotGranted",
        member_refused,
    )
    .await;
    let expected = refusal(
        &b,
        "reach",
        "org-finance-2024",
        "it is not declared in this namespace",
    );
    assert_eq!(
        stalled_message(&stalled.status.as_ref().expect("status").conditions),
        expected
    );
    let event = wait_event(&cluster.client(), &b, "intruder", "Warning", "NotGranted").await;
    let note = event.note.unwrap_or_default();
    assert!(
        note.contains(&format!("--grant {b}=org-finance-2024")) && note.contains("tenancy.grants"),
        "the event names the grant: {note}"
    );
    // Nothing written: no membership, no user.
    assert_eq!(
        memberships(&db, "org-finance-2024").await,
        Vec::<String>::new()
    );
    assert_eq!(db.count("LiteLLM_UserTable").await, users_before);
    assert_eq!(
        db.strings_with(
            r#"SELECT user_id FROM "LiteLLM_UserTable" WHERE lower(user_email) = $1"#,
            &["mallory@example.com"]
        )
        .await,
        Vec::<String>::new()
    );
    op.kill().await;

    // The installer grants it: the member joins.
    let op = operator(
        &cluster,
        &db,
        &a,
        &[&a, &b],
        json!([{"namespace": b, "organizationIds": ["org-finance-2024"]}]),
    )
    .await;
    let ready = wait_for(
        &members_b,
        "intruder",
        60,
        "Ready with the grant",
        member_ready,
    )
    .await;
    let user = ready.status.and_then(|s| s.user_id).expect("status.userId");
    assert_eq!(
        memberships(&db, "org-finance-2024").await,
        vec![format!("{user}|org_admin")]
    );
    op.kill().await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adopting_an_organization_made_in_litellm_needs_a_grant() {
    let w = World::new("tenancy-adopt").await;
    let (db, orgs, ns) = (&w.db, &w.orgs, w.ns.as_str());
    ui_organization(db, "org-ui").await;
    let op = operator(&w.cluster, db, ns, &[ns], json!([])).await;
    let budgets = db.count("LiteLLM_BudgetTable").await;
    let before = organization_rows(db, "org-ui").await;
    assert_eq!(before.len(), 2, "the org row and its budget: {before:?}");

    // Pinning its id would change its alias and budget, and then own it.
    orgs.create(
        &PostParams::default(),
        &organization(
            "taken",
            json!({"organizationId": "org-ui", "alias": "Taken", "budget": {"maxBudget": 5}}),
        ),
    )
    .await
    .expect("create the Organization");
    let stalled = wait_for(orgs, "taken", 60, "Stalled NotGranted", org_refused).await;
    assert_eq!(
        stalled_message(&stalled.status.as_ref().expect("status").conditions),
        refusal(
            ns,
            "adopt",
            "org-ui",
            "it already exists in LiteLLM, this Organization did not create it,"
        )
    );
    let event = wait_event(&w.client(), ns, "taken", "Warning", "NotGranted").await;
    assert!(
        event
            .note
            .as_deref()
            .is_some_and(|n| n.contains(&format!("--grant {ns}=org-ui"))),
        "{event:?}"
    );
    // Nothing changed in the row, its budget or the ledger.
    assert_eq!(organization_rows(db, "org-ui").await, before);
    assert_eq!(db.count("LiteLLM_BudgetTable").await, budgets);
    op.kill().await;

    // A prefix grant covers it: the organization is adopted as declared.
    let op = operator(
        &w.cluster,
        db,
        ns,
        &[ns],
        json!([{"namespace": ns, "organizationIds": ["org-u*"]}]),
    )
    .await;
    wait_for(orgs, "taken", 60, "Ready with the grant", org_ready).await;
    assert_eq!(
        db.strings_with(
            r#"SELECT o.organization_alias || '|' || b.max_budget::text FROM "LiteLLM_OrganizationTable" o JOIN "LiteLLM_BudgetTable" b ON b.budget_id = o.budget_id WHERE o.organization_id = $1"#,
            &["org-ui"],
        )
        .await,
        vec!["Taken|5".to_string()]
    );
    assert_eq!(
        ledger(db, "org-ui").await,
        vec![format!("Organization/{ns}/taken|false")],
        "adopted, not created"
    );
    op.kill().await;
    w.db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_reaches_by_id_what_its_own_namespace_declares() {
    let w = World::new("tenancy-own").await;
    let (db, orgs, members, ns) = (&w.db, &w.orgs, &w.members, w.ns.as_str());
    ui_organization(db, "org-ui").await;
    let op = operator(&w.cluster, db, ns, &[ns], json!([])).await;

    orgs.create(&PostParams::default(), &organization("research", json!({})))
        .await
        .expect("create research");
    let research = wait_for(orgs, "research", 60, "Ready", org_ready).await;
    let id = research
        .status
        .and_then(|s| s.organization_id)
        .expect("status.organizationId");

    // By the id its own Organization reports: no grant needed.
    members
        .create(
            &PostParams::default(),
            &member(
                "by-id",
                json!({"organizationId": id, "user": {"email": "ada@example.com"}, "role": "internal_user"}),
            ),
        )
        .await
        .expect("create by-id");
    let ready = wait_for(members, "by-id", 60, "Ready without a grant", member_ready).await;
    let user = ready.status.and_then(|s| s.user_id).expect("userId");
    assert_eq!(
        memberships(db, &id).await,
        vec![format!("{user}|internal_user")]
    );

    // An organization made in LiteLLM lives in no namespace: joining it needs a grant.
    members
        .create(
            &PostParams::default(),
            &member(
                "ui",
                json!({"organizationId": "org-ui", "user": {"email": "ada@example.com"}, "role": "internal_user"}),
            ),
        )
        .await
        .expect("create ui");
    wait_for(members, "ui", 60, "Stalled NotGranted", member_refused).await;
    assert_eq!(memberships(db, "org-ui").await, Vec::<String>::new());
    // Deleting the refused member completes (its finalizer runs) and writes nothing.
    let rows_before = db.snapshot().await;
    members
        .delete("ui", &Default::default())
        .await
        .expect("delete ui");
    poll(60, "the refused member gone", || async {
        match members.get_opt("ui").await {
            Ok(None) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert_eq!(db.snapshot().await, rows_before);
    op.kill().await;
    w.db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_organization_with_a_pinned_id_needs_no_grant() {
    let w = World::new("tenancy-pin").await;
    let (db, orgs, ns) = (&w.db, &w.orgs, w.ns.as_str());
    let op = operator(&w.cluster, db, ns, &[ns], json!([])).await;
    orgs.create(
        &PostParams::default(),
        &organization(
            "finance",
            json!({"organizationId": "org-finance-2024", "alias": "Finance"}),
        ),
    )
    .await
    .expect("create finance");
    wait_for(orgs, "finance", 60, "Ready", org_ready).await;
    assert_eq!(
        ledger(db, "org-finance-2024").await,
        vec![format!("Organization/{ns}/finance|true")],
        "created, not adopted"
    );
    // The row it created stays its own: a later change is written, after a restart too.
    op.kill().await;
    let op = operator(&w.cluster, db, ns, &[ns], json!([])).await;
    orgs.patch(
        "finance",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"alias": "Finance EU"}})),
    )
    .await
    .expect("patch the alias");
    wait_for(
        orgs,
        "finance",
        60,
        "Ready at the new generation",
        org_ready,
    )
    .await;
    assert_eq!(
        db.strings_with(
            r#"SELECT organization_alias FROM "LiteLLM_OrganizationTable" WHERE organization_id = $1"#,
            &["org-finance-2024"],
        )
        .await,
        vec!["Finance EU".to_string()]
    );
    op.kill().await;
    w.db.cleanup().await;
}
