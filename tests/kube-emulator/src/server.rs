//! HTTP: routing, discovery, OpenAPI v3 stubs, CRUD handlers, list, watch and faults.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::Frame;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Value, json};

use super::Shared;
use super::store::{ApiError, Change, PatchKind, ResourceDef, Sub, WriteOpts, with_api_version};
use super::table;

pub type Body = BoxBody<Bytes, Infallible>;

fn json_response(code: u16, value: &Value, warnings: &[String]) -> Response<Body> {
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    let mut builder = Response::builder()
        .status(StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header("content-type", "application/json")
        .header("cache-control", "no-cache, private");
    for w in warnings {
        let text = format!("299 - {:?}", w);
        builder = builder.header("warning", text);
    }
    builder
        .body(Full::new(Bytes::from(bytes)).boxed())
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new()).boxed()))
}

fn error_response(e: &ApiError) -> Response<Body> {
    let mut r = json_response(e.code, &e.status(), &[]);
    if e.code == 429
        && let Ok(v) = "1".parse()
    {
        r.headers_mut().insert("retry-after", v);
    }
    r
}

/// Query parameters, decoded.
struct Query(Vec<(String, String)>);

impl Query {
    fn parse(q: Option<&str>) -> Self {
        let mut out = Vec::new();
        for pair in q.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let dec = |s: &str| {
                percent_encoding::percent_decode_str(&s.replace('+', " "))
                    .decode_utf8_lossy()
                    .to_string()
            };
            out.push((dec(k), dec(v)));
        }
        Query(out)
    }
    fn get(&self, k: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    }
    fn flag(&self, k: &str) -> bool {
        matches!(self.get(k), Some("1" | "true" | ""))
    }
}

/// Serve one request.
pub async fn handle(
    shared: Arc<Shared>,
    req: Request<hyper::body::Incoming>,
) -> Result<Response<Body>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return Ok(error_response(&ApiError::bad_request(format!(
                "reading the body: {e}"
            ))));
        }
    };
    let query = Query::parse(parts.uri.query());
    let path = parts.uri.path().trim_end_matches('/').to_string();
    let accept = parts
        .headers
        .get("accept")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let user_agent = parts
        .headers
        .get("user-agent")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let content_type = parts
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    shared.log(&format!("{} {}", parts.method, parts.uri));
    let response = match route(
        &shared,
        &parts.method,
        &path,
        &query,
        &accept,
        &content_type,
        user_agent.as_deref(),
        &body,
    )
    .await
    {
        Ok(r) => r,
        Err(e) => error_response(&e),
    };
    if query.flag("watch") {
        return Ok(response);
    }
    Ok(super::proto::negotiate(&accept, response).await)
}

