//! Coexistence with LiteLLM: the writes LiteLLM's own endpoints make (`/organization/update`,
//! `/budget/update`, `/organization/member_update`, `/organization/member_delete`,
//! `/organization/delete`, a user made in the UI), issued as SQL on LiteLLM's migrated schema
//! between two runs of the CLI, and what `plan`, `apply` and `apply --prune` then do; adoption,
//! races between writers, managers, and faults.

mod support;

use std::process::{Child, Command, Output, Stdio};

use litellm_org_operator::engine::{ObjectKey, ids};
use support::TestDb;

const BIN: &str = env!("CARGO_BIN_EXE_litellm-org-operator");
const LEDGER: &str = r#""litellm_org_operator"."ledger""#;

/// What one run of the binary printed, and its exit code.
struct Ran {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Ran {
    fn from(o: Output) -> Self {
        Self {
            code: o.status.code(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }

    #[track_caller]
    fn expect(self, code: i32) -> Self {
        assert_eq!(
            self.code,
            Some(code),
            "exit code\nstdout:\n{}\nstderr:\n{}",
            self.stdout,
            self.stderr
        );
        self
    }
}

/// A folder of manifests and the database the binary runs against.
struct Cli {
    dir: tempfile::TempDir,
    url: String,
}

impl Cli {
    fn new(db: &TestDb) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("empty")).expect("mkdir");
        Self { dir, url: db.url() }
    }

    /// Write `yaml` to `rel` (a path under the folder; parents created).
    fn write(&self, rel: &str, yaml: &str) {
        let path = self.dir.path().join(rel);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, yaml).expect("write manifest");
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.current_dir(self.dir.path())
            .args(args)
            .env("DATABASE_URL", &self.url)
            // `--prune` needs the manager named; `--manager` given in a test still wins.
            .env("LITELLM_ORG_OPERATOR_MANAGER", "cli")
            .env_remove("LEDGER_SCHEMA");
        cmd
    }

    fn run(&self, args: &[&str]) -> Ran {
        Ran::from(self.command(args).output().expect("run the binary"))
    }

    fn spawn(&self, args: &[&str]) -> Child {
        self.command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the binary")
    }

    /// `plan -f dir` right after a LiteLLM write: it may only put back what the manifests
    /// declare (`declared`, the fields as the plan names them; rows LiteLLM deleted are made
    /// again) and never delete. Anything else
    /// would rewrite a value LiteLLM holds and no manifest declares.
    #[track_caller]
    fn plan_after_litellm_write(&self, dir: &str, declared: &[&str]) -> Ran {
        let ran = self.run(&["plan", "-f", dir]);
        assert!(
            matches!(ran.code, Some(0 | 2)),
            "plan failed after a LiteLLM write\nstdout:\n{}\nstderr:\n{}",
            ran.stdout,
            ran.stderr
        );
        for (op, row, field) in planned_fields(&ran.stdout) {
            // A row made again (LiteLLM deleted it) holds only what is declared: its header,
            // and `metadata` as the declared keys alone.
            let recreated = op == '+' && matches!(field.as_str(), "" | "metadata");
            assert!(
                op != '-' && (recreated || declared.contains(&field.as_str())),
                "the plan after a LiteLLM write touches {op} {row} `{field}`, which no manifest declares:\n{}",
                ran.stdout
            );
        }
        ran
    }
}

/// What a plan's text would write: `(op, row, field)` for each `field: …` line under a `+` or
/// `~` row, and `('-', row, "")` for each row it would delete. A `+` row with no field lines (a
/// user, a membership) is `(op, row, "")`.
fn planned_fields(stdout: &str) -> Vec<(char, String, String)> {
    let mut out = Vec::new();
    let mut row: Option<(char, String, bool)> = None;
    let flush = |row: &mut Option<(char, String, bool)>, out: &mut Vec<(char, String, String)>| {
        if let Some((op, name, false)) = row.take() {
            out.push((op, name, String::new()));
        }
    };
    for line in stdout.lines() {
        if let Some(rest) = line.strip_prefix("      ") {
            if let Some((op, name, seen)) = row.as_mut() {
                let field = rest.split(": ").next().unwrap_or(rest).trim().to_string();
                out.push((*op, name.clone(), field));
                *seen = true;
            }
            continue;
        }
        flush(&mut row, &mut out);
        let mut chars = line.strip_prefix("  ").unwrap_or("").chars();
        if let (Some(op @ ('+' | '~' | '-')), Some(' ')) = (chars.next(), chars.next()) {
            row = Some((op, chars.as_str().to_string(), false));
        }
    }
    flush(&mut row, &mut out);
    out
}

#[test]
fn planned_fields_reads_the_plan_text() {
    let text = "Organization ns/acme:\n  ~ budget b1\n      max_budget: 5 -> 100\n  ~ organization o1\n      organization_alias: \"X\" -> \"Acme\"\n      metadata.team: \"b\" -> \"a\"\nOrganizationMember ns/pat:\n  + user u1 (email: pat@example.com)\n  - membership user u2 in o1\nPlan: 1 to create, 2 to change, 1 to delete (2 objects read).\n";
    let got = planned_fields(text);
    let want: Vec<(char, String, String)> = vec![
        ('~', "budget b1".into(), "max_budget".into()),
        ('~', "organization o1".into(), "organization_alias".into()),
        ('~', "organization o1".into(), "metadata.team".into()),
        (
            '+',
            "user u1 (email: pat@example.com)".into(),
            String::new(),
        ),
        ('-', "membership user u2 in o1".into(), String::new()),
    ];
    assert_eq!(got, want);
}

fn org(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: litellm.dev/v1alpha1\nkind: Organization\nmetadata: {{name: {name}, namespace: ns}}\nspec: {spec}\n---\n"
    )
}

fn member(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: litellm.dev/v1alpha1\nkind: OrganizationMember\nmetadata: {{name: {name}, namespace: ns}}\nspec: {spec}\n---\n"
    )
}

/// The single text value a query returns.
async fn one(db: &TestDb, sql: &str) -> String {
    let rows = db.strings(sql).await;
    assert_eq!(rows.len(), 1, "{sql}: {rows:?}");
    rows.into_iter().next().expect("one row")
}

async fn count(db: &TestDb, sql: &str) -> usize {
    one(
        db,
        &format!("SELECT CAST(count(*) AS TEXT) FROM ({sql}) AS q"),
    )
    .await
    .parse()
    .expect("count")
}

/// Budget rows nothing points at (no organization, no membership).
async fn orphan_budgets(db: &TestDb) -> Vec<String> {
    db.strings(
        r#"SELECT b.budget_id FROM "LiteLLM_BudgetTable" b
           WHERE NOT EXISTS (SELECT 1 FROM "LiteLLM_OrganizationTable" o WHERE o.budget_id = b.budget_id)
             AND NOT EXISTS (SELECT 1 FROM "LiteLLM_OrganizationMembership" m WHERE m.budget_id = b.budget_id)
           ORDER BY 1"#,
    )
    .await
}

