//! The `litellm.dev/v1alpha1` API: `Organization`, `OrganizationMember` and their conditions.
//!
//! Types only, no IO. The generated CustomResourceDefinitions are post-processed in [`crds`]
//! so the committed YAML under `crds/` is exactly what `litellm-org-operator crd` prints.

mod conditions;
mod member;
mod organization;

pub use conditions::{ConditionReason, ConditionType, set_condition};
pub use member::{
    MemberRole, OrganizationMember, OrganizationMemberSpec, OrganizationMemberStatus,
    OrganizationReference, UserSelector,
};
pub use organization::{
    BudgetReference, BudgetSpec, ModelBudget, Organization, OrganizationSpec, OrganizationStatus,
};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

/// API group of both kinds.
pub const GROUP: &str = "litellm.dev";
/// API version of both kinds.
pub const VERSION: &str = "v1alpha1";
/// `apiVersion` as written in manifests.
pub const API_VERSION: &str = "litellm.dev/v1alpha1";
/// Finalizer that guards the database cascade on delete.
pub const FINALIZER: &str = "litellm.dev/cleanup";
/// Field manager for every write the operator makes.
pub const FIELD_MANAGER: &str = "litellm-org-operator";

/// What happens to the database rows when the resource is deleted.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum DeletionPolicy {
    /// Cascade the delete in the database (the default).
    #[default]
    Delete,
    /// Drop the finalizer and leave every row in place.
    Retain,
}

/// Schema of a free-form JSON object (kept as written, unknown keys preserved).
pub(crate) fn free_form_object(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true
    })
}

/// Both CustomResourceDefinitions, in the order `crd` prints them.
pub fn crds() -> Vec<CustomResourceDefinition> {
    vec![
        finish_crd(Organization::crd()),
        finish_crd(OrganizationMember::crd()),
    ]
}

/// Post-process a derived CRD into what the apiserver and Flux expect:
/// `status` defaults to `{observedGeneration: -1}` so a new object is never seen as ready
/// before its first reconcile, and `additionalProperties: false` (from `deny_unknown_fields`,
/// which the engine uses to reject unknown fields offline) is dropped because a structural
/// schema may not combine it with `properties`; the apiserver prunes unknown fields instead.
fn finish_crd(crd: CustomResourceDefinition) -> CustomResourceDefinition {
    let mut value = match serde_json::to_value(&crd) {
        Ok(v) => v,
        Err(_) => return crd,
    };
    if let Some(versions) = value
        .pointer_mut("/spec/versions")
        .and_then(|v| v.as_array_mut())
    {
        for version in versions {
            if let Some(schema) = version.pointer_mut("/schema/openAPIV3Schema") {
                strip_closed_objects(schema);
                if let Some(status) = schema.pointer_mut("/properties/status") {
                    status["default"] = serde_json::json!({"observedGeneration": -1});
                }
            }
        }
    }
    serde_json::from_value(value).unwrap_or(crd)
}

fn strip_closed_objects(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            if map.get("additionalProperties") == Some(&serde_json::Value::Bool(false)) {
                map.remove("additionalProperties");
            }
            for child in map.values_mut() {
                strip_closed_objects(child);
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(strip_closed_objects),
        _ => {}
    }
}

/// Both CRDs as one multi-document YAML stream.
pub fn crds_yaml() -> Result<String, serde_yaml::Error> {
    let mut out = String::new();
    for crd in crds() {
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(&crd)?);
    }
    Ok(out)
}
