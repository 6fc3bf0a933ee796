//! Planning: desired state + observed rows + the ledger → the typed changes that close the
//! gap. Pure. An empty plan means the database already matches, and applying it writes
//! nothing.
//!
//! A resource manages exactly the fields it declares, as server-side apply does. The ledger
//! entry of each row it manages records, for every field it declares, what the field held
//! before the resource first set it (`null` when the operator created the row):
//! - a declared field is set to the declared value (a change made in LiteLLM is put back);
//! - a field declared before and no longer declared gets that original value back;
//! - a field never declared keeps whatever LiteLLM has (an edit there never causes a write).
//!
//! Ledger entries hold `{"originals": {field: value}}`; fields are `organization_alias`,
//! `models`, `budget_id`, `metadata.<key>`, `user_role`, `budget.<column>` (each limit of the
//! inventory, [`crate::store::BUDGET_LIMITS`]) and `budget.model_max_budget.<model>.<limit>`.
//!
//! Each kind is planned in the same steps: resolve the holder of the row
//! ([`resolve_holder`]), the managed fields ([`super::fields`]), the budget row that holds
//! the declared limits and the writes of the resource's own budget row ([`super::holder`]),
//! and the ledger entries. The order of a
//! transaction's statements is [`Step`]'s.

use std::fmt;

use serde_json::{Map, Value, json};

use super::desired::{
    DesiredBudget, DesiredMember, DesiredOrganization, ObjectKey, legacy_member_resource,
};
use super::fields::managed_metadata;
use super::holder::{Holder, OwnBudget, OwnClaim, hold, organization_holder};
use super::legacy;
use super::users::resolve_member_user;
use crate::crd::DeletionPolicy;
use crate::error::EngineError;
use crate::store::{
    Change, Dependents, LedgerEntry, MembershipRow, NewUserDefaults, ObservedMember,
    ObservedOrganization, OrganizationRow, budget_key, membership_key, organization_key,
};

/// The changes for one resource and the ids it resolves to (for status).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ObjectPlan {
    pub kind: &'static str,
    pub key: Option<ObjectKey>,
    pub changes: Vec<Change>,
    pub organization_id: Option<String>,
    pub budget_id: Option<String>,
    pub user_id: Option<String>,
    pub user_created: bool,
    /// An organization's plan: its row exists and this resource did not create it (it adopts
    /// the row now, or adopted it before). Adopting reaches an organization made elsewhere,
    /// which the controller's tenancy rules decide on before anything is written.
    pub adopted: bool,
    /// What the plan wants a reader to know and writes nothing (an email LiteLLM changed).
    pub notes: Vec<String>,
}

impl ObjectPlan {
    /// True when nothing at all is written (rows or ledger).
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// True when the plan writes LiteLLM's rows (not only the operator's ledger).
    pub fn changes_rows(&self) -> bool {
        self.row_changes() > 0
    }

    /// How many changes write LiteLLM's rows (ledger claims and releases not counted).
    pub fn row_changes(&self) -> usize {
        self.changes
            .iter()
            .filter(|c| !matches!(c, Change::Claim { .. } | Change::Release { .. }))
            .count()
    }

    /// What the plan's organization delete takes with it, when it deletes one.
    pub fn deleted_dependents(&self) -> Option<Dependents> {
        self.changes.iter().find_map(|c| match c {
            Change::DeleteOrganization { dependents, .. } => Some(*dependents),
            _ => None,
        })
    }

    /// The organization the plan deletes with teams or keys (rows no manifest declares) and
    /// those counts: such a delete runs only with an explicit opt-in.
    pub fn deletes_teams_or_keys(&self) -> Option<(&str, Dependents)> {
        self.changes.iter().find_map(|c| match c {
            Change::DeleteOrganization {
                organization_id,
                dependents,
                ..
            } if dependents.has_teams_or_keys() => Some((organization_id.as_str(), *dependents)),
            _ => None,
        })
    }
}

/// The order of the statements of one transaction: claims first (a row another writer holds
/// fails the transaction before anything is written), then rows in foreign-key order (the
/// budget before the row that points at it, the new pointer before the budget it leaves
/// is deleted), releases last.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Step {
    /// The ledger claim of the row.
    Claim,
    /// The ledger claim of the resource's own budget row.
    ClaimBudget,
    /// Rows this resource held for another user or organization before.
    Stale,
    /// A user the membership needs.
    User,
    /// The resource's own budget row (created, copied or updated).
    Budget,
    /// The organization or membership row.
    Row,
    /// A budget row no longer used, and the ledger entries released.
    Release,
}

/// Changes tagged with their [`Step`], put in order once.
#[derive(Default)]
struct Steps(Vec<(Step, Change)>);

impl Steps {
    fn push(&mut self, step: Step, change: Change) {
        self.0.push((step, change));
    }

    fn extend(&mut self, step: Step, changes: impl IntoIterator<Item = Change>) {
        self.0.extend(changes.into_iter().map(|c| (step, c)));
    }

    fn append(&mut self, changes: Vec<(Step, Change)>) {
        self.0.extend(changes);
    }

    /// The changes in transaction order (stable within a step).
    fn ordered(mut self) -> Vec<Change> {
        self.0.sort_by_key(|(s, _)| *s);
        self.0.into_iter().map(|(_, c)| c).collect()
    }
}

/// The fields a resource manages on a row and what they held before (see the module doc).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Originals(pub(super) Map<String, Value>);

impl Originals {
    /// Read from a ledger entry's `managed`.
    pub fn read(managed: &Value) -> Self {
        Self(
            managed
                .get("originals")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default(),
        )
    }

    /// The value a field gets: declared → the declared value (the field's value before is
    /// recorded the first time); declared before but no longer → its original back; never
    /// declared → `current`, untouched.
    pub fn field(&mut self, name: &str, declared: Option<Value>, current: Value) -> Value {
        match declared {
            Some(v) => {
                self.0.entry(name.to_string()).or_insert(current);
                v
            }
            None => self.0.remove(name).unwrap_or(current),
        }
    }

    /// Whether `name` is managed.
    pub fn manages(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }

    /// The original of `name`, if it is managed.
    pub fn original(&self, name: &str) -> Option<&Value> {
        self.0.get(name)
    }

    /// Stop managing `name`, returning its original.
    pub fn take(&mut self, name: &str) -> Option<Value> {
        self.0.remove(name)
    }

    /// Forget every field under `prefix` (their row goes away).
    pub fn forget_prefix(&mut self, prefix: &str) {
        self.0.retain(|k, _| !k.starts_with(prefix));
    }

    /// Managed fields under `prefix`, without it.
    pub fn under(&self, prefix: &str) -> Vec<String> {
        self.0
            .keys()
            .filter_map(|k| k.strip_prefix(prefix).map(str::to_string))
            .collect()
    }

    pub(super) fn to_value(&self, extra: &[(&str, Value)]) -> Value {
        let mut m = Map::new();
        m.insert("originals".into(), Value::Object(self.0.clone()));
        for (k, v) in extra {
            m.insert((*k).to_string(), v.clone());
        }
        Value::Object(m)
    }
}

pub(super) fn policy_str(p: DeletionPolicy) -> &'static str {
    match p {
        DeletionPolicy::Delete => "Delete",
        DeletionPolicy::Retain => "Retain",
    }
}

fn conflict_with(row: &str, holder: &LedgerEntry) -> EngineError {
    EngineError::Conflict(format!(
        "{row} is managed by {} (manager {:?}); a row is never taken over from another resource or manager",
        holder.resource, holder.manager
    ))
}

