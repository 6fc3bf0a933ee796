//! An in-process Kubernetes API server emulator, kept for the tests that inject faults a real
//! control plane cannot be made to produce on cue: a 500, 429 or 409 on the next requests
//! ([`Emulator::fail_next`]), cut watch streams ([`Emulator::cut_watches`]), 410 Gone
//! ([`Emulator::force_gone_next_watches`], [`Emulator::compact`]) and objects stored past
//! admission ([`Emulator::insert_raw`]). Every other operator test runs against a real
//! kube-apiserver (`scripts/kube-up.sh`, `tests/support/cluster.rs`).
//!
//! It serves the CRDs it is given (and any CRD posted to it) over real HTTP on 127.0.0.1, well
//! enough that kube-rs and the real `kubectl` work against it unchanged: discovery, namespaces,
//! Events, Leases, CRUD with the apiserver's object semantics (uid, creationTimestamp, a
//! cluster-wide resourceVersion, generation, optimistic concurrency, the status subresource,
//! finalizers), merge / JSON / server-side-apply patches, watches with bookmarks and 410 Gone,
//! OpenAPI + CEL validation answering 422 Invalid, `meta.k8s.io` Tables with printer columns,
//! and fault injection.
//!
//! It is test infrastructure: where it simplifies kube-apiserver it says so in a comment where
//! it happens. The known differences a controller test could trip over (the README's testing
//! section summarises them):
//!
//! - Kinds: only Namespaces, Events (core/v1 and events.k8s.io/v1, one storage), Leases, CRDs
//!   and the CRDs' kinds. No Secrets, ConfigMaps, Pods, Services...: they answer 404.
//! - No authentication, authorization, RBAC, admission webhooks, ValidatingAdmissionPolicies,
//!   API priority and fairness or rate limits (apart from injected faults).
//! - Plain HTTP/1.1: no TLS, HTTP/2 or gzip. Bodies in JSON or YAML, and in protobuf for
//!   Namespaces, Events and Leases (`kubectl create namespace` sends one); answers in the first
//!   media type of `Accept` that fits (JSON, YAML, or protobuf for those kinds and `Status`),
//!   406 if none does. Custom resources have no protobuf form (415 for a body), as in
//!   kube-apiserver. Watches are always streamed as JSON.
//! - No garbage collector: `ownerReferences` and `propagationPolicy` are stored but dependents
//!   are never deleted. Namespace deletion is done at once: its content is deleted (objects
//!   with finalizers become terminating) and the namespace goes when it is empty.
//! - One storage version per CRD and no conversion: every served version returns the stored
//!   object with `apiVersion` rewritten. No `/scale` subresource, no `selectableFields`
//!   (field selectors: `metadata.name` and `metadata.namespace`; any field on Events).
//! - Lists: a `continue` token pins the first page's resourceVersion and every later page is
//!   served at that revision, from a snapshot of the first page's result (etcd reads the old
//!   revision). Snapshots last 5 minutes (kube-apiserver's compaction interval), at most 256
//!   at once, and `compact` drops them: then the page gets 410 Expired with an "inconsistent"
//!   continue token, as after an etcd compaction. A later page applies the first page's
//!   selectors. `resourceVersionMatch=Exact` is rebuilt from the watch history (410 beyond
//!   it); any other list gets the latest state (the real watch cache may serve
//!   `resourceVersion=0` slightly stale).
//! - Watches: history is the last `history_limit` changes (default 1000), not a time window;
//!   a watch from a compacted resourceVersion gets 200 and one ERROR event with a 410 Status
//!   (as the watch cache answers). A resourceVersion newer than the server's is treated as
//!   current (the real server waits, then answers 504). Bookmarks come every
//!   `bookmark_interval` (1 s by default; about a minute on a real server). `timeoutSeconds`
//!   is capped at 1800; without it a watch lasts 1800 s (30-60 min, random, in real).
//! - Server-side apply: ownership as structured-merge-diff computes it (see
//!   `managed_fields.rs`: conflicts, force, shared ownership, per-key list items, `Update`
//!   entries), without the `before-first-apply` takeover or the cap on `Update` entries, and
//!   admission defaults belong to no manager. Strategic merge patches on built-in kinds are
//!   applied as JSON merge patches.
//! - Metadata round-trips as `ObjectMeta` does: fields ObjectMeta lacks are dropped (a
//!   warning; 400 under `fieldValidation=Strict`) and empty lists, maps and strings
//!   (`finalizers: []`) are not stored. Names, labels, annotations and owner references are
//!   not validated (Event names through events.k8s.io/v1 are).
//! - Events are validated as `ValidateEventCreate`/`ValidateEventUpdate` do (events.rs):
//!   the legacy rules for every write, the strict ones (name, `eventTime`, `type`,
//!   deprecated fields, `series`, immutable fields on update) through events.k8s.io/v1.
//!   Built-in kinds go through their type as kube-apiserver decodes them (a field of the
//!   wrong type is a 400, a field the type lacks is dropped with a warning, times take their
//!   canonical precision); Namespaces and Leases are not validated beyond that.
//! - Validation: string `format`s checked are `date-time`, `date` and `uuid` only; CEL rules run
//!   on the `kube-cel` crate, not cel-go, without cost limits, and only when the OpenAPI
//!   validation passed (as in kube-apiserver); a rule using a function that crate lacks
//!   rejects the object. `fieldValidation=Strict` reports unknown fields only (not duplicate
//!   fields). CRDs are validated for the rules in `crd_validation.rs` (CEL: field selection
//!   and an approximate cost estimate, no overload type check).
//! - Discovery is the legacy kind (no aggregated `apidiscovery.k8s.io/v2`; clients fall back);
//!   OpenAPI v3 has stub documents (so kubectl leaves validation to the server) and there is
//!   no `/openapi/v2`: `kubectl explain` does not work.
//! - Tables: CRD printer columns support JSONPaths `.a.b`, `.a[0]`, `.a[*]` and one
//!   `[?(@.k=="v")]` filter; built-in kinds get only Name and Age columns.
//! - `deletionGracePeriodSeconds` is always 0; timestamps have second precision.
//!
//! Test-only: [`Emulator::insert_raw`]`(group, version, plural, namespace, object)` stores an
//! object as given, past pruning, defaulting, the schema, CEL and the metadata rules (the
//! server still sets uid, creationTimestamp, generation and resourceVersion, and watches see
//! the change), so a test can plant what a real cluster may hold but the emulator would
//! refuse: an object written before its CRD's schema was tightened, or one too deep to
//! decode (an Organization whose `spec.metadata` is 130 levels deep).
#![allow(dead_code)]

