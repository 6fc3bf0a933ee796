//! The operator's ledger: which rows of LiteLLM's tables it manages, for which resource, under
//! which manager, which of their fields, and whether it created them or adopted them.
//!
//! It lives where LiteLLM never writes: on PostgreSQL in a schema of its own (default
//! `litellm_org_operator`; never `public`, which `prisma db push --accept-data-loss` may clean),
//! on SQLite in a table of the same file. Entries are written in the same transaction as the
//! rows they describe, so the two never disagree, and a claim is one statement guarded by the
//! primary key: two writers claiming one row cannot both win.

//!
//! The ledger is the operator's own table: a claim is an insert or an update guarded by its
//! holder (never a blind write), a release a delete; LiteLLM's update strategy (see `store`)
//! does not apply to it.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;

use super::Owner;
use super::dialect::{Dialect, Stmt, fetch_all_as, fetch_one_as};
use super::sql::now;
use crate::error::StoreError;

/// Default PostgreSQL schema of the ledger.
pub const DEFAULT_LEDGER_SCHEMA: &str = "litellm_org_operator";

/// One managed row.
#[derive(Clone, Debug, PartialEq)]
pub struct LedgerEntry {
    /// What row: see [`organization_key`], [`membership_key`], [`budget_key`].
    pub row_key: String,
    /// Who manages it: the operator of one cluster, or one named CLI manifest set.
    pub manager: String,
    /// The resource that declares it: `Organization/<namespace>/<name>` or
    /// `OrganizationMember/<namespace>/<name>`.
    pub resource: String,
    /// The organization the row belongs to (for cascades), if any.
    pub organization_id: Option<String>,
    /// True when the operator created the row (a delete removes it); false when it adopted a
    /// row made elsewhere (a delete releases it and leaves the row).
    pub created: bool,
    /// `Delete` or `Retain`, as the resource said when it last wrote the row.
    pub deletion_policy: String,
    /// Which fields the resource manages and what they held before it first set them
    /// (see the engine's planner for the shape).
    pub managed: Value,
}

/// The ledger key of an organization row.
pub fn organization_key(organization_id: &str) -> String {
    format!("organization/{organization_id}")
}

/// The ledger key of a membership row.
pub fn membership_key(organization_id: &str, user_id: &str) -> String {
    format!("membership/{organization_id}/{user_id}")
}

/// The ledger key of a budget row.
pub fn budget_key(budget_id: &str) -> String {
    format!("budget/{budget_id}")
}

/// The ledger's SQL for one table name. The name is the only identifier that is not a
/// constant: it is checked by [`ledger_schema`] and quoted.
#[derive(Debug)]
pub struct LedgerSql {
    pub ddl: Vec<Arc<str>>,
    pub exists: Arc<str>,
    pub select_key: Arc<str>,
    pub select_resource: Arc<str>,
    pub select_manager: Arc<str>,
    pub claim: Arc<str>,
    pub owner_of: Arc<str>,
    pub release: Arc<str>,
    pub release_organization: Arc<str>,
    pub created_member_budgets: Arc<str>,
    pub owners: Arc<str>,
    pub resources: Arc<str>,
}

/// A schema name the ledger may use: a plain lower-case identifier, never `public`.
pub fn ledger_schema(name: &str) -> Result<String, StoreError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && name != "public"
        && !name.starts_with("pg_");
    if ok {
        Ok(name.to_string())
    } else {
        Err(StoreError::Unavailable(format!(
            "--ledger-schema {name:?}: use a lower-case identifier ([a-z_][a-z0-9_]*, at most 63 characters) other than public"
        )))
    }
}

const COLUMNS: &str = r#""row_key", "manager", "resource", "organization_id", "created", "deletion_policy", "managed""#;

