//! What is an `Organization`'s own in a reconcile: its desired rows, its status (ids, spend,
//! budget, member count) and its delete cascade. The driver does the rest.

use crate::controller::context::Context;
use crate::controller::driver::{Reconciled, key_of};
use crate::controller::figures::OrganizationBudget;
use crate::controller::raw::DeleteTarget;
use crate::controller::status::{Outcome, Spending, organization_status};
use crate::controller::tenancy;
use crate::crd::{DeletionPolicy, Organization, OrganizationStatus};
use crate::engine::{DesiredOrganization, ObjectKey, ObjectPlan, ids};
use crate::error::EngineError;
use crate::metrics::BudgetFigures;
use crate::store::{Change, OrganizationUsage};

/// What a synced organization reports.
pub struct SyncedOrganization {
    organization_id: String,
    budget_id: String,
    usage: Option<OrganizationUsage>,
    budget: Option<OrganizationBudget>,
}

impl Reconciled for Organization {
    const KIND: &'static str = "Organization";
    const DELETED_NOTE: &'static str = "deleted the organization and its budget from LiteLLM";
    const SPENDER: &'static str = "the organization";
    type Status = OrganizationStatus;
    type Synced = SyncedOrganization;

    fn current_status(&self) -> Option<&OrganizationStatus> {
        self.status.as_ref()
    }

    fn synced_before(&self) -> bool {
        self.status.as_ref().is_some_and(|s| {
            s.observed_generation == self.metadata.generation && s.organization_id.is_some()
        })
    }

    async fn plan(&self, ctx: &Context) -> Result<(ObjectPlan, SyncedOrganization), EngineError> {
        let desired = DesiredOrganization::from_spec(key_of(self), &self.spec, ctx.engine.actor())?;
        let plan = ctx.engine.plan_organization(&desired).await?;
        // Adopting a row made elsewhere (LiteLLM's UI, another namespace's resource that let
        // go) needs a grant; creating a new one, or keeping one it created, does not.
        if plan.adopted {
            tenancy::check_adoption(
                &ctx.grants,
                &desired.key.namespace,
                &desired.organization_id,
            )?;
        }
        let synced = SyncedOrganization {
            organization_id: desired.organization_id.clone(),
            // The budget the organization points at after the plan (an adopted organization
            // keeps its own when the spec declares none).
            budget_id: plan
                .budget_id
                .clone()
                .unwrap_or_else(|| desired.budget.budget_id().to_string()),
            usage: None,
            budget: None,
        };
        Ok((plan, synced))
    }

    async fn read_back(
        &self,
        ctx: &Context,
        synced: &mut SyncedOrganization,
    ) -> Result<(), EngineError> {
        synced.usage = ctx
            .engine
            .organization_usage(&synced.organization_id)
            .await?;
        ctx.metrics.count_database("usage");
        synced.budget = synced.usage.as_ref().map(OrganizationBudget::from);
        if let Some(u) = &synced.usage {
            let key = key_of(self);
            let figures = BudgetFigures {
                spend: u.spend,
                max_budget: u.max_budget,
                soft_budget: synced.budget.as_ref().and_then(|b| b.soft_budget),
            };
            ctx.metrics
                .set_organization_budget(&key.namespace, &key.name, figures);
        }
        Ok(())
    }

    fn synced_message(&self, _synced: &SyncedOrganization) -> String {
        "the database matches the spec".into()
    }

    fn created_note(&self, plan: &ObjectPlan) -> Option<String> {
        plan.changes
            .iter()
            .any(|c| matches!(c, Change::CreateOrganization(_)))
            .then(|| "created the organization and its budget in LiteLLM".into())
    }

    fn next_status(
        &self,
        outcome: &Outcome,
        synced: Option<&SyncedOrganization>,
    ) -> OrganizationStatus {
        let ids = synced.map(|s| (s.organization_id.as_str(), s.budget_id.as_str()));
        let usage = synced.and_then(|s| s.usage.as_ref());
        let budget = synced.and_then(|s| s.budget.as_ref());
        let current = self.status.as_ref();
        organization_status(
            current,
            self.metadata.generation,
            outcome,
            ids,
            usage,
            budget,
        )
    }

    fn spending(status: &OrganizationStatus) -> Spending {
        Spending::of_organization(status)
    }

    async fn plan_delete(
        key: &ObjectKey,
        target: &DeleteTarget,
        ctx: &Context,
    ) -> Result<ObjectPlan, EngineError> {
        // The id the rows carry: pinned by the spec, else recorded in status, else derived.
        let organization_id = target
            .spec_organization_id
            .clone()
            .or_else(|| target.status_organization_id.clone())
            .unwrap_or_else(|| ids::organization_id(&key.namespace, &key.name));
        ctx.engine
            .plan_delete_organization(
                key,
                &organization_id,
                target.deletion_policy == DeletionPolicy::Retain,
            )
            .await
    }
}
