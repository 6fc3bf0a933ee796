//! Figures that status, metrics and budget events mirror from LiteLLM and that the store's
//! reads do not return: an organization's soft budget and next reset time, and a member's
//! spend, budget, email and organization alias. One primary-key read each, after the
//! reconcile wrote what it had to.
//!
//! These reads belong with the store's other reads (as `Store` calls); they live here, each
//! one query with bound parameters on the store's own pool, until the store offers them.

use chrono::{NaiveDateTime, SecondsFormat};

use crate::error::{EngineError, StoreError};
use crate::store::AnyStore;

/// What an organization's budget row says beyond its max budget.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OrganizationBudget {
    /// `soft_budget`: LiteLLM's alerting threshold.
    pub soft_budget: Option<f64>,
    /// `budget_reset_at`: when LiteLLM's reset job next sets spend back to 0 (UTC).
    pub budget_reset_at: Option<NaiveDateTime>,
}

/// What a membership's rows say, for the member's status and metrics.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MemberFigures {
    /// The membership's `spend` (LiteLLM adds each request's cost to it).
    pub spend: f64,
    /// `max_budget` of the membership's budget row.
    pub max_budget: Option<f64>,
    /// The user's `user_email` as LiteLLM holds it now.
    pub user_email: Option<String>,
    /// The organization's `organization_alias`.
    pub organization_alias: Option<String>,
}

/// The soft budget and reset time of an organization's budget row (by primary keys).
pub const ORGANIZATION_BUDGET: &str = r#"SELECT b."soft_budget", b."budget_reset_at"
    FROM "LiteLLM_OrganizationTable" o JOIN "LiteLLM_BudgetTable" b ON b."budget_id" = o."budget_id"
    WHERE o."organization_id" = $1"#;

/// A membership's figures (by LiteLLM's unique `(user_id, organization_id)` index, then
/// primary keys).
pub const MEMBER_FIGURES: &str = r#"SELECT m."spend", b."max_budget", u."user_email", o."organization_alias"
    FROM "LiteLLM_OrganizationMembership" m
    LEFT JOIN "LiteLLM_BudgetTable" b ON b."budget_id" = m."budget_id"
    LEFT JOIN "LiteLLM_UserTable" u ON u."user_id" = m."user_id"
    LEFT JOIN "LiteLLM_OrganizationTable" o ON o."organization_id" = m."organization_id"
    WHERE m."user_id" = $1 AND m."organization_id" = $2"#;

/// `query_as(sql)` with these bound values on whichever pool the store holds: one row or none.
macro_rules! fetch_optional {
    ($store:expr, $sql:expr, $($bind:expr),+) => {
        match $store {
            AnyStore::Postgres(p) => {
                sqlx::query_as($sql)$(.bind($bind))+.fetch_optional(p.pool()).await
            }
            AnyStore::Sqlite(s) => {
                sqlx::query_as($sql)$(.bind($bind))+.fetch_optional(s.pool()).await
            }
        }
    };
}

type MemberRow = (Option<f64>, Option<f64>, Option<String>, Option<String>);

fn store_error(err: sqlx::Error, store: &AnyStore) -> EngineError {
    let err = StoreError::from_sqlx(err);
    EngineError::Store(match store {
        AnyStore::Postgres(p) => err.at(p.address()),
        AnyStore::Sqlite(_) => err,
    })
}

/// The soft budget and reset time of the budget row `organization_id` points at (`None`:
/// the organization or its budget row is gone).
pub async fn organization_budget(
    store: &AnyStore,
    organization_id: &str,
) -> Result<Option<OrganizationBudget>, EngineError> {
    let row: Option<(Option<f64>, Option<NaiveDateTime>)> =
        fetch_optional!(store, ORGANIZATION_BUDGET, organization_id)
            .map_err(|e| store_error(e, store))?;
    Ok(
        row.map(|(soft_budget, budget_reset_at)| OrganizationBudget {
            soft_budget,
            budget_reset_at,
        }),
    )
}

