//! Database access: one [`Store`] trait, with a Postgres implementation that works on LiteLLM's
//! real schema and a SQLite implementation of the same tables for the embedded default.
//!
//! Every statement binds its values; identifiers only ever come from the fixed lists below.
//!
//! The store is by table: `budget`, `organization`, `membership`, `user` and `ledger` each
//! hold their SQL as constants beside their row mapping and their write functions, generic
//! over a [`Dialect`] (PostgreSQL or SQLite, `dialect`). `sql` is the store itself: its reads,
//! and the transaction that applies one object's changes in the order the plan gives them
//! (the engine's `plan::Step`, the one place that order is named).
//!
//! The update strategy, the same for every LiteLLM table the operator writes (budget,
//! organization, membership; users are only created): the plan carries the row as it was
//! read (`before`) and the row as it should be (`after`).
//! 1. Lock the row for the rest of the transaction (`SELECT … FOR UPDATE`; SQLite's write
//!    transaction holds every row already).
//! 2. Write only the managed columns where `after` differs from `before`, onto the row as it
//!    is now, so a column LiteLLM changed in between (or one the resource does not declare)
//!    is kept; JSON the plan changes key by key (`metadata`) is merged onto the text read
//!    under the lock.
//! 3. A row deleted in between is written as planned (inserted).
//!
//! Creates insert only: a row that is already there fails the transaction as stale (a user
//! is the exception: it is used as it is).

pub mod budget;
mod change;
pub mod change_view;
pub mod dialect;
pub mod inventory;
pub mod ledger;
pub mod membership;
pub mod open;
pub mod organization;
mod postgres;
pub(crate) mod schema;
mod sql;
mod sqlite;
pub mod user;

use std::future::Future;

pub use change::{Change, NewUserDefaults};
pub use change_view::{ChangeView, FieldView};
pub use dialect::Dialect;
pub use inventory::{BUDGET_LIMITS, Kind, RawObject, Scalar};
pub use ledger::{LedgerEntry, budget_key, membership_key, organization_key};
pub use membership::MembershipRow;
pub use organization::OrganizationRow;
pub use postgres::PostgresStore;
pub use schema::{REQUIRED_COLUMNS, SchemaState};
pub use sql::SqlStore;
pub use sqlite::SqliteStore;
pub use user::{EMAIL_MATCHES_READ, UserRow, UserRule};

use crate::error::StoreError;

/// The metadata key of the ownership marker the operator writes on organizations it manages.
pub const OWNER_KEY: &str = "litellm-org-operator";

/// The owner (`Organization/<namespace>/<name>`) an organization's metadata marker names.
pub fn metadata_owner(metadata: &serde_json::Map<String, serde_json::Value>) -> Option<&str> {
    metadata.get(OWNER_KEY)?.get("owner")?.as_str()
}

/// A `LiteLLM_BudgetTable` row, limited to the columns the inventory manages
/// ([`BUDGET_LIMITS`] and `model_max_budget`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BudgetRow {
    pub budget_id: String,
    /// The limits that are set, by column (a NULL column is absent).
    pub limits: std::collections::BTreeMap<&'static str, Scalar>,
    /// LiteLLM's `model_max_budget` as its JSON text, `None` when SQL NULL.
    pub model_max_budget: Option<String>,
    pub created_by: String,
}

impl BudgetRow {
    /// A row with no limit set.
    pub fn new(budget_id: impl Into<String>, created_by: impl Into<String>) -> Self {
        Self {
            budget_id: budget_id.into(),
            created_by: created_by.into(),
            ..Default::default()
        }
    }

    /// The row with `column` (a column of [`BUDGET_LIMITS`]) set to `value`, or cleared.
    pub fn with(mut self, column: &str, value: Option<Scalar>) -> Self {
        self.set(column, value);
        self
    }

    /// Set `column` (a column of [`BUDGET_LIMITS`]; others are ignored), or clear it.
    pub fn set(&mut self, column: &str, value: Option<Scalar>) {
        let Some(limit) = inventory::budget_limit(column) else {
            return;
        };
        match value {
            Some(v) => self.limits.insert(limit.column, v),
            None => self.limits.remove(limit.column),
        };
    }