mod apply;
pub mod crd_validation;
mod events;
mod managed_fields;
mod meta;
mod paging;
mod proto;
mod raw;
mod schema;
mod server;
mod store;
mod table;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::{Value, json};

pub use store::{ApiError, State};

/// Options for [`Emulator::start_with`].
#[derive(Debug, Clone)]
pub struct Options {
    /// A directory (or file) of CRD YAML to load at start; `None`: no CRDs.
    pub crds: Option<PathBuf>,
    /// Port on 127.0.0.1; 0 picks a free one.
    pub port: u16,
    /// How many changes the watch history keeps; older resourceVersions get 410 Gone.
    pub history_limit: usize,
    /// How often open watches that allow bookmarks get a BOOKMARK.
    pub bookmark_interval: Duration,
    /// Log every request to stderr.
    pub log_requests: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            crds: None,
            port: 0,
            history_limit: 1000,
            bookmark_interval: Duration::from_secs(1),
            log_requests: std::env::var_os("KUBE_EMULATOR_LOG").is_some(),
        }
    }
}

struct FaultRule {
    verb: Option<String>,
    plural: Option<String>,
    remaining: usize,
    code: u16,
}

/// State shared by the server tasks and the test's handle.
pub struct Shared {
    state: Mutex<State>,
    pub(crate) addr: SocketAddr,
    pub(crate) options: Options,
    pub(crate) cut: tokio::sync::watch::Sender<u64>,
    pub(crate) shutdown: tokio::sync::watch::Sender<bool>,
    faults: Mutex<Vec<FaultRule>>,
    forced_gone: Mutex<usize>,
    /// The first page of each paged list in progress (paging.rs).
    list_snapshots: Mutex<paging::Snapshots>,
}

impl Shared {
    /// The state, even if a panicking thread poisoned the lock (a test failure elsewhere).
    pub fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The snapshots of paged lists in progress.
    pub fn list_snapshots(&self) -> MutexGuard<'_, paging::Snapshots> {
        self.list_snapshots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    fn log(&self, line: &str) {
        if self.options.log_requests {
            eprintln!("[kube-emulator] {line}");
        }
    }