/// A claim for `entry` unless the ledger already holds exactly it.
pub(super) fn claim_if_changed(
    current: Option<&LedgerEntry>,
    entry: LedgerEntry,
    replaces: Option<String>,
) -> Option<Change> {
    (current != Some(&entry)).then_some(Change::Claim { entry, replaces })
}

/// Step 1 of both kinds: who holds a row. The ledger's entry when it is this resource's
/// (`mine`), a `Conflict` when it is another's; with no entry, `unledgered` decides (the mark
/// of an earlier version). Returns whether the operator created the row (a row that does
/// not exist yet, or that LiteLLM deleted, is created now) and the fields it manages.
fn resolve_holder(
    exists: bool,
    ledger: Option<&LedgerEntry>,
    mine: impl Fn(&LedgerEntry) -> bool,
    row: &str,
    unledgered: impl FnOnce() -> Result<Option<(bool, Originals)>, EngineError>,
) -> Result<(bool, Originals), EngineError> {
    let held = match ledger {
        Some(e) if mine(e) => Some((e.created, Originals::read(&e.managed))),
        Some(e) => return Err(conflict_with(row, e)),
        None if exists => unledgered()?,
        None => None,
    };
    Ok(match (exists, held) {
        (false, _) => (true, Originals::default()),
        (true, Some(h)) => h,
        (true, None) => (false, Originals::default()),
    })
}

/// The organization's own budget row as observed.
fn organization_own_budget<'a>(
    desired: &'a DesiredOrganization,
    observed: &'a ObservedOrganization,
) -> OwnBudget<'a> {
    let id = desired.owned_budget_id.as_str();
    OwnBudget {
        id,
        row: observed
            .desired_budget
            .as_ref()
            .filter(|b| b.budget_id == id)
            .or(observed
                .current_budget
                .as_ref()
                .filter(|b| b.budget_id == id)),
        current: observed.current_budget.as_ref(),
        entry: observed.budget_ledger.as_ref(),
    }
}

/// Plan one organization against what the database and the ledger hold, as `manager`.
pub fn plan_organization(
    desired: &DesiredOrganization,
    observed: &ObservedOrganization,
    manager: &str,
) -> Result<ObjectPlan, EngineError> {
    let resource = desired.owner();
    let existing = observed.organization.as_ref();
    let (created, mut originals) = resolve_holder(
        existing.is_some(),
        observed.ledger.as_ref(),
        |e| e.manager == manager && e.resource == resource,
        &format!("organization {}", desired.organization_id),
        || legacy::organization_holder(desired, existing),
    )?;
    let mut steps = Steps::default();
    let want = organization_fields(desired, existing, created, &mut originals)?;
    let budget_id = plan_organization_budget(
        desired,
        observed,
        created,
        &mut originals,
        manager,
        &mut steps,
    )?;
    let want = OrganizationRow {
        budget_id: budget_id.clone(),
        ..want
    };
    let entry = LedgerEntry {
        row_key: organization_key(&desired.organization_id),
        manager: manager.to_string(),
        resource,
        organization_id: Some(desired.organization_id.clone()),
        created,
        deletion_policy: policy_str(desired.deletion_policy).into(),
        managed: originals.to_value(&[]),
    };
    steps.extend(
        Step::Claim,
        claim_if_changed(observed.ledger.as_ref(), entry, None),
    );
    match existing {
        None => steps.push(Step::Row, Change::CreateOrganization(want)),
        Some(have)
            if *have
                != OrganizationRow {
                    spend: have.spend,
                    ..want.clone()
                } =>
        {
            steps.push(
                Step::Row,
                Change::UpdateOrganization {
                    before: have.clone(),
                    after: want,
                },
            )
        }
        Some(_) => {}
    }
    Ok(ObjectPlan {
        kind: "Organization",
        key: Some(desired.key.clone()),
        changes: steps.ordered(),
        organization_id: Some(desired.organization_id.clone()),
        budget_id: Some(budget_id),
        adopted: !created,
        ..Default::default()
    })
}

/// Step 2 of an organization: alias, models and metadata (its `budget_id` is the budget
/// step's).
fn organization_fields(
    desired: &DesiredOrganization,
    existing: Option<&OrganizationRow>,
    created: bool,
    originals: &mut Originals,
) -> Result<OrganizationRow, EngineError> {
    let current_alias = existing.map_or(Value::Null, |o| json!(o.organization_alias));
    let alias_declared = desired.alias_declared || created;
    let alias = originals.field(
        "organization_alias",
        alias_declared.then(|| json!(desired.alias)),
        current_alias,
    );
    let current_models = existing.map_or(Value::Null, |o| json!(o.models));
    let models_declared = !desired.models.is_empty() || created;
    let models = originals.field(
        "models",
        models_declared.then(|| json!(desired.models)),
        current_models,
    );
    let metadata = managed_metadata(
        originals,
        &desired.metadata,
        existing.map(|o| o.metadata.as_str()),
        &desired.organization_id,
    )?;
    Ok(OrganizationRow {
        organization_id: desired.organization_id.clone(),
        organization_alias: alias.as_str().unwrap_or(&desired.alias).to_string(),
        budget_id: String::new(),
        models: serde_json::from_value(models).unwrap_or_default(),
        metadata,
        spend: existing.map_or(0.0, |o| o.spend),
    })
}

/// Step 3 of an organization: the budget it points at, and the writes of its own row.
fn plan_organization_budget(
    desired: &DesiredOrganization,
    observed: &ObservedOrganization,
    created: bool,
    originals: &mut Originals,
    manager: &str,
    steps: &mut Steps,
) -> Result<String, EngineError> {
    let own = organization_own_budget(desired, observed);
    let current = observed.organization.as_ref().map(|o| o.budget_id.as_str());
    if let DesiredBudget::Referenced(id) = &desired.budget
        && observed.desired_budget.is_none()
    {
        return Err(EngineError::BudgetNotFound {
            field: "spec.budgetRef.budgetId".into(),
            message: format!(
                "budget {id:?} does not exist in LiteLLM_BudgetTable: create it in LiteLLM first, or use an inline budget"
            ),
        });
    }
    let holder = organization_holder(&desired.budget, created, current == Some(own.id), originals);
    let resource = desired.owner();
    let claim = OwnClaim {
        resource: &resource,
        organization_id: &desired.organization_id,
        manager,
        policy: desired.deletion_policy,
        replaces: None,
    };
    let held = hold(
        &holder,
        &own,
        current,
        created,
        false,
        originals,
        &desired.actor,
        claim,
    );
    steps.append(held.changes);
    Ok(held.budget_id.unwrap_or_default())
}

