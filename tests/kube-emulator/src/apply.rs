//! Server-side apply.
//!
//! The apply configuration is typed against the schema first (a field the schema does not
//! declare fails the whole request, as structured-merge-diff's "field not declared in
//! schema" does in kube-apiserver, whatever `fieldValidation` says), then merged into the
//! live object: maps key by key, `x-kubernetes-list-type: map` lists by their keys, `set`
//! lists as a union, every other list atomically. Ownership, conflicts and the removal of
//! fields a manager stopped applying are in `managed_fields`.

use serde_json::{Value, json};

use super::managed_fields;
use super::store::{ApiError, ResourceDef, Sub, WriteOpts};

fn meta_name(obj: &Value) -> Option<&str> {
    obj.get("metadata")?.get("name")?.as_str()
}

/// Server-side apply of the request `body` by `opts.field_manager` to `live` (`None`: the
/// object does not exist yet). Returns the object to write, `managedFields` included.
pub fn server_side_apply(
    rd: &ResourceDef,
    live: Option<&Value>,
    name: &str,
    body: &[u8],
    opts: &WriteOpts,
    sub: Sub,
) -> Result<Value, ApiError> {
    let text = std::str::from_utf8(body)
        .map_err(|_| ApiError::bad_request("the apply body is not UTF-8"))?;
    let config: Value = serde_yaml::from_str(text)
        .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?;
    if !config.is_object() {
        return Err(ApiError::bad_request("the apply body must be an object"));
    }
    let manager = match &opts.field_manager {
        Some(m) if !m.is_empty() => m.clone(),
        _ => {
            return Err(ApiError::bad_request(
                "PATCH, application/apply-patch+yaml requires fieldManager to be set",
            ));
        }
    };
    if meta_name(&config).is_some_and(|n| n != name) {
        return Err(ApiError::bad_request(
            "the name of the object does not match the name on the URL",
        ));
    }
    // Typing the configuration: structured-merge-diff refuses undeclared fields. kube-apiserver
    // answers this error as a 500 with no reason (it is not a Status error).
    if let Err(e) = managed_fields::field_set(rd.schema.as_ref(), &config) {
        return Err(ApiError::new(
            500,
            "",
            format!(
                "failed to create typed patch object ({}, Kind={}): {e}",
                rd.api_version(),
                rd.kind
            ),
        ));
    }
    if let (Some(live), Some(v)) = (
        live,
        config
            .get("metadata")
            .and_then(|m| m.get("resourceVersion"))
            .and_then(Value::as_str),
    ) && Some(v) != live["metadata"]["resourceVersion"].as_str()
    {
        return Err(ApiError::conflict(
            rd,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        ));
    }
    let empty = json!({"metadata": {}});
    let live_obj = live.unwrap_or(&empty);
    let mut merged = merge_apply(rd.schema.as_ref(), live_obj, &config, None);
    if let Some(m) = merged.as_object_mut() {
        m.insert("apiVersion".into(), rd.api_version().into());
        m.insert("kind".into(), rd.kind.clone().into());
    }
    if let Some(meta) = merged.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert("name".into(), name.into());
    }
    let status_sub = rd.status_subresource || rd.plural == "namespaces";
    // The write strategy: the main resource cannot change status, /status only status.
    let finish = |obj: Value| -> Value {
        if !status_sub || live.is_none() {
            return obj;
        }
        let (mut out, status) = match sub {
            Sub::Main => (obj, live_obj.get("status").cloned()),
            Sub::Status => (live_obj.clone(), obj.get("status").cloned()),
        };
        if let Some(m) = out.as_object_mut() {
            match status {
                Some(s) => m.insert("status".into(), s),
                None => m.remove("status"),
            };
        }
        out
    };
    let applied = managed_fields::apply(
        rd.schema.as_ref(),
        status_sub,
        &rd.api_version(),
        live_obj,
        merged,
        &config,
        &manager,
        sub,
        opts.force,
        finish,
    )
    .map_err(|c| {
        let mut e = ApiError::new(409, "Conflict", c.message);
        e.details =
            Some(json!({"name": name, "group": rd.group, "kind": rd.plural, "causes": c.causes}));
        e
    })?;
    Ok(applied.object)
}

