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
//! `models`, `budget_id`, `metadata.<key>`, `user_role` and `budget.<column>` (the limits of
//! the resource's own budget row).

use std::fmt;

use serde_json::{Map, Value, json};

use super::desired::{
    DesiredBudget, DesiredMember, DesiredOrganization, ObjectKey, legacy_member_resource,
};
use super::ids;
use crate::crd::DeletionPolicy;
use crate::error::EngineError;
use crate::store::{
    BudgetRow, Change, LedgerEntry, MembershipRow, NewUserDefaults, OWNER_KEY, ObservedMember,
    ObservedOrganization, OrganizationRow, budget_key, membership_key, metadata_owner,
    organization_key,
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
}

/// The fields a resource manages on a row and what they held before (see the module doc).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Originals(Map<String, Value>);

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

    /// Forget every field under `prefix` (their row goes away).
    pub fn forget_prefix(&mut self, prefix: &str) {
        self.0.retain(|k, _| !k.starts_with(prefix));
    }

    /// Managed fields under `prefix`, without it.
    fn under(&self, prefix: &str) -> Vec<String> {
        self.0
            .keys()
            .filter_map(|k| k.strip_prefix(prefix).map(str::to_string))
            .collect()
    }

    fn to_value(&self, extra: &[(&str, Value)]) -> Value {
        let mut m = Map::new();
        m.insert("originals".into(), Value::Object(self.0.clone()));
        for (k, v) in extra {
            m.insert((*k).to_string(), v.clone());
        }
        Value::Object(m)
    }
}

fn policy_str(p: DeletionPolicy) -> &'static str {
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
fn claim_if_changed(
    current: Option<&LedgerEntry>,
    entry: LedgerEntry,
    replaces: Option<String>,
) -> Option<Change> {
    (current != Some(&entry)).then_some(Change::Claim { entry, replaces })
}

