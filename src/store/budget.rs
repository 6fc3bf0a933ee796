//! `LiteLLM_BudgetTable`: its statements, built once from the inventory
//! ([`super::BUDGET_LIMITS`]), so a new limit column needs no edit here. Values are always
//! bound; identifiers come from the inventory or, for the whole-row copy, from the
//! database's own catalog (quoted).
//!
//! Updates follow the store's update strategy (see `store`): the row is locked, then only the
//! managed columns that differ are written.

use std::sync::LazyLock;

use chrono::NaiveDateTime;
use serde_json::value::RawValue;

use super::dialect::{Arg, Dialect, Stmt, fetch_one_as};
use super::sql::{Done, Failure, created, lock, now};
use super::{BUDGET_LIMITS, BudgetRow, Kind, Scalar};
use crate::duration::budget_reset_at;

/// JSON text as a raw value to bind (an empty object when it is not JSON, such as the
/// empty text of a row built in a test: the planner only ever produces JSON).
pub fn raw_json(text: &str) -> Box<RawValue> {
    RawValue::from_string(text.to_string())
        .unwrap_or_else(|_| RawValue::from_string("{}".into()).expect("{} is JSON"))
}

fn limit_bind(kind: Kind, value: Option<&Scalar>) -> Arg {
    match (kind, value) {
        (Kind::Float, v) => Arg::Float(v.and_then(Scalar::as_f64)),
        (Kind::Int4, Some(Scalar::Int(v))) => Arg::Int4(i32::try_from(*v).ok()),
        (Kind::Int4, _) => Arg::Int4(None),
        (Kind::Int8, Some(Scalar::Int(v))) => Arg::Int8(Some(*v)),
        (Kind::Int8, _) => Arg::Int8(None),
        (Kind::Text, Some(Scalar::Text(v))) => Arg::Text(Some(v.clone())),
        (Kind::Text, _) => Arg::Text(None),
    }
}

fn quote(identifier: &str) -> String {
    format!("\"{}\"", identifier.replace('"', "\"\""))
}

/// `ALTER TABLE … ADD COLUMN` of every limit of the inventory, for `migrate` on an empty
/// database (the DDL creates the other columns); `sql_type` spells a kind in the dialect.
pub fn add_limit_columns(sql_type: fn(Kind) -> &'static str) -> Vec<String> {
    BUDGET_LIMITS
        .iter()
        .map(|l| {
            format!(
                r#"ALTER TABLE "LiteLLM_BudgetTable" ADD COLUMN {} {}"#,
                quote(l.column),
                sql_type(l.kind)
            )
        })
        .collect()
}

/// `SELECT` of one budget row by id (`$1`): its id, every limit, `model_max_budget` as text
/// and `created_by`.
pub fn select() -> &'static str {
    static SQL: LazyLock<String> = LazyLock::new(|| {
        let limits: Vec<String> = BUDGET_LIMITS.iter().map(|l| quote(l.column)).collect();
        format!(
            r#"SELECT "budget_id", {}, CAST("model_max_budget" AS TEXT) AS "model_max_budget", "created_by" FROM "LiteLLM_BudgetTable" WHERE "budget_id" = $1"#,
            limits.join(", ")
        )
    });
    &SQL
}

/// `INSERT` of a new row: its limits, `model_max_budget`, the audit columns, and the first
/// `budget_reset_at` of its duration.
pub fn insert_sql(b: &BudgetRow, actor: &str, now: NaiveDateTime) -> (String, Vec<Arg>) {
    let mut columns = vec![quote("budget_id")];
    let mut values = vec![Arg::Text(Some(b.budget_id.clone()))];
    for limit in BUDGET_LIMITS {
        columns.push(quote(limit.column));
        values.push(limit_bind(limit.kind, b.limit(limit.column)));
    }
    columns.push(quote("model_max_budget"));
    values.push(Arg::Json(b.model_max_budget.as_deref().map(raw_json)));
    columns.push(quote("budget_reset_at"));
    values.push(Arg::Time(
        b.budget_duration().and_then(|d| budget_reset_at(d, now)),
    ));
    for (column, value) in [
        ("created_at", Arg::Time(Some(now))),
        ("created_by", Arg::Text(Some(actor.to_string()))),
        ("updated_at", Arg::Time(Some(now))),
        ("updated_by", Arg::Text(Some(actor.to_string()))),
    ] {
        columns.push(quote(column));
        values.push(value);
    }
    let placeholders: Vec<String> = (1..=values.len()).map(|i| format!("${i}")).collect();
    let sql = format!(
        r#"INSERT INTO "LiteLLM_BudgetTable" ({}) VALUES ({}) ON CONFLICT ("budget_id") DO NOTHING"#,
        columns.join(", "),
        placeholders.join(", ")
    );
    (sql, values)
}

