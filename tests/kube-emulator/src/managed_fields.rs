//! Field ownership (`metadata.managedFields`) as structured-merge-diff computes it.
//!
//! A manager is identified, as in kube-apiserver, by its name, its operation (`Apply` or
//! `Update`) and its subresource (and, for `Update`, the apiVersion). Each owns a set of field
//! paths, stored as `FieldsV1`. The rules implemented (sigs.k8s.io/structured-merge-diff,
//! `merge.Updater`):
//!
//! - Apply: the manager's new set is the field set of its configuration; fields that another
//!   manager owns and whose value the apply changes (modified or added) are conflicts: a 409
//!   unless `force`, in which case the other managers lose them. Fields the manager applied
//!   last time and leaves out now are removed from the object, unless another manager still
//!   owns them (shared ownership).
//! - Update (PUT, merge and JSON patches, creates): the writer takes every field it changed,
//!   from every other manager (as a forced apply would).
//! - Every write: a removed field leaves every manager's set; a manager with an empty set goes.
//! - `x-kubernetes-list-type: map` items are owned per key (`k:{"type":"Ready"}`), `set`
//!   items per value (`v:"a"`), other lists and `x-kubernetes-map-type: atomic` maps whole.
//!
//! Simplifications (documented in the module docs of `mod.rs`): no `before-first-apply`
//! takeover of fields that existed before any manager, no cap on the number of `Update`
//! entries, entries keep their order of first appearance (the real server sorts them), and
//! defaults added by admission belong to no manager.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value, json};

use super::store::{Sub, now};

/// One step of a field path, as in `fieldpath.PathElement`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Pe {
    Field(String),
    /// The key fields of a list-map item, as a JSON object (sorted keys).
    Key(String),
    /// A set item's value, as JSON.
    Value(String),
}

pub type Path = Vec<Pe>;
pub type Set = BTreeSet<Path>;

/// `.spec.holderIdentity`, `.status.conditions[type="Ready"]`, `.metadata.finalizers[="x"]`.
pub fn path_string(path: &Path) -> String {
    let mut out = String::new();
    for pe in path {
        match pe {
            Pe::Field(f) => {
                out.push('.');
                out.push_str(f);
            }
            Pe::Key(k) => {
                let parsed: Value = serde_json::from_str(k).unwrap_or(Value::Null);
                let parts: Vec<String> = parsed
                    .as_object()
                    .map(|m| m.iter().map(|(k, v)| format!("{k}={v}")).collect())
                    .unwrap_or_default();
                out.push_str(&format!("[{}]", parts.join(",")));
            }
            Pe::Value(v) => out.push_str(&format!("[={v}]")),
        }
    }
    out
}

fn pe_key(pe: &Pe) -> String {
    match pe {
        Pe::Field(f) => format!("f:{f}"),
        Pe::Key(k) => format!("k:{k}"),
        Pe::Value(v) => format!("v:{v}"),
    }
}

fn parse_pe(s: &str) -> Option<Pe> {
    if let Some(f) = s.strip_prefix("f:") {
        Some(Pe::Field(f.to_string()))
    } else if let Some(k) = s.strip_prefix("k:") {
        let v: Value = serde_json::from_str(k).ok()?;
        Some(Pe::Key(v.to_string()))
    } else {
        s.strip_prefix("v:").map(|v| Pe::Value(v.to_string()))
    }
}

/// A set as `fieldsV1`: a tree where `{}` or a `"."` child marks a member.
pub fn to_fields_v1(set: &Set) -> Value {
    let mut root = Map::new();
    for path in set {
        let mut node = &mut root;
        for pe in path {
            let child = node.entry(pe_key(pe)).or_insert_with(|| json!({}));
            node = match child.as_object_mut() {
                Some(m) => m,
                None => unreachable!("fieldsV1 nodes are objects"),
            };
        }
        let _ = node;
    }
    // Members that also have children get a "." entry.
    fn mark(node: &mut Map<String, Value>, set: &Set, prefix: &mut Path) {
        for (k, child) in node.iter_mut() {
            let Some(pe) = parse_pe(k) else { continue };
            prefix.push(pe);
            if let Some(m) = child.as_object_mut()
                && !m.is_empty()
            {
                mark(m, set, prefix);
                if set.contains(prefix) {
                    m.insert(".".into(), json!({}));
                }
            }
            prefix.pop();
        }
    }
    mark(&mut root, set, &mut Vec::new());
    Value::Object(root)
}

