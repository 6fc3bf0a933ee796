//! `LiteLLM_BudgetTable`: its statements, built once from the inventory
//! ([`super::BUDGET_LIMITS`]), so a new limit column needs no edit here. Values are always
//! bound; identifiers come from the inventory or, for the whole-row copy, from the
//! database's own catalog (quoted).
//!
//! The update strategy, the same for every table the operator writes: the plan carries the
//! row as it was read and the row as it should be; only the managed columns that differ are
//! written, onto the row as it is now, so a column LiteLLM changed in between is kept.

use std::sync::LazyLock;

use chrono::NaiveDateTime;
use serde_json::value::RawValue;

use super::{BUDGET_LIMITS, BudgetRow, Kind, Scalar};
use crate::duration::budget_reset_at;

/// One bound value of a statement built here (NULL as `None`).
#[derive(Debug)]
pub enum Bind {
    Float(Option<f64>),
    Int4(Option<i32>),
    Int8(Option<i64>),
    Text(Option<String>),
    Time(Option<NaiveDateTime>),
    Json(Option<Box<RawValue>>),
}

/// JSON text as a raw value to bind (an empty object when it is not JSON, such as the
/// empty text of a row built in a test: the planner only ever produces JSON).
pub fn raw_json(text: &str) -> Box<RawValue> {
    RawValue::from_string(text.to_string())
        .unwrap_or_else(|_| RawValue::from_string("{}".into()).expect("{} is JSON"))
}

fn limit_bind(kind: Kind, value: Option<&Scalar>) -> Bind {
    match (kind, value) {
        (Kind::Float, v) => Bind::Float(v.and_then(Scalar::as_f64)),
        (Kind::Int4, Some(Scalar::Int(v))) => Bind::Int4(i32::try_from(*v).ok()),
        (Kind::Int4, _) => Bind::Int4(None),
        (Kind::Int8, Some(Scalar::Int(v))) => Bind::Int8(Some(*v)),
        (Kind::Int8, _) => Bind::Int8(None),
        (Kind::Text, Some(Scalar::Text(v))) => Bind::Text(Some(v.clone())),
        (Kind::Text, _) => Bind::Text(None),
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
pub fn insert(b: &BudgetRow, actor: &str, now: NaiveDateTime) -> (String, Vec<Bind>) {
    let mut columns = vec![quote("budget_id")];
    let mut values = vec![Bind::Text(Some(b.budget_id.clone()))];
    for limit in BUDGET_LIMITS {
        columns.push(quote(limit.column));
        values.push(limit_bind(limit.kind, b.limit(limit.column)));
    }
    columns.push(quote("model_max_budget"));
    values.push(Bind::Json(b.model_max_budget.as_deref().map(raw_json)));
    columns.push(quote("budget_reset_at"));
    values.push(Bind::Time(
        b.budget_duration().and_then(|d| budget_reset_at(d, now)),
    ));
    for (column, value) in [
        ("created_at", Bind::Time(Some(now))),
        ("created_by", Bind::Text(Some(actor.to_string()))),
        ("updated_at", Bind::Time(Some(now))),
        ("updated_by", Bind::Text(Some(actor.to_string()))),
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
pub fn update(
    before: &BudgetRow,
    after: &BudgetRow,
    actor: &str,
    now: NaiveDateTime,
) -> Option<(String, Vec<Bind>)> {
    let mut sets = Vec::new();
    let mut values = vec![Bind::Text(Some(after.budget_id.clone()))];
    let mut set = |column: &str, value: Bind, values: &mut Vec<Bind>| {
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
            Bind::Json(after.model_max_budget.as_deref().map(raw_json)),
            &mut values,
        );
    }
    if before.budget_duration() != after.budget_duration() {
        let reset = after
            .budget_duration()
            .and_then(|d| budget_reset_at(d, now));
        set("budget_reset_at", Bind::Time(reset), &mut values);
    }
    if values.len() == 1 {
        return None;
    }
    set("updated_at", Bind::Time(Some(now)), &mut values);
    set(
        "updated_by",
        Bind::Text(Some(actor.to_string())),
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
pub fn copy(columns: &[String]) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_update_writes_only_what_changed() {
        let now = chrono::DateTime::from_timestamp(0, 0)
            .expect("epoch")
            .naive_utc();
        let before = BudgetRow::new("b", "me").with("max_budget", Some(Scalar::Float(1.0)));
        assert!(update(&before, &before, "me", now).is_none());
        let after = before.clone().with("tpm_limit", Some(Scalar::Int(5)));
        let (sql, values) = update(&before, &after, "me", now).expect("a change");
        assert_eq!(
            sql,
            r#"UPDATE "LiteLLM_BudgetTable" SET "tpm_limit" = $2, "updated_at" = $3, "updated_by" = $4 WHERE "budget_id" = $1"#
        );
        assert_eq!(values.len(), 4);
        assert_eq!(
            copy(&["budget_id".into(), "tpd_limit".into(), "created_by".into()]),
            r#"INSERT INTO "LiteLLM_BudgetTable" ("budget_id", "tpd_limit", "created_by") SELECT $2, "tpd_limit", $4 FROM "LiteLLM_BudgetTable" WHERE "budget_id" = $1 ON CONFLICT ("budget_id") DO NOTHING"#
        );
    }
}
