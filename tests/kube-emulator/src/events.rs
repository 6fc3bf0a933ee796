//! Event validation, as kube-apiserver's `ValidateEventCreate` / `ValidateEventUpdate`
//! (pkg/apis/core/validation/events.go) do it.
//!
//! Every write gets the legacy checks; writes through events.k8s.io/v1 (what kube-rs's
//! `Recorder` uses) get the strict ones too: a DNS-subdomain name of at most 253 characters,
//! `eventTime`, `type` Normal or Warning, no deprecated fields, a valid `series` and, on
//! update, no change to the immutable fields. Field paths are the internal (core) names, as
//! in kube-apiserver's errors: `message`, not `note`.

use regex::Regex;
use serde_json::Value;

use super::schema::FieldError;
use super::store::ResourceDef;

const REPORTING_INSTANCE_LENGTH_LIMIT: usize = 128;
const ACTION_LENGTH_LIMIT: usize = 128;
const REASON_LENGTH_LIMIT: usize = 128;
const NOTE_LENGTH_LIMIT: usize = 1024;
const DNS1123_SUBDOMAIN_MAX: usize = 253;
const QUALIFIED_NAME_MAX: usize = 63;

const DNS1123_SUBDOMAIN: &str =
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";
const QUALIFIED_NAME: &str = r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$";

/// Whether a resource is one of the two served versions of Events.
pub fn is_event(rd: &ResourceDef) -> bool {
    rd.plural == "events" && (rd.group.is_empty() || rd.group == "events.k8s.io")
}

/// An Event's fields under their internal (core) names, from either served shape.
struct Fields<'a>(&'a Value, bool);

impl<'a> Fields<'a> {
    /// `core`: the object is in the core/v1 shape (a request through core/v1).
    fn new(obj: &'a Value, core: bool) -> Self {
        Fields(obj, core)
    }
    /// A field by its core/v1 name and its events.k8s.io/v1 name.
    fn get(&self, core: &str, events: &str) -> &'a Value {
        self.0
            .get(if self.1 { core } else { events })
            .unwrap_or(&Value::Null)
    }
    fn str(&self, core: &str, events: &str) -> &'a str {
        self.get(core, events).as_str().unwrap_or("")
    }
    fn namespace(&self) -> &'a str {
        self.0["metadata"]["namespace"].as_str().unwrap_or("")
    }
    fn involved_namespace(&self) -> &'a str {
        self.get("involvedObject", "regarding")["namespace"]
            .as_str()
            .unwrap_or("")
    }
    fn has_event_time(&self) -> bool {
        !is_zero(self.get("eventTime", "eventTime"))
    }
}

/// A zero value as Go sees one: absent, null, "", 0, false, or an object of zero values.
fn is_zero(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::Bool(b) => !b,
        Value::Array(a) => a.is_empty(),
        Value::Object(m) => m.values().all(is_zero),
    }
}

/// A value as Go compares it after a round trip: times by their instant (microseconds),
/// objects without their zero fields.
fn canonical(v: &Value) -> Value {
    match v {
        Value::String(s) => match chrono::DateTime::parse_from_rfc3339(s) {
            Ok(t) => Value::String(
                t.with_timezone(&chrono::Utc)
                    .format("%Y-%m-%dT%H:%M:%S%.6fZ")
                    .to_string(),
            ),
            Err(_) => v.clone(),
        },
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(_, x)| !is_zero(x))
                .map(|(k, x)| (k.clone(), canonical(x)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(canonical).collect()),
        other => other.clone(),
    }
}

fn required(field: &str) -> FieldError {
    FieldError {
        reason: "FieldValueRequired",
        field: field.into(),
        detail: "Required value".into(),
    }
}

fn invalid(field: &str, value: &Value, why: &str) -> FieldError {
    let shown = match value {
        Value::String(s) => format!("{s:?}"),
        Value::Null => "\"\"".into(),
        other => other.to_string(),
    };
    FieldError {
        reason: "FieldValueInvalid",
        field: field.into(),
        detail: format!("Invalid value: {shown}: {why}"),
    }
}

fn too_long(field: &str, limit: usize) -> FieldError {
    invalid(
        field,
        &Value::Null,
        &format!("can have at most {limit} characters"),
    )
}

fn dns1123_subdomain_errors(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    if value.len() > DNS1123_SUBDOMAIN_MAX {
        out.push(format!(
            "must be no more than {DNS1123_SUBDOMAIN_MAX} characters"
        ));
    }
    if !Regex::new(DNS1123_SUBDOMAIN).is_ok_and(|r| r.is_match(value)) {
        out.push(format!(
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '{}')",
            DNS1123_SUBDOMAIN.trim_start_matches('^').trim_end_matches('$')
        ));
    }
    out
}

/// `validation.IsQualifiedName`: `[prefix/]name`, the prefix a DNS subdomain.
fn qualified_name_errors(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    let parts: Vec<&str> = value.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                out.push("prefix part must be non-empty".to_string());
            } else {
                out.extend(
                    dns1123_subdomain_errors(prefix)
                        .into_iter()
                        .map(|m| format!("prefix part {m}")),
                );
            }
            *name
        }
        _ => {
            out.push("a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')".to_string());
            return out;
        }
    };
    if name.is_empty() {
        out.push("name part must be non-empty".to_string());
    } else if name.len() > QUALIFIED_NAME_MAX {
        out.push(format!(
            "name part must be no more than {QUALIFIED_NAME_MAX} characters"
        ));
    }
    if !name.is_empty() && !Regex::new(QUALIFIED_NAME).is_ok_and(|r| r.is_match(name)) {
        out.push("name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')".to_string());
    }
    out
}