pub fn from_fields_v1(fields: &Value) -> Set {
    fn walk(node: &Value, prefix: &mut Path, out: &mut Set) {
        let Some(m) = node.as_object() else { return };
        if (m.is_empty() || m.contains_key(".")) && !prefix.is_empty() {
            out.insert(prefix.clone());
        }
        for (k, child) in m {
            if k == "." {
                continue;
            }
            if let Some(pe) = parse_pe(k) {
                prefix.push(pe);
                walk(child, prefix, out);
                prefix.pop();
            }
        }
    }
    let mut out = Set::new();
    if fields.as_object().is_some_and(|m| !m.is_empty()) {
        walk(fields, &mut Vec::new(), &mut out);
    }
    out
}

/// The schema of `metadata` (ObjectMeta), as structured-merge-diff types it.
pub fn metadata_schema() -> Value {
    let s = json!({"type": "string"});
    json!({
        "type": "object",
        "properties": {
            "name": s, "namespace": s, "generateName": s, "uid": s, "resourceVersion": s,
            "generation": {"type": "integer"}, "creationTimestamp": s, "deletionTimestamp": s,
            "deletionGracePeriodSeconds": {"type": "integer"}, "selfLink": s,
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
            "finalizers": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
            "ownerReferences": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["uid"], "items": {
                "type": "object",
                "properties": {
                    "apiVersion": s, "kind": s, "name": s, "uid": s,
                    "controller": {"type": "boolean"}, "blockOwnerDeletion": {"type": "boolean"},
                },
            }},
            "managedFields": {"type": "array", "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}},
        }
    })
}

/// What a schema node is, for ownership.
enum Node<'a> {
    /// A struct: declared properties (unknown ones are errors unless preserved).
    Struct {
        props: &'a Map<String, Value>,
        preserve: bool,
    },
    /// A map: every key has the same value schema (`None`: untyped).
    Map(Option<&'a Value>),
    ListMap(Vec<String>, Option<&'a Value>),
    ListSet,
    Atomic,
}

fn node_of<'a>(schema: Option<&'a Value>, value: &Value) -> Node<'a> {
    let Some(s) = schema else {
        // Untyped (built-in kinds served without a schema, preserved unknown fields):
        // maps are granular, lists atomic.
        return if value.is_object() {
            Node::Map(None)
        } else {
            Node::Atomic
        };
    };
    match value {
        Value::Object(_) => {
            if s.get("x-kubernetes-map-type").and_then(Value::as_str) == Some("atomic") {
                return Node::Atomic;
            }
            let preserve = s
                .get("x-kubernetes-preserve-unknown-fields")
                .and_then(Value::as_bool)
                == Some(true);
            if let Some(props) = s.get("properties").and_then(Value::as_object) {
                return Node::Struct { props, preserve };
            }
            match s.get("additionalProperties") {
                Some(a) if a.is_object() => Node::Map(Some(a)),
                Some(Value::Bool(true)) => Node::Map(None),
                _ if preserve => Node::Map(None),
                _ if s
                    .get("x-kubernetes-embedded-resource")
                    .and_then(Value::as_bool)
                    == Some(true) =>
                {
                    Node::Map(None)
                }
                _ => Node::Struct {
                    props: empty_props(),
                    preserve: false,
                },
            }
        }
        Value::Array(_) => match s.get("x-kubernetes-list-type").and_then(Value::as_str) {
            Some("map") => {
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
                Node::ListMap(keys, s.get("items"))
            }
            Some("set") => Node::ListSet,
            _ => Node::Atomic,
        },
        _ => Node::Atomic,
    }
}

fn empty_props() -> &'static Map<String, Value> {
    static EMPTY: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();
    EMPTY.get_or_init(Map::new)
}

fn item_key(keys: &[String], item: &Value) -> Pe {
    let mut m = Map::new();
    for k in keys {
        if let Some(v) = item.get(k) {
            m.insert(k.clone(), v.clone());
        }
    }
    Pe::Key(Value::Object(m).to_string())
}

/// The child schema of a root-level key (metadata typed as ObjectMeta).
fn root_child<'a>(schema: Option<&'a Value>, meta: &'a Value, key: &str) -> Option<&'a Value> {
    if key == "metadata" {
        return Some(meta);
    }
    schema?.get("properties")?.get(key)
}

