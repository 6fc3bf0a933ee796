//! Scale benchmark: cold reconcile of N organizations and N×M members through the engine
//! against local PostgreSQL with LiteLLM's schema, at a given concurrency, compared in the
//! same run with pgbench executing the equivalent transactions at the same concurrency.
//!
//!     cargo bench --bench scale                       # 1,000 orgs × 5 members, concurrency 8
//!     ORGS=10000 MEMBERS=5 CONCURRENCY=8 cargo bench --bench scale
//!
//! Then the same population through the CLI (`litellm-org-operator apply`, the release build,
//! cold on a fresh clone and again with nothing to change), compared with the same pgbench
//! figures. Every database starts as a clone of the template: no statistics on any table.
//! Prints a table and writes `target/bench/scale.json`.
//!
//! Needs the LiteLLM template database built by scripts/test.sh (LITELLM_TEMPLATE_DB) and
//! pgbench on PATH. Under `cargo test` it runs a tiny population as a smoke test and
//! reports nothing about time.

use std::process::Command;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use litellm_org_operator::crd::{OrganizationMemberSpec, OrganizationSpec};
use litellm_org_operator::engine::{
    DEFAULT_ACTOR, DesiredMember, DesiredOrganization, Engine, ObjectKey,
};
use litellm_org_operator::store::{PostgresStore, Store};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection};

#[path = "common/mod.rs"]
mod common;
use common::{admin_url, drop_database, fresh_database};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

struct Run {
    orgs: Duration,
    members: Duration,
    idle: Duration,
}

async fn engine_run(
    engine: Arc<Engine<PostgresStore>>,
    orgs: usize,
    members: usize,
    concurrency: usize,
) -> Run {
    let desired_orgs: Vec<DesiredOrganization> = (0..orgs)
        .map(|o| {
            let spec: OrganizationSpec = serde_yaml::from_str(&format!(
                "models: [gpt-4o]\nbudget: {{maxBudget: {}, budgetDuration: 30d}}\n",
                100 + o
            ))
            .expect("spec");
            DesiredOrganization::from_spec(
                ObjectKey::new("bench", format!("org-{o}")),
                &spec,
                DEFAULT_ACTOR,
            )
            .expect("valid")
        })
        .collect();
    let desired_members: Vec<(DesiredMember, String)> = (0..orgs)
        .flat_map(|o| (0..members).map(move |m| (o, m)))
        .map(|(o, m)| {
            let spec: OrganizationMemberSpec = serde_yaml::from_str(&format!(
                "organizationRef: {{name: org-{o}}}\nuser: {{email: user{m}-org{o}@example.com}}\nrole: internal_user\nmaxBudgetInOrganization: 10\n"
            ))
            .expect("spec");
            let d = DesiredMember::from_spec(ObjectKey::new("bench", format!("org-{o}-m{m}")), &spec)
                .expect("valid");
            (d, desired_orgs[o].organization_id.clone())
        })
        .collect();

    let reconcile_orgs = |engine: Arc<Engine<PostgresStore>>| {
        let items = desired_orgs.clone();
        async move {
            futures::stream::iter(items)
                .map(|d| {
                    let engine = engine.clone();
                    async move {
                        let plan = engine.plan_organization(&d).await.expect("plan org");
                        engine.apply(&plan).await.expect("apply org");
                        plan.row_changes()
                    }
                })
                .buffer_unordered(concurrency)
                .fold(0, |a, n| async move { a + n })
                .await
        }
    };
    let reconcile_members = |engine: Arc<Engine<PostgresStore>>| {
        let items = desired_members.clone();
        async move {
            futures::stream::iter(items)
                .map(|(d, org_id)| {
                    let engine = engine.clone();
                    async move {
                        let plan = engine
                            .plan_member(&d, &org_id, false)
                            .await
                            .expect("plan member");
                        engine.apply(&plan).await.expect("apply member");
                        plan.row_changes()
                    }
                })
                .buffer_unordered(concurrency)
                .fold(0, |a, n| async move { a + n })
                .await
        }
    };

    let t = Instant::now();
    let org_changes = reconcile_orgs(engine.clone()).await;
    let orgs_time = t.elapsed();
    let t = Instant::now();
    let member_changes = reconcile_members(engine.clone()).await;
    let members_time = t.elapsed();
    assert_eq!(org_changes, orgs * 2, "budget + organization per org");
    assert_eq!(
        member_changes,
        orgs * members * 3,
        "user + budget + membership per member"
    );
    let t = Instant::now();
    let idle = reconcile_orgs(engine.clone()).await + reconcile_members(engine.clone()).await;
    let idle_time = t.elapsed();
    assert_eq!(idle, 0, "a second pass changes nothing");
    Run {
        orgs: orgs_time,
        members: members_time,
        idle: idle_time,
    }
}