/// Every ledger entry as `row_key|manager|resource|created`.
async fn ledger(db: &TestDb) -> Vec<String> {
    db.strings(&format!(
        r#"SELECT row_key || '|' || manager || '|' || resource || '|' || CAST(created AS TEXT) FROM {LEDGER} ORDER BY 1"#
    ))
    .await
}

fn org_id(name: &str) -> String {
    ids::organization_id("ns", name)
}

fn org_budget(name: &str) -> String {
    ids::organization_budget_id("ns", name)
}

fn member_budget(name: &str) -> String {
    ids::member_budget_id("ns", name)
}

/// The organization `acme` (alias, models, one metadata key and a budget declared) with two
/// members: `pat` with a budget of their own in it, `quinn` without.
fn acme_manifests() -> String {
    org(
        "acme",
        "{alias: Acme, models: [gpt-4o], metadata: {team: a}, budget: {maxBudget: 100, budgetDuration: 30d}}",
    ) + &member(
        "pat",
        "{organizationRef: {name: acme}, user: {email: pat@example.com}, role: internal_user, maxBudgetInOrganization: 10}",
    ) + &member(
        "quinn",
        "{organizationRef: {name: acme}, user: {email: quinn@example.com}, role: internal_user}",
    )
}

/// The fields the acme manifests declare, as a plan names them: the organization's alias,
/// models, `metadata.team` and its budget (`budget_id`, `max_budget`, `budget_duration`); pat's
/// budget (`max_budget`); both members' roles (`user_role`).
const ACME_DECLARED: &[&str] = &[
    "organization_alias",
    "models",
    "metadata.team",
    "budget_id",
    "max_budget",
    "budget_duration",
    "user_role",
];

async fn acme(db: &TestDb) -> Cli {
    let cli = Cli::new(db);
    cli.write("acme/all.yaml", &acme_manifests());
    cli.run(&["apply", "-f", "acme"]).expect(0);
    cli.run(&["plan", "-f", "acme"]).expect(0);
    cli
}

// 1. LiteLLM's own writes between two runs.

