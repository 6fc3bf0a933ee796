//! `export` → `apply` on organizations made in LiteLLM: the manifests adopt the rows with
//! exactly their values (`plan` exits 0, nothing in LiteLLM changes), the adoption is recorded
//! in the ledger, and from then on the declared fields are managed.

mod support;

use std::path::Path;
use std::process::{Command, Output};

use support::TestDb;

const BIN: &str = env!("CARGO_BIN_EXE_litellm-org-operator");

fn run(dir: &Path, args: &[&str], database: &str) -> Output {
    Command::new(BIN)
        .current_dir(dir)
        .args(args)
        .env("DATABASE_URL", database)
        .output()
        .expect("run the binary")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// What LiteLLM's `/organization/new` and `member_add` leave, written with SQL.
async fn made_in_litellm(db: &TestDb) {
    let (arr, empty) = if db.is_postgres() {
        ("'{gpt-4o}'", "'{}'")
    } else {
        ("'[\"gpt-4o\"]'", "'[]'")
    };
    db.exec(&format!(
        r#"INSERT INTO "LiteLLM_BudgetTable" (budget_id, max_budget, budget_duration, created_by, updated_by) VALUES ('ui-budget', 1000, '30d', 'admin', 'admin');
           INSERT INTO "LiteLLM_BudgetTable" (budget_id, max_budget, created_by, updated_by) VALUES ('ui-member-budget', 100, 'admin', 'admin');
           INSERT INTO "LiteLLM_OrganizationTable" (organization_id, organization_alias, budget_id, models, metadata, spend, created_by, updated_by)
             VALUES ('ui-org', 'Made in the UI', 'ui-budget', {arr}, '{{"team": "ui"}}', 12.5, 'admin', 'admin');
           INSERT INTO "LiteLLM_UserTable" (user_id, user_email, user_role, models, teams, metadata, spend) VALUES ('u-ann', 'ann@example.com', 'internal_user', {empty}, {empty}, '{{}}', 0);
           INSERT INTO "LiteLLM_UserTable" (user_id, user_email, user_role, models, teams, metadata, spend) VALUES ('u-bob', NULL, 'internal_user', {empty}, {empty}, '{{}}', 0);
           INSERT INTO "LiteLLM_OrganizationMembership" (user_id, organization_id, user_role, budget_id, spend) VALUES ('u-ann', 'ui-org', 'org_admin', 'ui-member-budget', 0);
           INSERT INTO "LiteLLM_OrganizationMembership" (user_id, organization_id, user_role, spend) VALUES ('u-bob', 'ui-org', 'internal_user', 0);"#
    ))
    .await;
}

async fn export_then_apply_changes_nothing(db: TestDb) {
    made_in_litellm(&db).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let url = db.url();
    let out = run(dir.path(), &["export", "--namespace", "platform"], &url);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let manifests = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(manifests.contains("organizationId: ui-org"), "{manifests}");
    assert!(manifests.contains("budgetId: ui-budget"), "{manifests}");
    assert!(manifests.contains("name: made-in-the-ui"), "{manifests}");
    std::fs::write(dir.path().join("adopt.yaml"), &manifests).expect("write");

    let before = db.snapshot().await;
    let out = run(dir.path(), &["plan", "-f", "adopt.yaml"], &url);
    assert_eq!(out.status.code(), Some(0), "plan exits 0: {}", text(&out));
    let out = run(dir.path(), &["apply", "-f", "adopt.yaml"], &url);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(db.snapshot().await, before, "LiteLLM's rows are unchanged");
    let ledger = if db.is_postgres() {
        r#"SELECT resource || ' ' || CAST(created AS TEXT) FROM litellm_org_operator.ledger ORDER BY resource"#
    } else {
        r#"SELECT resource || ' ' || CAST(created AS TEXT) FROM litellm_org_operator_ledger ORDER BY resource"#
    };
    let entries = db.strings(ledger).await;
    let adopted = if db.is_postgres() { "false" } else { "0" };
    assert_eq!(
        entries,
        vec![
            format!("Organization/platform/made-in-the-ui {adopted}"),
            format!("OrganizationMember/platform/made-in-the-ui-ann {adopted}"),
            format!("OrganizationMember/platform/made-in-the-ui-u-bob {adopted}"),
        ],
        "adopted, not created"
    );
    // From now on the declared fields are managed: an alias changed in LiteLLM is drift.
    db.exec(r#"UPDATE "LiteLLM_OrganizationTable" SET organization_alias = 'Renamed' WHERE organization_id = 'ui-org'"#)
        .await;
    let out = run(dir.path(), &["plan", "-f", "adopt.yaml"], &url);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("organization_alias: \"Renamed\" -> \"Made in the UI\""),
        "{}",
        text(&out)
    );
    // Exporting again finds nothing left to adopt.
    let out = run(dir.path(), &["export"], &url);
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("kind: Organization"),
        "{}",
        text(&out)
    );
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_then_apply_on_litellm_schema() {
    export_then_apply_changes_nothing(TestDb::litellm().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_then_apply_on_sqlite() {
    export_then_apply_changes_nothing(TestDb::sqlite().await).await;
}
