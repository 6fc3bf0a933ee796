//! Rows of earlier versions, which kept an ownership marker in the organization's `metadata`
//! and gave every member a budget row of its own: how they are recognised, imported into the
//! ledger and deleted. Pure.

use serde_json::{Map, Value};

use super::desired::{
    DesiredMember, DesiredOrganization, ObjectKey, legacy_member_resource, owner_string,
};
use super::ids;
use super::plan::{ObjectPlan, Originals};
use crate::error::EngineError;
use crate::store::{
    BUDGET_LIMITS, Change, OWNER_KEY, ObservedMember, ObservedOrganization, OrganizationRow,
    metadata_owner,
};
use crate::store::{LedgerEntry, OwnedMembership, budget_key, membership_key, organization_key};

/// Who holds an organization no ledger entry names: the resource its marker names (created
/// when its id is the derived one), or nobody (adoptable only when pinned).
pub(super) fn organization_holder(
    desired: &DesiredOrganization,
    existing: Option<&OrganizationRow>,
) -> Result<Option<(bool, Originals)>, EngineError> {
    let Some(org) = existing else {
        return Ok(None);
    };
    let metadata = org.metadata_map();
    match metadata_owner(&metadata) {
        Some(o) if o == desired.owner() => Ok(Some((
            org.organization_id == ids::organization_id(&desired.key.namespace, &desired.key.name),
            legacy_originals(org),
        ))),
        Some(other) => Err(EngineError::Conflict(format!(
            "organization {} is already managed by {other} (marked by an earlier version); a row is never taken over from another resource",
            org.organization_id
        ))),
        None if desired.pinned => Ok(None),
        None => Err(EngineError::Conflict(format!(
            "organization {} already exists without an owner; set spec.organizationId to adopt it",
            org.organization_id
        ))),
    }
}

/// Who holds a membership no ledger entry names: this resource when it points at the
/// resource's own budget row (made by an earlier version), a `Conflict` when it points at a
/// budget row another member of an earlier version made.
pub(super) fn membership_holder(
    desired: &DesiredMember,
    observed: &ObservedMember,
    actor: &str,
    user_id: &str,
    organization_id: &str,
) -> Result<Option<(bool, Originals)>, EngineError> {
    let Some(m) = &observed.membership else {
        return Ok(None);
    };
    if m.budget_id.as_deref() == Some(desired.budget_id.as_str()) {
        let mut o = Map::new();
        o.insert("budget_id".into(), Value::Null);
        o.insert("budget.max_budget".into(), Value::Null);
        return Ok(Some((true, Originals(o))));
    }
    if observed.membership_budget.as_ref().is_some_and(|b| {
        b.created_by == actor && Some(b.budget_id.as_str()) == m.budget_id.as_deref()
    }) {
        return Err(EngineError::Conflict(format!(
            "user {user_id} in organization {organization_id} is already managed by another OrganizationMember (marked by an earlier version)"
        )));
    }
    Ok(None)
}

/// The claims that import an organization marked by an earlier version (and its own budget
/// row, `owned_budget_id`, when it points at it) as `manager`'s.
pub fn organization_import(
    manager: &str,
    owner: &str,
    org: &OrganizationRow,
    created: bool,
    policy: &str,
    owned_budget_id: Option<&str>,
) -> Vec<Change> {
    let entry = |row_key: String, created: bool, managed: Value| Change::Claim {
        entry: LedgerEntry {
            row_key,
            manager: manager.to_string(),
            resource: owner.to_string(),
            organization_id: Some(org.organization_id.clone()),
            created,
            deletion_policy: policy.into(),
            managed,
        },
        replaces: None,
    };
    let mut changes = vec![entry(
        organization_key(&org.organization_id),
        created,
        legacy_managed(org),
    )];
    if let Some(budget_id) = owned_budget_id {
        changes.push(entry(budget_key(budget_id), true, serde_json::json!({})));
    }
    changes
}

/// The claims that import a membership an earlier version made (recognised by the budget row
/// it gave the member) and that budget row, as `manager`'s, under a placeholder resource its
/// member resource takes over.
pub fn membership_import(manager: &str, m: &OwnedMembership) -> [Change; 2] {
    let resource = legacy_member_resource(&m.budget_id);
    let entry = |row_key: String, managed: Value| Change::Claim {
        entry: LedgerEntry {
            row_key,
            manager: manager.to_string(),
            resource: resource.clone(),
            organization_id: Some(m.organization_id.clone()),
            created: true,
            deletion_policy: "Delete".into(),
            managed,
        },
        replaces: None,
    };
    [
        entry(
            membership_key(&m.organization_id, &m.user_id),
            serde_json::json!({
                "originals": {"budget_id": null, "budget.max_budget": null},
                "user_id": m.user_id,
                "organization_id": m.organization_id,
            }),
        ),
        entry(budget_key(&m.budget_id), serde_json::json!({})),
    ]
}

/// The ledger's `managed` for an organization imported from an earlier version's marker.
pub fn legacy_managed(org: &OrganizationRow) -> Value {
    legacy_originals(org).to_value(&[])
}

/// What an earlier version's marker says the resource manages: the metadata keys it listed,
/// and (on the organization's own budget row) every limit, as it always managed them all.
fn legacy_originals(org: &OrganizationRow) -> Originals {
    let mut o = Map::new();
    let metadata = org.metadata_map();
    if let Some(keys) = metadata
        .get(OWNER_KEY)
        .and_then(|m| m.get("managedKeys"))
        .and_then(Value::as_array)
    {
        for k in keys.iter().filter_map(Value::as_str) {
            o.insert(format!("metadata.{k}"), Value::Null);
        }
    }
    for limit in BUDGET_LIMITS {
        o.insert(format!("budget.{}", limit.column), Value::Null);
    }
    o.insert("budget.model_max_budget".into(), Value::Null);
    Originals(o)
}

/// Whether an organization row's marker (of an earlier version) says `deletionPolicy: Retain`.
pub fn retained_by_marker(observed: &ObservedOrganization) -> bool {
    observed
        .organization
        .as_ref()
        .map(OrganizationRow::metadata_map)
        .and_then(|m| m.get(OWNER_KEY).cloned())
        .and_then(|m| m.get("deletionPolicy").cloned())
        .and_then(|v| v.as_str().map(str::to_string))
        .as_deref()
        == Some("Retain")
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
    let owner = owner_string(key);
    if let Some(org) = &observed.organization
        && metadata_owner(&org.metadata_map()) == Some(owner.as_str())
        && org.organization_id == ids::organization_id(&key.namespace, &key.name)
    {
        plan.organization_id = Some(org.organization_id.clone());
        plan.changes.push(Change::DeleteOrganization {
            organization_id: org.organization_id.clone(),
            owned_budget_id: (org.budget_id == owned_budget_id)
                .then(|| owned_budget_id.to_string()),
            // Counted by the engine before the plan is shown or applied.
            dependents: Default::default(),
        });
    }
    plan
}
