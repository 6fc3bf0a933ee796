//! Protobuf on the wire (`application/vnd.kubernetes.protobuf`) for the built-in kinds the
//! emulator serves: Namespaces, Events (core/v1 and events.k8s.io/v1), Leases, their lists and
//! `Status`. kubectl's typed clients send protobuf (`kubectl create namespace`) and ask for it
//! first in `Accept`.
//!
//! The envelope is kube-apiserver's (k8s.io/apimachinery runtime/serializer/protobuf): the
//! 4-byte magic `k8s\0`, then a `runtime.Unknown` whose `typeMeta` names the kind and whose
//! `raw` is the object's own protobuf message. The messages are the `k8s-pb` crate's prost
//! types; the emulator stores JSON, so each message is mapped to and from its JSON form
//! field by field below (the JSON names are the Kubernetes API's). Custom resources have no
//! protobuf form, as in kube-apiserver: a protobuf body for one gets 415, and an `Accept`
//! that allows nothing but protobuf gets 406.
//!
//! Watches are always streamed as JSON (simplification: kube-apiserver frames protobuf watch
//! events with a length prefix when asked).

use std::collections::BTreeMap;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Response;
use k8s_pb::api::coordination::v1 as coordination;
use k8s_pb::api::core::v1 as core;
use k8s_pb::api::events::v1 as events;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_pb::apimachinery::pkg::runtime::{TypeMeta, Unknown};
use prost::Message;
use serde_json::{Map, Value};

use super::server::Body;
use super::store::ApiError;

pub const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";
const MAGIC: &[u8; 4] = b"k8s\0";

/// A value with a JSON form in the Kubernetes API. Errors are a field path (from this value
/// down) and a reason: `".spec.leaseDurationSeconds: expected an integer"`.
trait Json: Sized {
    /// `Null` for an absent value (dropped from the enclosing object, as `omitempty` does).
    fn to_json(&self) -> Value;
    fn from_json(v: &Value) -> Result<Self, String>;
    /// The paths (under `path`) of the fields of `v` this type does not have.
    fn unknown_fields(_v: &Value, _path: &str, _out: &mut Vec<String>) {}
}

impl Json for String {
    fn to_json(&self) -> Value {
        Value::String(self.clone())
    }
    fn from_json(v: &Value) -> Result<Self, String> {
        v.as_str()
            .map(str::to_string)
            .ok_or_else(|| format!(": expected a string, found {v}"))
    }
}

impl Json for bool {
    fn to_json(&self) -> Value {
        Value::Bool(*self)
    }
    fn from_json(v: &Value) -> Result<Self, String> {
        v.as_bool()
            .ok_or_else(|| format!(": expected a boolean, found {v}"))
    }
}

impl Json for i64 {
    fn to_json(&self) -> Value {
        Value::from(*self)
    }
    fn from_json(v: &Value) -> Result<Self, String> {
        v.as_i64()
            .ok_or_else(|| format!(": expected an integer, found {v}"))
    }
}

impl Json for i32 {
    fn to_json(&self) -> Value {
        Value::from(*self)
    }
    fn from_json(v: &Value) -> Result<Self, String> {
        v.as_i64()
            .and_then(|n| i32::try_from(n).ok())
            .ok_or_else(|| format!(": expected a 32-bit integer, found {v}"))
    }
}

impl<T: Json> Json for Option<T> {
    fn to_json(&self) -> Value {
        self.as_ref().map(Json::to_json).unwrap_or(Value::Null)
    }
    fn from_json(v: &Value) -> Result<Self, String> {
        if v.is_null() {
            Ok(None)
        } else {
            T::from_json(v).map(Some)
        }
    }
    fn unknown_fields(v: &Value, path: &str, out: &mut Vec<String>) {
        T::unknown_fields(v, path, out);
    }
}

impl<T: Json> Json for Vec<T> {
    fn to_json(&self) -> Value {
        if self.is_empty() {
            return Value::Null;
        }
        Value::Array(self.iter().map(Json::to_json).collect())
    }
    fn from_json(v: &Value) -> Result<Self, String> {
        match v {
            Value::Null => Ok(Vec::new()),
            Value::Array(items) => items
                .iter()
                .enumerate()
                .map(|(i, item)| T::from_json(item).map_err(|e| format!("[{i}]{e}")))
                .collect(),
            other => Err(format!(": expected a list, found {other}")),
        }
    }
    fn unknown_fields(v: &Value, path: &str, out: &mut Vec<String>) {
        for (i, item) in v.as_array().into_iter().flatten().enumerate() {
            T::unknown_fields(item, &format!("{path}[{i}]"), out);
        }
    }
}

