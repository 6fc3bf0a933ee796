//! The reconcile engine: validate (pure) → resolve → plan (pure) → apply (one transaction per
//! object). The controller and the CLI both drive it; it knows nothing of Kubernetes clients.

mod desired;
pub mod ids;
mod plan;
pub mod validate;

pub use desired::{
    DesiredBudget, DesiredMember, DesiredOrganization, ObjectKey, OrganizationTarget, owner_string,
};
pub use plan::{
    ObjectPlan, merge_metadata, plan_delete_member, plan_delete_organization, plan_member,
    plan_organization, retained_by_marker, same_limits,
};

use std::collections::HashSet;

use crate::error::EngineError;
use crate::store::{OrganizationUsage, Store};

/// The resources a prune keeps: every one the manifest set declares.
#[derive(Clone, Debug, Default)]
pub struct PruneKeep {
    pub organizations: HashSet<ObjectKey>,
    pub members: HashSet<ObjectKey>,
}

/// Default value of `created_by` / `updated_by` and of the ownership marker on budget rows.
pub const DEFAULT_ACTOR: &str = "litellm-org-operator";

/// Called once per database operation (`observe`, `apply`, `usage`), for metrics.
pub type OperationObserver = std::sync::Arc<dyn Fn(&'static str) + Send + Sync>;

/// Drives planning and applying against one store.
pub struct Engine<S> {
    store: S,
    actor: String,
    observer: Option<OperationObserver>,
}

impl<S: Store> Engine<S> {
    /// An engine writing as `actor` (`created_by` / `updated_by`).
    pub fn new(store: S, actor: impl Into<String>) -> Self {
        Self {
            store,
            actor: actor.into(),
            observer: None,
        }
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

    /// Read the rows of one organization and plan the changes.
    pub async fn plan_organization(
        &self,
        desired: &DesiredOrganization,
    ) -> Result<ObjectPlan, EngineError> {
        self.count("observe");
        let observed = self
            .store
            .observe_organization(&desired.organization_id, desired.budget.budget_id())
            .await?;
        plan_organization(desired, &observed)
    }

    /// Read the rows of the organization `key` owns and plan its delete cascade. Takes ids
    /// only: a finalizer or a prune knows them even when the spec no longer validates.
    pub async fn plan_delete_organization(
        &self,
        key: &ObjectKey,
        organization_id: &str,
    ) -> Result<ObjectPlan, EngineError> {
        self.count("observe");
        let owned_budget_id = ids::organization_budget_id(&key.namespace, &key.name);
        let observed = self
            .store
            .observe_organization(organization_id, &owned_budget_id)
            .await?;
        Ok(plan_delete_organization(key, &owned_budget_id, &observed))
    }

    /// Read what a membership needs and plan it.
    pub async fn plan_member(
        &self,
        desired: &DesiredMember,
        organization_id: &str,
        organization_pending: bool,
    ) -> Result<ObjectPlan, EngineError> {
        self.count("observe");
        let observed = self
            .store
            .observe_member(
                organization_id,
                desired.user_id.as_deref(),
                desired.email.as_deref(),
                &desired.budget_id,
            )
            .await?;
        plan_member(
            desired,
            organization_id,
            organization_pending,
            &observed,
            &self.actor,
        )
    }

    /// Read the rows the member `key` owns (found by its budget row) and plan their removal.
    pub async fn plan_delete_member(&self, key: &ObjectKey) -> Result<ObjectPlan, EngineError> {
        let budget_id = ids::member_budget_id(&key.namespace, &key.name);
        self.plan_delete_member_budget(Some(key), &budget_id).await
    }

    async fn plan_delete_member_budget(
        &self,
        key: Option<&ObjectKey>,
        budget_id: &str,
    ) -> Result<ObjectPlan, EngineError> {
        self.count("observe");
        let observed = self.store.observe_member("", None, None, budget_id).await?;
        let mut plan =
            plan_delete_member(key.unwrap_or(&ObjectKey::new("", "")), budget_id, &observed);
        if key.is_none() {
            plan.key = None;
        }
        Ok(plan)
    }

    /// Plan the removal of every row the operator owns that no resource in `keep` declares:
    /// one plan per member budget (its memberships, then the row), then one per organization
    /// (its cascade), so each applies in its own transaction. Organizations whose marker says
    /// `Retain` are left alone. Reads only: a failure here prunes nothing.
    pub async fn plan_prune(&self, keep: &PruneKeep) -> Result<Vec<ObjectPlan>, EngineError> {
        let keep_budgets: HashSet<String> = keep
            .members
            .iter()
            .map(|k| ids::member_budget_id(&k.namespace, &k.name))
            .collect();
        let mut plans = Vec::new();
        let mut budgets: Vec<String> = self
            .store
            .owned_memberships(&self.actor)
            .await?
            .into_iter()
            .map(|m| m.budget_id)
            .filter(|b| !keep_budgets.contains(b))
            .collect();
        budgets.sort();
        budgets.dedup();
        for budget_id in budgets {
            let mut plan = self.plan_delete_member_budget(None, &budget_id).await?;
            plan.kind = "OrganizationMember (pruned)";
            if !plan.is_empty() {
                plans.push(plan);
            }
        }
        for (organization_id, owner) in self.store.owned_organizations().await? {
            let Some(key) = owner
                .strip_prefix("Organization/")
                .and_then(|rest| rest.split_once('/'))
                .map(|(ns, name)| ObjectKey::new(ns, name))
            else {
                continue;
            };
            if keep.organizations.contains(&key) {
                continue;
            }
            self.count("observe");
            let owned_budget_id = ids::organization_budget_id(&key.namespace, &key.name);
            let observed = self
                .store
                .observe_organization(&organization_id, &owned_budget_id)
                .await?;
            if retained_by_marker(&observed) {
                continue;
            }
            let mut plan = plan_delete_organization(&key, &owned_budget_id, &observed);
            plan.kind = "Organization (pruned)";
            if !plan.is_empty() {
                plans.push(plan);
            }
        }
        Ok(plans)
    }

    /// Apply one object's plan in one transaction. An empty plan touches nothing.
    pub async fn apply(&self, plan: &ObjectPlan) -> Result<(), EngineError> {
        if plan.changes.is_empty() {
            return Ok(());
        }
        self.count("apply");
        self.store.apply(&plan.changes, &self.actor).await?;
        Ok(())
    }

    /// Spend, budget and member count, for status.
    pub async fn organization_usage(
        &self,
        organization_id: &str,
    ) -> Result<Option<OrganizationUsage>, EngineError> {
        self.count("usage");
        Ok(self.store.organization_usage(organization_id).await?)
    }
}
