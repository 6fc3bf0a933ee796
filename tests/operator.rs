//! End to end: the operator binary as a separate process on a real control plane (each test
//! in namespaces of its own, the operator with the chart's RBAC; see `support::cluster`), real
//! PostgreSQL with LiteLLM's own migrations, and the real kubectl. One test plants objects the
//! API refuses today, and so stays on the API emulator (`kube-emulator`'s `insert_raw`).

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::api::{
    DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::{Api, ResourceExt};
use kube_emulator::Emulator;
use litellm_org_operator::crd::{Organization, OrganizationMember};
use serde_json::json;
use support::TestDb;
use support::cluster::{Cluster, World};
use support::kube::{Kubectl, member, organization};
use support::operator::{DbProxy, Operator, member_ready, org_ready, poll, wait_event, wait_for};

/// A series of Organization reconciles (any result).
fn is_org_reconcile(series: &str) -> bool {
    series.starts_with(r#"litellm_org_operator_reconciles_total{kind="Organization""#)
}

/// A series of reconciles failed because the database was unavailable.
fn is_unavailable_error(series: &str) -> bool {
    series.contains("reconcile_errors_total") && series.contains("DatabaseUnavailable")
}

/// `kubectl wait --for=condition=Ready` on every Organization and OrganizationMember of `ns`.
async fn wait_all_ready(kubectl: &Kubectl, ns: &str) {
    let (ok, out) = kubectl
        .wait_ready(
            ns,
            &["organizations,organizationmembers", "--all"],
            Duration::from_secs(60),
        )
        .await;
    assert!(ok, "{out}");
}

fn condition<'a>(
    conditions: &'a [k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
    t: &str,
) -> Option<&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    conditions.iter().find(|c| c.type_ == t)
}

/// The `Stalled` condition in `conditions` when it is `True`.
fn stalled(
    conditions: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
) -> Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    condition(conditions, "Stalled")
        .filter(|c| c.status == "True")
        .cloned()
}

/// The member's `Stalled` condition when it is `True`.
fn stalled_condition(
    m: &OrganizationMember,
) -> Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    stalled(&m.status.as_ref()?.conditions)
}

/// The organization's `Stalled` condition when it is `True`.
fn org_stalled(
    o: &Organization,
) -> Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    stalled(&o.status.as_ref()?.conditions)
}