impl Json for BTreeMap<String, String> {
    fn to_json(&self) -> Value {
        if self.is_empty() {
            return Value::Null;
        }
        Value::Object(
            self.iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect(),
        )
    }
    fn from_json(v: &Value) -> Result<Self, String> {
        match v {
            Value::Null => Ok(BTreeMap::new()),
            Value::Object(m) => m
                .iter()
                .map(|(k, v)| {
                    Ok((
                        k.clone(),
                        String::from_json(v).map_err(|e| format!(".{k}{e}"))?,
                    ))
                })
                .collect(),
            other => Err(format!(": expected a map of strings, found {other}")),
        }
    }
}

fn timestamp(seconds: Option<i64>, nanos: Option<i32>, micros: bool) -> Value {
    let t = chrono::DateTime::from_timestamp(
        seconds.unwrap_or(0),
        u32::try_from(nanos.unwrap_or(0)).unwrap_or(0),
    )
    .unwrap_or_default();
    let format = if micros {
        "%Y-%m-%dT%H:%M:%S%.6fZ"
    } else {
        "%Y-%m-%dT%H:%M:%SZ"
    };
    Value::String(t.format(format).to_string())
}

fn parse_timestamp(v: &Value) -> Result<(i64, i32), String> {
    let s = v
        .as_str()
        .ok_or_else(|| format!(": expected an RFC 3339 time, found {v}"))?;
    let t = chrono::DateTime::parse_from_rfc3339(s)
        .map_err(|e| format!(": {s:?} is not an RFC 3339 time: {e}"))?;
    Ok((
        t.timestamp(),
        i32::try_from(t.timestamp_subsec_nanos()).unwrap_or(0),
    ))
}

/// `metav1.Time`: RFC 3339 with second precision, as kube-apiserver writes it.
impl Json for meta::Time {
    fn to_json(&self) -> Value {
        timestamp(self.seconds, self.nanos, false)
    }
    fn from_json(v: &Value) -> Result<Self, String> {
        let (seconds, _) = parse_timestamp(v)?;
        Ok(meta::Time {
            seconds: Some(seconds),
            nanos: Some(0),
        })
    }
}

/// `metav1.MicroTime`: RFC 3339 with microseconds.
impl Json for meta::MicroTime {
    fn to_json(&self) -> Value {
        timestamp(self.seconds, self.nanos, true)
    }
    fn from_json(v: &Value) -> Result<Self, String> {
        let (seconds, nanos) = parse_timestamp(v)?;
        Ok(meta::MicroTime {
            seconds: Some(seconds),
            nanos: Some(nanos / 1000 * 1000),
        })
    }
}

/// `metav1.FieldsV1`: JSON bytes in protobuf, an object in JSON.
impl Json for meta::FieldsV1 {
    fn to_json(&self) -> Value {
        self.raw
            .as_deref()
            .and_then(|raw| serde_json::from_slice(raw).ok())
            .unwrap_or_else(|| Value::Object(Map::new()))
    }
    fn from_json(v: &Value) -> Result<Self, String> {
        Ok(meta::FieldsV1 {
            raw: Some(serde_json::to_vec(v).map_err(|e| format!(": {e}"))?),
        })
    }
}

/// The unknown fields under one field's value, by the field's own type (`field` names it).
fn recurse<M, T: Json>(
    _field: impl Fn(&M) -> &T,
    value: &Value,
    path: &str,
    out: &mut Vec<String>,
) {
    T::unknown_fields(value, path, out);
}

