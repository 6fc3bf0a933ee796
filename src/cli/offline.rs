//! `plan` and `apply` on a folder of manifests, without a cluster: the same engine the
//! controller uses, one transaction per object, organizations before members.
//!
//! [`run`] takes a [`ManifestSet`] that has been read and plans the whole set first (claims
//! and conflicts in manifest order, organizations before their members), then plans and
//! applies independent objects concurrently ([`CONCURRENCY`] in flight, one transaction
//! each), and records every outcome in manifest order; finally it prunes, but only when every
//! input was read, planned and applied without error.
//!
//! The outcome is the one a sequential run (each object planned after the previous one was
//! applied) would have: objects that can read what another one writes are applied one after
//! the other, in manifest order, in one group:
//! - organizations that name the same budget row (one owns it, another references it);
//! - members that name or resolve to the same user (by `userId`, by email without regard to
//!   case, or by the user id the member's plan found or would create), so a member sees the
//!   user an earlier member of the run created, and of two members claiming one membership
//!   the earlier one wins.
//!
//! Objects in different groups read and write disjoint rows (their own budget row, their own
//! organization, their own users' memberships), so their order does not matter. Members are
//! first planned all at once against the database as the organizations left it; the first
//! member of each group keeps that plan, later ones are planned again after the earlier ones
//! were applied.

use std::collections::HashMap;

use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};

use crate::cli::manifest::{DEFAULT_NAMESPACE, Loaded, ManifestError, ManifestSet, Source};
use crate::cli::output::count;
use crate::cli::validate::undeclared_organization;
use crate::crd::{Organization, OrganizationMember};
use crate::engine::{
    DesiredMember, DesiredOrganization, Engine, ObjectKey, ObjectPlan, OrganizationTarget,
    PruneKeep,
};
use crate::error::{EngineError, FieldError, StoreError};
use crate::store::{Change, Store};

/// Objects planned or applied at a time. The PostgreSQL store's pool has as many connections;
/// the SQLite store's has fewer, and waits for one (SQLite writes one transaction at a time).
pub const CONCURRENCY: usize = 8;

/// What to do with the plans.
#[derive(Clone, Copy, Debug, Default)]
pub struct RunOptions {
    /// Write the changes (`apply`); otherwise only plan.
    pub apply: bool,
    /// Also delete rows the operator owns that no manifest declares any more.
    pub prune: bool,
    /// Let a prune delete an organization that still has teams or API keys (LiteLLM's whole
    /// cascade); without it such a prune is refused for that organization alone.
    pub delete_teams_and_keys: bool,
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
    /// Without `--prune`, on a run without errors: what `--prune` would delete or release
    /// (rows this manager holds for objects no manifest declares any more), for the hint.
    pub undeclared: Vec<ObjectPlan>,
    /// `--prune` ran (it was asked for and nothing refused it).
    pub pruned: bool,
}

