//! The one reconcile driver both kinds share: leadership and pause checks, kube-runtime's
//! `finalizer()` helper, the engine, status, events, metrics and requeues. A kind brings only
//! what is its own through [`Reconciled`]: how it plans, what its status holds, how its events
//! read, which rows its delete removes.

use std::fmt::Debug;
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use k8s_openapi::NamespaceResourceScope;
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::context::{Context, ControllerError};
use super::raw::{DeleteTarget, Raw};
use super::status::{Outcome, Spending, apply_outcome, budget_crossings, own_status};
use super::{is_paused, resync_action};
use crate::crd::{ConditionReason, DeletionPolicy, FINALIZER};
use crate::engine::{ObjectKey, ObjectPlan};
use crate::error::{EngineError, NextStep};
use crate::store::Change;

/// What one kind brings to the shared driver.
pub trait Reconciled:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + Debug
    + DeserializeOwned
    + Serialize
    + Send
    + Sync
    + 'static
{
    /// The kind's name in events, metrics and status writes.
    const KIND: &'static str;
    /// The note of the event published when the delete cascade ran.
    const DELETED_NOTE: &'static str;
    /// Who spends, in budget events ("the organization").
    const SPENDER: &'static str;
    /// The `status` subresource.
    type Status: Clone + PartialEq + Serialize + Send + Sync;
    /// What a successful reconcile reports in status (ids, figures read back).
    type Synced: Send + Sync;

    fn current_status(&self) -> Option<&Self::Status>;
    /// True when `err` is a wait worth not writing to status yet (see the member's).
    fn waits_quietly(&self, _err: &EngineError, _ctx: &Context) -> bool {
        false
    }
    /// True when this generation was synced before: a write now corrects drift.
    fn synced_before(&self) -> bool;
    /// Validate, resolve and plan against the database (reads only).
    fn plan(
        &self,
        ctx: &Context,
    ) -> impl Future<Output = Result<(ObjectPlan, Self::Synced), EngineError>> + Send;
    /// After the plan is applied: read back what status mirrors (default: nothing).
    fn read_back(
        &self,
        _ctx: &Context,
        _synced: &mut Self::Synced,
    ) -> impl Future<Output = Result<(), EngineError>> + Send {
        async { Ok(()) }
    }
    /// The `Ready` message after a successful reconcile.
    fn synced_message(&self, synced: &Self::Synced) -> String;
    /// The event note when `plan` creates the object's own row, `None` when it does not.
    fn created_note(&self, plan: &ObjectPlan) -> Option<String>;
    /// The status after `outcome` (`synced` only after a successful reconcile).
    fn next_status(&self, outcome: &Outcome, synced: Option<&Self::Synced>) -> Self::Status;
    /// What a status says of spend and budgets, to tell when a threshold was crossed.
    fn spending(status: &Self::Status) -> Spending;
    /// Plan the removal of the rows the object `key` owns, by id. Reads only what a delete
    /// needs, so it works whatever the rest of the spec says now.
    fn plan_delete(
        key: &ObjectKey,
        target: &DeleteTarget,
        ctx: &Context,
    ) -> impl Future<Output = Result<ObjectPlan, EngineError>> + Send;
}

/// The object's `namespace/name`.
pub fn key_of<K: Resource>(obj: &K) -> ObjectKey {
    ObjectKey::new(obj.namespace().unwrap_or_default(), obj.name_any())
}

pub(super) fn failure_key<K: Reconciled>(obj: &impl Resource) -> String {
    format!("{}/{}", K::KIND, key_of(obj))
}

