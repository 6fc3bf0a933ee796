//! The store over either database: [`SqlStore`], generic over its [`Dialect`], reads through
//! the table modules (`budget`, `organization`, `membership`, `user`, `ledger`) and applies a
//! plan's changes in one transaction, in the order the plan gives them (the engine's
//! `plan::Step`: claims, rows in foreign-key order, releases).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use chrono::{NaiveDateTime, Utc};

use super::dialect::{Dialect, Stmt};
use super::ledger::{self, LedgerSql};
use super::schema::{self, SchemaState};
use super::{
    Applied, Change, Dependents, LedgerEntry, Listing, MemberFigures, MemberLookup, MemberSummary,
    ObservedMember, ObservedOrganization, OrganizationSummary, OrganizationUsage, OwnedMembership,
    Owner, Store, UnreadableRow, budget, budget_key, membership, membership_key, organization,
    organization_key, user,
};
use crate::error::StoreError;

/// A pool of connections to one database, with the ledger's statements.
pub struct SqlStore<D: Dialect> {
    pub(super) pool: sqlx::Pool<D>,
    /// The ledger's statements (see `store::ledger`).
    pub(super) ledger: Arc<LedgerSql>,
    /// Whether the ledger table is known to exist (reads of a missing ledger are empty).
    pub(super) ledger_ready: Arc<AtomicBool>,
    /// `HOST:PORT` of the server (PostgreSQL), for messages about its connections.
    pub(super) address: Arc<str>,
}

impl<D: Dialect> Clone for SqlStore<D> {
    fn clone(&self) -> Self {
        Self {
            pool: self.pool.clone(),
            ledger: self.ledger.clone(),
            ledger_ready: self.ledger_ready.clone(),
            address: self.address.clone(),
        }
    }
}

impl<D: Dialect> SqlStore<D> {
    pub(super) fn with_pool(pool: sqlx::Pool<D>, ledger: LedgerSql, address: Arc<str>) -> Self {
        Self {
            pool,
            ledger: Arc::new(ledger),
            ledger_ready: Default::default(),
            address,
        }
    }

    pub fn pool(&self) -> &sqlx::Pool<D> {
        &self.pool
    }
}

pub(super) fn now() -> NaiveDateTime {
    Utc::now().naive_utc()
}

/// What one change did.
pub(super) enum Done {
    Written,
    /// A user to create was already there (another writer created it since the plan read):
    /// the plan's intent holds, nothing was written.
    AlreadyThere,
}

/// Why one change failed.
pub(super) enum Failure {
    Sql(sqlx::Error),
    /// A row to create exists: another writer created it since the plan read.
    Stale(String),
    /// What a delete removes grew since the plan read it.
    Changed(String),
}

impl From<sqlx::Error> for Failure {
    fn from(e: sqlx::Error) -> Self {
        Self::Sql(e)
    }
}

impl From<Failure> for StoreError {
    fn from(f: Failure) -> Self {
        match f {
            Failure::Sql(e) => StoreError::from_sqlx(e),
            Failure::Stale(row) => StoreError::Stale(row),
            Failure::Changed(what) => StoreError::Changed(what),
        }
    }
}

/// A create inserts only: a row that is there already (`rows == 0`) was created by another
/// writer since the plan read the database, and writing the plan over it would overwrite
/// that writer's values with ones read before they existed.
pub(super) fn created(rows: u64, row: impl FnOnce() -> String) -> Result<Done, Failure> {
    if rows == 0 {
        Err(Failure::Stale(row()))
    } else {
        Ok(Done::Written)
    }
}

/// Step 1 of the update strategy: hold the row (`lock`, its table's `SELECT … FOR UPDATE`)
/// for the rest of the transaction. SQLite serialises writers, so a write transaction holds
/// every row already and runs no statement.
pub(super) async fn lock<D: Dialect>(
    conn: &mut D::Connection,
    lock: Stmt,
) -> Result<(), sqlx::Error> {
    if D::ROW_LOCKS {
        D::execute(conn, lock).await?;
    }
    Ok(())
}

impl<T> Listing<T> {
    /// A listing read row by row: a row that does not decode is reported by the name `read`
    /// gives it, and the others are still read.
    pub(super) fn read<R>(
        rows: &[R],
        read: impl Fn(&R) -> (String, Result<T, sqlx::Error>),
    ) -> Self {
        let mut listing = Listing {
            rows: Vec::with_capacity(rows.len()),
            unreadable: Vec::new(),
        };
        for r in rows {
            match read(r) {
                (_, Ok(row)) => listing.rows.push(row),
                (row, Err(e)) => listing.unreadable.push(UnreadableRow {
                    row,
                    reason: e.to_string(),
                }),
            }
        }
        listing
    }
}

