//! Planning: desired state + observed rows → the typed changes that close the gap. Pure.
//! An empty plan means the database already matches, and applying it writes nothing.

use std::fmt;

use serde_json::{Map, Value, json};

use super::desired::{
    DesiredBudget, DesiredMember, DesiredOrganization, ObjectKey, metadata_owner,
};
use super::ids;
use super::validate::OWNER_KEY;
use crate::crd::DeletionPolicy;
use crate::error::EngineError;
use crate::store::{
    BudgetRow, MembershipRow, ObservedMember, ObservedOrganization, OrganizationRow,
};

/// One write. A list of these for one object is applied in one transaction, in order.
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    CreateBudget(BudgetRow),
    UpdateBudget {
        before: BudgetRow,
        after: BudgetRow,
    },
    DeleteBudget {
        budget_id: String,
    },
    CreateOrganization(OrganizationRow),
    UpdateOrganization {
        before: OrganizationRow,
        after: OrganizationRow,
    },
    /// Cascade in foreign-key order: teams, memberships, keys, the organization, its owned
    /// budget, and the member budgets the operator created for those memberships.
    DeleteOrganization {
        organization_id: String,
        owned_budget_id: Option<String>,
    },
    /// A new `LiteLLM_UserTable` row with LiteLLM's new-internal-user defaults.
    CreateUser {
        user_id: String,
        email: Option<String>,
    },
    CreateMembership(MembershipRow),
    UpdateMembership {
        before: MembershipRow,
        after: MembershipRow,
    },
    /// Remove one membership; its owned budget goes with it.
    DeleteMembership {
        user_id: String,
        organization_id: String,
        owned_budget_id: Option<String>,
    },
}

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
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }
}

/// Plan one organization against what the database holds.
pub fn plan_organization(
    desired: &DesiredOrganization,
    observed: &ObservedOrganization,
) -> Result<ObjectPlan, EngineError> {
    let mut changes = Vec::new();
    let owner = desired.owner();
    if let Some(org) = &observed.organization {
        match metadata_owner(&org.metadata) {
            Some(o) if o == owner => {}
            Some(other) => {
                return Err(EngineError::Conflict(format!(
                    "organization {} is already managed by {other}; a row is never taken over from another resource",
                    org.organization_id
                )));
            }
            None if desired.pinned => {} // adopt an organization made outside the operator
            None => {
                return Err(EngineError::Conflict(format!(
                    "organization {} already exists without an owner; set spec.organizationId to adopt it",
                    org.organization_id
                )));
            }
        }
    }

    match &desired.budget {
        DesiredBudget::Owned(want) => match &observed.desired_budget {
            None => changes.push(Change::CreateBudget(want.clone())),
            Some(have) if !have.same_limits(want) => changes.push(Change::UpdateBudget {
                before: have.clone(),
                after: BudgetRow {
                    created_by: have.created_by.clone(),
                    ..want.clone()
                },
            }),
            Some(_) => {}
        },
        DesiredBudget::Referenced(id) => {
            if observed.desired_budget.is_none() {
                return Err(EngineError::invalid(
                    "spec.budgetRef.budgetId",
                    format!(
                        "budget {id:?} does not exist in LiteLLM_BudgetTable: create it first or use an inline budget"
                    ),
                ));
            }
        }
    }

    let metadata = merge_metadata(
        &desired.metadata,
        observed.organization.as_ref().map(|o| &o.metadata),
        &owner,
        desired.deletion_policy,
    );
    let want = OrganizationRow {
        organization_id: desired.organization_id.clone(),
        organization_alias: desired.alias.clone(),
        budget_id: desired.budget.budget_id().to_string(),
        models: desired.models.clone(),
        metadata,
        spend: observed.organization.as_ref().map_or(0.0, |o| o.spend),
    };
    match &observed.organization {
        None => changes.push(Change::CreateOrganization(want)),
        Some(have) => {
            if have.organization_alias != want.organization_alias
                || have.budget_id != want.budget_id
                || have.models != want.models
                || have.metadata != want.metadata
            {
                changes.push(Change::UpdateOrganization {
                    before: have.clone(),
                    after: want,
                });
            }
            // Switching from the owned budget to a budgetRef leaves the owned row unused.
            if have.budget_id == desired.owned_budget_id
                && desired.budget.budget_id() != desired.owned_budget_id
            {
                changes.push(Change::DeleteBudget {
                    budget_id: desired.owned_budget_id.clone(),
                });
            }
        }
    }

    Ok(ObjectPlan {
        kind: "Organization",
        key: Some(desired.key.clone()),
        changes,
        organization_id: Some(desired.organization_id.clone()),
        budget_id: Some(desired.budget.budget_id().to_string()),
        user_id: None,
        user_created: false,
    })
}

