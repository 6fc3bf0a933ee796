//! `plan` and `apply` on a folder of manifests, without a cluster: the same engine the
//! controller uses, one transaction per object, organizations before members.
//!
//! [`run`] takes a [`ManifestSet`] that has been read, then for each object plans it and
//! (with `apply`) applies it before the next is planned (a member planned after an earlier
//! one created its user sees that user), records the outcome in the report, and finally
//! prunes, but only when every input was read, planned and applied without error.

use std::collections::HashMap;

use indicatif::{ProgressBar, ProgressStyle};

use crate::cli::manifest::{DEFAULT_NAMESPACE, Loaded, ManifestError, ManifestSet, Source};
use crate::crd::{Organization, OrganizationMember};
use crate::engine::{
    DesiredMember, DesiredOrganization, Engine, ObjectKey, ObjectPlan, OrganizationTarget,
    PruneKeep,
};
use crate::error::EngineError;
use crate::store::{Change, Store};

/// What to do with the plans.
#[derive(Clone, Copy, Debug, Default)]
pub struct RunOptions {
    /// Write the changes (`apply`); otherwise only plan.
    pub apply: bool,
    /// Also delete rows the operator owns that no manifest declares any more.
    pub prune: bool,
    /// Show a progress bar (the caller decides: only on a terminal, for large runs).
    pub progress: bool,
}

/// The outcome of a run.
#[derive(Debug, Default)]
pub struct RunReport {
    /// Plans with at least one change, in the order they were (or would be) applied.
    pub plans: Vec<ObjectPlan>,
    /// Objects that failed, each with its file, object and field.
    pub errors: Vec<ManifestError>,
    /// Objects read.
    pub objects: usize,
    /// Why `--prune` did not run at all, when it was asked for and refused.
    pub prune_refused: Option<String>,
}

impl RunReport {
    /// Counts of created, changed and deleted rows across all plans.
    pub fn counts(&self) -> (usize, usize, usize) {
        let mut c = (0, 0, 0);
        for change in self.plans.iter().flat_map(|p| &p.changes) {
            match change {
                Change::CreateBudget(_)
                | Change::CreateOrganization(_)
                | Change::CreateUser { .. }
                | Change::CreateMembership(_) => c.0 += 1,
                Change::UpdateBudget { .. }
                | Change::UpdateOrganization { .. }
                | Change::UpdateMembership { .. } => c.1 += 1,
                Change::DeleteBudget { .. }
                | Change::DeleteOrganization { .. }
                | Change::DeleteMembership { .. } => c.2 += 1,
                Change::Claim { .. } | Change::Release { .. } => {}
            }
        }
        c
    }

    /// True when a plan writes LiteLLM's rows (ledger-only claims, such as adopting rows
    /// that already match, are not changes: `plan` exits 0 for them).
    pub fn has_changes(&self) -> bool {
        self.plans.iter().any(ObjectPlan::changes_rows)
    }
}

/// Plan (and with `apply`, write) every object of the set, then prune if asked and safe.
pub async fn run<S: Store>(
    engine: &Engine<S>,
    set: &ManifestSet,
    options: RunOptions,
) -> RunReport {
    let mut run = Run::new(engine, options, set.len());
    for loaded in &set.organizations {
        run.organization(loaded).await;
    }
    for loaded in &set.members {
        run.member(loaded).await;
    }
    run.progress.finish_and_clear();
    if options.prune {
        match prune_refusal(set, &run.report) {
            Some(reason) => run.report.prune_refused = Some(reason),
            None => run.prune(&declared(set)).await,
        }
    }
    run.report
}

/// Why prune must not run: any input that was not read, validated, planned or applied may
/// be an object whose rows prune would otherwise delete.
fn prune_refusal(set: &ManifestSet, report: &RunReport) -> Option<String> {
    let failures = set.errors.len() + report.errors.len();
    (failures > 0).then(|| {
        format!(
            "prune refused: {failures} error(s) above (an object that was not read or planned would be deleted); nothing was deleted, fix the errors and run again"
        )
    })
}

