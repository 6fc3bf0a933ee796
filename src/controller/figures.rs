//! Figures that status, metrics and budget events mirror from LiteLLM beyond what the
//! reconcile wrote: an organization's soft budget and next reset time (read with its usage,
//! [`crate::store::Store::organization_usage`]), and a member's spend, budget, email and
//! organization alias ([`crate::store::Store::member_figures`]).

use chrono::{NaiveDateTime, SecondsFormat};

pub use crate::store::MemberFigures;
use crate::store::OrganizationUsage;

/// What an organization's budget row says beyond its max budget.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OrganizationBudget {
    /// `soft_budget`: LiteLLM's alerting threshold.
    pub soft_budget: Option<f64>,
    /// `budget_reset_at`: when LiteLLM's reset job next sets spend back to 0 (UTC).
    pub budget_reset_at: Option<NaiveDateTime>,
}

impl From<&OrganizationUsage> for OrganizationBudget {
    fn from(u: &OrganizationUsage) -> Self {
        Self {
            soft_budget: u.soft_budget,
            budget_reset_at: u.budget_reset_at,
        }
    }
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
        use crate::store::{AnyStore, SqliteStore, Store};
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
        let usage = store.organization_usage("o1").await.expect("read");
        assert_eq!(
            usage.as_ref().map(OrganizationBudget::from),
            Some(OrganizationBudget {
                soft_budget: Some(5.0),
                budget_reset_at: Some(reset),
            })
        );
        assert_eq!(
            store.member_figures("u1", "o1").await.expect("read"),
            Some(MemberFigures {
                spend: 1.5,
                max_budget: Some(2.0),
                user_email: Some("Dana@Example.com".into()),
                organization_alias: Some("Acme".into()),
            })
        );
        assert_eq!(store.organization_usage("o2").await.expect("read"), None);
        assert_eq!(store.member_figures("u1", "o2").await.expect("read"), None);
    }
}
