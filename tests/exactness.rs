//! Exactness against LiteLLM's own writes: rows the operator adopts, copies or releases keep
//! every value no manifest declares, byte for byte. LiteLLM's writes are reproduced in SQL
//! (as in `tests/coexistence.rs`); each test runs on LiteLLM's migrated PostgreSQL schema and
//! on SQLite.

mod support;

use std::process::Command;

use litellm_org_operator::crd::{OrganizationMemberSpec, OrganizationSpec};
use litellm_org_operator::engine::{
    DesiredMember, DesiredOrganization, ObjectKey, ObjectPlan, PruneKeep, ids,
};
use litellm_org_operator::error::EngineError;
use litellm_org_operator::store::Change;
use support::{TestDb, spec};

const ACTOR: &str = "litellm-org-operator";
const BIN: &str = env!("CARGO_BIN_EXE_litellm-org-operator");

macro_rules! on_both {
    ($name:ident) => {
        mod $name {
            #[tokio::test]
            async fn litellm_schema() {
                let db = super::TestDb::litellm().await;
                super::$name(&db).await;
                db.cleanup().await;
            }
            #[tokio::test]
            async fn sqlite() {
                let db = super::TestDb::sqlite().await;
                super::later_litellm_columns(&db).await;
                super::$name(&db).await;
                db.cleanup().await;
            }
        }
    };
}

/// The budget columns later LiteLLM versions added, on SQLite as on LiteLLM's schema (the
/// operator's own DDL does not know them: a copy must carry them all the same). `tpd_limit`
/// is declarable, so the operator's DDL has it.
async fn later_litellm_columns(db: &TestDb) {
    db.exec(
        r#"ALTER TABLE "LiteLLM_BudgetTable" ADD COLUMN "allowed_models" TEXT DEFAULT '[]';
           ALTER TABLE "LiteLLM_BudgetTable" ADD COLUMN "temp_budget_increase" REAL;
           ALTER TABLE "LiteLLM_BudgetTable" ADD COLUMN "temp_budget_expiry" TEXT;"#,
    )
    .await;
}

fn org(yaml: &str) -> DesiredOrganization {
    let s: OrganizationSpec = spec(yaml);
    DesiredOrganization::from_spec(ObjectKey::new("ns", "ui"), &s, ACTOR).expect("valid org")
}

fn member(yaml: &str) -> DesiredMember {
    let s: OrganizationMemberSpec = spec(yaml);
    DesiredMember::from_spec(ObjectKey::new("ns", "ui-member"), &s).expect("valid member")
}

async fn plan_org(db: &TestDb, d: &DesiredOrganization) -> Result<ObjectPlan, EngineError> {
    db.engine().plan_organization(d).await
}

async fn apply_org(db: &TestDb, d: &DesiredOrganization) -> ObjectPlan {
    let engine = db.engine();
    let plan = engine.plan_organization(d).await.expect("plan org");
    engine.apply(&plan).await.expect("apply org");
    plan
}

async fn apply_member(db: &TestDb, d: &DesiredMember) -> ObjectPlan {
    let engine = db.engine();
    let plan = engine
        .plan_member(d, "ui-org", false)
        .await
        .expect("plan member");
    engine.apply(&plan).await.expect("apply member");
    plan
}

/// Prune everything the CLI's manager holds.
async fn prune_all(db: &TestDb) {
    let engine = db.engine();
    for plan in engine
        .plan_prune(&PruneKeep::default())
        .await
        .expect("plan prune")
    {
        engine.apply(&plan).await.expect("apply prune");
    }
}

async fn one(db: &TestDb, sql: &str) -> String {
    let rows = db.strings(sql).await;
    assert_eq!(rows.len(), 1, "{sql}: {rows:?}");
    rows.into_iter().next().expect("one row")
}