#[allow(clippy::too_many_arguments)]
async fn route(
    shared: &Arc<Shared>,
    method: &Method,
    path: &str,
    query: &Query,
    accept: &str,
    content_type: &str,
    user_agent: Option<&str>,
    body: &Bytes,
) -> Result<Response<Body>, ApiError> {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match segs.as_slice() {
        ["version"] => return Ok(json_response(200, &version(), &[])),
        ["healthz"] | ["readyz"] | ["livez"] => {
            return Ok(Response::new(Full::new(Bytes::from_static(b"ok")).boxed()));
        }
        ["api"] => {
            return Ok(json_response(
                200,
                &json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": shared.addr.to_string()}]}),
                &[],
            ));
        }
        ["apis"] => return Ok(json_response(200, &shared.group_list(), &[])),
        ["api", "v1"] => return Ok(json_response(200, &shared.resource_list("", "v1")?, &[])),
        ["apis", group] => return Ok(json_response(200, &shared.group(group)?, &[])),
        ["apis", group, version] => {
            return Ok(json_response(
                200,
                &shared.resource_list(group, version)?,
                &[],
            ));
        }
        ["openapi", "v3"] => return Ok(json_response(200, &shared.openapi_index(), &[])),
        ["openapi", "v3", rest @ ..] => {
            return Ok(json_response(
                200,
                &shared.openapi_gv(&rest.join("/"))?,
                &[],
            ));
        }
        ["openapi", "v2"] => {
            return Err(ApiError::new(
                404,
                "NotFound",
                "the emulator serves OpenAPI v3 only",
            ));
        }
        _ => {}
    }
    let (group, version, rest): (&str, &str, &[&str]) = match segs.as_slice() {
        ["api", "v1", rest @ ..] => ("", "v1", rest),
        ["apis", g, v, rest @ ..] => (g, v, rest),
        _ => {
            return Err(ApiError::new(
                404,
                "NotFound",
                format!("the server could not find the requested resource ({path})"),
            ));
        }
    };
    // Namespaced paths: namespaces/{ns}/{plural}[/{name}[/{sub}]].
    let (ns, plural, name, sub) = match rest {
        ["namespaces", ns, plural, tail @ ..]
            if !(group.is_empty() && matches!(*plural, "status" | "finalize")) =>
        {
            (
                Some(ns.to_string()),
                plural.to_string(),
                tail.first().map(|s| s.to_string()),
                tail.get(1).map(|s| s.to_string()),
            )
        }
        [plural, tail @ ..] => (
            None,
            plural.to_string(),
            tail.first().map(|s| s.to_string()),
            tail.get(1).map(|s| s.to_string()),
        ),
        [] => {
            return Err(ApiError::new(
                404,
                "NotFound",
                "the server could not find the requested resource",
            ));
        }
    };
    let rd = shared
        .state()
        .find(group, version, &plural)
        .ok_or_else(|| {
            ApiError::new(
                404,
                "NotFound",
                format!("the server could not find the requested resource ({path})"),
            )
        })?;
    if rd.namespaced && ns.is_none() && name.is_some() {
        return Err(ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        ));
    }
    if !rd.namespaced && ns.is_some() {
        return Err(ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        ));
    }
    let sub = match sub.as_deref() {
        None => Sub::Main,
        Some("status") if rd.status_subresource => Sub::Status,
        Some(_) => {
            return Err(ApiError::new(
                404,
                "NotFound",
                "the server could not find the requested resource",
            ));
        }
    };
    let watch = query.flag("watch");
    let verb = match (method, name.is_some(), watch) {
        (&Method::GET, _, true) => "watch",
        (&Method::GET, true, _) => "get",
        (&Method::GET, false, _) => "list",
        (&Method::POST, false, _) => "create",
        (&Method::PUT, true, _) => "update",
        (&Method::PATCH, true, _) => "patch",
        (&Method::DELETE, true, _) => "delete",
        (&Method::DELETE, false, _) => "deletecollection",
        _ => {
            return Err(ApiError::new(
                405,
                "MethodNotAllowed",
                format!("{method} is not supported on this path"),
            ));
        }
    };
    if let Some(fault) = shared.take_fault(verb, &rd.plural) {
        return Err(fault);
    }
    let ns_str = ns.clone().unwrap_or_default();
    let table_mode = accept.contains("as=Table");
    let include = query.get("includeObject").unwrap_or("Metadata").to_string();
    let opts = WriteOpts {
        dry_run: query.get("dryRun") == Some("All"),
        field_manager: query.get("fieldManager").map(str::to_string),
        force: query.flag("force"),
        field_validation: query.get("fieldValidation").unwrap_or("Warn").to_string(),
        user_agent: user_agent.map(str::to_string),
        applying: false,
    };
    match verb {
        "watch" => {
            let selector = Selector::parse(&rd, query)?;
            let path_name = name.clone();
            serve_watch(
                shared.clone(),
                rd,
                ns,
                path_name,
                selector,
                query,
                table_mode,
                &include,
            )
        }
        "get" => {
            let name = name.unwrap_or_default();
            let obj = shared.state().get(&rd, &ns_str, &name)?;
            if table_mode {
                return Ok(json_response(
                    200,
                    &table::table(&rd, &[obj], &include, true, json!({})),
                    &[],
                ));
            }
            Ok(json_response(200, &obj, &[]))
        }
        "list" => {
            let selector = Selector::parse(&rd, query)?;
            let request = super::paging::ListRequest {
                namespace: ns.as_deref(),
                continue_token: query.get("continue"),
                resource_version: query.get("resourceVersion"),
                resource_version_match: query.get("resourceVersionMatch"),
                limit: query
                    .get("limit")
                    .and_then(|l| l.parse::<usize>().ok())
                    .filter(|l| *l > 0),
                unfiltered: selector.labels.is_empty() && selector.fields.is_empty(),
            };
            let super::paging::Page {
                items: page,
                metadata: meta,
            } = super::paging::list(
                &shared.state(),
                &mut shared.list_snapshots(),
                &rd,
                &request,
                |o| selector.matches(o),
            )?;
            if table_mode {
                return Ok(json_response(
                    200,
                    &table::table(&rd, &page, &include, true, meta),
                    &[],
                ));
            }
            let list = json!({
                "apiVersion": rd.api_version(),
                "kind": format!("{}List", rd.kind),
                "metadata": meta,
                "items": page,
            });
            Ok(json_response(200, &list, &[]))
        }
        "create" => {
            let obj = parse_body(body, content_type)?;
            let mut st = shared.state();
            let written = st.create(&rd, &ns_str, obj, &opts)?;
            if rd.plural == "customresourcedefinitions" && !opts.dry_run {
                st.register_crd(&written.object)?;
            }
            Ok(json_response(201, &written.object, &written.warnings))
        }
        "update" => {
            let obj = parse_body(body, content_type)?;
            let name = name.unwrap_or_default();
            let mut st = shared.state();
            let written = st.update(&rd, &ns_str, &name, sub, obj, &opts)?;
            if rd.plural == "customresourcedefinitions" && !opts.dry_run {
                st.register_crd(&written.object)?;
            }
            Ok(json_response(200, &written.object, &written.warnings))
        }
        "patch" => {
            let kind = match content_type.split(';').next().unwrap_or("").trim() {
                "application/merge-patch+json" => PatchKind::Merge,
                "application/json-patch+json" => PatchKind::Json,
                "application/strategic-merge-patch+json" => PatchKind::Strategic,
                "application/apply-patch+yaml" | "application/apply-patch+json" => PatchKind::Apply,
                other => {
                    return Err(ApiError::new(
                        415,
                        "UnsupportedMediaType",
                        format!(
                            "the body of the request was in an unknown format ({other}) - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml"
                        ),
                    ));
                }
            };
            let name = name.unwrap_or_default();
            let mut st = shared.state();
            let written = st.patch(&rd, &ns_str, &name, sub, kind, body, &opts)?;
            if rd.plural == "customresourcedefinitions" && !opts.dry_run {
                st.register_crd(&written.object)?;
            }
            Ok(json_response(
                if written.created { 201 } else { 200 },
                &written.object,
                &written.warnings,
            ))
        }
        "delete" => {
            let options: Value = if body.is_empty() {
                Value::Null
            } else {
                parse_body(body, content_type)?
            };
            let name = name.unwrap_or_default();
            let dry = opts.dry_run
                || options
                    .get("dryRun")
                    .and_then(Value::as_array)
                    .is_some_and(|a| a.iter().any(|v| v == "All"));
            let obj = shared.state().delete(&rd, &ns_str, &name, &options, dry)?;
            Ok(json_response(200, &obj, &[]))
        }
        "deletecollection" => {
            let options: Value = if body.is_empty() {
                Value::Null
            } else {
                parse_body(body, content_type)?
            };
            let selector = Selector::parse(&rd, query)?;
            let mut st = shared.state();
            let targets: Vec<Value> = st
                .list(&rd, ns.as_deref())
                .into_iter()
                .filter(|o| selector.matches(o))
                .collect();
            let mut items = Vec::new();
            for o in targets {
                let o_ns = o["metadata"]["namespace"]
                    .as_str()
                    .unwrap_or("")
                    .to_string();
                let o_name = o["metadata"]["name"].as_str().unwrap_or("").to_string();
                items.push(st.delete(&rd, &o_ns, &o_name, &options, opts.dry_run)?);
            }
            let list = json!({
                "apiVersion": rd.api_version(),
                "kind": format!("{}List", rd.kind),
                "metadata": {"resourceVersion": st.rv.to_string()},
                "items": items,
            });
            Ok(json_response(200, &list, &[]))
        }
        _ => Err(ApiError::new(405, "MethodNotAllowed", "unsupported")),
    }
}