/// `/organization/update` of the seed: alias changed, `metadata` replaced wholesale (the
/// marker of earlier versions would be gone). The declared alias and key are put back, the key
/// LiteLLM added stays, ownership is intact, and prune still finds every row.
#[tokio::test]
async fn organization_update_with_wholesale_metadata() {
    let db = TestDb::litellm().await;
    let cli = acme(&db).await;
    let id = org_id("acme");
    db.exec(&format!(
        r#"UPDATE "LiteLLM_OrganizationTable" SET organization_alias = 'Acme (UI)', metadata = '{{"cost_center": "42"}}', updated_by = 'admin', updated_at = now() WHERE organization_id = '{id}'"#
    ))
    .await;

    let plan = cli
        .plan_after_litellm_write("acme", ACME_DECLARED)
        .expect(2);
    assert!(plan.stdout.contains("Acme (UI)"), "{}", plan.stdout);
    assert!(
        plan.stdout
            .contains("0 to create, 1 to change, 0 to delete"),
        "{}",
        plan.stdout
    );
    let applied = cli.run(&["apply", "-f", "acme"]).expect(0);
    assert!(!applied.stderr.contains("Conflict"), "{}", applied.stderr);
    assert_eq!(
        one(
            &db,
            &format!(
                r#"SELECT organization_alias || '|' || (metadata->>'team') || '|' || (metadata->>'cost_center') || '|' || CAST(metadata ? 'litellm-org-operator' AS TEXT) FROM "LiteLLM_OrganizationTable" WHERE organization_id = '{id}'"#
            )
        )
        .await,
        "Acme|a|42|false"
    );
    cli.run(&["plan", "-f", "acme"]).expect(0);

    // An edit of an undeclared key never causes a write.
    db.exec(&format!(
        r#"UPDATE "LiteLLM_OrganizationTable" SET metadata = metadata || '{{"cost_center": "43"}}' WHERE organization_id = '{id}'"#
    ))
    .await;
    let before = db.snapshot().await;
    cli.plan_after_litellm_write("acme", ACME_DECLARED)
        .expect(0);
    let again = cli.run(&["apply", "-f", "acme"]).expect(0);
    assert!(again.stdout.starts_with("No changes"), "{}", again.stdout);
    assert_eq!(db.snapshot().await, before);

    // Prune still knows the organization, whatever happened to its metadata.
    cli.run(&["apply", "--prune", "-f", "empty"]).expect(0);
    assert_eq!(
        count(&db, r#"SELECT 1 FROM "LiteLLM_OrganizationTable""#).await,
        0
    );
    assert_eq!(db.count("LiteLLM_BudgetTable").await, 0, "no budget leaks");
    assert_eq!(db.count("LiteLLM_OrganizationMembership").await, 0);
    assert!(ledger(&db).await.is_empty(), "{:?}", ledger(&db).await);
    db.cleanup().await;
}

/// `/budget/update` on the organization's budget: the declared limit is put back, the limit
/// LiteLLM added (undeclared) stays.
#[tokio::test]
async fn budget_update_on_the_organization_budget() {
    let db = TestDb::litellm().await;
    let cli = acme(&db).await;
    let budget = org_budget("acme");
    db.exec(&format!(
        r#"UPDATE "LiteLLM_BudgetTable" SET max_budget = 500, tpm_limit = 1000, updated_by = 'admin', updated_at = now() WHERE budget_id = '{budget}'"#
    ))
    .await;
    let plan = cli
        .plan_after_litellm_write("acme", ACME_DECLARED)
        .expect(2);
    assert!(
        plan.stdout.contains("max_budget: 500 -> 100"),
        "{}",
        plan.stdout
    );
    assert!(!plan.stdout.contains("tpm_limit"), "{}", plan.stdout);
    cli.run(&["apply", "-f", "acme"]).expect(0);
    assert_eq!(
        one(
            &db,
            &format!(
                r#"SELECT CAST(max_budget AS TEXT) || '|' || CAST(tpm_limit AS TEXT) || '|' || budget_duration FROM "LiteLLM_BudgetTable" WHERE budget_id = '{budget}'"#
            )
        )
        .await,
        "100|1000|30d"
    );
    cli.run(&["plan", "-f", "acme"]).expect(0);
    db.cleanup().await;
}

/// `/organization/member_update` with a role and a budget: on a member that declares its
/// budget, both are put back; on one that declares none, the role is put back and the budget
/// LiteLLM gave it (a new row, as member_update makes when the membership has none) is kept.
#[tokio::test]
async fn member_update_role_and_budget() {
    let db = TestDb::litellm().await;
    let cli = acme(&db).await;
    let id = org_id("acme");
    let pat = ids::user_id_for_email("pat@example.com");
    let quinn = ids::user_id_for_email("quinn@example.com");
    assert_eq!(
        db.count("LiteLLM_BudgetTable").await,
        2,
        "the organization's budget and pat's; none for quinn"
    );
    db.exec(&format!(
        r#"UPDATE "LiteLLM_OrganizationMembership" SET user_role = 'org_admin', updated_at = now() WHERE organization_id = '{id}';
           UPDATE "LiteLLM_BudgetTable" SET max_budget = 99, updated_by = 'admin' WHERE budget_id = (SELECT budget_id FROM "LiteLLM_OrganizationMembership" WHERE user_id = '{pat}' AND organization_id = '{id}');
           INSERT INTO "LiteLLM_BudgetTable" (budget_id, max_budget, created_by, updated_by) VALUES ('ui-quinn-budget', 25, 'admin', 'admin');
           UPDATE "LiteLLM_OrganizationMembership" SET budget_id = 'ui-quinn-budget' WHERE user_id = '{quinn}' AND organization_id = '{id}';"#
    ))
    .await;
    let plan = cli
        .plan_after_litellm_write("acme", ACME_DECLARED)
        .expect(2);
    assert!(
        plan.stdout.contains("max_budget: 99 -> 10"),
        "{}",
        plan.stdout
    );
    assert!(!plan.stdout.contains("ui-quinn-budget"), "{}", plan.stdout);
    cli.run(&["apply", "-f", "acme"]).expect(0);
    let rows = db
        .strings(&format!(
            r#"SELECT m.user_id || '|' || m.user_role || '|' || COALESCE(m.budget_id, 'NULL') || '|' || COALESCE(CAST(b.max_budget AS TEXT), 'NULL')
               FROM "LiteLLM_OrganizationMembership" m LEFT JOIN "LiteLLM_BudgetTable" b ON b.budget_id = m.budget_id
               WHERE m.organization_id = '{id}' ORDER BY m.user_id"#
        ))
        .await;
    let mut want = vec![
        format!("{pat}|internal_user|{}|10", member_budget("pat")),
        format!("{quinn}|internal_user|ui-quinn-budget|25"),
    ];
    want.sort();
    assert_eq!(rows, want);
    cli.run(&["plan", "-f", "acme"]).expect(0);

    // Prune deletes the budget the operator made and leaves the one LiteLLM made.
    cli.run(&["apply", "--prune", "-f", "empty"]).expect(0);
    assert_eq!(
        db.strings(r#"SELECT budget_id FROM "LiteLLM_BudgetTable""#)
            .await,
        vec!["ui-quinn-budget".to_string()]
    );
    db.cleanup().await;
}

/// `/organization/member_delete`: the membership is declared, so it comes back, with its own
/// budget row (which LiteLLM left behind) and no second one.
#[tokio::test]
async fn member_delete_from_litellm() {
    let db = TestDb::litellm().await;
    let cli = acme(&db).await;
    let id = org_id("acme");
    let pat = ids::user_id_for_email("pat@example.com");
    let quinn = ids::user_id_for_email("quinn@example.com");
    db.exec(&format!(
        r#"DELETE FROM "LiteLLM_OrganizationMembership" WHERE organization_id = '{id}' AND user_id IN ('{pat}', '{quinn}')"#
    ))
    .await;
    let plan = cli
        .plan_after_litellm_write("acme", ACME_DECLARED)
        .expect(2);
    assert!(
        plan.stdout
            .contains("2 to create, 0 to change, 0 to delete"),
        "{}",
        plan.stdout
    );
    cli.run(&["apply", "-f", "acme"]).expect(0);
    assert_eq!(
        db.strings(&format!(
            r#"SELECT user_id || '|' || COALESCE(budget_id, 'NULL') FROM "LiteLLM_OrganizationMembership" WHERE organization_id = '{id}' ORDER BY 1"#
        ))
        .await,
        {
            let mut v = vec![
                format!("{pat}|{}", member_budget("pat")),
                format!("{quinn}|NULL"),
            ];
            v.sort();
            v
        }
    );
    assert_eq!(db.count("LiteLLM_BudgetTable").await, 2);
    assert!(orphan_budgets(&db).await.is_empty());
    cli.run(&["plan", "-f", "acme"]).expect(0);
    db.cleanup().await;
}

/// `/organization/delete` from the UI (memberships, then the organization; budgets stay), and
/// the harsher case where the budget rows go too: the next `apply` recreates the declared rows
/// with the same ids, once; no error loop, and prune then removes them all.
#[tokio::test]
async fn organization_delete_from_the_ui() {
    for drop_budgets in [false, true] {
        let db = TestDb::litellm().await;
        let cli = acme(&db).await;
        let id = org_id("acme");
        db.exec(&format!(
            r#"DELETE FROM "LiteLLM_OrganizationMembership" WHERE organization_id = '{id}';
               DELETE FROM "LiteLLM_OrganizationTable" WHERE organization_id = '{id}';"#
        ))
        .await;
        if drop_budgets {
            db.exec(r#"DELETE FROM "LiteLLM_BudgetTable""#).await;
        }
        cli.plan_after_litellm_write("acme", ACME_DECLARED)
            .expect(2);
        let applied = cli.run(&["apply", "-f", "acme"]).expect(0);
        assert!(applied.stderr.is_empty(), "{}", applied.stderr);
        assert_eq!(
            one(
                &db,
                &format!(
                    r#"SELECT organization_alias || '|' || budget_id FROM "LiteLLM_OrganizationTable" WHERE organization_id = '{id}'"#
                )
            )
            .await,
            format!("Acme|{}", org_budget("acme"))
        );
        assert_eq!(
            count(
                &db,
                &format!(
                    r#"SELECT 1 FROM "LiteLLM_OrganizationMembership" WHERE organization_id = '{id}'"#
                )
            )
            .await,
            2
        );
        assert_eq!(db.count("LiteLLM_BudgetTable").await, 2);
        let again = cli.run(&["apply", "-f", "acme"]).expect(0);
        assert!(again.stdout.starts_with("No changes"), "{}", again.stdout);
        cli.run(&["apply", "--prune", "-f", "empty"]).expect(0);
        assert_eq!(db.count("LiteLLM_OrganizationTable").await, 0);
        assert_eq!(db.count("LiteLLM_BudgetTable").await, 0, "{drop_budgets}");
        assert!(ledger(&db).await.is_empty());
        db.cleanup().await;
    }
}

/// A user created in the UI with the member's email in another case, after the operator made
/// the membership: the membership keeps its user and nothing fails.
#[tokio::test]
async fn ui_user_with_the_same_email_in_another_case() {
    let db = TestDb::litellm().await;
    let cli = acme(&db).await;
    let id = org_id("acme");
    let pat = ids::user_id_for_email("pat@example.com");
    db.exec(
        r#"INSERT INTO "LiteLLM_UserTable" (user_id, user_email, user_role, models, spend) VALUES ('ui-pat', 'PAT@Example.com', 'internal_user', '{}', 0)"#,
    )
    .await;
    let plan = cli.plan_after_litellm_write("acme", ACME_DECLARED);
    let applied = cli.run(&["apply", "-f", "acme"]);
    assert_eq!(
        db.strings(&format!(
            r#"SELECT user_id FROM "LiteLLM_OrganizationMembership" WHERE organization_id = '{id}' AND user_id IN ('{pat}', 'ui-pat')"#
        ))
        .await,
        vec![pat.clone()],
        "the membership keeps its user"
    );
    plan.expect(0);
    applied.expect(0);
    db.cleanup().await;
}

/// The writes LiteLLM makes all day to rows the operator manages, none of them to a declared
/// field: spend (`DBSpendUpdateWriter._commit_spend_updates_to_db` increments the
/// organization's and the membership's `spend`), the budget reset (`ResetBudgetJob`, through
/// `_commit_budget_cascade_once`: spend zeroed, `budget_reset_at` advanced), `/budget/update`
/// of limits no manifest declares, `/organization/update` merging a metadata key,
/// `/organization/member_add` of a user no manifest declares, `/user/update` of the member's
/// user. After each one, `plan` is clean and `apply` writes nothing.
#[tokio::test]
async fn litellm_writes_to_undeclared_fields_leave_the_plan_clean() {
    let db = TestDb::litellm().await;
    let cli = acme(&db).await;
    let id = org_id("acme");
    let budget = org_budget("acme");
    let pat = ids::user_id_for_email("pat@example.com");
    let writes = [
        (
            "spend",
            format!(
                r#"UPDATE "LiteLLM_OrganizationTable" SET spend = spend + 1.25 WHERE organization_id = '{id}';
                   UPDATE "LiteLLM_OrganizationMembership" SET spend = spend + 1.25 WHERE organization_id = '{id}' AND user_id = '{pat}';"#
            ),
        ),
        (
            "budget reset",
            format!(
                r#"UPDATE "LiteLLM_BudgetTable" SET budget_reset_at = now() + interval '30 days', updated_at = now() WHERE budget_id = '{budget}';
                   UPDATE "LiteLLM_OrganizationTable" SET spend = 0 WHERE organization_id = '{id}';"#
            ),
        ),
        (
            "/budget/update",
            format!(
                r#"UPDATE "LiteLLM_BudgetTable" SET tpm_limit = 1000, rpm_limit = 10, soft_budget = 80, model_max_budget = '{{"gpt-4o": {{"max_budget": 5, "budget_duration": "30d"}}}}', updated_by = 'admin', updated_at = now() WHERE budget_id = '{budget}'"#
            ),
        ),
        (
            "/organization/update",
            format!(
                r#"UPDATE "LiteLLM_OrganizationTable" SET metadata = metadata || '{{"cost_center": 1.50}}', updated_by = 'admin', updated_at = now() WHERE organization_id = '{id}'"#
            ),
        ),
        (
            "/organization/member_add",
            format!(
                r#"INSERT INTO "LiteLLM_UserTable" (user_id, user_email, user_role, models, spend) VALUES ('ui-zoe', 'zoe@example.com', 'internal_user', '{{}}', 0);
                   INSERT INTO "LiteLLM_OrganizationMembership" (user_id, organization_id, user_role, spend) VALUES ('ui-zoe', '{id}', 'org_admin', 0);"#
            ),
        ),
        (
            "/user/update",
            format!(
                r#"UPDATE "LiteLLM_UserTable" SET max_budget = 3, user_alias = 'Pat', updated_at = now() WHERE user_id = '{pat}'"#
            ),
        ),
    ];
    for (what, sql) in &writes {
        db.exec(sql).await;
        let plan = cli.plan_after_litellm_write("acme", &[]);
        assert_eq!(plan.code, Some(0), "after {what}:\n{}", plan.stdout);
        let before = db.snapshot().await;
        let applied = cli.run(&["apply", "-f", "acme"]).expect(0);
        assert!(
            applied.stdout.starts_with("No changes"),
            "after {what}:\n{}",
            applied.stdout
        );
        assert_eq!(db.snapshot().await, before, "apply wrote after {what}");
    }
    assert_eq!(
        one(
            &db,
            &format!(
                r#"SELECT CAST(metadata->'cost_center' AS TEXT) FROM "LiteLLM_OrganizationTable" WHERE organization_id = '{id}'"#
            )
        )
        .await,
        "1.50",
        "an undeclared number keeps its text"
    );
    db.cleanup().await;
}

// 2. Adoption.

/// An organization made in LiteLLM with a 1000 USD / 30d budget, adopted with
/// `organizationId` and no budget, keeps it; a membership with a 100 USD budget adopted
/// without `maxBudgetInOrganization` keeps it; no empty member budget is created.
#[tokio::test]
async fn adoption_keeps_budgets_and_adds_no_rows() {
    let db = TestDb::litellm().await;
    db.exec(
        r#"INSERT INTO "LiteLLM_BudgetTable" (budget_id, max_budget, budget_duration, budget_reset_at, created_by, updated_by) VALUES ('ui-org-budget', 1000, '30d', now() + interval '30 days', 'admin', 'admin');
           INSERT INTO "LiteLLM_OrganizationTable" (organization_id, organization_alias, budget_id, metadata, models, created_by, updated_by) VALUES ('ui-org', 'UI Org', 'ui-org-budget', '{"owner": "finance"}', '{gpt-4o}', 'admin', 'admin');
           INSERT INTO "LiteLLM_UserTable" (user_id, user_email, user_role, models, spend) VALUES ('ui-user', 'ann@example.com', 'internal_user', '{}', 0);
           INSERT INTO "LiteLLM_BudgetTable" (budget_id, max_budget, created_by, updated_by) VALUES ('ui-member-budget', 100, 'admin', 'admin');
           INSERT INTO "LiteLLM_OrganizationMembership" (user_id, organization_id, user_role, spend, budget_id) VALUES ('ui-user', 'ui-org', 'internal_user', 12.5, 'ui-member-budget');"#,
    )
    .await;
    let cli = Cli::new(&db);
    cli.write(
        "adopt/all.yaml",
        &(org("ui-org", "{organizationId: ui-org, alias: UI Org}")
            + &member(
                "ann",
                "{organizationId: ui-org, user: {userId: ui-user}, role: internal_user}",
            )
            + &member(
                "bob",
                "{organizationId: ui-org, user: {email: bob@example.com}, role: internal_user}",
            )),
    );
    let before_budgets = db.count("LiteLLM_BudgetTable").await;
    let plan = cli.run(&["plan", "-f", "adopt"]).expect(2);
    assert!(!plan.stdout.contains("budget_id"), "{}", plan.stdout);
    assert!(!plan.stdout.contains("ui-org-budget"), "{}", plan.stdout);
    cli.run(&["apply", "-f", "adopt"]).expect(0);
    assert_eq!(
        one(
            &db,
            r#"SELECT o.budget_id || '|' || CAST(b.max_budget AS TEXT) || '|' || b.budget_duration || '|' || (o.metadata->>'owner') FROM "LiteLLM_OrganizationTable" o JOIN "LiteLLM_BudgetTable" b ON b.budget_id = o.budget_id WHERE o.organization_id = 'ui-org'"#
        )
        .await,
        "ui-org-budget|1000|30d|finance"
    );
    assert_eq!(
        one(
            &db,
            r#"SELECT m.budget_id || '|' || CAST(b.max_budget AS TEXT) || '|' || CAST(m.spend AS TEXT) FROM "LiteLLM_OrganizationMembership" m JOIN "LiteLLM_BudgetTable" b ON b.budget_id = m.budget_id WHERE m.user_id = 'ui-user'"#
        )
        .await,
        "ui-member-budget|100|12.5"
    );
    assert_eq!(
        db.count("LiteLLM_BudgetTable").await,
        before_budgets,
        "no budget row added (bob declares none)"
    );
    assert_eq!(
        one(
            &db,
            r#"SELECT COALESCE(m.budget_id, 'NULL') FROM "LiteLLM_OrganizationMembership" m JOIN "LiteLLM_UserTable" u ON u.user_id = m.user_id WHERE u.user_email = 'bob@example.com'"#
        )
        .await,
        "NULL"
    );
    cli.run(&["plan", "-f", "adopt"]).expect(0);

    // Prune releases what was adopted (rows stay) and deletes only bob's membership, which the
    // operator created.
    cli.run(&["apply", "--prune", "-f", "empty"]).expect(0);
    assert_eq!(db.count("LiteLLM_OrganizationTable").await, 1);
    assert_eq!(db.count("LiteLLM_BudgetTable").await, before_budgets);
    assert_eq!(
        db.strings(r#"SELECT user_id FROM "LiteLLM_OrganizationMembership""#)
            .await,
        vec!["ui-user".to_string()]
    );
    assert!(ledger(&db).await.is_empty(), "{:?}", ledger(&db).await);
    db.cleanup().await;
}

// 3. Races.

/// Two `apply` processes, two resources pinning one `organizationId`, started together:
/// exactly one wins each round, the other exits 1 with a Conflict, no budget row is orphaned.
#[tokio::test]
async fn two_claims_on_one_organization_race() {
    let db = TestDb::litellm().await;
    let cli = Cli::new(&db);
    cli.write(
        "one/org.yaml",
        &org(
            "first",
            "{organizationId: contested, budget: {maxBudget: 1}}",
        ),
    );
    cli.write(
        "two/org.yaml",
        &org(
            "second",
            "{organizationId: contested, budget: {maxBudget: 2}}",
        ),
    );
    let mut wins = [0, 0];
    for round in 0..20 {
        let a = cli.spawn(&["apply", "-f", "one"]);
        let b = cli.spawn(&["apply", "-f", "two"]);
        let results = [
            Ran::from(a.wait_with_output().expect("wait")),
            Ran::from(b.wait_with_output().expect("wait")),
        ];
        let codes: Vec<Option<i32>> = results.iter().map(|r| r.code).collect();
        let winner = match codes.as_slice() {
            [Some(0), Some(1)] => 0,
            [Some(1), Some(0)] => 1,
            _ => panic!(
                "round {round}: exit codes {codes:?}\n{}\n{}\n{}\n{}",
                results[0].stdout, results[0].stderr, results[1].stdout, results[1].stderr
            ),
        };
        wins[winner] += 1;
        let loser = &results[1 - winner];
        assert!(
            loser.stderr.contains("Conflict") && loser.stderr.contains("manager \"cli\""),
            "round {round}: {}",
            loser.stderr
        );
        let names = ["first", "second"];
        assert_eq!(
            db.strings(r#"SELECT budget_id FROM "LiteLLM_BudgetTable""#)
                .await,
            vec![org_budget(names[winner])],
            "round {round}: only the winner's budget"
        );
        assert!(
            ledger(&db)
                .await
                .iter()
                .all(|e| e.contains(&format!("Organization/ns/{}", names[winner]))),
            "round {round}: {:?}",
            ledger(&db).await
        );
        // Reset for the next round.
        db.exec(&format!(
            r#"DELETE FROM "LiteLLM_OrganizationTable"; DELETE FROM "LiteLLM_BudgetTable"; DELETE FROM {LEDGER};"#
        ))
        .await;
    }
    eprintln!("wins: first {}, second {}", wins[0], wins[1]);
    db.cleanup().await;
}

/// A prune deleting an organization while a member of it is applied by another process: in
/// every round, no member budget is left behind.
#[tokio::test]
async fn prune_racing_a_member_apply() {
    let db = TestDb::litellm().await;
    let cli = Cli::new(&db);
    let id = org_id("doomed");
    cli.write(
        "org/org.yaml",
        &(org("doomed", "{budget: {maxBudget: 5}}")
            + &member(
                "first",
                "{organizationRef: {name: doomed}, user: {userId: u-first}, role: internal_user, maxBudgetInOrganization: 1}",
            )),
    );
    cli.write(
        "late/member.yaml",
        &member(
            "late",
            &format!(
                "{{organizationId: {id}, user: {{userId: u-late}}, role: internal_user, maxBudgetInOrganization: 2}}"
            ),
        ),
    );
    let mut outcomes = std::collections::BTreeMap::<String, usize>::new();
    for round in 0..20 {
        cli.run(&["apply", "-f", "org"]).expect(0);
        let prune = cli.spawn(&["apply", "--prune", "-f", "empty"]);
        let late = cli.spawn(&["apply", "-f", "late"]);
        let prune = Ran::from(prune.wait_with_output().expect("wait"));
        let late = Ran::from(late.wait_with_output().expect("wait"));
        assert_eq!(prune.code, Some(0), "round {round}: {}", prune.stderr);
        assert!(
            matches!(late.code, Some(0) | Some(1)),
            "round {round}: {}",
            late.stderr
        );
        assert!(
            orphan_budgets(&db).await.is_empty(),
            "round {round}: orphaned {:?}\nprune: {}\nlate: {}{}",
            orphan_budgets(&db).await,
            prune.stderr,
            late.stdout,
            late.stderr
        );
        // Every ledger entry names a row that exists.
        let dangling = count(
            &db,
            &format!(
                r#"SELECT 1 FROM {LEDGER} l WHERE (l.row_key LIKE 'budget/%' AND NOT EXISTS (SELECT 1 FROM "LiteLLM_BudgetTable" b WHERE 'budget/' || b.budget_id = l.row_key))
                      OR (l.row_key LIKE 'organization/%' AND NOT EXISTS (SELECT 1 FROM "LiteLLM_OrganizationTable" o WHERE 'organization/' || o.organization_id = l.row_key))"#
            ),
        )
        .await;
        assert_eq!(dangling, 0, "round {round}: {:?}", ledger(&db).await);
        *outcomes
            .entry(format!("late exit {:?}", late.code))
            .or_default() += 1;
        db.exec(&format!(
            r#"DELETE FROM "LiteLLM_OrganizationMembership"; DELETE FROM "LiteLLM_OrganizationTable"; DELETE FROM "LiteLLM_BudgetTable"; DELETE FROM {LEDGER};"#
        ))
        .await;
    }
    eprintln!("outcomes: {outcomes:?}");
    db.cleanup().await;
}

/// LiteLLM's `/organization/update` lands while an `apply` runs: the apply waits for LiteLLM's
/// row lock (no deadlock, no error), and neither write is lost: the declared change is made
/// and the key LiteLLM added in the meantime stays.
#[tokio::test]
async fn litellm_write_during_a_reconcile() {
    let db = TestDb::litellm().await;
    let cli = acme(&db).await;
    let id = org_id("acme");
    // The manifest changes a declared key, so the apply must write the organization row.
    cli.write(
        "changed/all.yaml",
        &acme_manifests().replace("team: a", "team: b"),
    );

    let TestDb::Postgres { store, .. } = &db else {
        unreachable!("LiteLLM's schema is on Postgres")
    };
    let mut tx = store.pool().begin().await.expect("begin");
    sqlx::query(
        r#"UPDATE "LiteLLM_OrganizationTable" SET metadata = metadata || '{"ui_note": "set in the UI"}', updated_by = 'admin' WHERE organization_id = $1"#,
    )
    .bind(&id)
    .execute(&mut *tx)
    .await
    .expect("LiteLLM's update");
    let apply = cli.spawn(&["apply", "-f", "changed"]);
    // Wait until the apply is blocked on LiteLLM's row lock (or has finished without it).
    let mut waited = false;
    for _ in 0..600 {
        let blocked: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .fetch_one(store.pool())
        .await
        .expect("pg_stat_activity");
        if blocked > 0 {
            waited = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    tx.commit().await.expect("commit LiteLLM's update");
    let ran = Ran::from(apply.wait_with_output().expect("wait")).expect(0);
    assert!(
        waited,
        "the apply never waited for the row lock: {}",
        ran.stdout
    );
    let row = one(
        &db,
        &format!(
            r#"SELECT (metadata->>'team') || '|' || COALESCE(metadata->>'ui_note', 'LOST') FROM "LiteLLM_OrganizationTable" WHERE organization_id = '{id}'"#
        ),
    )
    .await;
    // The next apply converges either way; record whether the concurrent write survived the
    // first one.
    let converged = cli.run(&["apply", "-f", "changed"]).expect(0);
    assert_eq!(
        row, "b|set in the UI",
        "lost update; then: {}",
        converged.stdout
    );
    db.cleanup().await;
}

// 4. Managers.

/// `--manager a` and `--manager b` on one database: each prunes only its own rows, and an
/// object of b's claimed by a is a Conflict naming b.
#[tokio::test]
async fn managers_keep_to_their_own_rows() {
    let db = TestDb::litellm().await;
    let cli = Cli::new(&db);
    cli.write(
        "a/all.yaml",
        &(org("alpha", "{budget: {maxBudget: 1}}")
            + &member(
                "alpha-pat",
                "{organizationRef: {name: alpha}, user: {userId: pat}, role: internal_user, maxBudgetInOrganization: 1}",
            )),
    );
    cli.write(
        "b/all.yaml",
        &(org("beta", "{budget: {maxBudget: 2}}")
            + &member(
                "beta-pat",
                "{organizationRef: {name: beta}, user: {userId: pat}, role: internal_user, maxBudgetInOrganization: 2}",
            )),
    );
    cli.run(&["apply", "--manager", "a", "-f", "a"]).expect(0);
    cli.run(&["apply", "--manager", "b", "-f", "b"]).expect(0);

    let plan = cli
        .run(&["plan", "--manager", "a", "--prune", "-f", "a"])
        .expect(0);
    assert!(!plan.stdout.contains("beta"), "{}", plan.stdout);
    let plan = cli
        .run(&["plan", "--manager", "a", "--prune", "-f", "empty"])
        .expect(2);
    assert!(
        plan.stdout.contains("alpha") && !plan.stdout.contains("beta"),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout
            .contains("0 to create, 0 to change, 4 to delete")
            || plan.stdout.contains("to delete"),
        "{}",
        plan.stdout
    );

    // a claims b's organization: by pinning its id, and by declaring the same resource.
    cli.write(
        "a2/pin.yaml",
        &org("grab", &format!("{{organizationId: {}}}", org_id("beta"))),
    );
    cli.write("a3/same.yaml", &org("beta", "{budget: {maxBudget: 9}}"));
    for dir in ["a2", "a3"] {
        let ran = cli.run(&["apply", "--manager", "a", "-f", dir]).expect(1);
        assert!(
            ran.stderr.contains("Conflict") && ran.stderr.contains("(manager \"b\")"),
            "{dir}: {}",
            ran.stderr
        );
    }
    assert_eq!(
        one(
            &db,
            &format!(
                r#"SELECT CAST(max_budget AS TEXT) FROM "LiteLLM_BudgetTable" WHERE budget_id = '{}'"#,
                org_budget("beta")
            )
        )
        .await,
        "2",
        "b's budget untouched"
    );

    // a's prune of everything leaves b's rows alone.
    cli.run(&["apply", "--manager", "a", "--prune", "-f", "empty"])
        .expect(0);
    assert_eq!(
        db.strings(r#"SELECT organization_id FROM "LiteLLM_OrganizationTable""#)
            .await,
        vec![org_id("beta")]
    );
    assert_eq!(
        db.strings(r#"SELECT budget_id FROM "LiteLLM_BudgetTable" ORDER BY 1"#)
            .await,
        {
            let mut v = vec![org_budget("beta"), member_budget("beta-pat")];
            v.sort();
            v
        }
    );
    cli.run(&["plan", "--manager", "b", "-f", "b"]).expect(0);
    db.cleanup().await;
}

/// A prune run with `--actor ci-bot` deletes the organization and the member budgets the
/// operator created with the default actor: the actor is a label, not an ownership key.
#[tokio::test]
async fn actor_is_not_an_ownership_key() {
    let db = TestDb::litellm().await;
    let cli = acme(&db).await;
    cli.run(&["apply", "--actor", "ci-bot", "--prune", "-f", "empty"])
        .expect(0);
    assert_eq!(db.count("LiteLLM_OrganizationTable").await, 0);
    assert_eq!(db.count("LiteLLM_OrganizationMembership").await, 0);
    assert_eq!(
        db.count("LiteLLM_BudgetTable").await,
        0,
        "member budgets too"
    );
    assert!(ledger(&db).await.is_empty());
    db.cleanup().await;
}

// 5. Faults.

/// A row LiteLLM deletes while the operator deletes it: the delete completes and the ledger
/// forgets the rows.
#[tokio::test]
async fn row_deleted_by_litellm_while_the_operator_deletes_it() {
    let db = TestDb::litellm().await;
    let _cli = acme(&db).await;
    let engine = db.engine();
    let key = ObjectKey::new("ns", "acme");
    let id = org_id("acme");
    let plan = engine
        .plan_delete_organization(&key, &id, false)
        .await
        .expect("plan delete");
    assert!(plan.changes_rows(), "{plan}");
    // LiteLLM's /organization/delete lands between the plan and the apply.
    db.exec(&format!(
        r#"DELETE FROM "LiteLLM_OrganizationMembership" WHERE organization_id = '{id}';
           DELETE FROM "LiteLLM_OrganizationTable" WHERE organization_id = '{id}';"#
    ))
    .await;
    engine.apply(&plan).await.expect("the delete completes");
    assert_eq!(db.count("LiteLLM_OrganizationTable").await, 0);
    assert_eq!(
        count(
            &db,
            &format!(
                r#"SELECT 1 FROM "LiteLLM_BudgetTable" WHERE budget_id = '{}'"#,
                org_budget("acme")
            )
        )
        .await,
        0,
        "the organization's own budget goes"
    );
    assert!(ledger(&db).await.is_empty(), "{:?}", ledger(&db).await);
    // Deleting again is a no-op, not an error.
    let again = engine
        .plan_delete_organization(&key, &id, false)
        .await
        .expect("plan delete again");
    engine.apply(&again).await.expect("nothing left to delete");
    db.cleanup().await;
}

/// The member budgets the operator created go with the organization even when LiteLLM removed
/// their memberships first (`/organization/member_delete`, or `/organization/delete` landing
/// during the operator's delete): the cascade finds them through the memberships, so a budget
/// whose membership is gone is left behind, and its ledger entry is released with the
/// organization's, so nothing will ever delete it.
#[tokio::test]
async fn member_budgets_go_even_when_litellm_removed_their_memberships() {
    let db = TestDb::litellm().await;
    let cli = acme(&db).await;
    let id = org_id("acme");
    db.exec(&format!(
        r#"DELETE FROM "LiteLLM_OrganizationMembership" WHERE organization_id = '{id}'"#
    ))
    .await;
    // The Organization is deleted (its finalizer, or a prune) while its members' resources
    // still declare them.
    let engine = db.engine();
    let plan = engine
        .plan_delete_organization(&ObjectKey::new("ns", "acme"), &id, false)
        .await
        .expect("plan delete");
    engine.apply(&plan).await.expect("delete");
    drop(cli);
    assert_eq!(db.count("LiteLLM_OrganizationTable").await, 0);
    assert_eq!(
        db.strings(r#"SELECT budget_id FROM "LiteLLM_BudgetTable""#)
            .await,
        Vec::<String>::new(),
        "pat's budget ({}) is left behind",
        member_budget("pat")
    );
    db.cleanup().await;
}

/// Upgrade from an earlier version: its marker in `metadata` and a member budget created by
/// the actor with the derived id, on a database without the ledger. `apply` imports them;
/// `apply --prune` of an empty manifest set then removes exactly those rows.
#[tokio::test]
async fn upgrade_imports_markers_then_prunes_exactly_them() {
    let db = TestDb::litellm().await;
    db.exec("DROP SCHEMA litellm_org_operator CASCADE").await;
    let id = org_id("legacy");
    let budget = org_budget("legacy");
    let mbudget = member_budget("m");
    db.exec(&format!(
        r#"INSERT INTO "LiteLLM_BudgetTable" (budget_id, max_budget, created_by, updated_by) VALUES ('{budget}', 50, 'litellm-org-operator', 'litellm-org-operator');
           INSERT INTO "LiteLLM_OrganizationTable" (organization_id, organization_alias, budget_id, metadata, models, created_by, updated_by)
             VALUES ('{id}', 'legacy', '{budget}', '{{"litellm-org-operator": {{"owner": "Organization/ns/legacy", "managedKeys": ["team"], "deletionPolicy": "Delete"}}, "team": "x", "ui": "y"}}', '{{}}', 'litellm-org-operator', 'litellm-org-operator');
           INSERT INTO "LiteLLM_UserTable" (user_id, user_email, user_role, models, spend) VALUES ('u1', 'u1@example.com', 'internal_user', '{{}}', 0);
           INSERT INTO "LiteLLM_BudgetTable" (budget_id, max_budget, created_by, updated_by) VALUES ('{mbudget}', 5, 'litellm-org-operator', 'litellm-org-operator');
           INSERT INTO "LiteLLM_OrganizationMembership" (user_id, organization_id, user_role, spend, budget_id) VALUES ('u1', '{id}', 'internal_user', 0, '{mbudget}');
           INSERT INTO "LiteLLM_BudgetTable" (budget_id, max_budget, created_by, updated_by) VALUES ('ui-budget', 7, 'admin', 'admin'), ('ui-member-budget', 3, 'admin', 'admin');
           INSERT INTO "LiteLLM_OrganizationTable" (organization_id, organization_alias, budget_id, metadata, models, created_by, updated_by) VALUES ('ui-org', 'ui', 'ui-budget', '{{}}', '{{}}', 'admin', 'admin');
           INSERT INTO "LiteLLM_OrganizationMembership" (user_id, organization_id, user_role, spend, budget_id) VALUES ('u1', 'ui-org', 'internal_user', 0, 'ui-member-budget');"#
    ))
    .await;
    let cli = Cli::new(&db);
    let ran = cli.run(&["apply", "-f", "empty"]).expect(0);
    assert!(
        ran.stderr
            .contains("ledger created; 2 rows marked by an earlier version imported"),
        "{}",
        ran.stderr
    );
    let entries = ledger(&db).await;
    let mut want = vec![
        format!("organization/{id}|cli|Organization/ns/legacy|true"),
        format!("budget/{budget}|cli|Organization/ns/legacy|true"),
        format!("membership/{id}/u1|cli|OrganizationMember/legacy:{mbudget}|true"),
        format!("budget/{mbudget}|cli|OrganizationMember/legacy:{mbudget}|true"),
    ];
    want.sort();
    assert_eq!(entries, want);
    cli.run(&["plan", "--prune", "-f", "empty"]).expect(2);
    cli.run(&["apply", "--prune", "-f", "empty"]).expect(0);
    assert_eq!(
        db.strings(r#"SELECT organization_id FROM "LiteLLM_OrganizationTable""#)
            .await,
        vec!["ui-org".to_string()]
    );
    assert_eq!(
        db.strings(r#"SELECT budget_id FROM "LiteLLM_BudgetTable" ORDER BY 1"#)
            .await,
        vec!["ui-budget".to_string(), "ui-member-budget".to_string()]
    );
    assert_eq!(
        db.strings(r#"SELECT organization_id FROM "LiteLLM_OrganizationMembership""#)
            .await,
        vec!["ui-org".to_string()]
    );
    assert!(ledger(&db).await.is_empty());
    db.cleanup().await;
}

/// After the import, a metadata key the earlier version managed (listed in `managedKeys`) is
/// still managed: removing it from the manifest removes it from the row (its value before the
/// earlier version set it is unknown, so LiteLLM's default: absent). The marker itself is
/// removed by the first reconcile; a key LiteLLM added stays.
#[tokio::test]
async fn upgrade_keeps_the_keys_the_earlier_version_managed() {
    let db = TestDb::litellm().await;
    db.exec("DROP SCHEMA litellm_org_operator CASCADE").await;
    let id = org_id("legacy");
    let budget = org_budget("legacy");
    db.exec(&format!(
        r#"INSERT INTO "LiteLLM_BudgetTable" (budget_id, max_budget, created_by, updated_by) VALUES ('{budget}', 50, 'litellm-org-operator', 'litellm-org-operator');
           INSERT INTO "LiteLLM_OrganizationTable" (organization_id, organization_alias, budget_id, metadata, models, created_by, updated_by)
             VALUES ('{id}', 'legacy', '{budget}', '{{"litellm-org-operator": {{"owner": "Organization/ns/legacy", "managedKeys": ["team"], "deletionPolicy": "Delete"}}, "team": "x", "ui": "y"}}', '{{}}', 'litellm-org-operator', 'litellm-org-operator');"#
    ))
    .await;
    let cli = Cli::new(&db);
    cli.write(
        "legacy/org.yaml",
        &org(
            "legacy",
            "{alias: legacy, metadata: {team: x}, budget: {maxBudget: 50}}",
        ),
    );
    cli.run(&["apply", "-f", "legacy"]).expect(0);
    let sql = format!(
        r#"SELECT CAST(metadata ? 'litellm-org-operator' AS TEXT) || '|' || COALESCE(metadata->>'team', 'NULL') || '|' || (metadata->>'ui') FROM "LiteLLM_OrganizationTable" WHERE organization_id = '{id}'"#
    );
    assert_eq!(one(&db, &sql).await, "false|x|y");
    cli.run(&["plan", "-f", "legacy"]).expect(0);
    cli.write(
        "legacy/org.yaml",
        &org("legacy", "{alias: legacy, budget: {maxBudget: 50}}"),
    );
    cli.run(&["apply", "-f", "legacy"]).expect(0);
    assert_eq!(one(&db, &sql).await, "false|NULL|y");
    db.cleanup().await;
}

/// The marker of an earlier version is removed by the first reconcile after the import; a
/// key LiteLLM added stays.
#[tokio::test]
async fn upgrade_then_reconcile_removes_the_marker() {
    let db = TestDb::litellm().await;
    db.exec("DROP SCHEMA litellm_org_operator CASCADE").await;
    let id = org_id("legacy");
    let budget = org_budget("legacy");
    db.exec(&format!(
        r#"INSERT INTO "LiteLLM_BudgetTable" (budget_id, max_budget, created_by, updated_by) VALUES ('{budget}', 50, 'litellm-org-operator', 'litellm-org-operator');
           INSERT INTO "LiteLLM_OrganizationTable" (organization_id, organization_alias, budget_id, metadata, models, created_by, updated_by)
             VALUES ('{id}', 'legacy', '{budget}', '{{"litellm-org-operator": {{"owner": "Organization/ns/legacy", "managedKeys": ["team"], "deletionPolicy": "Delete"}}, "team": "x", "ui": "y"}}', '{{}}', 'litellm-org-operator', 'litellm-org-operator');"#
    ))
    .await;
    let cli = Cli::new(&db);
    cli.write(
        "legacy/org.yaml",
        &org(
            "legacy",
            "{alias: legacy, metadata: {team: x}, budget: {maxBudget: 50}}",
        ),
    );
    let ran = cli.run(&["apply", "-f", "legacy"]).expect(0);
    assert!(ran.stderr.contains("1 rows marked"), "{}", ran.stderr);
    assert_eq!(
        one(
            &db,
            &format!(
                r#"SELECT CAST(metadata ? 'litellm-org-operator' AS TEXT) || '|' || (metadata->>'team') || '|' || (metadata->>'ui') || '|' || budget_id FROM "LiteLLM_OrganizationTable" WHERE organization_id = '{id}'"#
            )
        )
        .await,
        format!("false|x|y|{budget}")
    );
    assert_eq!(db.count("LiteLLM_BudgetTable").await, 1);
    cli.run(&["plan", "-f", "legacy"]).expect(0);
    db.cleanup().await;
}

// SQLite: the same edits on the embedded database.

/// LiteLLM's organization update (alias, metadata wholesale), member_update (role, budget)
/// and a prune, on SQLite.
#[tokio::test]
async fn sqlite_litellm_edits_between_applies() {
    let db = TestDb::sqlite().await;
    let cli = acme(&db).await;
    let id = org_id("acme");
    let pat = ids::user_id_for_email("pat@example.com");
    let quinn = ids::user_id_for_email("quinn@example.com");
    let pat_budget = member_budget("pat");
    db.exec(&format!(
        r#"UPDATE "LiteLLM_OrganizationTable" SET organization_alias = 'Acme (UI)', metadata = '{{"cost_center": "42"}}', updated_by = 'admin' WHERE organization_id = '{id}';
           UPDATE "LiteLLM_OrganizationMembership" SET user_role = 'org_admin' WHERE organization_id = '{id}';
           UPDATE "LiteLLM_BudgetTable" SET max_budget = 99, updated_by = 'admin' WHERE budget_id = '{pat_budget}';
           INSERT INTO "LiteLLM_BudgetTable" (budget_id, max_budget, created_at, created_by, updated_at, updated_by) VALUES ('ui-quinn-budget', 25, '2026-01-01 00:00:00', 'admin', '2026-01-01 00:00:00', 'admin');
           UPDATE "LiteLLM_OrganizationMembership" SET budget_id = 'ui-quinn-budget' WHERE user_id = '{quinn}' AND organization_id = '{id}';"#
    ))
    .await;
    let plan = cli
        .plan_after_litellm_write("acme", ACME_DECLARED)
        .expect(2);
    assert!(plan.stdout.contains("Acme (UI)"), "{}", plan.stdout);
    cli.run(&["apply", "-f", "acme"]).expect(0);
    assert_eq!(
        one(
            &db,
            &format!(
                r#"SELECT organization_alias || '|' || json_extract(metadata, '$.team') || '|' || json_extract(metadata, '$.cost_center') FROM "LiteLLM_OrganizationTable" WHERE organization_id = '{id}'"#
            )
        )
        .await,
        "Acme|a|42"
    );
    let mut want = vec![
        format!("{pat}|internal_user|{pat_budget}|10.0"),
        format!("{quinn}|internal_user|ui-quinn-budget|25.0"),
    ];
    want.sort();
    assert_eq!(
        db.strings(&format!(
            r#"SELECT m.user_id || '|' || m.user_role || '|' || COALESCE(m.budget_id, 'NULL') || '|' || COALESCE(CAST(b.max_budget AS TEXT), 'NULL')
               FROM "LiteLLM_OrganizationMembership" m LEFT JOIN "LiteLLM_BudgetTable" b ON b.budget_id = m.budget_id
               WHERE m.organization_id = '{id}' ORDER BY m.user_id"#
        ))
        .await,
        want
    );
    cli.run(&["plan", "-f", "acme"]).expect(0);
    cli.run(&["apply", "--actor", "ci-bot", "--prune", "-f", "empty"])
        .expect(0);
    assert_eq!(db.count("LiteLLM_OrganizationTable").await, 0);
    assert_eq!(
        db.strings(r#"SELECT budget_id FROM "LiteLLM_BudgetTable""#)
            .await,
        vec!["ui-quinn-budget".to_string()]
    );
    assert_eq!(db.count("litellm_org_operator_ledger").await, 0);
}
