//! Desired state: a validated resource turned into the rows it should produce. Pure.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::ids;
use super::validate::{validate_member, validate_organization};
use crate::crd::{
    BudgetSpec, DeletionPolicy, MemberRole, OrganizationMemberSpec, OrganizationSpec,
};
use crate::error::EngineError;
use crate::store::{BUDGET_LIMITS, Scalar};

/// Which resource a row belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    pub namespace: String,
    pub name: String,
}

impl ObjectKey {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl std::fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// The limits a resource declares for its own budget row; a limit absent is not managed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DeclaredBudget {
    /// By column of [`BUDGET_LIMITS`].
    pub limits: BTreeMap<&'static str, Scalar>,
    /// `model_max_budget`: per model, each declared limit by LiteLLM's key (`max_budget`,
    /// `budget_duration`).
    pub models: BTreeMap<String, BTreeMap<&'static str, Value>>,
}

impl DeclaredBudget {
    /// What `spec.budget` declares, read through the inventory.
    pub fn from_spec(b: &BudgetSpec) -> Self {
        let limits = BUDGET_LIMITS
            .iter()
            .filter_map(|l| (l.declared)(b).map(|v| (l.column, v)))
            .collect();
        let models = b
            .model_max_budget
            .iter()
            .map(|(model, mb)| {
                let mut limits = BTreeMap::from([("max_budget", Value::from(mb.budget_limit))]);
                if let Some(t) = &mb.time_period {
                    limits.insert("budget_duration", Value::from(t.clone()));
                }
                (model.clone(), limits)
            })
            .collect();
        Self { limits, models }
    }
}

/// The budget an organization should point at.
#[derive(Clone, Debug, PartialEq)]
pub enum DesiredBudget {
    /// `spec.budget`: a row the operator owns (its id), with the declared limits.
    Owned(String, DeclaredBudget),
    /// `spec.budgetRef`: an existing row, never modified.
    Referenced(String),
    /// Neither: an organization the operator creates gets an empty budget row of its own
    /// (LiteLLM requires one); an adopted organization keeps the budget it has.
    Unset(String),
}

impl DesiredBudget {
    /// The budget row the spec names: the owned row's id unless `budgetRef` is set.
    pub fn budget_id(&self) -> &str {
        match self {
            Self::Owned(id, _) | Self::Referenced(id) | Self::Unset(id) => id,
        }
    }
}

/// What an `Organization` resource asks for.
#[derive(Clone, Debug, PartialEq)]
pub struct DesiredOrganization {
    pub key: ObjectKey,
    pub organization_id: String,
    /// True when `spec.organizationId` pins (and may adopt) an existing row.
    pub pinned: bool,
    pub alias: String,
    /// True when `spec.alias` is set (else the alias defaults to the name on rows the
    /// operator creates, and is left alone on rows it adopts).
    pub alias_declared: bool,
    pub models: Vec<String>,
    pub budget: DesiredBudget,
    /// The id of the budget row this resource owns (whether or not the spec uses it now).
    pub owned_budget_id: String,
    pub metadata: Map<String, Value>,
    pub deletion_policy: DeletionPolicy,
    /// `created_by` of the budget rows it creates.
    pub actor: String,
}

impl DesiredOrganization {
    /// Validate a spec and derive its rows.
    pub fn from_spec(
        key: ObjectKey,
        spec: &OrganizationSpec,
        actor: &str,
    ) -> Result<Self, EngineError> {
        validate_organization(&key.name, spec)?;
        let owned_budget_id = ids::organization_budget_id(&key.namespace, &key.name);
        let budget = match (&spec.budget, &spec.budget_ref) {
            (_, Some(r)) => DesiredBudget::Referenced(r.budget_id.clone()),
            (None, None) => DesiredBudget::Unset(owned_budget_id.clone()),
            (Some(b), None) => {
                DesiredBudget::Owned(owned_budget_id.clone(), DeclaredBudget::from_spec(b))
            }
        };
        let (organization_id, pinned) = Self::organization_id_of(&key, spec);
        Ok(Self {
            alias: spec.alias.clone().unwrap_or_else(|| key.name.clone()),
            alias_declared: spec.alias.is_some(),
            organization_id,
            pinned,
            models: spec.models.clone(),
            budget,
            owned_budget_id,
            metadata: spec.metadata.clone().unwrap_or_default(),
            deletion_policy: spec.deletion_policy,
            actor: actor.to_string(),
            key,
        })
    }