impl RunReport {
    /// Counts of created, changed and deleted rows across all plans.
    pub fn counts(&self) -> (usize, usize, usize) {
        let mut c = (0, 0, 0);
        for change in self.plans.iter().flat_map(|p| &p.changes) {
            match change {
                Change::CreateBudget(_)
                | Change::CopyBudget { .. }
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

    /// The exit code of `plan` and `apply`: 1 when any object failed (`errors`, reading
    /// errors included), else 2 when `plan` has changes to LiteLLM's rows pending, else 0.
    pub fn exit_code(&self, apply: bool, errors: usize) -> u8 {
        if errors > 0 {
            1
        } else if !apply && self.has_changes() {
            2
        } else {
            0
        }
    }

    /// Objects that no manifest declares any more and whose rows this manager holds, by
    /// kind: `(organizations, members)`.
    pub fn undeclared_counts(&self) -> (usize, usize) {
        let organizations = self
            .undeclared
            .iter()
            .filter(|p| p.kind.starts_with("Organization ("))
            .count();
        (organizations, self.undeclared.len() - organizations)
    }

    /// Counts of ledger entries written (claims) and removed (releases) across all plans.
    pub fn ledger_counts(&self) -> (usize, usize) {
        let mut c = (0, 0);
        for change in self.plans.iter().flat_map(|p| &p.changes) {
            match change {
                Change::Claim { .. } => c.0 += 1,
                Change::Release { .. } => c.1 += 1,
                _ => {}
            }
        }
        c
    }

    /// The last line of `plan` and `apply`: what was written (or would be), the ledger
    /// entries too, and the errors; "No changes" only when nothing was, or would be, written
    /// and every object was planned.
    pub fn summary(&self, apply: bool, errors: usize) -> String {
        let (create, change, delete) = self.counts();
        let (claims, releases) = self.ledger_counts();
        let mut ledger = Vec::new();
        if claims > 0 {
            ledger.push(if apply {
                format!(
                    "{} written",
                    count(claims, "ledger entry", "ledger entries")
                )
            } else {
                format!(
                    "{} to write",
                    count(claims, "ledger entry", "ledger entries")
                )
            });
        }
        if releases > 0 {
            ledger.push(if apply {
                format!(
                    "{} released",
                    count(releases, "ledger entry", "ledger entries")
                )
            } else {
                format!(
                    "{} to release",
                    count(releases, "ledger entry", "ledger entries")
                )
            });
        }
        let mut tail: Vec<String> = Vec::new();
        if !ledger.is_empty() {
            tail.push(ledger.join(", "));
        }
        if errors > 0 {
            let errors = count(errors, "error", "errors");
            tail.push(if apply {
                format!("{errors}: nothing written for those")
            } else {
                format!("{errors}: those not planned")
            });
        }
        let tail = if tail.is_empty() {
            String::new()
        } else {
            format!("; {}", tail.join("; "))
        };
        let read = format!("{} read", count(self.objects, "object", "objects"));
        if self.has_changes() {
            let verb = if apply { "Applied" } else { "Plan" };
            format!(
                "{verb}: {create} to create, {change} to change, {delete} to delete{tail} ({read})."
            )
        } else if claims + releases > 0 {
            format!("No changes to LiteLLM's rows{tail} ({read}).")
        } else if errors > 0 {
            let what = if apply {
                "Nothing applied"
            } else {
                "Nothing to change among the objects planned"
            };
            format!("{what}{tail} ({read}).")
        } else {
            format!("No changes ({read}).")
        }
    }
}

/// Plan (and with `apply`, write) every object of the set, then prune if asked and safe.
pub async fn run<S: Store>(
    engine: &Engine<S>,
    set: &ManifestSet,
    options: RunOptions,
) -> RunReport {
    let mut run = Run::new(engine, options, set.len());
    run.organizations(&set.organizations).await;
    run.members(&set.members).await;
    run.progress.finish_and_clear();
    match prune_refusal(set, &run.report) {
        Some(reason) if options.prune => run.report.prune_refused = Some(reason),
        None if options.prune => {
            run.report.pruned = true;
            run.prune(&declared(set)).await
        }
        // The hint only: a failed read shows no hint rather than a wrong one.
        None => run.report.undeclared = engine.plan_prune(&declared(set)).await.unwrap_or_default(),
        Some(_) => {}
    }
    run.report
}

/// `plan` without `apply`: the user `plan` creates, unless an earlier member of the run
/// already creates it (then this member finds it, and `apply` creates it once).
fn user_created_once(
    created: &mut std::collections::HashSet<String>,
    mut plan: ObjectPlan,
) -> ObjectPlan {
    plan.changes.retain(|c| match c {
        Change::CreateUser { user_id, .. } => created.insert(user_id.clone()),
        _ => true,
    });
    plan.user_created &= plan
        .changes
        .iter()
        .any(|c| matches!(c, Change::CreateUser { .. }));
    plan
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
        }
    }

    /// Every organization: claims in manifest order, then plan and apply, groups of
    /// organizations sharing a budget row one after the other, the rest concurrently.
    async fn organizations(&mut self, loaded: &[Loaded<Organization>]) {
        let keys: Vec<ObjectKey> = loaded.iter().map(|l| key_of(&l.object.metadata)).collect();
        let desired: Vec<Result<DesiredOrganization, EngineError>> = loaded
            .iter()
            .zip(&keys)
            .map(|(l, key)| self.claim_organization(key, l))
            .collect();
        let budget_keys: Vec<Vec<String>> = desired
            .iter()
            .map(|d| match d {
                Ok(d) => vec![d.budget.budget_id().to_string()],
                Err(_) => Vec::new(),
            })
            .collect();
        let (engine, apply, progress) = (self.engine, self.options.apply, self.progress.clone());
        let desired_ref = &desired;
        let mut results: Vec<Option<Result<ObjectPlan, EngineError>>> =
            (0..loaded.len()).map(|_| None).collect();
        let mut done = futures::stream::iter(groups(&budget_keys).into_iter().map(|group| {
            let progress = progress.clone();
            async move {
                let mut out = Vec::with_capacity(group.len());
                for i in group {
                    if let Ok(d) = &desired_ref[i] {
                        let result =
                            plan_and_write(engine, apply, || engine.plan_organization(d)).await;
                        out.push((i, result));
                    }
                    progress.inc(1);
                }
                out
            }
        }))
        .buffer_unordered(CONCURRENCY);
        while let Some(out) = done.next().await {
            for (i, result) in out {
                results[i] = Some(result);
            }
        }
        drop(done);
        for ((l, key), (d, result)) in loaded
            .iter()
            .zip(&keys)
            .zip(desired.into_iter().zip(results))
        {
            let result = match d {
                Err(e) => Err(e),
                Ok(_) => result.expect("every organization has a result"),
            };
            self.record_organization(l, key, result);
        }
    }

    /// Validate one organization and claim its id, in manifest order.
    fn claim_organization(
        &mut self,
        key: &ObjectKey,
        loaded: &Loaded<Organization>,
    ) -> Result<DesiredOrganization, EngineError> {
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
        Ok(desired)
    }

    /// Record an organization's outcome, and where it stands for its members.
    fn record_organization(
        &mut self,
        loaded: &Loaded<Organization>,
        key: &ObjectKey,
        result: Result<ObjectPlan, EngineError>,
    ) {
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
        self.record(&loaded.source, "Organization", key, result);
    }

    /// Every member: validation and organization lookup in manifest order, every member
    /// planned at once against the database as the organizations left it, then (with
    /// `apply`) the groups of members that share a user applied concurrently, each group in
    /// manifest order (see the module documentation).
    async fn members(&mut self, loaded: &[Loaded<OrganizationMember>]) {
        let keys: Vec<ObjectKey> = loaded.iter().map(|l| key_of(&l.object.metadata)).collect();
        let targets: Vec<Result<MemberTarget, EngineError>> = loaded
            .iter()
            .zip(&keys)
            .map(|(l, key)| self.member_target(key, l))
            .collect();
        let (engine, apply, progress) = (self.engine, self.options.apply, self.progress.clone());
        let mut first: Vec<Option<Result<ObjectPlan, EngineError>>> =
            futures::stream::iter(targets.iter().map(|t| async move {
                match t {
                    Ok(t) => Some(
                        engine
                            .plan_member(&t.desired, &t.organization_id, t.pending)
                            .await,
                    ),
                    Err(_) => None,
                }
            }))
            .buffered(CONCURRENCY)
            .collect()
            .await;

        let mut results: Vec<Option<Result<ObjectPlan, EngineError>>> =
            (0..loaded.len()).map(|_| None).collect();
        if !apply {
            // Nothing is written: every plan is final; claims in manifest order. A user an
            // earlier member creates exists for the later ones, as `apply` would find it.
            let mut claims = HashMap::new();
            let mut users = std::collections::HashSet::new();
            for (i, plan) in first.iter_mut().enumerate() {
                if let (Some(plan), Ok(t)) = (plan.take(), &targets[i]) {
                    let plan = plan.map(|p| user_created_once(&mut users, p));
                    results[i] = Some(plan.and_then(|p| claim(&mut claims, p, t)));
                }
                progress.inc(1);
            }
        } else {
            let user_keys: Vec<Vec<String>> = targets
                .iter()
                .zip(&first)
                .map(|(t, plan)| {
                    let mut k = Vec::new();
                    if let Ok(t) = t {
                        if let Some(id) = &t.desired.user_id {
                            k.push(format!("id:{id}"));
                        }
                        if let Some(email) = &t.desired.email {
                            k.push(format!("email:{}", email.to_lowercase()));
                        }
                    }
                    if let Some(Ok(plan)) = plan
                        && let Some(id) = &plan.user_id
                    {
                        k.push(format!("id:{id}"));
                    }
                    k
                })
                .collect();
            // Each group with the plan its first member already has.
            let work: Vec<Vec<(usize, Option<Planned>)>> = groups(&user_keys)
                .into_iter()
                .map(|group| {
                    group
                        .into_iter()
                        .enumerate()
                        .map(|(n, i)| (i, if n == 0 { first[i].take() } else { None }))
                        .collect()
                })
                .collect();
            let targets_ref = &targets;
            let mut done = futures::stream::iter(work.into_iter().map(|group| {
                let progress = progress.clone();
                async move {
                    let mut claims = HashMap::new();
                    let mut out = Vec::with_capacity(group.len());
                    for (i, planned) in group {
                        if let Ok(t) = &targets_ref[i] {
                            let replan =
                                || engine.plan_member(&t.desired, &t.organization_id, t.pending);
                            let mut plan = match planned {
                                Some(plan) => plan,
                                None => replan().await,
                            };
                            let mut attempts = 0;
                            let result = loop {
                                let written = match plan.and_then(|p| claim(&mut claims, p, t)) {
                                    Ok(p) => engine.apply_written(p).await,
                                    Err(e) => break Err(e),
                                };
                                match written {
                                    Err(e) if is_stale(&e) && attempts < STALE_RETRIES => {
                                        attempts += 1;
                                        plan = replan().await;
                                    }
                                    other => break other,
                                }
                            };
                            out.push((i, result));
                        }
                        progress.inc(1);
                    }
                    out
                }
            }))
            .buffer_unordered(CONCURRENCY);
            while let Some(out) = done.next().await {
                for (i, result) in out {
                    results[i] = Some(result);
                }
            }
        }
        for ((l, key), (t, result)) in loaded
            .iter()
            .zip(&keys)
            .zip(targets.into_iter().zip(results))
        {
            let result = match t {
                Err(e) => Err(e),
                Ok(_) => result.expect("every member has a result"),
            };
            self.record(&l.source, "OrganizationMember", key, result);
        }
    }

    /// Validate one member and find its organization's outcome, in manifest order.
    fn member_target(
        &self,
        key: &ObjectKey,
        loaded: &Loaded<OrganizationMember>,
    ) -> Result<MemberTarget, EngineError> {
        let desired = DesiredMember::from_spec(key.clone(), &loaded.object.spec)
            .map_err(|e| self.with_missing_organization(key, loaded, e))?;
        let (organization_id, pending) = match &desired.organization {
            OrganizationTarget::Id(id) => (id.clone(), false),
            OrganizationTarget::Resource(name) => {
                let org_key = ObjectKey::new(key.namespace.clone(), name.clone());
                match self.organizations.get(&org_key) {
                    None => {
                        return Err(EngineError::OrganizationNotFound(format!(
                            "spec.organizationRef.name: {}",
                            undeclared_organization(&org_key)
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
        Ok(MemberTarget {
            desired,
            organization_id,
            pending,
        })
    }

    /// A member whose spec breaks rules: when its `organizationRef` names no `Organization`
    /// of the set, that is one more broken rule, listed with the others (as `validate` lists
    /// it), rather than found only after the spec is fixed.
    fn with_missing_organization(
        &self,
        key: &ObjectKey,
        loaded: &Loaded<OrganizationMember>,
        err: EngineError,
    ) -> EngineError {
        let spec = &loaded.object.spec;
        let (Some(reference), None) = (&spec.organization_ref, &spec.organization_id) else {
            return err;
        };
        let (mut rules, omitted) = err.broken_rules();
        let org_key = ObjectKey::new(key.namespace.clone(), reference.name.clone());
        if rules.is_empty()
            || rules.iter().any(|r| r.field == "spec.organizationRef.name")
            || self.organizations.contains_key(&org_key)
        {
            return err;
        }
        rules.push(FieldError::new(
            "spec.organizationRef.name",
            undeclared_organization(&org_key),
        ));
        EngineError::invalid_fields(rules, omitted).unwrap_or(err)
    }

    /// Write a plan when the run applies (and return it as written); a plan-only run passes
    /// it through.
    async fn apply(&self, plan: ObjectPlan) -> Result<ObjectPlan, EngineError> {
        if self.options.apply {
            return self.engine.apply_written(plan).await;
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
            Err(err) => self.report.errors.extend(object_errors(
                Some(source),
                &format!("{kind} {key}"),
                &err,
            )),
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
            if let Some((organization_id, dependents)) = plan.deletes_teams_or_keys()
                && !self.options.delete_teams_and_keys
            {
                self.report.errors.push(ManifestError {
                    source: None,
                    object: Some(format!("prune {subject}")),
                    field: None,
                    message: format!(
                        "refused: organization {organization_id} has {} that no manifest declares (its delete would remove {dependents}); nothing of it was deleted: remove them in LiteLLM first, or run again with --delete-teams-and-keys",
                        dependents.teams_and_keys()
                    ),
                });
                continue;
            }
            match self.apply(plan).await {
                Ok(plan) => self.report.plans.push(plan),
                Err(e) => self.prune_error(&subject, &e),
            }
        }
    }

    fn prune_error(&mut self, what: &str, err: &EngineError) {
        self.report
            .errors
            .extend(object_errors(None, &format!("prune {what}"), err));
    }
}

/// A plan, or why there is none.
type Planned = Result<ObjectPlan, EngineError>;

/// A member ready to plan: its desired state and its organization.
struct MemberTarget {
    desired: DesiredMember,
    organization_id: String,
    pending: bool,
}

/// Claim the membership a member's plan writes (user and organization) for that member: of
/// two members of a run claiming one membership, the earlier one in manifest order wins
/// (callers claim in manifest order among members that can share a user).
fn claim(
    claims: &mut HashMap<(String, String), ObjectKey>,
    plan: ObjectPlan,
    target: &MemberTarget,
) -> Result<ObjectPlan, EngineError> {
    let pair = (
        plan.user_id.clone().unwrap_or_default(),
        target.organization_id.clone(),
    );
    if let Some(other) = claims.get(&pair)
        && *other != target.desired.key
    {
        return Err(EngineError::Conflict(format!(
            "user {} in organization {} is already claimed by OrganizationMember {other}",
            pair.0, pair.1
        )));
    }
    claims.insert(pair, target.desired.key.clone());
    Ok(plan)
}

/// How often an object is planned again when another writer (a second `apply` on the same
/// database) created a row its plan creates between the plan's read and its write.
const STALE_RETRIES: usize = 3;

fn is_stale(err: &EngineError) -> bool {
    matches!(
        err,
        EngineError::Store(StoreError::Stale(_) | StoreError::Changed(_))
    )
}

/// Plan, and when the run applies, write the plan (one transaction) and return it as written.
/// A plan another writer overtook is made again from what the database holds then, so the
/// report counts what this run wrote, never what another run wrote.
async fn plan_and_write<S, F, Fut>(
    engine: &Engine<S>,
    apply: bool,
    plan: F,
) -> Result<ObjectPlan, EngineError>
where
    S: Store,
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<ObjectPlan, EngineError>>,
{
    let mut attempts = 0;
    loop {
        let planned = plan().await?;
        if !apply {
            return Ok(planned);
        }
        match engine.apply_written(planned).await {
            Err(e) if is_stale(&e) && attempts < STALE_RETRIES => attempts += 1,
            other => return other,
        }
    }
}

/// Objects that must run one after the other: indexes grouped by shared keys (connected
/// components: two objects sharing any key are in one group), each group in ascending order,
/// groups in the order of their first object. Objects without keys are alone.
fn groups(keys: &[Vec<String>]) -> Vec<Vec<usize>> {
    fn find(parent: &mut [usize], mut i: usize) -> usize {
        while parent[i] != i {
            parent[i] = parent[parent[i]];
            i = parent[i];
        }
        i
    }
    let mut parent: Vec<usize> = (0..keys.len()).collect();
    let mut owner: HashMap<&str, usize> = HashMap::new();
    for (i, ks) in keys.iter().enumerate() {
        for k in ks {
            match owner.get(k.as_str()) {
                Some(&j) => {
                    let (a, b) = (find(&mut parent, i), find(&mut parent, j));
                    if a != b {
                        parent[a.max(b)] = a.min(b);
                    }
                }
                None => {
                    owner.insert(k, i);
                }
            }
        }
    }
    let mut by_root: HashMap<usize, usize> = HashMap::new();
    let mut out: Vec<Vec<usize>> = Vec::new();
    for i in 0..keys.len() {
        let root = find(&mut parent, i);
        let slot = *by_root.entry(root).or_insert_with(|| {
            out.push(Vec::new());
            out.len() - 1
        });
        out[slot].push(i);
    }
    out
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

/// An object's error as report lines: one per broken rule of an invalid spec, each naming
/// its field; other errors in one line prefixed with their reason.
fn object_errors(source: Option<&Source>, object: &str, err: &EngineError) -> Vec<ManifestError> {
    crate::cli::validate::errors_of(source, object, err, |err| match err {
        EngineError::BudgetNotFound { field, message } => (Some(field.clone()), message.clone()),
        other => (None, format!("{}: {other}", other.reason().as_str())),
    })
}

#[cfg(test)]
mod tests {
    use super::groups;

    fn keys(k: &[&[&str]]) -> Vec<Vec<String>> {
        k.iter()
            .map(|ks| ks.iter().map(|s| s.to_string()).collect())
            .collect()
    }

    #[test]
    fn objects_sharing_a_key_are_grouped_in_order() {
        // 0 and 2 share "a"; 2 and 4 share "c", so 0, 2, 4 are one group; 1 and 3 have no
        // shared key; 5 has none at all.
        let g = groups(&keys(&[
            &["a"],
            &["b"],
            &["a", "c"],
            &["d"],
            &["c", "e"],
            &[],
        ]));
        assert_eq!(g, vec![vec![0, 2, 4], vec![1], vec![3], vec![5]]);
    }

    #[test]
    fn a_late_key_joins_two_earlier_groups() {
        let g = groups(&keys(&[&["x"], &["y"], &["y", "x"], &["z"]]));
        assert_eq!(g, vec![vec![0, 1, 2], vec![3]]);
    }
}
