//! The emulator's state: registered resources, objects, the cluster-wide resourceVersion,
//! the watch history, and every write path (create, update, patch, delete) with the
//! apiserver's object semantics.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use serde_json::{Map, Value, json};

use super::apply;
use super::crd_validation;
use super::managed_fields;
use super::schema;

/// An error answered as a `Status` object.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Option<Value>,
    /// `metadata.continue` of the Status (an expired list's inconsistent continue token).
    pub list_continue: Option<String>,
}

impl ApiError {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            reason,
            message: message.into(),
            details: None,
            list_continue: None,
        }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }
    pub fn not_found(rd: &ResourceDef, name: &str) -> Self {
        let mut e = Self::new(
            404,
            "NotFound",
            format!("{} \"{name}\" not found", rd.qualified()),
        );
        e.details = Some(json!({"name": name, "group": rd.group, "kind": rd.plural}));
        e
    }
    pub fn conflict(rd: &ResourceDef, name: &str, why: &str) -> Self {
        let mut e = Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": {why}",
                rd.qualified()
            ),
        );
        e.details = Some(json!({"name": name, "group": rd.group, "kind": rd.plural}));
        e
    }
    /// A 422 Invalid with causes, worded like kube-apiserver's.
    pub fn invalid(rd: &ResourceDef, name: &str, errors: &[schema::FieldError]) -> Self {
        let rendered: Vec<String> = errors
            .iter()
            .map(|e| {
                if e.field.is_empty() {
                    e.detail.clone()
                } else {
                    format!("{}: {}", e.field, e.detail)
                }
            })
            .collect();
        let joined = if rendered.len() == 1 {
            rendered[0].clone()
        } else {
            format!("[{}]", rendered.join(", "))
        };
        let gk = if rd.group.is_empty() {
            rd.kind.clone()
        } else {
            format!("{}.{}", rd.kind, rd.group)
        };
        let causes: Vec<Value> = errors
            .iter()
            .map(|e| json!({"reason": e.reason, "message": e.detail, "field": e.field}))
            .collect();
        let mut e = Self::new(
            422,
            "Invalid",
            format!("{gk} \"{name}\" is invalid: {joined}"),
        );
        e.details =
            Some(json!({"name": name, "group": rd.group, "kind": rd.kind, "causes": causes}));
        e
    }
    pub fn status(&self) -> Value {
        let mut s = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(d) = &self.details {
            s["details"] = d.clone();
        }
        if let Some(c) = &self.list_continue {
            s["metadata"]["continue"] = c.clone().into();
        }
        s
    }
}

/// A printer column of a CRD version.
#[derive(Debug, Clone)]
pub struct Column {
    pub name: String,
    pub type_: String,
    pub json_path: String,
    pub priority: i64,
    pub description: String,
    pub format: String,
}

/// One served resource (built-in or from a CRD).
#[derive(Debug, Clone)]
pub struct ResourceDef {
    pub group: String,
    pub version: String,
    pub plural: String,
    pub singular: String,
    pub kind: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    pub status_subresource: bool,
    /// The version's `openAPIV3Schema`; built-ins have none and are not validated.
    pub schema: Option<Value>,
    pub columns: Vec<Column>,
    /// Custom resources (and CRDs) get `metadata.generation`.
    pub has_generation: bool,
    /// Custom resources refuse strategic merge patches.
    pub custom: bool,
    /// Selectable fields beyond metadata.name/namespace (events: any field path).
    pub any_field_selector: bool,
}

impl ResourceDef {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
    /// `organizations.litellm.dev` as in error messages.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }
    pub fn key(&self) -> StoreKey {
        if self.is_core_events() {
            // One storage for Events, served as core/v1 and events.k8s.io/v1, as in kube-apiserver.
            return ("events.k8s.io".into(), "events".into());
        }
        (self.group.clone(), self.plural.clone())
    }
    pub fn is_core_events(&self) -> bool {
        self.group.is_empty() && self.plural == "events"
    }
}

/// Objects are stored per group and plural: one storage version, no conversion.
pub type StoreKey = (String, String);

/// One recorded change, kept in the watch history and broadcast to open watches.
#[derive(Debug)]
pub struct Change {
    pub rv: u64,
    pub key: StoreKey,
    pub namespace: String,
    pub event_type: &'static str,
    pub object: Value,
    /// The object before this change (for selector transitions).
    pub prev: Option<Value>,
}

/// Which part of an object a write addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Sub {
    Main,
    Status,
}

/// Options common to writes.
#[derive(Debug, Clone, Default)]
pub struct WriteOpts {
    pub dry_run: bool,
    pub field_manager: Option<String>,
    pub force: bool,
    /// `Strict`, `Warn` (the default) or `Ignore`.
    pub field_validation: String,
    /// The request's User-Agent: names the manager of a non-apply write without `fieldManager`.
    pub user_agent: Option<String>,
    /// Set on the write of a server-side apply (its `managedFields` are already computed).
    pub applying: bool,
}

