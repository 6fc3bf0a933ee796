//! `LiteLLM_OrganizationMembership`: its reads, its listing, and its writes (insert-only
//! create; update by the store's update strategy; delete).

use super::dialect::{Dialect, Stmt, fetch_all_as, fetch_one_as};
use super::sql::{Done, Failure, created, lock, now};
use super::{Listing, MemberFigures, MemberSummary, OwnedMembership, Owner, membership_key};

/// One membership by its key (`user_id`, `organization_id`).
pub const SELECT_MEMBERSHIP: &str = r#"SELECT "user_id", "organization_id", "user_role", "budget_id" FROM "LiteLLM_OrganizationMembership" WHERE "user_id" = $1 AND "organization_id" = $2"#;

/// Memberships on one budget row: a scan in LiteLLM's schema (no index on `budget_id`), only
/// off the steady-state path.
pub const MEMBERSHIPS_ON_BUDGET: &str = r#"SELECT "user_id", "organization_id", "user_role", "budget_id" FROM "LiteLLM_OrganizationMembership" WHERE "budget_id" = $1"#;

const LOCK_MEMBERSHIP: &str = r#"SELECT 1 FROM "LiteLLM_OrganizationMembership" WHERE "user_id" = $1 AND "organization_id" = $2 FOR UPDATE"#;

const INSERT_MEMBERSHIP: &str = r#"INSERT INTO "LiteLLM_OrganizationMembership"
     ("user_id", "organization_id", "user_role", "spend", "budget_id", "created_at", "updated_at")
   VALUES ($1, $2, $3, 0.0, $4, $5, $5)
   ON CONFLICT ("user_id", "organization_id") DO NOTHING"#;

const DELETE_MEMBERSHIP: &str = r#"DELETE FROM "LiteLLM_OrganizationMembership" WHERE "user_id" = $1 AND "organization_id" = $2"#;

/// Members per organization, in one scan (LiteLLM has no index on `organization_id` alone, so
/// a count per organization would scan once each).
const MEMBER_COUNTS: &str = r#"SELECT "organization_id", count(*) AS "members" FROM "LiteLLM_OrganizationMembership" GROUP BY "organization_id""#;

const OWNED_MEMBERSHIPS: &str = r#"SELECT m."user_id", m."organization_id", m."budget_id" FROM "LiteLLM_OrganizationMembership" m
   JOIN "LiteLLM_BudgetTable" b ON b."budget_id" = m."budget_id" WHERE b."created_by" = $1"#;

const LIST_MEMBERS: &str = r#"SELECT m."organization_id", o."organization_alias", m."user_id", u."user_email", m."user_role", m."budget_id",
          b."max_budget", COALESCE(m."spend", 0.0) AS "spend"
   FROM "LiteLLM_OrganizationMembership" m
   JOIN "LiteLLM_OrganizationTable" o ON o."organization_id" = m."organization_id"
   LEFT JOIN "LiteLLM_UserTable" u ON u."user_id" = m."user_id"
   LEFT JOIN "LiteLLM_BudgetTable" b ON b."budget_id" = m."budget_id"
   ORDER BY o."organization_alias", u."user_email", m."user_id""#;

/// A membership's figures for status and metrics: by LiteLLM's unique
/// `(user_id, organization_id)` index, then primary keys.
pub const MEMBER_FIGURES: &str = r#"SELECT m."spend", b."max_budget", u."user_email", o."organization_alias"
   FROM "LiteLLM_OrganizationMembership" m
   LEFT JOIN "LiteLLM_BudgetTable" b ON b."budget_id" = m."budget_id"
   LEFT JOIN "LiteLLM_UserTable" u ON u."user_id" = m."user_id"
   LEFT JOIN "LiteLLM_OrganizationTable" o ON o."organization_id" = m."organization_id"
   WHERE m."user_id" = $1 AND m."organization_id" = $2"#;

/// A `LiteLLM_OrganizationMembership` row.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MembershipRow {
    pub user_id: String,
    pub organization_id: String,
    pub user_role: Option<String>,
    pub budget_id: Option<String>,
}

fn from_row<D: Dialect>(row: &D::Row) -> Result<MembershipRow, sqlx::Error> {
    Ok(MembershipRow {
        user_id: D::text(row, "user_id")?,
        organization_id: D::text(row, "organization_id")?,
        user_role: D::opt_text(row, "user_role")?,
        budget_id: D::opt_text(row, "budget_id")?,
    })
}

pub(super) async fn get<D: Dialect>(
    conn: &mut D::Connection,
    user_id: &str,
    organization_id: &str,
) -> Result<Option<MembershipRow>, sqlx::Error> {
    let stmt = Stmt::new(SELECT_MEMBERSHIP)
        .bind(user_id)
        .bind(organization_id);
    fetch_one_as::<D, _>(conn, stmt, from_row::<D>).await
}

pub(super) async fn on_budget<D: Dialect>(
    conn: &mut D::Connection,
    budget_id: &str,
) -> Result<Vec<MembershipRow>, sqlx::Error> {
    fetch_all_as::<D, _>(
        conn,
        Stmt::new(MEMBERSHIPS_ON_BUDGET).bind(budget_id),
        from_row::<D>,
    )
    .await
}

fn insert(m: &MembershipRow) -> Stmt {
    Stmt::new(INSERT_MEMBERSHIP)
        .bind(&m.user_id)
        .bind(&m.organization_id)
        .bind(&m.user_role)
        .bind(&m.budget_id)
        .bind(now())
}

