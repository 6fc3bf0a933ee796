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

/// How deep `spec.metadata` may nest: `spec.metadata` itself is level 1, and an object or
/// array at this level may hold only scalars (or empty objects and arrays).
pub const METADATA_MAX_DEPTH: usize = 6;
/// Keys of any one object inside `spec.metadata` (the top level included).
pub const METADATA_MAX_PROPERTIES: usize = 64;
/// Items of any one array inside `spec.metadata`.
pub const METADATA_MAX_ITEMS: usize = 64;
/// Characters of any one string value inside `spec.metadata`.
pub const METADATA_MAX_STRING_LENGTH: usize = 4096;

/// Schema of `spec.metadata`: free-form JSON (any value, unknown keys kept) of bounded depth
/// and size, written so kube-apiserver itself enforces the bound.
///
/// Why this encoding: kube-apiserver reads JSON up to 10 000 levels deep
/// (`k8s.io/apimachinery/pkg/util/json` `maxDepth`, and Go's own decoder limit), far past the
/// 128 levels serde_json (and so kube-rs) reads, so an unbounded `x-kubernetes-preserve-unknown-fields`
/// object lets one resource break every list of its kind. CEL cannot help: the apiserver does
/// not expose untyped `x-kubernetes-preserve-unknown-fields` values to CEL rules
/// (`apiextensions-apiserver` `cel/model.SchemaDeclType`), and a `type: object` one only
/// exposes its declared properties. What the apiserver does enforce on such untyped values is
/// plain OpenAPI value validation, which applies by the value's kind whatever `type` says
/// (kube-openapi's `objectValidator`, `schemaSliceValidator` and `stringValidator`):
/// `additionalProperties` and `maxProperties` for objects, `items` and `maxItems` for arrays,
/// `maxLength` for strings. So the schema is unrolled to a fixed depth: each level is an
/// untyped node (any JSON value; a structural schema allows that with
/// `x-kubernetes-preserve-unknown-fields`) whose object values and array items are described
/// by the next level, and the level past [`METADATA_MAX_DEPTH`] allows no properties and no
/// items. A value nested too deep, an object with too many keys, an array with too many items
/// or a string too long is answered with a 422 naming the field. The schema doubles per level
/// (objects and arrays each lead to the next level), which is why the depth is small.
pub(crate) fn bounded_metadata(_: &mut SchemaGenerator) -> Schema {
    let mut level = serde_json::json!({
        "x-kubernetes-preserve-unknown-fields": true,
        "maxProperties": 0,
        "maxItems": 0,
        "maxLength": METADATA_MAX_STRING_LENGTH,
    });
    for _ in 2..=METADATA_MAX_DEPTH {
        level = serde_json::json!({
            "x-kubernetes-preserve-unknown-fields": true,
            "maxProperties": METADATA_MAX_PROPERTIES,
            "maxItems": METADATA_MAX_ITEMS,
            "maxLength": METADATA_MAX_STRING_LENGTH,
            "additionalProperties": level.clone(),
            "items": level,
        });
    }
    let top = serde_json::json!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
        "maxProperties": METADATA_MAX_PROPERTIES,
        "additionalProperties": level,
    });
    Schema::try_from(top).unwrap_or_else(|_| json_schema!({"type": "object"}))
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
pub fn crds_yaml() -> Result<String, crate::yaml::Error> {
    let mut out = String::new();
    for crd in crds() {
        out.push_str("---\n");
        out.push_str(&crate::yaml::to_string(&crd)?);
    }
    Ok(out)
}