    pub fn limit(&self, column: &str) -> Option<&Scalar> {
        self.limits.get(column)
    }

    pub fn max_budget(&self) -> Option<f64> {
        self.limit("max_budget").and_then(Scalar::as_f64)
    }

    pub fn budget_duration(&self) -> Option<&str> {
        match self.limit("budget_duration") {
            Some(Scalar::Text(d)) => Some(d),
            _ => None,
        }
    }
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
    /// The user this resource already holds its membership in this organization for (the
    /// engine's [`UserRule::held`]), whatever its email is now.
    pub held_user: Option<UserRow>,
    /// The membership of the user [`UserRule::resolve`] chose, if the row exists.
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

/// What LiteLLM's delete of an organization takes with it: the rows that point at it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Dependents {
    /// `LiteLLM_TeamTable` rows of the organization.
    pub teams: i64,
    /// `LiteLLM_VerificationToken` rows (API keys) of the organization.
    pub keys: i64,
    /// `LiteLLM_OrganizationMembership` rows of the organization.
    pub memberships: i64,
}

impl Dependents {
    /// True when the delete would take teams or keys: rows the operator never creates.
    pub fn has_teams_or_keys(&self) -> bool {
        self.teams > 0 || self.keys > 0
    }

    /// True when any count is above `planned`'s: rows a delete planned with `planned` did
    /// not name.
    pub fn exceeds(&self, planned: &Dependents) -> bool {
        self.teams > planned.teams
            || self.keys > planned.keys
            || self.memberships > planned.memberships
    }

    /// "2 teams and 14 keys" (only what there is; "no teams or keys" when neither).
    pub fn teams_and_keys(&self) -> String {
        match (self.teams, self.keys) {
            (0, 0) => "no teams or keys".into(),
            (t, 0) => count(t, "team"),
            (0, k) => count(k, "key"),
            (t, k) => format!("{} and {}", count(t, "team"), count(k, "key")),
        }
    }
}

impl std::fmt::Display for Dependents {
    /// "2 teams, 14 keys, 7 memberships".
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}, {}, {}",
            count(self.teams, "team"),
            count(self.keys, "key"),
            count(self.memberships, "membership")
        )
    }
}

/// "1 team", "2 teams", "0 teams".
fn count(n: i64, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// Figures mirrored into `Organization.status`, its metrics and budget events.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OrganizationUsage {
    pub spend: f64,
    pub max_budget: Option<f64>,
    pub member_count: i64,
    /// `soft_budget` of the organization's budget row: LiteLLM's alerting threshold.
    pub soft_budget: Option<f64>,
    /// `budget_reset_at` of that row: when LiteLLM's reset job next sets spend back to 0 (UTC).
    pub budget_reset_at: Option<chrono::NaiveDateTime>,
}

/// What a membership's rows say, for the member's status, metrics and budget events.
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

/// An organization as `get organizations` lists it.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct OrganizationSummary {
    pub organization_id: String,
    /// Named as in `get members` (and LiteLLM's column), so one key means one thing in both.
    #[serde(rename = "organization_alias")]
    pub alias: String,
    pub budget_id: String,
    pub max_budget: Option<f64>,
    pub spend: f64,
    pub members: i64,
    pub models: Vec<String>,
    /// The resource holding the organization (the ledger's entry, else the ownership marker
    /// of an earlier version); `None` when nothing holds it.
    pub owner: Option<Owner>,
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
    /// The resource holding the membership in the ledger; `None` when nothing holds it.
    pub owner: Option<Owner>,
}