    fn take_fault(&self, verb: &str, plural: &str) -> Option<ApiError> {
        let mut faults = self.faults.lock().unwrap_or_else(|p| p.into_inner());
        let rule = faults.iter_mut().find(|f| {
            f.remaining > 0
                && f.verb.as_deref().is_none_or(|v| v == verb)
                && f.plural.as_deref().is_none_or(|p| p == plural)
        })?;
        rule.remaining -= 1;
        let code = rule.code;
        faults.retain(|f| f.remaining > 0);
        Some(match code {
            429 => ApiError::new(
                429,
                "TooManyRequests",
                "the emulator injected a 429: please try again later",
            ),
            409 => ApiError::new(
                409,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on {plural}: the emulator injected a conflict"
                ),
            ),
            c => ApiError::new(
                c,
                "InternalError",
                format!("Internal error occurred: the emulator injected a {c}"),
            ),
        })
    }

    fn take_forced_gone(&self) -> bool {
        let mut n = self.forced_gone.lock().unwrap_or_else(|p| p.into_inner());
        if *n > 0 {
            *n -= 1;
            true
        } else {
            false
        }
    }

    fn group_versions(&self) -> Vec<(String, Vec<String>)> {
        let st = self.state();
        let mut out: Vec<(String, Vec<String>)> = Vec::new();
        for rd in &st.resources {
            if rd.group.is_empty() {
                continue;
            }
            match out.iter_mut().find(|(g, _)| *g == rd.group) {
                Some((_, vs)) => {
                    if !vs.contains(&rd.version) {
                        vs.push(rd.version.clone());
                    }
                }
                None => out.push((rd.group.clone(), vec![rd.version.clone()])),
            }
        }
        out
    }

    fn group_json(group: &str, versions: &[String]) -> Value {
        let vs: Vec<Value> = versions
            .iter()
            .map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v}))
            .collect();
        json!({"name": group, "versions": vs, "preferredVersion": vs.first().cloned().unwrap_or(Value::Null)})
    }

    fn group_list(&self) -> Value {
        let groups: Vec<Value> = self
            .group_versions()
            .iter()
            .map(|(g, vs)| Self::group_json(g, vs))
            .collect();
        json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
    }

    fn group(&self, group: &str) -> Result<Value, ApiError> {
        let gv = self.group_versions();
        let (_, vs) = gv.iter().find(|(g, _)| g == group).ok_or_else(|| {
            ApiError::new(
                404,
                "NotFound",
                "the server could not find the requested resource",
            )
        })?;
        let mut g = Self::group_json(group, vs);
        g["kind"] = "APIGroup".into();
        g["apiVersion"] = "v1".into();
        Ok(g)
    }

    fn resource_list(&self, group: &str, version: &str) -> Result<Value, ApiError> {
        let st = self.state();
        let defs: Vec<_> = st
            .resources
            .iter()
            .filter(|r| r.group == group && r.version == version)
            .cloned()
            .collect();
        if defs.is_empty() {
            return Err(ApiError::new(
                404,
                "NotFound",
                "the server could not find the requested resource",
            ));
        }
        let mut resources = Vec::new();
        for rd in defs {
            resources.push(json!({
                "name": rd.plural,
                "singularName": rd.singular,
                "namespaced": rd.namespaced,
                "kind": rd.kind,
                "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"],
                "shortNames": rd.short_names,
                "categories": rd.categories,
            }));
            if rd.status_subresource {
                resources.push(json!({
                    "name": format!("{}/status", rd.plural),
                    "singularName": "",
                    "namespaced": rd.namespaced,
                    "kind": rd.kind,
                    "verbs": ["get", "patch", "update"],
                }));
            }
        }
        let gv = if group.is_empty() {
            version.to_string()
        } else {
            format!("{group}/{version}")
        };
        Ok(
            json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}),
        )
    }

    /// The OpenAPI v3 index: kubectl reads it to learn that the server validates fields
    /// (`fieldValidation`), so it leaves validation to the server.
    fn openapi_index(&self) -> Value {
        let mut paths = serde_json::Map::new();
        paths.insert(
            "api/v1".into(),
            json!({"serverRelativeURL": "/openapi/v3/api/v1?hash=emulator"}),
        );
        for (g, vs) in self.group_versions() {
            for v in vs {
                paths.insert(
                    format!("apis/{g}/{v}"),
                    json!({"serverRelativeURL": format!("/openapi/v3/apis/{g}/{v}?hash=emulator")}),
                );
            }
        }
        json!({"paths": paths})
    }

    /// A minimal OpenAPI v3 document of one group-version: one PATCH operation per kind
    /// carrying its GVK and the `fieldValidation` parameter. Simplification: no schemas
    /// (`kubectl explain` does not work against the emulator).
    fn openapi_gv(&self, gv: &str) -> Result<Value, ApiError> {
        let (group, version) = match gv.split('/').collect::<Vec<_>>().as_slice() {
            ["api", v] => (String::new(), v.to_string()),
            ["apis", g, v] => (g.to_string(), v.to_string()),
            _ => return Err(ApiError::new(404, "NotFound", "no such OpenAPI document")),
        };
        let st = self.state();
        let mut paths = serde_json::Map::new();
        for rd in st
            .resources
            .iter()
            .filter(|r| r.group == group && r.version == version)
        {
            let prefix = if group.is_empty() {
                format!("/api/{version}")
            } else {
                format!("/apis/{group}/{version}")
            };
            let path = if rd.namespaced {
                format!("{prefix}/namespaces/{{namespace}}/{}/{{name}}", rd.plural)
            } else {
                format!("{prefix}/{}/{{name}}", rd.plural)
            };
            paths.insert(path, json!({
                "patch": {
                    "operationId": format!("patch{}", rd.kind),
                    "x-kubernetes-action": "patch",
                    "x-kubernetes-group-version-kind": {"group": rd.group, "version": rd.version, "kind": rd.kind},
                    "parameters": [
                        {"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
                        {"name": "fieldManager", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
                    ],
                    "responses": {"200": {"description": "OK"}},
                }
            }));
        }
        Ok(json!({
            "openapi": "3.0.0",
            "info": {"title": "Kubernetes (emulator)", "version": "v1.37.1"},
            "paths": paths,
            "components": {"schemas": {}},
        }))
    }
}

/// A running emulator. Dropping it stops the server and ends every open watch.
pub struct Emulator {
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
    dir: tempfile::TempDir,
    kubeconfig: PathBuf,
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.shared.shutdown.send(true);
        self.task.abort();
    }
}

