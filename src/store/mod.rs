//! Database access: one [`Store`] trait, with a Postgres implementation that works on LiteLLM's
//! real schema and a SQLite implementation of the same tables for the embedded default.
//!
//! Every statement binds its values; identifiers only ever come from the fixed lists below.

mod change;
pub mod ledger;
pub mod open;
mod postgres;
pub(crate) mod schema;
mod sql;
mod sqlite;

use std::future::Future;

pub use change::{Change, NewUserDefaults};
pub use ledger::{LedgerEntry, budget_key, membership_key, organization_key};
pub use postgres::PostgresStore;
pub use schema::{REQUIRED_COLUMNS, SchemaState};
pub use sqlite::SqliteStore;

use crate::error::StoreError;

/// How many users with one email a member lookup reads (the rest are not needed to know the
/// email is ambiguous).
pub const EMAIL_MATCHES_READ: usize = 10;

/// The metadata key of the ownership marker the operator writes on organizations it manages.
pub const OWNER_KEY: &str = "litellm-org-operator";

/// The owner (`Organization/<namespace>/<name>`) an organization's metadata marker names.
pub fn metadata_owner(metadata: &serde_json::Map<String, serde_json::Value>) -> Option<&str> {
    metadata.get(OWNER_KEY)?.get("owner")?.as_str()
}

/// A `LiteLLM_BudgetTable` row, limited to the columns the operator manages.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BudgetRow {
    pub budget_id: String,
    pub max_budget: Option<f64>,
    pub soft_budget: Option<f64>,
    pub max_parallel_requests: Option<i32>,
    pub tpm_limit: Option<i64>,
    pub rpm_limit: Option<i64>,
    pub budget_duration: Option<String>,
    /// LiteLLM's `model_max_budget` JSON (`{model: {budget_limit, time_period}}`), `None` when SQL NULL.
    pub model_max_budget: Option<serde_json::Value>,
    pub created_by: String,
}

/// A `LiteLLM_OrganizationTable` row, limited to the columns the operator manages or mirrors.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OrganizationRow {
    pub organization_id: String,
    pub organization_alias: String,
    pub budget_id: String,
    pub models: Vec<String>,
    pub metadata: serde_json::Map<String, serde_json::Value>,
    pub spend: f64,
}

/// A `LiteLLM_UserTable` row, limited to what the member lookup needs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct UserRow {
    pub user_id: String,
    pub user_email: Option<String>,
}

/// A `LiteLLM_OrganizationMembership` row.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MembershipRow {
    pub user_id: String,
    pub organization_id: String,
    pub user_role: Option<String>,
    pub budget_id: Option<String>,
}

/// What the database holds for one organization.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ObservedOrganization {
    pub organization: Option<OrganizationRow>,
    /// The budget row the organization points at today, if any.
    pub current_budget: Option<BudgetRow>,
    /// The row with the budget id the spec asks for (owned or referenced), if it exists.
    pub desired_budget: Option<BudgetRow>,
    /// The ledger's entry for the organization row, if any manager claims it.
    pub ledger: Option<LedgerEntry>,
    /// The ledger's entry for the resource's own budget row (the one `desired_budget` names
    /// when the spec does not reference another), if any.
    pub budget_ledger: Option<LedgerEntry>,
}

/// What the database holds for one membership.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ObservedMember {
    pub organization_exists: bool,
    /// User found by `user.userId`.
    pub user_by_id: Option<UserRow>,
    /// Users whose email matches `user.email` case-insensitively (searched only when needed).
    pub users_by_email: Vec<UserRow>,
    /// The membership of the resolved user, if the user was resolved and the row exists.
    pub membership: Option<MembershipRow>,
    /// The budget row the existing membership points at, if any.
    pub membership_budget: Option<BudgetRow>,
    /// The operator's budget row for this member resource, if it exists.
    pub own_budget: Option<BudgetRow>,
    /// Every membership that points at this member resource's budget row (filled from the
    /// current membership when it holds that budget, else by a lookup).
    pub memberships_with_own_budget: Vec<MembershipRow>,
    /// The ledger's entry for the resolved membership row, if any manager claims it.
    pub ledger: Option<LedgerEntry>,
    /// Every ledger entry of this member resource under this manager (its membership and its
    /// budget, including a membership it held for another user or organization before).
    pub own_entries: Vec<LedgerEntry>,
}