/// Entry point for both controllers: leadership and pause checks, then the finalizer helper.
/// The object arrives as the watches cache it ([`Raw`]) and is decoded here, so one object
/// that cannot be decoded is reported on its own.
#[tracing::instrument(skip_all, fields(kind = K::KIND, namespace = %raw.namespace().unwrap_or_default(), name = %raw.name_any()))]
pub async fn reconcile<K: Reconciled>(
    raw: Arc<Raw<K>>,
    ctx: Arc<Context>,
) -> Result<Action, ControllerError> {
    if !ctx.leadership.is_leader() {
        // Followers keep their caches warm and write nothing; becoming leader reconciles
        // everything.
        tracing::debug!("not the leader: nothing written");
        return Ok(Action::await_change());
    }
    let started = Instant::now();
    let _in_flight = ctx.metrics.reconcile_started(K::KIND);
    let api: Api<Raw<K>> =
        Api::namespaced(ctx.client.clone(), &raw.namespace().unwrap_or_default());
    let result = if is_paused(raw.as_ref()) && raw.meta().deletion_timestamp.is_none() {
        match raw.decode() {
            Ok(obj) => write_status(&api, &obj, &ctx, &Outcome::Paused, None)
                .await
                .map(|()| Action::await_change()),
            Err(e) => undecodable(&api, &raw, &ctx, &e).await,
        }
    } else {
        let c = ctx.clone();
        match finalizer(&api, FINALIZER, raw.clone(), |event| async move {
            match event {
                Finalizer::Apply(r) => apply(r, &c).await,
                Finalizer::Cleanup(r) => cleanup(r, &c).await,
            }
        })
        .await
        {
            // A delete that waits (protection, teams or keys) keeps the finalizer by failing
            // the cleanup; it is not a fault: looked at again at the resync, or sooner when
            // the spec changes.
            Err(kube::runtime::finalizer::Error::CleanupFailed(ControllerError::DeleteWaits)) => {
                Ok(resync_action(ctx.resync))
            }
            other => other.map_err(|e| ControllerError::Finalizer(Box::new(e))),
        }
    };
    ctx.metrics.observe_reconcile(
        K::KIND,
        started.elapsed(),
        result.as_ref().err().map(ControllerError::class),
    );
    if result.is_ok() {
        ctx.reset_failures(&failure_key::<K>(raw.as_ref()));
    }
    tracing::debug!(outcome = ?result.as_ref().map_err(ToString::to_string), "reconciled");
    result
}

/// Errors that reach the controller (database and API faults) back off per object.
pub fn error_policy<K: Reconciled>(
    raw: Arc<Raw<K>>,
    err: &ControllerError,
    ctx: Arc<Context>,
) -> Action {
    if err.is_stale_cache() {
        tracing::debug!(kind = K::KIND, namespace = %raw.namespace().unwrap_or_default(), name = %raw.name_any(), error = %err, "finalizer patch on a stale cached object: retried");
    } else {
        tracing::warn!(kind = K::KIND, namespace = %raw.namespace().unwrap_or_default(), name = %raw.name_any(), error = %err, "reconcile failed");
    }
    ctx.backoff(&failure_key::<K>(raw.as_ref()))
}

/// Write the operator's part of the status (its fields and its condition types only, so a
/// condition another controller writes stays that controller's), unless it would not change.
async fn write_status<K: Reconciled>(
    api: &Api<Raw<K>>,
    obj: &K,
    ctx: &Context,
    outcome: &Outcome,
    synced: Option<&K::Synced>,
) -> Result<(), ControllerError> {
    let next = own_status(&obj.next_status(outcome, synced));
    ctx.metrics
        .set_condition(K::KIND, &key_of(obj).to_string(), outcome.label());
    let key = failure_key::<K>(obj);
    let cached = obj.current_status().map(own_status);
    if ctx.written.unchanged(&key, cached.as_ref(), &next) {
        return Ok(());
    }
    ctx.apply_status(api, &obj.name_any(), K::KIND, next.clone())
        .await?;
    ctx.written.record(&key, &next);
    Ok(())
}

/// An object whose spec or status does not decode (written past the CRD's validation, or
/// nested deeper than the decoder allows): stalled with the reason, a warning event naming
/// it, and nothing else touched. It waits for a change to the object.
async fn undecodable<K: Reconciled>(
    api: &Api<Raw<K>>,
    raw: &Raw<K>,
    ctx: &Context,
    err: &serde_json::Error,
) -> Result<Action, ControllerError> {
    let key = key_of(raw);
    let message =
        format!("the object cannot be read ({err}): fix it with kubectl edit, or delete it");
    let outcome = Outcome::Failed {
        reason: ConditionReason::InvalidSpec,
        message: message.clone(),
        stalled: true,
    };
    ctx.metrics
        .set_condition(K::KIND, &key.to_string(), outcome.label());
    let before = raw.conditions();
    let mut conditions = before.clone();
    apply_outcome(&mut conditions, &outcome, raw.metadata.generation);
    if conditions != before {
        let mut status = raw
            .status_as::<serde_json::Map<String, serde_json::Value>>()
            .unwrap_or_default();
        status.insert("observedGeneration".into(), raw.metadata.generation.into());
        status.insert(
            "conditions".into(),
            serde_json::to_value(&conditions).unwrap_or_default(),
        );
        let written = own_status(&status);
        ctx.apply_status(api, &key.name, K::KIND, written.clone())
            .await?;
        ctx.written.record(&failure_key::<K>(raw), &written);
    }
    ctx.event(
        raw,
        true,
        ConditionReason::InvalidSpec.as_str(),
        "Reconcile",
        message,
    )
    .await;
    ctx.metrics
        .count_error(K::KIND, ConditionReason::InvalidSpec.as_str());
    Ok(Action::await_change())
}