/// Messages: each field with its JSON name. JSON fields not listed are not in the message.
macro_rules! message {
    ($($ty:ty { $($field:ident: $json:literal),* $(,)? })*) => {$(
        impl Json for $ty {
            fn to_json(&self) -> Value {
                let mut m = Map::new();
                $(
                    let v = Json::to_json(&self.$field);
                    if !v.is_null() {
                        m.insert($json.into(), v);
                    }
                )*
                Value::Object(m)
            }
            fn from_json(v: &Value) -> Result<Self, String> {
                let Value::Object(m) = v else {
                    return Err(format!(": expected an object, found {v}"));
                };
                let mut out = <$ty>::default();
                $(
                    if let Some(x) = m.get($json) {
                        out.$field = Json::from_json(x)
                            .map_err(|e: String| format!(".{}{e}", $json))?;
                    }
                )*
                Ok(out)
            }
            fn unknown_fields(v: &Value, path: &str, out: &mut Vec<String>) {
                let Value::Object(m) = v else { return };
                for (key, value) in m {
                    let here = if path.is_empty() { key.clone() } else { format!("{path}.{key}") };
                    match key.as_str() {
                        $($json => recurse(|m: &$ty| &m.$field, value, &here, out),)*
                        _ => out.push(here),
                    }
                }
            }
        }
    )*};
}

message! {
    meta::ObjectMeta {
        name: "name", generate_name: "generateName", namespace: "namespace",
        self_link: "selfLink", uid: "uid", resource_version: "resourceVersion",
        generation: "generation", creation_timestamp: "creationTimestamp",
        deletion_timestamp: "deletionTimestamp",
        deletion_grace_period_seconds: "deletionGracePeriodSeconds", labels: "labels",
        annotations: "annotations", owner_references: "ownerReferences",
        finalizers: "finalizers", managed_fields: "managedFields",
    }
    meta::OwnerReference {
        api_version: "apiVersion", kind: "kind", name: "name", uid: "uid",
        controller: "controller", block_owner_deletion: "blockOwnerDeletion",
    }
    meta::ManagedFieldsEntry {
        manager: "manager", operation: "operation", api_version: "apiVersion", time: "time",
        fields_type: "fieldsType", fields_v1: "fieldsV1", subresource: "subresource",
    }
    meta::ListMeta {
        self_link: "selfLink", resource_version: "resourceVersion", r#continue: "continue",
        remaining_item_count: "remainingItemCount",
    }
    meta::Status {
        metadata: "metadata", status: "status", message: "message", reason: "reason",
        details: "details", code: "code",
    }
    meta::StatusDetails {
        name: "name", group: "group", kind: "kind", uid: "uid", causes: "causes",
        retry_after_seconds: "retryAfterSeconds",
    }
    meta::StatusCause { reason: "reason", message: "message", field: "field" }
    core::Namespace { metadata: "metadata", spec: "spec", status: "status" }
    core::NamespaceSpec { finalizers: "finalizers" }
    core::NamespaceStatus { phase: "phase", conditions: "conditions" }
    core::NamespaceCondition {
        r#type: "type", status: "status", last_transition_time: "lastTransitionTime",
        reason: "reason", message: "message",
    }
    core::NamespaceList { metadata: "metadata", items: "items" }
    core::ObjectReference {
        kind: "kind", namespace: "namespace", name: "name", uid: "uid",
        api_version: "apiVersion", resource_version: "resourceVersion", field_path: "fieldPath",
    }
    core::EventSource { component: "component", host: "host" }
    core::EventSeries { count: "count", last_observed_time: "lastObservedTime" }
    core::Event {
        metadata: "metadata", involved_object: "involvedObject", reason: "reason",
        message: "message", source: "source", first_timestamp: "firstTimestamp",
        last_timestamp: "lastTimestamp", count: "count", r#type: "type",
        event_time: "eventTime", series: "series", action: "action", related: "related",
        reporting_component: "reportingComponent", reporting_instance: "reportingInstance",
    }
    core::EventList { metadata: "metadata", items: "items" }
    events::EventSeries { count: "count", last_observed_time: "lastObservedTime" }
    events::Event {
        metadata: "metadata", event_time: "eventTime", series: "series",
        reporting_controller: "reportingController", reporting_instance: "reportingInstance",
        action: "action", reason: "reason", regarding: "regarding", related: "related",
        note: "note", r#type: "type", deprecated_source: "deprecatedSource",
        deprecated_first_timestamp: "deprecatedFirstTimestamp",
        deprecated_last_timestamp: "deprecatedLastTimestamp",
        deprecated_count: "deprecatedCount",
    }
    events::EventList { metadata: "metadata", items: "items" }
    coordination::LeaseSpec {
        holder_identity: "holderIdentity", lease_duration_seconds: "leaseDurationSeconds",
        acquire_time: "acquireTime", renew_time: "renewTime",
        lease_transitions: "leaseTransitions", strategy: "strategy",
        preferred_holder: "preferredHolder",
    }
    coordination::Lease { metadata: "metadata", spec: "spec" }
    coordination::LeaseList { metadata: "metadata", items: "items" }
}