fn list_type(schema: Option<&Value>) -> (&str, Vec<String>) {
    let Some(s) = schema else {
        return ("atomic", Vec::new());
    };
    let t = s
        .get("x-kubernetes-list-type")
        .and_then(Value::as_str)
        .unwrap_or("atomic");
    let keys = s
        .get("x-kubernetes-list-map-keys")
        .and_then(Value::as_array)
        .map(|k| {
            k.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    (t, keys)
}

fn child_schema<'a>(schema: Option<&'a Value>, key: &str) -> Option<&'a Value> {
    let s = schema?;
    s.get("properties")
        .and_then(|p| p.get(key))
        .or_else(|| s.get("additionalProperties").filter(|a| a.is_object()))
}

/// Schemas for metadata fields that have merge semantics on every resource.
fn metadata_schema_merge() -> Value {
    json!({
        "type": "object",
        "properties": {
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
            "finalizers": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
            "ownerReferences": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["uid"], "items": {"type": "object"}},
        }
    })
}

/// Merge `applied` into `live`, removing what `previous` (this manager's last apply) had and
/// `applied` no longer has.
pub fn merge_apply(
    schema: Option<&Value>,
    live: &Value,
    applied: &Value,
    previous: Option<&Value>,
) -> Value {
    let mut root = live.clone();
    let (Some(out), Some(cfg)) = (root.as_object_mut(), applied.as_object()) else {
        return applied.clone();
    };
    let meta_schema = metadata_schema_merge();
    let prev = previous.and_then(Value::as_object);
    for (key, value) in cfg {
        if matches!(key.as_str(), "apiVersion" | "kind") {
            continue;
        }
        let sub = if key == "metadata" {
            Some(&meta_schema)
        } else {
            child_schema(schema, key)
        };
        let merged = merge_value(sub, out.get(key), value, prev.and_then(|p| p.get(key)));
        out.insert(key.clone(), merged);
    }
    if let Some(prev) = prev {
        for key in prev.keys() {
            if !cfg.contains_key(key) && !matches!(key.as_str(), "apiVersion" | "kind" | "metadata")
            {
                out.remove(key);
            }
        }
    }
    root
}

fn merge_value(
    schema: Option<&Value>,
    live: Option<&Value>,
    applied: &Value,
    previous: Option<&Value>,
) -> Value {
    match (applied, live) {
        (Value::Object(cfg), Some(Value::Object(live_map))) => {
            let preserve = schema
                .and_then(|s| s.get("x-kubernetes-preserve-unknown-fields"))
                .and_then(Value::as_bool)
                == Some(true)
                && schema.and_then(|s| s.get("properties")).is_none();
            let _ = preserve;
            let mut out = live_map.clone();
            let prev = previous.and_then(Value::as_object);
            for (key, value) in cfg {
                let merged = merge_value(
                    child_schema(schema, key),
                    out.get(key),
                    value,
                    prev.and_then(|p| p.get(key)),
                );
                out.insert(key.clone(), merged);
            }
            if let Some(prev) = prev {
                for key in prev.keys() {
                    if !cfg.contains_key(key) {
                        out.remove(key);
                    }
                }
            }
            Value::Object(out)
        }
        (Value::Array(cfg), Some(Value::Array(live_items))) => {
            let (kind, keys) = list_type(schema);
            let item_schema = schema.and_then(|s| s.get("items"));
            let prev_items = previous.and_then(Value::as_array);
            match kind {
                "map" => {
                    let key_of = |v: &Value| -> Vec<Value> {
                        keys.iter()
                            .map(|k| v.get(k).cloned().unwrap_or(Value::Null))
                            .collect()
                    };
                    let mut out: Vec<Value> = live_items.clone();
                    for item in cfg {
                        let k = key_of(item);
                        let prev_item = prev_items.and_then(|p| p.iter().find(|x| key_of(x) == k));
                        match out.iter_mut().find(|x| key_of(x) == k) {
                            Some(existing) => {
                                let merged =
                                    merge_value(item_schema, Some(existing), item, prev_item);
                                *existing = merged;
                            }
                            None => out.push(item.clone()),
                        }
                    }
                    if let Some(prev) = prev_items {
                        let dropped: Vec<Vec<Value>> = prev
                            .iter()
                            .map(key_of)
                            .filter(|k| !cfg.iter().any(|c| key_of(c) == *k))
                            .collect();
                        out.retain(|x| !dropped.contains(&key_of(x)));
                    }
                    Value::Array(out)
                }
                "set" => {
                    let mut out: Vec<Value> = live_items.clone();
                    for item in cfg {
                        if !out.contains(item) {
                            out.push(item.clone());
                        }
                    }
                    if let Some(prev) = prev_items {
                        out.retain(|x| cfg.contains(x) || !prev.contains(x));
                    }
                    Value::Array(out)
                }
                _ => applied.clone(),
            }
        }
        _ => applied.clone(),
    }
}