fn db(e: sqlx::Error) -> StoreError {
    StoreError::from_sqlx(e)
}

impl<D: Dialect> SqlStore<D> {
    async fn connection(&self) -> Result<sqlx::pool::PoolConnection<D>, StoreError> {
        self.pool.acquire().await.map_err(db)
    }

    /// Whether the ledger table exists; a missing ledger reads as empty (a `plan` or `get`
    /// before the first `apply` creates nothing).
    async fn ledger_known(&self, conn: &mut D::Connection) -> Result<bool, sqlx::Error> {
        if self.ledger_ready.load(Ordering::Relaxed) {
            return Ok(true);
        }
        let known = ledger::exists::<D>(conn, &self.ledger).await?;
        if known {
            self.ledger_ready.store(true, Ordering::Relaxed);
        }
        Ok(known)
    }

    async fn ledger_by_key(
        &self,
        conn: &mut D::Connection,
        key: &str,
    ) -> Result<Option<LedgerEntry>, sqlx::Error> {
        if !self.ledger_known(conn).await? {
            return Ok(None);
        }
        ledger::by_key::<D>(conn, &self.ledger, key).await
    }

    async fn ledger_of_resource_on(
        &self,
        conn: &mut D::Connection,
        resource: &str,
        manager: &str,
    ) -> Result<Vec<LedgerEntry>, sqlx::Error> {
        if !self.ledger_known(conn).await? {
            return Ok(Vec::new());
        }
        ledger::of_resource::<D>(conn, &self.ledger, resource, manager).await
    }

    /// The ledger's owners of organization and membership rows, for listings (none when the
    /// ledger does not exist yet).
    async fn ledger_owners(
        &self,
        conn: &mut D::Connection,
    ) -> Result<HashMap<String, Owner>, sqlx::Error> {
        if !self.ledger_known(conn).await? {
            return Ok(HashMap::new());
        }
        ledger::owners::<D>(conn, &self.ledger).await
    }

    async fn observe_organization_on(
        &self,
        conn: &mut D::Connection,
        organization_id: &str,
        desired_budget_id: &str,
        owned_budget_id: &str,
    ) -> Result<ObservedOrganization, sqlx::Error> {
        let mut observed = ObservedOrganization::default();
        if let Some(org) = organization::get::<D>(conn, organization_id).await? {
            observed.current_budget = budget::get::<D>(conn, &org.budget_id).await?;
            observed.organization = Some(org);
        }
        observed.desired_budget = match &observed.current_budget {
            Some(b) if b.budget_id == desired_budget_id => Some(b.clone()),
            _ => budget::get::<D>(conn, desired_budget_id).await?,
        };
        observed.ledger = self
            .ledger_by_key(conn, &organization_key(organization_id))
            .await?;
        observed.budget_ledger = self
            .ledger_by_key(conn, &budget_key(owned_budget_id))
            .await?;
        Ok(observed)
    }

    /// The membership of the user the engine's rule resolves to, its budget and its ledger
    /// entry.
    async fn read_membership(
        &self,
        conn: &mut D::Connection,
        observed: &mut ObservedMember,
        target: &MemberLookup<'_>,
    ) -> Result<(), sqlx::Error> {
        let Some(rule) = &target.rule else {
            return Ok(());
        };
        let Some(uid) = (rule.resolve)(observed).map(|u| u.user_id.clone()) else {
            return Ok(());
        };
        let organization_id = target.organization_id;
        observed.ledger = self
            .ledger_by_key(conn, &membership_key(organization_id, &uid))
            .await?;
        observed.membership = membership::get::<D>(conn, &uid, organization_id).await?;
        if let Some(bid) = observed
            .membership
            .as_ref()
            .and_then(|m| m.budget_id.clone())
        {
            observed.membership_budget = budget::get::<D>(conn, &bid).await?;
        }
        Ok(())
    }

    /// The member's own budget row and the memberships on it.
    async fn read_own_budget(
        conn: &mut D::Connection,
        observed: &mut ObservedMember,
        own_budget_id: &str,
    ) -> Result<(), sqlx::Error> {
        observed.own_budget = match &observed.membership_budget {
            Some(b) if b.budget_id == own_budget_id => Some(b.clone()),
            _ => budget::get::<D>(conn, own_budget_id).await?,
        };
        // Every transaction keeps at most one membership on a member's own budget, so when the
        // current membership holds it there is nothing else to find; otherwise (the member
        // moved, or is being deleted) look the budget up, which is a scan in LiteLLM's schema
        // (no index on budget_id).
        let current_holds_own = observed
            .membership
            .as_ref()
            .and_then(|m| m.budget_id.as_deref())
            == Some(own_budget_id);
        if current_holds_own {
            observed.memberships_with_own_budget = observed.membership.iter().cloned().collect();
        } else if observed.own_budget.is_some() {
            observed.memberships_with_own_budget =
                membership::on_budget::<D>(conn, own_budget_id).await?;
        }
        Ok(())
    }

