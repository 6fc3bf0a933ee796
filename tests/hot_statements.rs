//! Every statement a steady-state reconcile runs uses an index on LiteLLM's own schema, whatever
//! the statistics say: the tables here are loaded with 50,000 rows each by one
//! `INSERT ... SELECT generate_series` and never analysed (autovacuum is off on these machines,
//! and a freshly loaded LiteLLM database is in the same state).
//!
//! The statements are the store's own constants (each table module's), the budget table's
//! select (built from the inventory of budget columns) and the ledger's own statements
//! (`LedgerSql`, built the same way the store builds them), so the text checked is the text
//! the stores run. Each is prepared once and explained twice, with a custom
//! plan and with the generic plan the driver's prepared statements switch to after a few runs;
//! and once more on a connection that prepared and ran it while the tables were still empty
//! (the plan a long-lived pooled connection may keep).
//!
//! Statements that cannot use an index on LiteLLM's schema are not listed here, and are not on
//! the path of a member or organization that is already in sync:
//! - memberships by `budget_id` (a member that moved or is deleted): LiteLLM has no index on
//!   `LiteLLM_OrganizationMembership.budget_id`; deleting the budget row scans for it anyway
//!   (its foreign key is `ON DELETE SET NULL`);
//! - memberships by `organization_id` (organization deletion; the member counts of status are
//!   one grouped read per resync period for all organizations): the only index is
//!   `(user_id, organization_id)`.

mod support;

use litellm_org_operator::store::ledger::{DEFAULT_LEDGER_SCHEMA, LedgerSql};
use litellm_org_operator::store::{membership, organization, user};
use serde_json::Value;
use sqlx::{Connection, PgConnection};
use support::TestDb;

/// The big tables: a sequential scan of one of these, or an index walk without a condition,
/// is what this test forbids.
const BIG_TABLES: &[&str] = &[
    "LiteLLM_UserTable",
    "LiteLLM_OrganizationMembership",
    "LiteLLM_OrganizationTable",
    "LiteLLM_BudgetTable",
    "ledger",
];

/// The hot statements by constant name, with the arguments to explain them with (an id or
/// email that exists and one that does not: a new user's email is the common case and the
/// worst one for an ordered walk, which then reads the whole table).
const HOT: &[(&str, &str, &[&str])] = &[
    (
        "SELECT_MEMBERSHIP",
        membership::SELECT_MEMBERSHIP,
        &["user-123", "org-12"],
    ),
    (
        "SELECT_ORGANIZATION",
        organization::SELECT_ORGANIZATION,
        &["org-12"],
    ),
    (
        "ORGANIZATION_EXISTS",
        organization::ORGANIZATION_EXISTS,
        &["org-12"],
    ),
    ("SELECT_USER_BY_ID", user::SELECT_USER_BY_ID, &["user-123"]),
    (
        "SELECT_USERS_BY_EMAIL",
        user::SELECT_USERS_BY_EMAIL,
        &["User123@Example.com"],
    ),
    (
        "SELECT_USERS_BY_EMAIL",
        user::SELECT_USERS_BY_EMAIL,
        &["new-person@example.com"],
    ),
];