/// Plan what deleting the resource `key` does to the rows the ledger says it manages:
/// `Retain` releases them all; `Delete` deletes the rows the operator created (an organization
/// with its teams, memberships and keys; its own budget row) and releases the rows it adopted.
/// A row released gets back the budget it had before the operator gave it one of its own
/// (and that row is deleted), as removing `budget` from the manifest would.
/// `entries` are the resource's ledger entries; `observed` its organization row, if any.
pub fn plan_delete_organization(
    key: &ObjectKey,
    entries: &[LedgerEntry],
    observed: &ObservedOrganization,
    retain: bool,
) -> ObjectPlan {
    let mut plan = ObjectPlan {
        kind: "Organization",
        key: Some(key.clone()),
        ..Default::default()
    };
    let org_entry = entries
        .iter()
        .find(|e| e.row_key.starts_with("organization/"));
    let budget_entry = entries.iter().find(|e| e.row_key.starts_with("budget/"));
    let budget_id = budget_entry.and_then(|b| b.row_key.strip_prefix("budget/"));
    if let Some(e) = org_entry.filter(|e| e.created && !retain) {
        let organization_id = e.organization_id.clone().unwrap_or_default();
        plan.organization_id = Some(organization_id.clone());
        plan.changes.push(Change::DeleteOrganization {
            organization_id,
            owned_budget_id: budget_entry
                .filter(|b| b.created)
                .and(budget_id)
                .map(str::to_string),
            // Counted by the engine before the plan is shown or applied.
            dependents: Default::default(),
        });
        // The cascade releases every entry of the organization's rows; anything else is
        // released here.
        plan.changes.extend(release_all(
            entries.iter().filter(|e| e.organization_id.is_none()),
        ));
        return plan;
    }
    let org = observed.organization.as_ref();
    let restored = org_entry
        .filter(|e| !e.created)
        .and_then(|e| Originals::read(&e.managed).original("budget_id").cloned())
        .and_then(|v| v.as_str().map(str::to_string));
    let mut budget_in_use = org.is_some_and(|o| Some(o.budget_id.as_str()) == budget_id);
    if let (Some(org), Some(original)) = (org, restored)
        && budget_in_use
        && original != org.budget_id
    {
        plan.changes.push(Change::UpdateOrganization {
            before: org.clone(),
            after: OrganizationRow {
                budget_id: original,
                ..org.clone()
            },
        });
        budget_in_use = false;
    }
    if let (Some(b), Some(id)) = (budget_entry, budget_id)
        && b.created
        && !budget_in_use
        && (observed.desired_budget.is_some() || observed.current_budget.is_some())
    {
        plan.changes.push(Change::DeleteBudget {
            budget_id: id.to_string(),
        });
    }
    plan.changes.extend(release_all(entries.iter()));
    plan
}

fn release_all<'a>(entries: impl Iterator<Item = &'a LedgerEntry>) -> impl Iterator<Item = Change> {
    entries.map(|e| Change::Release {
        row_key: e.row_key.clone(),
    })
}

/// Who plans a membership: the audit label, the ledger's manager, and what new users get.
#[derive(Clone, Copy, Debug)]
pub struct MemberContext<'a> {
    pub actor: &'a str,
    pub manager: &'a str,
    pub new_user: &'a NewUserDefaults,
}

/// Plan one membership. `organization_pending` is true when the organization is not in the
/// database yet but will be created earlier in the same run (offline `plan`).
pub fn plan_member(
    desired: &DesiredMember,
    organization_id: &str,
    organization_pending: bool,
    observed: &ObservedMember,
    context: &MemberContext<'_>,
) -> Result<ObjectPlan, EngineError> {
    if !observed.organization_exists && !organization_pending {
        return Err(EngineError::OrganizationNotFound(format!(
            "organization {organization_id} does not exist in the database"
        )));
    }
    let user = resolve_member_user(desired, observed, context.new_user)?;
    let user_id = user.user_id.clone();
    let resource = desired.resource();
    let legacy_resource = legacy_member_resource(&desired.budget_id);
    let mine = |e: &LedgerEntry| {
        e.manager == context.manager && (e.resource == resource || e.resource == legacy_resource)
    };
    let (created, mut originals) = resolve_holder(
        observed.membership.is_some(),
        observed.ledger.as_ref(),
        mine,
        &format!("user {user_id} in organization {organization_id}"),
        || legacy::membership_holder(desired, observed, context.actor, &user_id, organization_id),
    )?;
    let row_key = membership_key(organization_id, &user_id);
    let mut steps = Steps::default();
    let stale_budget_users =
        stale_memberships(observed, &row_key, &user_id, organization_id, &mut steps);
    let existing = observed.membership.as_ref();
    let role = managed_role(&mut originals, desired, existing);
    let budget_id = plan_member_budget(
        desired,
        observed,
        created,
        stale_budget_users,
        &mut originals,
        context,
        organization_id,
        &mut steps,
    );
    let want = MembershipRow {
        user_id: user_id.clone(),
        organization_id: organization_id.to_string(),
        user_role: role,
        budget_id: budget_id.clone(),
    };
    let entry = LedgerEntry {
        row_key,
        manager: context.manager.to_string(),
        resource,
        organization_id: Some(organization_id.to_string()),
        created,
        deletion_policy: policy_str(desired.deletion_policy).into(),
        managed: originals.to_value(&member_identity(desired, &user_id, organization_id)),
    };
    steps.extend(
        Step::Claim,
        claim_if_changed(observed.ledger.as_ref(), entry, Some(legacy_resource)),
    );
    let user_created = user.create.is_some();
    steps.extend(Step::User, user.create);
    steps.extend(Step::Row, membership_change(existing, want));
    Ok(ObjectPlan {
        kind: "OrganizationMember",
        key: Some(desired.key.clone()),
        changes: steps.ordered(),
        organization_id: Some(organization_id.to_string()),
        budget_id,
        user_created,
        user_id: Some(user_id),
        notes: user.note.into_iter().collect(),
        // Only an organization's plan says whether it adopts (tenancy reads it).
        adopted: false,
    })
}

/// Step 2 of a membership: its role, the one field it always declares.
fn managed_role(
    originals: &mut Originals,
    desired: &DesiredMember,
    existing: Option<&MembershipRow>,
) -> Option<String> {
    let current = existing
        .and_then(|m| m.user_role.clone())
        .map_or(Value::Null, Value::from);
    let role = originals.field("user_role", Some(json!(desired.role.as_str())), current);
    role.as_str().map(str::to_string)
}

/// The write that makes the membership `existing` (or none) into `want`, if any.
fn membership_change(existing: Option<&MembershipRow>, want: MembershipRow) -> Option<Change> {
    match existing {
        None => Some(Change::CreateMembership(want)),
        Some(have) if *have != want => Some(Change::UpdateMembership {
            before: have.clone(),
            after: want,
        }),
        Some(_) => None,
    }
}

/// Rows this resource managed for another user or organization before: removed if it
/// created them, released if it adopted them (and the same for memberships an earlier
/// version made, recognised by their budget row). Returns how many adopted ones keep the
/// resource's own budget attached.
fn stale_memberships(
    observed: &ObservedMember,
    row_key: &str,
    user_id: &str,
    organization_id: &str,
    steps: &mut Steps,
) -> usize {
    let mut still_attached = 0;
    for e in observed
        .own_entries
        .iter()
        .filter(|e| e.row_key.starts_with("membership/") && e.row_key != row_key)
    {
        let (Some(u), Some(o)) = (
            e.managed.get("user_id").and_then(Value::as_str),
            e.managed.get("organization_id").and_then(Value::as_str),
        ) else {
            continue;
        };
        if e.created {
            steps.push(
                Step::Stale,
                Change::DeleteMembership {
                    user_id: u.to_string(),
                    organization_id: o.to_string(),
                },
            );
        } else if Originals::read(&e.managed).manages("budget_id") {
            still_attached += 1;
        }
        steps.push(
            Step::Stale,
            Change::Release {
                row_key: e.row_key.clone(),
            },
        );
    }
    for stale in &observed.memberships_with_own_budget {
        if (stale.user_id != user_id || stale.organization_id != organization_id)
            && !observed
                .own_entries
                .iter()
                .any(|e| e.row_key == membership_key(&stale.organization_id, &stale.user_id))
        {
            steps.push(
                Step::Stale,
                Change::DeleteMembership {
                    user_id: stale.user_id.clone(),
                    organization_id: stale.organization_id.clone(),
                },
            );
        }
    }
    still_attached
}

