//! Admission for custom resources as kube-apiserver does it for a structural CRD schema:
//! prune unknown fields and non-nullable nulls, apply `default`s, validate the OpenAPI
//! constraints, then (only when nothing blocking was found) the CEL `x-kubernetes-validations`.
//!
//! Simplifications (the README's testing section summarises them):
//! - `format` is checked for `date-time`, `date` and `uuid` strings only (the real server knows
//!   a few more string formats; numeric formats such as `int32` are not range-checked by either).
//! - `metadata` is kept as sent (the real server prunes it to `ObjectMeta` and validates names).
//! - CEL cost budgets are not enforced, and the CEL evaluator is the `kube-cel` crate, not
//!   cel-go: a rule using a function that crate lacks fails closed (the object is rejected).

use serde_json::{Map, Value};

/// One field error, rendered like `k8s.io/apimachinery/pkg/util/validation/field.Error`.
#[derive(Debug, Clone)]
pub struct FieldError {
    /// `FieldValueInvalid`, `FieldValueRequired`, ...
    pub reason: &'static str,
    /// Dotted path such as `spec.budget.maxBudget`.
    pub field: String,
    /// The text after `field: `, e.g. `Invalid value: -1: ... should be greater than ...`.
    pub detail: String,
}

impl FieldError {
    fn invalid(field: &str, value: &Value, why: String) -> Self {
        FieldError {
            reason: "FieldValueInvalid",
            field: field.to_string(),
            detail: format!("Invalid value: {}: {why}", go_value(value)),
        }
    }
}

/// How Go's `%#v`-ish field errors print a value.
pub fn go_value(value: &Value) -> String {
    match value {
        Value::String(s) => format!("{s:?}"),
        Value::Object(_) => "\"object\"".to_string(),
        Value::Array(_) => "\"array\"".to_string(),
        Value::Null => "\"null\"".to_string(),
        other => other.to_string(),
    }
}

/// The result of admitting one object against its schema.
#[derive(Debug, Default)]
pub struct Admission {
    pub errors: Vec<FieldError>,
    /// Paths of unknown fields that were pruned (for `fieldValidation=Strict|Warn`).
    pub pruned: Vec<String>,
}

/// Prune, default and validate `obj` (a whole object) in place against `schema`
/// (the version's `openAPIV3Schema`).
pub fn admit(schema: &Value, obj: &mut Value) -> Admission {
    admit_update(schema, obj, None)
}

/// [`admit`] for an update from `old`, with validation ratcheting (GA in 1.33, as
/// apiextensions-apiserver's `RatchetingSchemaValidator`): the errors of a node whose value
/// equals its correlated old value (object properties and map values by key,
/// `x-kubernetes-list-type: map` items by their keys; other list items do not correlate)
/// are dropped, so an update may keep an invalid value it does not change.
pub fn admit_update(schema: &Value, obj: &mut Value, old: Option<&Value>) -> Admission {
    let mut out = Admission::default();
    let Some(map) = obj.as_object_mut() else {
        out.errors
            .push(FieldError::invalid("", obj, "must be an object".into()));
        return out;
    };
    // apiVersion, kind and metadata are always kept at the root.
    let props = schema.get("properties").and_then(Value::as_object);
    apply_defaults(schema, map);
    let keys: Vec<String> = map.keys().cloned().collect();
    for key in keys {
        if matches!(key.as_str(), "apiVersion" | "kind" | "metadata") {
            continue;
        }
        match props.and_then(|p| p.get(&key)) {
            Some(sub) => {
                if map.get(&key).is_some_and(Value::is_null) && !is_nullable(sub) {
                    map.remove(&key);
                    continue;
                }
                if let Some(child) = map.get_mut(&key) {
                    let old_child = old.and_then(|o| o.get(&key));
                    walk(sub, child, old_child, &key, &mut out);
                }
            }
            None => {
                if schema
                    .get("x-kubernetes-preserve-unknown-fields")
                    .and_then(Value::as_bool)
                    != Some(true)
                {
                    map.remove(&key);
                    out.pruned.push(format!(".{key}"));
                }
            }
        }
    }
    check_required(schema, map, "", &mut out);
    out
}