/// The resource holding a row, as `get` lists it: the ledger's entry for the row (its
/// manager and resource), or for an organization no ledger entry holds, the ownership marker
/// an earlier version wrote in its metadata (no manager: the first `apply` or `run` imports
/// it into the ledger).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Owner {
    /// Who holds the row in the ledger; `None` for the marker of an earlier version.
    pub manager: Option<String>,
    /// `Organization` or `OrganizationMember`.
    pub kind: String,
    /// The resource's namespace and name; `None` for a resource name that holds none (a
    /// membership imported from an earlier version, `OrganizationMember/legacy:<budget id>`,
    /// until its resource claims it).
    pub namespace: Option<String>,
    pub name: Option<String>,
    /// The resource as the ledger names it: `Kind/namespace/name`.
    pub resource: String,
}

impl Owner {
    /// The owner a ledger entry names: its `resource` (`Kind/namespace/name`) and `manager`.
    pub fn from_ledger(resource: &str, manager: &str) -> Self {
        Self {
            manager: Some(manager.to_string()),
            ..Self::of_resource(resource)
        }
    }

    /// The owner the metadata marker of an earlier version names (`Organization/ns/name`).
    pub fn from_marker(resource: &str) -> Self {
        Self::of_resource(resource)
    }

    fn of_resource(resource: &str) -> Self {
        let (kind, rest) = resource.split_once('/').unwrap_or((resource, ""));
        let (namespace, name) = match rest.split_once('/') {
            Some((namespace, name)) => (Some(namespace.to_string()), Some(name.to_string())),
            None => (None, None),
        };
        Self {
            manager: None,
            kind: kind.to_string(),
            namespace,
            name,
            resource: resource.to_string(),
        }
    }
}

/// `Kind/namespace/name (manager)`, or `Kind/namespace/name (marker of an earlier
/// version)`: the OWNER column of `get`'s table.
impl std::fmt::Display for Owner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.manager {
            Some(manager) => write!(f, "{} ({manager})", self.resource),
            None => write!(f, "{} (marker of an earlier version)", self.resource),
        }
    }
}

/// What a listing read: the rows, and the rows it could not read. One row holding a value
/// the reader cannot decode (metadata with `1e400`, which no JSON number can hold) is
/// reported by id; it does not hide the others.
#[derive(Clone, Debug, PartialEq)]
pub struct Listing<T> {
    pub rows: Vec<T>,
    pub unreadable: Vec<UnreadableRow>,
}

/// A row a listing could not read, and why.
#[derive(Clone, Debug, PartialEq)]
pub struct UnreadableRow {
    /// `organization <id>` or `membership of user <id> in organization <id>`.
    pub row: String,
    pub reason: String,
}

impl std::fmt::Display for UnreadableRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} cannot be read: {}", self.row, self.reason)
    }
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
    /// How the member's user is chosen among the candidates read (the engine's rule); with
    /// none, no user and no membership are read.
    pub rule: Option<UserRule>,
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
    /// Spend, budget, user email and organization alias of `user_id`'s membership in
    /// `organization_id` (`None`: no such membership).
    fn member_figures(
        &self,
        user_id: &str,
        organization_id: &str,
    ) -> impl Future<Output = Result<Option<MemberFigures>, StoreError>> + Send;
    /// The teams, keys and memberships an organization's delete would remove.
    fn organization_dependents(
        &self,
        organization_id: &str,
    ) -> impl Future<Output = Result<Dependents, StoreError>> + Send;
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
    /// Apply changes in one transaction: all or nothing. A create finding its row already
    /// there (another writer created it since the plan read) fails the whole transaction with
    /// [`StoreError::Stale`], except a user's: that user is then used as it is, and the change
    /// is named in [`Applied::unchanged`].
    fn apply(
        &self,
        changes: &[Change],
        actor: &str,
    ) -> impl Future<Output = Result<Applied, StoreError>> + Send;
    /// All organizations, for `get organizations` and `export`.
    fn list_organizations(
        &self,
    ) -> impl Future<Output = Result<Listing<OrganizationSummary>, StoreError>> + Send;
    /// All memberships, for `get members` and `export`.
    fn list_members(
        &self,
    ) -> impl Future<Output = Result<Listing<MemberSummary>, StoreError>> + Send;
    /// Every resource the ledger names (`Kind/namespace/name`), of every manager: the names
    /// `export` must not give again.
    fn ledger_resources(&self) -> impl Future<Output = Result<Vec<String>, StoreError>> + Send;
}