/// Decode a message from its protobuf bytes into its JSON form.
fn to_json<M: Message + Default + Json>(raw: &[u8]) -> Result<Value, String> {
    M::decode(raw)
        .map(|m| m.to_json())
        .map_err(|e| format!("invalid protobuf: {e}"))
}

/// Encode a JSON object as its protobuf message.
fn from_json<M: Message + Json>(value: &Value) -> Result<Vec<u8>, String> {
    M::from_json(value).map(|m| m.encode_to_vec())
}

/// The protobuf message of an `apiVersion` and `kind`, if the emulator serves one.
fn message_json(api_version: &str, kind: &str, raw: &[u8]) -> Option<Result<Value, String>> {
    Some(match (api_version, kind) {
        ("v1", "Namespace") => to_json::<core::Namespace>(raw),
        ("v1", "Event") => to_json::<core::Event>(raw),
        ("events.k8s.io/v1", "Event") => to_json::<events::Event>(raw),
        ("coordination.k8s.io/v1", "Lease") => to_json::<coordination::Lease>(raw),
        _ => return None,
    })
}

fn message_bytes(api_version: &str, kind: &str, value: &Value) -> Option<Result<Vec<u8>, String>> {
    Some(match (api_version, kind) {
        ("v1", "Namespace") => from_json::<core::Namespace>(value),
        ("v1", "NamespaceList") => from_json::<core::NamespaceList>(value),
        ("v1", "Event") => from_json::<core::Event>(value),
        ("v1", "EventList") => from_json::<core::EventList>(value),
        ("events.k8s.io/v1", "Event") => from_json::<events::Event>(value),
        ("events.k8s.io/v1", "EventList") => from_json::<events::EventList>(value),
        ("coordination.k8s.io/v1", "Lease") => from_json::<coordination::Lease>(value),
        ("coordination.k8s.io/v1", "LeaseList") => from_json::<coordination::LeaseList>(value),
        ("v1", "Status") => from_json::<meta::Status>(value),
        _ => return None,
    })
}

/// Decode a JSON object into its message and encode it back; the message's JSON and the
/// paths of the fields the message lacks (top-level `apiVersion` and `kind` are kept).
fn typed<M: Json>(obj: &Value) -> Result<(Value, Vec<String>), String> {
    let mut body = obj.clone();
    let type_meta: Vec<(String, Value)> = ["apiVersion", "kind"]
        .iter()
        .filter_map(|k| body.as_object_mut()?.remove(*k).map(|v| (k.to_string(), v)))
        .collect();
    let message = M::from_json(&body)?;
    let mut unknown = Vec::new();
    M::unknown_fields(&body, "", &mut unknown);
    let mut out = message.to_json();
    if let Some(m) = out.as_object_mut() {
        m.extend(type_meta);
    }
    Ok((out, unknown))
}

/// A JSON object of a built-in kind as kube-apiserver keeps it: decoded into its type (a field
/// of the wrong type is an error naming it) and encoded back (fields the type lacks dropped
/// and listed, times in their canonical precision). `None` for kinds without a type here.
pub fn typed_json(obj: &Value) -> Option<Result<(Value, Vec<String>), String>> {
    let api_version = obj.get("apiVersion")?.as_str()?;
    let kind = obj.get("kind")?.as_str()?;
    Some(match (api_version, kind) {
        ("v1", "Namespace") => typed::<core::Namespace>(obj),
        ("v1", "Event") => typed::<core::Event>(obj),
        ("events.k8s.io/v1", "Event") => typed::<events::Event>(obj),
        ("coordination.k8s.io/v1", "Lease") => typed::<coordination::Lease>(obj),
        _ => return None,
    })
}