/// Poll until the object is gone (its finalizer removed), or fail after `secs`.
async fn wait_gone<K>(api: &Api<K>, name: &str, secs: u64)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    while api.get_opt(name).await.expect("get").is_some() {
        assert!(Instant::now() < deadline, "{name} stuck terminating");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn member_reason(m: &OrganizationMember, reason: &str) -> bool {
    m.status.as_ref().is_some_and(|s| {
        condition(&s.conditions, "Ready").is_some_and(|c| c.status == "False" && c.reason == reason)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn examples_reconcile_end_to_end() {
    let w = World::with_values("examples", json!({"installCRDs": true})).await;
    let (db, ns) = (&w.db, w.ns.as_str());
    db.exec(r#"INSERT INTO "LiteLLM_BudgetTable" (budget_id, max_budget, created_by, updated_by) VALUES ('shared-marketing-budget', 300, 'admin', 'admin')"#).await;
    // A user LiteLLM already knows, by an email in another case than the manifest's.
    db.exec(r#"INSERT INTO "LiteLLM_UserTable" (user_id, user_email, user_role, models) VALUES ('existing-carol', 'Carol@Example.COM', 'internal_user', '{}')"#).await;
    // The chart's arguments include --install-crds: the operator applies the CRDs the
    // control plane already has.
    assert!(w.access.args.iter().any(|a| a == "--install-crds"));
    let op = w.operator(&[]).await;

    w.kubectl().apply_examples(ns, false).await;
    wait_all_ready(&w.kubectl(), ns).await;

    let (orgs, members) = (&w.orgs, &w.members);
    // memberCount and spend are mirrored from the database on the resync (3 s here).
    let research = wait_for(orgs, "research", 30, "memberCount 3", |o| {
        o.status.as_ref().and_then(|s| s.member_count) == Some(3)
    })
    .await;
    let status = research.status.clone().expect("status");
    let org_id = status.organization_id.clone().expect("org id");
    assert_eq!(status.max_budget, Some(5000.0));
    assert_eq!(status.member_count, Some(3));
    assert!(
        research
            .finalizers()
            .iter()
            .any(|f| f == "litellm.dev/cleanup")
    );

    // The exact rows.
    assert_eq!(
        db.strings(&format!(r#"SELECT organization_alias || '|' || array_to_string(models, ',') FROM "LiteLLM_OrganizationTable" WHERE organization_id = '{org_id}'"#)).await,
        vec!["Research|gpt-4o,gpt-4o-mini,claude-sonnet-4".to_string()]
    );
    assert_eq!(db.count("LiteLLM_OrganizationTable").await, 3);
    assert_eq!(db.count("LiteLLM_OrganizationMembership").await, 4);
    let carol = members.get("research-carol").await.expect("carol");
    let carol_status = carol.status.expect("status");
    assert_eq!(
        carol_status.user_id.as_deref(),
        Some("existing-carol"),
        "joined the existing user by email"
    );
    assert_eq!(carol_status.user_created, Some(false));

    // Edit a budget and a role: the rows follow and observedGeneration advances.
    let gen_before = research.metadata.generation;
    patch_spec(orgs, "research", json!({"budget": {"maxBudget": 6000}})).await;
    members
        .patch(
            "research-bob",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"role": "org_admin"}})),
        )
        .await
        .expect("patch member");
    let research = wait_for(orgs, "research", 30, "the new generation", |o| {
        org_ready(o) && o.metadata.generation > gen_before
    })
    .await;
    assert_eq!(
        research.status.as_ref().and_then(|s| s.max_budget),
        Some(6000.0)
    );
    wait_for(members, "research-bob", 30, "the role change", |m| {
        member_ready(m) && m.metadata.generation == Some(2)
    })
    .await;
    assert_eq!(
        db.strings(&format!(r#"SELECT b.max_budget::text FROM "LiteLLM_OrganizationTable" o JOIN "LiteLLM_BudgetTable" b ON b.budget_id = o.budget_id WHERE o.organization_id = '{org_id}'"#)).await,
        vec!["6000".to_string()]
    );
    let bob_user = members
        .get("research-bob")
        .await
        .expect("bob")
        .status
        .and_then(|s| s.user_id)
        .expect("bob id");
    assert_eq!(
        db.strings(&format!(r#"SELECT user_role FROM "LiteLLM_OrganizationMembership" WHERE user_id = '{bob_user}' AND organization_id = '{org_id}'"#)).await,
        vec!["org_admin".to_string()]
    );

    // Drift: change a row behind the operator's back; the resync puts it back.
    db.exec(&format!(r#"UPDATE "LiteLLM_OrganizationTable" SET organization_alias = 'hacked' WHERE organization_id = '{org_id}'"#)).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let alias = db.strings(&format!(r#"SELECT organization_alias FROM "LiteLLM_OrganizationTable" WHERE organization_id = '{org_id}'"#)).await;
        if alias == vec!["Research".to_string()] {
            break;
        }
        assert!(Instant::now() < deadline, "drift not corrected: {alias:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let events = w
        .kubectl()
        .ok(&["get", "events.events.k8s.io", "-n", ns, "-o", "json"])
        .await;
    assert!(
        events.contains("DriftCorrected") && events.contains("organization_alias"),
        "{events}"
    );
    // Members mirror their organization's alias: one that read it while it had drifted
    // shows it until its next resync.
    for name in ["research-alice", "research-bob", "research-carol"] {
        wait_for(members, name, 30, "the alias back", |m| {
            m.status
                .as_ref()
                .and_then(|s| s.organization_alias.as_deref())
                == Some("Research")
        })
        .await;
    }

    // A resync with nothing changed writes nothing: no row, no API object.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rows = db.snapshot().await;
    let versions = resource_versions(&w).await;
    let writes_before = op.metrics().await;
    tokio::time::sleep(Duration::from_secs(8)).await; // more than two resync periods
    let writes_after = op.metrics().await;
    assert_eq!(
        db.snapshot().await,
        rows,
        "no database write on an idle resync"
    );
    assert_eq!(
        resource_versions(&w).await,
        versions,
        "no API write on an idle resync"
    );
    let reconciles = |m: &BTreeMap<String, f64>| {
        m.get(r#"litellm_org_operator_reconciles_total{kind="Organization",result="ok"}"#)
            .copied()
            .unwrap_or(0.0)
    };
    assert!(
        reconciles(&writes_after) > reconciles(&writes_before),
        "the resync did run"
    );
    assert_eq!(
        writes_after.get(r#"litellm_org_operator_database_writes_total{kind="Organization"}"#),
        writes_before.get(r#"litellm_org_operator_database_writes_total{kind="Organization"}"#)
    );

    // Delete an organization with members: one cascade, finalizer removed, members report
    // OrganizationNotFound, and their own deletion still completes.
    orgs.delete("research", &DeleteParams::default())
        .await
        .expect("delete org");
    let research_series = |m: &BTreeMap<String, f64>| {
        m.keys()
            .filter(|k| k.contains(r#"name="research""#))
            .cloned()
            .collect::<Vec<_>>()
    };
    let ready_orgs = |m: &BTreeMap<String, f64>| {
        m.get(r#"litellm_org_operator_objects{kind="Organization",condition="Ready"}"#)
            .copied()
            .unwrap_or(0.0)
    };
    let before_delete = op.metrics().await;
    assert!(
        !research_series(&before_delete).is_empty(),
        "spend series exported while the organization exists"
    );
    wait_gone(orgs, "research", 30).await;
    // A deleted object's series go with it: /metrics does not grow with churn.
    let after_delete = op.metrics().await;
    assert_eq!(research_series(&after_delete), Vec::<String>::new());
    assert_eq!(
        ready_orgs(&after_delete),
        ready_orgs(&before_delete) - 1.0,
        "the deleted organization leaves the Ready gauge"
    );
    assert_eq!(
        db.strings(&format!(r#"SELECT count(*)::text FROM "LiteLLM_OrganizationMembership" WHERE organization_id = '{org_id}'"#)).await,
        vec!["0".to_string()]
    );
    assert_eq!(
        db.strings(&format!(r#"SELECT count(*)::text FROM "LiteLLM_OrganizationTable" WHERE organization_id = '{org_id}'"#)).await,
        vec!["0".to_string()]
    );
    wait_for(members, "research-alice", 60, "OrganizationNotFound", |m| {
        member_reason(m, "OrganizationNotFound")
    })
    .await;
    members
        .delete("research-alice", &DeleteParams::default())
        .await
        .expect("delete member");
    wait_gone(members, "research-alice", 30).await;
    assert_eq!(
        db.count("LiteLLM_UserTable").await,
        3,
        "users are never deleted"
    );

    // Retain: the finance organization goes from the cluster, its rows stay.
    orgs.delete("finance", &DeleteParams::default())
        .await
        .expect("delete finance");
    wait_gone(orgs, "finance", 30).await;
    let after_retain = op.metrics().await;
    assert!(
        !after_retain.keys().any(|k| k.contains(r#"name="finance""#)),
        "a retained organization's series go too"
    );
    assert_eq!(ready_orgs(&after_retain), ready_orgs(&after_delete) - 1.0);
    assert_eq!(
        db.strings(r#"SELECT count(*)::text FROM "LiteLLM_OrganizationTable" WHERE organization_id = 'org-finance-2024'"#).await,
        vec!["1".to_string()]
    );
    op.kill().await;
    w.db.cleanup().await;
}

/// Every Organization, OrganizationMember and Event of the world's namespace with its
/// resourceVersion: equal lists prove that nothing was written through the API in between.
async fn resource_versions(w: &World) -> Vec<String> {
    let mut out = Vec::new();
    let lp = ListParams::default();
    for o in w.orgs.list(&lp).await.expect("list").items {
        out.push(format!("{}={:?}", o.name_any(), o.resource_version()));
    }
    for m in w.members.list(&lp).await.expect("list").items {
        out.push(format!("{}={:?}", m.name_any(), m.resource_version()));
    }
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(w.client(), &w.ns);
    for e in events.list(&lp).await.expect("list").items {
        out.push(format!("event {}={:?}", e.name_any(), e.resource_version()));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_objects_stall_without_looping() {
    let w = World::new("bad").await;
    let (db, orgs) = (&w.db, &w.orgs);
    let op = w.operator(&["--resync-interval", "30s"]).await;

    // Refused by the CRD's schema validation: never reaches the operator.
    let invalid = organization("negative", json!({"budget": {"maxBudget": -1}}));
    let err = orgs
        .create(&PostParams::default(), &invalid)
        .await
        .expect_err("422");
    assert!(err.to_string().contains("maxBudget"), "{err}");

    // Passes the schema, fails the engine: a budgetRef to a budget that does not exist.
    let dangling = organization(
        "dangling",
        json!({"budgetRef": {"budgetId": "no-such-budget"}}),
    );
    create(orgs, &dangling).await;
    let stalled = wait_for(orgs, "dangling", 30, "Stalled", |o| {
        o.status.as_ref().is_some_and(|s| {
            condition(&s.conditions, "Stalled").is_some_and(|c| c.status == "True")
        })
    })
    .await;
    let stalled_cond = condition(
        &stalled.status.as_ref().expect("status").conditions,
        "Stalled",
    )
    .cloned()
    .expect("cond");
    assert_eq!(stalled_cond.reason, "BudgetNotFound");
    assert!(
        stalled_cond.message.contains("spec.budgetRef.budgetId"),
        "{}",
        stalled_cond.message
    );

    // No hot loop: over a 6 s window the broken object is reconciled at most once (the 30 s
    // resync may fall in it).
    let reconciles = op.growth_over(6, is_org_reconcile).await;
    assert!(reconciles <= 1.0, "reconciled {reconciles} times in 6 s");

    // The database's content decides this one, not the manifest: creating the budget in
    // LiteLLM clears the stall at a resync, with the object untouched.
    let generation = stalled.metadata.generation;
    db.exec(r#"INSERT INTO "LiteLLM_BudgetTable" (budget_id, created_by, updated_by) VALUES ('no-such-budget', 'admin', 'admin')"#).await;
    let ready = wait_for(orgs, "dangling", 90, "Ready", org_ready).await;
    assert_eq!(
        ready.metadata.generation, generation,
        "the spec was not touched"
    );
    op.kill().await;
    w.db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_outage_backs_off_and_recovers() {
    let w = World::new("outage").await;
    let proxy = DbProxy::start().await;
    let url = proxy.url(&w.db.url());
    let op = w.operator_with(w.access.options(&url)).await;
    let orgs = &w.orgs;

    proxy.down();
    let org = org_manifest("patient", 10);
    create(orgs, &org).await;
    let waiting = wait_for(orgs, "patient", 60, "DatabaseUnavailable", |o| {
        o.status.as_ref().is_some_and(|s| {
            condition(&s.conditions, "Reconciling")
                .is_some_and(|c| c.status == "True" && c.reason == "DatabaseUnavailable")
        })
    })
    .await;
    let ready = condition(
        &waiting.status.as_ref().expect("status").conditions,
        "Ready",
    )
    .cloned()
    .expect("ready");
    assert_eq!(ready.status, "False");
    assert!(!ready.message.contains("postgres://"), "{}", ready.message);
    // What someone on call needs: what happened and where, never a driver's internals.
    let server = format!("the database at 127.0.0.1:{}", proxy.port());
    let says_what = |text: &str| {
        text.contains(&format!("lost the connection to {server}"))
            || text.contains(&format!("cannot connect to {server}"))
    };
    assert!(says_what(&ready.message), "{}", ready.message);
    let log = op.log_lines();
    assert!(log.iter().any(|l| says_what(l)), "{log:#?}");
    for text in log.iter().chain([&ready.message]) {
        for internal in ["docs.rs", "rustls", "close_notify", "https://"] {
            assert!(!text.contains(internal), "{text}");
        }
    }
    let attempts = op.growth_over(10, is_unavailable_error).await;
    // Backoff from 2 s doubling: at most a handful of attempts in 10 s, never a hot loop.
    assert!(attempts <= 5.0, "{attempts} failed attempts in 10 s");
    proxy.restore();
    wait_for(
        orgs,
        "patient",
        120,
        "recovery without a restart",
        org_ready,
    )
    .await;
    assert_eq!(w.db.count("LiteLLM_OrganizationTable").await, 1);
    op.kill().await;
    w.db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_mid_reconcile_converges_exactly() {
    let w = World::new("crash").await;
    let (db, orgs, members) = (&w.db, &w.orgs, &w.members);
    let op = w.operator(&["--concurrency", "4"]).await;
    for i in 0..100 {
        let org = org_manifest(&format!("org-{i}"), i);
        create(orgs, &org).await;
        let m = member(
            &format!("m-{i}"),
            json!({"organizationRef": {"name": format!("org-{i}")}, "user": {"email": format!("u{i}@example.com")}, "role": "internal_user", "maxBudgetInOrganization": 1}),
        );
        create(members, &m).await;
    }
    // Kill -9 while it is busy, with some deletes in flight.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for i in 90..100 {
        orgs.delete(&format!("org-{i}"), &DeleteParams::default())
            .await
            .expect("delete");
        members
            .delete(&format!("m-{i}"), &DeleteParams::default())
            .await
            .expect("delete");
    }
    op.kill().await;
    let op = w.operator(&["--concurrency", "4"]).await;
    for i in 0..90 {
        wait_for(orgs, &format!("org-{i}"), 120, "Ready", org_ready).await;
        wait_for(members, &format!("m-{i}"), 120, "Ready", member_ready).await;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left_orgs = orgs
            .list(&Default::default())
            .await
            .expect("list")
            .items
            .len();
        let left_members = members
            .list(&Default::default())
            .await
            .expect("list")
            .items
            .len();
        if left_orgs == 90 && left_members == 90 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "objects stuck terminating: {left_orgs} orgs, {left_members} members"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // Exactly the desired rows: no duplicates, no orphans.
    assert_eq!(db.count("LiteLLM_OrganizationTable").await, 90);
    assert_eq!(db.count("LiteLLM_OrganizationMembership").await, 90);
    assert_eq!(
        db.count("LiteLLM_BudgetTable").await,
        180,
        "one org budget and one member budget each"
    );
    assert_eq!(
        db.strings(r#"SELECT count(*)::text FROM "LiteLLM_BudgetTable" b WHERE NOT EXISTS (SELECT 1 FROM "LiteLLM_OrganizationTable" o WHERE o.budget_id = b.budget_id) AND NOT EXISTS (SELECT 1 FROM "LiteLLM_OrganizationMembership" m WHERE m.budget_id = b.budget_id)"#).await,
        vec!["0".to_string()],
        "no orphan budgets"
    );
    // Users created for the deleted members (if reached before the delete) stay: users are
    // never deleted.
    let users = db.count("LiteLLM_UserTable").await;
    assert!((90..=100).contains(&users), "{users} users");
    let names: Vec<String> = orgs
        .list(&Default::default())
        .await
        .expect("list")
        .items
        .iter()
        .map(|o| o.name_any())
        .collect();
    assert!(!names.iter().any(|n| n == "org-95"));
    op.kill().await;
    w.db.cleanup().await;
}

/// An Organization with an owned budget of `max_budget`.
fn org_manifest(name: &str, max_budget: u32) -> Organization {
    organization(name, json!({"budget": {"maxBudget": max_budget}}))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_objects_are_not_written() {
    let w = World::new("pause").await;
    let (db, orgs) = (&w.db, &w.orgs);
    let op = w.operator(&[]).await;
    create(orgs, &org_manifest("still", 10)).await;
    let ready = wait_for(orgs, "still", 30, "Ready", org_ready).await;
    let org_id = ready.status.and_then(|s| s.organization_id).expect("id");
    let budget = || {
        format!(
            r#"SELECT b.max_budget::text FROM "LiteLLM_OrganizationTable" o JOIN "LiteLLM_BudgetTable" b ON b.budget_id = o.budget_id WHERE o.organization_id = '{org_id}'"#
        )
    };
    orgs.patch(
        "still",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"annotations": {"litellm.dev/paused": "true"}}, "spec": {"budget": {"maxBudget": 99}}})),
    )
    .await
    .expect("pause");
    let paused = wait_for(orgs, "still", 30, "Paused", |o| {
        o.status.as_ref().is_some_and(|s| {
            condition(&s.conditions, "Reconciling")
                .is_some_and(|c| c.status == "False" && c.reason == "Paused")
        })
    })
    .await;
    // Readers that look past Ready (kstatus tools, the shipped Argo CD health check) can tell
    // it is paused: a Paused condition of its own.
    let conditions = &paused.status.as_ref().expect("status").conditions;
    let paused_cond = condition(conditions, "Paused").expect("a Paused condition");
    assert_eq!(
        (paused_cond.status.as_str(), paused_cond.reason.as_str()),
        ("True", "Paused")
    );
    tokio::time::sleep(Duration::from_secs(4)).await; // past a resync
    assert_eq!(
        db.strings(&budget()).await,
        vec!["10".to_string()],
        "no write while paused"
    );
    orgs.patch(
        "still",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"annotations": {"litellm.dev/paused": null}}})),
    )
    .await
    .expect("resume");
    let deadline = Instant::now() + Duration::from_secs(30);
    while db.strings(&budget()).await != vec!["99".to_string()] {
        assert!(Instant::now() < deadline, "not resumed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Resumed: the Paused condition is gone (the server-side apply removed it).
    wait_for(orgs, "still", 30, "Ready without Paused", |o| {
        org_ready(o)
            && o.status
                .as_ref()
                .is_some_and(|s| condition(&s.conditions, "Paused").is_none())
    })
    .await;
    // Graceful shutdown on SIGTERM: a clean exit.
    let status = op.terminate().await;
    assert!(status.success(), "{status:?}");
    w.db.cleanup().await;
}

/// A member whose organization goes turns Stalled (OrganizationNotFound, naming it), not
/// Reconciling forever, and is Ready again when the organization comes back: an Organization
/// resource deleted and applied again, and a LiteLLM organization (named by id) deleted and
/// made again in the database, as LiteLLM's own endpoints would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_of_a_deleted_organization_stall_and_recover() {
    // bob joins an organization made in LiteLLM: granted (see the Multi-tenancy rules).
    let w = World::with_values(
        "orphan",
        json!({"tenancy": {"grants": [{"namespace": "*", "organizationIds": ["org-ui"]}]}}),
    )
    .await;
    let (db, orgs, members) = (&w.db, &w.orgs, &w.members);
    let op = w.operator(&["--resync-interval", "20s"]).await;
    let ui_org = r#"INSERT INTO "LiteLLM_BudgetTable" (budget_id, created_by, updated_by) VALUES ('ui-budget', 'admin', 'admin') ON CONFLICT DO NOTHING;
           INSERT INTO "LiteLLM_OrganizationTable" (organization_id, organization_alias, budget_id, metadata, models, created_by, updated_by) VALUES ('org-ui', 'UI', 'ui-budget', '{}', '{}', 'admin', 'admin');"#;
    db.exec(ui_org).await;
    create(orgs, &org_manifest("research", 10)).await;
    wait_for(orgs, "research", 30, "Ready", org_ready).await;
    create(
        members,
        &member_of("alice", "research", "alice@example.com"),
    )
    .await;
    create(
        members,
        &member(
            "bob",
            json!({"organizationId": "org-ui", "user": {"email": "bob@example.com"}, "role": "internal_user"}),
        ),
    )
    .await;
    let alice = wait_for(members, "alice", 30, "Ready", member_ready).await;
    wait_for(members, "bob", 30, "Ready", member_ready).await;

    // The Organization resource goes: alice is Stalled, naming it, with no retry pending.
    orgs.delete("research", &DeleteParams::default())
        .await
        .expect("delete");
    wait_gone(orgs, "research", 30).await;
    let stalled = wait_for(members, "alice", 60, "Stalled", |m| {
        stalled_condition(m).is_some()
    })
    .await;
    let cond = stalled_condition(&stalled).expect("stalled");
    assert_eq!(cond.reason, "OrganizationNotFound", "{cond:?}");
    assert!(cond.message.contains("research"), "{}", cond.message);
    let reconciling = stalled
        .status
        .as_ref()
        .and_then(|s| condition(&s.conditions, "Reconciling"))
        .expect("Reconciling");
    assert_eq!(reconciling.status, "False", "{reconciling:?}");
    assert_eq!(
        stalled
            .status
            .as_ref()
            .and_then(|s| s.organization_id.clone()),
        alice
            .status
            .as_ref()
            .and_then(|s| s.organization_id.clone()),
        "the last organization id is kept"
    );
    wait_event(
        &w.client(),
        &w.ns,
        "alice",
        "Warning",
        "OrganizationNotFound",
    )
    .await;

    // It comes back: alice is woken by its watch and is a member again.
    create(orgs, &org_manifest("research", 10)).await;
    wait_for(orgs, "research", 30, "Ready", org_ready).await;
    wait_for(members, "alice", 30, "Ready again", member_ready).await;

    // The LiteLLM organization goes, as LiteLLM's delete_organization removes it (its
    // memberships first): bob is Stalled at the next resync, naming it.
    db.exec(
        r#"DELETE FROM "LiteLLM_OrganizationMembership" WHERE organization_id = 'org-ui';
           DELETE FROM "LiteLLM_OrganizationTable" WHERE organization_id = 'org-ui';"#,
    )
    .await;
    let stalled = wait_for(members, "bob", 60, "Stalled", |m| {
        stalled_condition(m).is_some()
    })
    .await;
    let cond = stalled_condition(&stalled).expect("stalled");
    assert_eq!(cond.reason, "OrganizationNotFound", "{cond:?}");
    assert!(cond.message.contains("org-ui"), "{}", cond.message);
    // Made again in LiteLLM: bob's membership is back at a resync, the object untouched.
    db.exec(ui_org).await;
    let bob = wait_for(members, "bob", 60, "Ready again", member_ready).await;
    assert_eq!(bob.metadata.generation, stalled.metadata.generation);
    assert_eq!(
        db.strings(r#"SELECT count(*)::text FROM "LiteLLM_OrganizationMembership" WHERE organization_id = 'org-ui'"#).await,
        vec!["1".to_string()]
    );
    op.kill().await;
    w.db.cleanup().await;
}

/// Count the rows of `table` whose organization_id is `id`.
async fn rows_of(db: &TestDb, table: &str, id: &str) -> String {
    db.strings(&format!(
        r#"SELECT count(*)::text FROM "{table}" WHERE organization_id = '{id}'"#
    ))
    .await
    .concat()
}

/// Issue 19, §2: deleting an Organization never takes more than it names. With teams or keys
/// made in LiteLLM its delete waits (finalizer kept, nothing removed, DeletionBlocked with the
/// counts) until the spec opts in or they are gone; with deletionProtection it waits until
/// that is turned off. What a delete removes is named in its event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletes_wait_for_teams_keys_and_protection() {
    let w = World::new("waits").await;
    let (db, orgs) = (&w.db, &w.orgs);
    let op = w.operator(&["--resync-interval", "15s"]).await;
    create(orgs, &org_manifest("busy", 10)).await;
    create(orgs, &org_manifest("cleared", 10)).await;
    create(
        orgs,
        &organization(
            "guarded",
            json!({"budget": {"maxBudget": 10}, "deletionProtection": true}),
        ),
    )
    .await;
    let mut ids = BTreeMap::new();
    for name in ["busy", "cleared", "guarded"] {
        let o = wait_for(orgs, name, 30, "Ready", org_ready).await;
        ids.insert(name, o.status.and_then(|s| s.organization_id).expect("id"));
    }
    let (busy, cleared, guarded) = (&ids["busy"], &ids["cleared"], &ids["guarded"]);
    // LiteLLM's UI adds a team and a key to two of them.
    db.exec(&format!(
        r#"INSERT INTO "LiteLLM_TeamTable" (team_id, organization_id) VALUES ('team-busy', '{busy}'), ('team-cleared', '{cleared}');
           INSERT INTO "LiteLLM_VerificationToken" (token, organization_id) VALUES ('hashed-busy', '{busy}');"#
    ))
    .await;

    for name in ["busy", "cleared", "guarded"] {
        orgs.delete(name, &DeleteParams::default())
            .await
            .expect("delete");
    }
    // Each waits, Stalled with the reason and what to do; nothing removed.
    for (name, reason, words) in [
        ("busy", "DeletionBlocked", "1 team and 1 key"),
        ("cleared", "DeletionBlocked", "1 team"),
        ("guarded", "DeletionProtected", "deletionProtection"),
    ] {
        let o = wait_for(orgs, name, 30, reason, |o| {
            org_stalled(o).is_some_and(|c| c.reason == reason)
        })
        .await;
        assert!(o.metadata.deletion_timestamp.is_some());
        let cond = org_stalled(&o).expect("stalled");
        assert!(cond.message.contains(words), "{}", cond.message);
        let event = wait_event(&w.client(), &w.ns, name, "Warning", reason).await;
        assert!(
            event.note.as_deref().unwrap_or_default().contains(words),
            "{event:?}"
        );
    }
    let busy_cond = org_stalled(&orgs.get("busy").await.expect("get")).expect("stalled");
    assert!(
        busy_cond.message.contains("spec.deleteTeamsAndKeys"),
        "{}",
        busy_cond.message
    );
    for id in [busy, cleared, guarded] {
        assert_eq!(rows_of(db, "LiteLLM_OrganizationTable", id).await, "1");
    }
    assert_eq!(rows_of(db, "LiteLLM_VerificationToken", busy).await, "1");

    // The opt-in on the object being deleted: LiteLLM's cascade runs, and the event names it.
    orgs.patch(
        "busy",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"deleteTeamsAndKeys": true}})),
    )
    .await
    .expect("opt in");
    wait_gone(orgs, "busy", 30).await;
    for table in [
        "LiteLLM_OrganizationTable",
        "LiteLLM_TeamTable",
        "LiteLLM_VerificationToken",
    ] {
        assert_eq!(rows_of(db, table, busy).await, "0", "{table}");
    }
    let deleted = wait_event(&w.client(), &w.ns, "busy", "Normal", "Deleted").await;
    assert!(
        deleted
            .note
            .as_deref()
            .unwrap_or_default()
            .contains("1 team, 1 key, 0 memberships"),
        "{deleted:?}"
    );

    // The team removed in LiteLLM: the waiting delete goes ahead at a resync by itself.
    db.exec(r#"DELETE FROM "LiteLLM_TeamTable" WHERE team_id = 'team-cleared'"#)
        .await;
    wait_gone(orgs, "cleared", 60).await;
    assert_eq!(rows_of(db, "LiteLLM_OrganizationTable", cleared).await, "0");

    // Protection turned off: the delete runs.
    orgs.patch(
        "guarded",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"deletionProtection": false}})),
    )
    .await
    .expect("unprotect");
    wait_gone(orgs, "guarded", 30).await;
    assert_eq!(rows_of(db, "LiteLLM_OrganizationTable", guarded).await, "0");
    op.kill().await;
    w.db.cleanup().await;
}

/// The holder of the operator's Lease in the world's namespace.
async fn lease_holder(w: &World) -> String {
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> = Api::namespaced(w.client(), &w.ns);
    leases
        .get("litellm-org-operator")
        .await
        .expect("lease")
        .spec
        .and_then(|s| s.holder_identity)
        .expect("holder")
}

/// The operator's `leader` gauge.
async fn leader_gauge(op: &Operator) -> Option<f64> {
    op.metrics()
        .await
        .get("litellm_org_operator_leader")
        .copied()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_election_fails_over_without_duplicates() {
    // Two replicas of one release with the chart's leader election (a real Lease in the
    // release namespace, and the chart's RBAC on it).
    let w = World::with_values("ha", json!({"replicaCount": 2})).await;
    let (db, orgs) = (&w.db, &w.orgs);
    assert!(
        w.access.args.iter().any(|a| a == "--leader-elect"),
        "{:?}",
        w.access.args
    );
    let mut ops = vec![
        Some(w.operator_with(w.options().pod_name(Some("op-a"))).await),
        Some(w.operator_with(w.options().pod_name(Some("op-b"))).await),
    ];
    for i in 0..10 {
        create(orgs, &org_manifest(&format!("ha-{i}"), i)).await;
    }
    for i in 0..10 {
        wait_for(orgs, &format!("ha-{i}"), 60, "Ready", org_ready).await;
    }
    let holder = lease_holder(&w).await;
    let leader = if holder == "op-a" { 0 } else { 1 };
    assert!(holder == "op-a" || holder == "op-b", "{holder}");
    // Only the leader wrote: every reconcile that wrote came from one process.
    let follower_writes = ops[1 - leader]
        .as_ref()
        .expect("follower")
        .metrics()
        .await
        .iter()
        .filter(|(k, _)| k.starts_with("litellm_org_operator_database_writes_total"))
        .map(|(_, v)| *v)
        .sum::<f64>();
    assert_eq!(follower_writes, 0.0, "the follower wrote nothing");
    // The `leader` gauge says which replica writes.
    let follower = ops[1 - leader].as_ref().expect("follower");
    assert_eq!(
        leader_gauge(follower).await,
        Some(0.0),
        "the follower's gauge"
    );
    let current = ops[leader].as_ref().expect("leader");
    poll(30, "the leader's gauge at 1", || async {
        match leader_gauge(current).await {
            Some(1.0) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;

    // Kill the leader; the follower takes over within the lease duration.
    if let Some(op) = ops[leader].take() {
        op.kill().await;
    }
    for i in 10..20 {
        create(orgs, &org_manifest(&format!("ha-{i}"), i)).await;
    }
    patch_spec(orgs, "ha-0", json!({"budget": {"maxBudget": 500}})).await;
    for i in 0..20 {
        wait_for(
            orgs,
            &format!("ha-{i}"),
            90,
            "Ready after failover",
            org_ready,
        )
        .await;
    }
    wait_for(orgs, "ha-0", 60, "the edit after failover", |o| {
        org_ready(o) && o.status.as_ref().and_then(|s| s.max_budget) == Some(500.0)
    })
    .await;
    let new_holder = lease_holder(&w).await;
    assert_ne!(new_holder, holder, "the lease moved");
    let survivor = ops[1 - leader].as_ref().expect("the other replica");
    poll(30, "the new leader's gauge at 1", || async {
        match leader_gauge(survivor).await {
            Some(1.0) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert_eq!(
        db.count("LiteLLM_OrganizationTable").await,
        20,
        "no duplicate rows"
    );
    assert_eq!(db.count("LiteLLM_BudgetTable").await, 20);
    for op in ops.into_iter().flatten() {
        op.kill().await;
    }
    w.db.cleanup().await;
}

/// The line without terminal colours (the log's fields may be wrapped in them).
fn plain(line: &str) -> String {
    let mut out = String::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The identity an operator logged at start (`identity=…`).
fn logged_identity(op: &Operator) -> Option<String> {
    op.log_lines().iter().map(|l| plain(l)).find_map(|l| {
        let at = l.find("identity=")?;
        let rest = &l[at + "identity=".len()..];
        Some(rest.split_whitespace().next()?.to_string())
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn replicas_outside_a_pod_elect_one_leader() {
    // Two replicas with leader election and no POD_NAME (as on a laptop or a VM): each gets an
    // identity of its own, so exactly one of them leads.
    let w = World::with_values("ids", json!({"replicaCount": 2})).await;
    assert!(w.access.args.iter().any(|a| a == "--leader-elect"));
    let a = w.operator_with(w.options().pod_name(None)).await;
    let b = w.operator_with(w.options().pod_name(None)).await;
    let (id_a, id_b) = (
        logged_identity(&a).expect("identity of a"),
        logged_identity(&b).expect("identity of b"),
    );
    assert_ne!(id_a, id_b, "each process has an identity of its own");
    assert_ne!(id_a, "litellm-org-operator");
    let leads = |op: &Operator| op.log_lines().iter().any(|l| l.contains("elected leader"));
    let deadline = Instant::now() + Duration::from_secs(40);
    while !(leads(&a) || leads(&b)) {
        assert!(
            Instant::now() < deadline,
            "no replica was elected within 40 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Longer than the lease (15 s): a second leader would have shown by now.
    tokio::time::sleep(Duration::from_secs(20)).await;
    assert!(leads(&a) != leads(&b), "exactly one replica leads");
    let holder = lease_holder(&w).await;
    let leader = if leads(&a) { &id_a } else { &id_b };
    assert_eq!(&holder, leader, "the Lease names the replica that leads");
    a.kill().await;
    b.kill().await;
    w.db.cleanup().await;
}

// ---------------------------------------------------------------------------------------------
// Hostile objects: one object must never stop the others, and whatever the operator publishes
// must be accepted by a real API server.

/// A JSON object nested `levels` deep (`{"k":{"k":…"leaf"}}`).
fn nested(levels: usize) -> serde_json::Value {
    let mut v = json!("leaf");
    for _ in 0..levels {
        v = json!({ "k": v });
    }
    v
}

/// An Organization as the API server stores it (untyped, so nothing is lost on the way back
/// through `insert_raw`).
async fn stored_org(client: &kube::Client, ns: &str, name: &str) -> serde_json::Value {
    let api: Api<kube::api::DynamicObject> = Api::namespaced_with(
        client.clone(),
        ns,
        &kube::api::ApiResource::erase::<Organization>(&()),
    );
    serde_json::to_value(api.get(name).await.expect("get")).expect("to JSON")
}

/// `kubectl get organization NAME -o jsonpath=…` until `check` holds (kubectl reads objects
/// too deep for serde_json, so it can watch the undecodable ones).
async fn wait_jsonpath(
    k: &Kubectl,
    ns: &str,
    name: &str,
    template: &str,
    what: &str,
    check: impl Fn(&str) -> bool,
) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = k.jsonpath("organization", name, ns, template).await;
        if check(&out) {
            return out;
        }
        assert!(
            Instant::now() < deadline,
            "{name}: timed out waiting for {what}; {template} is {out:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// `<status>|<reason>|<message>` of the Stalled condition.
const STALLED: &str = r#"{.status.conditions[?(@.type=="Stalled")].status}|{.status.conditions[?(@.type=="Stalled")].reason}|{.status.conditions[?(@.type=="Stalled")].message}"#;

/// Wait for `Stalled=True` with `reason`; returns the condition's message.
async fn wait_stalled(k: &Kubectl, ns: &str, name: &str, reason: &str) -> String {
    let prefix = format!("True|{reason}|");
    let out = wait_jsonpath(k, ns, name, STALLED, &format!("Stalled {reason}"), |s| {
        s.starts_with(&prefix)
    })
    .await;
    out[prefix.len()..].to_string()
}

/// `SELECT count(*)` of organization rows with this id.
async fn org_rows(db: &TestDb, id: &str) -> String {
    db.strings(&format!(
        r#"SELECT count(*)::text FROM "LiteLLM_OrganizationTable" WHERE organization_id = '{id}'"#
    ))
    .await
    .concat()
}

/// Create an object; the test fails if the API server refuses it.
async fn create<K>(api: &Api<K>, obj: &K)
where
    K: kube::Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    if let Err(e) = api.create(&PostParams::default(), obj).await {
        panic!(
            "create {}: {e}",
            obj.meta().name.as_deref().unwrap_or_default()
        );
    }
}

/// Merge `spec` into an Organization's spec.
async fn patch_spec(orgs: &Api<Organization>, name: &str, spec: serde_json::Value) {
    orgs.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({ "spec": spec })),
    )
    .await
    .unwrap_or_else(|e| panic!("patch {name}: {e}"));
}

/// An `internal_user` member of the Organization `org`, by email.
fn member_of(name: &str, org: &str, email: &str) -> OrganizationMember {
    member(
        name,
        json!({"organizationRef": {"name": org}, "user": {"email": email}, "role": "internal_user"}),
    )
}

/// On the API emulator: objects the API refuses today are planted past admission
/// (`insert_raw`), as a cluster may hold them from before the CRD bounded `spec.metadata`. (A
/// real kube-apiserver cannot be made to store them without changing the CRDs every test
/// shares.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecodable_object_is_stalled_alone_and_can_be_deleted() {
    let ns = "deep";
    let db = TestDb::litellm().await;
    let emu = Emulator::start(&support::crds_dir()).await;
    emu.create_namespace(ns);
    let orgs: Api<Organization> = Api::namespaced(emu.client(), ns);
    let members: Api<OrganizationMember> = Api::namespaced(emu.client(), ns);
    let k = Kubectl::new(emu.kubeconfig_path(), emu.dir());
    // A long resync: every reconcile counted below is one the operator chose to run.
    let args = ["--resync-interval", "60s"];
    let op = Operator::start(emu.kubeconfig_path(), &db.url(), &args).await;
    for (name, policy) in [("kept", "Retain"), ("gone", "Delete")] {
        create(
            &orgs,
            &organization(name, json!({"alias": name, "deletionPolicy": policy})),
        )
        .await;
    }
    create(&orgs, &org_manifest("plain", 10)).await;
    create(&members, &member_of("plain-m", "plain", "m@example.com")).await;
    wait_all_ready(&k, ns).await;
    let id_of = |o: Organization| o.status.and_then(|s| s.organization_id).expect("id");
    let kept_id = id_of(orgs.get("kept").await.expect("kept"));
    let gone_id = id_of(orgs.get("gone").await.expect("gone"));
    assert_eq!(org_rows(&db, &kept_id).await, "1");
    assert_eq!(org_rows(&db, &gone_id).await, "1");
    op.kill().await;

    // While the operator is down, two synced organizations get a spec.metadata 130 levels deep
    // (past serde_json's limit of 128), as a cluster may hold objects written before the CRD
    // bounded it; a third is planted so; and the healthy objects change.
    for name in ["kept", "gone"] {
        let mut obj = stored_org(&emu.client(), ns, name).await;
        obj["spec"]["metadata"] = nested(130);
        emu.insert_raw("litellm.dev", "v1alpha1", "organizations", ns, obj);
    }
    let mut fresh = support::kube::organization_json("deep-new", json!({"alias": "Deep"}));
    fresh["spec"]["metadata"] = nested(130);
    emu.insert_raw("litellm.dev", "v1alpha1", "organizations", ns, fresh);
    assert!(
        orgs.get("kept").await.is_err(),
        "serde_json cannot decode the planted object"
    );
    patch_spec(&orgs, "plain", json!({"budget": {"maxBudget": 20}})).await;
    create(&members, &member_of("late-m", "plain", "late@example.com")).await;

    // The initial list holds the three: /readyz still turns ready (start waits for it) and
    // everything else is reconciled.
    let op = Operator::start(emu.kubeconfig_path(), &db.url(), &args).await;
    wait_for(&orgs, "plain", 30, "the edit made while down", |o| {
        org_ready(o) && o.status.as_ref().and_then(|s| s.max_budget) == Some(20.0)
    })
    .await;
    wait_for(&members, "late-m", 30, "Ready", member_ready).await;
    wait_for(&members, "plain-m", 30, "Ready", member_ready).await;
    for name in ["kept", "gone", "deep-new"] {
        let message = wait_stalled(&k, ns, name, "InvalidSpec").await;
        assert!(
            message.contains("cannot be read") && message.contains("recursion limit"),
            "{name}: {message}"
        );
        let event = wait_event(&emu.client(), ns, name, "Warning", "InvalidSpec").await;
        assert!(
            event
                .note
                .as_deref()
                .unwrap_or_default()
                .contains("cannot be read"),
            "{event:?}"
        );
    }
    assert!(
        op.log_lines()
            .iter()
            .any(|l| l.contains("WARN") && l.contains("cannot be read") && l.contains("deep-new")),
        "a WARN log line names the object"
    );

    // No hot loop: nothing changes, so nothing is reconciled again.
    let reconciles = op.growth_over(6, is_org_reconcile).await;
    assert!(reconciles <= 1.0, "{reconciles} reconciles in 6 s");

    // Planted while the operator runs: the watch event alone is isolated the same way.
    let mut live = support::kube::organization_json("deep-live", json!({"alias": "Live"}));
    live["spec"]["metadata"] = nested(130);
    emu.insert_raw("litellm.dev", "v1alpha1", "organizations", ns, live);
    wait_stalled(&k, ns, "deep-live", "InvalidSpec").await;
    wait_event(&emu.client(), ns, "deep-live", "Warning", "InvalidSpec").await;
    patch_spec(&orgs, "plain", json!({"budget": {"maxBudget": 30}})).await;
    wait_for(&orgs, "plain", 30, "the next edit", |o| {
        org_ready(o) && o.status.as_ref().and_then(|s| s.max_budget) == Some(30.0)
    })
    .await;

    // kubectl delete completes: the finalizer reads deletionPolicy and the recorded id from the
    // undecodable spec. Retain leaves the row, Delete removes it.
    k.ok(&[
        "delete",
        "organizations",
        "kept",
        "gone",
        "deep-new",
        "deep-live",
        "-n",
        ns,
        "--timeout=30s",
    ])
    .await;
    let (found, out) = k
        .status(&["get", "organizations", "-n", ns, "-o", "name"])
        .await;
    assert!(found, "{out}");
    assert_eq!(out.trim(), "organization.litellm.dev/plain");
    assert_eq!(org_rows(&db, &kept_id).await, "1", "Retain keeps the row");
    assert_eq!(org_rows(&db, &gone_id).await, "0", "Delete removes the row");
    assert_eq!(
        db.count("LiteLLM_OrganizationTable").await,
        2,
        "plain and kept"
    );
    op.kill().await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nul_characters_stall_with_the_field_named() {
    let w = World::new("nul").await;
    let (db, orgs, ns) = (&w.db, &w.orgs, w.ns.as_str());
    let op = w.operator(&["--resync-interval", "60s"]).await;
    // The API accepts U+0000 in strings (JSON allows it); PostgreSQL cannot store it.
    for (name, spec, field) in [
        ("nul-alias", json!({"alias": "Re\u{0}search"}), "spec.alias"),
        (
            "nul-metadata",
            json!({"metadata": {"note": "a\u{0}b"}}),
            "spec.metadata",
        ),
        // Every broken rule: the first in full, the others named.
        (
            "nul-both",
            json!({"alias": "a\u{0}", "metadata": {"note": "a\u{0}b"}}),
            "spec.alias: must not contain NUL characters (\\u0000): PostgreSQL cannot store them; and 1 more: spec.metadata.note",
        ),
    ] {
        create(orgs, &organization(name, spec)).await;
        let stalled = wait_for(orgs, name, 30, "Stalled", |o| {
            o.status.as_ref().is_some_and(|s| {
                condition(&s.conditions, "Stalled").is_some_and(|c| c.status == "True")
            })
        })
        .await;
        let conditions = &stalled.status.as_ref().expect("status").conditions;
        let cond = condition(conditions, "Stalled").expect("Stalled");
        assert_eq!(cond.reason, "InvalidSpec", "{cond:?}");
        assert!(
            cond.message.contains(field) && cond.message.contains("NUL"),
            "{}",
            cond.message
        );
        let reconciling = condition(conditions, "Reconciling").expect("Reconciling");
        assert_eq!(
            reconciling.status, "False",
            "no retry pending: {reconciling:?}"
        );
        wait_event(&w.client(), ns, name, "Warning", "InvalidSpec").await;
    }
    assert_eq!(
        db.count("LiteLLM_OrganizationTable").await,
        0,
        "nothing written"
    );
    // Not a database fault: no DatabaseUnavailable, and no retry until the object changes.
    let reconciles = op.growth_over(6, is_org_reconcile).await;
    assert!(reconciles <= 1.0, "{reconciles} reconciles in 6 s");
    let metrics = op.metrics().await;
    assert!(
        !metrics
            .iter()
            .any(|(k, v)| is_unavailable_error(k) && *v > 0.0),
        "{metrics:#?}"
    );
    // Fixing the field clears it.
    patch_spec(orgs, "nul-alias", json!({"alias": "Research"})).await;
    wait_for(orgs, "nul-alias", 30, "Ready", org_ready).await;
    op.kill().await;
    w.db.cleanup().await;
}

/// The committed CRDs with one property taken out of the Organization's status schema, as an
/// older release's CRD would lack a newer field.
fn crds_without_status_field(field: &str) -> String {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/crds/litellm.dev.yaml"
    ))
    .expect("read crds/");
    let mut out = String::new();
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let mut crd: serde_json::Value = serde::Deserialize::deserialize(doc).expect("CRD YAML");
        if crd["spec"]["names"]["kind"] == "Organization" {
            for version in crd["spec"]["versions"].as_array_mut().expect("versions") {
                let props =
                    version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
                        .as_object_mut()
                        .expect("status properties");
                assert!(props.remove(field).is_some(), "no status.{field} to remove");
            }
        }
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(&crd).expect("YAML"));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_crd_without_a_status_field_still_gets_status() {
    // Other CRDs than every other test's: a control plane of its own.
    let cluster = Cluster::private().await;
    let crds = cluster.dir().join("older.yaml");
    std::fs::write(&crds, crds_without_status_field("memberCount")).expect("write CRDs");
    cluster.install_crds(&crds).await;
    let w = World::on(cluster, "older", json!({})).await;
    let (orgs, members, ns) = (&w.orgs, &w.members, w.ns.as_str());
    // The installed CRD really refuses the field: a status apply carrying it fails.
    create(orgs, &org_manifest("probe", 1)).await;
    let refused = orgs
        .patch_status(
            "probe",
            &PatchParams::apply("probe-writer"),
            &Patch::Apply(json!({
                "apiVersion": "litellm.dev/v1alpha1", "kind": "Organization",
                "status": {"memberCount": 1},
            })),
        )
        .await
        .expect_err("memberCount is not declared");
    assert!(
        refused.to_string().contains("field not declared in schema"),
        "{refused}"
    );

    // No --install-crds: the operator runs against the older CRD.
    assert!(w.access.args.iter().all(|a| a != "--install-crds"));
    let op = w.operator(&["--log-format", "json"]).await;
    for name in ["older-a", "older-b"] {
        create(orgs, &org_manifest(name, 100)).await;
    }
    create(members, &member_of("older-m", "older-a", "o@example.com")).await;
    wait_all_ready(&w.kubectl(), ns).await;
    // Later status writes too (a new generation, and a resync at 3 s).
    patch_spec(orgs, "older-a", json!({"budget": {"maxBudget": 200}})).await;
    let a = wait_for(orgs, "older-a", 30, "the new budget in status", |o| {
        org_ready(o) && o.status.as_ref().and_then(|s| s.max_budget) == Some(200.0)
    })
    .await;
    for org in [a, orgs.get("older-b").await.expect("older-b")] {
        let status = org.status.expect("status");
        assert!(status.organization_id.is_some(), "{status:?}");
        assert_eq!(status.spend, Some(0.0), "{status:?}");
        assert!(status.max_budget.is_some(), "{status:?}");
        assert_eq!(status.member_count, None, "not declared, not written");
        assert!(condition(&status.conditions, "Ready").is_some());
    }
    let m = members.get("older-m").await.expect("member");
    assert!(m.status.and_then(|s| s.user_id).is_some());
    let warnings: Vec<String> = op
        .log_lines()
        .into_iter()
        .filter(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap_or_default();
            v["level"] == "WARN" && l.contains("status.memberCount")
        })
        .collect();
    assert_eq!(
        warnings.len(),
        1,
        "one WARN naming the field: {warnings:#?}"
    );
    assert!(warnings[0].contains("upgrade the CRDs"), "{}", warnings[0]);
    op.kill().await;
    w.db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_managers_condition_stays_its_own() {
    let w = World::new("shared-status").await;
    let orgs = w.orgs.clone();
    let op = w.operator(&[]).await;
    create(&orgs, &org_manifest("shared", 10)).await;
    wait_for(&orgs, "shared", 30, "Ready", org_ready).await;

    // Another controller adds a condition of its own type.
    let other = PatchParams::apply("other-controller");
    orgs.patch_status(
        "shared",
        &other,
        &Patch::Apply(json!({
            "apiVersion": "litellm.dev/v1alpha1", "kind": "Organization",
            "status": {"conditions": [{
                "type": "Synced-by-other", "status": "True", "reason": "Checked",
                "message": "checked by another controller",
                "lastTransitionTime": "2026-01-01T00:00:00Z",
            }]},
        })),
    )
    .await
    .expect("the other controller's apply");
    // The operator writes status again (a new generation) and keeps the other condition.
    patch_spec(&orgs, "shared", json!({"budget": {"maxBudget": 20}})).await;
    let org = wait_for(&orgs, "shared", 30, "the new generation", |o| {
        org_ready(o) && o.metadata.generation == Some(2)
    })
    .await;
    let status = org.status.as_ref().expect("status");
    assert!(condition(&status.conditions, "Synced-by-other").is_some());
    // managedFields: the condition is the other manager's alone.
    let entry = |manager: &str| {
        org.metadata
            .managed_fields
            .iter()
            .flatten()
            .filter(|m| {
                m.manager.as_deref() == Some(manager) && m.subresource.as_deref() == Some("status")
            })
            .map(|m| serde_json::to_string(&m.fields_v1).expect("fieldsV1"))
            .collect::<Vec<_>>()
            .concat()
    };
    let ours = entry("litellm-org-operator");
    let theirs = entry("other-controller");
    assert!(ours.contains(r#"k:{\"type\":\"Ready\"}"#), "{ours}");
    assert!(!ours.contains("Synced-by-other"), "co-owned: {ours}");
    assert!(theirs.contains("Synced-by-other"), "{theirs}");

    // Its owner drops it by applying a status without it: it goes.
    orgs.patch_status(
        "shared",
        &other,
        &Patch::Apply(json!({
            "apiVersion": "litellm.dev/v1alpha1", "kind": "Organization", "status": {},
        })),
    )
    .await
    .expect("the other controller's second apply");
    let org = orgs.get("shared").await.expect("get");
    let status = org.status.expect("status");
    assert!(
        condition(&status.conditions, "Synced-by-other").is_none(),
        "{:#?}",
        status.conditions
    );
    assert!(condition(&status.conditions, "Ready").is_some_and(|c| c.status == "True"));
    op.kill().await;
    w.db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_for_long_names_and_long_notes_are_accepted() {
    let w = World::new("long").await;
    let (db, ns) = (&w.db, w.ns.as_str());
    let (orgs, members) = (w.orgs.clone(), w.members.clone());
    // Ten users share one email, with ids of 120 characters: the Conflict message lists every
    // id (about 1.3 KB).
    let padding = "x".repeat(90);
    for i in 0..10 {
        db.exec(&format!(
            r#"INSERT INTO "LiteLLM_UserTable" (user_id, user_email, user_role, models) VALUES ('a-user-sharing-one-email-{padding}-{i:04}', 'shared@example.com', 'internal_user', '{{}}')"#
        ))
        .await;
    }
    let op = w.operator(&[]).await;

    // Names of 250 characters (the limit is 253): a Normal and a Warning event each.
    let created = "c".repeat(250);
    let dangling = "d".repeat(250);
    create(&orgs, &org_manifest(&created, 10)).await;
    create(
        &orgs,
        &organization(
            &dangling,
            json!({"budgetRef": {"budgetId": "no-such-budget"}}),
        ),
    )
    .await;
    wait_for(&orgs, &created, 30, "Ready", org_ready).await;
    let normal = wait_event(&w.client(), ns, &created, "Normal", "Created").await;
    let warning = wait_event(&w.client(), ns, &dangling, "Warning", "BudgetNotFound").await;
    for e in [&normal, &warning] {
        let name = e.metadata.name.as_deref().unwrap_or_default();
        assert!(name.len() <= 253, "{name}");
    }

    // A Conflict whose message is over 1024 bytes: the event's note is cut to fit.
    create(&members, &member(
                "ambiguous",
                json!({"organizationRef": {"name": created}, "user": {"email": "shared@example.com"}, "role": "internal_user"}),
            )).await;
    let m = wait_for(&members, "ambiguous", 30, "Conflict", |m| {
        m.status.as_ref().is_some_and(|s| {
            condition(&s.conditions, "Stalled")
                .is_some_and(|c| c.status == "True" && c.reason == "Conflict")
        })
    })
    .await;
    let message = condition(&m.status.expect("status").conditions, "Stalled")
        .expect("Stalled")
        .message
        .clone();
    assert!(
        message.len() > 1024,
        "the full message: {} bytes",
        message.len()
    );
    assert!(
        message.contains("10 or more users have the email"),
        "{message}"
    );
    let conflict = wait_event(&w.client(), ns, "ambiguous", "Warning", "Conflict").await;
    let note = conflict.note.unwrap_or_default();
    assert!(note.len() <= 1024, "{} bytes", note.len());
    assert!(
        note.starts_with("10 or more users have the email") && note.ends_with('…'),
        "{note}"
    );
    let refused: Vec<String> = op
        .log_lines()
        .into_iter()
        .filter(|l| l.contains("could not publish event"))
        .collect();
    assert!(refused.is_empty(), "{refused:#?}");
    op.kill().await;
    w.db.cleanup().await;
}

/// A series of OrganizationMember reconciles (any result).
fn is_member_reconcile(series: &str) -> bool {
    series.starts_with(r#"litellm_org_operator_reconciles_total{kind="OrganizationMember""#)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_wake_only_when_what_they_read_of_their_organization_changes() {
    let w = World::new("wake").await;
    let db = &w.db;
    let (orgs, members) = (w.orgs.clone(), w.members.clone());
    // A long resync: every reconcile counted below is one a watch event caused.
    let op = w.operator(&["--resync-interval", "300s"]).await;
    create(
        &orgs,
        &organization("acme", json!({"budget": {"maxBudget": 100}})),
    )
    .await;
    for (name, email) in [
        ("ann", "ann@example.com"),
        ("bob", "bob@example.com"),
        ("cy", "cy@example.com"),
    ] {
        create(&members, &member_of(name, "acme", email)).await;
    }
    for name in ["ann", "bob", "cy"] {
        wait_for(&members, name, 60, "Ready", member_ready).await;
    }
    let org = wait_for(&orgs, "acme", 30, "Ready", org_ready).await;
    let org_id = org.status.and_then(|s| s.organization_id).expect("id");
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Spend changes in LiteLLM, and an annotation makes the organization reconcile and write
    // its status (the new spend): its members read nothing of that, so none is woken.
    db.exec(&format!(
        r#"UPDATE "LiteLLM_OrganizationTable" SET spend = 42 WHERE organization_id = '{org_id}'"#
    ))
    .await;
    let woken = {
        let before: f64 = op
            .metrics()
            .await
            .iter()
            .filter(|(k, _)| is_member_reconcile(k))
            .map(|(_, v)| v)
            .sum();
        orgs.patch(
            "acme",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"touch": "1"}}})),
        )
        .await
        .expect("annotate");
        wait_for(&orgs, "acme", 30, "spend mirrored", |o| {
            o.status.as_ref().and_then(|s| s.spend) == Some(42.0)
        })
        .await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        let after: f64 = op
            .metrics()
            .await
            .iter()
            .filter(|(k, _)| is_member_reconcile(k))
            .map(|(_, v)| v)
            .sum();
        after - before
    };
    assert_eq!(woken, 0.0, "a status write about spend woke members");

    // Readiness is what members read: a budget reference to no budget stalls the organization
    // and wakes all three (they report OrganizationNotReady).
    patch_spec(
        &orgs,
        "acme",
        json!({"budget": null, "budgetRef": {"budgetId": "no-such-budget"}}),
    )
    .await;
    for name in ["ann", "bob", "cy"] {
        wait_for(&members, name, 30, "OrganizationNotReady", |m| {
            member_reason(m, "OrganizationNotReady")
        })
        .await;
    }
    op.kill().await;
    w.db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_applied_with_their_organization_write_status_once() {
    let w = World::new("together").await;
    let (orgs, members) = (w.orgs.clone(), w.members.clone());
    // Every change to the namespace's members, from a watch opened before the operator runs.
    let start = members
        .list(&ListParams::default())
        .await
        .expect("list")
        .metadata
        .resource_version
        .expect("a resourceVersion");
    let mut changes = members
        .watch(&WatchParams::default().timeout(290), &start)
        .await
        .expect("watch")
        .boxed();
    let op = w.operator(&["--resync-interval", "300s"]).await;
    // The organization exists but is not Ready (paused) when its members are first reconciled.
    let mut acme = organization("acme", json!({"budget": {"maxBudget": 100}}));
    acme.metadata.annotations =
        Some([("litellm.dev/paused".to_string(), "true".to_string())].into());
    create(&orgs, &acme).await;
    let mut stuck = organization("stuck", json!({"budget": {"maxBudget": 5}}));
    stuck.metadata.annotations = acme.metadata.annotations.clone();
    create(&orgs, &stuck).await;
    for (name, org, email) in [
        ("ann", "acme", "ann@example.com"),
        ("bob", "acme", "bob@example.com"),
        ("cy", "acme", "cy@example.com"),
        ("dan", "stuck", "dan@example.com"),
    ] {
        create(&members, &member_of(name, org, email)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    for name in ["ann", "bob", "cy", "dan"] {
        let m = members.get(name).await.expect("get member");
        assert!(
            m.status.as_ref().is_none_or(|s| s.conditions.is_empty()),
            "{name} wrote a status while its organization was on its way: {:?}",
            m.status
        );
    }
    orgs.patch(
        "acme",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"annotations": {"litellm.dev/paused": null}}})),
    )
    .await
    .expect("unpause");
    for name in ["ann", "bob", "cy"] {
        wait_for(&members, name, 60, "Ready", member_ready).await;
    }
    // A member whose organization stays not Ready says so after the quiet wait (30 s).
    wait_for(&members, "dan", 90, "OrganizationNotReady", |m| {
        member_reason(m, "OrganizationNotReady")
    })
    .await;
    // Every change to a member that changed its status, read from the watch up to the
    // members' current resourceVersions.
    let version = |m: &OrganizationMember| -> u64 {
        m.resource_version()
            .and_then(|v| v.parse().ok())
            .expect("a numeric resourceVersion")
    };
    let current: BTreeMap<String, u64> = members
        .list(&ListParams::default())
        .await
        .expect("list")
        .items
        .iter()
        .map(|m| (m.name_any(), version(m)))
        .collect();
    let mut status_writes: BTreeMap<String, usize> = BTreeMap::new();
    let mut seen: BTreeMap<String, (u64, serde_json::Value)> = BTreeMap::new();
    while current
        .iter()
        .any(|(name, rv)| seen.get(name).is_none_or(|(v, _)| v < rv))
    {
        let event = tokio::time::timeout(Duration::from_secs(30), changes.next())
            .await
            .expect("the watch delivers every change")
            .expect("the watch is open")
            .expect("a watch event");
        let m = match event {
            WatchEvent::Added(m) | WatchEvent::Modified(m) => m,
            WatchEvent::Deleted(_) | WatchEvent::Bookmark(_) => continue,
            WatchEvent::Error(e) => panic!("watch error: {e:?}"),
        };
        let status = serde_json::to_value(&m.status).expect("status");
        if let Some((_, before)) = seen.insert(m.name_any(), (version(&m), status.clone()))
            && before != status
        {
            *status_writes.entry(m.name_any()).or_default() += 1;
        }
    }
    for name in ["ann", "bob", "cy", "dan"] {
        assert_eq!(
            status_writes.get(name).copied().unwrap_or(0),
            1,
            "{name}: one status write (Ready, or the wait once it lasted)"
        );
    }
    op.kill().await;
    w.db.cleanup().await;
}

/// More work than the slots can take (one slot, a resync every second, a slow database):
/// every object still gets its turn, in the order it became due. (The released kube-runtime
/// serves the objects it holds back in the order of a hash set, so under such a load the same
/// few were reconciled again and again and the others never; see vendor/kube-runtime.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_object_gets_its_turn_when_reconciles_cannot_keep_up() {
    let w = World::new("queue").await;
    let orgs = w.orgs.clone();
    let proxy = DbProxy::start().await;
    // Each statement's round trip takes at least 40 ms: a reconcile takes about half a second,
    // one slot does two a second, and twelve organizations ask for twelve.
    proxy.set_delay(Duration::from_millis(20));
    let op = w
        .operator_with(w.access.options(&proxy.url(&w.db.url())).args(&[
            "--concurrency",
            "1",
            "--resync-interval",
            "1s",
        ]))
        .await;
    let names: Vec<String> = (0..12).map(|i| format!("org-{i:02}")).collect();
    for name in &names {
        create(&orgs, &org_manifest(name, 10)).await;
    }
    for name in &names {
        wait_for(&orgs, name, 120, "Ready", org_ready).await;
    }
    // SIGTERM with a long queue: the reconcile in flight finishes, the waiting ones do not
    // start (at 200 ms a chunk, working through twelve would take about a minute).
    proxy.set_delay(Duration::from_millis(200));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let status = op.terminate().await;
    assert!(status.success(), "{status:?}");
    w.db.cleanup().await;
}

/// The JSON log lines of `lines` whose `fields` hold every `(key, value)` of `want`.
fn logged(lines: &[serde_json::Value], want: &[(&str, &str)]) -> Vec<serde_json::Value> {
    lines
        .iter()
        .filter(|l| {
            want.iter()
                .all(|(k, v)| l["fields"][*k].as_str() == Some(*v))
        })
        .cloned()
        .collect()
}

/// Events about `name` with this reason, counting each repeat of a series.
async fn event_count(client: &kube::Client, ns: &str, name: &str, reason: &str) -> i32 {
    support::operator::events_about(client, ns, name)
        .await
        .iter()
        .filter(|e| e.reason.as_deref() == Some(reason))
        .map(|e| e.series.as_ref().map_or(1, |s| s.count))
        .sum()
}

/// What on-call reads, from one operator run with JSON logs: the budget crossings (a
/// Warning event once per crossing, status with the soft budget and the next reset, the
/// budget series of organizations and members), the series alerts read from the start
/// (build_info, leader, every error class at 0, reconciles in flight), `kubectl get` showing
/// names instead of ids, one log line with the object's key as fields for every change and
/// problem, no colour codes in a log that is not a terminal, and one shutdown line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_call_reads_budget_crossings_metrics_and_logs() {
    let w = World::new("oncall").await;
    let (db, orgs, members, ns) = (&w.db, &w.orgs, &w.members, w.ns.as_str());
    let client = w.client();
    // Info from every crate, so a line kube-runtime prints would be seen.
    let op = w
        .operator_with(w.options().args(&["--log-format", "json"]).rust_log("info"))
        .await;

    // Every series an alert reads, before any object exists.
    let metrics = op.metrics().await;
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(
        metrics.get(&format!(
            r#"litellm_org_operator_build_info{{version="{version}"}}"#
        )),
        Some(&1.0),
        "{metrics:#?}"
    );
    for kind in ["Organization", "OrganizationMember"] {
        for class in [
            "InvalidSpec",
            "Conflict",
            "DatabaseUnavailable",
            "KubernetesApi",
        ] {
            let series = format!(
                r#"litellm_org_operator_reconcile_errors_total{{kind="{kind}",class="{class}"}}"#
            );
            assert_eq!(metrics.get(&series), Some(&0.0), "{series}");
        }
        let series = format!(r#"litellm_org_operator_reconciles_in_flight{{kind="{kind}"}}"#);
        assert!(metrics.contains_key(&series), "{series}: {metrics:#?}");
    }
    // The chart runs with leader election: 1 once this only replica holds the lease.
    poll(30, "leader 1", || async {
        match op.metrics().await.get("litellm_org_operator_leader") {
            Some(v) if *v == 1.0 => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;

    create(
        orgs,
        &organization(
            "acme",
            json!({"alias": "Acme Corp", "budget": {"maxBudget": 10, "softBudget": 5, "budgetDuration": "30d"}}),
        ),
    )
    .await;
    create(
        members,
        &member(
            "acme-dana",
            json!({"organizationRef": {"name": "acme"}, "user": {"email": "dana@example.com"},
                   "role": "internal_user", "maxBudgetInOrganization": 2}),
        ),
    )
    .await;
    let acme = wait_for(orgs, "acme", 60, "Ready", org_ready).await;
    let status = acme.status.clone().expect("status");
    let org_id = status.organization_id.clone().expect("id");
    assert_eq!(status.soft_budget, Some(5.0));
    let reset = db
        .strings_with(
            r#"SELECT to_char(b.budget_reset_at, 'YYYY-MM-DD"T"HH24:MI:SS"Z"') FROM "LiteLLM_OrganizationTable" o JOIN "LiteLLM_BudgetTable" b ON b.budget_id = o.budget_id WHERE o.organization_id = $1"#,
            &[&org_id],
        )
        .await;
    assert_eq!(
        status.budget_reset_at.as_deref(),
        reset.first().map(String::as_str)
    );
    assert!(
        status.budget_reset_at.is_some(),
        "a 30d budget resets: {status:?}"
    );
    let dana = wait_for(members, "acme-dana", 60, "Ready", member_ready).await;
    let dana_status = dana.status.clone().expect("status");
    let user_id = dana_status.user_id.clone().expect("user id");
    assert_eq!(dana_status.user_email.as_deref(), Some("dana@example.com"));
    assert_eq!(dana_status.organization_alias.as_deref(), Some("Acme Corp"));
    assert_eq!(
        (dana_status.spend, dana_status.max_budget),
        (Some(0.0), Some(2.0))
    );
    let table = w
        .kubectl()
        .ok(&["get", "lorgm", "acme-dana", "-n", ns])
        .await;
    let row: Vec<&str> = table
        .lines()
        .nth(1)
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        row[..7],
        [
            "acme-dana",
            "Acme",
            "Corp",
            "dana@example.com",
            "internal_user",
            "True",
            "Synced"
        ],
        "{table}"
    );
    assert!(!table.contains(&user_id), "{table}");

    let series = |metric: &str, name: &str| {
        format!(r#"litellm_org_operator_{metric}{{namespace="{ns}",name="{name}"}}"#)
    };
    let metrics = op.metrics().await;
    for (metric, name, value) in [
        ("organization_spend_usd", "acme", 0.0),
        ("organization_max_budget_usd", "acme", 10.0),
        ("organization_soft_budget_usd", "acme", 5.0),
        ("member_spend_usd", "acme-dana", 0.0),
        ("member_max_budget_usd", "acme-dana", 2.0),
    ] {
        assert_eq!(
            metrics.get(&series(metric, name)),
            Some(&value),
            "{metric} {name}"
        );
    }

    // Spend as LiteLLM writes it, past the soft budget: one SoftBudgetExceeded at the resync.
    let set_spend = |spend: &'static str| {
        let id = org_id.clone();
        async move {
            db.exec_with(
                &format!(r#"UPDATE "LiteLLM_OrganizationTable" SET spend = {spend} WHERE organization_id = $1"#),
                &[&id],
            )
            .await;
        }
    };
    let spend_is =
        |spend: f64| move |o: &Organization| o.status.as_ref().and_then(|s| s.spend) == Some(spend);
    set_spend("6").await;
    wait_event(&client, ns, "acme", "Warning", "SoftBudgetExceeded").await;
    assert_eq!(event_count(&client, ns, "acme", "BudgetExceeded").await, 0);
    set_spend("12").await;
    let over = wait_event(&client, ns, "acme", "Warning", "BudgetExceeded").await;
    assert_eq!(
        over.note.as_deref(),
        Some("the organization's spend 12.00 USD has reached its max budget 10.00 USD")
    );
    // Two more resyncs that see the spend over both budgets: no new event.
    set_spend("13").await;
    wait_for(orgs, "acme", 30, "spend 13", spend_is(13.0)).await;
    set_spend("14").await;
    wait_for(orgs, "acme", 30, "spend 14", spend_is(14.0)).await;
    assert_eq!(
        event_count(&client, ns, "acme", "SoftBudgetExceeded").await,
        1
    );
    assert_eq!(event_count(&client, ns, "acme", "BudgetExceeded").await, 1);
    assert_eq!(
        op.metrics()
            .await
            .get(&series("organization_spend_usd", "acme")),
        Some(&14.0)
    );
    // The budget resets (spend back to 0), then spend crosses the soft budget again.
    set_spend("0").await;
    wait_for(orgs, "acme", 30, "spend 0", spend_is(0.0)).await;
    set_spend("7").await;
    poll(30, "a second SoftBudgetExceeded", || async {
        match event_count(&client, ns, "acme", "SoftBudgetExceeded").await {
            2 => Ok(()),
            n => Err(format!("{n} events")),
        }
    })
    .await;
    assert_eq!(event_count(&client, ns, "acme", "BudgetExceeded").await, 1);

    // A member's declared budget.
    db.exec_with(
        r#"UPDATE "LiteLLM_OrganizationMembership" SET spend = 3 WHERE user_id = $1 AND organization_id = $2"#,
        &[&user_id, &org_id],
    )
    .await;
    let member_over = wait_event(&client, ns, "acme-dana", "Warning", "BudgetExceeded").await;
    assert_eq!(
        member_over.note.as_deref(),
        Some("the member's spend 3.00 USD has reached its max budget 2.00 USD")
    );
    let dana = wait_for(members, "acme-dana", 30, "spend 3", |m| {
        m.status.as_ref().and_then(|s| s.spend) == Some(3.0)
    })
    .await;
    assert_eq!(dana.status.and_then(|s| s.max_budget), Some(2.0));
    assert_eq!(
        op.metrics()
            .await
            .get(&series("member_spend_usd", "acme-dana")),
        Some(&3.0)
    );

    // Changes and problems, each to be logged: an update, drift, a conflict, an invalid spec.
    patch_spec(orgs, "acme", json!({"alias": "Acme Inc"})).await;
    wait_event(&client, ns, "acme", "Normal", "Updated").await;
    db.exec_with(
        r#"UPDATE "LiteLLM_OrganizationTable" SET organization_alias = 'hacked' WHERE organization_id = $1"#,
        &[&org_id],
    )
    .await;
    wait_event(&client, ns, "acme", "Normal", "DriftCorrected").await;
    create(
        orgs,
        &organization("acme-twin", json!({"organizationId": org_id})),
    )
    .await;
    wait_event(&client, ns, "acme-twin", "Warning", "Conflict").await;
    create(orgs, &organization("acme-nul", json!({"alias": "a\u{0}b"}))).await;
    wait_event(&client, ns, "acme-nul", "Warning", "InvalidSpec").await;
    members
        .delete("acme-dana", &DeleteParams::default())
        .await
        .expect("delete member");
    wait_gone(members, "acme-dana", 30).await;
    let metrics = op.metrics().await;
    assert!(
        !metrics.keys().any(|k| k.contains(r#"name="acme-dana""#)),
        "a deleted member's series go: {metrics:#?}"
    );

    let (exit, lines) = op.terminate_with_log().await;
    assert!(exit.success(), "{exit}");
    let text = lines.join("\n");
    assert!(
        !text.contains('\u{1b}'),
        "no colour codes in a piped log:\n{text}"
    );
    // One `name` per line: the object's (a span's name beside it would be a duplicate key).
    for line in &lines {
        assert!(line.matches(r#""name":"#).count() <= 1, "{line}");
    }
    let json: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let at = |kind: &str, name: &str, reason: &str| {
        logged(
            &json,
            &[
                ("kind", kind),
                ("namespace", ns),
                ("name", name),
                ("reason", reason),
            ],
        )
    };
    for (kind, name, reason, level, says) in [
        (
            "Organization",
            "acme",
            "Created",
            "INFO",
            "created the organization",
        ),
        (
            "OrganizationMember",
            "acme-dana",
            "Created",
            "INFO",
            "created the user and the membership",
        ),
        (
            "Organization",
            "acme",
            "Updated",
            "INFO",
            "organization_alias",
        ),
        (
            "Organization",
            "acme",
            "DriftCorrected",
            "INFO",
            "organization_alias",
        ),
        (
            "Organization",
            "acme",
            "SoftBudgetExceeded",
            "WARN",
            "soft budget 5.00",
        ),
        (
            "Organization",
            "acme",
            "BudgetExceeded",
            "WARN",
            "max budget 10.00",
        ),
        (
            "OrganizationMember",
            "acme-dana",
            "BudgetExceeded",
            "WARN",
            "max budget 2.00",
        ),
        ("Organization", "acme-twin", "Conflict", "WARN", &org_id),
        (
            "Organization",
            "acme-nul",
            "InvalidSpec",
            "WARN",
            "spec.alias",
        ),
        (
            "OrganizationMember",
            "acme-dana",
            "Deleted",
            "INFO",
            "deleted the membership",
        ),
    ] {
        let found = at(kind, name, reason);
        let line = found
            .first()
            .unwrap_or_else(|| panic!("no {reason} line for {kind}/{ns}/{name} in:\n{text}"));
        assert_eq!(line["level"], level, "{line}");
        let message = line["fields"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(says), "{says:?} in {line}");
    }
    // Once per crossing in the log too.
    assert_eq!(
        at("Organization", "acme", "SoftBudgetExceeded").len(),
        2,
        "{text}"
    );
    assert_eq!(
        at("Organization", "acme", "BudgetExceeded").len(),
        1,
        "{text}"
    );
    // One shutdown line, and not kube-runtime's per-controller ones.
    let shutdown = lines
        .iter()
        .filter(|l| l.contains("shutdown requested"))
        .count();
    assert_eq!(shutdown, 1, "{text}");
    assert!(
        !text.to_lowercase().contains("ctrl+c to shut down"),
        "{text}"
    );
    w.db.cleanup().await;
}