/// The field set of an apply configuration (`TypedValue.ToFieldSet`); an undeclared field
/// fails as `.spec.x: field not declared in schema`.
pub fn field_set(schema: Option<&Value>, obj: &Value) -> Result<Set, String> {
    let meta = metadata_schema();
    let mut out = Set::new();
    let mut errors = Vec::new();
    if let Some(map) = obj.as_object() {
        for (k, v) in map {
            if matches!(k.as_str(), "apiVersion" | "kind") {
                continue;
            }
            let path = vec![Pe::Field(k.clone())];
            if v.is_null() {
                continue;
            }
            let declared = k == "metadata"
                || schema.is_none()
                || schema
                    .and_then(|s| s.get("properties"))
                    .and_then(|p| p.get(k))
                    .is_some()
                || schema
                    .and_then(|s| s.get("x-kubernetes-preserve-unknown-fields"))
                    .and_then(Value::as_bool)
                    == Some(true);
            if !declared {
                errors.push(format!(".{k}: field not declared in schema"));
                continue;
            }
            let child = root_child(schema, &meta, k);
            let child = if schema.is_none() && k != "metadata" {
                None
            } else {
                child
            };
            walk_set(child, v, &path, &mut out, &mut errors);
            if v.is_null() || v.as_object().is_some_and(Map::is_empty) || !v.is_object() {
                out.insert(path);
            }
        }
    }
    strip_meta(&mut out);
    match errors.len() {
        0 => Ok(out),
        1 => Err(errors.remove(0)),
        _ => Err(format!("errors:\n  {}", errors.join("\n  "))),
    }
}

fn walk_set(
    schema: Option<&Value>,
    value: &Value,
    path: &Path,
    out: &mut Set,
    errors: &mut Vec<String>,
) {
    match (node_of(schema, value), value) {
        (Node::Struct { props, preserve }, Value::Object(map)) => {
            for (k, v) in map {
                let mut p = path.clone();
                p.push(Pe::Field(k.clone()));
                let sub = props.get(k);
                if sub.is_none() && !preserve {
                    errors.push(format!("{}: field not declared in schema", path_string(&p)));
                    continue;
                }
                walk_set(sub, v, &p, out, errors);
                if v.is_null() || v.as_object().is_some_and(Map::is_empty) || sub.is_none() {
                    out.insert(p);
                }
            }
        }
        (Node::Map(sub), Value::Object(map)) => {
            for (k, v) in map {
                let mut p = path.clone();
                p.push(Pe::Field(k.clone()));
                walk_set(sub, v, &p, out, errors);
                out.insert(p);
            }
        }
        (Node::ListMap(keys, items), Value::Array(list)) => {
            for item in list {
                let mut p = path.clone();
                p.push(item_key(&keys, item));
                walk_set(items, item, &p, out, errors);
                out.insert(p);
            }
        }
        (Node::ListSet, Value::Array(list)) => {
            for item in list {
                let mut p = path.clone();
                p.push(Pe::Value(item.to_string()));
                out.insert(p);
            }
        }
        _ => {
            out.insert(path.clone());
        }
    }
}

/// Fields never owned (fieldmanager's `stripMeta`).
fn strip_meta(set: &mut Set) {
    set.retain(|p| {
        !matches!(p.as_slice(),
            [Pe::Field(a)] if a == "apiVersion" || a == "kind" || a == "metadata")
            && !matches!(p.as_slice(),
                [Pe::Field(m), Pe::Field(f)] if m == "metadata" && matches!(f.as_str(),
                    "name" | "namespace" | "creationTimestamp" | "selfLink" | "uid"
                    | "generation" | "managedFields" | "resourceVersion"))
    });
}