/// What [`Store::apply`] did beyond what the changes say.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Applied {
    /// Indexes of the changes that wrote nothing (a user to create was there already).
    pub unchanged: Vec<usize>,
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
    async fn member_figures(
        &self,
        user_id: &str,
        organization_id: &str,
    ) -> Result<Option<MemberFigures>, StoreError> {
        delegate!(self, s => s.member_figures(user_id, organization_id))
    }
    async fn organization_dependents(
        &self,
        organization_id: &str,
    ) -> Result<Dependents, StoreError> {
        delegate!(self, s => s.organization_dependents(organization_id))
    }
    async fn owned_organizations(&self) -> Result<Vec<(String, String)>, StoreError> {
        delegate!(self, s => s.owned_organizations())
    }
    async fn owned_memberships(&self, actor: &str) -> Result<Vec<OwnedMembership>, StoreError> {
        delegate!(self, s => s.owned_memberships(actor))
    }
    async fn apply(&self, changes: &[Change], actor: &str) -> Result<Applied, StoreError> {
        delegate!(self, s => s.apply(changes, actor))
    }
    async fn list_organizations(&self) -> Result<Listing<OrganizationSummary>, StoreError> {
        delegate!(self, s => s.list_organizations())
    }
    async fn list_members(&self) -> Result<Listing<MemberSummary>, StoreError> {
        delegate!(self, s => s.list_members())
    }
    async fn ledger_resources(&self) -> Result<Vec<String>, StoreError> {
        delegate!(self, s => s.ledger_resources())
    }
}

#[cfg(test)]
mod dependents_tests {
    use super::Dependents;

    #[test]
    fn counts_read_as_a_person_would_say_them() {
        let d = Dependents {
            teams: 2,
            keys: 1,
            memberships: 0,
        };
        assert_eq!(d.to_string(), "2 teams, 1 key, 0 memberships");
        assert_eq!(d.teams_and_keys(), "2 teams and 1 key");
        assert!(d.has_teams_or_keys());
        let none = Dependents {
            memberships: 3,
            ..Default::default()
        };
        assert_eq!(none.teams_and_keys(), "no teams or keys");
        assert!(!none.has_teams_or_keys());
        assert!(d.exceeds(&none));
        assert!(!none.exceeds(&Dependents {
            memberships: 3,
            ..d
        }));
    }
}

#[cfg(test)]
mod owner_tests {
    use super::Owner;

    #[test]
    fn a_ledger_resource_reads_as_kind_namespace_and_name() {
        let owner = Owner::from_ledger("OrganizationMember/team-a/ann", "cli");
        assert_eq!(owner.manager.as_deref(), Some("cli"));
        assert_eq!(owner.kind, "OrganizationMember");
        assert_eq!(owner.namespace.as_deref(), Some("team-a"));
        assert_eq!(owner.name.as_deref(), Some("ann"));
        assert_eq!(owner.to_string(), "OrganizationMember/team-a/ann (cli)");
        let json = serde_json::to_value(&owner).expect("json");
        assert_eq!(
            json,
            serde_json::json!({"manager": "cli", "kind": "OrganizationMember",
                "namespace": "team-a", "name": "ann",
                "resource": "OrganizationMember/team-a/ann"})
        );
    }

    #[test]
    fn a_legacy_membership_and_a_marker_keep_their_resource() {
        let legacy = Owner::from_ledger("OrganizationMember/legacy:b1", "operator");
        assert_eq!(legacy.kind, "OrganizationMember");
        assert_eq!((legacy.namespace, legacy.name), (None, None));
        assert_eq!(legacy.resource, "OrganizationMember/legacy:b1");
        let marker = Owner::from_marker("Organization/ns/legacy");
        assert_eq!(marker.manager, None);
        assert_eq!(
            (marker.namespace.as_deref(), marker.name.as_deref()),
            (Some("ns"), Some("legacy"))
        );
        assert_eq!(
            marker.to_string(),
            "Organization/ns/legacy (marker of an earlier version)"
        );
    }
}