/// Where an organization stands after its own step, for the members that point at it.
#[derive(Clone)]
struct OrgOutcome {
    organization_id: String,
    /// Not in the database yet (plan only: it would be created first).
    pending: bool,
    failed: bool,
}

/// The state of one run: the report so far and what later objects need to know.
struct Run<'a, S> {
    engine: &'a Engine<S>,
    options: RunOptions,
    report: RunReport,
    progress: ProgressBar,
    organizations: HashMap<ObjectKey, OrgOutcome>,
    claimed_organization_ids: HashMap<String, ObjectKey>,
    claimed_memberships: HashMap<(String, String), ObjectKey>,
}

impl<'a, S: Store> Run<'a, S> {
    fn new(engine: &'a Engine<S>, options: RunOptions, objects: usize) -> Self {
        let progress = if options.progress {
            let bar = ProgressBar::new(objects as u64);
            if let Ok(style) =
                ProgressStyle::with_template("{bar:40} {pos}/{len} objects {elapsed} {msg}")
            {
                bar.set_style(style);
            }
            bar
        } else {
            ProgressBar::hidden()
        };
        Self {
            engine,
            options,
            report: RunReport {
                objects,
                ..Default::default()
            },
            progress,
            organizations: HashMap::new(),
            claimed_organization_ids: HashMap::new(),
            claimed_memberships: HashMap::new(),
        }
    }

    /// Plan, apply and record one organization.
    async fn organization(&mut self, loaded: &Loaded<Organization>) {
        self.progress.inc(1);
        let key = key_of(&loaded.object.metadata);
        let result = match self.plan_organization(&key, loaded).await {
            Ok(plan) => self.apply(plan).await,
            Err(e) => Err(e),
        };
        let outcome = match &result {
            Ok(plan) => OrgOutcome {
                organization_id: plan.organization_id.clone().unwrap_or_default(),
                pending: !self.options.apply
                    && plan
                        .changes
                        .iter()
                        .any(|c| matches!(c, Change::CreateOrganization(_))),
                failed: false,
            },
            Err(_) => OrgOutcome {
                organization_id: String::new(),
                pending: false,
                failed: true,
            },
        };
        self.organizations.insert(key.clone(), outcome);
        self.record(&loaded.source, "Organization", &key, result);
    }

    async fn plan_organization(
        &mut self,
        key: &ObjectKey,
        loaded: &Loaded<Organization>,
    ) -> Result<ObjectPlan, EngineError> {
        let desired =
            DesiredOrganization::from_spec(key.clone(), &loaded.object.spec, self.engine.actor())?;
        if let Some(other) = self.claimed_organization_ids.get(&desired.organization_id) {
            return Err(EngineError::Conflict(format!(
                "organization {} is already claimed by Organization {other} in these manifests",
                desired.organization_id
            )));
        }
        self.claimed_organization_ids
            .insert(desired.organization_id.clone(), key.clone());
        self.engine.plan_organization(&desired).await
    }

    /// Plan, apply and record one member.
    async fn member(&mut self, loaded: &Loaded<OrganizationMember>) {
        self.progress.inc(1);
        let key = key_of(&loaded.object.metadata);
        let result = match self.plan_member(&key, loaded).await {
            Ok(plan) => self.apply(plan).await,
            Err(e) => Err(e),
        };
        self.record(&loaded.source, "OrganizationMember", &key, result);
    }

