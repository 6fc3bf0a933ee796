//! Database access: one [`Store`] trait, with a Postgres implementation that works on LiteLLM's
//! real schema and a SQLite implementation of the same tables for the embedded default.
//!
//! Every statement binds its values; identifiers only ever come from the fixed lists below.

mod change;
pub mod open;
mod postgres;
pub(crate) mod schema;
mod sql;
mod sqlite;

use std::future::Future;

pub use change::Change;
pub use postgres::PostgresStore;
pub use schema::{REQUIRED_COLUMNS, SchemaState};
pub use sqlite::SqliteStore;

use crate::error::StoreError;

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

/// The database operations the engine needs. Reads are plain queries; [`Store::apply`] runs
/// all the changes of one object in a single transaction.
pub trait Store: Send + Sync {
    /// Whether the tables and columns the operator needs are present.
    fn schema_state(&self) -> impl Future<Output = Result<SchemaState, StoreError>> + Send;
    /// Create the tables on an empty database. Never alters an existing LiteLLM schema.
    fn migrate(&self) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Read one organization, its current budget and the budget the spec wants.
    fn observe_organization(
        &self,
        organization_id: &str,
        desired_budget_id: &str,
    ) -> impl Future<Output = Result<ObservedOrganization, StoreError>> + Send;
    /// Read what a membership needs: the organization, the user (by id, else by email), the row.
    fn observe_member(
        &self,
        organization_id: &str,
        user_id: Option<&str>,
        email: Option<&str>,
        own_budget_id: &str,
    ) -> impl Future<Output = Result<ObservedMember, StoreError>> + Send;
    /// Spend, max budget and member count of an organization, for status.
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

macro_rules! delegate {
    ($self:ident, $store:ident => $call:expr) => {
        match $self {
            AnyStore::Postgres($store) => $call.await,
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
    ) -> Result<ObservedOrganization, StoreError> {
        delegate!(self, s => s.observe_organization(organization_id, desired_budget_id))
    }
    async fn observe_member(
        &self,
        organization_id: &str,
        user_id: Option<&str>,
        email: Option<&str>,
        own_budget_id: &str,
    ) -> Result<ObservedMember, StoreError> {
        delegate!(self, s => s.observe_member(organization_id, user_id, email, own_budget_id))
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