    async fn observe_member_on(
        &self,
        conn: &mut D::Connection,
        target: &MemberLookup<'_>,
    ) -> Result<ObservedMember, sqlx::Error> {
        let mut observed = ObservedMember {
            organization_exists: organization::exists::<D>(conn, target.organization_id).await?,
            ..Default::default()
        };
        if !target.resource.is_empty() {
            observed.own_entries = self
                .ledger_of_resource_on(conn, target.resource, target.manager)
                .await?;
        }
        if let Some(rule) = &target.rule {
            user::read_candidates::<D>(conn, &mut observed, target, rule).await?;
        }
        self.read_membership(conn, &mut observed, target).await?;
        Self::read_own_budget(conn, &mut observed, target.own_budget_id).await?;
        Ok(observed)
    }

    /// One change of a plan, on the transaction's connection.
    async fn apply_change(
        &self,
        conn: &mut D::Connection,
        change: &Change,
        actor: &str,
    ) -> Result<Done, StoreError> {
        let written = |r: Result<(), sqlx::Error>| r.map(|()| Done::Written).map_err(db);
        match change {
            Change::Claim { entry, replaces } => {
                ledger::claim::<D>(conn, &self.ledger, entry, replaces.as_deref()).await?;
                Ok(Done::Written)
            }
            Change::Release { row_key } => {
                written(ledger::release::<D>(conn, &self.ledger, row_key).await)
            }
            Change::CreateBudget(b) => Ok(budget::create::<D>(conn, b, actor).await?),
            Change::CopyBudget { source, after } => {
                Ok(budget::copy::<D>(conn, source, after, actor).await?)
            }
            Change::UpdateBudget { before, after } => {
                written(budget::update::<D>(conn, before, after, actor).await)
            }
            Change::DeleteBudget { budget_id } => {
                written(budget::delete::<D>(conn, budget_id).await)
            }
            Change::CreateOrganization(o) => Ok(organization::create::<D>(conn, o, actor).await?),
            Change::UpdateOrganization { before, after } => {
                organization::update::<D>(conn, before, after, actor).await?;
                Ok(Done::Written)
            }
            Change::DeleteOrganization {
                organization_id,
                owned_budget_id,
                dependents,
            } => Ok(organization::delete::<D>(
                conn,
                organization_id,
                owned_budget_id.as_deref(),
                dependents,
                &self.ledger,
            )
            .await?),
            Change::CreateUser {
                user_id,
                email,
                defaults,
            } => user::create::<D>(conn, user_id, email.as_deref(), defaults)
                .await
                .map_err(db),
            Change::CreateMembership(m) => Ok(membership::create::<D>(conn, m).await?),
            Change::UpdateMembership { before, after } => {
                written(membership::update::<D>(conn, before, after).await)
            }
            Change::DeleteMembership {
                user_id,
                organization_id,
            } => written(membership::delete::<D>(conn, user_id, organization_id).await),
        }
    }
}

impl<D: Dialect> Store for SqlStore<D> {
    async fn schema_state(&self) -> Result<SchemaState, StoreError> {
        let mut conn = self.connection().await?;
        let existing = D::fetch_all(&mut conn, D::existing_columns())
            .await
            .map_err(db)?
            .iter()
            .map(|r| Ok((D::text(r, "t")?, D::text(r, "c")?)))
            .collect::<Result<Vec<(String, String)>, sqlx::Error>>()
            .map_err(db)?;
        Ok(schema::compare(&existing))
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        match self.schema_state().await? {
            SchemaState::Ready => return Ok(()),
            SchemaState::Missing(m) => return Err(StoreError::SchemaMissing(m)),
            SchemaState::Empty => {}
        }
        let mut tx = self.pool.begin().await.map_err(db)?;
        // The budget limits are the inventory's: one column each, after the tables.
        let ddl = D::DDL.iter().map(|sql| Stmt::new(sql));
        let limits = budget::add_limit_columns(D::sql_type)
            .into_iter()
            .map(Stmt::built);
        for stmt in ddl.chain(limits) {
            D::execute(&mut tx, stmt).await.map_err(db)?;
        }
        tx.commit().await.map_err(db)
    }

