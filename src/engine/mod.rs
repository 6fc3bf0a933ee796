//! The reconcile engine: validate (pure) → resolve → plan (pure) → apply (one transaction per
//! object). The controller and the CLI both drive it; it knows nothing of Kubernetes clients.

mod desired;
mod fields;
mod holder;
pub mod ids;
mod legacy;
mod plan;
pub mod users;
pub mod validate;

pub use desired::{
    DeclaredBudget, DesiredBudget, DesiredMember, DesiredOrganization, ObjectKey,
    OrganizationTarget, legacy_member_resource, member_resource, owner_string,
};
pub use fields::same_limits;
pub use legacy::{plan_delete_legacy_organization, retained_by_marker};
pub use plan::{
    MemberContext, ObjectPlan, Originals, Step, plan_delete_member, plan_delete_organization,
    plan_member, plan_organization,
};

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::error::EngineError;
use crate::store::{Change, LedgerEntry, MemberLookup, NewUserDefaults, OrganizationUsage, Store};

/// `namespace/name`.
fn parse_key(text: &str) -> Option<ObjectKey> {
    text.split_once('/')
        .map(|(ns, name)| ObjectKey::new(ns, name))
}

/// The key of an `Organization/<namespace>/<name>` resource name.
fn parse_owner(owner: &str) -> Option<ObjectKey> {
    parse_key(owner.strip_prefix("Organization/")?)
}

/// The resources a prune keeps: every one the manifest set declares.
#[derive(Clone, Debug, Default)]
pub struct PruneKeep {
    pub organizations: HashSet<ObjectKey>,
    pub members: HashSet<ObjectKey>,
}

/// Default value of `created_by` / `updated_by` (a label for LiteLLM's audit columns, never
/// an ownership key).
pub const DEFAULT_ACTOR: &str = "litellm-org-operator";

/// Default manager name of the CLI's manifest sets (`--manager`); the operator's is
/// [`OPERATOR_MANAGER`]. Each manager only ever prunes or takes over its own rows.
pub const CLI_MANAGER: &str = "cli";

/// Default manager name of the in-cluster operator.
pub const OPERATOR_MANAGER: &str = "operator";