fn parse_body(body: &Bytes, content_type: &str) -> Result<Value, ApiError> {
    if content_type.contains("protobuf") {
        return super::proto::decode(body);
    }
    if content_type.contains("yaml") {
        let text = std::str::from_utf8(body)
            .map_err(|_| ApiError::bad_request("the body is not UTF-8"))?;
        return serde_yaml::from_str(text)
            .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")));
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("error decoding JSON: {e}")))
}

fn version() -> Value {
    json!({
        "major": "1",
        "minor": "37",
        "gitVersion": "v1.37.1-emulator",
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "go1.25",
        "compiler": "gc",
        "platform": "linux/amd64",
    })
}

/// A label selector plus a field selector.
pub struct Selector {
    labels: Vec<LabelReq>,
    fields: Vec<(String, bool, String)>,
}

enum LabelReq {
    Eq(String, String),
    NotEq(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

fn split_top(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut depth = 0;
    let mut cur = String::new();
    for c in s.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    if !cur.trim().is_empty() {
        out.push(cur);
    }
    out.into_iter()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

impl Selector {
    fn parse(rd: &ResourceDef, query: &Query) -> Result<Self, ApiError> {
        let mut labels = Vec::new();
        for term in split_top(query.get("labelSelector").unwrap_or("")) {
            let set = |v: &str| -> Vec<String> {
                v.trim()
                    .trim_start_matches('(')
                    .trim_end_matches(')')
                    .split(',')
                    .map(|s| s.trim().to_string())
                    .collect()
            };
            let req = if let Some((k, v)) = term.split_once(" notin ") {
                LabelReq::NotIn(k.trim().into(), set(v))
            } else if let Some((k, v)) = term.split_once(" in ") {
                LabelReq::In(k.trim().into(), set(v))
            } else if let Some((k, v)) = term.split_once("!=") {
                LabelReq::NotEq(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                LabelReq::Eq(k.trim().into(), v.trim().into())
            } else if let Some(k) = term.strip_prefix('!') {
                LabelReq::NotExists(k.trim().into())
            } else {
                LabelReq::Exists(term.clone())
            };
            labels.push(req);
        }
        let mut fields = Vec::new();
        for term in split_top(query.get("fieldSelector").unwrap_or("")) {
            let (k, neg, v) = if let Some((k, v)) = term.split_once("!=") {
                (k, true, v)
            } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                (k, false, v)
            } else {
                return Err(ApiError::bad_request(format!(
                    "invalid field selector: {term}"
                )));
            };
            let k = k.trim();
            if !matches!(k, "metadata.name" | "metadata.namespace") && !rd.any_field_selector {
                return Err(ApiError::bad_request(format!(
                    "field label not supported: {k}"
                )));
            }
            fields.push((k.to_string(), neg, v.trim().to_string()));
        }
        Ok(Selector { labels, fields })
    }

    pub fn matches(&self, obj: &Value) -> bool {
        let label = |k: &str| {
            obj["metadata"]["labels"]
                .get(k)
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        let labels_ok = self.labels.iter().all(|req| match req {
            LabelReq::Eq(k, v) => label(k).as_deref() == Some(v.as_str()),
            LabelReq::NotEq(k, v) => label(k).as_deref() != Some(v.as_str()),
            LabelReq::In(k, vs) => label(k).is_some_and(|l| vs.contains(&l)),
            LabelReq::NotIn(k, vs) => label(k).is_none_or(|l| !vs.contains(&l)),
            LabelReq::Exists(k) => label(k).is_some(),
            LabelReq::NotExists(k) => label(k).is_none(),
        });
        labels_ok
            && self.fields.iter().all(|(k, neg, v)| {
                let mut cur = obj;
                for part in k.split('.') {
                    cur = cur.get(part).unwrap_or(&Value::Null);
                }
                let actual = match cur {
                    Value::String(s) => s.clone(),
                    Value::Null => String::new(),
                    other => other.to_string(),
                };
                (actual == *v) != *neg
            })
    }
}

struct WatchFilter {
    rd: Arc<ResourceDef>,
    key: (String, String),
    ns: Option<String>,
    name: Option<String>,
    selector: Selector,
}

impl WatchFilter {
    fn matches(&self, obj: &Value) -> bool {
        self.name
            .as_ref()
            .is_none_or(|n| obj["metadata"]["name"].as_str() == Some(n.as_str()))
            && self.selector.matches(obj)
    }
    /// The event type this watch sees for a change, if any (selector transitions included).
    fn event(&self, c: &Change) -> Option<&'static str> {
        if c.key != self.key || self.ns.as_ref().is_some_and(|n| *n != c.namespace) {
            return None;
        }
        // Selectors see the object as this watch's version serves it (core/v1 Events too).
        let now = self.matches(&with_api_version(&c.object, &self.rd));
        let before = c
            .prev
            .as_ref()
            .is_some_and(|p| self.matches(&with_api_version(p, &self.rd)));
        match c.event_type {
            "ADDED" if now => Some("ADDED"),
            "DELETED" if now || before => Some("DELETED"),
            "MODIFIED" => match (before, now) {
                (true, true) => Some("MODIFIED"),
                (false, true) => Some("ADDED"),
                (true, false) => Some("DELETED"),
                _ => None,
            },
            _ => None,
        }
    }
}

fn line(value: &Value) -> Result<Frame<Bytes>, Infallible> {
    let mut bytes = watch_event_bytes(value);
    bytes.push(b'\n');
    Ok(Frame::data(Bytes::from(bytes)))
}

/// A watch event as kube-apiserver encodes `metav1.WatchEvent`: `type` before `object`
/// (serde_json's map would sort `object` first, and a client's decoder may depend on the
/// order: a tagged enum buffers the object when its tag comes after it).
fn watch_event_bytes(event: &Value) -> Vec<u8> {
    match (event.get("type"), event.get("object")) {
        (Some(t), Some(o)) => {
            let mut bytes = b"{\"type\":".to_vec();
            bytes.extend(serde_json::to_vec(t).unwrap_or_default());
            bytes.extend(b",\"object\":");
            bytes.extend(serde_json::to_vec(o).unwrap_or_default());
            bytes.push(b'}');
            bytes
        }
        _ => serde_json::to_vec(event).unwrap_or_default(),
    }
}

#[allow(clippy::too_many_arguments)]
fn serve_watch(
    shared: Arc<Shared>,
    rd: Arc<ResourceDef>,
    ns: Option<String>,
    name: Option<String>,
    selector: Selector,
    query: &Query,
    table_mode: bool,
    include: &str,
) -> Result<Response<Body>, ApiError> {
    let rv_param = query.get("resourceVersion").unwrap_or("").to_string();
    let bookmarks = query.flag("allowWatchBookmarks");
    let send_initial = query.flag("sendInitialEvents");
    let timeout = query
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .unwrap_or(1800)
        .min(1800);
    if shared.take_forced_gone() {
        let status = ApiError::new(
            410,
            "Expired",
            "too old resource version: forced by the emulator",
        )
        .status();
        return Ok(error_watch(&status));
    }
    let filter = WatchFilter {
        rd: rd.clone(),
        key: rd.key(),
        ns: ns.clone(),
        name: name.clone().or_else(|| {
            selector
                .fields
                .iter()
                .find(|(k, neg, _)| k == "metadata.name" && !neg)
                .map(|(_, _, v)| v.clone())
        }),
        selector,
    };
    // Under the state lock: subscribe, then take the initial objects or the history.
    let (mut rx, initial, start_rv): (_, Vec<(&'static str, Value)>, u64) = {
        let st = shared.state();
        let rx = st.events.subscribe();
        let current = st.rv;
        if rv_param.is_empty() || rv_param == "0" || send_initial {
            let objects: Vec<(&'static str, Value)> = st
                .list(&rd, ns.as_deref())
                .into_iter()
                .filter(|o| filter.matches(o))
                .map(|o| ("ADDED", o))
                .collect();
            (rx, objects, current)
        } else {
            let since: u64 = rv_param.parse().map_err(|_| {
                ApiError::bad_request(format!("invalid resourceVersion: {rv_param}"))
            })?;
            if since < st.compacted_rv {
                // Like kube-apiserver (cacher.go: "errors must fail with a watch event of type
                // ERROR, rather than a directly returned error"): 200, then one ERROR event.
                let status = ApiError::new(
                    410,
                    "Expired",
                    format!(
                        "too old resource version: {since} ({})",
                        st.compacted_rv + 1
                    ),
                )
                .status();
                return Ok(error_watch(&status));
            }
            let replay: Vec<(&'static str, Value)> = st
                .history
                .iter()
                .filter(|c| c.rv > since)
                .filter_map(|c| {
                    filter
                        .event(c)
                        .map(|t| (t, with_api_version(&c.object, &rd)))
                })
                .collect();
            (rx, replay, current.max(since))
        }
    };
    let (tx, out_rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(256);
    let mut cut = shared.cut.subscribe();
    let mut shutdown = shared.shutdown.subscribe();
    let bookmark_every = shared.options.bookmark_interval;
    let include = include.to_string();
    let rd2 = rd.clone();
    tokio::spawn(async move {
        let mut first_table = true;
        let mut encode = move |event_type: &str, obj: Value| -> Value {
            if table_mode && event_type != "BOOKMARK" && event_type != "ERROR" {
                let t = table::table(&rd2, &[obj], &include, first_table, json!({}));
                first_table = false;
                json!({"type": event_type, "object": t})
            } else {
                json!({"type": event_type, "object": obj})
            }
        };
        let bookmark = |rv: u64, initial_end: bool| -> Value {
            let mut meta = json!({"resourceVersion": rv.to_string()});
            if initial_end {
                meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
            }
            json!({"type": "BOOKMARK", "object": {"kind": rd.kind, "apiVersion": rd.api_version(), "metadata": meta}})
        };
        for (t, obj) in initial {
            if tx.send(line(&encode(t, obj))).await.is_err() {
                return;
            }
        }
        let mut last_rv = start_rv;
        if send_initial && bookmarks && tx.send(line(&bookmark(last_rv, true))).await.is_err() {
            return;
        }
        let deadline = tokio::time::sleep(Duration::from_secs(timeout));
        tokio::pin!(deadline);
        let mut ticker = tokio::time::interval(bookmark_every);
        ticker.tick().await;
        loop {
            tokio::select! {
                _ = &mut deadline => break,
                _ = cut.changed() => break,
                _ = shutdown.changed() => break,
                _ = ticker.tick() => {
                    if bookmarks && tx.send(line(&bookmark(last_rv, false))).await.is_err() {
                        break;
                    }
                }
                change = rx.recv() => {
                    let Ok(change) = change else { break };
                    if change.rv <= last_rv {
                        continue;
                    }
                    last_rv = change.rv;
                    if let Some(t) = filter.event(&change) {
                        let obj = with_api_version(&change.object, &rd);
                        if tx.send(line(&encode(t, obj))).await.is_err() {
                            break;
                        }
                    }
                }
            }
        }
    });
    let stream = futures::stream::unfold(out_rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    let body = StreamBody::new(stream).boxed();
    let content_type = if table_mode {
        "application/json;as=Table;v=v1;g=meta.k8s.io"
    } else {
        "application/json"
    };
    let _ = content_type;
    Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .header("cache-control", "no-cache, private")
        .body(body)
        .map_err(|e| ApiError::new(500, "InternalError", e.to_string()))
}

/// A watch response that is one ERROR event, as kube-apiserver answers a watch it cannot serve.
fn error_watch(status: &Value) -> Response<Body> {
    let mut bytes = watch_event_bytes(&json!({"type": "ERROR", "object": status}));
    bytes.push(b'\n');
    Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(bytes)).boxed())
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new()).boxed()))
}