/// Every node of an object with its value when it is a leaf (`None` for containers), for
/// comparisons (`TypedValue.Compare`).
fn flatten(schema: Option<&Value>, obj: &Value) -> BTreeMap<Path, Option<Value>> {
    fn walk(
        schema: Option<&Value>,
        value: &Value,
        path: &Path,
        out: &mut BTreeMap<Path, Option<Value>>,
    ) {
        match (node_of(schema, value), value) {
            (Node::Struct { props, .. }, Value::Object(map)) if !map.is_empty() => {
                out.insert(path.clone(), None);
                for (k, v) in map {
                    let mut p = path.clone();
                    p.push(Pe::Field(k.clone()));
                    walk(props.get(k), v, &p, out);
                }
            }
            (Node::Map(sub), Value::Object(map)) if !map.is_empty() => {
                out.insert(path.clone(), None);
                for (k, v) in map {
                    let mut p = path.clone();
                    p.push(Pe::Field(k.clone()));
                    walk(sub, v, &p, out);
                }
            }
            (Node::ListMap(keys, items), Value::Array(list)) => {
                out.insert(path.clone(), None);
                for item in list {
                    let mut p = path.clone();
                    p.push(item_key(&keys, item));
                    walk(items, item, &p, out);
                    out.insert(p, None);
                }
            }
            (Node::ListSet, Value::Array(list)) => {
                out.insert(path.clone(), None);
                for item in list {
                    let mut p = path.clone();
                    p.push(Pe::Value(item.to_string()));
                    out.insert(p, Some(item.clone()));
                }
            }
            _ => {
                out.insert(path.clone(), Some(value.clone()));
            }
        }
    }
    let meta = metadata_schema();
    let mut out = BTreeMap::new();
    if let Some(map) = obj.as_object() {
        for (k, v) in map {
            if matches!(k.as_str(), "apiVersion" | "kind") {
                continue;
            }
            let child = if schema.is_none() && k != "metadata" {
                None
            } else {
                root_child(schema, &meta, k)
            };
            walk(child, v, &vec![Pe::Field(k.clone())], &mut out);
        }
    }
    out
}

/// Added, modified and removed paths from `old` to `new`.
struct Comparison {
    added: Set,
    modified: Set,
    removed: Set,
}

fn compare(schema: Option<&Value>, old: &Value, new: &Value) -> Comparison {
    let a = flatten(schema, &without_managed(old));
    let b = flatten(schema, &without_managed(new));
    let mut c = Comparison {
        added: Set::new(),
        modified: Set::new(),
        removed: Set::new(),
    };
    for (p, v) in &b {
        match a.get(p) {
            None => {
                c.added.insert(p.clone());
            }
            Some(old_v) if old_v != v && (old_v.is_some() || v.is_some()) => {
                c.modified.insert(p.clone());
            }
            _ => {}
        }
    }
    for p in a.keys() {
        if !b.contains_key(p) {
            c.removed.insert(p.clone());
        }
    }
    for set in [&mut c.added, &mut c.modified, &mut c.removed] {
        strip_meta(set);
        // Server-maintained metadata is nobody's.
        set.retain(|p| {
            !matches!(p.as_slice(), [Pe::Field(m), Pe::Field(f), ..] if m == "metadata"
                && matches!(f.as_str(), "deletionTimestamp" | "deletionGracePeriodSeconds"))
        });
    }
    c
}

fn without_managed(obj: &Value) -> Value {
    let mut v = obj.clone();
    if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("managedFields");
    }
    v
}

/// One decoded `managedFields` entry.
#[derive(Debug, Clone)]
struct Entry {
    manager: String,
    operation: String,
    api_version: String,
    subresource: Option<String>,
    time: String,
    set: Set,
}

impl Entry {
    fn same_manager(
        &self,
        manager: &str,
        operation: &str,
        api_version: &str,
        sub: Option<&str>,
    ) -> bool {
        self.manager == manager
            && self.operation == operation
            && self.subresource.as_deref() == sub
            && (operation == "Apply" || self.api_version == api_version)
    }
    /// How a conflict names this manager (`printManager`).
    fn printed(&self) -> String {
        if self.operation == "Update" {
            format!(
                "{:?} using {} at {}",
                self.manager, self.api_version, self.time
            )
        } else {
            format!("{:?}", self.manager)
        }
    }
    fn encode(&self) -> Value {
        let mut e = json!({
            "manager": self.manager,
            "operation": self.operation,
            "apiVersion": self.api_version,
            "time": self.time,
            "fieldsType": "FieldsV1",
            "fieldsV1": to_fields_v1(&self.set),
        });
        if let Some(s) = &self.subresource {
            e["subresource"] = s.clone().into();
        }
        e
    }
}