/// Read CRD objects from a YAML file or a directory of YAML files (multi-document streams).
pub fn load_crd_files(path: &Path) -> Result<Vec<Value>, String> {
    let mut files = Vec::new();
    if path.is_dir() {
        let entries = std::fs::read_dir(path).map_err(|e| format!("{}: {e}", path.display()))?;
        for entry in entries.flatten() {
            let p = entry.path();
            if p.extension()
                .is_some_and(|e| e == "yaml" || e == "yml" || e == "json")
            {
                files.push(p);
            }
        }
        files.sort();
    } else {
        files.push(path.to_path_buf());
    }
    let mut out = Vec::new();
    for file in files {
        let text =
            std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let value = <Value as serde::Deserialize>::deserialize(doc)
                .map_err(|e| format!("{}: {e}", file.display()))?;
            if value.get("kind").and_then(Value::as_str) == Some("CustomResourceDefinition") {
                out.push(value);
            }
        }
    }
    Ok(out)
}

impl Emulator {
    /// Start with the CRDs of a YAML file or directory, on a free port.
    pub async fn start(crds: &Path) -> Emulator {
        let options = Options {
            crds: Some(crds.to_path_buf()),
            ..Options::default()
        };
        match Self::start_with(options).await {
            Ok(e) => e,
            Err(e) => panic!("the Kubernetes API emulator did not start: {e}"),
        }
    }