/// A new membership, inserted only (see [`created`]).
pub(super) async fn create<D: Dialect>(
    conn: &mut D::Connection,
    m: &MembershipRow,
) -> Result<Done, Failure> {
    let done = D::execute(conn, insert(m)).await?;
    created(done, || {
        format!(
            "membership of user {} in organization {}",
            m.user_id, m.organization_id
        )
    })
}

/// The managed columns an update changes (`user_role`, `budget_id`), with their values.
fn changed_columns(
    before: &MembershipRow,
    after: &MembershipRow,
) -> Vec<(&'static str, Option<String>)> {
    let mut columns = Vec::new();
    if before.user_role != after.user_role {
        columns.push(("user_role", after.user_role.clone()));
    }
    if before.budget_id != after.budget_id {
        columns.push(("budget_id", after.budget_id.clone()));
    }
    columns
}

/// The store's update strategy: lock the row, write only the managed columns that changed;
/// a row deleted in between is written as planned.
pub(super) async fn update<D: Dialect>(
    conn: &mut D::Connection,
    before: &MembershipRow,
    after: &MembershipRow,
) -> Result<(), sqlx::Error> {
    let key = Stmt::new(LOCK_MEMBERSHIP)
        .bind(&after.user_id)
        .bind(&after.organization_id);
    lock::<D>(conn, key).await?;
    let changed = changed_columns(before, after);
    if changed.is_empty() {
        return Ok(());
    }
    let sets: Vec<String> = changed
        .iter()
        .enumerate()
        .map(|(i, (column, _))| format!(r#""{column}" = ${}"#, i + 3))
        .collect();
    let sql = format!(
        r#"UPDATE "LiteLLM_OrganizationMembership" SET {}, "updated_at" = ${} WHERE "user_id" = $1 AND "organization_id" = $2"#,
        sets.join(", "),
        changed.len() + 3
    );
    let stmt = Stmt::built(sql)
        .bind(&after.user_id)
        .bind(&after.organization_id)
        .bind_all(changed.into_iter().map(|(_, v)| v.as_deref().into()))
        .bind(now());
    if D::execute(conn, stmt).await? == 0 {
        D::execute(conn, insert(after)).await?;
    }
    Ok(())
}

pub(super) async fn delete<D: Dialect>(
    conn: &mut D::Connection,
    user_id: &str,
    organization_id: &str,
) -> Result<(), sqlx::Error> {
    let stmt = Stmt::new(DELETE_MEMBERSHIP)
        .bind(user_id)
        .bind(organization_id);
    D::execute(conn, stmt).await.map(drop)
}

pub(super) async fn counts<D: Dialect>(
    conn: &mut D::Connection,
) -> Result<std::collections::HashMap<String, i64>, sqlx::Error> {
    let counts = fetch_all_as::<D, _>(conn, Stmt::new(MEMBER_COUNTS), |r| {
        Ok((D::text(r, "organization_id")?, D::int8(r, "members")?))
    })
    .await?;
    Ok(counts.into_iter().collect())
}

/// Memberships whose budget row `actor` created.
pub(super) async fn owned<D: Dialect>(
    conn: &mut D::Connection,
    actor: &str,
) -> Result<Vec<OwnedMembership>, sqlx::Error> {
    D::fetch_all(conn, Stmt::new(OWNED_MEMBERSHIPS).bind(actor))
        .await?
        .iter()
        .map(|r| {
            Ok(OwnedMembership {
                user_id: D::text(r, "user_id")?,
                organization_id: D::text(r, "organization_id")?,
                budget_id: D::text(r, "budget_id")?,
            })
        })
        .collect()
}

fn summary<D: Dialect>(r: &D::Row, owner: Option<Owner>) -> Result<MemberSummary, sqlx::Error> {
    Ok(MemberSummary {
        owner,
        organization_id: D::text(r, "organization_id")?,
        organization_alias: D::text(r, "organization_alias")?,
        user_id: D::text(r, "user_id")?,
        user_email: D::opt_text(r, "user_email")?,
        role: D::opt_text(r, "user_role")?,
        budget_id: D::opt_text(r, "budget_id")?,
        max_budget_in_organization: D::opt_float(r, "max_budget")?,
        spend: D::float(r, "spend")?,
    })
}

/// Every membership, `owners` naming the resource of each one the ledger holds.
pub(super) async fn list<D: Dialect>(
    conn: &mut D::Connection,
    owners: &std::collections::HashMap<String, Owner>,
) -> Result<Listing<MemberSummary>, sqlx::Error> {
    let rows = D::fetch_all(conn, Stmt::new(LIST_MEMBERS)).await?;
    Ok(Listing::read(&rows, |r| {
        let organization_id =
            D::text(r, "organization_id").unwrap_or_else(|_| "<unreadable id>".into());
        let user_id = D::text(r, "user_id").unwrap_or_else(|_| "<unreadable id>".into());
        let owner = owners
            .get(&membership_key(&organization_id, &user_id))
            .cloned();
        (
            format!("membership of user {user_id} in organization {organization_id}"),
            summary::<D>(r, owner),
        )
    }))
}

pub(super) async fn figures<D: Dialect>(
    conn: &mut D::Connection,
    user_id: &str,
    organization_id: &str,
) -> Result<Option<MemberFigures>, sqlx::Error> {
    let stmt = Stmt::new(MEMBER_FIGURES)
        .bind(user_id)
        .bind(organization_id);
    fetch_one_as::<D, _>(conn, stmt, |r| {
        Ok(MemberFigures {
            spend: D::opt_float(r, "spend")?.unwrap_or(0.0),
            max_budget: D::opt_float(r, "max_budget")?,
            user_email: D::opt_text(r, "user_email")?,
            organization_alias: D::opt_text(r, "organization_alias")?,
        })
    })
    .await
}