impl WriteOpts {
    /// The manager of a non-apply write: `fieldManager`, else the User-Agent up to its first
    /// `/` (kube-apiserver's default).
    pub fn update_manager(&self) -> Option<String> {
        self.field_manager
            .clone()
            .filter(|m| !m.is_empty())
            .or_else(|| {
                self.user_agent
                    .as_deref()
                    .map(|ua| {
                        ua.split('/')
                            .next()
                            .unwrap_or(ua)
                            .chars()
                            .take(128)
                            .collect()
                    })
                    .filter(|m: &String| !m.is_empty())
            })
    }
    fn for_apply(&self) -> Self {
        WriteOpts {
            applying: true,
            ..self.clone()
        }
    }
}

/// The result of a write: the object and any warnings for `Warning` headers.
pub struct Written {
    pub object: Value,
    pub warnings: Vec<String>,
    pub created: bool,
}

/// A patch body with its content type.
pub enum PatchKind {
    Merge,
    Json,
    Strategic,
    Apply,
}

pub struct State {
    pub rv: u64,
    pub resources: Vec<Arc<ResourceDef>>,
    pub objects: HashMap<StoreKey, BTreeMap<(String, String), Value>>,
    pub history: VecDeque<Arc<Change>>,
    pub history_limit: usize,
    /// The highest resourceVersion dropped from the history; older watches get 410.
    pub compacted_rv: u64,
    /// Last applied configuration per (uid, field manager, subresource), for server-side apply.
    pub applied: HashMap<(String, String, Sub), Value>,
    pub events: tokio::sync::broadcast::Sender<Arc<Change>>,
}

pub fn now() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    obj.get("metadata")?.get(field)?.as_str()
}

fn finalizers(obj: &Value) -> Vec<String> {
    obj.get("metadata")
        .and_then(|m| m.get("finalizers"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn meta_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = json!({});
    }
    match obj.get_mut("metadata").and_then(Value::as_object_mut) {
        Some(m) => m,
        None => unreachable!("metadata was just made an object"),
    }
}

/// The parts of an object whose change bumps `metadata.generation`.
fn spec_part(obj: &Value) -> Value {
    let mut v = obj.clone();
    if let Some(m) = v.as_object_mut() {
        m.remove("metadata");
        m.remove("status");
        m.remove("apiVersion");
        m.remove("kind");
    }
    v
}

fn without_volatile(obj: &Value) -> Value {
    let mut v = obj.clone();
    if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        // A write that only moves managedFields timestamps is a no-op (kube-apiserver's
        // IgnoreManagedFieldsTimestampsTransformer); one that changes ownership is not.
        if let Some(entries) = m.get_mut("managedFields").and_then(Value::as_array_mut) {
            for e in entries.iter_mut().filter_map(Value::as_object_mut) {
                e.remove("time");
            }
        }
        m.remove("resourceVersion");
    }
    v
}

impl State {
    pub fn new(history_limit: usize) -> Self {
        let (events, _) = tokio::sync::broadcast::channel(4096);
        State {
            rv: 1,
            resources: Vec::new(),
            objects: HashMap::new(),
            history: VecDeque::new(),
            history_limit: history_limit.max(1),
            compacted_rv: 0,
            applied: HashMap::new(),
            events,
        }
    }

    pub fn find(&self, group: &str, version: &str, plural: &str) -> Option<Arc<ResourceDef>> {
        self.resources
            .iter()
            .find(|r| r.group == group && r.version == version && r.plural == plural)
            .cloned()
    }

    pub fn register(&mut self, rd: ResourceDef) {
        self.resources
            .retain(|r| !(r.group == rd.group && r.version == rd.version && r.plural == rd.plural));
        self.resources.push(Arc::new(rd));
    }

    pub(super) fn record(
        &mut self,
        rd: &ResourceDef,
        ns: &str,
        event_type: &'static str,
        object: Value,
        prev: Option<Value>,
    ) {
        let change = Arc::new(Change {
            rv: self.rv,
            key: rd.key(),
            namespace: ns.to_string(),
            event_type,
            object,
            prev,
        });
        self.history.push_back(change.clone());
        while self.history.len() > self.history_limit {
            if let Some(old) = self.history.pop_front() {
                self.compacted_rv = old.rv;
            }
        }
        let _ = self.events.send(change);
    }

    /// Drop the whole watch history: every watch from an earlier resourceVersion gets 410.
    pub fn compact(&mut self) {
        self.compacted_rv = self.rv;
        self.history.clear();
    }

    pub fn get(&self, rd: &ResourceDef, ns: &str, name: &str) -> Result<Value, ApiError> {
        self.objects
            .get(&rd.key())
            .and_then(|m| m.get(&(ns.to_string(), name.to_string())))
            .map(|o| with_api_version(o, rd))
            .ok_or_else(|| ApiError::not_found(rd, name))
    }