/// The budget columns a resource may declare, as `(field name, value)`.
fn budget_columns(b: &BudgetRow) -> [(&'static str, Value); 7] {
    [
        ("max_budget", json!(b.max_budget)),
        ("soft_budget", json!(b.soft_budget)),
        ("max_parallel_requests", json!(b.max_parallel_requests)),
        ("tpm_limit", json!(b.tpm_limit)),
        ("rpm_limit", json!(b.rpm_limit)),
        ("budget_duration", json!(b.budget_duration)),
        (
            "model_max_budget",
            b.model_max_budget.clone().unwrap_or(Value::Null),
        ),
    ]
}

fn set_budget_column(b: &mut BudgetRow, name: &str, v: Value) {
    match name {
        "max_budget" => b.max_budget = v.as_f64(),
        "soft_budget" => b.soft_budget = v.as_f64(),
        "max_parallel_requests" => {
            b.max_parallel_requests = v.as_i64().and_then(|n| i32::try_from(n).ok())
        }
        "tpm_limit" => b.tpm_limit = v.as_i64(),
        "rpm_limit" => b.rpm_limit = v.as_i64(),
        "budget_duration" => b.budget_duration = v.as_str().map(str::to_string),
        "model_max_budget" => b.model_max_budget = (!v.is_null()).then_some(v),
        _ => {}
    }
}

/// The resource's own budget row after applying `declared` (columns `Some` are declared) on
/// `base` (the row as it is, or what it starts from).
fn managed_budget(originals: &mut Originals, declared: &BudgetRow, base: &BudgetRow) -> BudgetRow {
    let mut want = base.clone();
    for ((name, declared_value), (_, current)) in budget_columns(declared)
        .into_iter()
        .zip(budget_columns(base))
    {
        let declared_value = (!declared_value.is_null()).then_some(declared_value);
        let value = originals.field(&format!("budget.{name}"), declared_value, current);
        set_budget_column(&mut want, name, value);
    }
    want
}

/// Plan one organization against what the database and the ledger hold, as `manager`.
pub fn plan_organization(
    desired: &DesiredOrganization,
    observed: &ObservedOrganization,
    manager: &str,
) -> Result<ObjectPlan, EngineError> {
    let resource = desired.owner();
    let org_key = organization_key(&desired.organization_id);
    let existing = observed.organization.as_ref();

    // Who holds the row: the ledger, else the marker of an earlier version, else nobody.
    let held: Option<(bool, Originals)> = match (&observed.ledger, existing) {
        (Some(e), _) if e.manager == manager && e.resource == resource => {
            Some((e.created, Originals::read(&e.managed)))
        }
        (Some(e), _) => {
            return Err(conflict_with(
                &format!("organization {}", desired.organization_id),
                e,
            ));
        }
        (None, Some(org)) => match metadata_owner(&org.metadata) {
            Some(o) if o == resource => Some((
                org.organization_id
                    == ids::organization_id(&desired.key.namespace, &desired.key.name),
                legacy_originals(org),
            )),
            Some(other) => {
                return Err(EngineError::Conflict(format!(
                    "organization {} is already managed by {other} (marked by an earlier version); a row is never taken over from another resource",
                    org.organization_id
                )));
            }
            None if desired.pinned => None,
            None => {
                return Err(EngineError::Conflict(format!(
                    "organization {} already exists without an owner; set spec.organizationId to adopt it",
                    org.organization_id
                )));
            }
        },
        (None, None) => None,
    };
    // A row LiteLLM deleted is created again with the same id: the operator created it now.
    let (created, mut originals) = match (existing, held) {
        (None, _) => (true, Originals::default()),
        (Some(_), Some(h)) => h,
        (Some(_), None) => (false, Originals::default()),
    };

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

    let mut metadata = existing.map(|o| o.metadata.clone()).unwrap_or_default();
    // The marker of an earlier version is bookkeeping the ledger now keeps.
    metadata.remove(OWNER_KEY);
    let previously: Vec<String> = originals.under("metadata.");
    for key in previously
        .iter()
        .filter(|k| !desired.metadata.contains_key(*k))
    {
        let current = metadata.get(key).cloned().unwrap_or(Value::Null);
        match originals.field(&format!("metadata.{key}"), None, current) {
            Value::Null => metadata.remove(key),
            v => metadata.insert(key.clone(), v),
        };
    }
    for (key, value) in &desired.metadata {
        let current = metadata.get(key).cloned().unwrap_or(Value::Null);
        let v = originals.field(&format!("metadata.{key}"), Some(value.clone()), current);
        metadata.insert(key.clone(), v);
    }

    // The budget.
    let owned_id = desired.owned_budget_id.clone();
    let current_budget_id = existing.map(|o| o.budget_id.clone());
    let on_owned_row = current_budget_id.as_deref() == Some(owned_id.as_str());
    let mut budget_changes = Vec::new();
    let mut budget_claim = None;
    let mut release_owned = false;
    let budget_id: String = match &desired.budget {
        DesiredBudget::Referenced(id) => {
            if observed.desired_budget.is_none() {
                return Err(EngineError::invalid(
                    "spec.budgetRef.budgetId",
                    format!(
                        "budget {id:?} does not exist in LiteLLM_BudgetTable: create it first or use an inline budget"
                    ),
                ));
            }
            originals.forget_prefix("budget.");
            release_owned = true;
            let current = current_budget_id.clone().map_or(Value::Null, Value::from);
            value_string(originals.field("budget_id", Some(json!(id)), current), id)
        }
        // The resource's own row: declared, or needed (a created organization must have a
        // budget), or the only one it has (nothing recorded to give back).
        DesiredBudget::Owned(_) | DesiredBudget::Unset(_)
            if created
                || matches!(desired.budget, DesiredBudget::Owned(_))
                || (on_owned_row && !originals.manages("budget_id")) =>
        {
            let declared = match &desired.budget {
                DesiredBudget::Owned(row) => row.clone(),
                _ => BudgetRow::default(),
            };
            // Start from the row as it is; an adopted organization's own row starts as a copy
            // of the budget it had, so no limit set in LiteLLM is dropped.
            let base = match (&observed.desired_budget, &observed.current_budget) {
                (Some(own), _) => own.clone(),
                (None, Some(theirs)) if !created => BudgetRow {
                    budget_id: owned_id.clone(),
                    created_by: declared.created_by.clone(),
                    ..theirs.clone()
                },
                _ => BudgetRow {
                    budget_id: owned_id.clone(),
                    created_by: declared.created_by.clone(),
                    ..Default::default()
                },
            };
            let want = managed_budget(&mut originals, &declared, &base);
            match &observed.desired_budget {
                None => budget_changes.push(Change::CreateBudget(want)),
                Some(have) if !same_limits(have, &want) => {
                    budget_changes.push(Change::UpdateBudget {
                        before: have.clone(),
                        after: BudgetRow {
                            created_by: have.created_by.clone(),
                            ..want
                        },
                    })
                }
                Some(_) => {}
            }
            let budget_created = observed.desired_budget.is_none()
                || observed.budget_ledger.as_ref().is_none_or(|e| e.created);
            budget_claim = claim_if_changed(
                observed.budget_ledger.as_ref(),
                LedgerEntry {
                    row_key: budget_key(&owned_id),
                    manager: manager.to_string(),
                    resource: resource.clone(),
                    organization_id: Some(desired.organization_id.clone()),
                    created: budget_created,
                    deletion_policy: policy_str(desired.deletion_policy).into(),
                    managed: json!({}),
                },
                None,
            );
            let current = current_budget_id.clone().map_or(Value::Null, Value::from);
            value_string(
                originals.field("budget_id", Some(json!(owned_id)), current),
                &owned_id,
            )
        }
        // An adopted organization that declares no budget keeps the one it has, or gets back
        // the one it had before the operator gave it its own.
        DesiredBudget::Owned(_) | DesiredBudget::Unset(_) => {
            originals.forget_prefix("budget.");
            let current = current_budget_id.clone().unwrap_or_default();
            match originals.field("budget_id", None, json!(current)) {
                Value::String(original) => {
                    release_owned = original != owned_id;
                    original
                }
                _ => current,
            }
        }
    };

    let want = OrganizationRow {
        organization_id: desired.organization_id.clone(),
        organization_alias: value_string(alias, &desired.alias),
        budget_id: budget_id.clone(),
        models: serde_json::from_value(models).unwrap_or_default(),
        metadata,
        spend: existing.map_or(0.0, |o| o.spend),
    };
    let mut changes = Vec::new();
    let entry = LedgerEntry {
        row_key: org_key,
        manager: manager.to_string(),
        resource: resource.clone(),
        organization_id: Some(desired.organization_id.clone()),
        created,
        deletion_policy: policy_str(desired.deletion_policy).into(),
        managed: originals.to_value(&[]),
    };
    changes.extend(claim_if_changed(observed.ledger.as_ref(), entry, None));
    changes.extend(budget_claim);
    changes.extend(budget_changes);
    match existing {
        None => changes.push(Change::CreateOrganization(want)),
        Some(have)
            if have.organization_alias != want.organization_alias
                || have.budget_id != want.budget_id
                || have.models != want.models
                || have.metadata != want.metadata =>
        {
            changes.push(Change::UpdateOrganization {
                before: have.clone(),
                after: want,
            })
        }
        Some(_) => {}
    }
    // The resource's own budget row, no longer used by it: deleted if the operator created it
    // (and nothing else of LiteLLM's points at it: the organization was its only user), else
    // released.
    if release_owned && budget_id != owned_id {
        if let Some(own) = &observed
            .desired_budget
            .as_ref()
            .filter(|b| b.budget_id == owned_id)
            .or(observed
                .current_budget
                .as_ref()
                .filter(|b| b.budget_id == owned_id))
        {
            let created_by_us = observed.budget_ledger.as_ref().is_none_or(|e| e.created);
            if created_by_us {
                changes.push(Change::DeleteBudget {
                    budget_id: own.budget_id.clone(),
                });
            }
        }
        if observed.budget_ledger.is_some() {
            changes.push(Change::Release {
                row_key: budget_key(&owned_id),
            });
        }
    }

    Ok(ObjectPlan {
        kind: "Organization",
        key: Some(desired.key.clone()),
        changes,
        organization_id: Some(desired.organization_id.clone()),
        budget_id: Some(budget_id),
        user_id: None,
        user_created: false,
    })
}

/// A JSON value that should be a string, or `fallback`.
fn value_string(v: Value, fallback: &str) -> String {
    match v {
        Value::String(s) => s,
        _ => fallback.to_string(),
    }
}

/// The ledger's `managed` for an organization imported from an earlier version's marker.
pub fn legacy_managed(org: &OrganizationRow) -> Value {
    legacy_originals(org).to_value(&[])
}

/// What an earlier version's marker says the resource manages: the metadata keys it listed,
/// and (on the organization's own budget row) every limit, as it always managed them all.
fn legacy_originals(org: &OrganizationRow) -> Originals {
    let mut o = Map::new();
    if let Some(keys) = org
        .metadata
        .get(OWNER_KEY)
        .and_then(|m| m.get("managedKeys"))
        .and_then(Value::as_array)
    {
        for k in keys.iter().filter_map(Value::as_str) {
            o.insert(format!("metadata.{k}"), Value::Null);
        }
    }
    for (name, _) in budget_columns(&BudgetRow::default()) {
        o.insert(format!("budget.{name}"), Value::Null);
    }
    Originals(o)
}

/// Whether an organization row's marker (of an earlier version) says `deletionPolicy: Retain`.
pub fn retained_by_marker(observed: &ObservedOrganization) -> bool {
    observed
        .organization
        .as_ref()
        .and_then(|o| o.metadata.get(OWNER_KEY))
        .and_then(|m| m.get("deletionPolicy"))
        .and_then(Value::as_str)
        == Some("Retain")
}

/// Plan what deleting the resource `key` does to the rows the ledger says it manages:
/// `Retain` releases them all; `Delete` deletes the rows the operator created (an organization
/// with its teams, memberships and keys; its own budget row) and releases the rows it adopted.
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
    let release_all = |plan: &mut ObjectPlan| {
        for e in entries {
            plan.changes.push(Change::Release {
                row_key: e.row_key.clone(),
            });
        }
    };
    let org_entry = entries
        .iter()
        .find(|e| e.row_key.starts_with("organization/"));
    let budget_entry = entries.iter().find(|e| e.row_key.starts_with("budget/"));
    if retain || org_entry.is_some_and(|e| !e.created) {
        release_all(&mut plan);
        return plan;
    }
    if let Some(e) = org_entry {
        let organization_id = e.organization_id.clone().unwrap_or_default();
        plan.organization_id = Some(organization_id.clone());
        let owned = budget_entry
            .filter(|b| b.created)
            .and_then(|b| b.row_key.strip_prefix("budget/"))
            .map(str::to_string);
        plan.changes.push(Change::DeleteOrganization {
            organization_id,
            owned_budget_id: owned,
        });
        // The cascade releases every entry of the organization's rows; anything else is
        // released here.
        for e in entries.iter().filter(|e| e.organization_id.is_none()) {
            plan.changes.push(Change::Release {
                row_key: e.row_key.clone(),
            });
        }
        return plan;
    }
    // No organization entry: only a budget row is left to the resource.
    if let Some(b) = budget_entry {
        let id = b
            .row_key
            .strip_prefix("budget/")
            .unwrap_or_default()
            .to_string();
        let in_use = observed
            .organization
            .as_ref()
            .is_some_and(|o| o.budget_id == id);
        if b.created && !in_use && observed.desired_budget.is_some() {
            plan.changes.push(Change::DeleteBudget { budget_id: id });
        }
    }
    release_all(&mut plan);
    plan
}