    async fn observe_organization(
        &self,
        organization_id: &str,
        desired_budget_id: &str,
        owned_budget_id: &str,
    ) -> Result<ObservedOrganization, StoreError> {
        // One connection for every read: each checkout from the pool has round trips of its
        // own (the pool checks the connection when it is returned), each as costly as a short
        // statement.
        let mut conn = self.connection().await?;
        self.observe_organization_on(
            &mut conn,
            organization_id,
            desired_budget_id,
            owned_budget_id,
        )
        .await
        .map_err(db)
    }

    async fn observe_member(
        &self,
        target: &MemberLookup<'_>,
    ) -> Result<ObservedMember, StoreError> {
        // One connection for every read (see `observe_organization`).
        let mut conn = self.connection().await?;
        self.observe_member_on(&mut conn, target).await.map_err(db)
    }

    async fn organization_dependents(
        &self,
        organization_id: &str,
    ) -> Result<Dependents, StoreError> {
        let mut conn = self.connection().await?;
        organization::dependents::<D>(&mut conn, organization_id)
            .await
            .map_err(db)
    }

    async fn organization_usage(
        &self,
        organization_id: &str,
    ) -> Result<Option<OrganizationUsage>, StoreError> {
        let mut conn = self.connection().await?;
        organization::usage::<D>(&mut conn, organization_id)
            .await
            .map_err(db)
    }

    async fn member_figures(
        &self,
        user_id: &str,
        organization_id: &str,
    ) -> Result<Option<MemberFigures>, StoreError> {
        let mut conn = self.connection().await?;
        membership::figures::<D>(&mut conn, user_id, organization_id)
            .await
            .map_err(db)
    }

    async fn member_counts(&self) -> Result<HashMap<String, i64>, StoreError> {
        let mut conn = self.connection().await?;
        membership::counts::<D>(&mut conn).await.map_err(db)
    }

    async fn owned_organizations(&self) -> Result<Vec<(String, String)>, StoreError> {
        let mut conn = self.connection().await?;
        organization::marked::<D>(&mut conn).await.map_err(db)
    }

    async fn owned_memberships(&self, actor: &str) -> Result<Vec<OwnedMembership>, StoreError> {
        let mut conn = self.connection().await?;
        membership::owned::<D>(&mut conn, actor).await.map_err(db)
    }

    async fn apply(&self, changes: &[Change], actor: &str) -> Result<Applied, StoreError> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        let mut applied = Applied::default();
        for (index, change) in changes.iter().enumerate() {
            if let Done::AlreadyThere = self.apply_change(&mut tx, change, actor).await? {
                applied.unchanged.push(index);
            }
        }
        tx.commit().await.map_err(db)?;
        Ok(applied)
    }

    async fn ensure_ledger(&self) -> Result<bool, StoreError> {
        let mut conn = self.connection().await?;
        if self.ledger_known(&mut conn).await.map_err(db)? {
            return Ok(false);
        }
        drop(conn);
        let mut tx = self.pool.begin().await.map_err(db)?;
        ledger::create::<D>(&mut tx, &self.ledger).await?;
        tx.commit().await.map_err(StoreError::from_ledger_ddl)?;
        self.ledger_ready.store(true, Ordering::Relaxed);
        Ok(true)
    }

    async fn ledger_of_resource(
        &self,
        resource: &str,
        manager: &str,
    ) -> Result<Vec<LedgerEntry>, StoreError> {
        let mut conn = self.connection().await?;
        self.ledger_of_resource_on(&mut conn, resource, manager)
            .await
            .map_err(db)
    }

    async fn ledger_of_manager(&self, manager: &str) -> Result<Vec<LedgerEntry>, StoreError> {
        let mut conn = self.connection().await?;
        if !self.ledger_known(&mut conn).await.map_err(db)? {
            return Ok(Vec::new());
        }
        ledger::of_manager::<D>(&mut conn, &self.ledger, manager)
            .await
            .map_err(db)
    }

    async fn list_organizations(&self) -> Result<Listing<OrganizationSummary>, StoreError> {
        let mut conn = self.connection().await?;
        let owners = self.ledger_owners(&mut conn).await.map_err(db)?;
        organization::list::<D>(&mut conn, &owners)
            .await
            .map_err(db)
    }

    async fn list_members(&self) -> Result<Listing<MemberSummary>, StoreError> {
        let mut conn = self.connection().await?;
        let owners = self.ledger_owners(&mut conn).await.map_err(db)?;
        membership::list::<D>(&mut conn, &owners).await.map_err(db)
    }

    async fn ledger_resources(&self) -> Result<Vec<String>, StoreError> {
        let mut conn = self.connection().await?;
        if !self.ledger_known(&mut conn).await.map_err(db)? {
            return Ok(Vec::new());
        }
        ledger::resources::<D>(&mut conn, &self.ledger)
            .await
            .map_err(db)
    }
}