/// Every hot statement: `(name, text, arguments)`.
fn hot() -> Vec<(String, String, Vec<&'static str>)> {
    let mut all: Vec<(String, String, Vec<&'static str>)> = HOT
        .iter()
        .map(|(name, sql, args)| (name.to_string(), sql.to_string(), args.to_vec()))
        .collect();
    all.push((
        "budget select".into(),
        litellm_org_operator::store::budget::select().to_string(),
        vec!["budget-member-123"],
    ));
    all.push((
        "organization usage".into(),
        litellm_org_operator::store::organization::USAGE.to_string(),
        vec!["org-12"],
    ));
    all.push((
        "member figures".into(),
        litellm_org_operator::store::membership::MEMBER_FIGURES.to_string(),
        vec!["user-123", "org-12"],
    ));
    let ledger = LedgerSql::postgres(DEFAULT_LEDGER_SCHEMA);
    all.push((
        "ledger select_key".into(),
        ledger.select_key.to_string(),
        vec!["organization/org-12"],
    ));
    all.push((
        "ledger select_resource".into(),
        ledger.select_resource.to_string(),
        vec!["OrganizationMember/ns/m-123", "operator"],
    ));
    all
}

/// What is wrong with a plan (JSON `EXPLAIN`): every sequential scan of a big table and every
/// index scan of one without an index condition (a full walk of the index, filtering rows).
fn violations(node: &Value, out: &mut Vec<String>) {
    let kind = node["Node Type"].as_str().unwrap_or_default();
    let relation = node["Relation Name"].as_str().unwrap_or_default();
    let big = BIG_TABLES.contains(&relation);
    match kind {
        "Seq Scan" if big => out.push(format!("Seq Scan on {relation}")),
        "Index Scan" | "Index Only Scan" if big && node.get("Index Cond").is_none() => {
            out.push(format!(
                "{kind} of {} on {relation} without an index condition (a full walk)",
                node["Index Name"].as_str().unwrap_or("?")
            ))
        }
        _ => {}
    }
    if let Some(children) = node["Plans"].as_array() {
        for child in children {
            violations(child, out);
        }
    }
}

/// `args` as the SQL literals of an `EXECUTE` (which takes no bound parameters; the arguments
/// are this file's own constants, quoted).
fn literals(args: &[&str]) -> String {
    args.iter()
        .map(|a| format!("'{}'", a.replace('\'', "''")))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The plan of prepared statement `hot` with `args`, under `mode` (`plan_cache_mode`).
async fn explain(conn: &mut PgConnection, mode: &str, args: &[&str]) -> Value {
    explain_named(conn, mode, "hot", args).await
}

/// The plan of prepared statement `statement` (a name of this file's own) with `args`.
async fn explain_named(
    conn: &mut PgConnection,
    mode: &str,
    statement: &str,
    args: &[&str],
) -> Value {
    sqlx::query("SELECT set_config('plan_cache_mode', $1, false)")
        .bind(mode)
        .execute(&mut *conn)
        .await
        .expect("set plan_cache_mode");
    let q = sqlx::query_scalar::<_, sqlx::types::Json<Value>>(sqlx::AssertSqlSafe(format!(
        "EXPLAIN (FORMAT JSON) EXECUTE {statement}({})",
        literals(args)
    )));
    let plan = q.fetch_one(&mut *conn).await.expect("explain").0;
    plan[0]["Plan"].clone()
}

/// 50,000 users, members' budgets and memberships, 10,000 organizations, each table filled by
/// one statement, no ANALYZE.
async fn load(conn: &mut PgConnection) {
    for sql in [
        r#"INSERT INTO "LiteLLM_BudgetTable" ("budget_id", "max_budget", "created_at", "created_by", "updated_at", "updated_by")
           SELECT 'budget-member-' || g, 10, now(), 'litellm-org-operator', now(), 'litellm-org-operator' FROM generate_series(1, 50000) g"#,
        r#"INSERT INTO "LiteLLM_BudgetTable" ("budget_id", "max_budget", "created_at", "created_by", "updated_at", "updated_by")
           SELECT 'budget-org-' || g, 100, now(), 'litellm-org-operator', now(), 'litellm-org-operator' FROM generate_series(1, 10000) g"#,
        r#"INSERT INTO "LiteLLM_OrganizationTable" ("organization_id", "organization_alias", "budget_id", "metadata", "models", "created_at", "created_by", "updated_at", "updated_by")
           SELECT 'org-' || g, 'Org ' || g, 'budget-org-' || g, '{}', '{}', now(), 'litellm-org-operator', now(), 'litellm-org-operator' FROM generate_series(1, 10000) g"#,
        r#"INSERT INTO "LiteLLM_UserTable" ("user_id", "user_email", "user_role", "models", "teams", "metadata", "spend", "created_at", "updated_at")
           SELECT 'user-' || g, 'user' || g || '@example.com', 'internal_user', '{}', '{}', '{}', 0, now(), now() FROM generate_series(1, 50000) g"#,
        r#"INSERT INTO "LiteLLM_OrganizationMembership" ("user_id", "organization_id", "user_role", "spend", "budget_id", "created_at", "updated_at")
           SELECT 'user-' || g, 'org-' || (g % 10000 + 1), 'internal_user', 0, 'budget-member-' || g, now(), now() FROM generate_series(1, 50000) g"#,
        r#"INSERT INTO litellm_org_operator.ledger ("row_key", "manager", "resource", "organization_id", "created", "deletion_policy", "managed", "updated_at")
           SELECT 'membership/org-' || (g % 10000 + 1) || '/user-' || g, 'operator', 'OrganizationMember/ns/m-' || g, 'org-' || (g % 10000 + 1), true, 'Delete', '{}', now() FROM generate_series(1, 50000) g"#,
    ] {
        sqlx::query(sql).execute(&mut *conn).await.expect("load");
    }
    // The point of the test: no statistics on the loaded tables.
    let analysed: i64 = sqlx::query_scalar(
        r#"SELECT count(*) FROM pg_stat_user_tables WHERE relname IN ('LiteLLM_UserTable', 'LiteLLM_OrganizationMembership', 'LiteLLM_OrganizationTable', 'LiteLLM_BudgetTable', 'ledger')
           AND (last_analyze IS NOT NULL OR last_autoanalyze IS NOT NULL)"#,
    )
    .fetch_one(&mut *conn)
    .await
    .expect("pg_stat_user_tables");
    assert_eq!(analysed, 0, "the tables must not have been analysed");
}

#[tokio::test]
async fn hot_statements_use_an_index_without_statistics() {
    let db = TestDb::litellm().await;
    let mut conn = PgConnection::connect(&db.url()).await.expect("connect");
    // A long-lived connection (as in the operator's pool) that prepared and ran every
    // statement while the tables were empty: Postgres may keep a generic plan made then, and
    // nothing (no ANALYZE) makes it plan again as the tables grow.
    let mut early = PgConnection::connect(&db.url()).await.expect("connect");
    let hot = hot();
    for (n, (name, sql, args)) in hot.iter().enumerate() {
        sqlx::query(sqlx::AssertSqlSafe(format!("PREPARE early_{n} AS {sql}")))
            .execute(&mut early)
            .await
            .unwrap_or_else(|e| panic!("prepare {name}: {e}"));
        for _ in 0..8 {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "EXECUTE early_{n}({})",
                literals(args)
            )))
            .execute(&mut early)
            .await
            .unwrap_or_else(|e| panic!("execute {name}: {e}"));
        }
    }
    load(&mut conn).await;

    // The check itself catches a full walk: the old form of the email lookup with its index
    // ruled out (a pattern match cannot use it) walks the primary key in order.
    sqlx::query(
        r#"PREPARE hot AS SELECT "user_id" FROM "LiteLLM_UserTable" WHERE "user_email" LIKE $1 ORDER BY "user_id" LIMIT 10"#,
    )
    .execute(&mut conn)
    .await
    .expect("prepare");
    let mut found = Vec::new();
    violations(
        &explain(&mut conn, "force_custom_plan", &["%nobody%"]).await,
        &mut found,
    );
    assert!(
        !found.is_empty(),
        "a filtered walk of the primary key must be reported"
    );
    sqlx::query("DEALLOCATE hot")
        .execute(&mut conn)
        .await
        .expect("deallocate");

    let mut failures = Vec::new();
    for (name, sql, args) in &hot {
        sqlx::query(sqlx::AssertSqlSafe(format!("PREPARE hot AS {sql}")))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("prepare {name}: {e}"));
        for mode in ["force_custom_plan", "force_generic_plan"] {
            let plan = explain(&mut conn, mode, args).await;
            let mut found = Vec::new();
            violations(&plan, &mut found);
            if !found.is_empty() {
                failures.push(format!("{name} {args:?} ({mode}): {found:?}\n{plan:#}"));
            }
        }
        sqlx::query("DEALLOCATE hot")
            .execute(&mut conn)
            .await
            .expect("deallocate");
    }
    for (n, (name, _, args)) in hot.iter().enumerate() {
        let plan = explain_named(&mut early, "auto", &format!("early_{n}"), args).await;
        let mut found = Vec::new();
        violations(&plan, &mut found);
        if !found.is_empty() {
            failures.push(format!(
                "{name} {args:?} (prepared on empty tables): {found:?}\n{plan:#}"
            ));
        }
    }
    early.close().await.ok();
    conn.close().await.ok();
    db.cleanup().await;
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
