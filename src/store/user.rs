//! `LiteLLM_UserTable`: the member lookup's reads, and the insert of a new internal user.
//! Users are only ever created (with LiteLLM's new-internal-user defaults), never updated or
//! deleted, so this table has no update (see the update strategy in `store`).
//!
//! The store reads the candidates a member's user is chosen from (by id, by email, the user
//! the resource already holds); which one is the member's user is the engine's rule, passed in
//! as a [`UserRule`].

use super::dialect::{Arg, Dialect, Stmt, fetch_all_as, fetch_one_as};
use super::sql::{Done, now};
use super::{LedgerEntry, MemberLookup, NewUserDefaults, ObservedMember};
use crate::duration::budget_reset_at;

/// How many users with one email a member lookup reads (the rest are not needed to know the
/// email is ambiguous).
pub const EMAIL_MATCHES_READ: usize = 10;

pub const SELECT_USER_BY_ID: &str =
    r#"SELECT "user_id", "user_email" FROM "LiteLLM_UserTable" WHERE "user_id" = $1"#;

// The match is materialised before it is ordered: with `ORDER BY "user_id" LIMIT 10` on the
// bare table, a planner without statistics may walk the primary key in order and filter every
// row (a full walk when the email is new), instead of using LiteLLM's index on
// lower("user_email"). The fence leaves it only the index or a scan of the table. The limit is
// [`EMAIL_MATCHES_READ`].
pub const SELECT_USERS_BY_EMAIL: &str = r#"WITH "matches" AS MATERIALIZED (SELECT "user_id", "user_email" FROM "LiteLLM_UserTable" WHERE lower("user_email") = lower($1)) SELECT "user_id", "user_email" FROM "matches" ORDER BY "user_id" LIMIT 10"#;

/// A new internal user; with a budget duration, its first `budget_reset_at` too (`$9`).
const INSERT_USER: &str = r#"INSERT INTO "LiteLLM_UserTable"
     ("user_id", "user_email", "user_role", "models", "teams", "metadata", "spend", "max_budget", "budget_duration", "created_at", "updated_at", "budget_reset_at")
   VALUES ($1, $2, 'internal_user', $3, $4, $5, 0.0, $6, $7, $8, $8, $9)
   ON CONFLICT ("user_id") DO NOTHING"#;

/// [`INSERT_USER`] without a reset time: the column keeps LiteLLM's default.
const INSERT_USER_WITHOUT_RESET: &str = r#"INSERT INTO "LiteLLM_UserTable"
     ("user_id", "user_email", "user_role", "models", "teams", "metadata", "spend", "max_budget", "budget_duration", "created_at", "updated_at")
   VALUES ($1, $2, 'internal_user', $3, $4, $5, 0.0, $6, $7, $8, $8)
   ON CONFLICT ("user_id") DO NOTHING"#;

/// A `LiteLLM_UserTable` row, limited to what the member lookup needs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct UserRow {
    pub user_id: String,
    pub user_email: Option<String>,
}

/// The engine's rule for a member's user (`engine::users`), applied by the store to know
/// which membership to read.
#[derive(Clone, Copy)]
pub struct UserRule {
    /// The user this resource already holds a membership for in the lookup's organization,
    /// from its ledger entries.
    pub held: for<'e> fn(&'e [LedgerEntry], &MemberLookup<'_>) -> Option<&'e str>,
    /// The user the member resolves to, among the candidates read.
    pub resolve: for<'o> fn(&'o ObservedMember) -> Option<&'o UserRow>,
}

impl std::fmt::Debug for UserRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UserRule")
    }
}

fn from_row<D: Dialect>(row: &D::Row) -> Result<UserRow, sqlx::Error> {
    Ok(UserRow {
        user_id: D::text(row, "user_id")?,
        user_email: D::opt_text(row, "user_email")?,
    })
}

pub(super) async fn by_id<D: Dialect>(
    conn: &mut D::Connection,
    user_id: &str,
) -> Result<Option<UserRow>, sqlx::Error> {
    fetch_one_as::<D, _>(
        conn,
        Stmt::new(SELECT_USER_BY_ID).bind(user_id),
        from_row::<D>,
    )
    .await
}

pub(super) async fn by_email<D: Dialect>(
    conn: &mut D::Connection,
    email: &str,
) -> Result<Vec<UserRow>, sqlx::Error> {
    fetch_all_as::<D, _>(
        conn,
        Stmt::new(SELECT_USERS_BY_EMAIL).bind(email),
        from_row::<D>,
    )
    .await
}

/// Read the candidates of a member's user into `observed`: by id; else by email; and the
/// user the resource already holds (`rule.held`), whatever its email is now.
pub(super) async fn read_candidates<D: Dialect>(
    conn: &mut D::Connection,
    observed: &mut ObservedMember,
    target: &MemberLookup<'_>,
    rule: &UserRule,
) -> Result<(), sqlx::Error> {
    if let Some(id) = target.user_id {
        observed.user_by_id = by_id::<D>(conn, id).await?;
    }
    if observed.user_by_id.is_some() {
        return Ok(());
    }
    if let Some(email) = target.email {
        observed.users_by_email = by_email::<D>(conn, email).await?;
    }
    if let Some(held) = (rule.held)(&observed.own_entries, target) {
        observed.held_user = match observed.users_by_email.iter().find(|u| u.user_id == held) {
            Some(u) => Some(u.clone()),
            None => by_id::<D>(conn, held).await?,
        };
    }
    Ok(())
}

/// A user with LiteLLM's new-internal-user defaults: role `internal_user`; `models`,
/// `max_budget` and `budget_duration` as the proxy is configured (none by default); a budget
/// with a duration gets `budget_reset_at`, which LiteLLM's reset job selects on. One already
/// there (another writer created it since the plan read) is left as it is.
pub(super) async fn create<D: Dialect>(
    conn: &mut D::Connection,
    user_id: &str,
    email: Option<&str>,
    defaults: &NewUserDefaults,
) -> Result<Done, sqlx::Error> {
    let now = now();
    let reset_at = defaults
        .budget_duration
        .as_deref()
        .and_then(|d| budget_reset_at(d, now));
    let sql = if reset_at.is_some() {
        INSERT_USER
    } else {
        INSERT_USER_WITHOUT_RESET
    };
    let mut stmt = Stmt::new(sql)
        .bind(user_id)
        .bind(email)
        .bind(Arg::Array(defaults.models.clone()))
        .bind(Arg::Array(Vec::new()))
        .bind(&serde_json::json!({}))
        .bind(defaults.max_budget)
        .bind(&defaults.budget_duration)
        .bind(now);
    if let Some(at) = reset_at {
        stmt = stmt.bind(at);
    }
    Ok(match D::execute(conn, stmt).await? {
        0 => Done::AlreadyThere,
        _ => Done::Written,
    })
}
