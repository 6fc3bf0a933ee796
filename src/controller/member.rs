//! What is an `OrganizationMember`'s own in a reconcile: finding its organization (through the
//! shared organization cache), its status (ids, whether the user was created), its event
//! wording, and the rows its delete removes. The driver does the rest.

use kube::Resource;
use kube::runtime::reflector::ObjectRef;

use crate::controller::context::Context;
use crate::controller::driver::{Reconciled, failure_key, key_of};
use crate::controller::figures::MemberFigures;
use crate::controller::raw::{DeleteTarget, Raw};
use crate::controller::status::{Outcome, Spending, is_ready, member_status};
use crate::controller::tenancy;
use crate::crd::{
    DeletionPolicy, Organization, OrganizationMember, OrganizationMemberStatus, OrganizationStatus,
};
use crate::engine::{DesiredMember, ObjectKey, ObjectPlan, OrganizationTarget};
use crate::error::EngineError;
use crate::metrics::BudgetFigures;
use crate::store::Change;
use crate::store::Store;

/// What a synced member reports.
pub struct SyncedMember {
    organization_id: String,
    user_id: String,
    user_created: bool,
    budget_id: Option<String>,
    role: &'static str,
    /// What the plan noted (a user whose email LiteLLM changed), for the Ready message.
    notes: String,
    /// What the membership's rows say once written.
    figures: Option<MemberFigures>,
}

/// The organization id a member points at, or why it cannot be used yet.
fn resolve_organization(desired: &DesiredMember, ctx: &Context) -> Result<String, EngineError> {
    let namespace = &desired.key.namespace;
    let name = match &desired.organization {
        // By id: only what this namespace declares, or what a grant covers.
        OrganizationTarget::Id(id) => {
            tenancy::check_member(&ctx.grants, &ctx.organizations, namespace, id)?;
            return Ok(id.clone());
        }
        OrganizationTarget::Resource(name) => name,
    };
    let reference = ObjectRef::<Raw<Organization>>::new(name).within(namespace);
    let Some(org) = ctx.organizations.get(&reference) else {
        return Err(EngineError::OrganizationNotFound(format!(
            "Organization {namespace}/{name} does not exist"
        )));
    };
    if org.meta().deletion_timestamp.is_some() {
        return Err(EngineError::OrganizationNotFound(format!(
            "Organization {namespace}/{name} is being deleted"
        )));
    }
    let status = org.status_as::<OrganizationStatus>();
    let status = status.as_ref();
    let ready = status.is_some_and(|s| {
        is_ready(
            &s.conditions,
            s.observed_generation,
            org.metadata.generation,
        )
    });
    match status.and_then(|s| s.organization_id.clone()) {
        Some(id) if ready => Ok(id),
        _ => Err(EngineError::OrganizationNotReady(format!(
            "Organization {namespace}/{name} is not Ready yet"
        ))),
    }
}

impl Reconciled for OrganizationMember {
    const KIND: &'static str = "OrganizationMember";
    const DELETED_NOTE: &'static str = "deleted the membership from LiteLLM (the user is kept)";
    const SPENDER: &'static str = "the member";
    type Status = OrganizationMemberStatus;
    type Synced = SyncedMember;

    fn synced_before(&self) -> bool {
        self.status.as_ref().is_some_and(|s| {
            s.observed_generation == self.metadata.generation && s.user_id.is_some()
        })
    }

    async fn plan(&self, ctx: &Context) -> Result<(ObjectPlan, SyncedMember), EngineError> {
        let desired = DesiredMember::from_spec(key_of(self), &self.spec)?;
        let organization_id = resolve_organization(&desired, ctx)?;
        let plan = ctx
            .engine
            .plan_member(&desired, &organization_id, false)
            .await?;
        let synced = SyncedMember {
            user_id: plan.user_id.clone().unwrap_or_default(),
            user_created: plan.user_created,
            budget_id: plan.budget_id.clone(),
            role: desired.role.as_str(),
            organization_id,
            notes: plan.notes.join("; "),
            figures: None,
        };
        Ok((plan, synced))
    }