/// The same SQL a cold member reconcile sends (its reads, then one transaction of three
/// upserts), as a pgbench script with random ids.
const PGBENCH_MEMBER: &str = r#"\set o random(1, 1000000000)
\set u random(1, 1000000000)
SELECT 1 FROM "LiteLLM_OrganizationTable" WHERE "organization_id" = 'bench-org';
SELECT "user_id", "user_email" FROM "LiteLLM_UserTable" WHERE lower("user_email") = lower('u' || :u || '@example.com') LIMIT 10;
SELECT "budget_id" FROM "LiteLLM_BudgetTable" WHERE "budget_id" = 'b' || :u || '-' || :o;
BEGIN;
INSERT INTO "LiteLLM_UserTable" ("user_id", "user_email", "user_role", "models", "teams", "metadata", "spend", "created_at", "updated_at") VALUES ('u' || :u || '-' || :o, 'u' || :u || '@example.com', 'internal_user', ARRAY[]::TEXT[], ARRAY[]::TEXT[], '{}'::jsonb, 0.0, now(), now()) ON CONFLICT ("user_id") DO NOTHING;
INSERT INTO "LiteLLM_BudgetTable" ("budget_id", "max_budget", "created_at", "created_by", "updated_at", "updated_by") VALUES ('b' || :u || '-' || :o, 10, now(), 'bench', now(), 'bench') ON CONFLICT ("budget_id") DO UPDATE SET "max_budget" = EXCLUDED."max_budget";
INSERT INTO "LiteLLM_OrganizationMembership" ("user_id", "organization_id", "user_role", "spend", "budget_id", "created_at", "updated_at") VALUES ('u' || :u || '-' || :o, 'bench-org', 'internal_user', 0.0, 'b' || :u || '-' || :o, now(), now()) ON CONFLICT ("user_id", "organization_id") DO UPDATE SET "user_role" = EXCLUDED."user_role";
COMMIT;
"#;

/// The same for an organization: its reads, then budget + organization in one transaction.
const PGBENCH_ORG: &str = r#"\set o random(1, 1000000000)
SELECT "organization_id" FROM "LiteLLM_OrganizationTable" WHERE "organization_id" = 'o' || :o;
SELECT "budget_id" FROM "LiteLLM_BudgetTable" WHERE "budget_id" = 'ob' || :o;
BEGIN;
INSERT INTO "LiteLLM_BudgetTable" ("budget_id", "max_budget", "budget_duration", "created_at", "created_by", "updated_at", "updated_by") VALUES ('ob' || :o, 100, '30d', now(), 'bench', now(), 'bench') ON CONFLICT ("budget_id") DO UPDATE SET "max_budget" = EXCLUDED."max_budget";
INSERT INTO "LiteLLM_OrganizationTable" ("organization_id", "organization_alias", "budget_id", "metadata", "models", "created_at", "created_by", "updated_at", "updated_by") VALUES ('o' || :o, 'o', 'ob' || :o, '{"litellm-org-operator": {"owner": "x"}}'::jsonb, ARRAY['gpt-4o'], now(), 'bench', now(), 'bench') ON CONFLICT ("organization_id") DO UPDATE SET "organization_alias" = EXCLUDED."organization_alias";
COMMIT;
"#;