/// `UPDATE` of the managed columns where `after` differs from `before` (and
/// `budget_reset_at` when the duration changes, as LiteLLM's `build_budget_write_data`
/// does), with `updated_at` / `updated_by`; `None` when nothing differs.
pub fn update_sql(
    before: &BudgetRow,
    after: &BudgetRow,
    actor: &str,
    now: NaiveDateTime,
) -> Option<(String, Vec<Arg>)> {
    let mut sets = Vec::new();
    let mut values = vec![Arg::Text(Some(after.budget_id.clone()))];
    let mut set = |column: &str, value: Arg, values: &mut Vec<Arg>| {
        values.push(value);
        sets.push(format!("{} = ${}", quote(column), values.len()));
    };
    for limit in BUDGET_LIMITS
        .iter()
        .filter(|l| before.limit(l.column) != after.limit(l.column))
    {
        set(
            limit.column,
            limit_bind(limit.kind, after.limit(limit.column)),
            &mut values,
        );
    }
    if before.model_max_budget != after.model_max_budget {
        set(
            "model_max_budget",
            Arg::Json(after.model_max_budget.as_deref().map(raw_json)),
            &mut values,
        );
    }
    if before.budget_duration() != after.budget_duration() {
        let reset = after
            .budget_duration()
            .and_then(|d| budget_reset_at(d, now));
        set("budget_reset_at", Arg::Time(reset), &mut values);
    }
    if values.len() == 1 {
        return None;
    }
    set("updated_at", Arg::Time(Some(now)), &mut values);
    set(
        "updated_by",
        Arg::Text(Some(actor.to_string())),
        &mut values,
    );
    let sql = format!(
        r#"UPDATE "LiteLLM_BudgetTable" SET {} WHERE "budget_id" = $1"#,
        sets.join(", ")
    );
    Some((sql, values))
}

/// `INSERT … SELECT` copying the row `$1` as `$2` with every column in `columns` (the
/// table's, from the catalog), the audit columns set to `$3` (time) and `$4` (actor).
pub fn copy_sql(columns: &[String]) -> String {
    let exprs: Vec<String> = columns
        .iter()
        .map(|c| match c.as_str() {
            "budget_id" => "$2".to_string(),
            "created_at" | "updated_at" => "$3".to_string(),
            "created_by" | "updated_by" => "$4".to_string(),
            other => quote(other),
        })
        .collect();
    let columns: Vec<String> = columns.iter().map(|c| quote(c)).collect();
    format!(
        r#"INSERT INTO "LiteLLM_BudgetTable" ({}) SELECT {} FROM "LiteLLM_BudgetTable" WHERE "budget_id" = $1 ON CONFLICT ("budget_id") DO NOTHING"#,
        columns.join(", "),
        exprs.join(", ")
    )
}

const LOCK_BUDGET: &str =
    r#"SELECT 1 FROM "LiteLLM_BudgetTable" WHERE "budget_id" = $1 FOR UPDATE"#;

const DELETE_BUDGET: &str = r#"DELETE FROM "LiteLLM_BudgetTable" WHERE "budget_id" = $1"#;

/// A budget row read with [`select`]: every limit of the inventory.
fn from_row<D: Dialect>(row: &D::Row) -> Result<BudgetRow, sqlx::Error> {
    let mut budget = BudgetRow::new(D::text(row, "budget_id")?, D::text(row, "created_by")?);
    for limit in BUDGET_LIMITS {
        let value = match limit.kind {
            Kind::Float => D::opt_float(row, limit.column)?.map(Scalar::Float),
            Kind::Int4 => D::opt_int4(row, limit.column)?.map(Scalar::from),
            Kind::Int8 => D::opt_int8(row, limit.column)?.map(Scalar::Int),
            Kind::Text => D::opt_text(row, limit.column)?.map(Scalar::Text),
        };
        budget.set(limit.column, value);
    }
    budget.model_max_budget = D::opt_text(row, "model_max_budget")?;
    Ok(budget)
}