/// The organization's metadata after the operator writes the spec's keys: keys the operator did
/// not write are kept, keys it wrote before but the spec no longer has are removed.
pub fn merge_metadata(
    spec: &Map<String, Value>,
    current: Option<&Map<String, Value>>,
    owner: &str,
    deletion_policy: DeletionPolicy,
) -> Map<String, Value> {
    let mut out = current.cloned().unwrap_or_default();
    let previously_managed: Vec<String> = out
        .get(OWNER_KEY)
        .and_then(|m| m.get("managedKeys"))
        .and_then(Value::as_array)
        .map(|keys| {
            keys.iter()
                .filter_map(|k| k.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    for key in previously_managed {
        if !spec.contains_key(&key) {
            out.remove(&key);
        }
    }
    for (k, v) in spec {
        out.insert(k.clone(), v.clone());
    }
    let managed: Vec<&String> = spec.keys().collect();
    out.insert(
        OWNER_KEY.to_string(),
        json!({
            "owner": owner,
            "managedKeys": managed,
            "deletionPolicy": match deletion_policy {
                DeletionPolicy::Delete => "Delete",
                DeletionPolicy::Retain => "Retain",
            },
        }),
    );
    out
}

/// Plan the delete cascade of an organization, forgiving rows already gone. Rows owned by
/// another resource are left alone (an empty plan).
pub fn plan_delete_organization(
    desired: &DesiredOrganization,
    observed: &ObservedOrganization,
) -> ObjectPlan {
    let mut plan = ObjectPlan {
        kind: "Organization",
        key: Some(desired.key.clone()),
        organization_id: Some(desired.organization_id.clone()),
        ..Default::default()
    };
    let owner = desired.owner();
    match &observed.organization {
        Some(org) if metadata_owner(&org.metadata) == Some(owner.as_str()) => {
            let owned =
                (org.budget_id == desired.owned_budget_id).then(|| desired.owned_budget_id.clone());
            plan.changes.push(Change::DeleteOrganization {
                organization_id: org.organization_id.clone(),
                owned_budget_id: owned,
            });
        }
        Some(_) => {}
        None => {
            if observed
                .desired_budget
                .as_ref()
                .is_some_and(|b| b.budget_id == desired.owned_budget_id)
            {
                plan.changes.push(Change::DeleteBudget {
                    budget_id: desired.owned_budget_id.clone(),
                });
            }
        }
    }
    plan
}

/// Plan one membership. `organization_pending` is true when the organization is not in the
/// database yet but will be created earlier in the same run (offline `plan`).
pub fn plan_member(
    desired: &DesiredMember,
    organization_id: &str,
    organization_pending: bool,
    observed: &ObservedMember,
    actor: &str,
) -> Result<ObjectPlan, EngineError> {
    if !observed.organization_exists && !organization_pending {
        return Err(EngineError::OrganizationNotFound(format!(
            "organization {organization_id} does not exist in the database"
        )));
    }
    let mut changes = Vec::new();

    // Resolve the user as LiteLLM does: by id, else by email (case-insensitive), else create.
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
                changes.push(Change::CreateUser {
                    user_id: id.clone(),
                    email: desired.email.clone(),
                });
                (id, true)
            }
            many => {
                let ids: Vec<&str> = many.iter().map(|u| u.user_id.as_str()).collect();
                return Err(EngineError::Conflict(format!(
                    "{} users have the email {:?} ({}): set spec.user.userId to choose one",
                    many.len(),
                    desired.email.as_deref().unwrap_or_default(),
                    ids.join(", ")
                )));
            }
        }
    };

    // Ownership: a membership whose budget row was created by the operator for another
    // resource is never taken over.
    if let Some(m) = &observed.membership
        && m.budget_id.as_deref() != Some(desired.budget_id.as_str())
        && observed
            .membership_budget
            .as_ref()
            .is_some_and(|b| b.created_by == actor)
    {
        return Err(EngineError::Conflict(format!(
            "user {user_id} in organization {organization_id} is already managed by another OrganizationMember"
        )));
    }

    // A membership this resource made earlier for another user or organization is stale.
    for stale in &observed.memberships_with_own_budget {
        if stale.user_id != user_id || stale.organization_id != organization_id {
            changes.push(Change::DeleteMembership {
                user_id: stale.user_id.clone(),
                organization_id: stale.organization_id.clone(),
                owned_budget_id: None,
            });
        }
    }

    let want_budget = desired.budget_row(actor);
    match &observed.own_budget {
        None => changes.push(Change::CreateBudget(want_budget)),
        Some(have) if !have.same_limits(&want_budget) => changes.push(Change::UpdateBudget {
            before: have.clone(),
            after: BudgetRow {
                created_by: have.created_by.clone(),
                ..want_budget
            },
        }),
        Some(_) => {}
    }

    let want = MembershipRow {
        user_id: user_id.clone(),
        organization_id: organization_id.to_string(),
        user_role: Some(desired.role.as_str().to_string()),
        budget_id: Some(desired.budget_id.clone()),
    };
    match &observed.membership {
        None => changes.push(Change::CreateMembership(want)),
        Some(have) if *have != want => changes.push(Change::UpdateMembership {
            before: have.clone(),
            after: want,
        }),
        Some(_) => {}
    }

    Ok(ObjectPlan {
        kind: "OrganizationMember",
        key: Some(desired.key.clone()),
        changes,
        organization_id: Some(organization_id.to_string()),
        budget_id: Some(desired.budget_id.clone()),
        user_id: Some(user_id),
        user_created,
    })
}