/// Called once per database operation (`observe`, `apply`, `usage`), for metrics.
pub type OperationObserver = std::sync::Arc<dyn Fn(&'static str) + Send + Sync>;

/// Members per organization id, when they were read, and how many membership writes of this
/// engine they include.
struct MemberCounts {
    read_at: std::time::Instant,
    writes_seen: u64,
    counts: std::sync::Arc<HashMap<String, i64>>,
}

/// After this engine adds or removes a membership, the counts are read again once they are
/// this old, so an organization's status shows its members within seconds of their creation
/// rather than a resync period later (one grouped read at most this often during churn).
const COUNTS_AFTER_WRITES: std::time::Duration = std::time::Duration::from_secs(2);

/// Drives planning and applying against one store.
pub struct Engine<S> {
    store: S,
    actor: String,
    manager: String,
    new_user: NewUserDefaults,
    observer: Option<OperationObserver>,
    /// Members per organization, read at most once per `counts_max_age`.
    member_counts: tokio::sync::Mutex<Option<MemberCounts>>,
    counts_max_age: std::time::Duration,
    /// Memberships this engine created or deleted (see [`COUNTS_AFTER_WRITES`]).
    membership_writes: std::sync::atomic::AtomicU64,
}

impl<S: Store> Engine<S> {
    /// An engine writing as `actor` (`created_by` / `updated_by`), managing rows as the
    /// CLI's default manager.
    pub fn new(store: S, actor: impl Into<String>) -> Self {
        Self {
            store,
            actor: actor.into(),
            manager: CLI_MANAGER.to_string(),
            new_user: NewUserDefaults::default(),
            observer: None,
            member_counts: tokio::sync::Mutex::new(None),
            counts_max_age: std::time::Duration::ZERO,
            membership_writes: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Read members per organization at most once per `max_age` (the operator's resync
    /// period): one grouped read serves every organization's status.
    pub fn with_member_counts_every(mut self, max_age: std::time::Duration) -> Self {
        self.counts_max_age = max_age;
        self
    }

    /// Give users this engine creates the proxy's new-internal-user defaults.
    pub fn with_new_user_defaults(mut self, defaults: NewUserDefaults) -> Self {
        self.new_user = defaults;
        self
    }

    /// Manage rows as `manager` (the ledger's owner of what this engine writes).
    pub fn with_manager(mut self, manager: impl Into<String>) -> Self {
        self.manager = manager.into();
        self
    }

    /// Report every database operation to `observer` (metrics).
    pub fn with_observer(mut self, observer: OperationObserver) -> Self {
        self.observer = Some(observer);
        self
    }

    fn count(&self, operation: &'static str) {
        if let Some(o) = &self.observer {
            o(operation);
        }
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    pub fn actor(&self) -> &str {
        &self.actor
    }

    pub fn manager(&self) -> &str {
        &self.manager
    }

    /// Create the ledger when missing; on its first creation, import what earlier versions
    /// marked (organizations by their metadata marker, memberships by the budget row the
    /// operator made for them), as this manager's. Returns how many rows were imported.
    pub async fn ensure_ledger(&self) -> Result<usize, EngineError> {
        if !self.store.ensure_ledger().await? {
            return Ok(0);
        }
        let mut imported = 0;
        for (organization_id, owner) in self.store.owned_organizations().await? {
            let Some(key) = parse_owner(&owner) else {
                continue;
            };
            let owned_budget_id = ids::organization_budget_id(&key.namespace, &key.name);
            let observed = self
                .store
                .observe_organization(&organization_id, &owned_budget_id, &owned_budget_id)
                .await?;
            let Some(org) = &observed.organization else {
                continue;
            };
            let created = organization_id == ids::organization_id(&key.namespace, &key.name);
            let policy = if retained_by_marker(&observed) {
                "Retain"
            } else {
                "Delete"
            };
            let owns_budget = org.budget_id == owned_budget_id;
            let changes = legacy::organization_import(
                &self.manager,
                &owner,
                org,
                created,
                policy,
                owns_budget.then_some(owned_budget_id.as_str()),
            );
            self.store.apply(&changes, &self.actor).await?;
            imported += 1;
        }
        for m in self.store.owned_memberships(&self.actor).await? {
            let changes = legacy::membership_import(&self.manager, &m);
            self.store.apply(&changes, &self.actor).await?;
            imported += 1;
        }
        Ok(imported)
    }

    /// Read the rows of one organization and its ledger entries, and plan the changes.
    pub async fn plan_organization(
        &self,
        desired: &DesiredOrganization,
    ) -> Result<ObjectPlan, EngineError> {
        self.count("observe");
        let observed = self
            .store
            .observe_organization(
                &desired.organization_id,
                desired.budget.budget_id(),
                &desired.owned_budget_id,
            )
            .await?;
        plan_organization(desired, &observed, &self.manager)
    }

    /// Plan what deleting the Organization `key` does to the rows the ledger says it manages
    /// (see [`plan_delete_organization`]). Takes ids only: a finalizer or a prune knows them
    /// even when the spec no longer validates. `organization_id` is used for a resource an
    /// earlier version marked and no ledger entry names yet.
    pub async fn plan_delete_organization(
        &self,
        key: &ObjectKey,
        organization_id: &str,
        retain: bool,
    ) -> Result<ObjectPlan, EngineError> {
        self.count("observe");
        let resource = owner_string(key);
        let owned_budget_id = ids::organization_budget_id(&key.namespace, &key.name);
        let entries = self
            .store
            .ledger_of_resource(&resource, &self.manager)
            .await?;
        let organization_id = entries
            .iter()
            .find(|e| e.row_key.starts_with("organization/"))
            .and_then(|e| e.organization_id.clone())
            .unwrap_or_else(|| organization_id.to_string());
        let observed = self
            .store
            .observe_organization(&organization_id, &owned_budget_id, &owned_budget_id)
            .await?;
        let plan = if entries.is_empty() {
            if retain {
                return Ok(ObjectPlan {
                    kind: "Organization",
                    key: Some(key.clone()),
                    ..Default::default()
                });
            }
            plan_delete_legacy_organization(key, &owned_budget_id, &observed)
        } else {
            plan_delete_organization(key, &entries, &observed, retain)
        };
        self.count_dependents(plan).await
    }

    /// Fill in what each organization delete of `plan` takes with it (teams, keys,
    /// memberships), so the plan, the events and the logs name the counts, a delete with teams
    /// or keys can wait for an opt-in, and the write removes nothing it did not name.
    async fn count_dependents(&self, mut plan: ObjectPlan) -> Result<ObjectPlan, EngineError> {
        for change in &mut plan.changes {
            if let Change::DeleteOrganization {
                organization_id,
                dependents,
                ..
            } = change
            {
                *dependents = self.store.organization_dependents(organization_id).await?;
            }
        }
        Ok(plan)
    }

    /// Read what a membership needs (and the member's ledger entries) and plan it.
    pub async fn plan_member(
        &self,
        desired: &DesiredMember,
        organization_id: &str,
        organization_pending: bool,
    ) -> Result<ObjectPlan, EngineError> {
        self.count("observe");
        let resource = desired.resource();
        let observed = self
            .store
            .observe_member(&MemberLookup {
                organization_id,
                user_id: desired.user_id.as_deref(),
                email: desired.email.as_deref(),
                own_budget_id: &desired.budget_id,
                resource: &resource,
                manager: &self.manager,
                rule: Some(users::RULE),
            })
            .await?;
        plan_member(
            desired,
            organization_id,
            organization_pending,
            &observed,
            &MemberContext {
                actor: &self.actor,
                manager: &self.manager,
                new_user: &self.new_user,
            },
        )
    }

    /// Plan what deleting the OrganizationMember `key` does (see [`plan_delete_member`]).
    pub async fn plan_delete_member(
        &self,
        key: &ObjectKey,
        retain: bool,
    ) -> Result<ObjectPlan, EngineError> {
        let budget_id = ids::member_budget_id(&key.namespace, &key.name);
        self.plan_delete_member_resource(key, &member_resource(key), &budget_id, retain)
            .await
    }

    async fn plan_delete_member_resource(
        &self,
        key: &ObjectKey,
        resource: &str,
        budget_id: &str,
        retain: bool,
    ) -> Result<ObjectPlan, EngineError> {
        self.count("observe");
        let entries = self
            .store
            .ledger_of_resource(resource, &self.manager)
            .await?;
        let observed = self
            .store
            .observe_member(&MemberLookup {
                own_budget_id: budget_id,
                ..Default::default()
            })
            .await?;
        Ok(plan_delete_member(
            key, budget_id, &entries, &observed, retain,
        ))
    }

    /// Plan the removal of every row this manager's ledger holds for a resource that `keep`
    /// does not declare: members first, then organizations, one plan per resource (each
    /// applies in its own transaction), each as that resource's own delete would do it
    /// (`Retain` releases, created rows go, adopted rows are released). Reads only: a failure
    /// here prunes nothing.
    pub async fn plan_prune(&self, keep: &PruneKeep) -> Result<Vec<ObjectPlan>, EngineError> {
        let keep_resources: HashSet<String> = keep
            .organizations
            .iter()
            .map(owner_string)
            .chain(keep.members.iter().map(member_resource))
            .collect();
        let mut by_resource: BTreeMap<String, Vec<LedgerEntry>> = BTreeMap::new();
        for e in self.store.ledger_of_manager(&self.manager).await? {
            if !keep_resources.contains(&e.resource) {
                by_resource.entry(e.resource.clone()).or_default().push(e);
            }
        }
        let mut members = Vec::new();
        let mut organizations = Vec::new();
        for (resource, entries) in by_resource {
            let retain = entries.iter().any(|e| e.deletion_policy == "Retain");
            if let Some(rest) = resource.strip_prefix("OrganizationMember/") {
                let (key, budget_id) = match rest.strip_prefix("legacy:") {
                    Some(budget_id) => (ObjectKey::new("", rest), budget_id.to_string()),
                    None => {
                        let key = parse_key(rest).unwrap_or_else(|| ObjectKey::new("", rest));
                        let budget_id = ids::member_budget_id(&key.namespace, &key.name);
                        (key, budget_id)
                    }
                };
                let mut plan = self
                    .plan_delete_member_resource(&key, &resource, &budget_id, retain)
                    .await?;
                plan.kind = "OrganizationMember (pruned)";
                if !plan.is_empty() {
                    members.push(plan);
                }
            } else if let Some(key) = parse_owner(&resource) {
                let owned_budget_id = ids::organization_budget_id(&key.namespace, &key.name);
                let organization_id = entries
                    .iter()
                    .find_map(|e| e.organization_id.clone())
                    .unwrap_or_default();
                self.count("observe");
                let observed = self
                    .store
                    .observe_organization(&organization_id, &owned_budget_id, &owned_budget_id)
                    .await?;
                let mut plan = self
                    .count_dependents(plan_delete_organization(&key, &entries, &observed, retain))
                    .await?;
                plan.kind = "Organization (pruned)";
                if !plan.is_empty() {
                    organizations.push(plan);
                }
            }
        }
        members.extend(organizations);
        Ok(members)
    }

    /// Apply one object's plan in one transaction. An empty plan touches nothing.
    pub async fn apply(&self, plan: &ObjectPlan) -> Result<(), EngineError> {
        self.apply_changes(plan).await.map(|_| ())
    }

    /// Apply one object's plan and return it as written: a user the plan creates that another
    /// writer created since the plan read is left out (it was found, not created), so what a
    /// run reports is what it wrote. A row the plan creates that another writer created in
    /// the meantime fails the transaction ([`crate::error::StoreError::Stale`]): plan again.
    pub async fn apply_written(&self, mut plan: ObjectPlan) -> Result<ObjectPlan, EngineError> {
        let applied = self.apply_changes(&plan).await?;
        for index in applied.unchanged.into_iter().rev() {
            plan.changes.remove(index);
        }
        Ok(plan)
    }

    async fn apply_changes(&self, plan: &ObjectPlan) -> Result<crate::store::Applied, EngineError> {
        if plan.changes.is_empty() {
            return Ok(Default::default());
        }
        self.count("apply");
        let applied = self.store.apply(&plan.changes, &self.actor).await?;
        if plan.changes.iter().any(|c| {
            matches!(
                c,
                Change::CreateMembership(_) | Change::DeleteMembership { .. }
            )
        }) {
            self.membership_writes
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(applied)
    }

    /// Spend, budget and member count, for status. The counts come from one grouped read,
    /// shared by every organization until it is older than the configured age.
    pub async fn organization_usage(
        &self,
        organization_id: &str,
    ) -> Result<Option<OrganizationUsage>, EngineError> {
        self.count("usage");
        let Some(mut usage) = self.store.organization_usage(organization_id).await? else {
            return Ok(None);
        };
        let counts = {
            let mut cached = self.member_counts.lock().await;
            let writes = self
                .membership_writes
                .load(std::sync::atomic::Ordering::Relaxed);
            match cached.as_ref() {
                Some(c)
                    if c.read_at.elapsed() < self.counts_max_age
                        && (c.writes_seen == writes
                            || c.read_at.elapsed() < COUNTS_AFTER_WRITES) =>
                {
                    c.counts.clone()
                }
                _ => {
                    self.count("member_counts");
                    let read_at = std::time::Instant::now();
                    let counts = std::sync::Arc::new(self.store.member_counts().await?);
                    *cached = Some(MemberCounts {
                        read_at,
                        writes_seen: writes,
                        counts: counts.clone(),
                    });
                    counts
                }
            }
        };
        usage.member_count = counts.get(organization_id).copied().unwrap_or(0);
        Ok(Some(usage))
    }
}