/// `legacyValidateEvent`: every Event, whatever the API version of the request.
fn legacy(ev: &Fields) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let ns = ev.namespace();
    let involved_ns = ev.involved_namespace();
    let mismatch = || {
        invalid(
            "involvedObject.namespace",
            &Value::String(involved_ns.to_string()),
            "does not match event.namespace",
        )
    };
    if !ev.has_event_time() {
        if involved_ns.is_empty() {
            if !ns.is_empty() && ns != "default" {
                errs.push(mismatch());
            }
        } else if ns != involved_ns {
            errs.push(mismatch());
        }
    } else {
        if involved_ns.is_empty() && ns != "default" && ns != "kube-system" {
            errs.push(mismatch());
        }
        let controller = ev.str("reportingComponent", "reportingController");
        if controller.is_empty() {
            errs.push(required("reportingController"));
        }
        for msg in qualified_name_errors(controller) {
            errs.push(invalid(
                "reportingController",
                &Value::String(controller.into()),
                &msg,
            ));
        }
        let instance = ev.str("reportingInstance", "reportingInstance");
        if instance.is_empty() {
            errs.push(required("reportingInstance"));
        }
        if instance.len() > REPORTING_INSTANCE_LENGTH_LIMIT {
            errs.push(too_long(
                "reportingInstance",
                REPORTING_INSTANCE_LENGTH_LIMIT,
            ));
        }
        let action = ev.str("action", "action");
        if action.is_empty() {
            errs.push(required("action"));
        }
        if action.len() > ACTION_LENGTH_LIMIT {
            errs.push(too_long("action", ACTION_LENGTH_LIMIT));
        }
        let reason = ev.str("reason", "reason");
        if reason.is_empty() {
            errs.push(required("reason"));
        }
        if reason.len() > REASON_LENGTH_LIMIT {
            errs.push(too_long("reason", REASON_LENGTH_LIMIT));
        }
        if ev.str("message", "note").len() > NOTE_LENGTH_LIMIT {
            errs.push(too_long("message", NOTE_LENGTH_LIMIT));
        }
    }
    for msg in dns1123_subdomain_errors(ns) {
        errs.push(invalid("namespace", &Value::String(ns.into()), &msg));
    }
    errs
}

/// `validateV1EventSeries`.
fn series(ev: &Fields) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let series = ev.get("series", "series");
    if series.is_null() {
        return errs;
    }
    if series["count"].as_i64().unwrap_or(0) < 2 {
        errs.push(invalid(
            "series.count",
            &Value::Null,
            "should be at least 2",
        ));
    }
    if is_zero(&series["lastObservedTime"]) {
        errs.push(required("series.lastObservedTime"));
    }
    errs
}

/// The errors of an Event create (`old` = None) or update, as kube-apiserver reports them.
pub fn validate(rd: &ResourceDef, obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let core = rd.group.is_empty();
    let ev = Fields::new(obj, core);
    let mut errs = legacy(&ev);
    if core {
        // Requests through core/v1: no further validation, for backwards compatibility.
        return errs;
    }
    match old {
        None => {
            let name = obj["metadata"]["name"].as_str().unwrap_or("");
            for msg in dns1123_subdomain_errors(name) {
                errs.push(invalid("metadata.name", &Value::String(name.into()), &msg));
            }
            errs.extend(series(&ev));
            if !ev.has_event_time() {
                errs.push(required("eventTime"));
            }
            let type_ = ev.str("type", "type");
            if type_ != "Normal" && type_ != "Warning" {
                errs.push(invalid(
                    "type",
                    &Value::Null,
                    &format!("has invalid value: {type_}"),
                ));
            }
            for (core, events, field) in [
                (
                    "firstTimestamp",
                    "deprecatedFirstTimestamp",
                    "firstTimestamp",
                ),
                ("lastTimestamp", "deprecatedLastTimestamp", "lastTimestamp"),
                ("count", "deprecatedCount", "count"),
                ("source", "deprecatedSource", "source"),
            ] {
                if !is_zero(ev.get(core, events)) {
                    errs.push(invalid(field, &Value::Null, "needs to be unset"));
                }
            }
        }
        Some(old) => {
            let before = Fields::new(old, core);
            if canonical(ev.get("series", "series")) != canonical(before.get("series", "series")) {
                errs.extend(series(&ev));
            }
            for (core, events) in [
                ("involvedObject", "regarding"),
                ("reason", "reason"),
                ("message", "note"),
                ("source", "deprecatedSource"),
                ("firstTimestamp", "deprecatedFirstTimestamp"),
                ("lastTimestamp", "deprecatedLastTimestamp"),
                ("count", "deprecatedCount"),
                ("type", "type"),
                ("eventTime", "eventTime"),
                ("action", "action"),
                ("related", "related"),
                ("reportingComponent", "reportingController"),
                ("reportingInstance", "reportingInstance"),
            ] {
                let new = ev.get(core, events);
                if canonical(new) != canonical(before.get(core, events)) {
                    let field = if core == "reportingComponent" {
                        "reportingController"
                    } else {
                        core
                    };
                    errs.push(invalid(field, new, "field is immutable"));
                }
            }
        }
    }
    errs
}
