//! Planning: desired state + observed rows → the typed changes that close the gap. Pure.
//! An empty plan means the database already matches, and applying it writes nothing.

use std::fmt;

use serde_json::{Map, Value, json};

use super::desired::{DesiredBudget, DesiredMember, DesiredOrganization, ObjectKey, owner_string};
use super::ids;
use crate::crd::DeletionPolicy;
use crate::error::EngineError;
use crate::store::{
    BudgetRow, Change, MembershipRow, OWNER_KEY, ObservedMember, ObservedOrganization,
    OrganizationRow, metadata_owner,
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
            Some(have) if !same_limits(have, want) => changes.push(Change::UpdateBudget {
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

/// Plan the delete cascade of the organization `key` owns, by id: what a finalizer or a prune
/// knows of it, whatever its spec says now. Forgives rows already gone; rows owned by another
/// resource are left alone (an empty plan). `owned_budget_id` is the budget row `key` owns.
pub fn plan_delete_organization(
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
    match &observed.organization {
        Some(org) if metadata_owner(&org.metadata) == Some(owner.as_str()) => {
            plan.organization_id = Some(org.organization_id.clone());
            let owned = (org.budget_id == owned_budget_id).then(|| owned_budget_id.to_string());
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
                .is_some_and(|b| b.budget_id == owned_budget_id)
            {
                plan.changes.push(Change::DeleteBudget {
                    budget_id: owned_budget_id.to_string(),
                });
            }
        }
    }
    plan
}

/// Whether an organization row's marker asks prune to leave it (`deletionPolicy: Retain`).
pub fn retained_by_marker(observed: &ObservedOrganization) -> bool {
    observed
        .organization
        .as_ref()
        .and_then(|o| o.metadata.get(OWNER_KEY))
        .and_then(|m| m.get("deletionPolicy"))
        .and_then(Value::as_str)
        == Some("Retain")
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
            });
        }
    }

    let want_budget = desired.budget_row(actor);
    match &observed.own_budget {
        None => changes.push(Change::CreateBudget(want_budget)),
        Some(have) if !same_limits(have, &want_budget) => changes.push(Change::UpdateBudget {
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

/// Plan the removal of the rows the member `key` owns, by its budget row `budget_id`: every
/// membership pointing at that row, then the row. Users are never deleted.
pub fn plan_delete_member(
    key: &ObjectKey,
    budget_id: &str,
    observed: &ObservedMember,
) -> ObjectPlan {
    let mut plan = ObjectPlan {
        kind: "OrganizationMember",
        key: Some(key.clone()),
        ..Default::default()
    };
    for m in &observed.memberships_with_own_budget {
        plan.changes.push(Change::DeleteMembership {
            user_id: m.user_id.clone(),
            organization_id: m.organization_id.clone(),
        });
    }
    if observed.own_budget.is_some() {
        plan.changes.push(Change::DeleteBudget {
            budget_id: budget_id.to_string(),
        });
    }
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
    //! The planner on hand-built observed states: no database.

    use serde_json::json;

    use super::*;
    use crate::crd::{
        BudgetReference, BudgetSpec, MemberRole, OrganizationMemberSpec, OrganizationReference,
        OrganizationSpec, UserSelector,
    };
    use crate::store::UserRow;

    const ACTOR: &str = "litellm-org-operator";

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

    /// The rows a first apply of `desired` would leave, as the store would read them back.
    fn observed_after_create(desired: &DesiredOrganization) -> ObservedOrganization {
        let plan = plan_organization(desired, &ObservedOrganization::default()).expect("plan");
        let mut observed = ObservedOrganization::default();
        for change in plan.changes {
            match change {
                Change::CreateBudget(b) => {
                    observed.current_budget = Some(b.clone());
                    observed.desired_budget = Some(b);
                }
                Change::CreateOrganization(o) => observed.organization = Some(o),
                other => panic!("unexpected change on create: {other:?}"),
            }
        }
        observed
    }

    fn unowned_row(id: &str, budget_id: &str) -> OrganizationRow {
        OrganizationRow {
            organization_id: id.into(),
            organization_alias: "made in the UI".into(),
            budget_id: budget_id.into(),
            metadata: serde_json::Map::from_iter([("team".to_string(), json!("ui"))]),
            ..Default::default()
        }
    }

    fn is_conflict(r: Result<ObjectPlan, EngineError>, needle: &str) {
        match r {
            Err(EngineError::Conflict(m)) => assert!(m.contains(needle), "{m}"),
            other => panic!("expected Conflict containing {needle:?}, got {other:?}"),
        }
    }

    #[test]
    fn a_new_organization_creates_its_budget_then_the_row() {
        let d = org("research", budget_spec(100.0));
        let plan = plan_organization(&d, &ObservedOrganization::default()).expect("plan");
        assert_eq!(plan.changes.len(), 2);
        let Change::CreateBudget(b) = &plan.changes[0] else {
            panic!("budget first: {:?}", plan.changes)
        };
        assert_eq!(
            b.budget_id,
            ids::organization_budget_id("team-a", "research")
        );
        assert_eq!(b.max_budget, Some(100.0));
        let Change::CreateOrganization(o) = &plan.changes[1] else {
            panic!("then the organization: {:?}", plan.changes)
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
        assert_eq!(
            metadata_owner(&o.metadata),
            Some("Organization/team-a/research")
        );
        assert_eq!(
            plan.organization_id.as_deref(),
            Some(o.organization_id.as_str())
        );
    }

    #[test]
    fn an_organization_in_sync_plans_nothing() {
        let d = org("research", budget_spec(100.0));
        let observed = observed_after_create(&d);
        assert!(plan_organization(&d, &observed).expect("plan").is_empty());
    }

    #[test]
    fn drift_in_the_row_and_the_budget_is_put_back() {
        let d = org("research", budget_spec(100.0));
        let mut observed = observed_after_create(&d);
        if let Some(o) = observed.organization.as_mut() {
            o.organization_alias = "renamed in the UI".into();
        }
        if let Some(b) = observed.desired_budget.as_mut() {
            b.max_budget = Some(5.0);
            b.created_by = "someone".into();
        }
        let plan = plan_organization(&d, &observed).expect("plan");
        let Change::UpdateBudget { before, after } = &plan.changes[0] else {
            panic!("{:?}", plan.changes)
        };
        assert_eq!(before.max_budget, Some(5.0));
        assert_eq!(after.max_budget, Some(100.0));
        assert_eq!(after.created_by, "someone", "created_by is never rewritten");
        let Change::UpdateOrganization { after, .. } = &plan.changes[1] else {
            panic!("{:?}", plan.changes)
        };
        assert_eq!(after.organization_alias, "research");
        assert_eq!(plan.changes[1].changed_fields(), vec!["organization_alias"]);
    }

    #[test]
    fn a_row_owned_by_another_resource_is_a_conflict() {
        let other = org("other", OrganizationSpec::default());
        let observed = observed_after_create(&other);
        let d = org(
            "research",
            OrganizationSpec {
                organization_id: Some(other.organization_id.clone()),
                ..Default::default()
            },
        );
        is_conflict(
            plan_organization(&d, &observed),
            "already managed by Organization/team-a/other",
        );
    }

    #[test]
    fn an_unowned_row_is_adopted_only_when_pinned() {
        let observed = ObservedOrganization {
            organization: Some(unowned_row(
                &ids::organization_id("team-a", "research"),
                "b-ui",
            )),
            ..Default::default()
        };
        let unpinned = org("research", OrganizationSpec::default());
        is_conflict(
            plan_organization(&unpinned, &observed),
            "set spec.organizationId to adopt it",
        );

        let observed = ObservedOrganization {
            organization: Some(unowned_row("ui-org", "b-ui")),
            ..Default::default()
        };
        let pinned = org(
            "research",
            OrganizationSpec {
                organization_id: Some("ui-org".into()),
                ..Default::default()
            },
        );
        let plan = plan_organization(&pinned, &observed).expect("adopt");
        let update = plan
            .changes
            .iter()
            .find_map(|c| match c {
                Change::UpdateOrganization { after, .. } => Some(after),
                _ => None,
            })
            .expect("the adopted row is updated");
        assert_eq!(
            metadata_owner(&update.metadata),
            Some("Organization/team-a/research")
        );
        assert_eq!(update.metadata.get("team"), Some(&json!("ui")), "keys kept");
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
        match plan_organization(&d, &ObservedOrganization::default()) {
            Err(EngineError::InvalidSpec { field, .. }) => {
                assert_eq!(field, "spec.budgetRef.budgetId")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn moving_to_a_budget_reference_deletes_the_owned_budget() {
        let owned = org("research", budget_spec(1.0));
        let mut observed = observed_after_create(&owned);
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
        let plan = plan_organization(&d, &observed).expect("plan");
        assert!(matches!(
            &plan.changes[0],
            Change::UpdateOrganization { after, .. } if after.budget_id == "shared"
        ));
        assert!(matches!(
            &plan.changes[1],
            Change::DeleteBudget { budget_id } if *budget_id == owned.owned_budget_id
        ));
    }

    #[test]
    fn metadata_keys_the_spec_drops_go_and_foreign_keys_stay() {
        let owner = "Organization/team-a/research";
        let spec = serde_json::Map::from_iter([("a".to_string(), json!(1))]);
        let first = merge_metadata(&spec, None, owner, DeletionPolicy::Delete);
        let mut current = first.clone();
        current.insert("ui".into(), json!("kept"));
        let next = merge_metadata(
            &serde_json::Map::new(),
            Some(&current),
            owner,
            DeletionPolicy::Retain,
        );
        assert!(
            !next.contains_key("a"),
            "a key the operator wrote and no longer declares goes"
        );
        assert_eq!(next.get("ui"), Some(&json!("kept")));
        assert_eq!(next[OWNER_KEY]["deletionPolicy"], json!("Retain"));
    }

    #[test]
    fn deleting_an_organization_cascades_only_what_it_owns() {
        let d = org("research", budget_spec(1.0));
        let observed = observed_after_create(&d);
        let plan = plan_delete_organization(&d.key, &d.owned_budget_id, &observed);
        assert_eq!(
            plan.changes,
            vec![Change::DeleteOrganization {
                organization_id: d.organization_id.clone(),
                owned_budget_id: Some(d.owned_budget_id.clone()),
            }]
        );
        // Another resource's organization: nothing.
        let other = key("other");
        let other_budget = ids::organization_budget_id("team-a", "other");
        assert!(plan_delete_organization(&other, &other_budget, &observed).is_empty());
        // The row is gone but the owned budget is left: the budget goes.
        let leftover = ObservedOrganization {
            desired_budget: observed.desired_budget.clone(),
            ..Default::default()
        };
        assert_eq!(
            plan_delete_organization(&d.key, &d.owned_budget_id, &leftover).changes,
            vec![Change::DeleteBudget {
                budget_id: d.owned_budget_id.clone()
            }]
        );
        // Nothing left: nothing to do.
        assert!(
            plan_delete_organization(&d.key, &d.owned_budget_id, &ObservedOrganization::default())
                .is_empty()
        );
    }

    #[test]
    fn the_retain_marker_is_read_for_prune() {
        let d = org(
            "research",
            OrganizationSpec {
                deletion_policy: DeletionPolicy::Retain,
                ..Default::default()
            },
        );
        assert!(retained_by_marker(&observed_after_create(&d)));
        let d = org("research", OrganizationSpec::default());
        assert!(!retained_by_marker(&observed_after_create(&d)));
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

    #[test]
    fn a_member_waits_for_its_organization_unless_it_is_created_first() {
        let d = member("alice", by_id("u1"), None);
        assert!(matches!(
            plan_member(&d, "org-1", false, &ObservedMember::default(), ACTOR),
            Err(EngineError::OrganizationNotFound(_))
        ));
        assert!(plan_member(&d, "org-1", true, &ObservedMember::default(), ACTOR).is_ok());
    }

    #[test]
    fn a_known_user_gets_a_membership_and_its_budget() {
        let d = member("alice", by_id("u1"), Some(10.0));
        let observed = ObservedMember {
            user_by_id: Some(user("u1")),
            ..with_org()
        };
        let plan = plan_member(&d, "org-1", false, &observed, ACTOR).expect("plan");
        assert!(!plan.user_created);
        assert!(
            matches!(&plan.changes[0], Change::CreateBudget(b) if b.max_budget == Some(10.0) && b.budget_id == d.budget_id)
        );
        assert_eq!(
            plan.changes[1],
            Change::CreateMembership(MembershipRow {
                user_id: "u1".into(),
                organization_id: "org-1".into(),
                user_role: Some("org_admin".into()),
                budget_id: Some(d.budget_id.clone()),
            })
        );
    }

    #[test]
    fn an_unknown_email_creates_the_user_with_a_derived_id() {
        let d = member("bob", by_email("Bob@Example.com"), None);
        let plan = plan_member(&d, "org-1", false, &with_org(), ACTOR).expect("plan");
        let id = ids::user_id_for_email("Bob@Example.com");
        assert_eq!(
            plan.changes[0],
            Change::CreateUser {
                user_id: id.clone(),
                email: Some("Bob@Example.com".into()),
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
        let plan = plan_member(&d, "org-1", false, &one, ACTOR).expect("plan");
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
        is_conflict(plan_member(&d, "org-1", false, &two, ACTOR), "u-1, u-2");
    }

    #[test]
    fn a_membership_another_member_owns_is_a_conflict_and_a_foreign_one_is_adopted() {
        let d = member("alice", by_id("u1"), None);
        let theirs = BudgetRow {
            budget_id: "their-budget".into(),
            created_by: ACTOR.into(),
            ..Default::default()
        };
        let membership = MembershipRow {
            user_id: "u1".into(),
            organization_id: "org-1".into(),
            user_role: Some("internal_user".into()),
            budget_id: Some("their-budget".into()),
        };
        let claimed = ObservedMember {
            user_by_id: Some(user("u1")),
            membership: Some(membership.clone()),
            membership_budget: Some(theirs.clone()),
            ..with_org()
        };
        is_conflict(
            plan_member(&d, "org-1", false, &claimed, ACTOR),
            "already managed by another OrganizationMember",
        );
        // The same row made in LiteLLM (its budget not the operator's): adopted.
        let foreign = ObservedMember {
            membership_budget: Some(BudgetRow {
                created_by: "admin".into(),
                ..theirs
            }),
            ..claimed
        };
        let plan = plan_member(&d, "org-1", false, &foreign, ACTOR).expect("adopt");
        assert!(plan.changes.iter().any(|c| matches!(
            c,
            Change::UpdateMembership { after, .. } if after.user_role.as_deref() == Some("org_admin")
        )));
    }

    #[test]
    fn a_membership_left_behind_by_an_earlier_spec_is_removed() {
        let d = member("alice", by_id("u1"), None);
        let stale = MembershipRow {
            user_id: "u1".into(),
            organization_id: "old-org".into(),
            user_role: Some("org_admin".into()),
            budget_id: Some(d.budget_id.clone()),
        };
        let observed = ObservedMember {
            user_by_id: Some(user("u1")),
            own_budget: Some(d.budget_row(ACTOR)),
            memberships_with_own_budget: vec![stale],
            ..with_org()
        };
        let plan = plan_member(&d, "org-1", false, &observed, ACTOR).expect("plan");
        assert_eq!(
            plan.changes[0],
            Change::DeleteMembership {
                user_id: "u1".into(),
                organization_id: "old-org".into(),
            }
        );
        assert!(matches!(plan.changes[1], Change::CreateMembership(_)));
    }

    #[test]
    fn a_member_in_sync_plans_nothing_and_role_drift_is_put_back() {
        let d = member("alice", by_id("u1"), Some(3.0));
        let row = MembershipRow {
            user_id: "u1".into(),
            organization_id: "org-1".into(),
            user_role: Some("org_admin".into()),
            budget_id: Some(d.budget_id.clone()),
        };
        let in_sync = ObservedMember {
            user_by_id: Some(user("u1")),
            membership: Some(row.clone()),
            own_budget: Some(d.budget_row(ACTOR)),
            memberships_with_own_budget: vec![row.clone()],
            ..with_org()
        };
        assert!(
            plan_member(&d, "org-1", false, &in_sync, ACTOR)
                .expect("plan")
                .is_empty()
        );
        let drifted = ObservedMember {
            membership: Some(MembershipRow {
                user_role: Some("internal_user_viewer".into()),
                ..row
            }),
            ..in_sync
        };
        let plan = plan_member(&d, "org-1", false, &drifted, ACTOR).expect("plan");
        assert_eq!(plan.changes.len(), 1);
        assert_eq!(plan.changes[0].changed_fields(), vec!["user_role"]);
    }

    #[test]
    fn deleting_a_member_removes_its_memberships_then_its_budget() {
        let d = member("alice", by_id("u1"), Some(3.0));
        let row = MembershipRow {
            user_id: "u1".into(),
            organization_id: "org-1".into(),
            user_role: None,
            budget_id: Some(d.budget_id.clone()),
        };
        let observed = ObservedMember {
            own_budget: Some(d.budget_row(ACTOR)),
            memberships_with_own_budget: vec![row],
            ..Default::default()
        };
        let plan = plan_delete_member(&d.key, &d.budget_id, &observed);
        assert_eq!(
            plan.changes,
            vec![
                Change::DeleteMembership {
                    user_id: "u1".into(),
                    organization_id: "org-1".into(),
                },
                Change::DeleteBudget {
                    budget_id: d.budget_id.clone()
                },
            ]
        );
        assert!(plan_delete_member(&d.key, &d.budget_id, &ObservedMember::default()).is_empty());
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