/// Figures mirrored into `Organization.status`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OrganizationUsage {
    pub spend: f64,
    pub max_budget: Option<f64>,
    pub member_count: i64,
}

/// An organization as `get organizations` lists it.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct OrganizationSummary {
    pub organization_id: String,
    pub alias: String,
    pub budget_id: String,
    pub max_budget: Option<f64>,
    pub spend: f64,
    pub members: i64,
    pub models: Vec<String>,
    /// `namespace/name` of the owning resource, when the operator owns the row.
    pub owner: Option<String>,
}

/// A membership as `get members` lists it.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct MemberSummary {
    pub organization_id: String,
    pub organization_alias: String,
    pub user_id: String,
    pub user_email: Option<String>,
    pub role: Option<String>,
    pub budget_id: Option<String>,
    pub max_budget_in_organization: Option<f64>,
    pub spend: f64,
}

/// Membership rows whose budget row was created by the operator (used by `--prune`).
#[derive(Clone, Debug, PartialEq)]
pub struct OwnedMembership {
    pub user_id: String,
    pub organization_id: String,
    pub budget_id: String,
}

/// What [`Store::observe_member`] looks up.
#[derive(Clone, Copy, Debug, Default)]
pub struct MemberLookup<'a> {
    pub organization_id: &'a str,
    pub user_id: Option<&'a str>,
    pub email: Option<&'a str>,
    /// The member resource's own budget row id.
    pub own_budget_id: &'a str,
    /// `OrganizationMember/<namespace>/<name>`.
    pub resource: &'a str,
    pub manager: &'a str,
}