/// Validate (and prune, on a copy) `value` against `schema`, field paths starting at `path`:
/// the check kube-apiserver makes of a CRD's `default` values.
pub fn validate_value(schema: &Value, value: &Value, path: &str) -> Admission {
    let mut out = Admission::default();
    let mut copy = value.clone();
    walk(schema, &mut copy, None, path, &mut out);
    out
}

fn is_nullable(schema: &Value) -> bool {
    schema.get("nullable").and_then(Value::as_bool) == Some(true)
}

fn apply_defaults(schema: &Value, map: &mut Map<String, Value>) {
    if let Some(props) = schema.get("properties").and_then(Value::as_object) {
        for (key, sub) in props {
            let absent = match map.get(key) {
                None => true,
                Some(Value::Null) => !is_nullable(sub),
                Some(_) => false,
            };
            if absent && let Some(default) = sub.get("default") {
                map.insert(key.clone(), default.clone());
            }
        }
    }
}

fn check_required(schema: &Value, map: &Map<String, Value>, path: &str, out: &mut Admission) {
    if let Some(required) = schema.get("required").and_then(Value::as_array) {
        for name in required.iter().filter_map(Value::as_str) {
            if !map.contains_key(name) {
                out.errors.push(FieldError {
                    reason: "FieldValueRequired",
                    field: join(path, name),
                    detail: "Required value".to_string(),
                });
            }
        }
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn walk(schema: &Value, value: &mut Value, old: Option<&Value>, path: &str, out: &mut Admission) {
    let mark = out.errors.len();
    walk_node(schema, value, old, path, out);
    if old.is_some_and(|o| o == value) {
        // Ratcheting: an unchanged value keeps its errors as (unreported) warnings.
        out.errors.truncate(mark);
    }
}

fn walk_node(
    schema: &Value,
    value: &mut Value,
    old: Option<&Value>,
    path: &str,
    out: &mut Admission,
) {
    if value.is_null() {
        // Reached only for nullable fields (non-nullable nulls are pruned by the parent).
        return;
    }
    let int_or_string = schema
        .get("x-kubernetes-int-or-string")
        .and_then(Value::as_bool)
        == Some(true);
    if let Some(expected) = schema.get("type").and_then(Value::as_str) {
        let actual = type_name(value);
        let ok = actual == expected
            || (expected == "number" && actual == "integer")
            || (int_or_string && matches!(actual, "integer" | "string"));
        if !ok {
            out.errors.push(FieldError {
                reason: "FieldValueTypeInvalid",
                field: path.to_string(),
                detail: format!(
                    "Invalid value: {}: {path} in body must be of type {expected}: {:?}",
                    go_value(value),
                    actual
                ),
            });
            return;
        }
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        let list: Vec<String> = allowed.iter().map(go_value).collect();
        out.errors.push(FieldError {
            reason: "FieldValueNotSupported",
            field: path.to_string(),
            detail: format!(
                "Unsupported value: {}: supported values: {}",
                go_value(value),
                list.join(", ")
            ),
        });
    }
    match value {
        Value::Object(map) => walk_object(schema, map, old, path, out),
        Value::Array(items) => walk_array(schema, items, old, path, out),
        Value::String(s) => check_string(schema, s, path, out),
        Value::Number(n) => check_number(schema, n.as_f64().unwrap_or(0.0), value, path, out),
        _ => {}
    }
}

fn walk_object(
    schema: &Value,
    map: &mut Map<String, Value>,
    old: Option<&Value>,
    path: &str,
    out: &mut Admission,
) {
    let preserve = schema
        .get("x-kubernetes-preserve-unknown-fields")
        .and_then(Value::as_bool)
        == Some(true);
    let props = schema.get("properties").and_then(Value::as_object);
    let additional = schema.get("additionalProperties").filter(|a| a.is_object());
    apply_defaults(schema, map);
    let keys: Vec<String> = map.keys().cloned().collect();
    for key in keys {
        let child_path = join(path, &key);
        let sub = props.and_then(|p| p.get(&key)).or(additional);
        match sub {
            Some(sub) => {
                if map.get(&key).is_some_and(Value::is_null) && !is_nullable(sub) {
                    map.remove(&key);
                    continue;
                }
                if let Some(child) = map.get_mut(&key) {
                    walk(sub, child, old.and_then(|o| o.get(&key)), &child_path, out);
                }
            }
            None if preserve => {}
            None if props.is_none()
                && schema.get("additionalProperties").and_then(Value::as_bool) == Some(true) => {}
            None => {
                map.remove(&key);
                out.pruned.push(format!(".{child_path}"));
            }
        }
    }
    check_required(schema, map, path, out);
    let count = map.len() as f64;
    if let Some(max) = schema.get("maxProperties").and_then(Value::as_f64)
        && count > max
    {
        out.errors.push(FieldError {
            reason: "FieldValueTooMany",
            field: path.to_string(),
            detail: format!("Too many: {count}: must have at most {max} items"),
        });
    }
    if let Some(min) = schema.get("minProperties").and_then(Value::as_f64)
        && count < min
    {
        out.errors.push(FieldError {
            reason: "FieldValueInvalid",
            field: path.to_string(),
            detail: format!(
                "Invalid value: {count}: {path} in body should have at least {min} properties"
            ),
        });
    }
}

fn walk_array(
    schema: &Value,
    items: &mut [Value],
    old: Option<&Value>,
    path: &str,
    out: &mut Admission,
) {
    let map_keys: Vec<&str> =
        if schema.get("x-kubernetes-list-type").and_then(Value::as_str) == Some("map") {
            schema
                .get("x-kubernetes-list-map-keys")
                .and_then(Value::as_array)
                .map(|k| k.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default()
        } else {
            Vec::new()
        };
    if let Some(item_schema) = schema.get("items") {
        for (i, item) in items.iter_mut().enumerate() {
            // Only list-map items correlate with an old item (by their keys).
            let old_item = if map_keys.is_empty() {
                None
            } else {
                old.and_then(Value::as_array).and_then(|o| {
                    o.iter()
                        .find(|x| map_keys.iter().all(|k| x.get(*k) == item.get(*k)))
                })
            };
            walk(item_schema, item, old_item, &format!("{path}[{i}]"), out);
        }
    }
    let count = items.len() as f64;
    if let Some(max) = schema.get("maxItems").and_then(Value::as_f64)
        && count > max
    {
        out.errors.push(FieldError {
            reason: "FieldValueTooMany",
            field: path.to_string(),
            detail: format!("Too many: {count}: must have at most {max} items"),
        });
    }
    if let Some(min) = schema.get("minItems").and_then(Value::as_f64)
        && count < min
    {
        out.errors.push(FieldError::invalid(
            path,
            &Value::from(count),
            format!("{path} in body should have at least {min} items"),
        ));
    }
    match schema.get("x-kubernetes-list-type").and_then(Value::as_str) {
        Some("set") => {
            for (i, item) in items.iter().enumerate() {
                if items[..i].contains(item) {
                    out.errors.push(duplicate(path, i, item));
                }
            }
        }
        Some("map") => {
            let keys: Vec<&str> = schema
                .get("x-kubernetes-list-map-keys")
                .and_then(Value::as_array)
                .map(|k| k.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let key_of = |item: &Value| -> Vec<Value> {
                keys.iter()
                    .map(|k| item.get(*k).cloned().unwrap_or(Value::Null))
                    .collect()
            };
            for (i, item) in items.iter().enumerate() {
                let key = key_of(item);
                if items[..i].iter().any(|other| key_of(other) == key) {
                    out.errors.push(duplicate(path, i, item));
                }
            }
        }
        _ => {}
    }
}

fn duplicate(path: &str, i: usize, item: &Value) -> FieldError {
    FieldError {
        reason: "FieldValueDuplicate",
        field: format!("{path}[{i}]"),
        detail: format!("Duplicate value: {item}"),
    }
}

fn check_string(schema: &Value, s: &str, path: &str, out: &mut Admission) {
    let value = Value::String(s.to_string());
    let len = s.chars().count() as f64;
    if let Some(max) = schema.get("maxLength").and_then(Value::as_f64)
        && len > max
    {
        out.errors.push(FieldError {
            reason: "FieldValueTooLong",
            field: path.to_string(),
            detail: format!("Too long: may not be more than {max} bytes"),
        });
    }
    if let Some(min) = schema.get("minLength").and_then(Value::as_f64)
        && len < min
    {
        out.errors.push(FieldError::invalid(
            path,
            &value,
            format!("{path} in body should be at least {min} chars long"),
        ));
    }
    if let Some(pattern) = schema.get("pattern").and_then(Value::as_str) {
        match regex::Regex::new(pattern) {
            Ok(re) if re.is_match(s) => {}
            Ok(_) => out.errors.push(FieldError::invalid(
                path,
                &value,
                format!("{path} in body should match '{pattern}'"),
            )),
            Err(e) => out.errors.push(FieldError::invalid(
                path,
                &value,
                format!("the schema pattern does not compile: {e}"),
            )),
        }
    }
    let format_ok = match schema.get("format").and_then(Value::as_str) {
        Some("date-time") => chrono::DateTime::parse_from_rfc3339(s).is_ok(),
        Some("date") => chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok(),
        Some("uuid") => uuid::Uuid::parse_str(s).is_ok(),
        _ => true,
    };
    if !format_ok {
        let format = schema.get("format").and_then(Value::as_str).unwrap_or("");
        out.errors.push(FieldError::invalid(
            path,
            &value,
            format!("{path} in body must be of type {format}: {s:?}"),
        ));
    }
}

fn check_number(schema: &Value, n: f64, value: &Value, path: &str, out: &mut Admission) {
    let exclusive = |key: &str| schema.get(key).and_then(Value::as_bool) == Some(true);
    if let Some(min) = schema.get("minimum").and_then(Value::as_f64) {
        if exclusive("exclusiveMinimum") && n <= min {
            out.errors.push(FieldError::invalid(
                path,
                value,
                format!("{path} in body should be greater than {min}"),
            ));
        } else if n < min {
            out.errors.push(FieldError::invalid(
                path,
                value,
                format!("{path} in body should be greater than or equal to {min}"),
            ));
        }
    }
    if let Some(max) = schema.get("maximum").and_then(Value::as_f64) {
        if exclusive("exclusiveMaximum") && n >= max {
            out.errors.push(FieldError::invalid(
                path,
                value,
                format!("{path} in body should be less than {max}"),
            ));
        } else if n > max {
            out.errors.push(FieldError::invalid(
                path,
                value,
                format!("{path} in body should be less than or equal to {max}"),
            ));
        }
    }
}

/// Evaluate the CEL `x-kubernetes-validations` of `schema` over `obj` (and `old` for
/// transition rules), with the `kube-cel` crate.
pub fn cel_errors(schema: &Value, obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let validator = kube_cel::Validator::new();
    match validator.validate(schema, obj, old) {
        Ok(()) => Vec::new(),
        Err(errors) => errors
            .into_vec()
            .into_iter()
            // Ratcheting: a rule without oldSelf whose value is unchanged does not fail.
            .filter(|e| {
                let Some(old) = old else { return true };
                let now = lookup(obj, &e.field_path);
                e.rule.contains("oldSelf") || now.is_none() || now != lookup(old, &e.field_path)
            })
            .map(|e| {
                let reason = e
                    .reason
                    .clone()
                    .unwrap_or_else(|| "FieldValueInvalid".into());
                let at = lookup(obj, &e.field_path).unwrap_or(Value::Null);
                let (reason, detail): (&'static str, String) = match reason.as_str() {
                    "FieldValueForbidden" => {
                        ("FieldValueForbidden", format!("Forbidden: {}", e.message))
                    }
                    "FieldValueRequired" => (
                        "FieldValueRequired",
                        format!("Required value: {}", e.message),
                    ),
                    "FieldValueDuplicate" => (
                        "FieldValueDuplicate",
                        format!("Duplicate value: {}", e.message),
                    ),
                    _ => (
                        "FieldValueInvalid",
                        format!("Invalid value: {}: {}", go_value(&at), e.message),
                    ),
                };
                FieldError {
                    reason,
                    field: e.field_path.trim_start_matches('.').to_string(),
                    detail,
                }
            })
            .collect(),
    }
}

/// The value at a dotted path such as `spec.budget` (no list indexes).
fn lookup(obj: &Value, path: &str) -> Option<Value> {
    let mut cur = obj;
    for part in path
        .trim_start_matches('.')
        .split('.')
        .filter(|p| !p.is_empty())
    {
        cur = cur.get(part)?;
    }
    Some(cur.clone())
}
