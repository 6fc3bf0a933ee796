//! `LiteLLM_OrganizationTable`: its reads and listing, its writes (insert-only create;
//! update by the store's update strategy, with `metadata` merged key by key onto the row as
//! it is now; the delete cascade), and what an organization's delete takes with it.

use serde_json::value::RawValue;

use super::budget;
use super::dialect::{Arg, Dialect, Stmt, fetch_one_as};
use super::ledger::{self, LedgerSql};
use super::sql::{Done, Failure, created, lock, now};
use super::{
    Dependents, Listing, OrganizationSummary, OrganizationUsage, Owner, RawObject, metadata_owner,
    organization_key,
};

pub const SELECT_ORGANIZATION: &str = r#"SELECT "organization_id", "organization_alias", "budget_id", "models", CAST("metadata" AS TEXT) AS "metadata", "spend" FROM "LiteLLM_OrganizationTable" WHERE "organization_id" = $1"#;

pub const ORGANIZATION_EXISTS: &str =
    r#"SELECT 1 FROM "LiteLLM_OrganizationTable" WHERE "organization_id" = $1"#;

/// Held for the rest of the transaction: memberships (whose inserts take a key-share lock on
/// the organization) cannot be added while an update merges or a cascade runs.
const LOCK_ORGANIZATION: &str =
    r#"SELECT 1 FROM "LiteLLM_OrganizationTable" WHERE "organization_id" = $1 FOR UPDATE"#;

const SELECT_METADATA: &str = r#"SELECT CAST("metadata" AS TEXT) AS "metadata" FROM "LiteLLM_OrganizationTable" WHERE "organization_id" = $1"#;

const INSERT_ORGANIZATION: &str = r#"INSERT INTO "LiteLLM_OrganizationTable"
     ("organization_id", "organization_alias", "budget_id", "metadata", "models", "created_at", "created_by", "updated_at", "updated_by")
   VALUES ($1, $2, $3, $4, $5, $6, $7, $6, $7)
   ON CONFLICT ("organization_id") DO NOTHING"#;

pub const USAGE: &str = r#"SELECT o."spend", b."max_budget", b."soft_budget", b."budget_reset_at"
   FROM "LiteLLM_OrganizationTable" o LEFT JOIN "LiteLLM_BudgetTable" b ON b."budget_id" = o."budget_id"
   WHERE o."organization_id" = $1"#;

const LIST_ORGANIZATIONS: &str = r#"SELECT o."organization_id", o."organization_alias", o."budget_id", b."max_budget", o."spend", o."models", o."metadata",
          (SELECT count(*) FROM "LiteLLM_OrganizationMembership" m WHERE m."organization_id" = o."organization_id") AS "members"
   FROM "LiteLLM_OrganizationTable" o LEFT JOIN "LiteLLM_BudgetTable" b ON b."budget_id" = o."budget_id"
   ORDER BY o."organization_alias", o."organization_id""#;

/// The teams, keys and memberships of an organization (three index or table scans; read only
/// when an organization is about to be deleted).
const COUNT_DEPENDENTS: &str = r#"SELECT
     (SELECT count(*) FROM "LiteLLM_TeamTable" WHERE "organization_id" = $1) AS "teams",
     (SELECT count(*) FROM "LiteLLM_VerificationToken" WHERE "organization_id" = $1) AS "keys",
     (SELECT count(*) FROM "LiteLLM_OrganizationMembership" WHERE "organization_id" = $1) AS "memberships""#;

/// An organization's cascade, in foreign-key order: teams, memberships and keys point at it.
const CASCADE: [&str; 4] = [
    r#"DELETE FROM "LiteLLM_TeamTable" WHERE "organization_id" = $1"#,
    r#"DELETE FROM "LiteLLM_OrganizationMembership" WHERE "organization_id" = $1"#,
    r#"DELETE FROM "LiteLLM_VerificationToken" WHERE "organization_id" = $1"#,
    r#"DELETE FROM "LiteLLM_OrganizationTable" WHERE "organization_id" = $1"#,
];

/// A `LiteLLM_OrganizationTable` row, limited to the columns the operator manages or mirrors.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OrganizationRow {
    pub organization_id: String,
    pub organization_alias: String,
    pub budget_id: String,
    pub models: Vec<String>,
    /// `metadata` as its JSON text (written back spliced, never re-encoded: see
    /// [`RawObject`]).
    pub metadata: String,
    pub spend: f64,
}

impl OrganizationRow {
    /// `metadata` decoded, for reading the marker of an earlier version (empty when it is
    /// not an object).
    pub fn metadata_map(&self) -> serde_json::Map<String, serde_json::Value> {
        match serde_json::from_str(&self.metadata) {
            Ok(serde_json::Value::Object(m)) => m,
            _ => serde_json::Map::new(),
        }
    }
}

fn from_row<D: Dialect>(row: &D::Row) -> Result<OrganizationRow, sqlx::Error> {
    Ok(OrganizationRow {
        organization_id: D::text(row, "organization_id")?,
        organization_alias: D::text(row, "organization_alias")?,
        budget_id: D::text(row, "budget_id")?,
        models: D::read_array(row, "models")?,
        metadata: D::text(row, "metadata")?,
        spend: D::float(row, "spend")?,
    })
}