    async fn read_back(&self, ctx: &Context, synced: &mut SyncedMember) -> Result<(), EngineError> {
        ctx.metrics.count_database("usage");
        synced.figures = ctx
            .engine
            .store()
            .member_figures(&synced.user_id, &synced.organization_id)
            .await?;
        let key = key_of(self);
        let declared = synced
            .figures
            .as_ref()
            .filter(|_| self.spec.max_budget_in_organization.is_some())
            .map(|f| BudgetFigures {
                spend: f.spend,
                max_budget: f.max_budget,
                soft_budget: None,
            });
        ctx.metrics
            .set_member_budget(&key.namespace, &key.name, declared);
        Ok(())
    }

    fn synced_message(&self, synced: &SyncedMember) -> String {
        let mut message = format!(
            "user {} is {} in organization {}",
            synced.user_id, synced.role, synced.organization_id
        );
        if !synced.notes.is_empty() {
            message.push_str(&format!(" ({})", synced.notes));
        }
        message
    }

    fn created_note(&self, plan: &ObjectPlan) -> Option<String> {
        let created = plan
            .changes
            .iter()
            .any(|c| matches!(c, Change::CreateMembership(_)));
        created.then(|| {
            if plan.user_created {
                "created the user and the membership in LiteLLM".into()
            } else {
                "created the membership in LiteLLM".into()
            }
        })
    }

    fn next_status(
        &self,
        outcome: &Outcome,
        synced: Option<&SyncedMember>,
    ) -> OrganizationMemberStatus {
        member_status(
            self.status.as_ref(),
            self.metadata.generation,
            outcome,
            synced.map(|s| {
                (
                    s.organization_id.as_str(),
                    s.user_id.as_str(),
                    s.user_created,
                    s.budget_id.as_deref(),
                )
            }),
            synced.and_then(|s| s.figures.as_ref()),
            self.spec.max_budget_in_organization.is_some(),
        )
    }

    fn spending(status: &OrganizationMemberStatus) -> Spending {
        Spending::of_member(status)
    }

    fn current_status(&self) -> Option<&OrganizationMemberStatus> {
        self.status.as_ref()
    }

    /// A member applied together with its organization (which may not even be in the cache,
    /// or in the database, yet): the organization's Ready wakes it in a moment, so one status
    /// write (Ready) says it all. Until then its status stays the
    /// admission default (observedGeneration -1: in progress to kstatus and Argo CD). The wait
    /// is written as usual once the organization has a status of its own that is not Ready
    /// (paused, stalled, failing) and the member has waited QUIET_WAIT.
    fn waits_quietly(&self, err: &EngineError, ctx: &Context) -> bool {
        let no_status_yet = self
            .status
            .as_ref()
            .is_none_or(|s| s.conditions.is_empty() && s.observed_generation.unwrap_or(-1) < 0);
        let waits_for_organization = matches!(
            err,
            EngineError::OrganizationNotReady(_) | EngineError::OrganizationNotFound(_)
        );
        if !waits_for_organization || !no_status_yet {
            return false;
        }
        let queued = match &self.spec.organization_ref {
            Some(r) => {
                let reference =
                    ObjectRef::<Raw<Organization>>::new(&r.name).within(&key_of(self).namespace);
                ctx.organizations
                    .get(&reference)
                    .is_some_and(|org| org.conditions().is_empty())
            }
            None => false,
        };
        // Recorded either way, so the bound counts from the first wait.
        let within_bound = ctx.quiet_wait(&failure_key::<Self>(self));
        queued || within_bound
    }

    async fn plan_delete(
        key: &ObjectKey,
        target: &DeleteTarget,
        ctx: &Context,
    ) -> Result<ObjectPlan, EngineError> {
        // By the member's own budget row: works whatever the spec or the organization look
        // like now (an organization already deleted is fine).
        ctx.engine
            .plan_delete_member(key, target.deletion_policy == DeletionPolicy::Retain)
            .await
    }
}