fn pgbench(
    database: &str,
    script: &str,
    transactions: usize,
    concurrency: usize,
    vars: &[(&str, usize)],
) -> Duration {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("script.sql");
    std::fs::write(&path, script).expect("write script");
    let url = url::Url::parse(&admin_url()).expect("url");
    let per_client = transactions.div_ceil(concurrency).max(1);
    let vars: Vec<String> = vars
        .iter()
        .map(|(k, v)| format!("--define={k}={v}"))
        .collect();
    let t = Instant::now();
    let out = Command::new("pgbench")
        .args(&vars)
        .args([
            "-n",
            "-h",
            url.host_str().unwrap_or("127.0.0.1"),
            "-p",
            &url.port().unwrap_or(5432).to_string(),
            "-U",
            if url.username().is_empty() {
                "postgres"
            } else {
                url.username()
            },
            "-c",
            &concurrency.to_string(),
            "-j",
            &concurrency.min(2).to_string(),
            "-t",
            &per_client.to_string(),
            "-f",
            &path.display().to_string(),
            database,
        ])
        .output()
        .expect("pgbench on PATH");
    let elapsed = t.elapsed();
    assert!(
        out.status.success(),
        "pgbench failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    elapsed
}

const BIN: &str = env!("CARGO_BIN_EXE_litellm-org-operator");

/// The population as manifests (the same objects `engine_run` reconciles).
fn write_manifests(dir: &std::path::Path, orgs: usize, members: usize) {
    let mut text = String::new();
    for o in 0..orgs {
        text.push_str(&format!(
            "---\napiVersion: litellm.dev/v1alpha1\nkind: Organization\nmetadata: {{name: org-{o}, namespace: bench}}\nspec: {{models: [gpt-4o], budget: {{maxBudget: {}, budgetDuration: 30d}}}}\n",
            100 + o
        ));
        for m in 0..members {
            text.push_str(&format!(
                "---\napiVersion: litellm.dev/v1alpha1\nkind: OrganizationMember\nmetadata: {{name: org-{o}-m{m}, namespace: bench}}\nspec: {{organizationRef: {{name: org-{o}}}, user: {{email: user{m}-org{o}@example.com}}, role: internal_user, maxBudgetInOrganization: 10}}\n"
            ));
        }
    }
    std::fs::write(dir.join("population.yaml"), text).expect("write manifests");
}

/// `apply -f population.yaml` against `database`: its wall time and its standard output.
fn cli_apply(dir: &std::path::Path, database: &str) -> (Duration, String) {
    let mut url = url::Url::parse(&admin_url()).expect("url");
    url.set_path(database);
    let t = Instant::now();
    let out = Command::new(BIN)
        .current_dir(dir)
        .args(["apply", "-f", "population.yaml"])
        .env("DATABASE_URL", url.as_str())
        .output()
        .expect("run the CLI");
    let elapsed = t.elapsed();
    assert!(
        out.status.success(),
        "apply failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (elapsed, String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Cold apply, then the second apply (nothing to write), on a fresh clone.
async fn cli_run(orgs: usize, members: usize) -> (Duration, Duration, String) {
    let name = format!("lorgbench_cli_{}", std::process::id());
    fresh_database(&name).await;
    let dir = tempfile::tempdir().expect("tempdir");
    write_manifests(dir.path(), orgs, members);
    let (cold, _) = cli_apply(dir.path(), &name);
    let (second, second_out) = cli_apply(dir.path(), &name);
    drop_database(&name).await;
    (cold, second, second_out)
}

/// The reads of a second pass with nothing to change: per organization its row and budget,
/// per member the organization, the user, the membership and two budget rows, on rows that
/// exist (loaded by `seed_reads`).
const PGBENCH_READS_ORG: &str = r#"\set o random(1, :orgs)
SELECT "organization_id", "organization_alias", "budget_id", "models", "metadata", "spend" FROM "LiteLLM_OrganizationTable" WHERE "organization_id" = 'o' || :o;
SELECT "budget_id", "max_budget", "soft_budget", "max_parallel_requests", "tpm_limit", "rpm_limit", "budget_duration", "model_max_budget", "created_by" FROM "LiteLLM_BudgetTable" WHERE "budget_id" = 'ob' || :o;
"#;

const PGBENCH_READS_MEMBER: &str = r#"\set o random(1, :orgs)
\set u random(1, :users)
SELECT 1 FROM "LiteLLM_OrganizationTable" WHERE "organization_id" = 'o' || :o;
WITH "matches" AS MATERIALIZED (SELECT "user_id", "user_email" FROM "LiteLLM_UserTable" WHERE lower("user_email") = lower('u' || :u || '@example.com')) SELECT "user_id", "user_email" FROM "matches" ORDER BY "user_id" LIMIT 10;
SELECT "user_id", "organization_id", "user_role", "budget_id" FROM "LiteLLM_OrganizationMembership" WHERE "user_id" = 'u' || :u AND "organization_id" = 'o' || :o;
SELECT "budget_id", "max_budget", "soft_budget", "max_parallel_requests", "tpm_limit", "rpm_limit", "budget_duration", "model_max_budget", "created_by" FROM "LiteLLM_BudgetTable" WHERE "budget_id" = 'mb' || :u;
SELECT "budget_id", "max_budget", "soft_budget", "max_parallel_requests", "tpm_limit", "rpm_limit", "budget_duration", "model_max_budget", "created_by" FROM "LiteLLM_BudgetTable" WHERE "budget_id" = 'mb' || :u;
"#;

/// The ledger's reads of a second pass (`src/store/ledger.rs`): per organization its row and
/// its budget's by key; per member its resource's entries and its membership's by key.
const PGBENCH_LEDGER_ORG: &str = r#"SELECT "row_key", "manager", "resource", "organization_id", "created", "deletion_policy", "managed" FROM "litellm_org_operator"."ledger" WHERE "row_key" = 'organization/o' || :o;
SELECT "row_key", "manager", "resource", "organization_id", "created", "deletion_policy", "managed" FROM "litellm_org_operator"."ledger" WHERE "row_key" = 'budget/ob' || :o;
"#;

const PGBENCH_LEDGER_MEMBER: &str = r#"SELECT "row_key", "manager", "resource", "organization_id", "created", "deletion_policy", "managed" FROM "litellm_org_operator"."ledger" WHERE "resource" = 'OrganizationMember/bench/m' || :u AND "manager" = 'litellm-org-operator';
SELECT "row_key", "manager", "resource", "organization_id", "created", "deletion_policy", "managed" FROM "litellm_org_operator"."ledger" WHERE "row_key" = 'membership/o' || :o || '/u' || :u;
"#;

/// Ledger rows for the same population (the table made by the engine's own DDL first): per
/// organization two, per member two.
const SEED_LEDGER: &str = r#"
INSERT INTO "litellm_org_operator"."ledger" ("row_key", "manager", "resource", "organization_id", "created", "deletion_policy", "managed", "updated_at") SELECT 'organization/o' || g, 'litellm-org-operator', 'Organization/bench/o' || g, 'o' || g, true, 'Delete', '{}', now() FROM generate_series(1, $ORGS) g;
INSERT INTO "litellm_org_operator"."ledger" ("row_key", "manager", "resource", "organization_id", "created", "deletion_policy", "managed", "updated_at") SELECT 'budget/ob' || g, 'litellm-org-operator', 'Organization/bench/o' || g, 'o' || g, true, 'Delete', '{}', now() FROM generate_series(1, $ORGS) g;
INSERT INTO "litellm_org_operator"."ledger" ("row_key", "manager", "resource", "organization_id", "created", "deletion_policy", "managed", "updated_at") SELECT 'membership/o' || (g % $ORGS + 1) || '/u' || g, 'litellm-org-operator', 'OrganizationMember/bench/m' || g, 'o' || (g % $ORGS + 1), true, 'Delete', ('{"user_id": "u' || g || '"}')::jsonb, now() FROM generate_series(1, $USERS) g;
INSERT INTO "litellm_org_operator"."ledger" ("row_key", "manager", "resource", "organization_id", "created", "deletion_policy", "managed", "updated_at") SELECT 'budget/mb' || g, 'litellm-org-operator', 'OrganizationMember/bench/m' || g, 'o' || (g % $ORGS + 1), true, 'Delete', '{}', now() FROM generate_series(1, $USERS) g;
"#;

/// Rows for the read floor: `orgs` organizations with budgets, `users` users with budgets and
/// memberships, each table filled by one statement (no ANALYZE).
const SEED_READS: &str = r#"
INSERT INTO "LiteLLM_BudgetTable" ("budget_id", "max_budget", "created_by", "updated_by") SELECT 'ob' || g, 100, 'b', 'b' FROM generate_series(1, $ORGS) g;
INSERT INTO "LiteLLM_OrganizationTable" ("organization_id", "organization_alias", "budget_id", "created_by", "updated_by") SELECT 'o' || g, 'o', 'ob' || g, 'b', 'b' FROM generate_series(1, $ORGS) g;
INSERT INTO "LiteLLM_UserTable" ("user_id", "user_email", "user_role", "models", "teams", "metadata", "spend", "created_at", "updated_at") SELECT 'u' || g, 'u' || g || '@example.com', 'internal_user', '{}', '{}', '{}', 0, now(), now() FROM generate_series(1, $USERS) g;
INSERT INTO "LiteLLM_BudgetTable" ("budget_id", "max_budget", "created_by", "updated_by") SELECT 'mb' || g, 10, 'b', 'b' FROM generate_series(1, $USERS) g;
INSERT INTO "LiteLLM_OrganizationMembership" ("user_id", "organization_id", "user_role", "budget_id") SELECT 'u' || g, 'o' || (g % $ORGS + 1), 'internal_user', 'mb' || g FROM generate_series(1, $USERS) g;
"#;

fn main() {
    let benchmarking = std::env::args().any(|a| a == "--bench");
    let (orgs, members, concurrency) = if benchmarking {
        (
            env_usize("ORGS", 1000),
            env_usize("MEMBERS", 5),
            env_usize("CONCURRENCY", 8),
        )
    } else {
        (10, 2, 4)
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let name = format!("lorgbench_{}", std::process::id());
        let options = fresh_database(&name).await;
        let pool = PgPoolOptions::new()
            .max_connections(concurrency as u32)
            .connect_with(options)
            .await
            .expect("connect");
        let store = PostgresStore::from_pool(pool.clone());
        assert_eq!(
            store.schema_state().await.expect("schema"),
            litellm_org_operator::store::SchemaState::Ready
        );
        let engine = Arc::new(Engine::new(store, DEFAULT_ACTOR));
        engine.ensure_ledger().await.expect("create the ledger");
        let run = engine_run(engine, orgs, members, concurrency).await;
        pool.close().await;
        let engine_rss = rss_kib();
        if benchmarking {
            let pg_name = format!("lorgbench_pg_{}", std::process::id());
            fresh_database(&pg_name).await;
            let admin = PgConnectOptions::from_str(&admin_url()).expect("url").database(&pg_name);
            let mut conn = admin.connect().await.expect("connect");
            sqlx::raw_sql(r#"INSERT INTO "LiteLLM_BudgetTable" ("budget_id", "created_by", "updated_by") VALUES ('bench-budget', 'b', 'b'); INSERT INTO "LiteLLM_OrganizationTable" ("organization_id", "organization_alias", "budget_id", "created_by", "updated_by") VALUES ('bench-org', 'b', 'bench-budget', 'b', 'b')"#)
                .execute(&mut conn)
                .await
                .expect("seed");
            conn.close().await.ok();
            let pg_orgs = pgbench(&pg_name, PGBENCH_ORG, orgs, concurrency, &[]);
            let pg_members = pgbench(&pg_name, PGBENCH_MEMBER, orgs * members, concurrency, &[]);
            let pg1_orgs = pgbench(&pg_name, PGBENCH_ORG, orgs, 1, &[]);
            let pg1_members = pgbench(&pg_name, PGBENCH_MEMBER, orgs * members, 1, &[]);
            drop_database(&pg_name).await;

            // The read floor of a second pass, on a clone holding the same number of rows.
            let read_name = format!("lorgbench_read_{}", std::process::id());
            fresh_database(&read_name).await;
            let admin = PgConnectOptions::from_str(&admin_url()).expect("url").database(&read_name);
            let mut conn = admin.connect().await.expect("connect");
            let seed = SEED_READS
                .replace("$ORGS", &orgs.to_string())
                .replace("$USERS", &(orgs * members).to_string());
            sqlx::raw_sql(sqlx::AssertSqlSafe(seed)).execute(&mut conn).await.expect("seed reads");
            conn.close().await.ok();
            let vars = [("orgs", orgs), ("users", orgs * members)];
            let read_orgs = pgbench(&read_name, PGBENCH_READS_ORG, orgs, concurrency, &vars);
            let read_members =
                pgbench(&read_name, PGBENCH_READS_MEMBER, orgs * members, concurrency, &vars);
            // The same reads and the ledger's, on the same clone with a ledger as full as the
            // population's: what an idle pass reads in all.
            let ledger_pool = PgPoolOptions::new()
                .max_connections(1)
                .connect_with(admin.clone())
                .await
                .expect("connect");
            PostgresStore::from_pool(ledger_pool.clone())
                .ensure_ledger()
                .await
                .expect("ledger DDL");
            let seed = SEED_LEDGER
                .replace("$ORGS", &orgs.to_string())
                .replace("$USERS", &(orgs * members).to_string());
            sqlx::raw_sql(sqlx::AssertSqlSafe(seed)).execute(&ledger_pool).await.expect("seed ledger");
            ledger_pool.close().await;
            let read_ledger_orgs = pgbench(
                &read_name,
                &format!("{PGBENCH_READS_ORG}{PGBENCH_LEDGER_ORG}"),
                orgs,
                concurrency,
                &vars,
            );
            let read_ledger_members = pgbench(
                &read_name,
                &format!("{PGBENCH_READS_MEMBER}{PGBENCH_LEDGER_MEMBER}"),
                orgs * members,
                concurrency,
                &vars,
            );
            drop_database(&read_name).await;

            let (cli_cold, cli_second, second_out) = cli_run(orgs, members).await;

            let engine_total = run.orgs + run.members;
            let pg_total = pg_orgs + pg_members;
            let pg1_total = pg1_orgs + pg1_members;
            let read_total = read_orgs + read_members;
            let read_ledger_total = read_ledger_orgs + read_ledger_members;
            let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
            println!("population: {orgs} organizations, {} members, concurrency {concurrency}", orgs * members);
            println!("| what | time | ratio |");
            println!("|---|---|---|");
            println!("| pgbench, the same transactions, {concurrency} clients (floor) | {pg_total:.2?} | 1.00 |");
            println!("| pgbench, the same transactions, 1 client | {pg1_total:.2?} | {:.2} |", ratio(pg1_total, pg_total));
            println!("| engine cold reconcile, concurrency {concurrency} (orgs {:.2?}, members {:.2?}) | {engine_total:.2?} | {:.2} |", run.orgs, run.members, ratio(engine_total, pg_total));
            println!("| CLI `apply`, cold | {cli_cold:.2?} | {:.2} |", ratio(cli_cold, pg_total));
            println!("| pgbench, the reads of a second pass, {concurrency} clients (read floor) | {read_total:.2?} | 1.00 (read floor) |");
            println!("| pgbench, the same reads and the ledger's, {concurrency} clients | {read_ledger_total:.2?} | {:.2} of the read floor |", ratio(read_ledger_total, read_total));
            println!("| engine idle pass (no changes) | {:.2?} | {:.2} of the read floor, {:.2} with the ledger's |", run.idle, ratio(run.idle, read_total), ratio(run.idle, read_ledger_total));
            println!("| CLI `apply`, second run (no changes) | {cli_second:.2?} | {:.2} of the read floor, {:.2} with the ledger's |", ratio(cli_second, read_total), ratio(cli_second, read_ledger_total));
            println!("peak RSS of the benchmark process: {} MiB", engine_rss / 1024);
            println!("CLI second run said: {}", second_out.lines().last().unwrap_or_default());
            let json = serde_json::json!({
                "organizations": orgs,
                "members": orgs * members,
                "concurrency": concurrency,
                "seconds": {
                    "pgbench_floor": pg_total.as_secs_f64(),
                    "pgbench_one_client": pg1_total.as_secs_f64(),
                    "pgbench_read_floor": read_total.as_secs_f64(),
                    "pgbench_reads_with_ledger": read_ledger_total.as_secs_f64(),
                    "engine_cold": engine_total.as_secs_f64(),
                    "engine_idle": run.idle.as_secs_f64(),
                    "cli_cold": cli_cold.as_secs_f64(),
                    "cli_second": cli_second.as_secs_f64(),
                },
                "ratios": {
                    "engine_cold_to_floor": ratio(engine_total, pg_total),
                    "cli_cold_to_floor": ratio(cli_cold, pg_total),
                    "cli_second_to_read_floor": ratio(cli_second, read_total),
                    "cli_second_to_reads_with_ledger": ratio(cli_second, read_ledger_total),
                },
                "peak_rss_mib": engine_rss / 1024,
            });
            let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench");
            std::fs::create_dir_all(&dir).expect("target/bench");
            std::fs::write(dir.join("scale.json"), serde_json::to_string_pretty(&json).expect("json"))
                .expect("write target/bench/scale.json");
        } else {
            println!("scale smoke run: {orgs} orgs × {members} members reconciled and re-checked");
        }
        drop_database(&name).await;
    });
}
