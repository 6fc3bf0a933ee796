//! The `Organization` kind: one LiteLLM organization and its budget.
// kube's repeated `printcolumn(type_ = ...)` arguments trip this lint; they are distinct columns.
#![allow(clippy::duplicated_attributes)]

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{DeletionPolicy, bounded_metadata};

/// Desired state of a LiteLLM organization (`LiteLLM_OrganizationTable`).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "litellm.dev",
    version = "v1alpha1",
    kind = "Organization",
    doc = "A LiteLLM organization, its budget and metadata, reconciled into LiteLLM's database.",
    plural = "organizations",
    shortname = "lorg",
    category = "litellm",
    namespaced,
    status = "OrganizationStatus",
    printcolumn(name = "Alias", type_ = "string", json_path = ".spec.alias"),
    printcolumn(name = "ID", type_ = "string", json_path = ".status.organizationId"),
    printcolumn(name = "Spend", type_ = "number", json_path = ".status.spend"),
    printcolumn(name = "Budget", type_ = "number", json_path = ".status.maxBudget"),
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
        name = "Budget ID",
        type_ = "string",
        json_path = ".status.budgetId",
        priority = "1"
    ),
    printcolumn(
        name = "Soft Budget",
        type_ = "number",
        json_path = ".status.softBudget",
        priority = "1"
    ),
    printcolumn(
        name = "Budget Reset",
        type_ = "string",
        json_path = ".status.budgetResetAt",
        priority = "1"
    )
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "!(has(self.budget) && has(self.budgetRef))",
        "message": "budget and budgetRef are mutually exclusive: set one of them, or neither",
        "fieldPath": ".budgetRef",
        "reason": "FieldValueForbidden"
    },
    {
        "rule": "!has(oldSelf.organizationId) || (has(self.organizationId) && self.organizationId == oldSelf.organizationId)",
        "message": "organizationId is immutable once set: create a new Organization to point at another LiteLLM organization",
        "fieldPath": ".organizationId",
        "reason": "FieldValueInvalid"
    }
]))]
pub struct OrganizationSpec {
    /// `organization_alias` in LiteLLM. Defaults to `metadata.name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub alias: Option<String>,

    /// Pin or adopt a specific LiteLLM organization id. Immutable once set.
    /// Without it the id is derived from namespace and name, so it is stable across re-creates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128), regex(pattern = r"^[A-Za-z0-9._:@-]+$"))]
    pub organization_id: Option<String>,

    /// Models the organization may use; empty means all models, as in LiteLLM.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256), inner(length(min = 1, max = 256)))]
    pub models: Vec<String>,

    /// An inline budget: the operator creates and owns the `LiteLLM_BudgetTable` row.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<BudgetSpec>,

    /// An existing budget row, referenced but never modified or deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_ref: Option<BudgetReference>,

    /// Free-form metadata for the organization's `metadata` JSON column: at most 6 levels
    /// deep, 64 keys per object, 64 items per array and 4096 characters per string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "bounded_metadata")]
    pub metadata: Option<serde_json::Map<String, serde_json::Value>>,

    /// `Delete` (default) cascades the delete in the database; `Retain` leaves every row.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,

    /// Let the delete of this Organization (policy `Delete`) also delete the teams and API keys
    /// LiteLLM holds for the organization (`LiteLLM_TeamTable`, `LiteLLM_VerificationToken`),
    /// as LiteLLM's own organization delete does. Off by default: while the organization has
    /// teams or keys, its delete waits (the finalizer stays; the Ready condition and a
    /// Warning event count what blocks it) until they are removed in LiteLLM or this is set.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub delete_teams_and_keys: bool,

    /// While true, deleting this Organization waits: nothing is removed from LiteLLM and the
    /// finalizer stays (the Ready condition says so) until this is set back to false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deletion_protection: bool,
}

/// Limits of an operator-owned `LiteLLM_BudgetTable` row.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BudgetSpec {
    /// Hard spend limit in USD (`max_budget`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0))]
    pub max_budget: Option<f64>,
    /// Alerting threshold in USD (`soft_budget`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0))]
    pub soft_budget: Option<f64>,
    /// Tokens per minute (`tpm_limit`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub tpm_limit: Option<i64>,
    /// Requests per minute (`rpm_limit`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub rpm_limit: Option<i64>,
    /// Tokens per day (`tpd_limit`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub tpd_limit: Option<i64>,
    /// Concurrent requests (`max_parallel_requests`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 2147483647))]
    pub max_parallel_requests: Option<i32>,
    /// Reset period such as `30s`, `30m`, `24h`, `30d` or `1mo` (`budget_duration`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(
        pattern = r"^([1-9][0-9]{0,5}(s|m|h|d)|[1-9][0-9]{0,4}w|1mo|hourly|daily|weekly|monthly)$"
    ))]
    pub budget_duration: Option<String>,
    /// Per-model limits (`model_max_budget`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 256))]
    pub model_max_budget: BTreeMap<String, ModelBudget>,
}

/// A per-model spend limit.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ModelBudget {
    /// Spend limit in USD for this model.
    #[schemars(range(min = 0.0))]
    pub budget_limit: f64,
    /// Reset period such as `1d` or `1mo`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(
        pattern = r"^([1-9][0-9]{0,5}(s|m|h|d)|[1-9][0-9]{0,4}w|1mo|hourly|daily|weekly|monthly)$"
    ))]
    pub time_period: Option<String>,
}

/// Reference to an existing `LiteLLM_BudgetTable` row.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BudgetReference {
    /// `budget_id` of the existing row.
    #[schemars(length(min = 1, max = 128))]
    pub budget_id: String,
}

/// Observed state of an `Organization`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrganizationStatus {
    /// Generation of the spec last reconciled; -1 until the first reconcile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Reconciling`, `Stalled` and `BudgetExceeded`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The LiteLLM organization id written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organization_id: Option<String>,
    /// The budget row the organization points at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_id: Option<String>,
    /// Spend in USD mirrored from the database.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spend: Option<f64>,
    /// `max_budget` of the organization's budget row.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_budget: Option<f64>,
    /// `soft_budget` of the organization's budget row: crossing it publishes a
    /// `SoftBudgetExceeded` Warning event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub soft_budget: Option<f64>,
    /// When LiteLLM next resets the spend (`budget_reset_at` of the budget row; RFC 3339,
    /// UTC), for a budget with a `budgetDuration`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_reset_at: Option<String>,
    /// Number of memberships in the database.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member_count: Option<i64>,
}