pub(super) async fn get<D: Dialect>(
    conn: &mut D::Connection,
    organization_id: &str,
) -> Result<Option<OrganizationRow>, sqlx::Error> {
    fetch_one_as::<D, _>(
        conn,
        Stmt::new(SELECT_ORGANIZATION).bind(organization_id),
        from_row::<D>,
    )
    .await
}

pub(super) async fn exists<D: Dialect>(
    conn: &mut D::Connection,
    organization_id: &str,
) -> Result<bool, sqlx::Error> {
    let row = D::fetch_optional(conn, Stmt::new(ORGANIZATION_EXISTS).bind(organization_id)).await?;
    Ok(row.is_some())
}

fn metadata_arg(text: &str) -> Arg {
    Arg::Json(Some(budget::raw_json(text)))
}

/// A new organization, inserted only (see [`created`]).
pub(super) async fn create<D: Dialect>(
    conn: &mut D::Connection,
    o: &OrganizationRow,
    actor: &str,
) -> Result<Done, Failure> {
    let stmt = Stmt::new(INSERT_ORGANIZATION)
        .bind(&o.organization_id)
        .bind(&o.organization_alias)
        .bind(&o.budget_id)
        .bind(metadata_arg(&o.metadata))
        .bind(Arg::Array(o.models.clone()))
        .bind(now())
        .bind(actor);
    let done = D::execute(conn, stmt).await?;
    created(done, || format!("organization {}", o.organization_id))
}