/// Step 3 of a membership: its `budget_id`, and the writes of the member's own budget row
/// (only while `maxBudgetInOrganization` is declared: no bookkeeping rows).
#[allow(clippy::too_many_arguments)]
fn plan_member_budget(
    desired: &DesiredMember,
    observed: &ObservedMember,
    created: bool,
    stale_budget_users: usize,
    originals: &mut Originals,
    context: &MemberContext<'_>,
    organization_id: &str,
    steps: &mut Steps,
) -> Option<String> {
    let own_id = desired.budget_id.as_str();
    let budget_key = budget_key(own_id);
    let own = OwnBudget {
        id: own_id,
        row: observed.own_budget.as_ref(),
        current: observed.membership_budget.as_ref(),
        entry: observed
            .own_entries
            .iter()
            .find(|e| e.row_key == budget_key),
    };
    let current = observed
        .membership
        .as_ref()
        .and_then(|m| m.budget_id.as_deref());
    let holder = desired
        .declared_budget()
        .map_or(Holder::Theirs, Holder::Own);
    let resource = desired.resource();
    let claim = OwnClaim {
        resource: &resource,
        organization_id,
        manager: context.manager,
        policy: desired.deletion_policy,
        replaces: Some(legacy_member_resource(own_id)),
    };
    // Adopted memberships of earlier rows still on the own budget keep it.
    let keep_own = stale_budget_users > 0;
    let held = hold(
        &holder,
        &own,
        current,
        created,
        keep_own,
        originals,
        context.actor,
        claim,
    );
    steps.append(held.changes);
    held.budget_id
}

/// What a membership entry records besides its originals: the row's user and organization,
/// and the email a member found by email was resolved with (see
/// [`super::users::held_user_id`]).
fn member_identity<'a>(
    desired: &'a DesiredMember,
    user_id: &str,
    organization_id: &str,
) -> Vec<(&'a str, Value)> {
    let mut identity = vec![
        ("user_id", json!(user_id)),
        ("organization_id", json!(organization_id)),
    ];
    if let (None, Some(email)) = (&desired.user_id, &desired.email) {
        identity.push(("email", json!(email)));
    }
    identity
}

/// Plan what deleting the member resource `key` does: `Retain` releases its rows; `Delete`
/// deletes the memberships the operator created and its own budget row, and releases the
/// memberships it adopted. A membership released gets back the budget it had before the
/// operator gave it one of its own (which is then deleted). Users are never deleted.
/// `entries` are its ledger entries; with none (a member of an earlier version never written
/// since), `observed.memberships_with_own_budget` names its rows.
pub fn plan_delete_member(
    key: &ObjectKey,
    budget_id: &str,
    entries: &[LedgerEntry],
    observed: &ObservedMember,
    retain: bool,
) -> ObjectPlan {
    let mut plan = ObjectPlan {
        kind: "OrganizationMember",
        key: Some(key.clone()),
        ..Default::default()
    };
    let mut budget_still_attached = false;
    let mut given_back = false;
    for e in entries
        .iter()
        .filter(|e| e.row_key.starts_with("membership/"))
    {
        let user = e.managed.get("user_id").and_then(Value::as_str);
        let org = e.managed.get("organization_id").and_then(Value::as_str);
        match (retain, e.created, user, org) {
            (false, true, Some(u), Some(o)) => plan.changes.push(Change::DeleteMembership {
                user_id: u.to_string(),
                organization_id: o.to_string(),
            }),
            _ => match restore_membership_budget(e, budget_id, observed) {
                Some(change) => {
                    plan.changes.push(change);
                    given_back = true;
                }
                None => budget_still_attached |= Originals::read(&e.managed).manages("budget_id"),
            },
        }
    }
    if entries.is_empty() {
        for m in &observed.memberships_with_own_budget {
            plan.changes.push(Change::DeleteMembership {
                user_id: m.user_id.clone(),
                organization_id: m.organization_id.clone(),
            });
        }
    }
    let budget_entry = entries.iter().find(|e| e.row_key.starts_with("budget/"));
    let budget_created = budget_entry.is_none_or(|e| e.created);
    // `Retain` keeps the rows, but a budget given back leaves the operator's row unused.
    if (!retain || given_back)
        && !budget_still_attached
        && budget_created
        && observed.own_budget.is_some()
    {
        plan.changes.push(Change::DeleteBudget {
            budget_id: budget_id.to_string(),
        });
    }
    plan.changes.extend(release_all(entries.iter()));
    plan
}

/// For a membership the resource adopted and gave a budget of its own: the update that
/// points it back at the budget it had.
fn restore_membership_budget(
    entry: &LedgerEntry,
    budget_id: &str,
    observed: &ObservedMember,
) -> Option<Change> {
    if entry.created {
        return None;
    }
    let original = Originals::read(&entry.managed)
        .original("budget_id")?
        .clone();
    let user = entry.managed.get("user_id").and_then(Value::as_str)?;
    let org = entry
        .managed
        .get("organization_id")
        .and_then(Value::as_str)?;
    let have = observed.memberships_with_own_budget.iter().find(|m| {
        m.user_id == user && m.organization_id == org && m.budget_id.as_deref() == Some(budget_id)
    })?;
    Some(Change::UpdateMembership {
        before: have.clone(),
        after: MembershipRow {
            budget_id: original.as_str().map(str::to_string),
            ..have.clone()
        },
    })
}

