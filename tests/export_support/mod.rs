//! What the export tests share: rows made as LiteLLM makes them (values bound, never spliced
//! into SQL, so any text goes in as it is), and reading what `export` writes as kubectl reads
//! it: YAML 1.1. Two readers, both installed by
//! `scripts/install-tools.sh`: PyYAML (`$TOOLS_PYTHON`), and kubectl itself (`$KUBECTL`):
//! `kubectl label --local -f FILE -o json` needs no cluster and decodes the file as
//! `kubectl apply` does (sigs.k8s.io/yaml over go-yaml), so it reads `on`, `0X1F` or `1e5`
//! exactly as an apply would send them.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

use litellm_org_operator::store::AnyStore;
use serde_json::Value;
use sqlx::types::Json;

use crate::support::TestDb;

/// One SQL statement with its values bound, on either store; `$N` placeholders. Arrays are
/// passed as JSON (SQLite's form) and turned into `text[]` here on PostgreSQL.
pub async fn insert(db: &TestDb, sql: &str, values: &[Bound<'_>]) {
    macro_rules! run {
        ($pool:expr, |$q:ident, $items:ident| $array:expr) => {{
            let mut $q = sqlx::query(sqlx::AssertSqlSafe(sql.to_string()));
            for v in values {
                $q = match v {
                    Bound::Text(t) => $q.bind(t.to_string()),
                    Bound::Null => $q.bind(Option::<String>::None),
                    Bound::Json(j) => $q.bind(Json((*j).clone())),
                    Bound::Array($items) => $array,
                };
            }
            $q.execute($pool)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
        }};
    }
    match db.store() {
        AnyStore::Postgres(p) => run!(p.pool(), |q, items| q.bind(items.to_vec())),
        AnyStore::Sqlite(s) => run!(s.pool(), |q, items| q.bind(Json(serde_json::json!(items)))),
    }
}

/// A value to bind.
pub enum Bound<'a> {
    Text(&'a str),
    Null,
    Json(&'a Value),
    Array(&'a [String]),
}

/// A budget row, as the UI makes one.
pub async fn budget(db: &TestDb, id: &str) {
    insert(
        db,
        r#"INSERT INTO "LiteLLM_BudgetTable" (budget_id, created_by, updated_by) VALUES ($1, 'admin', 'admin')"#,
        &[Bound::Text(id)],
    )
    .await;
}

/// An organization, as `/organization/new` makes one (its budget row must exist).
pub async fn organization(
    db: &TestDb,
    id: &str,
    alias: &str,
    budget: &str,
    models: &[String],
    metadata: &Value,
) {
    let cast = if db.is_postgres() { "::text[]" } else { "" };
    let models_sql = if db.is_postgres() {
        format!("$4{cast}")
    } else {
        "$4".into()
    };
    insert(
        db,
        &format!(
            r#"INSERT INTO "LiteLLM_OrganizationTable" (organization_id, organization_alias, budget_id, models, metadata, spend, created_by, updated_by)
               VALUES ($1, $2, $3, {models_sql}, $5, 0, 'admin', 'admin')"#
        ),
        &[
            Bound::Text(id),
            Bound::Text(alias),
            Bound::Text(budget),
            Bound::Array(models),
            Bound::Json(metadata),
        ],
    )
    .await;
}

/// A user and its membership, as `member_add` makes them; `role` None is a NULL role.
pub async fn member(
    db: &TestDb,
    organization: &str,
    user: &str,
    email: Option<&str>,
    role: Option<&str>,
) {
    let empty: &[String] = &[];
    let cast = if db.is_postgres() { "::text[]" } else { "" };
    insert(
        db,
        &format!(
            r#"INSERT INTO "LiteLLM_UserTable" (user_id, user_email, user_role, models, teams, metadata, spend)
               VALUES ($1, $2, 'internal_user', $3{cast}, $3{cast}, $4, 0) ON CONFLICT (user_id) DO NOTHING"#
        ),
        &[
            Bound::Text(user),
            email.map_or(Bound::Null, Bound::Text),
            Bound::Array(empty),
            Bound::Json(&serde_json::json!({})),
        ],
    )
    .await;
    insert(
        db,
        r#"INSERT INTO "LiteLLM_OrganizationMembership" (user_id, organization_id, user_role, spend) VALUES ($1, $2, $3, 0)"#,
        &[
            Bound::Text(user),
            Bound::Text(organization),
            role.map_or(Bound::Null, Bound::Text),
        ],
    )
    .await;
}

const BIN: &str = env!("CARGO_BIN_EXE_litellm-org-operator");

/// Run the CLI in `dir` against `database`.
pub fn run(dir: &Path, args: &[&str], database: &str) -> Output {
    Command::new(BIN)
        .current_dir(dir)
        .args(args)
        .env("DATABASE_URL", database)
        .output()
        .expect("run the binary")
}

/// stdout and stderr, for a failure message.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `plan` of `file` finds nothing to do, and `apply` of it writes nothing to LiteLLM's rows
/// (it only takes ownership in the ledger).
pub async fn adopting_changes_nothing(db: &TestDb, dir: &Path, file: &str) {
    let url = db.url();
    let before = db.snapshot().await;
    let out = run(dir, &["plan", "-f", file], &url);
    assert_eq!(out.status.code(), Some(0), "plan exits 0: {}", text(&out));
    let out = run(dir, &["apply", "-f", file], &url);
    assert_eq!(
        out.status.code(),
        Some(0),
        "all of it applies: {}",
        text(&out)
    );
    let out = run(dir, &["plan", "-f", file], &url);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(db.snapshot().await, before, "LiteLLM's rows are unchanged");
}

/// A tool's stdout, once it succeeded.
fn succeeded(mut cmd: Command, what: &str, file: &Path) -> Vec<u8> {
    let out = cmd.output().unwrap_or_else(|e| panic!("run {what}: {e}"));
    assert!(
        out.status.success(),
        "{what} cannot read {}: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn tool(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!("{var} is not set: run `bash scripts/install-tools.sh && source .tools/env.sh` (scripts/test.sh does)")
    })
}

/// Every non-empty document of `file` as PyYAML's `safe_load_all` reads it (YAML 1.1), as
/// JSON. A value PyYAML reads as a date or timestamp comes back as its Python `str()`, so it
/// differs from the string that was written.
pub fn pyyaml_documents(file: &Path) -> Vec<Value> {
    let script = "import json, sys, yaml\n\
                  docs = [d for d in yaml.safe_load_all(open(sys.argv[1], encoding='utf-8')) if d is not None]\n\
                  json.dump(docs, sys.stdout, ensure_ascii=True, default=str)\n";
    let mut cmd = Command::new(tool("TOOLS_PYTHON"));
    cmd.arg("-c").arg(script).arg(file);
    serde_json::from_slice(&succeeded(cmd, "PyYAML", file)).expect("PyYAML's JSON")
}

/// Every object of `file` as kubectl decodes it (YAML 1.1 through go-yaml), without the label
/// the command adds.
pub fn kubectl_objects(file: &Path) -> Vec<Value> {
    let mut cmd = Command::new(tool("KUBECTL"));
    cmd.args(["label", "--local", "-o", "json", "-f"])
        .arg(file)
        .arg("yaml11-check=read");
    let stdout = succeeded(cmd, "kubectl", file);
    // One JSON object per object read (a `List` when kubectl groups them).
    let mut objects = Vec::new();
    for value in serde_json::Deserializer::from_slice(&stdout).into_iter::<Value>() {
        match value.expect("kubectl's JSON") {
            Value::Object(o) if o.get("kind").and_then(Value::as_str) == Some("List") => objects
                .extend(
                    o.get("items")
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default(),
                ),
            other => objects.push(other),
        }
    }
    for o in &mut objects {
        if let Some(meta) = o.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.remove("labels");
        }
    }
    objects
}