/// A protobuf request body as the JSON object the store takes.
pub fn decode(body: &[u8]) -> Result<Value, ApiError> {
    let unsupported = |why: String| ApiError::new(415, "UnsupportedMediaType", why);
    let rest = body.strip_prefix(MAGIC).ok_or_else(|| {
        ApiError::bad_request("a protobuf body must start with the 4-byte prefix k8s\\0")
    })?;
    let unknown = Unknown::decode(rest)
        .map_err(|e| ApiError::bad_request(format!("invalid protobuf envelope: {e}")))?;
    let type_meta = unknown.type_meta.unwrap_or_default();
    let api_version = type_meta.api_version.unwrap_or_default();
    let kind = type_meta.kind.unwrap_or_default();
    let raw = unknown.raw.unwrap_or_default();
    let mut obj = message_json(&api_version, &kind, &raw)
        .ok_or_else(|| {
            unsupported(format!(
                "the body of the request was in an unknown format ({MEDIA_TYPE}): {kind} in {api_version} has no protobuf form here (Namespaces, Events and Leases have)"
            ))
        })?
        .map_err(ApiError::bad_request)?;
    if let Some(m) = obj.as_object_mut() {
        m.insert("apiVersion".into(), api_version.into());
        m.insert("kind".into(), kind.into());
    }
    Ok(obj)
}

/// A JSON answer as protobuf (envelope included), if its kind has a protobuf form.
pub fn encode(value: &Value) -> Option<Vec<u8>> {
    let api_version = value.get("apiVersion")?.as_str()?;
    let kind = value.get("kind")?.as_str()?;
    let raw = message_bytes(api_version, kind, value)?.ok()?;
    let unknown = Unknown {
        type_meta: Some(TypeMeta {
            api_version: Some(api_version.to_string()),
            kind: Some(kind.to_string()),
        }),
        raw: Some(raw),
        content_encoding: Some(String::new()),
        content_type: Some(String::new()),
    };
    let mut out = MAGIC.to_vec();
    unknown.encode(&mut out).ok()?;
    Some(out)
}

enum Wire {
    Json,
    Yaml,
    Protobuf,
}

/// The media types of an `Accept` header in order (parameters such as `as=Table` stay JSON).
fn accepted(accept: &str) -> Vec<Wire> {
    accept
        .split(',')
        .filter_map(|item| {
            let media = item.split(';').next().unwrap_or("").trim();
            match media {
                "application/json" | "*/*" | "application/*" | "" => Some(Wire::Json),
                "application/yaml" => Some(Wire::Yaml),
                MEDIA_TYPE => Some(Wire::Protobuf),
                _ => None,
            }
        })
        .collect()
}

/// Re-encode a finished JSON answer in the first media type of `Accept` that fits it: protobuf
/// for the kinds that have a protobuf form, YAML, or JSON; 406 when none fits.
pub async fn negotiate(accept: &str, response: Response<Body>) -> Response<Body> {
    let is_json = response
        .headers()
        .get("content-type")
        .is_some_and(|v| v.as_bytes() == b"application/json");
    if accept.trim().is_empty() || !is_json {
        return response;
    }
    let wanted = accepted(accept);
    if wanted.first().is_some_and(|w| matches!(w, Wire::Json)) {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let bytes = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(never) => match never {},
    };
    let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let set = |content_type: &'static str, body: Vec<u8>| {
        parts.headers.insert(
            "content-type",
            hyper::header::HeaderValue::from_static(content_type),
        );
        parts.headers.remove("content-length");
        Response::from_parts(parts, Full::new(Bytes::from(body)).boxed())
    };
    for wire in wanted {
        match wire {
            Wire::Json => return set("application/json", bytes.to_vec()),
            Wire::Yaml => {
                if let Ok(text) = serde_yaml::to_string(&value) {
                    return set("application/yaml", text.into_bytes());
                }
            }
            Wire::Protobuf => {
                if let Some(body) = encode(&value) {
                    return set(MEDIA_TYPE, body);
                }
            }
        }
    }
    let status = ApiError::new(
        406,
        "NotAcceptable",
        format!(
            "only the following media types are accepted: application/json, application/yaml, {MEDIA_TYPE} (for Namespaces, Events and Leases)"
        ),
    )
    .status();
    let mut out = set(
        "application/json",
        serde_json::to_vec(&status).unwrap_or_default(),
    );
    *out.status_mut() = hyper::StatusCode::NOT_ACCEPTABLE;
    out
}