    /// The organization id a spec asks for, and whether the spec pins it
    /// (`spec.organizationId`) or it is derived from the resource's namespace and name. Read
    /// without validating, so the checks across objects run on specs with other errors too.
    pub fn organization_id_of(key: &ObjectKey, spec: &OrganizationSpec) -> (String, bool) {
        match &spec.organization_id {
            Some(id) => (id.clone(), true),
            None => (ids::organization_id(&key.namespace, &key.name), false),
        }
    }

    /// `Organization/<namespace>/<name>`: the resource as the ledger (and the marker of
    /// earlier versions) names it.
    pub fn owner(&self) -> String {
        owner_string(&self.key)
    }
}

/// `Organization/<namespace>/<name>`.
pub fn owner_string(key: &ObjectKey) -> String {
    format!("Organization/{}/{}", key.namespace, key.name)
}

/// `OrganizationMember/<namespace>/<name>`.
pub fn member_resource(key: &ObjectKey) -> String {
    format!("OrganizationMember/{}/{}", key.namespace, key.name)
}

/// The resource name under which memberships marked by an earlier version (through a budget
/// row of the member's) are imported into the ledger, until their resource claims them.
pub fn legacy_member_resource(budget_id: &str) -> String {
    format!("OrganizationMember/legacy:{budget_id}")
}

/// The organization a member points at.
#[derive(Clone, Debug, PartialEq)]
pub enum OrganizationTarget {
    /// An `Organization` resource in the same namespace, by name.
    Resource(String),
    /// A LiteLLM organization id not managed here.
    Id(String),
}

/// What an `OrganizationMember` resource asks for.
#[derive(Clone, Debug, PartialEq)]
pub struct DesiredMember {
    pub key: ObjectKey,
    pub organization: OrganizationTarget,
    pub user_id: Option<String>,
    pub email: Option<String>,
    pub role: MemberRole,
    pub max_budget: Option<f64>,
    pub budget_id: String,
    pub deletion_policy: DeletionPolicy,
}

impl DesiredMember {
    /// Validate a spec and derive its rows.
    pub fn from_spec(key: ObjectKey, spec: &OrganizationMemberSpec) -> Result<Self, EngineError> {
        validate_member(&key.name, spec)?;
        let organization = match (&spec.organization_ref, &spec.organization_id) {
            (Some(r), _) => OrganizationTarget::Resource(r.name.clone()),
            (None, Some(id)) => OrganizationTarget::Id(id.clone()),
            (None, None) => {
                return Err(EngineError::invalid(
                    "spec.organizationRef",
                    "set organizationRef or organizationId",
                ));
            }
        };
        Ok(Self {
            budget_id: ids::member_budget_id(&key.namespace, &key.name),
            organization,
            user_id: spec.user.user_id.clone(),
            email: spec.user.email.as_ref().map(|e| e.trim().to_string()),
            role: spec.role,
            max_budget: spec.max_budget_in_organization,
            deletion_policy: spec.deletion_policy,
            key,
        })
    }

    /// `OrganizationMember/<namespace>/<name>`.
    pub fn resource(&self) -> String {
        member_resource(&self.key)
    }

    /// The limits of the member's own budget row, while `maxBudgetInOrganization` is set.
    pub fn declared_budget(&self) -> Option<DeclaredBudget> {
        let max = self.max_budget?;
        Some(DeclaredBudget {
            limits: BTreeMap::from([("max_budget", Scalar::Float(max))]),
            models: BTreeMap::new(),
        })
    }
}