pub(super) async fn get<D: Dialect>(
    conn: &mut D::Connection,
    budget_id: &str,
) -> Result<Option<BudgetRow>, sqlx::Error> {
    fetch_one_as::<D, _>(conn, Stmt::new(select()).bind(budget_id), from_row::<D>).await
}

/// A new budget row with the limits of `b`, inserted only (see [`created`]).
pub(super) async fn create<D: Dialect>(
    conn: &mut D::Connection,
    b: &BudgetRow,
    actor: &str,
) -> Result<Done, Failure> {
    let (sql, values) = insert_sql(b, actor, now());
    let done = D::execute(conn, Stmt::built(sql).bind_all(values)).await?;
    created(done, || format!("budget {}", b.budget_id))
}

/// The store's update strategy: lock the row, then write the managed columns where `after`
/// differs from `before`.
pub(super) async fn update<D: Dialect>(
    conn: &mut D::Connection,
    before: &BudgetRow,
    after: &BudgetRow,
    actor: &str,
) -> Result<(), sqlx::Error> {
    let Some((sql, values)) = update_sql(before, after, actor, now()) else {
        return Ok(());
    };
    lock::<D>(conn, Stmt::new(LOCK_BUDGET).bind(&after.budget_id)).await?;
    D::execute(conn, Stmt::built(sql).bind_all(values))
        .await
        .map(drop)
}

/// A whole copy of the budget row `source` as `after.budget_id`: every column the table has
/// (read from the catalog, so columns of later LiteLLM versions are copied too) and its reset
/// window, then the managed columns `after` changes. Like every create it inserts only (see
/// [`created`]).
pub(super) async fn copy<D: Dialect>(
    conn: &mut D::Connection,
    source: &BudgetRow,
    after: &BudgetRow,
    actor: &str,
) -> Result<Done, Failure> {
    let columns = D::fetch_all(conn, Stmt::new(D::COLUMNS_OF).bind("LiteLLM_BudgetTable"))
        .await?
        .iter()
        .map(|r| D::text(r, "name"))
        .collect::<Result<Vec<_>, _>>()?;
    let stmt = Stmt::built(copy_sql(&columns))
        .bind(&source.budget_id)
        .bind(&after.budget_id)
        .bind(now())
        .bind(actor);
    let done = D::execute(conn, stmt).await?;
    created(done, || format!("budget {}", after.budget_id))?;
    let copied = BudgetRow {
        budget_id: after.budget_id.clone(),
        ..source.clone()
    };
    update::<D>(conn, &copied, after, actor).await?;
    Ok(Done::Written)
}

pub(super) async fn delete<D: Dialect>(
    conn: &mut D::Connection,
    budget_id: &str,
) -> Result<(), sqlx::Error> {
    D::execute(conn, Stmt::new(DELETE_BUDGET).bind(budget_id))
        .await
        .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_update_writes_only_what_changed() {
        let now = chrono::DateTime::from_timestamp(0, 0)
            .expect("epoch")
            .naive_utc();
        let before = BudgetRow::new("b", "me").with("max_budget", Some(Scalar::Float(1.0)));
        assert!(update_sql(&before, &before, "me", now).is_none());
        let after = before.clone().with("tpm_limit", Some(Scalar::Int(5)));
        let (sql, values) = update_sql(&before, &after, "me", now).expect("a change");
        assert_eq!(
            sql,
            r#"UPDATE "LiteLLM_BudgetTable" SET "tpm_limit" = $2, "updated_at" = $3, "updated_by" = $4 WHERE "budget_id" = $1"#
        );
        assert_eq!(values.len(), 4);
        assert_eq!(
            copy_sql(&["budget_id".into(), "tpd_limit".into(), "created_by".into()]),
            r#"INSERT INTO "LiteLLM_BudgetTable" ("budget_id", "tpd_limit", "created_by") SELECT $2, "tpd_limit", $4 FROM "LiteLLM_BudgetTable" WHERE "budget_id" = $1 ON CONFLICT ("budget_id") DO NOTHING"#
        );
    }
}