/// The store's update strategy: lock the row, write only the managed columns that changed;
/// `metadata` is merged onto the row's text as it is under the lock ([`merge_metadata`]). A
/// row deleted in between is written as planned.
pub(super) async fn update<D: Dialect>(
    conn: &mut D::Connection,
    before: &OrganizationRow,
    after: &OrganizationRow,
    actor: &str,
) -> Result<(), Failure> {
    let id = &after.organization_id;
    lock::<D>(conn, Stmt::new(LOCK_ORGANIZATION).bind(id)).await?;
    let Some(row) = D::fetch_optional(conn, Stmt::new(SELECT_METADATA).bind(id)).await? else {
        return create::<D>(conn, after, actor).await.map(drop);
    };
    let metadata = merge_metadata(
        &D::text(&row, "metadata")?,
        &before.metadata,
        &after.metadata,
    );
    let changed = changed_columns(before, after);
    if changed.is_empty() {
        return Ok(());
    }
    let sets: Vec<String> = changed
        .iter()
        .enumerate()
        .map(|(i, column)| format!(r#""{column}" = ${}"#, i + 2))
        .collect();
    let n = changed.len() + 2;
    let sql = format!(
        r#"UPDATE "LiteLLM_OrganizationTable" SET {}, "updated_at" = ${n}, "updated_by" = ${} WHERE "organization_id" = $1"#,
        sets.join(", "),
        n + 1
    );
    let values = changed.iter().map(|column| match *column {
        "organization_alias" => Arg::from(&after.organization_alias),
        "budget_id" => Arg::from(&after.budget_id),
        "models" => Arg::Array(after.models.clone()),
        _ => metadata_arg(&metadata),
    });
    let stmt = Stmt::built(sql)
        .bind(id)
        .bind_all(values.collect::<Vec<_>>())
        .bind(now())
        .bind(actor);
    D::execute(conn, stmt).await?;
    Ok(())
}

/// An organization's cascade, in foreign-key order, with its own budget, the member budgets
/// the operator created for its memberships, and every ledger entry of its rows. Fails,
/// writing nothing, when it would remove more than the plan named.
pub(super) async fn delete<D: Dialect>(
    conn: &mut D::Connection,
    organization_id: &str,
    owned_budget_id: Option<&str>,
    planned: &Dependents,
    ledger: &LedgerSql,
) -> Result<Done, Failure> {
    // Hold the row first: a membership, team or key committed while the cascade runs would be
    // removed unnamed (or lose its budget row to nobody). Rows that point at it wait for the
    // lock (their foreign keys), so what is counted now is what the cascade removes.
    lock::<D>(conn, Stmt::new(LOCK_ORGANIZATION).bind(organization_id)).await?;
    let now = dependents::<D>(conn, organization_id).await?;
    if now.exceeds(planned) {
        return Err(Failure::Changed(format!(
            "organization {organization_id} has {now} now, more than the {planned} its delete named"
        )));
    }
    let member_budgets = ledger::created_member_budgets::<D>(conn, ledger, organization_id).await?;
    for sql in CASCADE {
        D::execute(conn, Stmt::new(sql).bind(organization_id)).await?;
    }
    for b in owned_budget_id
        .into_iter()
        .chain(member_budgets.iter().map(String::as_str))
    {
        budget::delete::<D>(conn, b).await?;
    }
    ledger::release_organization::<D>(conn, ledger, organization_id).await?;
    Ok(Done::Written)
}

pub(super) async fn dependents<D: Dialect>(
    conn: &mut D::Connection,
    organization_id: &str,
) -> Result<Dependents, sqlx::Error> {
    let row = D::fetch_optional(conn, Stmt::new(COUNT_DEPENDENTS).bind(organization_id))
        .await?
        .ok_or(sqlx::Error::RowNotFound)?;
    Ok(Dependents {
        teams: D::int8(&row, "teams")?,
        keys: D::int8(&row, "keys")?,
        memberships: D::int8(&row, "memberships")?,
    })
}

pub(super) async fn usage<D: Dialect>(
    conn: &mut D::Connection,
    organization_id: &str,
) -> Result<Option<OrganizationUsage>, sqlx::Error> {
    D::fetch_optional(conn, Stmt::new(USAGE).bind(organization_id))
        .await?
        .map(|r| {
            Ok(OrganizationUsage {
                spend: D::float(&r, "spend")?,
                max_budget: D::opt_float(&r, "max_budget")?,
                member_count: 0,
                soft_budget: D::opt_float(&r, "soft_budget")?,
                budget_reset_at: D::opt_time(&r, "budget_reset_at")?,
            })
        })
        .transpose()
}

/// Organizations carrying the ownership marker of an earlier version: `(id, owner)`.
pub(super) async fn marked<D: Dialect>(
    conn: &mut D::Connection,
) -> Result<Vec<(String, String)>, sqlx::Error> {
    let stmt = Stmt::new(D::OWNED_ORGANIZATIONS).bind(D::owner_argument().as_str());
    let mut marked = Vec::new();
    for r in D::fetch_all(conn, stmt).await? {
        if let Some(owner) = D::opt_text(&r, "owner")? {
            marked.push((D::text(&r, "organization_id")?, owner));
        }
    }
    Ok(marked)
}

fn summary<D: Dialect>(
    r: &D::Row,
    id: &str,
    owners: &std::collections::HashMap<String, Owner>,
) -> Result<OrganizationSummary, sqlx::Error> {
    let metadata = match D::json(r, "metadata")? {
        serde_json::Value::Object(m) => m,
        _ => serde_json::Map::new(),
    };
    let owner = owners
        .get(&organization_key(id))
        .cloned()
        .or_else(|| metadata_owner(&metadata).map(Owner::from_marker));
    Ok(OrganizationSummary {
        organization_id: id.to_string(),
        alias: D::text(r, "organization_alias")?,
        budget_id: D::text(r, "budget_id")?,
        max_budget: D::opt_float(r, "max_budget")?,
        spend: D::float(r, "spend")?,
        members: D::int8(r, "members")?,
        models: D::read_array(r, "models")?,
        owner,
    })
}

/// Every organization, `owners` naming the resource of each one the ledger holds.
pub(super) async fn list<D: Dialect>(
    conn: &mut D::Connection,
    owners: &std::collections::HashMap<String, Owner>,
) -> Result<Listing<OrganizationSummary>, sqlx::Error> {
    let rows = D::fetch_all(conn, Stmt::new(LIST_ORGANIZATIONS)).await?;
    Ok(Listing::read(&rows, |r| {
        let id = D::text(r, "organization_id").unwrap_or_else(|_| "<unreadable id>".into());
        (format!("organization {id}"), summary::<D>(r, &id, owners))
    }))
}

/// The managed columns an update changes, in the order it writes them: only these are
/// written, onto the row as it is (every table's update strategy, see `store::budget`).
pub fn changed_columns(before: &OrganizationRow, after: &OrganizationRow) -> Vec<&'static str> {
    let mut columns = Vec::new();
    if before.organization_alias != after.organization_alias {
        columns.push("organization_alias");
    }
    if before.budget_id != after.budget_id {
        columns.push("budget_id");
    }
    if before.models != after.models {
        columns.push("models");
    }
    if before.metadata != after.metadata {
        columns.push("metadata");
    }
    columns
}

/// The `metadata` text to write: `current` (as read under the row's lock) with the keys the
/// plan changed between `before` and `after` set or removed; every other key keeps its text.
/// When either is not an object, `after` as planned (or `current` when the plan changes
/// nothing there).
pub fn merge_metadata(current: &str, before: &str, after: &str) -> String {
    if before == after {
        return current.to_string();
    }
    match (
        RawObject::parse(current),
        RawObject::parse(before),
        RawObject::parse(after),
    ) {
        (Some(mut now), Some(before), Some(after)) => {
            for key in before.changed_keys(&after) {
                match after.raw(key).map(|r| RawValue::from_string(r.to_string())) {
                    Some(Ok(raw)) => now.set_raw(key, raw),
                    _ => now.remove(key),
                }
            }
            now.to_text()
        }
        _ => after.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_litellm_added_in_between_is_kept() {
        let before = r#"{"x": "1"}"#;
        let after = r#"{"x":"2"}"#;
        let now = r#"{"x": "1", "y": 1.50}"#;
        assert_eq!(merge_metadata(now, before, after), r#"{"x":"2","y":1.50}"#);
        assert_eq!(merge_metadata(now, before, before), now);
    }
}