async fn apply<K: Reconciled>(raw: Arc<Raw<K>>, ctx: &Context) -> Result<Action, ControllerError> {
    let api: Api<Raw<K>> =
        Api::namespaced(ctx.client.clone(), &raw.namespace().unwrap_or_default());
    let obj: K = match raw.decode() {
        Ok(obj) => obj,
        Err(e) => return undecodable(&api, &raw, ctx, &e).await,
    };
    let (plan, mut synced) = match obj.plan(ctx).await {
        Ok(planned) => planned,
        Err(e) => return fail(&api, &obj, ctx, e).await,
    };
    if !ctx.leadership.is_leader() {
        return Ok(Action::await_change());
    }
    if let Err(e) = ctx.engine.apply(&plan).await {
        return fail(&api, &obj, ctx, e).await;
    }
    ctx.metrics.count_writes(K::KIND, plan.changes.len());
    report_changes(&obj, ctx, &plan).await;
    obj.read_back(ctx, &mut synced).await?;
    let outcome = Outcome::Synced {
        message: obj.synced_message(&synced),
    };
    // Crossings are told from the status as it was and as it is written now, so each is
    // published once: the next resync reads the status this one writes.
    let before = obj.current_status().map(K::spending).unwrap_or_default();
    let after = K::spending(&obj.next_status(&outcome, Some(&synced)));
    write_status(&api, &obj, ctx, &outcome, Some(&synced)).await?;
    for crossing in budget_crossings(K::SPENDER, before, after) {
        ctx.event(
            &obj,
            true,
            crossing.reason.as_str(),
            "Reconcile",
            crossing.note,
        )
        .await;
    }
    ctx.done_waiting(&failure_key::<K>(&obj));
    Ok(resync_action(ctx.resync))
}

/// Every failure takes this one path: status says what happened, and the error's
/// [`NextStep`] decides the rest. Stalled objects get a warning event (aggregated into a series
/// by the recorder); faults that may pass return the error so the error policy backs off.
async fn fail<K: Reconciled>(
    api: &Api<Raw<K>>,
    obj: &K,
    ctx: &Context,
    err: EngineError,
) -> Result<Action, ControllerError> {
    let outcome = Outcome::from_error(&err);
    let step = err.next_step();
    if obj.waits_quietly(&err, ctx) {
        return Ok(Action::requeue(crate::error::ORGANIZATION_WAIT));
    }
    if step == NextStep::Backoff {
        // Best effort: the API may be down too.
        if let Err(e) = write_status(api, obj, ctx, &outcome, None).await {
            tracing::debug!(error = %e, "status not written");
        }
        return Err(ControllerError::Engine(err));
    }
    write_status(api, obj, ctx, &outcome, None).await?;
    if step.is_stalled() {
        if let Outcome::Failed { message, .. } = &outcome {
            ctx.event(
                obj,
                true,
                err.reason().as_str(),
                "Reconcile",
                message.clone(),
            )
            .await;
        }
        ctx.metrics.count_error(K::KIND, err.reason().as_str());
    }
    Ok(match step {
        NextStep::AwaitChange => Action::await_change(),
        NextStep::Resync => resync_action(ctx.resync),
        NextStep::RetryAfter(after) => Action::requeue(after),
        NextStep::Backoff => unreachable!("handled above"),
    })
}