fn decode(obj: &Value) -> Vec<Entry> {
    obj.get("metadata")
        .and_then(|m| m.get("managedFields"))
        .and_then(Value::as_array)
        .map(|entries| {
            entries
                .iter()
                .map(|e| Entry {
                    manager: e["manager"].as_str().unwrap_or_default().to_string(),
                    operation: e["operation"].as_str().unwrap_or_default().to_string(),
                    api_version: e["apiVersion"].as_str().unwrap_or_default().to_string(),
                    subresource: e["subresource"].as_str().map(str::to_string),
                    time: e["time"].as_str().unwrap_or_default().to_string(),
                    set: from_fields_v1(&e["fieldsV1"]),
                })
                .collect()
        })
        .unwrap_or_default()
}

fn store(obj: &mut Value, entries: &[Entry]) {
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        if entries.is_empty() {
            meta.remove("managedFields");
        } else {
            meta.insert(
                "managedFields".into(),
                Value::Array(entries.iter().map(Entry::encode).collect()),
            );
        }
    }
}

fn sub_name(sub: Sub) -> Option<&'static str> {
    match sub {
        Sub::Status => Some("status"),
        Sub::Main => None,
    }
}

/// Keep only the paths a write to `sub` can change (the reset fields of the strategies).
fn filter_for(set: &mut Set, sub: Sub, status_subresource: bool) {
    let under_status = |p: &Path| matches!(p.first(), Some(Pe::Field(f)) if f == "status");
    match sub {
        Sub::Main if status_subresource => set.retain(|p| !under_status(p)),
        Sub::Main => {}
        Sub::Status => set.retain(under_status),
    }
}

/// Whether `set` has `p` or a path under it.
fn owns_within(set: &Set, p: &Path) -> bool {
    set.range(p.clone()..)
        .next()
        .is_some_and(|q| q.starts_with(p))
}

fn remove_path(obj: &mut Value, path: &Path) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut cur = obj;
    for pe in parents {
        let next = match (pe, cur) {
            (Pe::Field(f), Value::Object(m)) => m.get_mut(f),
            (Pe::Key(k), Value::Array(items)) => {
                let key: Value = serde_json::from_str(k).unwrap_or(Value::Null);
                items.iter_mut().find(|it| key_matches(&key, it))
            }
            _ => None,
        };
        match next {
            Some(n) => cur = n,
            None => return,
        }
    }
    match (last, cur) {
        (Pe::Field(f), Value::Object(m)) => {
            m.remove(f);
        }
        (Pe::Key(k), Value::Array(items)) => {
            let key: Value = serde_json::from_str(k).unwrap_or(Value::Null);
            items.retain(|it| !key_matches(&key, it));
        }
        (Pe::Value(v), Value::Array(items)) => {
            let value: Value = serde_json::from_str(v).unwrap_or(Value::Null);
            items.retain(|it| *it != value);
        }
        _ => {}
    }
}

fn key_matches(key: &Value, item: &Value) -> bool {
    key.as_object()
        .is_some_and(|k| k.iter().all(|(name, v)| item.get(name) == Some(v)))
}

/// A 409 as `internal.NewConflictError` words it.
pub struct Conflicts {
    pub message: String,
    pub causes: Vec<Value>,
}

fn conflict_error(conflicts: &[(Entry, Path)]) -> Conflicts {
    let causes = conflicts
        .iter()
        .map(|(e, p)| {
            json!({"type": "FieldManagerConflict", "message": format!("conflict with {}", e.printed()), "field": path_string(p)})
        })
        .collect();
    let message = if conflicts.len() == 1 {
        let (e, p) = &conflicts[0];
        format!(
            "Apply failed with 1 conflict: conflict with {}: {}",
            e.printed(),
            path_string(p)
        )
    } else {
        let mut by_manager: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (e, p) in conflicts {
            by_manager
                .entry(e.printed())
                .or_default()
                .push(path_string(p));
        }
        let mut lines = Vec::new();
        for (m, paths) in by_manager {
            lines.push(format!("conflicts with {m}:"));
            for p in paths {
                lines.push(format!("- {p}"));
            }
        }
        format!(
            "Apply failed with {} conflicts: {}",
            conflicts.len(),
            lines.join("\n")
        )
    };
    Conflicts { message, causes }
}

