//! The reconcile engine: validate (pure) → resolve → plan (pure) → apply (one transaction per
//! object). The controller and the CLI both drive it; it knows nothing of Kubernetes clients.

mod desired;
pub mod ids;
mod plan;
pub mod validate;

pub use desired::{
    DesiredBudget, DesiredMember, DesiredOrganization, ObjectKey, OrganizationTarget,
    metadata_owner, owner_string,
};
pub use plan::{
    Change, ObjectPlan, merge_metadata, plan_delete_member, plan_delete_organization, plan_member,
    plan_organization,
};

use crate::error::EngineError;
use crate::store::{OrganizationUsage, Store};

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

    /// Read the rows of one organization and plan its delete cascade.
    pub async fn plan_delete_organization(
        &self,
        desired: &DesiredOrganization,
    ) -> Result<ObjectPlan, EngineError> {
        self.count("observe");
        let observed = self
            .store
            .observe_organization(&desired.organization_id, &desired.owned_budget_id)
            .await?;
        Ok(plan_delete_organization(desired, &observed))
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

    /// Read a member's rows and plan their removal.
    pub async fn plan_delete_member(
        &self,
        desired: &DesiredMember,
        organization_id: &str,
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
        Ok(plan_delete_member(desired, &observed))
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