    /// Objects of a resource in one namespace (`Some`) or all (`None`), sorted by namespace and name.
    pub fn list(&self, rd: &ResourceDef, ns: Option<&str>) -> Vec<Value> {
        self.objects
            .get(&rd.key())
            .map(|m| {
                m.iter()
                    .filter(|((n, _), _)| ns.is_none_or(|want| want == n))
                    .map(|(_, o)| with_api_version(o, rd))
                    .collect()
            })
            .unwrap_or_default()
    }

    pub(super) fn namespace_check(&self, rd: &ResourceDef, ns: &str) -> Result<(), ApiError> {
        if !rd.namespaced {
            return Ok(());
        }
        let key = (String::new(), "namespaces".to_string());
        match self
            .objects
            .get(&key)
            .and_then(|m| m.get(&(String::new(), ns.to_string())))
        {
            None => {
                let mut e =
                    ApiError::new(404, "NotFound", format!("namespaces \"{ns}\" not found"));
                e.details = Some(json!({"name": ns, "kind": "namespaces"}));
                Err(e)
            }
            Some(n) if n["metadata"].get("deletionTimestamp").is_some() => Err(ApiError::new(
                403,
                "Forbidden",
                format!(
                    "{} \"{}\" is forbidden: unable to create new content in namespace {ns} because it is being terminated",
                    rd.qualified(),
                    ""
                ),
            )),
            Some(_) => Ok(()),
        }
    }