/// A whole row as JSON text, without the columns `skip` names: every column the table has
/// (LiteLLM's, whichever version), so a comparison misses none.
async fn row_without(db: &TestDb, table: &str, key: &str, value: &str, skip: &[&str]) -> String {
    if db.is_postgres() {
        let minus: String = skip.iter().map(|c| format!(" - '{c}'")).collect();
        return one(
            db,
            &format!(r#"SELECT CAST(to_jsonb(t){minus} AS TEXT) FROM "{table}" t WHERE "{key}" = '{value}'"#),
        )
        .await;
    }
    let columns = db
        .strings(&format!(
            r#"SELECT "name" FROM pragma_table_info('{table}') ORDER BY "cid""#
        ))
        .await;
    let pairs: Vec<String> = columns
        .iter()
        .filter(|c| !skip.contains(&c.as_str()))
        .map(|c| format!(r#"'{c}', "{c}""#))
        .collect();
    one(
        db,
        &format!(
            r#"SELECT json_object({}) FROM "{table}" WHERE "{key}" = '{value}'"#,
            pairs.join(", ")
        ),
    )
    .await
}

/// An organization and its budget as LiteLLM's `/organization/new` leaves them, with every
/// budget column set (`allowed_models`, `tpd_limit` and the temporary increase included).
async fn made_in_litellm(db: &TestDb, metadata: &str) {
    let models = if db.is_postgres() {
        "'{gpt-4o,o1}'"
    } else {
        r#"'["gpt-4o","o1"]'"#
    };
    db.exec(&format!(
        r#"INSERT INTO "LiteLLM_BudgetTable" (budget_id, max_budget, soft_budget, tpm_limit, rpm_limit, tpd_limit, allowed_models,
             temp_budget_increase, temp_budget_expiry, budget_duration, budget_reset_at, model_max_budget, created_at, created_by, updated_at, updated_by)
           VALUES ('ui-budget', 10, 8, 100, 5, 5000, {models}, 2.5, '2026-06-01 00:00:00', '30d', '2026-02-01 00:00:00',
             '{{"gpt-4o": {{"max_budget": 5, "budget_duration": "30d", "tpm_limit": 7}}}}', '2026-01-01 00:00:00', 'admin', '2026-01-01 00:00:00', 'admin');
           INSERT INTO "LiteLLM_OrganizationTable" (organization_id, organization_alias, budget_id, metadata, spend, created_by, updated_by)
             VALUES ('ui-org', 'Made in the UI', 'ui-budget', '{metadata}', 12.5, 'admin', 'admin');"#
    ))
    .await;
}

/// The budget columns that differ between a copy and its source by construction.
const BUDGET_IDENTITY: &[&str] = &[
    "budget_id",
    "created_at",
    "created_by",
    "updated_at",
    "updated_by",
];

// Finding 1: undeclared metadata is kept exactly.

async fn undeclared_metadata_keeps_its_text(db: &TestDb) {
    made_in_litellm(
        db,
        r#"{"big": 123456789012345678901234567890, "money": 19.999999999999999999, "p": 1.50, "x": "1"}"#,
    )
    .await;
    apply_org(db, &org("organizationId: ui-org\nmetadata: {x: \"2\"}\n")).await;
    let text = one(
        db,
        r#"SELECT CAST(metadata AS TEXT) FROM "LiteLLM_OrganizationTable""#,
    )
    .await;
    let text = text.replace(' ', "");
    for exact in [
        r#""big":123456789012345678901234567890"#,
        r#""money":19.999999999999999999"#,
        r#""p":1.50"#,
        r#""x":"2""#,
    ] {
        assert!(text.contains(exact), "{exact} in {text}");
    }
    let again = plan_org(db, &org("organizationId: ui-org\nmetadata: {x: \"2\"}\n")).await;
    assert!(again.expect("plan").is_empty(), "settled");

    // Metadata that is not an object is never replaced: declaring keys on it is a conflict,
    // and a manifest that declares none leaves it alone.
    db.exec(r#"UPDATE "LiteLLM_OrganizationTable" SET metadata = '["legacy", {"a": 1.50}]'"#)
        .await;
    let before = db.snapshot().await;
    let refused = plan_org(db, &org("organizationId: ui-org\nmetadata: {x: \"3\"}\n")).await;
    assert!(
        matches!(refused, Err(EngineError::Conflict(_))),
        "{refused:?}"
    );
    prune_all(db).await;
    let text = one(
        db,
        r#"SELECT CAST(metadata AS TEXT) FROM "LiteLLM_OrganizationTable""#,
    )
    .await;
    assert_eq!(text.replace(' ', ""), r#"["legacy",{"a":1.50}]"#);
    assert_eq!(db.snapshot().await, before);
}
on_both!(undeclared_metadata_keeps_its_text);

// Finding 2: the copy on adoption is the whole row.

async fn the_budget_copy_on_adoption_is_the_whole_row(db: &TestDb) {
    made_in_litellm(db, "{}").await;
    let d = org("organizationId: ui-org\nbudget: {maxBudget: 50}\n");
    let plan = apply_org(db, &d).await;
    assert!(
        plan.changes
            .iter()
            .any(|c| matches!(c, Change::CopyBudget { .. })),
        "{plan}"
    );
    let own = ids::organization_budget_id("ns", "ui");
    assert_eq!(
        one(db, r#"SELECT budget_id FROM "LiteLLM_OrganizationTable""#).await,
        own
    );
    let mut skip = BUDGET_IDENTITY.to_vec();
    skip.push("max_budget");
    assert_eq!(
        row_without(db, "LiteLLM_BudgetTable", "budget_id", &own, &skip).await,
        row_without(db, "LiteLLM_BudgetTable", "budget_id", "ui-budget", &skip).await,
        "every column but the declared limit is copied, the reset window included"
    );
    let max = one(db, &format!(r#"SELECT CAST(max_budget AS TEXT) FROM "LiteLLM_BudgetTable" WHERE budget_id = '{own}'"#)).await;
    assert_eq!(max.parse::<f64>().ok(), Some(50.0));
    assert!(plan_org(db, &d).await.expect("plan").is_empty(), "settled");

    // Removing the budget points the organization back at its own and deletes the copy.
    apply_org(db, &org("organizationId: ui-org\n")).await;
    assert_eq!(
        db.strings(r#"SELECT budget_id FROM "LiteLLM_BudgetTable" ORDER BY 1"#)
            .await,
        vec!["ui-budget".to_string()]
    );
}
on_both!(the_budget_copy_on_adoption_is_the_whole_row);

// Finding 3: releasing an adopted row gives back what it had.

async fn releasing_an_adopted_row_gives_back_its_budget(db: &TestDb) {
    made_in_litellm(db, "{}").await;
    let users = if db.is_postgres() { "'{}'" } else { "'[]'" };
    db.exec(&format!(
        r#"INSERT INTO "LiteLLM_BudgetTable" (budget_id, max_budget, created_by, updated_by) VALUES ('ui-member-budget', 25, 'admin', 'admin');
           INSERT INTO "LiteLLM_UserTable" (user_id, user_email, user_role, models, teams, metadata, spend) VALUES ('u-ann', 'ann@example.com', 'internal_user', {users}, {users}, '{{}}', 0);
           INSERT INTO "LiteLLM_OrganizationMembership" (user_id, organization_id, user_role, budget_id, spend) VALUES ('u-ann', 'ui-org', 'org_admin', 'ui-member-budget', 3);"#
    ))
    .await;
    let org_before = row_without(
        db,
        "LiteLLM_OrganizationTable",
        "organization_id",
        "ui-org",
        &["updated_at", "updated_by"],
    )
    .await;
    for policy in ["Delete", "Retain"] {
        apply_org(
            db,
            &org(&format!(
                "organizationId: ui-org\nbudget: {{maxBudget: 50}}\ndeletionPolicy: {policy}\n"
            )),
        )
        .await;
        apply_member(
            db,
            &member(&format!(
                "organizationId: ui-org\nuser: {{userId: u-ann}}\nrole: org_admin\nmaxBudgetInOrganization: 10\ndeletionPolicy: {policy}\n"
            )),
        )
        .await;
        assert_eq!(
            db.count("LiteLLM_BudgetTable").await,
            4,
            "{policy}: two copies"
        );
        prune_all(db).await;
        assert_eq!(
            db.strings(r#"SELECT budget_id FROM "LiteLLM_BudgetTable" ORDER BY 1"#)
                .await,
            vec!["ui-budget".to_string(), "ui-member-budget".to_string()],
            "{policy}: the copies are gone"
        );
        assert_eq!(
            one(
                db,
                r#"SELECT budget_id FROM "LiteLLM_OrganizationMembership""#
            )
            .await,
            "ui-member-budget",
            "{policy}"
        );
        assert_eq!(
            row_without(
                db,
                "LiteLLM_OrganizationTable",
                "organization_id",
                "ui-org",
                &["updated_at", "updated_by"]
            )
            .await,
            org_before,
            "{policy}"
        );
        let ledger = if db.is_postgres() {
            "litellm_org_operator.ledger"
        } else {
            "litellm_org_operator_ledger"
        };
        assert!(
            db.strings(&format!("SELECT row_key FROM {ledger}"))
                .await
                .is_empty(),
            "{policy}"
        );
    }
}
on_both!(releasing_an_adopted_row_gives_back_its_budget);

// A limit added to the inventory is declared, written, copied and given back like the others.

async fn a_tpd_limit_is_one_line_of_the_inventory(db: &TestDb) {
    made_in_litellm(db, "{}").await;
    let own = ids::organization_budget_id("ns", "ui");
    apply_org(
        db,
        &org("organizationId: ui-org\nbudget: {tpdLimit: 9000}\n"),
    )
    .await;
    let sql = format!(
        r#"SELECT CAST(tpd_limit AS TEXT) || ' ' || CAST(max_budget AS TEXT) FROM "LiteLLM_BudgetTable" WHERE budget_id = '{own}'"#
    );
    assert_eq!(
        one(db, &sql).await.replace(".0", ""),
        "9000 10",
        "declared, the rest copied"
    );
    let plan = plan_org(
        db,
        &org("organizationId: ui-org\nbudget: {tpdLimit: 9001}\n"),
    )
    .await;
    assert!(
        plan.expect("plan")
            .to_string()
            .contains("tpd_limit: 9000 -> 9001")
    );
    prune_all(db).await;
    assert_eq!(
        one(db, r#"SELECT budget_id FROM "LiteLLM_OrganizationTable""#).await,
        "ui-budget"
    );
}
on_both!(a_tpd_limit_is_one_line_of_the_inventory);

// Finding 4: `model_max_budget` in LiteLLM's shape, compared by meaning, managed per model.

async fn model_budgets_settle_in_litellms_shape(db: &TestDb) {
    let d = org(
        "budget: {maxBudget: 100, modelMaxBudget: {gpt-4o: {budgetLimit: 5, timePeriod: 30d}}}\n",
    );
    apply_org(db, &d).await;
    let own = ids::organization_budget_id("ns", "ui");
    let written = one(db, &format!(r#"SELECT CAST(model_max_budget AS TEXT) FROM "LiteLLM_BudgetTable" WHERE budget_id = '{own}'"#)).await;
    assert!(
        written.contains("\"max_budget\"") && !written.contains("budget_limit"),
        "{written}"
    );
    // LiteLLM's `/budget/update` writes the same values in its shape, with limits of its own.
    db.exec(&format!(
        r#"UPDATE "LiteLLM_BudgetTable" SET model_max_budget = '{{"gpt-4o": {{"max_budget": 5.0, "budget_duration": "30d", "tpm_limit": 100, "rpm_limit": 3}}, "o1": {{"max_budget": 1.50}}}}' WHERE budget_id = '{own}'"#
    ))
    .await;
    let plan = plan_org(db, &d).await.expect("plan");
    assert!(plan.is_empty(), "equal by meaning: {plan}");
    let d = org(
        "budget: {maxBudget: 100, modelMaxBudget: {gpt-4o: {budgetLimit: 6, timePeriod: 30d}}}\n",
    );
    apply_org(db, &d).await;
    let text = one(db, &format!(r#"SELECT CAST(model_max_budget AS TEXT) FROM "LiteLLM_BudgetTable" WHERE budget_id = '{own}'"#)).await;
    let text = text.replace(' ', "");
    for kept in [
        r#""tpm_limit":100"#,
        r#""rpm_limit":3"#,
        r#""o1":{"max_budget":1.50}"#,
        r#""max_budget":6"#,
    ] {
        assert!(text.contains(kept), "{kept} in {text}");
    }
    assert!(plan_org(db, &d).await.expect("plan").is_empty(), "settled");
}
on_both!(model_budgets_settle_in_litellms_shape);

// Finding 5: a member found by email keeps its user when LiteLLM changes the user's email.

async fn a_changed_email_keeps_the_held_user(db: &TestDb) {
    made_in_litellm(db, "{}").await;
    apply_org(db, &org("organizationId: ui-org\n")).await;
    let d = member("organizationId: ui-org\nuser: {email: eve@example.com}\nrole: internal_user\n");
    apply_member(db, &d).await;
    let eve = ids::user_id_for_email("eve@example.com");
    // LiteLLM's `/user/update`.
    db.exec(&format!(r#"UPDATE "LiteLLM_UserTable" SET user_email = 'eve@new.example.com' WHERE user_id = '{eve}'"#)).await;
    let plan = db
        .engine()
        .plan_member(&d, "ui-org", false)
        .await
        .expect("plan");
    assert!(plan.is_empty(), "{plan}");
    assert_eq!(plan.user_id.as_deref(), Some(eve.as_str()));
    assert!(
        plan.to_string().contains("no longer has the email"),
        "{plan}"
    );
    assert_eq!(db.count("LiteLLM_OrganizationMembership").await, 1);
    assert_eq!(db.count("LiteLLM_UserTable").await, 1);
}
on_both!(a_changed_email_keeps_the_held_user);

// Findings 6 and 9 through the binary: `--new-user-*` reach `plan`/`apply`, and `plan`
// counts what `apply` writes.

#[tokio::test]
async fn the_cli_plans_what_it_applies_with_new_user_defaults() {
    let db = TestDb::sqlite().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let manifests = ["a", "b"]
        .iter()
        .map(|o| {
            format!(
                "apiVersion: litellm.dev/v1alpha1\nkind: Organization\nmetadata: {{name: {o}, namespace: ns}}\nspec: {{}}\n---\napiVersion: litellm.dev/v1alpha1\nkind: OrganizationMember\nmetadata: {{name: {o}-alice, namespace: ns}}\nspec: {{organizationRef: {{name: {o}}}, user: {{email: alice@example.com}}, role: internal_user}}\n---\n"
            )
        })
        .collect::<String>();
    std::fs::write(dir.path().join("m.yaml"), manifests).expect("write");
    let run = |verb: &str| {
        let out = Command::new(BIN)
            .current_dir(dir.path())
            .args([
                verb,
                "--new-user-max-budget",
                "7",
                "--new-user-budget-duration",
                "1d",
                "-f",
                "m.yaml",
            ])
            .env("DATABASE_URL", db.url())
            .output()
            .expect("run");
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };
    let plan = run("plan");
    assert!(plan.contains("max_budget: 7"), "{plan}");
    let counted = |text: &str| {
        text.lines()
            .find(|l| l.contains("to create"))
            .and_then(|l| l.split(": ").nth(1))
            .and_then(|l| l.split(' ').next())
            .map(str::to_string)
    };
    let applied = run("apply");
    assert_eq!(counted(&plan), counted(&applied), "{plan}\n{applied}");
    assert_eq!(counted(&plan).as_deref(), Some("7"), "{plan}");
    assert_eq!(
        one(
            &db,
            r#"SELECT CAST(max_budget AS TEXT) || ' ' || budget_duration FROM "LiteLLM_UserTable""#
        )
        .await,
        "7.0 1d"
    );
    db.cleanup().await;
}

/// Every row of the four tables LiteLLM shares with the operator, whole (every column).
async fn whole_tables(db: &TestDb) -> Vec<String> {
    let mut rows = Vec::new();
    for table in [
        "LiteLLM_BudgetTable",
        "LiteLLM_OrganizationTable",
        "LiteLLM_UserTable",
        "LiteLLM_OrganizationMembership",
    ] {
        let sql = if db.is_postgres() {
            format!(r#"SELECT CAST(to_jsonb(t) AS TEXT) FROM "{table}" t ORDER BY 1"#)
        } else {
            let columns = db
                .strings(&format!(
                    r#"SELECT "name" FROM pragma_table_info('{table}')"#
                ))
                .await;
            let pairs: Vec<String> = columns.iter().map(|c| format!(r#"'{c}', "{c}""#)).collect();
            format!(
                r#"SELECT json_object({}) FROM "{table}" ORDER BY 1"#,
                pairs.join(", ")
            )
        };
        rows.extend(db.strings(&sql).await);
    }
    rows
}

// export → apply on rows LiteLLM made changes no byte of any column of the four tables.

async fn export_then_apply_keeps_every_column(db: &TestDb) {
    made_in_litellm(
        db,
        r#"{"big": 123456789012345678901234567890, "money": 19.999999999999999999, "p": 1.50}"#,
    )
    .await;
    let users = if db.is_postgres() { "'{}'" } else { "'[]'" };
    db.exec(&format!(
        r#"INSERT INTO "LiteLLM_BudgetTable" (budget_id, max_budget, created_by, updated_by) VALUES ('ui-member-budget', 25, 'admin', 'admin');
           INSERT INTO "LiteLLM_UserTable" (user_id, user_email, user_role, models, teams, metadata, spend) VALUES ('u-ann', 'ann@example.com', 'internal_user', {users}, {users}, '{{"n": 1.50}}', 0);
           INSERT INTO "LiteLLM_OrganizationMembership" (user_id, organization_id, user_role, budget_id, spend) VALUES ('u-ann', 'ui-org', 'org_admin', 'ui-member-budget', 3);"#
    ))
    .await;
    let before = whole_tables(db).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let run = |args: &[&str]| {
        let out = Command::new(BIN)
            .current_dir(dir.path())
            .args(args)
            .env("DATABASE_URL", db.url())
            .output()
            .expect("run");
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let manifests = run(&["export", "--namespace", "ns"]);
    std::fs::write(dir.path().join("adopt.yaml"), manifests).expect("write");
    run(&["apply", "-f", "adopt.yaml"]);
    run(&["plan", "-f", "adopt.yaml"]);
    assert_eq!(whole_tables(db).await, before);
}
on_both!(export_then_apply_keeps_every_column);