/// The figures of `user_id`'s membership in `organization_id` (`None`: no such membership).
pub async fn member_figures(
    store: &AnyStore,
    user_id: &str,
    organization_id: &str,
) -> Result<Option<MemberFigures>, EngineError> {
    let row: Option<MemberRow> = fetch_optional!(store, MEMBER_FIGURES, user_id, organization_id)
        .map_err(|e| store_error(e, store))?;
    Ok(row.map(
        |(spend, max_budget, user_email, organization_alias)| MemberFigures {
            spend: spend.unwrap_or(0.0),
            max_budget,
            user_email,
            organization_alias,
        },
    ))
}

/// A reset time as status writes it: RFC 3339 in UTC, to the second.
pub fn rfc3339(at: NaiveDateTime) -> String {
    at.and_utc().to_rfc3339_opts(SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_times_read_as_utc() {
        let at = chrono::NaiveDate::from_ymd_opt(2026, 12, 5)
            .and_then(|d| d.and_hms_milli_opt(0, 0, 0, 250))
            .expect("a date");
        assert_eq!(rfc3339(at), "2026-12-05T00:00:00Z");
    }

    /// The same reads on the SQLite schema (timestamps as text), with the values bound the
    /// way the store writes them. (PostgreSQL: tests/operator.rs.)
    #[tokio::test]
    async fn figures_read_on_sqlite() {
        use crate::store::{SqliteStore, Store};
        let dir = tempfile::tempdir().expect("tempdir");
        let url = secrecy::SecretString::from(format!(
            "sqlite://{}",
            dir.path().join("figures.db").display()
        ));
        let store = AnyStore::Sqlite(SqliteStore::connect(&url).await.expect("open"));
        store.migrate().await.expect("migrate");
        let AnyStore::Sqlite(sqlite) = &store else {
            unreachable!("a SQLite store")
        };
        let reset = chrono::NaiveDate::from_ymd_opt(2027, 1, 1)
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .expect("a date");
        let statements: [(&str, &[&str]); 4] = [
            (
                r#"INSERT INTO "LiteLLM_BudgetTable" ("budget_id", "max_budget", "created_by", "updated_by") VALUES ($1, 2, 'x', 'x')"#,
                &["b-member"],
            ),
            (
                r#"INSERT INTO "LiteLLM_OrganizationTable" ("organization_id", "organization_alias", "budget_id", "created_by", "updated_by") VALUES ($1, 'Acme', 'b-org', 'x', 'x')"#,
                &["o1"],
            ),
            (
                r#"INSERT INTO "LiteLLM_UserTable" ("user_id", "user_email") VALUES ($1, 'Dana@Example.com')"#,
                &["u1"],
            ),
            (
                r#"INSERT INTO "LiteLLM_OrganizationMembership" ("user_id", "organization_id", "spend", "budget_id") VALUES ($1, 'o1', 1.5, 'b-member')"#,
                &["u1"],
            ),
        ];
        sqlx::query(r#"INSERT INTO "LiteLLM_BudgetTable" ("budget_id", "soft_budget", "max_budget", "budget_reset_at", "created_by", "updated_by") VALUES ('b-org', 5, 10, $1, 'x', 'x')"#)
            .bind(reset)
            .execute(sqlite.pool())
            .await
            .expect("budget");
        for (sql, binds) in statements {
            let mut q = sqlx::query(sql);
            for b in binds {
                q = q.bind(*b);
            }
            q.execute(sqlite.pool()).await.expect(sql);
        }
        assert_eq!(
            organization_budget(&store, "o1").await.expect("read"),
            Some(OrganizationBudget {
                soft_budget: Some(5.0),
                budget_reset_at: Some(reset),
            })
        );
        assert_eq!(
            member_figures(&store, "u1", "o1").await.expect("read"),
            Some(MemberFigures {
                spend: 1.5,
                max_budget: Some(2.0),
                user_email: Some("Dana@Example.com".into()),
                organization_alias: Some("Acme".into()),
            })
        );
        assert_eq!(organization_budget(&store, "o2").await.expect("read"), None);
        assert_eq!(
            member_figures(&store, "u1", "o2").await.expect("read"),
            None
        );
    }
}