    pub fn create(
        &mut self,
        rd: &ResourceDef,
        ns: &str,
        mut body: Value,
        opts: &WriteOpts,
    ) -> Result<Written, ApiError> {
        if !body.is_object() {
            return Err(ApiError::bad_request(
                "the request body must be a JSON object",
            ));
        }
        check_type_meta(rd, &body)?;
        let meta = meta_mut(&mut body);
        if let Some(body_ns) = meta.get("namespace").and_then(Value::as_str)
            && rd.namespaced
            && !body_ns.is_empty()
            && body_ns != ns
        {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        let name = match meta.get("name").and_then(Value::as_str) {
            Some(n) if !n.is_empty() => n.to_string(),
            _ => match meta.get("generateName").and_then(Value::as_str) {
                Some(prefix) if !prefix.is_empty() => {
                    let suffix: String = uuid::Uuid::new_v4().simple().to_string()[..5].to_string();
                    format!("{prefix}{suffix}")
                }
                _ => {
                    return Err(ApiError::invalid(
                        rd,
                        "",
                        &[schema::FieldError {
                            reason: "FieldValueRequired",
                            field: "metadata.name".into(),
                            detail: "Required value: name or generateName is required".into(),
                        }],
                    ));
                }
            },
        };
        self.namespace_check(rd, ns)?;
        if self
            .objects
            .get(&rd.key())
            .is_some_and(|m| m.contains_key(&(ns.to_string(), name.clone())))
        {
            let mut e = ApiError::new(
                409,
                "AlreadyExists",
                format!("{} \"{name}\" already exists", rd.qualified()),
            );
            e.details = Some(json!({"name": name, "group": rd.group, "kind": rd.plural}));
            return Err(e);
        }
        if let Some(v) = meta.get("resourceVersion").and_then(Value::as_str)
            && !v.is_empty()
        {
            return Err(ApiError::bad_request(
                "resourceVersion should not be set on objects to be created",
            ));
        }
        meta.insert("name".into(), name.clone().into());
        if rd.namespaced {
            meta.insert("namespace".into(), ns.into());
        } else {
            meta.remove("namespace");
        }
        for system in [
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
        ] {
            meta.remove(system);
        }
        meta.insert("uid".into(), uuid::Uuid::new_v4().to_string().into());
        meta.insert("creationTimestamp".into(), now().into());
        if rd.has_generation {
            meta.insert("generation".into(), 1.into());
        }
        if rd.status_subresource
            && let Some(m) = body.as_object_mut()
        {
            // Create cannot set status when the status subresource is enabled.
            m.remove("status");
        }
        if rd.plural == "namespaces" {
            body["status"] = json!({"phase": "Active"});
            body["spec"] = json!({"finalizers": ["kubernetes"]});
            let labels = meta_mut(&mut body)
                .entry("labels")
                .or_insert_with(|| json!({}));
            if let Some(l) = labels.as_object_mut() {
                l.insert("kubernetes.io/metadata.name".into(), name.clone().into());
            }
        }
        if rd.plural == "customresourcedefinitions" {
            crd_resources(&body)?;
            let errors = crd_validation::validate(&body);
            if !errors.is_empty() {
                return Err(ApiError::invalid(rd, &name, &errors));
            }
            set_crd_status(&mut body);
        }
        let warnings = self.admit(rd, &name, &mut body, None, opts)?;
        if !opts.applying {
            let manager = opts.update_manager();
            let av = rd.api_version();
            managed_fields::update(
                rd.schema.as_ref(),
                &av,
                None,
                &mut body,
                manager.as_deref(),
                Sub::Main,
            );
        }
        if opts.dry_run {
            return Ok(Written {
                object: body,
                warnings,
                created: true,
            });
        }
        self.rv += 1;
        meta_mut(&mut body).insert("resourceVersion".into(), self.rv.to_string().into());
        self.objects
            .entry(rd.key())
            .or_default()
            .insert((ns.to_string(), name), to_storage(rd, &body));
        self.record(rd, ns, "ADDED", body.clone(), None);
        Ok(Written {
            object: with_api_version(&body, rd),
            warnings,
            created: true,
        })
    }

    /// Prune, default and validate (schema, then CEL); returns warnings.
    fn admit(
        &self,
        rd: &ResourceDef,
        name: &str,
        obj: &mut Value,
        old: Option<&Value>,
        opts: &WriteOpts,
    ) -> Result<Vec<String>, ApiError> {
        let mut warnings = super::meta::admit(rd, name, obj, old, opts)?;
        let Some(schema_root) = &rd.schema else {
            return Ok(warnings);
        };
        let admission = schema::admit_update(schema_root, obj, old);
        if !admission.pruned.is_empty() {
            match opts.field_validation.as_str() {
                "Strict" => {
                    let list: Vec<String> = admission
                        .pruned
                        .iter()
                        .map(|p| format!("unknown field \"{}\"", p.trim_start_matches('.')))
                        .collect();
                    return Err(ApiError::bad_request(format!(
                        "{} in version \"{}\" cannot be handled as a {}: strict decoding error: {}",
                        rd.kind,
                        rd.version,
                        rd.kind,
                        list.join(", ")
                    )));
                }
                "Ignore" => {}
                _ => warnings.extend(
                    admission
                        .pruned
                        .iter()
                        .map(|p| format!("unknown field \"{}\"", p.trim_start_matches('.'))),
                ),
            }
        }
        if !admission.errors.is_empty() {
            return Err(ApiError::invalid(rd, name, &admission.errors));
        }
        let cel = schema::cel_errors(schema_root, obj, old);
        if !cel.is_empty() {
            return Err(ApiError::invalid(rd, name, &cel));
        }
        Ok(warnings)
    }

    fn current(&self, rd: &ResourceDef, ns: &str, name: &str) -> Result<Value, ApiError> {
        self.objects
            .get(&rd.key())
            .and_then(|m| m.get(&(ns.to_string(), name.to_string())))
            .map(|o| with_api_version(o, rd))
            .ok_or_else(|| ApiError::not_found(rd, name))
    }

    /// PUT: replace the object (or its status), with optimistic concurrency.
    pub fn update(
        &mut self,
        rd: &ResourceDef,
        ns: &str,
        name: &str,
        sub: Sub,
        body: Value,
        opts: &WriteOpts,
    ) -> Result<Written, ApiError> {
        if !body.is_object() {
            return Err(ApiError::bad_request(
                "the request body must be a JSON object",
            ));
        }
        check_type_meta(rd, &body)?;
        if meta_str(&body, "name").is_some_and(|n| n != name) {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({}) does not match the name on the URL ({name})",
                meta_str(&body, "name").unwrap_or_default()
            )));
        }
        let old = match self.current(rd, ns, name) {
            Ok(o) => o,
            Err(e) => {
                // PUT to a missing custom resource is not a create (AllowCreateOnUpdate is false).
                return Err(e);
            }
        };
        match meta_str(&body, "resourceVersion") {
            None | Some("") if rd.custom => {
                return Err(ApiError::invalid(
                    rd,
                    name,
                    &[schema::FieldError {
                        reason: "FieldValueInvalid",
                        field: "metadata.resourceVersion".into(),
                        detail: "Invalid value: 0x0: must be specified for an update".into(),
                    }],
                ));
            }
            _ => {}
        }
        self.commit(rd, ns, name, &old, body, sub, opts)
    }

    #[allow(clippy::too_many_arguments)]
    pub fn patch(
        &mut self,
        rd: &ResourceDef,
        ns: &str,
        name: &str,
        sub: Sub,
        kind: PatchKind,
        body: &[u8],
        opts: &WriteOpts,
    ) -> Result<Written, ApiError> {
        let existing = self.current(rd, ns, name);
        let old = match (&kind, existing) {
            (_, Ok(o)) => o,
            (PatchKind::Apply, Err(_)) if sub == Sub::Main => {
                // Server-side apply creates a missing object.
                let obj = apply::server_side_apply(rd, None, name, body, opts, sub)?;
                return self.create(rd, ns, obj, &opts.for_apply());
            }
            (_, Err(e)) => return Err(e),
        };
        let patched = match kind {
            PatchKind::Strategic if rd.custom => {
                return Err(ApiError::new(
                    415,
                    "UnsupportedMediaType",
                    "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml",
                ));
            }
            PatchKind::Merge | PatchKind::Strategic => {
                let patch: Value = serde_json::from_slice(body)
                    .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
                if !patch.is_object() {
                    return Err(ApiError::bad_request("a merge patch must be a JSON object"));
                }
                let mut target = old.clone();
                json_patch::merge(&mut target, &patch);
                target
            }
            PatchKind::Json => {
                let ops: Vec<Value> = serde_json::from_slice(body)
                    .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
                // kube-apiserver's JSON patch treats a missing path as null in a `test`
                // (kube-runtime's finalizer helper tests `/metadata/finalizers` against null
                // on an object without finalizers); the json-patch crate calls it invalid.
                let ops: Vec<Value> = ops
                    .into_iter()
                    .filter(|op| {
                        let is_null_test = op.get("op").and_then(Value::as_str) == Some("test")
                            && op.get("value").is_some_and(Value::is_null);
                        let path = op.get("path").and_then(Value::as_str).unwrap_or("");
                        !(is_null_test && old.pointer(path).is_none_or(Value::is_null))
                    })
                    .collect();
                let patch: json_patch::Patch = serde_json::from_value(Value::Array(ops))
                    .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
                let mut target = old.clone();
                json_patch::patch(&mut target, &patch).map_err(|e| {
                    ApiError::invalid(
                        rd,
                        name,
                        &[schema::FieldError {
                            reason: "FieldValueInvalid",
                            field: "".into(),
                            detail: format!("the JSON patch could not be applied: {e}"),
                        }],
                    )
                })?;
                target
            }
            PatchKind::Apply => {
                let merged = apply::server_side_apply(rd, Some(&old), name, body, opts, sub)?;
                return self.commit(rd, ns, name, &old, merged, sub, &opts.for_apply());
            }
        };
        self.commit(rd, ns, name, &old, patched, sub, opts)
    }

    /// The shared tail of update and patch: strategies, metadata rules, admission,
    /// generation, no-op detection, finalizer completion, storage and the watch event.
    #[allow(clippy::too_many_arguments)]
    fn commit(
        &mut self,
        rd: &ResourceDef,
        ns: &str,
        name: &str,
        old: &Value,
        mut new: Value,
        sub: Sub,
        opts: &WriteOpts,
    ) -> Result<Written, ApiError> {
        if !new.is_object() {
            return Err(ApiError::bad_request(
                "the patched object is not a JSON object",
            ));
        }
        let old_rv = meta_str(old, "resourceVersion")
            .unwrap_or_default()
            .to_string();
        if let Some(v) = meta_str(&new, "resourceVersion")
            && !v.is_empty()
            && v != old_rv
        {
            return Err(ApiError::conflict(
                rd,
                name,
                "the object has been modified; please apply your changes to the latest version and try again",
            ));
        }
        if let Some(n) = meta_str(&new, "name")
            && n != name
        {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({n}) does not match the name on the URL ({name})"
            )));
        }
        // Strategies: the main resource cannot change status, /status only changes status.
        if rd.status_subresource || rd.plural == "namespaces" {
            match sub {
                Sub::Main => {
                    if let Some(m) = new.as_object_mut() {
                        match old.get("status") {
                            Some(s) => {
                                m.insert("status".into(), s.clone());
                            }
                            None => {
                                m.remove("status");
                            }
                        }
                    }
                }
                Sub::Status => {
                    let managed = new["metadata"].get("managedFields").cloned();
                    let status = new.get("status").cloned();
                    new = old.clone();
                    if let Some(m) = new.as_object_mut() {
                        match status {
                            Some(s) => m.insert("status".into(), s),
                            None => m.remove("status"),
                        };
                    }
                    if let Some(mf) = managed {
                        meta_mut(&mut new).insert("managedFields".into(), mf);
                    }
                }
            }
        }
        if let Some(m) = new.as_object_mut() {
            m.insert(
                "apiVersion".into(),
                old.get("apiVersion")
                    .cloned()
                    .unwrap_or_else(|| rd.api_version().into()),
            );
            m.insert("kind".into(), rd.kind.clone().into());
        }
        // System metadata cannot be changed by a client.
        let old_meta = old.get("metadata").cloned().unwrap_or_else(|| json!({}));
        let meta = meta_mut(&mut new);
        for system in [
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
            "namespace",
            "name",
        ] {
            match old_meta.get(system) {
                Some(v) => meta.insert(system.into(), v.clone()),
                None => meta.remove(system),
            };
        }
        if old_meta.get("managedFields").is_some() && !meta.contains_key("managedFields") {
            meta.insert("managedFields".into(), old_meta["managedFields"].clone());
        }
        meta.insert("resourceVersion".into(), old_rv.clone().into());
        let terminating = old_meta.get("deletionTimestamp").is_some();
        if terminating {
            let before = finalizers(old);
            let added: Vec<String> = finalizers(&new)
                .into_iter()
                .filter(|f| !before.contains(f))
                .collect();
            if !added.is_empty() {
                return Err(ApiError::invalid(
                    rd,
                    name,
                    &[schema::FieldError {
                        reason: "FieldValueForbidden",
                        field: "metadata.finalizers".into(),
                        detail: format!(
                            "Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers {added:?}"
                        ),
                    }],
                ));
            }
        }
        let warnings = self.admit(rd, name, &mut new, Some(old), opts)?;
        if !opts.applying {
            let manager = opts.update_manager();
            let av = rd.api_version();
            managed_fields::update(
                rd.schema.as_ref(),
                &av,
                Some(old),
                &mut new,
                manager.as_deref(),
                sub,
            );
        }
        if rd.has_generation && spec_part(&new) != spec_part(old) {
            let generation = old_meta
                .get("generation")
                .and_then(Value::as_i64)
                .unwrap_or(0)
                + 1;
            meta_mut(&mut new).insert("generation".into(), generation.into());
        }
        if without_volatile(&new) == without_volatile(old) {
            // A no-op write: no new resourceVersion, no watch event.
            return Ok(Written {
                object: with_api_version(old, rd),
                warnings,
                created: false,
            });
        }
        if opts.dry_run {
            return Ok(Written {
                object: with_api_version(&new, rd),
                warnings,
                created: false,
            });
        }
        if rd.plural == "customresourcedefinitions" {
            let errors = crd_validation::validate(&new);
            if !errors.is_empty() {
                return Err(ApiError::invalid(rd, name, &errors));
            }
            set_crd_status(&mut new);
        }
        self.rv += 1;
        meta_mut(&mut new).insert("resourceVersion".into(), self.rv.to_string().into());
        if terminating && finalizers(&new).is_empty() {
            self.remove(rd, ns, name, new.clone(), old.clone());
        } else {
            self.objects
                .entry(rd.key())
                .or_default()
                .insert((ns.to_string(), name.to_string()), to_storage(rd, &new));
            self.record(rd, ns, "MODIFIED", new.clone(), Some(old.clone()));
        }
        Ok(Written {
            object: with_api_version(&new, rd),
            warnings,
            created: false,
        })
    }

    /// Remove a stored object for good (its resourceVersion already set) and emit DELETED.
    fn remove(&mut self, rd: &ResourceDef, ns: &str, name: &str, last: Value, prev: Value) {
        if let Some(m) = self.objects.get_mut(&rd.key()) {
            m.remove(&(ns.to_string(), name.to_string()));
        }
        if let Some(uid) = meta_str(&last, "uid") {
            let uid = uid.to_string();
            self.applied.retain(|(u, _, _), _| *u != uid);
        }
        self.record(rd, ns, "DELETED", last, Some(prev));
        if rd.namespaced {
            self.finish_namespace_if_empty(ns);
        }
    }

    fn namespace_def(&self) -> Option<Arc<ResourceDef>> {
        self.find("", "v1", "namespaces")
    }

    fn finish_namespace_if_empty(&mut self, ns: &str) {
        let key = (String::new(), "namespaces".to_string());
        let Some(nsobj) = self
            .objects
            .get(&key)
            .and_then(|m| m.get(&(String::new(), ns.to_string())))
            .cloned()
        else {
            return;
        };
        if nsobj["metadata"].get("deletionTimestamp").is_none() {
            return;
        }
        let empty = self
            .objects
            .iter()
            .filter(|(k, _)| **k != key)
            .all(|(_, m)| !m.keys().any(|(n, _)| n == ns));
        if empty && let Some(rd) = self.namespace_def() {
            self.rv += 1;
            let mut last = nsobj.clone();
            meta_mut(&mut last).insert("resourceVersion".into(), self.rv.to_string().into());
            self.remove(&rd, "", ns, last, nsobj);
        }
    }

    /// DELETE: with finalizers only mark the object terminating; else remove it.
    pub fn delete(
        &mut self,
        rd: &ResourceDef,
        ns: &str,
        name: &str,
        options: &Value,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        let old = self.current(rd, ns, name)?;
        if let Some(pre) = options.get("preconditions") {
            if let Some(uid) = pre.get("uid").and_then(Value::as_str)
                && Some(uid) != meta_str(&old, "uid")
            {
                return Err(ApiError::conflict(
                    rd,
                    name,
                    &format!(
                        "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                        meta_str(&old, "uid").unwrap_or_default()
                    ),
                ));
            }
            if let Some(rv) = pre.get("resourceVersion").and_then(Value::as_str)
                && Some(rv) != meta_str(&old, "resourceVersion")
            {
                return Err(ApiError::conflict(
                    rd,
                    name,
                    &format!(
                        "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                        meta_str(&old, "resourceVersion").unwrap_or_default()
                    ),
                ));
            }
        }
        let orphan = options.get("propagationPolicy").and_then(Value::as_str) == Some("Orphan");
        let _ = orphan; // No garbage collector: dependents are never deleted (documented).
        if dry_run {
            return Ok(with_api_version(&old, rd));
        }
        let is_namespace = rd.plural == "namespaces";
        if !finalizers(&old).is_empty() || is_namespace {
            if old["metadata"].get("deletionTimestamp").is_some() {
                return Ok(with_api_version(&old, rd));
            }
            let mut new = old.clone();
            let meta = meta_mut(&mut new);
            meta.insert("deletionTimestamp".into(), now().into());
            meta.insert("deletionGracePeriodSeconds".into(), 0.into());
            if let Some(g) = meta.get("generation").and_then(Value::as_i64) {
                meta.insert("generation".into(), (g + 1).into());
            }
            if is_namespace {
                new["status"] = json!({"phase": "Terminating"});
            }
            self.rv += 1;
            meta_mut(&mut new).insert("resourceVersion".into(), self.rv.to_string().into());
            self.objects
                .entry(rd.key())
                .or_default()
                .insert((ns.to_string(), name.to_string()), to_storage(rd, &new));
            self.record(rd, ns, "MODIFIED", new.clone(), Some(old));
            if is_namespace {
                self.delete_namespace_content(name);
                self.finish_namespace_if_empty(name);
                return Ok(with_api_version(
                    &self.current(rd, "", name).unwrap_or(new),
                    rd,
                ));
            }
            return Ok(with_api_version(&new, rd));
        }
        self.rv += 1;
        let mut last = old.clone();
        meta_mut(&mut last).insert("resourceVersion".into(), self.rv.to_string().into());
        self.remove(rd, ns, name, last.clone(), old);
        if rd.plural == "customresourcedefinitions" {
            self.unregister_crd(&last);
        }
        Ok(with_api_version(&last, rd))
    }

    /// The namespace controller's job, done at once: delete every object in the namespace.
    fn delete_namespace_content(&mut self, ns: &str) {
        let defs: Vec<Arc<ResourceDef>> = self
            .resources
            .iter()
            .filter(|r| r.namespaced)
            .cloned()
            .collect();
        let mut seen = std::collections::HashSet::new();
        for rd in defs {
            if !seen.insert(rd.key()) {
                continue;
            }
            let names: Vec<String> = self
                .objects
                .get(&rd.key())
                .map(|m| {
                    m.keys()
                        .filter(|(n, _)| n == ns)
                        .map(|(_, name)| name.clone())
                        .collect()
                })
                .unwrap_or_default();
            for name in names {
                let _ = self.delete(&rd, ns, &name, &Value::Null, false);
            }
        }
    }

    /// Register the served versions of a CRD object as resources.
    pub fn register_crd(&mut self, crd: &Value) -> Result<(), ApiError> {
        for rd in crd_resources(crd)? {
            self.register(rd);
        }
        Ok(())
    }

    fn unregister_crd(&mut self, crd: &Value) {
        if let Ok(defs) = crd_resources(crd) {
            for rd in defs {
                self.resources.retain(|r| {
                    !(r.group == rd.group && r.plural == rd.plural && !r.group.is_empty())
                });
                self.objects.remove(&rd.key());
            }
        }
    }
}