/// Events for what a reconcile wrote. Writes to a generation already synced are drift:
/// someone changed the rows behind the operator's back.
async fn report_changes<K: Reconciled>(obj: &K, ctx: &Context, plan: &ObjectPlan) {
    if plan.changes.is_empty() {
        return;
    }
    let mut fields: Vec<String> = plan
        .changes
        .iter()
        .flat_map(Change::changed_fields)
        .collect();
    fields.sort();
    fields.dedup();
    let (reason, action, note) = match obj.created_note(plan) {
        _ if obj.synced_before() => (
            "DriftCorrected",
            "Update",
            format!(
                "restored {} changed outside the operator",
                fields.join(", ")
            ),
        ),
        Some(note) => ("Created", "Create", note),
        None => (
            "Updated",
            "Update",
            format!("updated {}", fields.join(", ")),
        ),
    };
    ctx.event(obj, false, reason, action, note).await;
}

async fn cleanup<K: Reconciled>(
    raw: Arc<Raw<K>>,
    ctx: &Context,
) -> Result<Action, ControllerError> {
    let key = key_of(raw.as_ref());
    let target = match raw.delete_target() {
        Ok(t) => t,
        Err(e) => {
            // Not knowing the deletion policy, deleting rows would be a guess: wait for a fix.
            let note = format!(
                "spec.deletionPolicy or spec.organizationId cannot be read ({e}): nothing was deleted; fix the object, or remove the finalizer {FINALIZER} to leave the rows in place"
            );
            ctx.event(
                raw.as_ref(),
                true,
                ConditionReason::InvalidSpec.as_str(),
                "Delete",
                note,
            )
            .await;
            return Ok(Action::await_change());
        }
    };
    if target.deletion_protection {
        let message = "spec.deletionProtection is true: the delete waits and nothing is removed from LiteLLM; set it to false to let the delete run".to_string();
        return delete_waits(&raw, ctx, ConditionReason::DeletionProtected, message).await;
    }
    // Retain releases the rows from the ledger (they stay in LiteLLM, free to adopt);
    // Delete removes what the operator created and releases what it adopted.
    let plan = K::plan_delete(&key, &target, ctx).await?;
    if let Some((organization_id, dependents)) = plan.deletes_teams_or_keys()
        && !target.delete_teams_and_keys
    {
        let message = format!(
            "the delete waits: organization {organization_id} has {} that no manifest declares (LiteLLM's delete would remove {dependents}); remove them in LiteLLM first, or set spec.deleteTeamsAndKeys: true to delete them with it",
            dependents.teams_and_keys()
        );
        return delete_waits(&raw, ctx, ConditionReason::DeletionBlocked, message).await;
    }
    ctx.engine.apply(&plan).await?;
    ctx.done_waiting(&failure_key::<K>(raw.as_ref()));
    ctx.written.forget(&failure_key::<K>(raw.as_ref()));
    if target.deletion_policy == DeletionPolicy::Retain {
        ctx.event(
            raw.as_ref(),
            false,
            "Retained",
            "Delete",
            "deletionPolicy Retain: the LiteLLM rows are left in place".into(),
        )
        .await;
    } else if plan.changes_rows() {
        let note = match plan.deleted_dependents() {
            Some(d) => format!("{} (removed with it: {d})", K::DELETED_NOTE),
            None => K::DELETED_NOTE.into(),
        };
        ctx.event(raw.as_ref(), false, "Deleted", "Delete", note)
            .await;
    }
    ctx.metrics.forget(K::KIND, &key.namespace, &key.name);
    Ok(Action::await_change())
}

/// A delete that must wait (the object is protected, or its organization has teams or keys
/// and the spec does not opt in to deleting them): nothing is removed, the finalizer stays,
/// status and a Warning event say why and how to proceed.
async fn delete_waits<K: Reconciled>(
    raw: &Raw<K>,
    ctx: &Context,
    reason: ConditionReason,
    message: String,
) -> Result<Action, ControllerError> {
    let key = key_of(raw);
    if let Ok(obj) = raw.decode() {
        let api: Api<Raw<K>> = Api::namespaced(ctx.client.clone(), &key.namespace);
        let outcome = Outcome::Failed {
            reason,
            message: message.clone(),
            stalled: true,
        };
        if let Err(e) = write_status(&api, &obj, ctx, &outcome, None).await {
            tracing::debug!(error = %e, "status not written");
        }
    }
    ctx.event(raw, true, reason.as_str(), "Delete", message)
        .await;
    Err(ControllerError::DeleteWaits)
}