    pub async fn start_with(options: Options) -> Result<Emulator, String> {
        let crds: Vec<Value> = match &options.crds {
            Some(path) => load_crd_files(path)?,
            None => Vec::new(),
        };
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", options.port))
            .await
            .map_err(|e| e.to_string())?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let mut state = State::new(options.history_limit);
        for rd in store::builtin_resources() {
            state.register(rd);
        }
        let no_opts = store::WriteOpts::default();
        for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            if let Some(rd) = state.find("", "v1", "namespaces") {
                state
                    .create(
                        &rd,
                        "",
                        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
                        &no_opts,
                    )
                    .map_err(|e| e.message)?;
            }
        }
        if let Some(rd) = state.find("apiextensions.k8s.io", "v1", "customresourcedefinitions") {
            for crd in crds {
                let written = state
                    .create(&rd, "", crd, &no_opts)
                    .map_err(|e| e.message)?;
                state.register_crd(&written.object).map_err(|e| e.message)?;
            }
        }
        let (cut, _) = tokio::sync::watch::channel(0u64);
        let (shutdown, _) = tokio::sync::watch::channel(false);
        let shared = Arc::new(Shared {
            state: Mutex::new(state),
            addr,
            options,
            cut,
            shutdown,
            faults: Mutex::new(Vec::new()),
            forced_gone: Mutex::new(0),
            list_snapshots: Mutex::new(paging::Snapshots::default()),
        });
        let serving = shared.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let shared = serving.clone();
                tokio::spawn(async move {
                    let io = hyper_util::rt::TokioIo::new(stream);
                    let service =
                        hyper::service::service_fn(move |req| server::handle(shared.clone(), req));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, service)
                        .await;
                });
            }
        });
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let kubeconfig = dir.path().join("kubeconfig");
        std::fs::write(&kubeconfig, kubeconfig_yaml(&format!("http://{addr}")))
            .map_err(|e| e.to_string())?;
        Ok(Emulator {
            shared,
            task,
            dir,
            kubeconfig,
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.shared.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.shared.addr
    }

    /// A kubeconfig file pointing at this emulator (context `emulator`, namespace `default`).
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    /// A scratch directory that lives as long as the emulator.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A kube-rs client for this emulator.
    pub fn client(&self) -> kube::Client {
        let url = match self.url().parse() {
            Ok(u) => u,
            Err(e) => panic!("emulator url: {e}"),
        };
        let config = kube::Config::new(url);
        match kube::Client::try_from(config) {
            Ok(c) => c,
            Err(e) => panic!("kube client for the emulator: {e}"),
        }
    }

    /// Direct access to the state (for assertions and setup without HTTP).
    pub fn state(&self) -> MutexGuard<'_, State> {
        self.shared.state()
    }

    /// Create a namespace (no-op if it exists).
    pub fn create_namespace(&self, name: &str) {
        let mut st = self.shared.state();
        if let Some(rd) = st.find("", "v1", "namespaces") {
            let _ = st.create(
                &rd,
                "",
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}),
                &store::WriteOpts::default(),
            );
        }
    }

    /// Make the next `n` requests with this verb (`get`, `list`, `watch`, `create`, `update`,
    /// `patch`, `delete`; `None` = any) on this resource plural (`None` = any) fail with
    /// `code` (500, 429 with `Retry-After: 1`, 409, or any other status code).
    pub fn fail_next(&self, verb: Option<&str>, plural: Option<&str>, n: usize, code: u16) {
        self.shared
            .faults
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(FaultRule {
                verb: verb.map(str::to_string),
                plural: plural.map(str::to_string),
                remaining: n,
                code,
            });
    }

    /// End every open watch stream now (as a load balancer or apiserver restart would).
    pub fn cut_watches(&self) {
        self.shared.cut.send_modify(|n| *n += 1);
    }

    /// The next `n` watch requests get a 410 Gone ERROR event in the stream, then end.
    pub fn force_gone_next_watches(&self, n: usize) {
        *self
            .shared
            .forced_gone
            .lock()
            .unwrap_or_else(|p| p.into_inner()) += n;
    }

    /// Drop the watch history (etcd compaction): watches from any older resourceVersion get
    /// an HTTP 410 Gone, and so does the next page of every paged list in progress.
    pub fn compact(&self) {
        self.shared.state().compact();
        self.shared.list_snapshots().clear();
    }

    /// Store an object as given, past every admission step (schema, CEL, pruning, metadata
    /// rules), as if it had been written before its CRD's schema refused it; the server-set
    /// metadata is filled in (see [`State::insert_raw`]). Test setup only: panics if the
    /// resource or namespace does not exist. Returns the stored object.
    pub fn insert_raw(
        &self,
        group: &str,
        version: &str,
        plural: &str,
        namespace: &str,
        object: Value,
    ) -> Value {
        match self
            .shared
            .state()
            .insert_raw(group, version, plural, namespace, object)
        {
            Ok(stored) => stored,
            Err(e) => panic!("insert_raw {plural} in {namespace:?}: {}", e.message),
        }
    }

    /// The current cluster-wide resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.shared.state().rv
    }
}

pub fn kubeconfig_yaml(server: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: emulator\n  cluster:\n    server: {server}\nusers:\n- name: emulator\n  user: {{}}\ncontexts:\n- name: emulator\n  context:\n    cluster: emulator\n    user: emulator\n    namespace: default\ncurrent-context: emulator\n"
    )
}
