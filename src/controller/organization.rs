//! Reconciling one `Organization`: finalizer, engine, status, events.

use std::sync::Arc;
use std::time::Instant;

use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::{Api, Resource, ResourceExt};

use super::context::{Context, ControllerError, apply_status, public_message};
use super::status::{Outcome, organization_status};
use super::{is_paused, resync_action};
use crate::crd::{DeletionPolicy, FINALIZER, Organization};
use crate::engine::{Change, DesiredBudget, DesiredOrganization, ObjectKey, ids};
use crate::error::EngineError;

const KIND: &str = "Organization";

fn key_of(org: &Organization) -> ObjectKey {
    ObjectKey::new(org.namespace().unwrap_or_default(), org.name_any())
}

/// Entry point for the controller: pause check, then the finalizer helper.
#[tracing::instrument(skip_all, fields(namespace = %org.namespace().unwrap_or_default(), name = %org.name_any()))]
pub async fn reconcile(
    org: Arc<Organization>,
    ctx: Arc<Context>,
) -> Result<Action, ControllerError> {
    if !ctx.leadership.is_leader() {
        // Followers keep their caches warm and write nothing; becoming leader
        // reconciles everything.
        tracing::debug!("not the leader: nothing written");
        return Ok(Action::await_change());
    }
    let started = Instant::now();
    let api: Api<Organization> =
        Api::namespaced(ctx.client.clone(), &org.namespace().unwrap_or_default());
    let result = if is_paused(org.as_ref()) && org.meta().deletion_timestamp.is_none() {
        write_status(&api, &org, &ctx, &Outcome::Paused, None, false).await?;
        Ok(Action::await_change())
    } else {
        let c = ctx.clone();
        finalizer(&api, FINALIZER, org.clone(), |event| async move {
            match event {
                Finalizer::Apply(o) => apply(o, &c).await,
                Finalizer::Cleanup(o) => cleanup(o, &c).await,
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
        ctx.reset_failures(&format!("{KIND}/{}", key_of(&org)));
    }
    result
}

/// Transient failures back off per object; the status was already written by `apply`.
pub fn error_policy(org: Arc<Organization>, err: &ControllerError, ctx: Arc<Context>) -> Action {
    tracing::warn!(namespace = %org.namespace().unwrap_or_default(), name = %org.name_any(), error = %err, "reconcile failed");
    ctx.backoff(&format!("{KIND}/{}", key_of(&org)))
}

async fn write_status(
    api: &Api<Organization>,
    org: &Organization,
    ctx: &Context,
    outcome: &Outcome,
    desired: Option<&DesiredOrganization>,
    with_usage: bool,
) -> Result<(), ControllerError> {
    let usage = match (desired, with_usage) {
        (Some(d), true) => ctx.engine.organization_usage(&d.organization_id).await?,
        _ => None,
    };
    if let Some(u) = &usage {
        ctx.metrics.set_spend(
            &org.namespace().unwrap_or_default(),
            &org.name_any(),
            u.spend,
            u.max_budget,
        );
    }
    let ids = desired.map(|d| (d.organization_id.as_str(), d.budget.budget_id()));
    let next = organization_status(
        org.status.as_ref(),
        org.metadata.generation,
        outcome,
        ids,
        usage.as_ref(),
    );
    ctx.metrics
        .set_condition(KIND, &key_of(org).to_string(), outcome);
    if org.status.as_ref() == Some(&next) {
        return Ok(());
    }
    apply_status(api, &org.name_any(), KIND, &next).await?;
    Ok(())
}

async fn apply(org: Arc<Organization>, ctx: &Context) -> Result<Action, ControllerError> {
    let api: Api<Organization> =
        Api::namespaced(ctx.client.clone(), &org.namespace().unwrap_or_default());
    let desired = match DesiredOrganization::from_spec(key_of(&org), &org.spec, ctx.engine.actor())
    {
        Ok(d) => d,
        Err(e) => return stall(&api, &org, ctx, None, e).await,
    };
    let plan = match ctx.engine.plan_organization(&desired).await {
        Ok(p) => p,
        Err(e) if e.is_transient() => {
            return fail_transient(&api, &org, ctx, Some(&desired), e).await;
        }
        Err(e) => return stall(&api, &org, ctx, Some(&desired), e).await,
    };
    if !ctx.leadership.is_leader() {
        return Ok(Action::await_change());
    }
    if let Err(e) = ctx.engine.apply(&plan).await {
        return fail_transient(&api, &org, ctx, Some(&desired), e).await;
    }
    ctx.metrics.count_writes(KIND, plan.changes.len());
    report_changes(&org, ctx, &plan.changes).await;
    write_status(
        &api,
        &org,
        ctx,
        &Outcome::Synced {
            message: "the database matches the spec".into(),
        },
        Some(&desired),
        true,
    )
    .await?;
    Ok(resync_action(ctx.resync))
}

/// Events for what a reconcile wrote. Changes to an object whose generation was already
/// reconciled are drift: someone changed the rows behind the operator's back.
async fn report_changes(org: &Organization, ctx: &Context, changes: &[Change]) {
    if changes.is_empty() {
        return;
    }
    let reconciled_before = org.status.as_ref().and_then(|s| s.observed_generation)
        == org.metadata.generation
        && org
            .status
            .as_ref()
            .and_then(|s| s.organization_id.as_ref())
            .is_some();
    let created = changes
        .iter()
        .any(|c| matches!(c, Change::CreateOrganization(_)));
    if created && !reconciled_before {
        ctx.event(
            org,
            false,
            "Created",
            "Create",
            "created the organization and its budget in LiteLLM".into(),
        )
        .await;
    } else if reconciled_before {
        let mut fields: Vec<String> = changes.iter().flat_map(Change::changed_fields).collect();
        fields.sort();
        fields.dedup();
        ctx.event(
            org,
            false,
            "DriftCorrected",
            "Update",
            format!(
                "restored {} changed outside the operator",
                fields.join(", ")
            ),
        )
        .await;
    } else {
        let mut fields: Vec<String> = changes.iter().flat_map(Change::changed_fields).collect();
        fields.sort();
        fields.dedup();
        ctx.event(
            org,
            false,
            "Updated",
            "Update",
            format!("updated {}", fields.join(", ")),
        )
        .await;
    }
}

/// Invalid specs and conflicts: report and wait. Invalid specs wait for a spec change;
/// conflicts are re-checked at the resync interval (the other owner may go away).
async fn stall(
    api: &Api<Organization>,
    org: &Organization,
    ctx: &Context,
    desired: Option<&DesiredOrganization>,
    err: EngineError,
) -> Result<Action, ControllerError> {
    let outcome = Outcome::from_error(&err);
    write_status(api, org, ctx, &outcome, desired, false).await?;
    // The recorder aggregates repeats into one event series.
    ctx.event(
        org,
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

/// Database trouble: say so in status (best effort: the API may be down too) and return the
/// error so the error policy backs off.
async fn fail_transient(
    api: &Api<Organization>,
    org: &Organization,
    ctx: &Context,
    desired: Option<&DesiredOrganization>,
    err: EngineError,
) -> Result<Action, ControllerError> {
    let outcome = Outcome::Failed {
        reason: err.reason(),
        message: public_message(&err),
        stalled: false,
    };
    if let Err(e) = write_status(api, org, ctx, &outcome, desired, false).await {
        tracing::debug!(error = %e, "status not written");
    }
    Err(ControllerError::Engine(err))
}

async fn cleanup(org: Arc<Organization>, ctx: &Context) -> Result<Action, ControllerError> {
    if org.spec.deletion_policy == DeletionPolicy::Retain {
        ctx.event(
            org.as_ref(),
            false,
            "Retained",
            "Delete",
            "deletionPolicy Retain: the LiteLLM rows are left in place".into(),
        )
        .await;
        return Ok(Action::await_change());
    }
    let key = key_of(&org);
    // An invalid spec still has rows to clean up: fall back to what status recorded.
    let desired = DesiredOrganization::from_spec(key.clone(), &org.spec, ctx.engine.actor())
        .unwrap_or_else(|_| {
            let organization_id = org
                .status
                .as_ref()
                .and_then(|s| s.organization_id.clone())
                .unwrap_or_else(|| ids::organization_id(&key.namespace, &key.name));
            DesiredOrganization {
                organization_id,
                pinned: true,
                alias: key.name.clone(),
                models: Vec::new(),
                budget: DesiredBudget::Referenced(String::new()),
                owned_budget_id: ids::organization_budget_id(&key.namespace, &key.name),
                metadata: Default::default(),
                deletion_policy: DeletionPolicy::Delete,
                key: key.clone(),
            }
        });
    let plan = ctx.engine.plan_delete_organization(&desired).await?;
    ctx.engine.apply(&plan).await?;
    if !plan.is_empty() {
        ctx.event(
            org.as_ref(),
            false,
            "Deleted",
            "Delete",
            "deleted the organization, its teams, memberships, keys and budget from LiteLLM".into(),
        )
        .await;
    }
    Ok(Action::await_change())
}