impl LedgerSql {
    /// The statements for a ledger table `table` (already quoted and qualified).
    fn for_table(table: &str, ddl: Vec<String>) -> Self {
        let s = |sql: String| -> Arc<str> { Arc::from(sql) };
        Self {
            ddl: ddl.into_iter().map(Arc::from).collect(),
            exists: s(format!("SELECT 1 FROM {table} LIMIT 1")),
            // One key per statement: an equality on the primary key keeps its index even in a
            // plan made while the table was empty (an `OR` of keys does not).
            select_key: s(format!(
                r#"SELECT {COLUMNS} FROM {table} WHERE "row_key" = $1"#
            )),
            select_resource: s(format!(
                r#"SELECT {COLUMNS} FROM {table} WHERE "resource" = $1 AND "manager" = $2"#
            )),
            select_manager: s(format!(
                r#"SELECT {COLUMNS} FROM {table} WHERE "manager" = $1"#
            )),
            claim: s(format!(
                r#"INSERT INTO {table} ({COLUMNS}, "updated_at") VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                   ON CONFLICT ("row_key") DO UPDATE SET
                     "resource" = EXCLUDED."resource", "organization_id" = EXCLUDED."organization_id",
                     "created" = EXCLUDED."created", "deletion_policy" = EXCLUDED."deletion_policy",
                     "managed" = EXCLUDED."managed", "updated_at" = EXCLUDED."updated_at"
                   WHERE {table}."manager" = EXCLUDED."manager"
                     AND ({table}."resource" = EXCLUDED."resource" OR {table}."resource" = $9)"#
            )),
            owner_of: s(format!(
                r#"SELECT "manager", "resource" FROM {table} WHERE "row_key" = $1"#
            )),
            release: s(format!(r#"DELETE FROM {table} WHERE "row_key" = $1"#)),
            release_organization: s(format!(
                r#"DELETE FROM {table} WHERE "organization_id" = $1"#
            )),
            created_member_budgets: s(format!(
                r#"SELECT substr("row_key", 8) AS "budget_id" FROM {table}
                   WHERE "organization_id" = $1 AND "created" AND "row_key" LIKE 'budget/%'"#
            )),
            owners: s(format!(
                r#"SELECT "row_key", "manager", "resource" FROM {table}
                   WHERE "row_key" LIKE 'organization/%' OR "row_key" LIKE 'membership/%'"#
            )),
            resources: s(format!(r#"SELECT DISTINCT "resource" FROM {table}"#)),
        }
    }

    /// PostgreSQL: a table in schema `schema` (created with the schema when missing).
    pub fn postgres(schema: &str) -> Self {
        let table = format!(r#""{schema}"."ledger""#);
        let ddl = vec![
            format!(r#"CREATE SCHEMA IF NOT EXISTS "{schema}""#),
            format!(
                r#"CREATE TABLE IF NOT EXISTS {table} (
                    "row_key" TEXT NOT NULL PRIMARY KEY,
                    "manager" TEXT NOT NULL,
                    "resource" TEXT NOT NULL,
                    "organization_id" TEXT,
                    "created" BOOLEAN NOT NULL,
                    "deletion_policy" TEXT NOT NULL,
                    "managed" JSONB NOT NULL DEFAULT '{{}}',
                    "updated_at" TIMESTAMP(3) NOT NULL
                )"#
            ),
            format!(
                r#"CREATE INDEX IF NOT EXISTS "ledger_resource_idx" ON {table} ("resource", "manager")"#
            ),
            format!(r#"CREATE INDEX IF NOT EXISTS "ledger_manager_idx" ON {table} ("manager")"#),
            format!(
                r#"CREATE INDEX IF NOT EXISTS "ledger_organization_idx" ON {table} ("organization_id")"#
            ),
        ];
        Self::for_table(&table, ddl)
    }

    /// SQLite: a table in the same file.
    pub fn sqlite() -> Self {
        let table = r#""litellm_org_operator_ledger""#;
        let ddl = vec![
            format!(
                r#"CREATE TABLE IF NOT EXISTS {table} (
                    "row_key" TEXT NOT NULL PRIMARY KEY,
                    "manager" TEXT NOT NULL,
                    "resource" TEXT NOT NULL,
                    "organization_id" TEXT,
                    "created" BOOLEAN NOT NULL,
                    "deletion_policy" TEXT NOT NULL,
                    "managed" TEXT NOT NULL DEFAULT '{{}}',
                    "updated_at" TEXT NOT NULL
                )"#
            ),
            format!(
                r#"CREATE INDEX IF NOT EXISTS "litellm_org_operator_ledger_resource" ON {table} ("resource", "manager")"#
            ),
            format!(
                r#"CREATE INDEX IF NOT EXISTS "litellm_org_operator_ledger_manager" ON {table} ("manager")"#
            ),
            format!(
                r#"CREATE INDEX IF NOT EXISTS "litellm_org_operator_ledger_organization" ON {table} ("organization_id")"#
            ),
        ];
        Self::for_table(table, ddl)
    }
}

fn from_row<D: Dialect>(row: &D::Row) -> Result<LedgerEntry, sqlx::Error> {
    Ok(LedgerEntry {
        row_key: D::text(row, "row_key")?,
        manager: D::text(row, "manager")?,
        resource: D::text(row, "resource")?,
        organization_id: D::opt_text(row, "organization_id")?,
        created: D::boolean(row, "created")?,
        deletion_policy: D::text(row, "deletion_policy")?,
        managed: D::json(row, "managed")?,
    })
}

/// A statement of the ledger: its text is built once per store from a checked identifier
/// ([`ledger_schema`]); values are always bound.
fn stmt(sql: &Arc<str>) -> Stmt {
    Stmt::shared(sql.clone())
}

/// Whether the ledger table exists (`Ok(false)` when the database says it does not).
pub(super) async fn exists<D: Dialect>(
    conn: &mut D::Connection,
    sql: &LedgerSql,
) -> Result<bool, sqlx::Error> {
    match D::fetch_optional(conn, stmt(&sql.exists)).await {
        Ok(_) => Ok(true),
        Err(e) if D::is_missing_table(&e) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Create the ledger's schema and table, in one transaction on `conn`.
pub(super) async fn create<D: Dialect>(
    conn: &mut D::Connection,
    sql: &LedgerSql,
) -> Result<(), StoreError> {
    for ddl in &sql.ddl {
        D::execute(conn, stmt(ddl))
            .await
            .map_err(StoreError::from_ledger_ddl)?;
    }
    Ok(())
}

pub(super) async fn by_key<D: Dialect>(
    conn: &mut D::Connection,
    sql: &LedgerSql,
    key: &str,
) -> Result<Option<LedgerEntry>, sqlx::Error> {
    fetch_one_as::<D, _>(conn, stmt(&sql.select_key).bind(key), from_row::<D>).await
}

async fn entries<D: Dialect>(
    conn: &mut D::Connection,
    stmt: Stmt,
) -> Result<Vec<LedgerEntry>, sqlx::Error> {
    fetch_all_as::<D, _>(conn, stmt, from_row::<D>).await
}

pub(super) async fn of_resource<D: Dialect>(
    conn: &mut D::Connection,
    sql: &LedgerSql,
    resource: &str,
    manager: &str,
) -> Result<Vec<LedgerEntry>, sqlx::Error> {
    entries::<D>(
        conn,
        stmt(&sql.select_resource).bind(resource).bind(manager),
    )
    .await
}

pub(super) async fn of_manager<D: Dialect>(
    conn: &mut D::Connection,
    sql: &LedgerSql,
    manager: &str,
) -> Result<Vec<LedgerEntry>, sqlx::Error> {
    entries::<D>(conn, stmt(&sql.select_manager).bind(manager)).await
}

/// The resource and manager holding each organization and membership row the ledger holds,
/// by row key (for listings).
pub(super) async fn owners<D: Dialect>(
    conn: &mut D::Connection,
    sql: &LedgerSql,
) -> Result<HashMap<String, Owner>, sqlx::Error> {
    let mut owners = HashMap::new();
    for r in D::fetch_all(conn, stmt(&sql.owners)).await? {
        let (resource, manager) = (D::text(&r, "resource")?, D::text(&r, "manager")?);
        owners.insert(
            D::text(&r, "row_key")?,
            Owner::from_ledger(&resource, &manager),
        );
    }
    Ok(owners)
}

pub(super) async fn resources<D: Dialect>(
    conn: &mut D::Connection,
    sql: &LedgerSql,
) -> Result<Vec<String>, sqlx::Error> {
    fetch_all_as::<D, _>(conn, stmt(&sql.resources), |r| D::text(r, "resource")).await
}

/// Claim a row for `entry.resource`: fails with [`StoreError::Claimed`], naming the holder,
/// when another resource or manager holds it.
pub(super) async fn claim<D: Dialect>(
    conn: &mut D::Connection,
    sql: &LedgerSql,
    entry: &LedgerEntry,
    replaces: Option<&str>,
) -> Result<(), StoreError> {
    let db = StoreError::from_sqlx;
    let claim = stmt(&sql.claim)
        .bind(&entry.row_key)
        .bind(&entry.manager)
        .bind(&entry.resource)
        .bind(&entry.organization_id)
        .bind(entry.created)
        .bind(&entry.deletion_policy)
        .bind(&entry.managed)
        .bind(now())
        .bind(replaces.unwrap_or(&entry.resource));
    if D::execute(conn, claim).await.map_err(db)? > 0 {
        return Ok(());
    }
    let holder = D::fetch_optional(conn, stmt(&sql.owner_of).bind(&entry.row_key))
        .await
        .map_err(db)?;
    let (manager, resource) = match holder {
        Some(r) => (
            D::text(&r, "manager").map_err(db)?,
            D::text(&r, "resource").map_err(db)?,
        ),
        None => (String::new(), String::new()),
    };
    Err(StoreError::Claimed {
        row: entry.row_key.clone(),
        manager,
        resource,
    })
}

pub(super) async fn release<D: Dialect>(
    conn: &mut D::Connection,
    sql: &LedgerSql,
    row_key: &str,
) -> Result<(), sqlx::Error> {
    D::execute(conn, stmt(&sql.release).bind(row_key))
        .await
        .map(drop)
}

/// Every entry of an organization's rows (its cascade removed them).
pub(super) async fn release_organization<D: Dialect>(
    conn: &mut D::Connection,
    sql: &LedgerSql,
    organization_id: &str,
) -> Result<(), sqlx::Error> {
    D::execute(conn, stmt(&sql.release_organization).bind(organization_id))
        .await
        .map(drop)
}

/// The member budgets the operator created for an organization's memberships.
pub(super) async fn created_member_budgets<D: Dialect>(
    conn: &mut D::Connection,
    sql: &LedgerSql,
    organization_id: &str,
) -> Result<Vec<String>, sqlx::Error> {
    D::fetch_all(
        conn,
        stmt(&sql.created_member_budgets).bind(organization_id),
    )
    .await?
    .iter()
    .map(|r| D::text(r, "budget_id"))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names_are_plain_identifiers() {
        assert!(ledger_schema("litellm_org_operator").is_ok());
        assert!(ledger_schema("ops_2").is_ok());
        for bad in ["", "public", "Ops", "a-b", "a\"b", "1a", "pg_x", "a;drop"] {
            assert!(ledger_schema(bad).is_err(), "{bad}");
        }
    }
}