/// The delete of an organization marked by an earlier version and never written since (no
/// ledger entry): the cascade when the marker names `key` and the operator created the row.
pub fn plan_delete_legacy_organization(
    key: &ObjectKey,
    owned_budget_id: &str,
    observed: &ObservedOrganization,
) -> ObjectPlan {
    let mut plan = ObjectPlan {
        kind: "Organization",
        key: Some(key.clone()),
        ..Default::default()
    };
    let owner = super::desired::owner_string(key);
    if let Some(org) = &observed.organization
        && metadata_owner(&org.metadata) == Some(owner.as_str())
        && org.organization_id == ids::organization_id(&key.namespace, &key.name)
    {
        plan.organization_id = Some(org.organization_id.clone());
        plan.changes.push(Change::DeleteOrganization {
            organization_id: org.organization_id.clone(),
            owned_budget_id: (org.budget_id == owned_budget_id)
                .then(|| owned_budget_id.to_string()),
        });
    }
    plan
}

/// True when two budget rows hold the same limits (ids and ownership columns not compared):
/// the planner's test for "this budget needs no write".
pub fn same_limits(a: &BudgetRow, b: &BudgetRow) -> bool {
    fn normalise(v: &Option<Value>) -> Option<&Value> {
        match v {
            None | Some(Value::Null) => None,
            Some(Value::Object(m)) if m.is_empty() => None,
            Some(other) => Some(other),
        }
    }
    a.max_budget == b.max_budget
        && a.soft_budget == b.soft_budget
        && a.max_parallel_requests == b.max_parallel_requests
        && a.tpm_limit == b.tpm_limit
        && a.rpm_limit == b.rpm_limit
        && a.budget_duration == b.budget_duration
        && normalise(&a.model_max_budget) == normalise(&b.model_max_budget)
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
    let MemberContext {
        actor,
        manager,
        new_user,
    } = *context;
    if !observed.organization_exists && !organization_pending {
        return Err(EngineError::OrganizationNotFound(format!(
            "organization {organization_id} does not exist in the database"
        )));
    }
    let mut changes = Vec::new();

    // Resolve the user as LiteLLM does: by id, else by email (case-insensitive), else create.
    let mut user_changes = Vec::new();
    let (user_id, user_created) = if let Some(u) = &observed.user_by_id {
        (u.user_id.clone(), false)
    } else {
        match observed.users_by_email.as_slice() {
            [one] => (one.user_id.clone(), false),
            [] => {
                let id = match (&desired.user_id, &desired.email) {
                    (Some(id), _) => id.clone(),
                    (None, Some(email)) => ids::user_id_for_email(email),
                    (None, None) => {
                        return Err(EngineError::invalid(
                            "spec.user",
                            "set user.userId, user.email, or both",
                        ));
                    }
                };
                user_changes.push(Change::CreateUser {
                    user_id: id.clone(),
                    email: desired.email.clone(),
                    defaults: new_user.clone(),
                });
                (id, true)
            }
            many => {
                // The user this resource already holds its membership for stays its user: a
                // second user with the same email (made in LiteLLM's UI, in another case) does
                // not make an existing membership ambiguous.
                let held = observed
                    .own_entries
                    .iter()
                    .filter(|e| {
                        e.row_key.starts_with("membership/")
                            && e.organization_id.as_deref() == Some(organization_id)
                    })
                    .filter_map(|e| e.managed.get("user_id").and_then(Value::as_str))
                    .find(|held| many.iter().any(|u| u.user_id == *held));
                if let Some(held) = held {
                    (held.to_string(), false)
                } else {
                    let ids: Vec<&str> = many.iter().map(|u| u.user_id.as_str()).collect();
                    // The store reads at most EMAIL_MATCHES_READ of them.
                    let truncated = many.len() >= crate::store::EMAIL_MATCHES_READ;
                    let count = if truncated {
                        format!("{} or more", many.len())
                    } else {
                        many.len().to_string()
                    };
                    return Err(EngineError::Conflict(format!(
                        "{count} users have the email {:?} ({}{}): set spec.user.userId to choose one",
                        desired.email.as_deref().unwrap_or_default(),
                        ids.join(", "),
                        if truncated { ", ..." } else { "" }
                    )));
                }
            }
        }
    };

    let resource = desired.resource();
    let legacy = legacy_member_resource(&desired.budget_id);
    let row_key = membership_key(organization_id, &user_id);
    let own_budget = desired.budget_id.as_str();
    let mine =
        |e: &LedgerEntry| e.manager == manager && (e.resource == resource || e.resource == legacy);

    // Who holds the row: the ledger, else an earlier version's budget marker, else nobody.
    let held: Option<(bool, Originals)> = match (&observed.ledger, &observed.membership) {
        (Some(e), _) if mine(e) => Some((e.created, Originals::read(&e.managed))),
        (Some(e), _) => {
            return Err(conflict_with(
                &format!("user {user_id} in organization {organization_id}"),
                e,
            ));
        }
        (None, Some(m)) if m.budget_id.as_deref() == Some(own_budget) => {
            // Made by an earlier version for this resource, with a budget row of its own.
            let mut o = Map::new();
            o.insert("budget_id".into(), Value::Null);
            o.insert("budget.max_budget".into(), Value::Null);
            Some((true, Originals(o)))
        }
        (None, Some(m))
            if observed.membership_budget.as_ref().is_some_and(|b| {
                b.created_by == actor && Some(b.budget_id.as_str()) == m.budget_id.as_deref()
            }) =>
        {
            return Err(EngineError::Conflict(format!(
                "user {user_id} in organization {organization_id} is already managed by another OrganizationMember (marked by an earlier version)"
            )));
        }
        _ => None,
    };
    let existing = observed.membership.as_ref();
    let (created, mut originals) = match (existing, held) {
        (None, _) => (true, Originals::default()),
        (Some(_), Some(h)) => h,
        (Some(_), None) => (false, Originals::default()),
    };

    // Rows this resource managed for another user or organization before: removed if it
    // created them, released if it adopted them.
    let mut stale_budget_users = 0;
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
            changes.push(Change::DeleteMembership {
                user_id: u.to_string(),
                organization_id: o.to_string(),
            });
        } else if Originals::read(&e.managed).manages("budget_id") {
            stale_budget_users += 1;
        }
        changes.push(Change::Release {
            row_key: e.row_key.clone(),
        });
    }
    // The same, for memberships an earlier version made (recognised by the budget row).
    for stale in &observed.memberships_with_own_budget {
        if (stale.user_id != user_id || stale.organization_id != organization_id)
            && !observed
                .own_entries
                .iter()
                .any(|e| e.row_key == membership_key(&stale.organization_id, &stale.user_id))
        {
            changes.push(Change::DeleteMembership {
                user_id: stale.user_id.clone(),
                organization_id: organization_id_of(stale),
            });
        }
    }

    let current_role = existing
        .and_then(|m| m.user_role.clone())
        .map_or(Value::Null, Value::from);
    let role = originals.field(
        "user_role",
        Some(json!(desired.role.as_str())),
        current_role,
    );

    let current_budget_id = existing.and_then(|m| m.budget_id.clone());
    let mut budget_changes = Vec::new();
    let mut after_changes = Vec::new();
    let budget_entry_key = budget_key(own_budget);
    let own_budget_entry = observed
        .own_entries
        .iter()
        .find(|e| e.row_key == budget_entry_key);
    let budget_id: Option<String> = match desired.max_budget {
        Some(max) => {
            let base = match (&observed.own_budget, &observed.membership_budget) {
                (Some(own), _) => own.clone(),
                (None, Some(theirs)) if !created => BudgetRow {
                    budget_id: own_budget.to_string(),
                    created_by: actor.to_string(),
                    ..theirs.clone()
                },
                _ => BudgetRow {
                    budget_id: own_budget.to_string(),
                    created_by: actor.to_string(),
                    ..Default::default()
                },
            };
            let declared = BudgetRow {
                max_budget: Some(max),
                ..Default::default()
            };
            let want = managed_budget(&mut originals, &declared, &base);
            match &observed.own_budget {
                None => budget_changes.push(Change::CreateBudget(want)),
                Some(have) if !same_limits(have, &want) => {
                    budget_changes.push(Change::UpdateBudget {
                        before: have.clone(),
                        after: BudgetRow {
                            created_by: have.created_by.clone(),
                            ..want
                        },
                    })
                }
                Some(_) => {}
            }
            let entry = LedgerEntry {
                row_key: budget_entry_key.clone(),
                manager: manager.to_string(),
                resource: resource.clone(),
                organization_id: Some(organization_id.to_string()),
                created: observed.own_budget.is_none()
                    || own_budget_entry.is_none_or(|e| e.created),
                deletion_policy: policy_str(desired.deletion_policy).into(),
                managed: json!({}),
            };
            changes.extend(claim_if_changed(
                own_budget_entry,
                entry,
                Some(legacy.clone()),
            ));
            let current = current_budget_id.clone().map_or(Value::Null, Value::from);
            Some(value_string(
                originals.field("budget_id", Some(json!(own_budget)), current),
                own_budget,
            ))
        }
        None => {
            originals.forget_prefix("budget.");
            let current = current_budget_id.clone().map_or(Value::Null, Value::from);
            let restored = originals.field("budget_id", None, current);
            let restored = restored.as_str().map(str::to_string);
            // The resource's own budget row, now unused: deleted (after the membership lets go
            // of it) if the operator created it, released otherwise.
            if observed.own_budget.is_some()
                && restored.as_deref() != Some(own_budget)
                && stale_budget_users == 0
            {
                if own_budget_entry.is_none_or(|e| e.created) {
                    after_changes.push(Change::DeleteBudget {
                        budget_id: own_budget.to_string(),
                    });
                }
                if own_budget_entry.is_some() {
                    after_changes.push(Change::Release {
                        row_key: budget_entry_key.clone(),
                    });
                }
            }
            restored
        }
    };

    let want = MembershipRow {
        user_id: user_id.clone(),
        organization_id: organization_id.to_string(),
        user_role: role.as_str().map(str::to_string),
        budget_id: budget_id.clone(),
    };
    let entry = LedgerEntry {
        row_key,
        manager: manager.to_string(),
        resource: resource.clone(),
        organization_id: Some(organization_id.to_string()),
        created,
        deletion_policy: policy_str(desired.deletion_policy).into(),
        managed: originals.to_value(&[
            ("user_id", json!(user_id)),
            ("organization_id", json!(organization_id)),
        ]),
    };
    let mut plan_changes: Vec<Change> = Vec::new();
    plan_changes.extend(claim_if_changed(
        observed.ledger.as_ref(),
        entry,
        Some(legacy),
    ));
    plan_changes.extend(changes);
    plan_changes.extend(user_changes);
    plan_changes.extend(budget_changes);
    match existing {
        None => plan_changes.push(Change::CreateMembership(want)),
        Some(have) if *have != want => plan_changes.push(Change::UpdateMembership {
            before: have.clone(),
            after: want,
        }),
        Some(_) => {}
    }
    plan_changes.extend(after_changes);

    Ok(ObjectPlan {
        kind: "OrganizationMember",
        key: Some(desired.key.clone()),
        changes: plan_changes,
        organization_id: Some(organization_id.to_string()),
        budget_id,
        user_id: Some(user_id),
        user_created,
    })
}

