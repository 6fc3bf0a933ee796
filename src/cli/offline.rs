//! `plan` and `apply` on a folder of manifests, without a cluster: the same engine the
//! controller uses, one transaction per object, organizations before members.

use std::collections::HashMap;

use indicatif::{ProgressBar, ProgressStyle};

use crate::cli::manifest::{DEFAULT_NAMESPACE, ManifestError, ManifestSet, Source};
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
            }
        }
        c
    }

    pub fn has_changes(&self) -> bool {
        !self.plans.is_empty()
    }
}

fn key_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> ObjectKey {
    ObjectKey::new(
        meta.namespace.as_deref().unwrap_or(DEFAULT_NAMESPACE),
        meta.name.as_deref().unwrap_or_default(),
    )
}

fn object_error(source: &Source, kind: &str, key: &ObjectKey, err: &EngineError) -> ManifestError {
    let (field, message) = match err {
        EngineError::InvalidSpec { field, message } => (Some(field.clone()), message.clone()),
        other => (None, format!("{}: {other}", other.reason().as_str())),
    };
    ManifestError {
        source: Some(source.clone()),
        object: Some(format!("{kind} {key}")),
        field,
        message,
    }
}

/// Where an organization stands after its own step, for the members that point at it.
#[derive(Clone)]
struct OrgOutcome {
    organization_id: String,
    /// Not in the database yet (plan only: it would be created first).
    pending: bool,
    failed: bool,
}

/// Plan (and with `apply`, write) every object of the set.
pub async fn run<S: Store>(
    engine: &Engine<S>,
    set: &ManifestSet,
    options: RunOptions,
) -> RunReport {
    let mut report = RunReport {
        objects: set.len(),
        ..Default::default()
    };
    let bar = if options.progress {
        let bar = ProgressBar::new(set.len() as u64);
        if let Ok(style) =
            ProgressStyle::with_template("{bar:40} {pos}/{len} objects {elapsed} {msg}")
        {
            bar.set_style(style);
        }
        bar
    } else {
        ProgressBar::hidden()
    };

    let mut orgs: HashMap<ObjectKey, OrgOutcome> = HashMap::new();
    let mut claimed_org_ids: HashMap<String, ObjectKey> = HashMap::new();
    let mut keep = PruneKeep::default();
    for loaded in &set.organizations {
        bar.inc(1);
        let key = key_of(&loaded.object.metadata);
        keep.organizations.insert(key.clone());
        let result = async {
            let desired =
                DesiredOrganization::from_spec(key.clone(), &loaded.object.spec, engine.actor())?;
            if let Some(other) = claimed_org_ids.get(&desired.organization_id) {
                return Err(EngineError::Conflict(format!(
                    "organization {} is already claimed by Organization {other} in these manifests",
                    desired.organization_id
                )));
            }
            claimed_org_ids.insert(desired.organization_id.clone(), key.clone());
            let plan = engine.plan_organization(&desired).await?;
            if options.apply {
                engine.apply(&plan).await?;
            }
            Ok::<_, EngineError>(plan)
        }
        .await;
        match result {
            Ok(plan) => {
                let pending = plan
                    .changes
                    .iter()
                    .any(|c| matches!(c, Change::CreateOrganization(_)))
                    && !options.apply;
                orgs.insert(
                    key,
                    OrgOutcome {
                        organization_id: plan.organization_id.clone().unwrap_or_default(),
                        pending,
                        failed: false,
                    },
                );
                if !plan.is_empty() {
                    report.plans.push(plan);
                }
            }
            Err(err) => {
                report
                    .errors
                    .push(object_error(&loaded.source, "Organization", &key, &err));
                orgs.insert(
                    key,
                    OrgOutcome {
                        organization_id: String::new(),
                        pending: false,
                        failed: true,
                    },
                );
            }
        }
    }

    let mut claimed_memberships: HashMap<(String, String), ObjectKey> = HashMap::new();
    for loaded in &set.members {
        bar.inc(1);
        let key = key_of(&loaded.object.metadata);
        keep.members.insert(key.clone());
        let result = async {
            let desired = DesiredMember::from_spec(key.clone(), &loaded.object.spec)?;
            let (organization_id, pending) = match &desired.organization {
                OrganizationTarget::Id(id) => (id.clone(), false),
                OrganizationTarget::Resource(name) => {
                    let org_key = ObjectKey::new(key.namespace.clone(), name.clone());
                    match orgs.get(&org_key) {
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
            let plan = engine
                .plan_member(&desired, &organization_id, pending)
                .await?;
            let pair = (
                plan.user_id.clone().unwrap_or_default(),
                organization_id.clone(),
            );
            if let Some(other) = claimed_memberships.get(&pair) {
                return Err(EngineError::Conflict(format!(
                    "user {} in organization {} is already claimed by OrganizationMember {other}",
                    pair.0, pair.1
                )));
            }
            claimed_memberships.insert(pair, key.clone());
            if options.apply {
                engine.apply(&plan).await?;
            }
            Ok::<_, EngineError>(plan)
        }
        .await;
        match result {
            Ok(plan) if !plan.is_empty() => report.plans.push(plan),
            Ok(_) => {}
            Err(err) => report.errors.push(object_error(
                &loaded.source,
                "OrganizationMember",
                &key,
                &err,
            )),
        }
    }
    bar.finish_and_clear();

    if options.prune
        && let Err(err) = prune(engine, &keep, options, &mut report).await
    {
        report.errors.push(ManifestError {
            source: None,
            object: None,
            field: None,
            message: format!("prune: {err}"),
        });
    }
    report
}

/// Delete rows the operator owns that no manifest declares: memberships first, then
/// organizations, each in its own transaction. Organizations whose marker says `Retain` are
/// left alone.
async fn prune<S: Store>(
    engine: &Engine<S>,
    keep: &PruneKeep,
    options: RunOptions,
    report: &mut RunReport,
) -> Result<(), EngineError> {
    for plan in engine.plan_prune(keep).await? {
        if options.apply {
            engine.apply(&plan).await?;
        }
        report.plans.push(plan);
    }
    Ok(())
}
