//! The `OrganizationMember` kind: one user's membership in an organization.
// kube's repeated `printcolumn(type_ = ...)` arguments trip this lint; they are distinct columns.
#![allow(clippy::duplicated_attributes)]

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::DeletionPolicy;

/// Desired membership of a user in a LiteLLM organization (`LiteLLM_OrganizationMembership`).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "litellm.dev",
    version = "v1alpha1",
    kind = "OrganizationMember",
    doc = "A user's membership and role in a LiteLLM organization, reconciled into LiteLLM's database.",
    plural = "organizationmembers",
    shortname = "lorgm",
    category = "litellm",
    namespaced,
    status = "OrganizationMemberStatus",
    printcolumn(
        name = "Organization",
        type_ = "string",
        description = "The organization's alias in LiteLLM",
        json_path = ".status.organizationAlias"
    ),
    printcolumn(
        name = "User",
        type_ = "string",
        description = "The user's email in LiteLLM",
        json_path = ".status.userEmail"
    ),
    printcolumn(name = "Role", type_ = "string", json_path = ".spec.role"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    printcolumn(
        name = "Organization ID",
        type_ = "string",
        json_path = ".status.organizationId",
        priority = "1"
    ),
    printcolumn(
        name = "User ID",
        type_ = "string",
        json_path = ".status.userId",
        priority = "1"
    )
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "has(self.organizationRef) != has(self.organizationId)",
        "message": "set exactly one of organizationRef (an Organization in this namespace) or organizationId (an organization not managed here)",
        "fieldPath": ".organizationRef",
        "reason": "FieldValueRequired"
    }
]))]
pub struct OrganizationMemberSpec {
    /// An `Organization` in the same namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organization_ref: Option<OrganizationReference>,
    /// The id of a LiteLLM organization not managed by this operator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128))]
    pub organization_id: Option<String>,
    /// Who the member is: by LiteLLM user id and/or email.
    pub user: UserSelector,
    /// Role inside the organization.
    pub role: MemberRole,
    /// The member's spend limit in this organization, in USD (a member budget row).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0))]
    pub max_budget_in_organization: Option<f64>,
    /// `Delete` (default) removes the membership; `Retain` leaves it.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
}

/// Reference to an `Organization` in the same namespace.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OrganizationReference {
    /// `metadata.name` of the Organization.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// How to find (or create) the LiteLLM user.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "has(self.userId) || has(self.email)",
        "message": "set user.userId, user.email, or both",
        "reason": "FieldValueRequired"
    }
]))]
pub struct UserSelector {
    /// `user_id` in `LiteLLM_UserTable`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub user_id: Option<String>,
    /// `user_email`, matched case-insensitively.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 3, max = 320), regex(pattern = r"^[^@\s]+@[^@\s]+$"))]
    pub email: Option<String>,
}

/// Organization roles LiteLLM knows.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum MemberRole {
    /// Can manage the organization's teams and members.
    #[serde(rename = "org_admin")]
    OrgAdmin,
    /// Can create keys and see own spend.
    #[default]
    #[serde(rename = "internal_user")]
    InternalUser,
    /// Can see own keys and spend only.
    #[serde(rename = "internal_user_viewer")]
    InternalUserViewer,
}

impl MemberRole {
    /// The `user_role` value stored in LiteLLM.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OrgAdmin => "org_admin",
            Self::InternalUser => "internal_user",
            Self::InternalUserViewer => "internal_user_viewer",
        }
    }

    /// Parse a stored `user_role`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "org_admin" => Some(Self::OrgAdmin),
            "internal_user" => Some(Self::InternalUser),
            "internal_user_viewer" => Some(Self::InternalUserViewer),
            _ => None,
        }
    }
}

/// Observed state of an `OrganizationMember`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrganizationMemberStatus {
    /// Generation of the spec last reconciled; -1 until the first reconcile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Reconciling` and `Stalled`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The organization the membership is in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organization_id: Option<String>,
    /// The LiteLLM user id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// Whether the operator created the user row.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_created: Option<bool>,
    /// The member budget row.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_id: Option<String>,
    /// The organization's `organization_alias` in LiteLLM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organization_alias: Option<String>,
    /// The user's `user_email` in LiteLLM (it may differ from `spec.user.email` in case, or
    /// after LiteLLM changed it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_email: Option<String>,
    /// The membership's spend in USD, mirrored from LiteLLM while the member declares a
    /// budget (`spec.maxBudgetInOrganization`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spend: Option<f64>,
    /// `max_budget` of the member's budget row, while the member declares a budget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_budget: Option<f64>,
}
