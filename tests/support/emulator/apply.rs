//! Server-side apply, simplified.
//!
//! The apply configuration is merged into the live object the way the real server merges it
//! for these CRDs: maps key by key, `x-kubernetes-list-type: map` lists by their keys, `set`
//! lists as a union, every other list atomically. Fields that this manager applied last time
//! and left out now are removed. Simplifications (documented in the README): ownership is
//! tracked per manager by its last applied configuration, not by a full field set, so there
//! are no apply conflicts (as if `force=true` always), a field another manager also set is
//! still removed when this manager drops it, and `managedFields` has only `Apply` entries
//! (updates and merge patches record no `Update` entries).

use serde_json::{Map, Value, json};

use super::store::{Sub, now};

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
fn metadata_schema() -> Value {
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
    let meta_schema = metadata_schema();
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

/// The `fieldsV1` set of an apply configuration.
fn fields_of(schema: Option<&Value>, value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut out = Map::new();
            for (k, v) in map {
                out.insert(format!("f:{k}"), fields_of(child_schema(schema, k), v));
            }
            Value::Object(out)
        }
        Value::Array(items) => {
            let (kind, keys) = list_type(schema);
            let item_schema = schema.and_then(|s| s.get("items"));
            let mut out = Map::new();
            match kind {
                "map" => {
                    for item in items {
                        let mut key = Map::new();
                        for k in &keys {
                            key.insert(k.clone(), item.get(k).cloned().unwrap_or(Value::Null));
                        }
                        let mut f = match fields_of(item_schema, item) {
                            Value::Object(m) => m,
                            _ => Map::new(),
                        };
                        f.insert(".".into(), json!({}));
                        out.insert(format!("k:{}", Value::Object(key)), Value::Object(f));
                    }
                }
                "set" => {
                    for item in items {
                        out.insert(format!("v:{item}"), json!({}));
                    }
                }
                _ => {}
            }
            Value::Object(out)
        }
        _ => json!({}),
    }
}

/// Record this manager's `Apply` entry in `metadata.managedFields`.
pub fn set_managed_fields(
    obj: &mut Value,
    manager: &str,
    applied: &Value,
    api_version: &str,
    sub: Sub,
    _old: Option<&Value>,
) {
    let mut cfg = applied.clone();
    if let Some(m) = cfg.as_object_mut() {
        m.remove("apiVersion");
        m.remove("kind");
        if let Some(meta) = m.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.remove("name");
            meta.remove("namespace");
            meta.remove("resourceVersion");
        }
    }
    let meta_schema = metadata_schema();
    let mut fields = Map::new();
    if let Some(m) = cfg.as_object() {
        for (k, v) in m {
            let s = if k == "metadata" {
                Some(&meta_schema)
            } else {
                None
            };
            let f = fields_of(s, v);
            if k == "metadata" && f.as_object().is_some_and(Map::is_empty) {
                continue;
            }
            fields.insert(format!("f:{k}"), f);
        }
    }
    let mut entry = json!({
        "manager": manager,
        "operation": "Apply",
        "apiVersion": api_version,
        "time": now(),
        "fieldsType": "FieldsV1",
        "fieldsV1": Value::Object(fields),
    });
    if sub == Sub::Status {
        entry["subresource"] = "status".into();
    }
    let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    let mut entries: Vec<Value> = meta
        .get("managedFields")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let sub_name = if sub == Sub::Status {
        Some("status")
    } else {
        None
    };
    entries.retain(|e| {
        !(e["manager"] == manager
            && e["operation"] == "Apply"
            && e.get("subresource").and_then(Value::as_str) == sub_name)
    });
    entries.push(entry);
    meta.insert("managedFields".into(), Value::Array(entries));
}