/// The database operations the engine needs. Reads are plain queries; [`Store::apply`] runs
/// all the changes of one object in a single transaction.
pub trait Store: Send + Sync {
    /// Whether the tables and columns the operator needs are present.
    fn schema_state(&self) -> impl Future<Output = Result<SchemaState, StoreError>> + Send;
    /// Create the tables on an empty database. Never alters an existing LiteLLM schema.
    fn migrate(&self) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Read one organization, its current budget, the budget the spec wants, and the ledger
    /// entries of the organization row and of `owned_budget_id`.
    fn observe_organization(
        &self,
        organization_id: &str,
        desired_budget_id: &str,
        owned_budget_id: &str,
    ) -> impl Future<Output = Result<ObservedOrganization, StoreError>> + Send;
    /// Read what a membership needs: the organization, the user (by id, else by email), the
    /// row, and the ledger entries of the resource `resource` under `manager`.
    fn observe_member(
        &self,
        target: &MemberLookup<'_>,
    ) -> impl Future<Output = Result<ObservedMember, StoreError>> + Send;
    /// Members per organization id, in one read (for status; organizations with none are
    /// absent).
    fn member_counts(
        &self,
    ) -> impl Future<Output = Result<std::collections::HashMap<String, i64>, StoreError>> + Send;
    /// Spend and max budget of an organization, for status (`member_count` is left 0: see
    /// [`Store::member_counts`]).
    fn organization_usage(
        &self,
        organization_id: &str,
    ) -> impl Future<Output = Result<Option<OrganizationUsage>, StoreError>> + Send;
    /// Organizations whose metadata carries the operator's ownership marker: `(id, owner)`.
    fn owned_organizations(
        &self,
    ) -> impl Future<Output = Result<Vec<(String, String)>, StoreError>> + Send;
    /// Memberships whose budget row was created by `actor`.
    fn owned_memberships(
        &self,
        actor: &str,
    ) -> impl Future<Output = Result<Vec<OwnedMembership>, StoreError>> + Send;
    /// Create the ledger's schema and table when missing. `true` when this call created the
    /// table (a first start: rows marked by earlier versions are then imported).
    fn ensure_ledger(&self) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// The ledger entries of one resource under one manager.
    fn ledger_of_resource(
        &self,
        resource: &str,
        manager: &str,
    ) -> impl Future<Output = Result<Vec<LedgerEntry>, StoreError>> + Send;
    /// Every ledger entry of one manager (for `--prune`).
    fn ledger_of_manager(
        &self,
        manager: &str,
    ) -> impl Future<Output = Result<Vec<LedgerEntry>, StoreError>> + Send;
    /// Apply changes in one transaction: all or nothing.
    fn apply(
        &self,
        changes: &[Change],
        actor: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// All organizations, for `get organizations`.
    fn list_organizations(
        &self,
    ) -> impl Future<Output = Result<Vec<OrganizationSummary>, StoreError>> + Send;
    /// All memberships, for `get members`.
    fn list_members(&self) -> impl Future<Output = Result<Vec<MemberSummary>, StoreError>> + Send;
}

/// The store the CLI opens from a URL: Postgres or SQLite.
pub enum AnyStore {
    Postgres(PostgresStore),
    Sqlite(SqliteStore),
}

impl AnyStore {
    /// Keep the ledger in PostgreSQL schema `schema` (SQLite keeps it in the same file).
    pub fn with_ledger_schema(self, schema: &str) -> Result<Self, StoreError> {
        Ok(match self {
            Self::Postgres(p) => Self::Postgres(p.with_ledger_schema(schema)?),
            Self::Sqlite(s) => {
                ledger::ledger_schema(schema)?;
                Self::Sqlite(s)
            }
        })
    }
}

macro_rules! delegate {
    ($self:ident, $store:ident => $call:expr) => {
        match $self {
            // Connection failures name the server they concern.
            AnyStore::Postgres($store) => $call.await.map_err(|e| e.at($store.address())),
            AnyStore::Sqlite($store) => $call.await,
        }
    };
}

impl Store for AnyStore {
    async fn schema_state(&self) -> Result<SchemaState, StoreError> {
        delegate!(self, s => s.schema_state())
    }
    async fn migrate(&self) -> Result<(), StoreError> {
        delegate!(self, s => s.migrate())
    }
    async fn observe_organization(
        &self,
        organization_id: &str,
        desired_budget_id: &str,
        owned_budget_id: &str,
    ) -> Result<ObservedOrganization, StoreError> {
        delegate!(self, s => s.observe_organization(organization_id, desired_budget_id, owned_budget_id))
    }
    async fn observe_member(
        &self,
        target: &MemberLookup<'_>,
    ) -> Result<ObservedMember, StoreError> {
        delegate!(self, s => s.observe_member(target))
    }
    async fn ensure_ledger(&self) -> Result<bool, StoreError> {
        delegate!(self, s => s.ensure_ledger())
    }
    async fn member_counts(&self) -> Result<std::collections::HashMap<String, i64>, StoreError> {
        delegate!(self, s => s.member_counts())
    }
    async fn ledger_of_resource(
        &self,
        resource: &str,
        manager: &str,
    ) -> Result<Vec<LedgerEntry>, StoreError> {
        delegate!(self, s => s.ledger_of_resource(resource, manager))
    }
    async fn ledger_of_manager(&self, manager: &str) -> Result<Vec<LedgerEntry>, StoreError> {
        delegate!(self, s => s.ledger_of_manager(manager))
    }
    async fn organization_usage(
        &self,
        organization_id: &str,
    ) -> Result<Option<OrganizationUsage>, StoreError> {
        delegate!(self, s => s.organization_usage(organization_id))
    }
    async fn owned_organizations(&self) -> Result<Vec<(String, String)>, StoreError> {
        delegate!(self, s => s.owned_organizations())
    }
    async fn owned_memberships(&self, actor: &str) -> Result<Vec<OwnedMembership>, StoreError> {
        delegate!(self, s => s.owned_memberships(actor))
    }
    async fn apply(&self, changes: &[Change], actor: &str) -> Result<(), StoreError> {
        delegate!(self, s => s.apply(changes, actor))
    }
    async fn list_organizations(&self) -> Result<Vec<OrganizationSummary>, StoreError> {
        delegate!(self, s => s.list_organizations())
    }
    async fn list_members(&self) -> Result<Vec<MemberSummary>, StoreError> {
        delegate!(self, s => s.list_members())
    }
}