fn organization_id_of(m: &MembershipRow) -> String {
    m.organization_id.clone()
}

/// Plan what deleting the member resource `key` does: `Retain` releases its rows; `Delete`
/// deletes the memberships the operator created and its own budget row, and releases the
/// memberships it adopted (as they stand, with a budget it attached left attached). Users are
/// never deleted. `entries` are its ledger entries; with none (a member of an earlier version
/// never written since), `observed.memberships_with_own_budget` names its rows.
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
    let mut releases = Vec::new();
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
            _ => {
                budget_still_attached |= Originals::read(&e.managed).manages("budget_id");
            }
        }
        releases.push(Change::Release {
            row_key: e.row_key.clone(),
        });
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
    if !retain && !budget_still_attached && budget_created && observed.own_budget.is_some() {
        plan.changes.push(Change::DeleteBudget {
            budget_id: budget_id.to_string(),
        });
    }
    if let Some(e) = budget_entry {
        releases.push(Change::Release {
            row_key: e.row_key.clone(),
        });
    }
    plan.changes.extend(releases);
    plan
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
    use crate::store::UserRow;

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
                Change::CreateBudget(b) | Change::UpdateBudget { after: b, .. } => {
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
        BudgetRow {
            budget_id: "ui-org-budget".into(),
            max_budget: Some(1000.0),
            budget_duration: Some("30d".into()),
            tpm_limit: Some(100),
            created_by: "admin".into(),
            ..Default::default()
        }
    }

    /// An organization made in LiteLLM's UI with a 1000 USD / 30d budget.
    fn ui_org() -> ObservedOrganization {
        ObservedOrganization {
            organization: Some(OrganizationRow {
                organization_id: "ui-org".into(),
                organization_alias: "Made in the UI".into(),
                budget_id: "ui-org-budget".into(),
                models: vec!["gpt-4o".into()],
                metadata: Map::from_iter([("team".to_string(), json!("ui"))]),
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
        let r = rows(&plan);
        assert_eq!(r.len(), 2, "{plan}");
        let Change::CreateBudget(b) = r[0] else {
            panic!("budget first")
        };
        assert_eq!(
            b.budget_id,
            ids::organization_budget_id("team-a", "research")
        );
        assert_eq!(b.max_budget, Some(100.0));
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
            !o.metadata.contains_key(OWNER_KEY),
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
            b.max_budget = Some(5.0);
            b.tpm_limit = Some(77); // not declared by the manifest
            b.created_by = "someone".into();
        }
        let plan = plan_organization(&d, &observed, MANAGER).expect("plan");
        let r = rows(&plan);
        let Change::UpdateBudget { before, after } = r[0] else {
            panic!("{plan}")
        };
        assert_eq!(before.max_budget, Some(5.0));
        assert_eq!(after.max_budget, Some(100.0));
        assert_eq!(
            after.tpm_limit,
            Some(77),
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
    }

    #[test]
    fn a_declared_budget_on_an_adopted_organization_starts_from_its_budget_and_can_be_given_back() {
        let d = pinned(budget_spec(500.0));
        let (plan, observed) = apply(&d, &ui_org());
        let r = rows(&plan);
        let Change::CreateBudget(own) = r[0] else {
            panic!("{plan}")
        };
        assert_eq!(own.max_budget, Some(500.0), "declared");
        assert_eq!(own.tpm_limit, Some(100), "copied from the budget it had");
        assert_eq!(own.budget_duration.as_deref(), Some("30d"), "copied");
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
            o.metadata = Map::from_iter([("from_ui".to_string(), json!(1))]);
        }
        let plan = plan_organization(&d, &observed, MANAGER).expect("still ours");
        let r = rows(&plan);
        let Change::UpdateOrganization { after, .. } = r[0] else {
            panic!("{plan}")
        };
        assert_eq!(
            after.metadata.get("tier"),
            Some(&json!("gold")),
            "declared key put back"
        );
        assert_eq!(
            after.metadata.get("from_ui"),
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
                .and_then(|o| o.metadata.get("team")),
            Some(&json!("platform"))
        );
        let (_, observed) = apply(&pinned(OrganizationSpec::default()), &observed);
        assert_eq!(
            observed
                .organization
                .as_ref()
                .and_then(|o| o.metadata.get("team")),
            Some(&json!("ui")),
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
                metadata: Map::from_iter([(
                    OWNER_KEY.to_string(),
                    json!({"owner": "Organization/team-a/research", "managedKeys": [], "deletionPolicy": "Delete"}),
                )]),
                ..Default::default()
            }),
            ..Default::default()
        };
        observed.desired_budget = Some(BudgetRow {
            budget_id: d.owned_budget_id.clone(),
            ..Default::default()
        });
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
        assert!(!update.metadata.contains_key(OWNER_KEY));
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
    fn a_missing_budget_reference_is_an_invalid_spec() {
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
            Err(EngineError::InvalidSpec { field, .. }) => {
                assert_eq!(field, "spec.budgetRef.budgetId")
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
        observed.desired_budget = Some(BudgetRow {
            budget_id: "shared".into(),
            ..Default::default()
        });
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
                metadata: Map::from_iter([(
                    OWNER_KEY.to_string(),
                    json!({"owner": "Organization/team-a/research"}),
                )]),
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
            matches!(r[0], Change::CreateBudget(b) if b.max_budget == Some(10.0) && b.budget_id == d.budget_id)
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
            membership_budget: Some(BudgetRow {
                budget_id: "ui-member-budget".into(),
                max_budget: Some(100.0),
                created_by: "admin".into(),
                ..Default::default()
            }),
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
        observed.membership_budget = Some(d.budget_row(ACTOR));
        observed.own_budget = Some(d.budget_row(ACTOR));
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
            model_max_budget: Some(json!({})),
            ..Default::default()
        };
        assert!(same_limits(&a, &b));
        let c = BudgetRow {
            model_max_budget: Some(json!({"gpt-4o": {"budget_limit": 1.0}})),
            created_by: "x".into(),
            ..Default::default()
        };
        assert!(!same_limits(&a, &c));
    }
}