impl fmt::Display for ObjectPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.key {
            Some(k) => writeln!(f, "{} {}:", self.kind, crate::text::escape(&k.to_string()))?,
            None => writeln!(f, "{}:", self.kind)?,
        }
        for c in &self.changes {
            write!(f, "{c}")?;
        }
        for n in &self.notes {
            writeln!(f, "  ! {}", crate::text::escape(n))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    //! The planner on hand-built observed states: no database. The ledger is simulated by
    //! folding each plan's claims and releases into the next observed state.

    use serde_json::json;

    use super::*;
    use crate::crd::{
        BudgetReference, BudgetSpec, MemberRole, OrganizationMemberSpec, OrganizationReference,
        OrganizationSpec, UserSelector,
    };
    use crate::engine::fields::same_limits;
    use crate::engine::ids;
    use crate::engine::legacy::{plan_delete_legacy_organization, retained_by_marker};
    use crate::store::{BudgetRow, OWNER_KEY, Scalar, UserRow};

    const ACTOR: &str = "litellm-org-operator";
    const MANAGER: &str = "cli";

    fn key(name: &str) -> ObjectKey {
        ObjectKey::new("team-a", name)
    }

    fn org(name: &str, spec: OrganizationSpec) -> DesiredOrganization {
        DesiredOrganization::from_spec(key(name), &spec, ACTOR).expect("valid spec")
    }

    fn budget_spec(max: f64) -> OrganizationSpec {
        OrganizationSpec {
            budget: Some(BudgetSpec {
                max_budget: Some(max),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn rows(plan: &ObjectPlan) -> Vec<&Change> {
        plan.changes
            .iter()
            .filter(|c| !matches!(c, Change::Claim { .. } | Change::Release { .. }))
            .collect()
    }

    /// What the database and the ledger hold after `plan` is applied on `before`.
    fn after(
        before: &ObservedOrganization,
        plan: &ObjectPlan,
        desired: &DesiredOrganization,
    ) -> ObservedOrganization {
        let mut o = before.clone();
        for change in &plan.changes {
            match change {
                Change::Claim { entry, .. } if entry.row_key.starts_with("organization/") => {
                    o.ledger = Some(entry.clone())
                }
                Change::Claim { entry, .. } => o.budget_ledger = Some(entry.clone()),
                Change::Release { row_key } if row_key.starts_with("budget/") => {
                    o.budget_ledger = None
                }
                Change::Release { .. } => o.ledger = None,
                Change::CreateBudget(b)
                | Change::UpdateBudget { after: b, .. }
                | Change::CopyBudget { after: b, .. } => {
                    if b.budget_id == desired.budget.budget_id() {
                        o.desired_budget = Some(b.clone());
                    }
                }
                Change::DeleteBudget { budget_id } => {
                    if o.desired_budget
                        .as_ref()
                        .is_some_and(|b| &b.budget_id == budget_id)
                    {
                        o.desired_budget = None;
                    }
                }
                Change::CreateOrganization(row) | Change::UpdateOrganization { after: row, .. } => {
                    o.organization = Some(row.clone())
                }
                other => panic!("unexpected change: {other:?}"),
            }
        }
        let current = o.organization.as_ref().map(|r| r.budget_id.clone());
        if o.desired_budget.as_ref().map(|b| &b.budget_id) == current.as_ref() {
            o.current_budget = o.desired_budget.clone();
        }
        o
    }

    fn apply(
        desired: &DesiredOrganization,
        observed: &ObservedOrganization,
    ) -> (ObjectPlan, ObservedOrganization) {
        let plan = plan_organization(desired, observed, MANAGER).expect("plan");
        let next = after(observed, &plan, desired);
        (plan, next)
    }

    fn ui_budget() -> BudgetRow {
        BudgetRow::new("ui-org-budget", "admin")
            .with("max_budget", Some(Scalar::Float(1000.0)))
            .with("budget_duration", Some(Scalar::Text("30d".into())))
            .with("tpm_limit", Some(Scalar::Int(100)))
    }

    /// An organization made in LiteLLM's UI with a 1000 USD / 30d budget.
    fn ui_org() -> ObservedOrganization {
        ObservedOrganization {
            organization: Some(OrganizationRow {
                organization_id: "ui-org".into(),
                organization_alias: "Made in the UI".into(),
                budget_id: "ui-org-budget".into(),
                models: vec!["gpt-4o".into()],
                metadata: r#"{"team": "ui"}"#.into(),
                spend: 12.5,
            }),
            current_budget: Some(ui_budget()),
            ..Default::default()
        }
    }

    fn pinned(spec: OrganizationSpec) -> DesiredOrganization {
        org(
            "research",
            OrganizationSpec {
                organization_id: Some("ui-org".into()),
                ..spec
            },
        )
    }

    fn is_conflict(r: Result<ObjectPlan, EngineError>, needle: &str) {
        match r {
            Err(EngineError::Conflict(m)) => assert!(m.contains(needle), "{m}"),
            other => panic!("expected Conflict containing {needle:?}, got {other:?}"),
        }
    }

    #[test]
    fn a_new_organization_claims_then_creates_its_budget_then_the_row() {
        let d = org("research", budget_spec(100.0));
        let plan = plan_organization(&d, &ObservedOrganization::default(), MANAGER).expect("plan");
        let Change::Claim { entry, .. } = &plan.changes[0] else {
            panic!("the claim comes first: {:?}", plan.changes)
        };
        assert_eq!(entry.row_key, organization_key(&d.organization_id));
        assert_eq!(entry.resource, "Organization/team-a/research");
        assert_eq!(entry.manager, MANAGER);
        assert!(entry.created);
        assert!(!plan.adopted, "a new organization is created, not adopted");
        let r = rows(&plan);
        assert_eq!(r.len(), 2, "{plan}");
        let Change::CreateBudget(b) = r[0] else {
            panic!("budget first")
        };
        assert_eq!(
            b.budget_id,
            ids::organization_budget_id("team-a", "research")
        );
        assert_eq!(b.max_budget(), Some(100.0));
        let Change::CreateOrganization(o) = r[1] else {
            panic!("then the organization")
        };
        assert_eq!(
            o.organization_id,
            ids::organization_id("team-a", "research")
        );
        assert_eq!(
            o.organization_alias, "research",
            "alias defaults to the name"
        );
        assert_eq!(o.budget_id, b.budget_id);
        assert!(
            !o.metadata_map().contains_key(OWNER_KEY),
            "no bookkeeping in LiteLLM's metadata"
        );
    }

    #[test]
    fn an_organization_in_sync_plans_nothing() {
        let d = org("research", budget_spec(100.0));
        let (_, observed) = apply(&d, &ObservedOrganization::default());
        let plan = plan_organization(&d, &observed, MANAGER).expect("plan");
        assert!(plan.is_empty(), "{plan}");
    }

    #[test]
    fn declared_fields_are_put_back_and_undeclared_edits_are_left_alone() {
        let d = org("research", budget_spec(100.0));
        let (_, mut observed) = apply(&d, &ObservedOrganization::default());
        if let Some(o) = observed.organization.as_mut() {
            o.organization_alias = "renamed in the UI".into();
        }
        if let Some(b) = observed.desired_budget.as_mut() {
            b.set("max_budget", Some(Scalar::Float(5.0)));
            b.set("tpm_limit", Some(Scalar::Int(77))); // not declared by the manifest
            b.created_by = "someone".into();
        }
        let plan = plan_organization(&d, &observed, MANAGER).expect("plan");
        let r = rows(&plan);
        let Change::UpdateBudget { before, after } = r[0] else {
            panic!("{plan}")
        };
        assert_eq!(before.max_budget(), Some(5.0));
        assert_eq!(after.max_budget(), Some(100.0));
        assert_eq!(
            after.limit("tpm_limit"),
            Some(&Scalar::Int(77)),
            "an undeclared limit set in LiteLLM stays"
        );
        assert_eq!(after.created_by, "someone", "created_by is never rewritten");
        let Change::UpdateOrganization { after, .. } = r[1] else {
            panic!("{plan}")
        };
        assert_eq!(after.organization_alias, "research");
        assert_eq!(r[1].changed_fields(), vec!["organization_alias"]);
    }

    #[test]
    fn a_row_another_resource_or_manager_holds_is_a_conflict() {
        let other = org("other", OrganizationSpec::default());
        let (_, observed) = apply(&other, &ObservedOrganization::default());
        let d = org(
            "research",
            OrganizationSpec {
                organization_id: Some(other.organization_id.clone()),
                ..Default::default()
            },
        );
        is_conflict(
            plan_organization(&d, &observed, MANAGER),
            "is managed by Organization/team-a/other (manager \"cli\")",
        );
        // The same resource under another manager (the operator of a cluster, say).
        is_conflict(
            plan_organization(&other, &observed, "operator"),
            "(manager \"cli\")",
        );
    }

    #[test]
    fn an_unowned_row_is_adopted_only_when_pinned() {
        let mut observed = ui_org();
        if let Some(o) = observed.organization.as_mut() {
            o.organization_id = ids::organization_id("team-a", "research");
        }
        is_conflict(
            plan_organization(
                &org("research", OrganizationSpec::default()),
                &observed,
                MANAGER,
            ),
            "set spec.organizationId to adopt it",
        );
    }

    #[test]
    fn adopting_keeps_what_the_manifest_does_not_declare() {
        // Finding 1: an adopted organization keeps its budget (and alias and models).
        let d = pinned(OrganizationSpec::default());
        let (plan, observed) = apply(&d, &ui_org());
        assert!(rows(&plan).is_empty(), "nothing to write: {plan}");
        let Change::Claim { entry, .. } = &plan.changes[0] else {
            panic!("{plan}")
        };
        assert!(!entry.created, "adopted, not created");
        assert_eq!(
            observed.organization.as_ref().map(|o| o.budget_id.as_str()),
            Some("ui-org-budget")
        );
        assert_eq!(plan.budget_id.as_deref(), Some("ui-org-budget"));
        assert!(plan.adopted);
        // Still adopted once the ledger holds it (the tenancy check runs at every reconcile).
        let again = plan_organization(&d, &observed, MANAGER).expect("plan");
        assert!(again.is_empty(), "{again}");
        assert!(again.adopted);
    }

    #[test]
    fn a_declared_budget_on_an_adopted_organization_starts_from_its_budget_and_can_be_given_back() {
        let d = pinned(budget_spec(500.0));
        let (plan, observed) = apply(&d, &ui_org());
        let r = rows(&plan);
        let Change::CopyBudget { source, after: own } = r[0] else {
            panic!("{plan}")
        };
        assert_eq!(source.budget_id, "ui-org-budget");
        assert_eq!(own.max_budget(), Some(500.0), "declared");
        assert_eq!(
            own.limit("tpm_limit"),
            Some(&Scalar::Int(100)),
            "copied from the budget it had"
        );
        assert_eq!(own.budget_duration(), Some("30d"), "copied");
        let Change::UpdateOrganization { after, .. } = r[1] else {
            panic!("{plan}")
        };
        assert_eq!(after.budget_id, d.owned_budget_id);
        // The manifest stops declaring a budget: the organization gets its old budget back
        // and the operator's row goes.
        let d2 = pinned(OrganizationSpec::default());
        let plan = plan_organization(&d2, &observed, MANAGER).expect("plan");
        let r = rows(&plan);
        let Change::UpdateOrganization { after, .. } = r[0] else {
            panic!("{plan}")
        };
        assert_eq!(after.budget_id, "ui-org-budget");
        assert_eq!(
            r[1],
            &Change::DeleteBudget {
                budget_id: d.owned_budget_id.clone()
            }
        );
    }

    #[test]
    fn litellm_replacing_metadata_breaks_nothing() {
        // Finding 3: /organization/update writes metadata wholesale.
        let d = org(
            "research",
            OrganizationSpec {
                metadata: Some(Map::from_iter([("tier".to_string(), json!("gold"))])),
                ..Default::default()
            },
        );
        let (_, mut observed) = apply(&d, &ObservedOrganization::default());
        if let Some(o) = observed.organization.as_mut() {
            o.metadata = r#"{"from_ui": 1}"#.into();
        }
        let plan = plan_organization(&d, &observed, MANAGER).expect("still ours");
        let r = rows(&plan);
        let Change::UpdateOrganization { after, .. } = r[0] else {
            panic!("{plan}")
        };
        assert_eq!(
            after.metadata_map().get("tier"),
            Some(&json!("gold")),
            "declared key put back"
        );
        assert_eq!(
            after.metadata_map().get("from_ui"),
            Some(&json!(1)),
            "foreign key kept"
        );
    }

    #[test]
    fn a_metadata_key_no_longer_declared_gets_its_original_value_back() {
        let declares = pinned(OrganizationSpec {
            metadata: Some(Map::from_iter([("team".to_string(), json!("platform"))])),
            ..Default::default()
        });
        let (_, observed) = apply(&declares, &ui_org());
        assert_eq!(
            observed
                .organization
                .as_ref()
                .and_then(|o| o.metadata_map().get("team").cloned()),
            Some(json!("platform"))
        );
        let (_, observed) = apply(&pinned(OrganizationSpec::default()), &observed);
        assert_eq!(
            observed
                .organization
                .as_ref()
                .and_then(|o| o.metadata_map().get("team").cloned()),
            Some(json!("ui")),
            "the value LiteLLM had before"
        );
    }

    #[test]
    fn a_marker_of_an_earlier_version_is_claimed_and_removed() {
        let d = org("research", OrganizationSpec::default());
        let mut observed = ObservedOrganization {
            organization: Some(OrganizationRow {
                organization_id: d.organization_id.clone(),
                organization_alias: "research".into(),
                budget_id: d.owned_budget_id.clone(),
                metadata: json!({OWNER_KEY: {"owner": "Organization/team-a/research", "managedKeys": [], "deletionPolicy": "Delete"}}).to_string(),
                ..Default::default()
            }),
            ..Default::default()
        };
        observed.desired_budget = Some(BudgetRow::new(d.owned_budget_id.clone(), ""));
        let plan = plan_organization(&d, &observed, MANAGER).expect("plan");
        let Change::Claim { entry, .. } = &plan.changes[0] else {
            panic!("{plan}")
        };
        assert!(entry.created);
        let update = rows(&plan)
            .into_iter()
            .find_map(|c| match c {
                Change::UpdateOrganization { after, .. } => Some(after),
                _ => None,
            })
            .expect("marker removed");
        assert!(!update.metadata_map().contains_key(OWNER_KEY));
        // The marker of another resource is still respected.
        let other = org(
            "other",
            OrganizationSpec {
                organization_id: Some(d.organization_id.clone()),
                ..Default::default()
            },
        );
        is_conflict(
            plan_organization(&other, &observed, MANAGER),
            "earlier version",
        );
    }

    #[test]
    fn a_missing_budget_reference_is_looked_at_again_not_an_invalid_spec() {
        let d = org(
            "research",
            OrganizationSpec {
                budget_ref: Some(BudgetReference {
                    budget_id: "shared".into(),
                }),
                ..Default::default()
            },
        );
        match plan_organization(&d, &ObservedOrganization::default(), MANAGER) {
            Err(e @ EngineError::BudgetNotFound { .. }) => {
                assert!(
                    e.to_string().starts_with("spec.budgetRef.budgetId: "),
                    "{e}"
                );
                // The database decides it: stalled, and re-checked at each resync.
                assert_eq!(e.next_step(), crate::error::NextStep::Resync);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn moving_to_a_budget_reference_deletes_and_releases_the_owned_budget() {
        let owned = org("research", budget_spec(1.0));
        let (_, mut observed) = apply(&owned, &ObservedOrganization::default());
        let d = org(
            "research",
            OrganizationSpec {
                budget_ref: Some(BudgetReference {
                    budget_id: "shared".into(),
                }),
                ..Default::default()
            },
        );
        observed.desired_budget = Some(BudgetRow::new("shared", ""));
        let plan = plan_organization(&d, &observed, MANAGER).expect("plan");
        let r = rows(&plan);
        assert!(
            matches!(r[0], Change::UpdateOrganization { after, .. } if after.budget_id == "shared")
        );
        assert_eq!(
            r[1],
            &Change::DeleteBudget {
                budget_id: owned.owned_budget_id.clone()
            }
        );
        assert!(plan.changes.contains(&Change::Release {
            row_key: budget_key(&owned.owned_budget_id)
        }));
    }

    fn entries(observed: &ObservedOrganization) -> Vec<LedgerEntry> {
        observed
            .ledger
            .iter()
            .chain(&observed.budget_ledger)
            .cloned()
            .collect()
    }

    #[test]
    fn deleting_cascades_what_was_created_and_releases_what_was_adopted() {
        let d = org("research", budget_spec(1.0));
        let (_, observed) = apply(&d, &ObservedOrganization::default());
        let plan = plan_delete_organization(&d.key, &entries(&observed), &observed, false);
        assert_eq!(
            rows(&plan),
            vec![&Change::DeleteOrganization {
                organization_id: d.organization_id.clone(),
                owned_budget_id: Some(d.owned_budget_id.clone()),
                dependents: Default::default(),
            }]
        );
        // Retain: rows stay, the ledger lets go.
        let plan = plan_delete_organization(&d.key, &entries(&observed), &observed, true);
        assert!(rows(&plan).is_empty());
        assert_eq!(plan.changes.len(), 2);
        // Adopted: released, never deleted.
        let a = pinned(OrganizationSpec::default());
        let (_, adopted) = apply(&a, &ui_org());
        let plan = plan_delete_organization(&a.key, &entries(&adopted), &adopted, false);
        assert!(rows(&plan).is_empty(), "{plan}");
        assert_eq!(
            plan.changes,
            vec![Change::Release {
                row_key: organization_key("ui-org")
            }]
        );
    }

    #[test]
    fn a_legacy_organization_is_deleted_only_when_its_marker_names_it() {
        let d = org("research", OrganizationSpec::default());
        let observed = ObservedOrganization {
            organization: Some(OrganizationRow {
                organization_id: d.organization_id.clone(),
                budget_id: d.owned_budget_id.clone(),
                metadata: json!({OWNER_KEY: {"owner": "Organization/team-a/research"}}).to_string(),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            plan_delete_legacy_organization(&d.key, &d.owned_budget_id, &observed)
                .changes
                .len(),
            1
        );
        assert!(plan_delete_legacy_organization(&key("other"), "b", &observed).is_empty());
        assert!(!retained_by_marker(&observed));
    }

    fn member(name: &str, user: UserSelector, max_budget: Option<f64>) -> DesiredMember {
        let spec = OrganizationMemberSpec {
            organization_ref: Some(OrganizationReference {
                name: "research".into(),
            }),
            organization_id: None,
            user,
            role: MemberRole::OrgAdmin,
            max_budget_in_organization: max_budget,
            deletion_policy: DeletionPolicy::Delete,
        };
        DesiredMember::from_spec(key(name), &spec).expect("valid member")
    }

    fn by_id(id: &str) -> UserSelector {
        UserSelector {
            user_id: Some(id.into()),
            email: None,
        }
    }

    fn by_email(email: &str) -> UserSelector {
        UserSelector {
            user_id: None,
            email: Some(email.into()),
        }
    }

    fn user(id: &str) -> UserRow {
        UserRow {
            user_id: id.into(),
            user_email: Some(format!("{id}@example.com")),
        }
    }

    fn with_org() -> ObservedMember {
        ObservedMember {
            organization_exists: true,
            ..Default::default()
        }
    }

    const CONTEXT: MemberContext<'static> = MemberContext {
        actor: ACTOR,
        manager: MANAGER,
        new_user: &NewUserDefaults {
            models: Vec::new(),
            max_budget: None,
            budget_duration: None,
        },
    };

    fn plan_m(d: &DesiredMember, observed: &ObservedMember) -> Result<ObjectPlan, EngineError> {
        plan_member(d, "org-1", false, observed, &CONTEXT)
    }

    /// What the database and the ledger hold after `plan` is applied on `before`.
    fn member_after(before: &ObservedMember, plan: &ObjectPlan) -> ObservedMember {
        let mut o = before.clone();
        for change in &plan.changes {
            match change {
                Change::Claim { entry, .. } => {
                    if entry.row_key.starts_with("membership/") {
                        o.ledger = Some(entry.clone());
                    }
                    o.own_entries.retain(|e| e.row_key != entry.row_key);
                    o.own_entries.push(entry.clone());
                }
                Change::Release { row_key } => o.own_entries.retain(|e| &e.row_key != row_key),
                Change::CreateUser { user_id, .. } => o.user_by_id = Some(user(user_id)),
                Change::CreateBudget(b) | Change::UpdateBudget { after: b, .. } => {
                    o.own_budget = Some(b.clone())
                }
                Change::DeleteBudget { .. } => o.own_budget = None,
                Change::CreateMembership(m) | Change::UpdateMembership { after: m, .. } => {
                    o.membership = Some(m.clone());
                    o.membership_budget = match &m.budget_id {
                        Some(b) if o.own_budget.as_ref().is_some_and(|own| &own.budget_id == b) => {
                            o.own_budget.clone()
                        }
                        Some(_) => o.membership_budget.clone(),
                        None => None,
                    };
                }
                Change::DeleteMembership { .. } => o.membership = None,
                other => panic!("unexpected change: {other:?}"),
            }
        }
        o
    }

    #[test]
    fn a_member_waits_for_its_organization_unless_it_is_created_first() {
        let d = member("alice", by_id("u1"), None);
        assert!(matches!(
            plan_m(&d, &ObservedMember::default()),
            Err(EngineError::OrganizationNotFound(_))
        ));
        assert!(plan_member(&d, "org-1", true, &ObservedMember::default(), &CONTEXT).is_ok());
    }

    #[test]
    fn a_member_without_a_declared_budget_gets_no_budget_row() {
        // Finding 4: no row exists only as bookkeeping.
        let d = member("alice", by_id("u1"), None);
        let observed = ObservedMember {
            user_by_id: Some(user("u1")),
            ..with_org()
        };
        let plan = plan_m(&d, &observed).expect("plan");
        assert_eq!(
            rows(&plan),
            vec![&Change::CreateMembership(MembershipRow {
                user_id: "u1".into(),
                organization_id: "org-1".into(),
                user_role: Some("org_admin".into()),
                budget_id: None,
            })]
        );
        let next = member_after(&observed, &plan);
        assert!(plan_m(&d, &next).expect("plan").is_empty());
    }

    #[test]
    fn a_declared_budget_is_a_row_of_the_members_own() {
        let d = member("alice", by_id("u1"), Some(10.0));
        let observed = ObservedMember {
            user_by_id: Some(user("u1")),
            ..with_org()
        };
        let plan = plan_m(&d, &observed).expect("plan");
        let r = rows(&plan);
        assert!(
            matches!(r[0], Change::CreateBudget(b) if b.max_budget() == Some(10.0) && b.budget_id == d.budget_id)
        );
        assert!(
            matches!(r[1], Change::CreateMembership(m) if m.budget_id.as_deref() == Some(d.budget_id.as_str()))
        );
        let next = member_after(&observed, &plan);
        assert!(plan_m(&d, &next).expect("plan").is_empty(), "in sync");
        // Dropping the budget from the manifest: the membership lets go, the row goes.
        let d2 = member("alice", by_id("u1"), None);
        let plan = plan_m(&d2, &next).expect("plan");
        let r = rows(&plan);
        assert!(
            matches!(r[0], Change::UpdateMembership { after, .. } if after.budget_id.is_none()),
            "{plan}"
        );
        assert_eq!(
            r[1],
            &Change::DeleteBudget {
                budget_id: d.budget_id.clone()
            }
        );
    }

    #[test]
    fn an_unknown_email_creates_the_user_with_a_derived_id() {
        let d = member("bob", by_email("Bob@Example.com"), None);
        let plan = plan_m(&d, &with_org()).expect("plan");
        let id = ids::user_id_for_email("Bob@Example.com");
        assert_eq!(
            rows(&plan)[0],
            &Change::CreateUser {
                user_id: id.clone(),
                email: Some("Bob@Example.com".into()),
                defaults: NewUserDefaults::default(),
            }
        );
        assert!(plan.user_created);
        assert_eq!(plan.user_id.as_deref(), Some(id.as_str()));
    }

    #[test]
    fn one_user_by_email_is_used_and_two_are_a_conflict() {
        let d = member("bob", by_email("bob@example.com"), None);
        let one = ObservedMember {
            users_by_email: vec![user("u-bob")],
            ..with_org()
        };
        let plan = plan_m(&d, &one).expect("plan");
        assert_eq!(plan.user_id.as_deref(), Some("u-bob"));
        assert!(
            !plan
                .changes
                .iter()
                .any(|c| matches!(c, Change::CreateUser { .. }))
        );
        let two = ObservedMember {
            users_by_email: vec![user("u-1"), user("u-2")],
            ..with_org()
        };
        is_conflict(plan_m(&d, &two), "u-1, u-2");
        // The store reads at most EMAIL_MATCHES_READ matches: never claim an exact count then.
        let many = ObservedMember {
            users_by_email: (0..crate::store::EMAIL_MATCHES_READ)
                .map(|i| user(&format!("u-{i}")))
                .collect(),
            ..with_org()
        };
        is_conflict(plan_m(&d, &many), "10 or more users");
        is_conflict(plan_m(&d, &many), "u-9, ...)");
    }

    fn ui_membership() -> ObservedMember {
        ObservedMember {
            user_by_id: Some(user("u1")),
            membership: Some(MembershipRow {
                user_id: "u1".into(),
                organization_id: "org-1".into(),
                user_role: Some("internal_user".into()),
                budget_id: Some("ui-member-budget".into()),
            }),
            membership_budget: Some(
                BudgetRow::new("ui-member-budget", "admin")
                    .with("max_budget", Some(Scalar::Float(100.0))),
            ),
            ..with_org()
        }
    }

    #[test]
    fn adopting_a_membership_keeps_its_budget() {
        // Finding 2: member_update gave it a 100 USD budget; the manifest declares none.
        let d = member("alice", by_id("u1"), None);
        let plan = plan_m(&d, &ui_membership()).expect("adopt");
        let r = rows(&plan);
        assert_eq!(r.len(), 1, "{plan}");
        let Change::UpdateMembership { after, .. } = r[0] else {
            panic!("{plan}")
        };
        assert_eq!(
            after.user_role.as_deref(),
            Some("org_admin"),
            "declared role"
        );
        assert_eq!(
            after.budget_id.as_deref(),
            Some("ui-member-budget"),
            "budget kept"
        );
        let Change::Claim { entry, .. } = &plan.changes[0] else {
            panic!("{plan}")
        };
        assert!(!entry.created);
    }

    #[test]
    fn a_membership_another_member_holds_is_a_conflict() {
        let mut observed = ui_membership();
        observed.ledger = Some(LedgerEntry {
            row_key: membership_key("org-1", "u1"),
            manager: MANAGER.into(),
            resource: "OrganizationMember/team-a/bob".into(),
            organization_id: Some("org-1".into()),
            created: true,
            deletion_policy: "Delete".into(),
            managed: json!({}),
        });
        is_conflict(
            plan_m(&member("alice", by_id("u1"), None), &observed),
            "is managed by OrganizationMember/team-a/bob",
        );
    }

    #[test]
    fn an_empty_budget_of_an_earlier_version_is_removed() {
        let d = member("alice", by_id("u1"), None);
        let mut observed = ui_membership();
        if let Some(m) = observed.membership.as_mut() {
            m.budget_id = Some(d.budget_id.clone());
            m.user_role = Some("org_admin".into());
        }
        observed.membership_budget = Some(
            BudgetRow::new(d.budget_id.clone(), ACTOR)
                .with("max_budget", d.max_budget.map(Scalar::Float)),
        );
        observed.own_budget = Some(
            BudgetRow::new(d.budget_id.clone(), ACTOR)
                .with("max_budget", d.max_budget.map(Scalar::Float)),
        );
        let plan = plan_m(&d, &observed).expect("plan");
        let r = rows(&plan);
        assert!(
            matches!(r[0], Change::UpdateMembership { after, .. } if after.budget_id.is_none()),
            "{plan}"
        );
        assert_eq!(
            r[1],
            &Change::DeleteBudget {
                budget_id: d.budget_id.clone()
            }
        );
    }

    #[test]
    fn role_drift_is_put_back() {
        let d = member("alice", by_id("u1"), None);
        let observed = ObservedMember {
            user_by_id: Some(user("u1")),
            ..with_org()
        };
        let mut next = member_after(&observed, &plan_m(&d, &observed).expect("plan"));
        if let Some(m) = next.membership.as_mut() {
            m.user_role = Some("internal_user_viewer".into());
        }
        let plan = plan_m(&d, &next).expect("plan");
        let r = rows(&plan);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].changed_fields(), vec!["user_role"]);
    }

    #[test]
    fn a_membership_left_behind_by_an_earlier_spec_is_removed() {
        let d = member("alice", by_id("u1"), None);
        let observed = ObservedMember {
            user_by_id: Some(user("u1")),
            ..with_org()
        };
        let mut moved = member_after(&observed, &plan_m(&d, &observed).expect("plan"));
        // The manifest now points at another organization.
        moved.membership = None;
        moved.ledger = None;
        let plan = plan_member(&d, "org-2", false, &moved, &CONTEXT).expect("plan");
        assert!(
            plan.changes.contains(&Change::DeleteMembership {
                user_id: "u1".into(),
                organization_id: "org-1".into(),
            }),
            "{plan}"
        );
        assert!(plan.changes.contains(&Change::Release {
            row_key: membership_key("org-1", "u1")
        }));
    }

    #[test]
    fn deleting_a_member_removes_what_it_created_and_releases_what_it_adopted() {
        let d = member("alice", by_id("u1"), Some(3.0));
        let observed = ObservedMember {
            user_by_id: Some(user("u1")),
            ..with_org()
        };
        let created = member_after(&observed, &plan_m(&d, &observed).expect("plan"));
        let plan = plan_delete_member(&d.key, &d.budget_id, &created.own_entries, &created, false);
        assert_eq!(
            rows(&plan),
            vec![
                &Change::DeleteMembership {
                    user_id: "u1".into(),
                    organization_id: "org-1".into(),
                },
                &Change::DeleteBudget {
                    budget_id: d.budget_id.clone()
                },
            ]
        );
        let adopted = member_after(
            &ui_membership(),
            &plan_m(&member("alice", by_id("u1"), None), &ui_membership()).expect("adopt"),
        );
        let plan = plan_delete_member(&d.key, &d.budget_id, &adopted.own_entries, &adopted, false);
        assert!(rows(&plan).is_empty(), "{plan}");
        assert!(!plan.is_empty(), "released");
        // Retain releases even what it created.
        let plan = plan_delete_member(&d.key, &d.budget_id, &created.own_entries, &created, true);
        assert!(rows(&plan).is_empty(), "{plan}");
    }

    #[test]
    fn a_plan_shows_one_line_per_change_whatever_the_values_hold() {
        let plan = ObjectPlan {
            kind: "OrganizationMember",
            key: Some(ObjectKey::new("ns", "m\u{1b}[2K")),
            changes: vec![Change::CreateMembership(MembershipRow {
                user_id: "eve\nNo changes (1 objects read).\u{1b}[8m".into(),
                organization_id: "org\u{202e}".into(),
                user_role: Some("org_admin\r".into()),
                budget_id: None,
            })],
            ..Default::default()
        };
        let shown = plan.to_string();
        assert_eq!(shown.lines().count(), 2, "{shown}");
        assert!(shown.contains("eve\\nNo changes"), "{shown}");
        assert!(
            !shown.chars().any(|c| c.is_control() && c != '\n'),
            "{shown}"
        );
        assert!(!shown.contains('\u{202e}'), "{shown}");
    }

    #[test]
    fn empty_model_budgets_compare_equal() {
        let a = BudgetRow {
            model_max_budget: None,
            ..Default::default()
        };
        let b = BudgetRow {
            model_max_budget: Some("{}".into()),
            ..Default::default()
        };
        assert!(same_limits(&a, &b));
        let c = BudgetRow {
            model_max_budget: Some(r#"{"gpt-4o": {"budget_limit": 1.0}}"#.into()),
            created_by: "x".into(),
            ..Default::default()
        };
        assert!(!same_limits(&a, &c));
    }
}