    async fn plan_member(
        &mut self,
        key: &ObjectKey,
        loaded: &Loaded<OrganizationMember>,
    ) -> Result<ObjectPlan, EngineError> {
        let desired = DesiredMember::from_spec(key.clone(), &loaded.object.spec)?;
        let (organization_id, pending) = match &desired.organization {
            OrganizationTarget::Id(id) => (id.clone(), false),
            OrganizationTarget::Resource(name) => {
                let org_key = ObjectKey::new(key.namespace.clone(), name.clone());
                match self.organizations.get(&org_key) {
                    None => {
                        return Err(EngineError::OrganizationNotFound(format!(
                            "spec.organizationRef.name: Organization {org_key} is not among the manifests"
                        )));
                    }
                    Some(o) if o.failed => {
                        return Err(EngineError::OrganizationNotReady(format!(
                            "Organization {org_key} has errors (see above)"
                        )));
                    }
                    Some(o) => (o.organization_id.clone(), o.pending),
                }
            }
        };
        let plan = self
            .engine
            .plan_member(&desired, &organization_id, pending)
            .await?;
        let pair = (
            plan.user_id.clone().unwrap_or_default(),
            organization_id.clone(),
        );
        if let Some(other) = self.claimed_memberships.get(&pair) {
            return Err(EngineError::Conflict(format!(
                "user {} in organization {} is already claimed by OrganizationMember {other}",
                pair.0, pair.1
            )));
        }
        self.claimed_memberships.insert(pair, key.clone());
        Ok(plan)
    }

    /// Write a plan when the run applies; a plan-only run passes it through.
    async fn apply(&self, plan: ObjectPlan) -> Result<ObjectPlan, EngineError> {
        if self.options.apply {
            self.engine.apply(&plan).await?;
        }
        Ok(plan)
    }

    /// Put an object's outcome in the report.
    fn record(
        &mut self,
        source: &Source,
        kind: &str,
        key: &ObjectKey,
        result: Result<ObjectPlan, EngineError>,
    ) {
        match result {
            Ok(plan) if !plan.is_empty() => self.report.plans.push(plan),
            Ok(_) => {}
            Err(err) => {
                self.report
                    .errors
                    .push(object_error(Some(source), &format!("{kind} {key}"), &err))
            }
        }
    }

    /// Delete rows the operator owns that no manifest declares: memberships first, then
    /// organizations (each cascade in one transaction). Organizations whose marker says
    /// `Retain` are left alone. The engine plans every delete before any runs (a failed read
    /// prunes nothing); a failed delete is reported with its object and the others still run.
    async fn prune(&mut self, keep: &PruneKeep) {
        let plans = match self.engine.plan_prune(keep).await {
            Ok(plans) => plans,
            Err(e) => {
                self.prune_error("(reading the rows this tool owns; nothing was pruned)", &e);
                return;
            }
        };
        for plan in plans {
            let subject = prune_subject(&plan);
            match self.apply(plan).await {
                Ok(plan) => self.report.plans.push(plan),
                Err(e) => self.prune_error(&subject, &e),
            }
        }
    }

    fn prune_error(&mut self, what: &str, err: &EngineError) {
        self.report
            .errors
            .push(object_error(None, &format!("prune {what}"), err));
    }
}

/// What a prune plan deletes, for an error that must name it.
fn prune_subject(plan: &ObjectPlan) -> String {
    if let Some(key) = &plan.key {
        return format!("Organization {key}");
    }
    match plan.changes.first() {
        Some(Change::DeleteMembership {
            user_id,
            organization_id,
        }) => format!("membership of user {user_id} in organization {organization_id}"),
        Some(Change::DeleteBudget { budget_id }) => format!("member budget {budget_id}"),
        _ => plan.kind.to_string(),
    }
}

/// What the manifests declare: prune keeps exactly these resources' rows.
fn declared(set: &ManifestSet) -> PruneKeep {
    PruneKeep {
        organizations: set
            .organizations
            .iter()
            .map(|o| key_of(&o.object.metadata))
            .collect(),
        members: set
            .members
            .iter()
            .map(|m| key_of(&m.object.metadata))
            .collect(),
    }
}

fn key_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> ObjectKey {
    ObjectKey::new(
        meta.namespace.as_deref().unwrap_or(DEFAULT_NAMESPACE),
        meta.name.as_deref().unwrap_or_default(),
    )
}

fn object_error(source: Option<&Source>, object: &str, err: &EngineError) -> ManifestError {
    let (field, message) = match err {
        EngineError::InvalidSpec { field, message } => (Some(field.clone()), message.clone()),
        other => (None, format!("{}: {other}", other.reason().as_str())),
    };
    ManifestError {
        source: source.cloned(),
        object: Some(object.to_string()),
        field,
        message,
    }
}