fn check_type_meta(rd: &ResourceDef, body: &Value) -> Result<(), ApiError> {
    if let Some(kind) = body.get("kind").and_then(Value::as_str)
        && !kind.is_empty()
        && kind != rd.kind
    {
        return Err(ApiError::bad_request(format!(
            "the kind of the object ({kind}) does not match the kind of the resource ({})",
            rd.kind
        )));
    }
    if let Some(av) = body.get("apiVersion").and_then(Value::as_str)
        && !av.is_empty()
        && av.rsplit_once('/').map(|(g, _)| g).unwrap_or("") != rd.group
    {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({av}) does not match the expected API version ({})",
            rd.api_version()
        )));
    }
    Ok(())
}

/// Objects are served with the apiVersion of the request's version (no conversion).
pub fn with_api_version(obj: &Value, rd: &ResourceDef) -> Value {
    let mut o = if rd.is_core_events() {
        to_core_event(obj)
    } else if rd.group == "events.k8s.io" && rd.plural == "events" {
        from_core_event(obj)
    } else {
        obj.clone()
    };
    if let Some(m) = o.as_object_mut() {
        m.insert("apiVersion".into(), rd.api_version().into());
        m.insert("kind".into(), rd.kind.clone().into());
    }
    o
}

fn set_crd_status(crd: &mut Value) {
    let t = now();
    let names = crd["spec"]["names"].clone();
    crd["status"] = json!({
        "acceptedNames": names,
        "conditions": [
            {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found", "lastTransitionTime": t},
            {"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": "the initial names have been accepted", "lastTransitionTime": t},
        ],
        "storedVersions": crd["spec"]["versions"].as_array().map(|vs| vs.iter().filter(|v| v["storage"] == true).map(|v| v["name"].clone()).collect::<Vec<_>>()).unwrap_or_default(),
    });
}

/// Store a CRD object from `crds/` (at start-up) with status set.
pub fn prepare_crd(crd: &mut Value) {
    set_crd_status(crd);
}

/// The served resources that a CRD object defines.
pub fn crd_resources(crd: &Value) -> Result<Vec<ResourceDef>, ApiError> {
    let spec = crd
        .get("spec")
        .ok_or_else(|| ApiError::bad_request("a CustomResourceDefinition needs a spec"))?;
    let s = |v: &Value| v.as_str().map(str::to_string);
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    };
    let group = s(&spec["group"]).ok_or_else(|| ApiError::bad_request("spec.group is required"))?;
    let names = &spec["names"];
    let plural = s(&names["plural"])
        .ok_or_else(|| ApiError::bad_request("spec.names.plural is required"))?;
    let kind =
        s(&names["kind"]).ok_or_else(|| ApiError::bad_request("spec.names.kind is required"))?;
    let singular = s(&names["singular"]).unwrap_or_else(|| kind.to_lowercase());
    let namespaced = spec["scope"].as_str() != Some("Cluster");
    let mut out = Vec::new();
    for version in spec["versions"].as_array().into_iter().flatten() {
        if version["served"].as_bool() == Some(false) {
            continue;
        }
        let Some(vname) = s(&version["name"]) else {
            continue;
        };
        let columns = version["additionalPrinterColumns"]
            .as_array()
            .map(|cols| {
                cols.iter()
                    .map(|c| Column {
                        name: c["name"].as_str().unwrap_or_default().to_string(),
                        type_: c["type"].as_str().unwrap_or("string").to_string(),
                        json_path: c["jsonPath"].as_str().unwrap_or_default().to_string(),
                        priority: c["priority"].as_i64().unwrap_or(0),
                        description: c["description"].as_str().unwrap_or_default().to_string(),
                        format: c["format"].as_str().unwrap_or_default().to_string(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.push(ResourceDef {
            group: group.clone(),
            version: vname,
            plural: plural.clone(),
            singular: singular.clone(),
            kind: kind.clone(),
            namespaced,
            short_names: strings(&names["shortNames"]),
            categories: strings(&names["categories"]),
            status_subresource: version["subresources"].get("status").is_some(),
            schema: version["schema"].get("openAPIV3Schema").cloned(),
            columns,
            has_generation: true,
            custom: true,
            any_field_selector: false,
        });
    }
    Ok(out)
}

/// The built-in resources: namespaces, core and events.k8s.io Events, Leases and CRDs.
pub fn builtin_resources() -> Vec<ResourceDef> {
    let def = |group: &str,
               version: &str,
               plural: &str,
               singular: &str,
               kind: &str,
               namespaced: bool,
               short: &[&str]| ResourceDef {
        group: group.into(),
        version: version.into(),
        plural: plural.into(),
        singular: singular.into(),
        kind: kind.into(),
        namespaced,
        short_names: short.iter().map(|s| s.to_string()).collect(),
        categories: Vec::new(),
        status_subresource: false,
        schema: None,
        columns: Vec::new(),
        has_generation: false,
        custom: false,
        any_field_selector: false,
    };
    let mut namespaces = def(
        "",
        "v1",
        "namespaces",
        "namespace",
        "Namespace",
        false,
        &["ns"],
    );
    namespaces.status_subresource = true;
    let mut core_events = def("", "v1", "events", "event", "Event", true, &["ev"]);
    core_events.any_field_selector = true;
    let mut events = def(
        "events.k8s.io",
        "v1",
        "events",
        "event",
        "Event",
        true,
        &["ev"],
    );
    events.any_field_selector = true;
    let leases = def(
        "coordination.k8s.io",
        "v1",
        "leases",
        "lease",
        "Lease",
        true,
        &[],
    );
    let mut crds = def(
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
        "customresourcedefinition",
        "CustomResourceDefinition",
        false,
        &["crd", "crds"],
    );
    crds.status_subresource = true;
    crds.has_generation = true;
    vec![namespaces, core_events, events, leases, crds]
}

/// Events are stored in the events.k8s.io/v1 shape.
pub(super) fn to_storage(rd: &ResourceDef, obj: &Value) -> Value {
    if rd.is_core_events() {
        from_core_event(obj)
    } else {
        obj.clone()
    }
}

/// Field pairs (core/v1 Event, events.k8s.io/v1 Event) of kube-apiserver's Event conversion.
const EVENT_FIELDS: [(&str, &str); 7] = [
    ("involvedObject", "regarding"),
    ("message", "note"),
    ("reportingComponent", "reportingController"),
    ("source", "deprecatedSource"),
    ("firstTimestamp", "deprecatedFirstTimestamp"),
    ("lastTimestamp", "deprecatedLastTimestamp"),
    ("count", "deprecatedCount"),
];

fn rename_fields(obj: &Value, from_core: bool) -> Value {
    let mut out = obj.clone();
    if let Some(m) = out.as_object_mut() {
        for (core, events) in EVENT_FIELDS {
            let (from, to) = if from_core {
                (core, events)
            } else {
                (events, core)
            };
            if let Some(v) = m.remove(from) {
                m.insert(to.into(), v);
            }
        }
        let api_version = if from_core { "events.k8s.io/v1" } else { "v1" };
        m.insert("apiVersion".into(), api_version.into());
    }
    out
}

fn to_core_event(obj: &Value) -> Value {
    if obj.get("apiVersion").and_then(Value::as_str) == Some("v1") {
        return obj.clone();
    }
    rename_fields(obj, false)
}

fn from_core_event(obj: &Value) -> Value {
    if obj.get("apiVersion").and_then(Value::as_str) != Some("v1") {
        return obj.clone();
    }
    rename_fields(obj, true)
}
