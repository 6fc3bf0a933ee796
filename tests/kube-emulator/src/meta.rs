//! Admission common to every kind, before the schema: `metadata` as kube-apiserver keeps it,
//! built-in kinds decoded into their type (proto.rs's mapping: a field of the wrong type is a
//! 400, a field the type lacks is dropped with a warning, times take their canonical
//! precision), and the built-in kinds' own validation (Events).
//!
//! kube-apiserver decodes `metadata` into `metav1.ObjectMeta` and encodes it back (built-in
//! kinds through their typed structs; custom resources through
//! apiextensions-apiserver's `objectmeta.GetObjectMeta`/`SetObjectMeta`). Every ObjectMeta
//! field is `omitempty`, so an empty list or map (`finalizers: []`, `labels: {}`), an empty
//! string and a zero `generation` are not stored, and a field ObjectMeta does not have is
//! dropped (an "unknown field" warning, or 400 under `fieldValidation=Strict`).

use serde_json::Value;

use super::events;
use super::proto;
use super::store::{ApiError, ResourceDef, WriteOpts};

const OBJECT_META_FIELDS: [&str; 15] = [
    "name",
    "generateName",
    "namespace",
    "selfLink",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "labels",
    "annotations",
    "ownerReferences",
    "finalizers",
    "managedFields",
];

/// Round-trip `metadata` as ObjectMeta does; returns the paths of the fields it dropped for
/// not being ObjectMeta fields.
pub fn normalize(obj: &mut Value) -> Vec<String> {
    let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) else {
        return Vec::new();
    };
    let mut unknown = Vec::new();
    meta.retain(|k, v| {
        if !OBJECT_META_FIELDS.contains(&k.as_str()) {
            unknown.push(format!("metadata.{k}"));
            return false;
        }
        let empty = match v {
            Value::Null => true,
            Value::String(s) => s.is_empty(),
            Value::Array(a) => a.is_empty(),
            Value::Object(m) => m.is_empty(),
            // `generation` is a plain int64 with omitempty; `deletionGracePeriodSeconds` is a
            // pointer and keeps its 0.
            Value::Number(n) => k == "generation" && n.as_i64() == Some(0),
            Value::Bool(_) => false,
        };
        !empty
    });
    unknown
}

/// kube-apiserver's 400 for a body it cannot decode into the kind.
fn cannot_handle(rd: &ResourceDef, why: &str) -> ApiError {
    ApiError::bad_request(format!(
        "{} in version \"{}\" cannot be handled as a {}: {why}",
        rd.kind, rd.version, rd.kind
    ))
}

/// The metadata round trip and the built-in validation of a create (`old` = None) or an
/// update; returns the warnings for the response.
pub fn admit(
    rd: &ResourceDef,
    name: &str,
    obj: &mut Value,
    old: Option<&Value>,
    opts: &WriteOpts,
) -> Result<Vec<String>, ApiError> {
    let mut unknown = normalize(obj);
    if !rd.custom {
        // Built-in kinds go through their type, as kube-apiserver decodes a JSON body.
        let mut typed_in = obj.clone();
        typed_in["apiVersion"] = rd.api_version().into();
        typed_in["kind"] = rd.kind.clone().into();
        match proto::typed_json(&typed_in) {
            Some(Ok((typed, fields))) => {
                *obj = typed;
                unknown.extend(fields);
            }
            Some(Err(e)) => return Err(cannot_handle(rd, e.trim_start_matches('.'))),
            None => {}
        }
    }
    let mut warnings = Vec::new();
    if !unknown.is_empty() {
        let list: Vec<String> = unknown
            .iter()
            .map(|p| format!("unknown field \"{p}\""))
            .collect();
        match opts.field_validation.as_str() {
            "Strict" => {
                return Err(cannot_handle(
                    rd,
                    &format!("strict decoding error: {}", list.join(", ")),
                ));
            }
            "Ignore" => {}
            _ => warnings.extend(list),
        }
    }
    if events::is_event(rd) {
        let errors = events::validate(rd, obj, old);
        if !errors.is_empty() {
            return Err(ApiError::invalid(rd, name, &errors));
        }
    }
    Ok(warnings)
}
