//! The operator end to end while LiteLLM edits the same rows: `/organization/update` (alias
//! changed, metadata replaced wholesale) and `/organization/member_update` (role and budget)
//! between two reconciles. Declared fields are put back (DriftCorrected), undeclared ones kept,
//! status stays Ready, no Conflict.

mod support;

use std::time::Duration;

use kube::api::PostParams;
use litellm_org_operator::engine::ids;
use serde_json::json;
use support::TestDb;
use support::cluster::World;
use support::kube::{member, organization};
use support::operator::{member_ready, org_ready, poll, wait_for};

/// Poll a query until it returns `want`, or fail after `secs`.
async fn wait_rows(db: &TestDb, sql: &str, want: &[String], secs: u64) {
    poll(secs, sql, || async {
        let rows = db.strings(sql).await;
        if rows == want {
            Ok(())
        } else {
            Err(format!("still {rows:?}, waiting for {want:?}"))
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn litellm_updates_between_reconciles() {
    let w = World::with_values("coexistence", json!({"installCRDs": true})).await;
    let (db, ns) = (&w.db, w.ns.as_str());
    let op = w.operator(&["--resync-interval", "2s"]).await;
    let (orgs, members) = (w.orgs.clone(), w.members.clone());
    orgs.create(
        &PostParams::default(),
        &organization(
            "acme",
            json!({"alias": "Acme", "metadata": {"team": "a"}, "budget": {"maxBudget": 100}}),
        ),
    )
    .await
    .expect("create the Organization");
    for (name, spec) in [
        (
            "pat",
            json!({"organizationRef": {"name": "acme"}, "user": {"email": "pat@example.com"}, "role": "internal_user", "maxBudgetInOrganization": 10}),
        ),
        (
            "quinn",
            json!({"organizationRef": {"name": "acme"}, "user": {"email": "quinn@example.com"}, "role": "internal_user"}),
        ),
    ] {
        members
            .create(&PostParams::default(), &member(name, spec))
            .await
            .expect("create the OrganizationMember");
    }
    let acme = wait_for(&orgs, "acme", 60, "Ready", org_ready).await;
    for name in ["pat", "quinn"] {
        wait_for(&members, name, 60, "Ready", member_ready).await;
    }
    let id = acme
        .status
        .as_ref()
        .and_then(|s| s.organization_id.clone())
        .expect("organizationId in status");
    let pat = ids::user_id_for_email("pat@example.com");
    let quinn = ids::user_id_for_email("quinn@example.com");
    let pat_budget = ids::member_budget_id(ns, "pat");

    // What LiteLLM's endpoints write: /organization/update (the seed's: metadata wholesale),
    // /organization/member_update for both members (role; budget: the existing row updated,
    // or a new row attached when the membership had none).
    db.exec(&format!(
        r#"UPDATE "LiteLLM_OrganizationTable" SET organization_alias = 'Acme (UI)', metadata = '{{"cost_center": "42"}}', updated_by = 'admin', updated_at = now() WHERE organization_id = '{id}';
           UPDATE "LiteLLM_OrganizationMembership" SET user_role = 'org_admin', updated_at = now() WHERE organization_id = '{id}';
           UPDATE "LiteLLM_BudgetTable" SET max_budget = 99, updated_by = 'admin' WHERE budget_id = '{pat_budget}';
           INSERT INTO "LiteLLM_BudgetTable" (budget_id, max_budget, created_by, updated_by) VALUES ('ui-quinn-budget', 25, 'admin', 'admin');
           UPDATE "LiteLLM_OrganizationMembership" SET budget_id = 'ui-quinn-budget' WHERE user_id = '{quinn}' AND organization_id = '{id}';"#
    ))
    .await;

    // The resync puts the declared fields back and keeps the rest.
    wait_rows(
        db,
        &format!(
            r#"SELECT organization_alias || '|' || COALESCE(metadata->>'team', 'NULL') || '|' || COALESCE(metadata->>'cost_center', 'NULL') FROM "LiteLLM_OrganizationTable" WHERE organization_id = '{id}'"#
        ),
        &["Acme|a|42".to_string()],
        60,
    )
    .await;
    let mut want = vec![
        format!("{pat}|internal_user|{pat_budget}|10"),
        format!("{quinn}|internal_user|ui-quinn-budget|25"),
    ];
    want.sort();
    wait_rows(
        db,
        &format!(
            r#"SELECT m.user_id || '|' || m.user_role || '|' || COALESCE(m.budget_id, 'NULL') || '|' || COALESCE(CAST(b.max_budget AS TEXT), 'NULL')
               FROM "LiteLLM_OrganizationMembership" m LEFT JOIN "LiteLLM_BudgetTable" b ON b.budget_id = m.budget_id
               WHERE m.organization_id = '{id}' ORDER BY m.user_id"#
        ),
        &want,
        60,
    )
    .await;

    let events = w
        .kubectl()
        .ok(&["get", "events.events.k8s.io", "-n", ns, "-o", "json"])
        .await;
    assert!(
        events.contains("DriftCorrected") && events.contains("organization_alias"),
        "{events}"
    );
    assert!(
        events.contains("user_role"),
        "the member's drift is reported too: {events}"
    );
    assert!(!events.contains("Conflict"), "{events}");

    // Still Ready, and a further resync changes nothing.
    let acme = orgs.get("acme").await.expect("get");
    assert!(org_ready(&acme), "{:?}", acme.status);
    for name in ["pat", "quinn"] {
        let m = members.get(name).await.expect("get");
        assert!(member_ready(&m), "{name}: {:?}", m.status);
    }
    let rows = db.snapshot().await;
    tokio::time::sleep(Duration::from_secs(5)).await; // two resync periods
    assert_eq!(db.snapshot().await, rows, "no write once converged");
    let log = op.log_lines();
    assert!(
        !log.iter().any(|l| l.contains("Conflict")),
        "{}",
        log.join("\n")
    );
    w.db.cleanup().await;
}
