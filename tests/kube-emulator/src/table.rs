//! `meta.k8s.io/v1` Table output (what `kubectl get` asks for), with a CRD's printer columns.
//!
//! Simplification: column JSONPaths support the forms CRDs use in practice — `.a.b`, `.a[0]`,
//! and one filter `.list[?(@.key=="value")].field` — not the whole kubectl JSONPath grammar.

use serde_json::{Value, json};

use super::store::{Column, ResourceDef};

/// Evaluate a simple JSONPath against an object.
pub fn eval_path(obj: &Value, path: &str) -> Option<Value> {
    let mut cur = vec![obj.clone()];
    let mut rest = path
        .trim()
        .trim_start_matches('{')
        .trim_end_matches('}')
        .trim_start_matches('.');
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('[') {
            let end = after.find(']')?;
            let inner = &after[..end];
            rest = after[end + 1..].trim_start_matches('.');
            if let Some(filter) = inner.strip_prefix("?(@.").and_then(|f| f.strip_suffix(')')) {
                let (field, want) = filter.split_once("==")?;
                let want = want.trim().trim_matches('"').trim_matches('\'');
                cur = cur
                    .iter()
                    .filter_map(Value::as_array)
                    .flatten()
                    .filter(|item| {
                        item.get(field.trim())
                            .is_some_and(|v| scalar_text(v) == want)
                    })
                    .cloned()
                    .collect();
            } else if inner == "*" {
                cur = cur
                    .iter()
                    .filter_map(Value::as_array)
                    .flatten()
                    .cloned()
                    .collect();
            } else {
                let idx: usize = inner.parse().ok()?;
                cur = cur.iter().filter_map(|v| v.get(idx)).cloned().collect();
            }
            continue;
        }
        let end = rest.find(['.', '[']).unwrap_or(rest.len());
        let field = &rest[..end];
        rest = rest[end..].trim_start_matches('.');
        cur = cur.iter().filter_map(|v| v.get(field)).cloned().collect();
    }
    cur.into_iter().next()
}

/// Age as kubectl prints it (`HumanDuration`).
pub fn human_duration(secs: i64) -> String {
    let s = secs.max(0);
    if s < 120 {
        return format!("{s}s");
    }
    let m = s / 60;
    if m < 10 {
        let rem = s % 60;
        return if rem == 0 {
            format!("{m}m")
        } else {
            format!("{m}m{rem}s")
        };
    }
    if m < 180 {
        return format!("{m}m");
    }
    let h = m / 60;
    if h < 8 {
        let rem = m % 60;
        return if rem == 0 {
            format!("{h}h")
        } else {
            format!("{h}h{rem}m")
        };
    }
    if h < 48 {
        return format!("{h}h");
    }
    let d = h / 24;
    if d < 8 {
        let rem = h % 24;
        return if rem == 0 {
            format!("{d}d")
        } else {
            format!("{d}d{rem}h")
        };
    }
    if d < 365 * 2 {
        return format!("{d}d");
    }
    format!("{}y", d / 365)
}

fn age(ts: &str) -> Value {
    match chrono::DateTime::parse_from_rfc3339(ts) {
        Ok(t) => Value::String(human_duration(
            (chrono::Utc::now() - t.with_timezone(&chrono::Utc)).num_seconds(),
        )),
        Err(_) => Value::String("<invalid>".into()),
    }
}

fn columns(rd: &ResourceDef) -> Vec<Column> {
    if !rd.columns.is_empty() {
        return rd.columns.clone();
    }
    vec![Column {
        name: "Age".into(),
        type_: "date".into(),
        json_path: ".metadata.creationTimestamp".into(),
        priority: 0,
        description: "CreationTimestamp is a timestamp representing the server time when this object was created.".into(),
        format: String::new(),
    }]
}

fn cell(column: &Column, obj: &Value) -> Value {
    let Some(v) = eval_path(obj, &column.json_path) else {
        return Value::Null;
    };
    match column.type_.as_str() {
        "date" => v.as_str().map(age).unwrap_or(Value::Null),
        "string" => match v {
            Value::String(s) => Value::String(s),
            Value::Null => Value::Null,
            other => Value::String(other.to_string()),
        },
        "integer" => v.as_i64().map(Value::from).unwrap_or(Value::Null),
        "number" => {
            if v.is_number() {
                v
            } else {
                Value::Null
            }
        }
        "boolean" => v.as_bool().map(Value::from).unwrap_or(Value::Null),
        _ => v,
    }
}

fn row_object(obj: &Value, include: &str) -> Value {
    match include {
        "None" => Value::Null,
        "Object" => obj.clone(),
        _ => json!({
            "kind": "PartialObjectMetadata",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": obj.get("metadata").cloned().unwrap_or_else(|| json!({})),
        }),
    }
}

/// A Table for some objects; `with_definitions` false for watch events after the first.
pub fn table(
    rd: &ResourceDef,
    objects: &[Value],
    include: &str,
    with_definitions: bool,
    list_meta: Value,
) -> Value {
    let cols = columns(rd);
    let mut defs = vec![
        json!({"name": "Name", "type": "string", "format": "name", "description": "Name must be unique within a namespace.", "priority": 0}),
    ];
    for c in &cols {
        defs.push(json!({"name": c.name, "type": c.type_, "format": c.format, "description": c.description, "priority": c.priority}));
    }
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| {
            let mut cells = vec![o["metadata"]["name"].clone()];
            cells.extend(cols.iter().map(|c| cell(c, o)));
            json!({"cells": cells, "object": row_object(o, include)})
        })
        .collect();
    let mut t = json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta,
        "rows": rows,
    });
    if with_definitions {
        t["columnDefinitions"] = Value::Array(defs);
    } else {
        t["columnDefinitions"] = Value::Null;
    }
    t
}

fn scalar_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}