/// Plan the removal of a member's membership rows and its budget. Users are never deleted.
pub fn plan_delete_member(desired: &DesiredMember, observed: &ObservedMember) -> ObjectPlan {
    let mut plan = ObjectPlan {
        kind: "OrganizationMember",
        key: Some(desired.key.clone()),
        ..Default::default()
    };
    for m in &observed.memberships_with_own_budget {
        plan.changes.push(Change::DeleteMembership {
            user_id: m.user_id.clone(),
            organization_id: m.organization_id.clone(),
            owned_budget_id: None,
        });
    }
    if observed.own_budget.is_some() {
        plan.changes.push(Change::DeleteBudget {
            budget_id: desired.budget_id.clone(),
        });
    }
    plan
}

impl Change {
    /// The columns this change writes, for drift events (`max_budget`, `user_role`, ...).
    pub fn changed_fields(&self) -> Vec<String> {
        fn diff(
            before: Vec<(&'static str, String)>,
            after: Vec<(&'static str, String)>,
        ) -> Vec<String> {
            before
                .into_iter()
                .zip(after)
                .filter(|((_, b), (_, a))| b != a)
                .map(|((name, _), _)| name.to_string())
                .collect()
        }
        match self {
            Change::UpdateBudget { before, after } => {
                diff(budget_fields(before), budget_fields(after))
            }
            Change::UpdateOrganization { before, after } => {
                diff(org_fields(before), org_fields(after))
            }
            Change::UpdateMembership { before, after } => {
                let mut f = Vec::new();
                if before.user_role != after.user_role {
                    f.push("user_role".to_string());
                }
                if before.budget_id != after.budget_id {
                    f.push("budget_id".to_string());
                }
                f
            }
            Change::CreateBudget(_) => vec!["budget row".to_string()],
            Change::CreateOrganization(_) => vec!["organization row".to_string()],
            Change::CreateUser { .. } => vec!["user row".to_string()],
            Change::CreateMembership(_) => vec!["membership row".to_string()],
            Change::DeleteBudget { .. }
            | Change::DeleteOrganization { .. }
            | Change::DeleteMembership { .. } => vec!["stale row".to_string()],
        }
    }
}

fn opt<T: fmt::Display>(v: &Option<T>) -> String {
    v.as_ref()
        .map_or_else(|| "none".to_string(), ToString::to_string)
}

fn budget_fields(b: &BudgetRow) -> Vec<(&'static str, String)> {
    vec![
        ("max_budget", opt(&b.max_budget)),
        ("soft_budget", opt(&b.soft_budget)),
        ("max_parallel_requests", opt(&b.max_parallel_requests)),
        ("tpm_limit", opt(&b.tpm_limit)),
        ("rpm_limit", opt(&b.rpm_limit)),
        ("budget_duration", opt(&b.budget_duration)),
        (
            "model_max_budget",
            b.model_max_budget
                .as_ref()
                .map_or_else(|| "none".to_string(), Value::to_string),
        ),
    ]
}

fn org_fields(o: &OrganizationRow) -> Vec<(&'static str, String)> {
    vec![
        ("organization_alias", format!("{:?}", o.organization_alias)),
        ("budget_id", o.budget_id.clone()),
        ("models", format!("{:?}", o.models)),
        ("metadata", Value::Object(o.metadata.clone()).to_string()),
    ]
}

fn write_diff(
    f: &mut fmt::Formatter<'_>,
    before: Vec<(&'static str, String)>,
    after: Vec<(&'static str, String)>,
) -> fmt::Result {
    for ((name, b), (_, a)) in before.into_iter().zip(after) {
        if b != a {
            writeln!(f, "      {name}: {b} -> {a}")?;
        }
    }
    Ok(())
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::CreateBudget(b) => {
                writeln!(f, "  + budget {}", b.budget_id)?;
                for (k, v) in budget_fields(b).into_iter().filter(|(_, v)| v != "none") {
                    writeln!(f, "      {k}: {v}")?;
                }
                Ok(())
            }
            Change::UpdateBudget { before, after } => {
                writeln!(f, "  ~ budget {}", after.budget_id)?;
                write_diff(f, budget_fields(before), budget_fields(after))
            }
            Change::DeleteBudget { budget_id } => writeln!(f, "  - budget {budget_id}"),
            Change::CreateOrganization(o) => {
                writeln!(f, "  + organization {}", o.organization_id)?;
                for (k, v) in org_fields(o) {
                    writeln!(f, "      {k}: {v}")?;
                }
                Ok(())
            }
            Change::UpdateOrganization { before, after } => {
                writeln!(f, "  ~ organization {}", after.organization_id)?;
                write_diff(f, org_fields(before), org_fields(after))
            }
            Change::DeleteOrganization {
                organization_id,
                owned_budget_id,
            } => {
                writeln!(
                    f,
                    "  - organization {organization_id} (cascade: teams, memberships, keys)"
                )?;
                if let Some(b) = owned_budget_id {
                    writeln!(f, "  - budget {b}")?;
                }
                Ok(())
            }
            Change::CreateUser { user_id, email } => {
                writeln!(f, "  + user {user_id} (email: {})", opt(email))
            }
            Change::CreateMembership(m) => writeln!(
                f,
                "  + membership user {} in {} (role: {}, budget: {})",
                m.user_id,
                m.organization_id,
                opt(&m.user_role),
                opt(&m.budget_id)
            ),
            Change::UpdateMembership { before, after } => {
                writeln!(
                    f,
                    "  ~ membership user {} in {}",
                    after.user_id, after.organization_id
                )?;
                if before.user_role != after.user_role {
                    writeln!(
                        f,
                        "      user_role: {} -> {}",
                        opt(&before.user_role),
                        opt(&after.user_role)
                    )?;
                }
                if before.budget_id != after.budget_id {
                    writeln!(
                        f,
                        "      budget_id: {} -> {}",
                        opt(&before.budget_id),
                        opt(&after.budget_id)
                    )?;
                }
                Ok(())
            }
            Change::DeleteMembership {
                user_id,
                organization_id,
                owned_budget_id,
            } => {
                writeln!(f, "  - membership user {user_id} in {organization_id}")?;
                if let Some(b) = owned_budget_id {
                    writeln!(f, "  - budget {b}")?;
                }
                Ok(())
            }
        }
    }
}

impl fmt::Display for ObjectPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.key {
            Some(k) => writeln!(f, "{} {k}:", self.kind)?,
            None => writeln!(f, "{}:", self.kind)?,
        }
        for c in &self.changes {
            write!(f, "{c}")?;
        }
        Ok(())
    }
}