/// Drop what `compare` removed from every entry, and what `taken` took from the others.
fn settle(entries: &mut [Entry], me: usize, cmp: &Comparison, taken: &Set) {
    for (i, e) in entries.iter_mut().enumerate() {
        e.set.retain(|p| !cmp.removed.contains(p));
        if i != me {
            e.set.retain(|p| !taken.contains(p));
        }
    }
}

/// The outcome of a server-side apply: the object to write, with its `managedFields`.
pub struct Applied {
    pub object: Value,
}

/// Server-side apply of `config` (already merged into `live` as `merged`) by `manager`.
/// `finish` applies the write strategy (what a write to `sub` may change) to an object.
#[allow(clippy::too_many_arguments)]
pub fn apply(
    schema: Option<&Value>,
    status_subresource: bool,
    api_version: &str,
    live: &Value,
    merged: Value,
    config: &Value,
    manager: &str,
    sub: Sub,
    force: bool,
    finish: impl Fn(Value) -> Value,
) -> Result<Applied, Conflicts> {
    let mut entries = decode(live);
    let subname = sub_name(sub);
    let mut set = field_set(schema, config).unwrap_or_default();
    filter_for(&mut set, sub, status_subresource);
    let me = match entries
        .iter()
        .position(|e| e.same_manager(manager, "Apply", api_version, subname))
    {
        Some(i) => i,
        None => {
            entries.push(Entry {
                manager: manager.to_string(),
                operation: "Apply".into(),
                api_version: api_version.to_string(),
                subresource: subname.map(str::to_string),
                time: now(),
                set: Set::new(),
            });
            entries.len() - 1
        }
    };
    let last = std::mem::replace(&mut entries[me].set, set.clone());
    // Prune what this manager stopped applying and nobody else owns.
    let mut object = merged;
    for p in last.difference(&set) {
        let kept = owns_within(&set, p)
            || entries
                .iter()
                .enumerate()
                .any(|(i, e)| i != me && owns_within(&e.set, p));
        if !kept {
            remove_path(&mut object, p);
        }
    }
    let object = finish(object);
    let cmp = compare(schema, live, &object);
    let changed: Set = cmp.added.union(&cmp.modified).cloned().collect();
    let mut conflicts = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        if i == me {
            continue;
        }
        for p in e.set.intersection(&changed) {
            conflicts.push((e.clone(), p.clone()));
        }
    }
    if !conflicts.is_empty() && !force {
        return Err(conflict_error(&conflicts));
    }
    settle(&mut entries, me, &cmp, &changed);
    entries[me].time = now();
    entries[me].api_version = api_version.to_string();
    entries.retain(|e| !e.set.is_empty());
    let mut object = object;
    store(&mut object, &entries);
    Ok(Applied { object })
}

/// A non-apply write (create, PUT, merge or JSON patch) by `manager`: it takes every field
/// it changed. `old` is `None` on create.
pub fn update(
    schema: Option<&Value>,
    api_version: &str,
    old: Option<&Value>,
    new: &mut Value,
    manager: Option<&str>,
    sub: Sub,
) {
    let empty = json!({});
    let base = old.unwrap_or(&empty);
    let mut entries = decode(base);
    let cmp = compare(schema, base, new);
    let changed: Set = cmp.added.union(&cmp.modified).cloned().collect();
    let me = match manager {
        Some(m) => {
            let subname = sub_name(sub);
            match entries
                .iter()
                .position(|e| e.same_manager(m, "Update", api_version, subname))
            {
                Some(i) => i,
                None => {
                    entries.push(Entry {
                        manager: m.to_string(),
                        operation: "Update".into(),
                        api_version: api_version.to_string(),
                        subresource: subname.map(str::to_string),
                        time: now(),
                        set: Set::new(),
                    });
                    entries.len() - 1
                }
            }
        }
        None => usize::MAX,
    };
    settle(&mut entries, me, &cmp, &changed);
    if let Some(e) = entries.get_mut(me) {
        if !changed.is_empty() {
            e.time = now();
        }
        e.set.extend(changed);
    }
    entries.retain(|e| !e.set.is_empty());
    store(new, &entries);
}

/// The paths a manager owns (for tests and assertions).
pub fn owned(obj: &Value, manager: &str, operation: &str) -> Vec<String> {
    decode(obj)
        .into_iter()
        .filter(|e| e.manager == manager && e.operation == operation)
        .flat_map(|e| e.set.into_iter().map(|p| path_string(&p)))
        .collect()
}
