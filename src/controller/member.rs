//! Reconciling one `OrganizationMember`: resolve its organization, then the engine.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Resource, ResourceExt};

use super::context::{Context, ControllerError, apply_status, public_message};
use super::status::{Outcome, is_ready, member_status};
use super::{is_paused, resync_action};
use crate::crd::{DeletionPolicy, FINALIZER, MemberRole, Organization, OrganizationMember};
use crate::engine::{Change, DesiredMember, ObjectKey, ObjectPlan, OrganizationTarget, ids};
use crate::error::EngineError;

const KIND: &str = "OrganizationMember";

/// How long a member waits for its organization before looking again (the organization
/// watch usually wakes it sooner).
const ORGANIZATION_WAIT: Duration = Duration::from_secs(30);

fn key_of(m: &OrganizationMember) -> ObjectKey {
    ObjectKey::new(m.namespace().unwrap_or_default(), m.name_any())
}

/// Entry point for the controller: pause check, then the finalizer helper.
#[tracing::instrument(skip_all, fields(namespace = %member.namespace().unwrap_or_default(), name = %member.name_any()))]
pub async fn reconcile(
    member: Arc<OrganizationMember>,
    ctx: Arc<Context>,
) -> Result<Action, ControllerError> {
    if !ctx.leadership.is_leader() {
        // Followers keep their caches warm and write nothing; becoming leader
        // reconciles everything.
        tracing::debug!("not the leader: nothing written");
        return Ok(Action::await_change());
    }
    let started = Instant::now();
    let api: Api<OrganizationMember> =
        Api::namespaced(ctx.client.clone(), &member.namespace().unwrap_or_default());
    let result = if is_paused(member.as_ref()) && member.meta().deletion_timestamp.is_none() {
        write_status(&api, &member, &ctx, &Outcome::Paused, None).await?;
        Ok(Action::await_change())
    } else {
        let c = ctx.clone();
        finalizer(&api, FINALIZER, member.clone(), |event| async move {
            match event {
                Finalizer::Apply(m) => apply(m, &c).await,
                Finalizer::Cleanup(m) => cleanup(m, &c).await,
            }
        })
        .await
        .map_err(|e| ControllerError::Finalizer(Box::new(e)))
    };
    ctx.metrics.observe_reconcile(
        KIND,
        started.elapsed(),
        result.as_ref().err().map(ControllerError::class),
    );
    if result.is_ok() {
        ctx.reset_failures(&format!("{KIND}/{}", key_of(&member)));
    }
    result
}

/// Transient failures back off per object.
pub fn error_policy(
    member: Arc<OrganizationMember>,
    err: &ControllerError,
    ctx: Arc<Context>,
) -> Action {
    tracing::warn!(namespace = %member.namespace().unwrap_or_default(), name = %member.name_any(), error = %err, "reconcile failed");
    ctx.backoff(&format!("{KIND}/{}", key_of(&member)))
}

async fn write_status(
    api: &Api<OrganizationMember>,
    member: &OrganizationMember,
    ctx: &Context,
    outcome: &Outcome,
    plan: Option<&ObjectPlan>,
) -> Result<(), ControllerError> {
    let ids = plan.and_then(|p| {
        Some((
            p.organization_id.as_deref()?,
            p.user_id.as_deref()?,
            p.user_created,
            p.budget_id.as_deref()?,
        ))
    });
    let next = member_status(
        member.status.as_ref(),
        member.metadata.generation,
        outcome,
        ids,
    );
    ctx.metrics
        .set_condition(KIND, &key_of(member).to_string(), outcome);
    if member.status.as_ref() == Some(&next) {
        return Ok(());
    }
    apply_status(api, &member.name_any(), KIND, &next).await?;
    Ok(())
}

/// The organization id a member points at, or why it cannot be used yet.
fn resolve_organization(desired: &DesiredMember, ctx: &Context) -> Result<String, EngineError> {
    match &desired.organization {
        OrganizationTarget::Id(id) => Ok(id.clone()),
        OrganizationTarget::Resource(name) => {
            let reference = ObjectRef::<Organization>::new(name).within(&desired.key.namespace);
            let Some(org) = ctx.organizations.get(&reference) else {
                return Err(EngineError::OrganizationNotFound(format!(
                    "Organization {}/{name} does not exist",
                    desired.key.namespace
                )));
            };
            if org.meta().deletion_timestamp.is_some() {
                return Err(EngineError::OrganizationNotFound(format!(
                    "Organization {}/{name} is being deleted",
                    desired.key.namespace
                )));
            }
            let status = org.status.as_ref();
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
                    "Organization {}/{name} is not Ready yet",
                    desired.key.namespace
                ))),
            }
        }
    }
}

async fn apply(member: Arc<OrganizationMember>, ctx: &Context) -> Result<Action, ControllerError> {
    let api: Api<OrganizationMember> =
        Api::namespaced(ctx.client.clone(), &member.namespace().unwrap_or_default());
    let desired = match DesiredMember::from_spec(key_of(&member), &member.spec) {
        Ok(d) => d,
        Err(e) => return stall(&api, &member, ctx, e).await,
    };
    let organization_id = match resolve_organization(&desired, ctx) {
        Ok(id) => id,
        Err(e) => {
            let outcome = Outcome::from_error(&e);
            write_status(&api, &member, ctx, &outcome, None).await?;
            return Ok(Action::requeue(ORGANIZATION_WAIT));
        }
    };
    let plan = match ctx
        .engine
        .plan_member(&desired, &organization_id, false)
        .await
    {
        Ok(p) => p,
        Err(e @ (EngineError::InvalidSpec { .. } | EngineError::Conflict(_))) => {
            return stall(&api, &member, ctx, e).await;
        }
        Err(e @ EngineError::OrganizationNotFound(_)) => {
            // The organization resource exists but its row is gone (deleted behind our back
            // or not yet created): wait for the organization's reconcile to restore it.
            write_status(&api, &member, ctx, &Outcome::from_error(&e), None).await?;
            return Ok(Action::requeue(ORGANIZATION_WAIT));
        }
        Err(e) => return fail_transient(&api, &member, ctx, e).await,
    };
    if !ctx.leadership.is_leader() {
        return Ok(Action::await_change());
    }
    if let Err(e) = ctx.engine.apply(&plan).await {
        return fail_transient(&api, &member, ctx, e).await;
    }
    ctx.metrics.count_writes(KIND, plan.changes.len());
    report_changes(&member, ctx, &plan).await;
    let message = format!(
        "user {} is {} in organization {organization_id}",
        plan.user_id.as_deref().unwrap_or_default(),
        desired.role.as_str()
    );
    write_status(
        &api,
        &member,
        ctx,
        &Outcome::Synced { message },
        Some(&plan),
    )
    .await?;
    Ok(resync_action(ctx.resync))
}

/// Invalid specs and conflicts: report and wait. Invalid specs wait for a spec change;
/// conflicts are re-checked at the resync interval (the other owner may go away).
async fn stall(
    api: &Api<OrganizationMember>,
    member: &OrganizationMember,
    ctx: &Context,
    err: EngineError,
) -> Result<Action, ControllerError> {
    write_status(api, member, ctx, &Outcome::from_error(&err), None).await?;
    ctx.event(
        member,
        true,
        err.reason().as_str(),
        "Reconcile",
        public_message(&err),
    )
    .await;
    ctx.metrics.count_error(KIND, err.reason().as_str());
    Ok(match err {
        EngineError::InvalidSpec { .. } => Action::await_change(),
        _ => resync_action(ctx.resync),
    })
}

async fn report_changes(member: &OrganizationMember, ctx: &Context, plan: &ObjectPlan) {
    if plan.changes.is_empty() {
        return;
    }
    let reconciled_before = member.status.as_ref().and_then(|s| s.observed_generation)
        == member.metadata.generation
        && member
            .status
            .as_ref()
            .and_then(|s| s.user_id.as_ref())
            .is_some();
    let mut fields: Vec<String> = plan
        .changes
        .iter()
        .flat_map(Change::changed_fields)
        .collect();
    fields.sort();
    fields.dedup();
    let created = plan
        .changes
        .iter()
        .any(|c| matches!(c, Change::CreateMembership(_)));
    let (reason, note) = if reconciled_before {
        (
            "DriftCorrected",
            format!(
                "restored {} changed outside the operator",
                fields.join(", ")
            ),
        )
    } else if created {
        (
            "Created",
            if plan.user_created {
                "created the user and the membership in LiteLLM".to_string()
            } else {
                "created the membership in LiteLLM".to_string()
            },
        )
    } else {
        ("Updated", format!("updated {}", fields.join(", ")))
    };
    ctx.event(member, false, reason, "Update", note).await;
}

async fn fail_transient(
    api: &Api<OrganizationMember>,
    member: &OrganizationMember,
    ctx: &Context,
    err: EngineError,
) -> Result<Action, ControllerError> {
    let outcome = Outcome::Failed {
        reason: err.reason(),
        message: public_message(&err),
        stalled: false,
    };
    if let Err(e) = write_status(api, member, ctx, &outcome, None).await {
        tracing::debug!(error = %e, "status not written");
    }
    Err(ControllerError::Engine(err))
}

async fn cleanup(
    member: Arc<OrganizationMember>,
    ctx: &Context,
) -> Result<Action, ControllerError> {
    if member.spec.deletion_policy == DeletionPolicy::Retain {
        return Ok(Action::await_change());
    }
    let key = key_of(&member);
    // Cleanup works from the member's own budget row, so it succeeds whatever the spec or
    // the organization look like now (an organization already deleted is fine).
    let desired = DesiredMember::from_spec(key.clone(), &member.spec).unwrap_or(DesiredMember {
        budget_id: ids::member_budget_id(&key.namespace, &key.name),
        organization: OrganizationTarget::Id(String::new()),
        user_id: None,
        email: None,
        role: MemberRole::InternalUser,
        max_budget: None,
        deletion_policy: DeletionPolicy::Delete,
        key: key.clone(),
    });
    let organization_id = member
        .status
        .as_ref()
        .and_then(|s| s.organization_id.clone())
        .unwrap_or_default();
    let plan = ctx
        .engine
        .plan_delete_member(&desired, &organization_id)
        .await?;
    ctx.engine.apply(&plan).await?;
    if !plan.is_empty() {
        ctx.event(
            member.as_ref(),
            false,
            "Deleted",
            "Delete",
            "deleted the membership from LiteLLM (the user is kept)".into(),
        )
        .await;
    }
    Ok(Action::await_change())
}
