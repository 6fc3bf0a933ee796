//! The emulator as strict as kube-apiserver: server-side apply typing and field ownership
//! (structured-merge-diff), CRD validation (apiextensions-apiserver) and validation ratcheting.
#[path = "support/emulator/mod.rs"]
mod emulator;

use std::time::Duration;

use emulator::Emulator;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ORGS: &str = "/apis/litellm.dev/v1alpha1/namespaces/team/organizations";
const APPLY: &str = "application/apply-patch+yaml";
const MERGE: &str = "application/merge-patch+json";

/// One HTTP/1.1 request with `Connection: close`: status and the JSON body.
async fn http(
    emu: &Emulator,
    method: &str,
    path: &str,
    content_type: &str,
    body: Value,
) -> (u16, Value) {
    let body = if body.is_null() {
        String::new()
    } else {
        body.to_string()
    };
    let mut stream = tokio::net::TcpStream::connect(emu.addr())
        .await
        .expect("connect to the emulator");
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: emulator\r\nConnection: close\r\nUser-Agent: strict-test/1.0\r\nAccept: application/json\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut raw))
        .await
        .expect("the emulator answered in time")
        .expect("read");
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, rest) = text.split_once("\r\n\r\n").expect("an HTTP response");
    let code: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status code");
    (code, serde_json::from_str(rest).unwrap_or(Value::Null))
}

async fn started() -> Emulator {
    let emu = Emulator::start().await;
    emu.create_namespace("team");
    emu
}

fn org(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "litellm.dev/v1alpha1", "kind": "Organization", "metadata": {"name": name}, "spec": spec})
}

async fn apply(
    emu: &Emulator,
    path: &str,
    manager: &str,
    force: bool,
    body: Value,
) -> (u16, Value) {
    let sep = if path.contains('?') { '&' } else { '?' };
    let url = format!(
        "{path}{sep}fieldManager={manager}{}",
        if force { "&force=true" } else { "" }
    );
    http(emu, "PATCH", &url, APPLY, body).await
}

/// The field paths (as `.spec.alias`) the entry of `manager` with `operation` owns.
fn owned(obj: &Value, manager: &str, operation: &str) -> Vec<String> {
    fn walk(node: &Value, prefix: String, out: &mut Vec<String>) {
        let Some(m) = node.as_object() else { return };
        if m.is_empty() || m.contains_key(".") {
            out.push(prefix.clone());
        }
        for (k, child) in m {
            let step = if let Some(f) = k.strip_prefix("f:") {
                format!(".{f}")
            } else if let Some(key) = k.strip_prefix("k:") {
                let key: Value = serde_json::from_str(key).expect("a k: key is JSON");
                let parts: Vec<String> = key
                    .as_object()
                    .expect("object")
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                format!("[{}]", parts.join(","))
            } else if let Some(v) = k.strip_prefix("v:") {
                format!("[={v}]")
            } else {
                continue;
            };
            walk(child, format!("{prefix}{step}"), out);
        }
    }
    let mut out = Vec::new();
    for e in obj["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if e["manager"] == manager && e["operation"] == operation {
            walk(&e["fieldsV1"], String::new(), &mut out);
        }
    }
    out.retain(|p| !p.is_empty());
    out.sort();
    out
}

fn entry<'a>(obj: &'a Value, manager: &str, operation: &str) -> Option<&'a Value> {
    obj["metadata"]["managedFields"]
        .as_array()?
        .iter()
        .find(|e| e["manager"] == manager && e["operation"] == operation)
}

fn condition(t: &str, status: &str) -> Value {
    json!({"type": t, "status": status, "reason": "Test", "message": "m", "lastTransitionTime": "2026-01-01T00:00:00Z"})
}

// --- Item 1: an apply with a field the schema does not declare fails the request. ---

#[tokio::test]
async fn apply_with_an_undeclared_field_fails_whatever_field_validation_says() {
    let emu = started().await;
    for validation in ["Ignore", "Warn", "Strict"] {
        let (code, body) = apply(
            &emu,
            &format!("{ORGS}/bogus?fieldValidation={validation}"),
            "op",
            true,
            org("bogus", json!({"alias": "a", "bogus": 1})),
        )
        .await;
        assert_eq!(code, 500, "{validation}: {body}");
        assert_eq!(
            body["message"],
            "failed to create typed patch object (litellm.dev/v1alpha1, Kind=Organization): .spec.bogus: field not declared in schema",
            "{validation}"
        );
    }
    let (code, _) = http(&emu, "GET", &format!("{ORGS}/bogus"), "", Value::Null).await;
    assert_eq!(code, 404, "the failed apply created nothing");
}

#[tokio::test]
async fn status_apply_with_a_property_the_crd_lacks_fails_and_changes_nothing() {
    let emu = started().await;
    let (code, _) = apply(
        &emu,
        &format!("{ORGS}/o"),
        "op",
        true,
        org("o", json!({"alias": "a"})),
    )
    .await;
    assert_eq!(code, 201);
    let status = json!({"apiVersion": "litellm.dev/v1alpha1", "kind": "Organization", "metadata": {"name": "o"},
        "status": {"observedGeneration": 1, "conditions": [condition("Ready", "True")]}});
    let (code, ok) = apply(
        &emu,
        &format!("{ORGS}/o/status"),
        "op",
        true,
        status.clone(),
    )
    .await;
    assert_eq!(code, 200, "{ok}");
    let mut newer = status.clone();
    newer["status"]["observedGeneration"] = 2.into();
    newer["status"]["newField"] = "x".into();
    let (code, body) = apply(&emu, &format!("{ORGS}/o/status"), "op", true, newer).await;
    assert_eq!(code, 500, "{body}");
    assert_eq!(
        body["message"],
        "failed to create typed patch object (litellm.dev/v1alpha1, Kind=Organization): .status.newField: field not declared in schema"
    );
    let (_, now) = http(&emu, "GET", &format!("{ORGS}/o"), "", Value::Null).await;
    assert_eq!(
        now["status"]["observedGeneration"], 1,
        "nothing of the failed apply was written"
    );
    assert_eq!(
        now["metadata"]["resourceVersion"],
        ok["metadata"]["resourceVersion"]
    );
}

// --- Item 2: managedFields ownership. ---

#[tokio::test]
async fn a_non_forced_apply_that_changes_another_managers_field_conflicts_and_force_takes_it() {
    let emu = started().await;
    let url = format!("{ORGS}/o");
    let (code, _) = apply(&emu, &url, "a", false, org("o", json!({"alias": "one"}))).await;
    assert_eq!(code, 201);
    let (code, body) = apply(&emu, &url, "b", false, org("o", json!({"alias": "two"}))).await;
    assert_eq!(code, 409, "{body}");
    assert_eq!(body["reason"], "Conflict");
    assert_eq!(
        body["message"],
        "Apply failed with 1 conflict: conflict with \"a\": .spec.alias"
    );
    assert_eq!(
        body["details"]["causes"],
        json!([{"type": "FieldManagerConflict", "message": "conflict with \"a\"", "field": ".spec.alias"}])
    );
    let (_, live) = http(&emu, "GET", &url, "", Value::Null).await;
    assert_eq!(
        live["spec"]["alias"], "one",
        "the conflicting apply wrote nothing"
    );

    let (code, body) = apply(&emu, &url, "b", true, org("o", json!({"alias": "two"}))).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["spec"]["alias"], "two");
    assert_eq!(owned(&body, "b", "Apply"), vec![".spec.alias"]);
    assert!(
        owned(&body, "a", "Apply").is_empty(),
        "force took .spec.alias from a: {body}"
    );
    assert!(
        entry(&body, "a", "Apply").is_none(),
        "a manager that owns nothing is dropped"
    );
}

#[tokio::test]
async fn a_field_two_managers_apply_stays_until_both_drop_it() {
    let emu = started().await;
    let url = format!("{ORGS}/o");
    let both = json!({"alias": "same", "models": ["m1"]});
    assert_eq!(
        apply(&emu, &url, "a", false, org("o", both.clone()))
            .await
            .0,
        201
    );
    // The same value is no conflict: the field becomes shared.
    let (code, body) = apply(&emu, &url, "b", false, org("o", json!({"alias": "same"}))).await;
    assert_eq!(code, 200, "{body}");
    assert!(owned(&body, "a", "Apply").contains(&".spec.alias".to_string()));
    assert!(owned(&body, "b", "Apply").contains(&".spec.alias".to_string()));
    // a stops applying alias: b still owns it, so it stays.
    let (code, body) = apply(&emu, &url, "a", false, org("o", json!({"models": ["m1"]}))).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        body["spec"]["alias"], "same",
        "a field another manager owns stays"
    );
    // b stops applying it too: nobody owns it, it goes.
    let (code, body) = apply(&emu, &url, "b", false, org("o", json!({"models": ["m1"]}))).await;
    assert_eq!(code, 200, "{body}");
    assert!(body["spec"].get("alias").is_none(), "{body}");
    // models is an atomic list applied by both with the same value: shared too.
    assert_eq!(owned(&body, "a", "Apply"), vec![".spec.models"]);
    assert_eq!(owned(&body, "b", "Apply"), vec![".spec.models"]);
}

#[tokio::test]
async fn conditions_are_owned_per_type_and_status_entries_carry_the_subresource() {
    let emu = started().await;
    let url = format!("{ORGS}/o");
    assert_eq!(
        apply(&emu, &url, "op", false, org("o", json!({"alias": "a"})))
            .await
            .0,
        201
    );
    let status = |conds: Vec<Value>| json!({"apiVersion": "litellm.dev/v1alpha1", "kind": "Organization", "metadata": {"name": "o"}, "status": {"conditions": conds}});
    let surl = format!("{url}/status");
    let (code, _) = apply(
        &emu,
        &surl,
        "op",
        false,
        status(vec![condition("Ready", "True")]),
    )
    .await;
    assert_eq!(code, 200);
    let (code, body) = apply(
        &emu,
        &surl,
        "other",
        false,
        status(vec![condition("Custom", "True")]),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let types: Vec<&str> = body["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, vec!["Ready", "Custom"]);
    let e = entry(&body, "other", "Apply").expect("an Apply entry for other");
    assert_eq!(e["subresource"], "status");
    assert!(
        e["fieldsV1"]["f:status"]["f:conditions"]["k:{\"type\":\"Custom\"}"]["."].is_object(),
        "{e}"
    );
    assert!(
        entry(&body, "op", "Apply").is_some_and(|e| e.get("subresource").is_none()),
        "the main apply entry has no subresource"
    );
    // Changing another manager's condition conflicts on that item's field only.
    let (code, body) = apply(
        &emu,
        &surl,
        "other",
        false,
        status(vec![
            condition("Custom", "True"),
            condition("Ready", "False"),
        ]),
    )
    .await;
    assert_eq!(code, 409, "{body}");
    assert_eq!(
        body["message"],
        "Apply failed with 1 conflict: conflict with \"op\": .status.conditions[type=\"Ready\"].status"
    );
    // The owner removes its own condition by no longer applying it; the other one stays.
    let (code, body) = apply(&emu, &surl, "other", false, status(vec![])).await;
    assert_eq!(code, 200, "{body}");
    let types: Vec<&str> = body["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, vec!["Ready"], "only the condition other owned went");
}

#[tokio::test]
async fn non_apply_writes_record_update_entries_that_take_the_fields_they_change() {
    let emu = started().await;
    let url = format!("{ORGS}/o");
    assert_eq!(
        apply(
            &emu,
            &url,
            "a",
            false,
            org("o", json!({"alias": "one", "models": ["x"]}))
        )
        .await
        .0,
        201
    );
    // A merge patch by another manager takes .spec.alias (an Update is always forced).
    let (code, body) = http(
        &emu,
        "PATCH",
        &format!("{url}?fieldManager=patcher"),
        MERGE,
        json!({"spec": {"alias": "two"}}),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let e = entry(&body, "patcher", "Update").expect("an Update entry");
    assert_eq!(e["apiVersion"], "litellm.dev/v1alpha1");
    assert_eq!(owned(&body, "patcher", "Update"), vec![".spec.alias"]);
    assert_eq!(owned(&body, "a", "Apply"), vec![".spec.models"]);
    // a applying its old value back now conflicts with the Update manager.
    let (code, conflict) = apply(
        &emu,
        &url,
        "a",
        false,
        org("o", json!({"alias": "one", "models": ["x"]})),
    )
    .await;
    assert_eq!(code, 409, "{conflict}");
    let time = e["time"].as_str().expect("time");
    assert_eq!(
        conflict["message"],
        format!(
            "Apply failed with 1 conflict: conflict with \"patcher\" using litellm.dev/v1alpha1 at {time}: .spec.alias"
        )
    );
    // A JSON patch without fieldManager is recorded under the User-Agent's product name.
    let (code, body) = http(
        &emu,
        "PATCH",
        &url,
        "application/json-patch+json",
        json!([{"op": "replace", "path": "/spec/models", "value": ["y"]}]),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(owned(&body, "strict-test", "Update"), vec![".spec.models"]);
    assert!(
        entry(&body, "a", "Apply").is_none(),
        "a lost its last field: {body}"
    );
    // A PUT of status records an Update entry for the status subresource.
    let mut put = body.clone();
    put["status"] = json!({"observedGeneration": 5});
    let (code, body) = http(
        &emu,
        "PUT",
        &format!("{url}/status?fieldManager=writer"),
        "application/json",
        put,
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let e = entry(&body, "writer", "Update").expect("an Update entry for the status write");
    assert_eq!(e["subresource"], "status");
    assert!(
        owned(&body, "writer", "Update").contains(&".status.observedGeneration".to_string()),
        "{body}"
    );
}

#[tokio::test]
async fn a_create_records_the_creators_update_entry() {
    let emu = started().await;
    let (code, body) = http(
        &emu,
        "POST",
        &format!("{ORGS}?fieldManager=creator"),
        "application/json",
        org("o", json!({"alias": "a"})),
    )
    .await;
    assert_eq!(code, 201, "{body}");
    let owned = owned(&body, "creator", "Update");
    assert!(owned.contains(&".spec.alias".to_string()), "{owned:?}");
}

// The lease race: kube-lease-manager relies on the 409 of a non-forced apply.

#[tokio::test]
async fn two_lease_managers_racing_on_one_lease_end_with_exactly_one_holder() {
    let emu = started().await;
    let client = emu.client();
    let leases = 8;
    let mut checks = Vec::new();
    for i in 0..leases {
        let name = format!("race-{i}");
        let mut managers = Vec::new();
        for who in ["left", "right"] {
            let manager =
                kube_lease_manager::LeaseManagerBuilder::new(client.clone(), name.clone())
                    .with_namespace("team")
                    .with_identity(format!("{who}-{i}"))
                    .with_duration(600)
                    .with_grace(10)
                    .build()
                    .await
                    .expect("a lease manager");
            managers.push(manager);
        }
        checks.push((name, managers));
    }
    // Both managers of a lease saw it free; now they race.
    let checks: Vec<_> = checks
        .into_iter()
        .map(|(name, managers)| {
            let tasks: Vec<_> = managers
                .into_iter()
                .map(|manager| {
                    tokio::spawn(async move {
                        let held = manager.changed().await.expect("changed");
                        (held, manager)
                    })
                })
                .collect();
            (name, tasks)
        })
        .collect();
    let api: kube::Api<k8s_openapi::api::coordination::v1::Lease> =
        kube::Api::namespaced(client.clone(), "team");
    for (name, tasks) in checks {
        // The first manager to report a change holds the lease.
        let (first, index, rest) = futures::future::select_all(tasks).await;
        let (held, _manager) = first.expect("task");
        assert!(held, "{name}: the first change is an acquisition");
        let lease = api.get(&name).await.expect("lease");
        let holder = lease
            .spec
            .and_then(|s| s.holder_identity)
            .expect("a holder");
        let winner = if index == 0 { "left" } else { "right" };
        assert!(
            holder.starts_with(winner),
            "{name}: the manager that reported holding it is the holder ({holder})"
        );
        // Every holderIdentity the lease ever had: one, since the lease never expired.
        let holders: std::collections::BTreeSet<String> = {
            let st = emu.state();
            st.history
                .iter()
                .filter(|c| {
                    c.object["metadata"]["name"] == name.as_str() && c.object["kind"] == "Lease"
                })
                .filter_map(|c| {
                    c.object["spec"]["holderIdentity"]
                        .as_str()
                        .map(str::to_string)
                })
                .collect()
        };
        assert_eq!(
            holders.len(),
            1,
            "{name}: the lease changed hands while held: {holders:?}"
        );
        for t in rest {
            t.abort();
        }
    }
}

// --- Item 3: CRDs are validated on create and update. ---

const CRDS: &str = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions";

/// A CRD `widgets.example.com` with `spec` of the given schema.
fn crd(spec: Value) -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com",
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList"},
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {"spec": spec}}},
            }],
        },
    })
}

const SPEC: &str = "spec.versions[0].schema.openAPIV3Schema.properties[spec]";

async fn create_crd(emu: &Emulator, spec: Value) -> (u16, Value) {
    http(emu, "POST", CRDS, "application/json", crd(spec)).await
}

fn causes(body: &Value) -> Vec<String> {
    body["details"]["causes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            format!(
                "{}: {}",
                c["field"].as_str().unwrap_or(""),
                c["message"].as_str().unwrap_or("")
            )
        })
        .collect()
}

#[tokio::test]
async fn a_crd_with_a_non_structural_schema_is_refused() {
    let emu = started().await;
    let (code, body) = create_crd(
        &emu,
        json!({"type": "object", "properties": {"size": {"description": "no type"}}}),
    )
    .await;
    assert_eq!(code, 422, "{body}");
    assert_eq!(
        body["message"],
        format!(
            "CustomResourceDefinition.apiextensions.k8s.io \"widgets.example.com\" is invalid: {SPEC}.properties[size].type: Required value: must not be empty for specified object fields"
        )
    );
    let (code, body) = create_crd(&emu, json!({"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": {"type": "string"}})).await;
    assert_eq!(code, 422, "{body}");
    assert_eq!(
        causes(&body),
        vec![format!(
            "{SPEC}.additionalProperties: Forbidden: additionalProperties and properties are mutual exclusive"
        )]
    );
    let (code, body) = create_crd(&emu, json!({"type": "array"})).await;
    assert_eq!(code, 422, "{body}");
    assert_eq!(
        causes(&body),
        vec![format!("{SPEC}.items: Required value: must be specified")]
    );
    // The refused CRDs were not registered.
    let (code, _) = http(
        &emu,
        "GET",
        "/apis/example.com/v1/namespaces/team/widgets",
        "",
        Value::Null,
    )
    .await;
    assert_eq!(code, 404);
}

#[tokio::test]
async fn defaults_must_have_the_right_type_and_be_valid() {
    let emu = started().await;
    let (code, body) = create_crd(&emu, json!({"type": "object", "properties": {"replicas": {"type": "integer", "default": "three"}}})).await;
    assert_eq!(code, 422, "{body}");
    let at = format!("{SPEC}.properties[replicas].default");
    assert_eq!(
        causes(&body),
        vec![format!(
            "{at}: Invalid value: \"three\": {at} in body must be of type integer: \"string\""
        )]
    );
    let (code, body) = create_crd(&emu, json!({"type": "object", "properties": {"replicas": {"type": "integer", "minimum": 1, "default": 0}}})).await;
    assert_eq!(code, 422, "{body}");
    assert_eq!(
        causes(&body),
        vec![format!(
            "{at}: Invalid value: 0: {at} in body should be greater than or equal to 1"
        )]
    );
    let (code, body) = create_crd(&emu, json!({"type": "object", "properties": {"replicas": {"type": "integer", "minimum": 1, "default": 2}}})).await;
    assert_eq!(code, 201, "a valid default is accepted: {body}");
}

#[tokio::test]
async fn list_map_keys_must_be_required_or_defaulted() {
    let emu = started().await;
    let list = |required: Value| {
        json!({"type": "object", "properties": {"ports": {
            "type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
            "items": {"type": "object", "required": required, "properties": {"name": {"type": "string"}, "port": {"type": "integer"}}},
        }}})
    };
    let (code, body) = create_crd(&emu, list(json!(["port"]))).await;
    assert_eq!(code, 422, "{body}");
    assert_eq!(
        causes(&body),
        vec![format!(
            "{SPEC}.properties[ports].items.properties[name].default: Required value: this property is in x-kubernetes-list-map-keys, so it must have a default or be a required property"
        )]
    );
    let (code, body) = create_crd(&emu, list(json!(["name"]))).await;
    assert_eq!(code, 201, "{body}");
}

#[tokio::test]
async fn cel_rules_must_compile_against_declared_fields_and_fit_the_cost_budget() {
    let emu = started().await;
    let (code, body) = create_crd(
        &emu,
        json!({"type": "object", "properties": {"replicas": {"type": "integer"}},
        "x-kubernetes-validations": [{"rule": "self.nonExistingField > 0"}]}),
    )
    .await;
    assert_eq!(code, 422, "{body}");
    assert_eq!(
        causes(&body),
        vec![format!(
            "{SPEC}.x-kubernetes-validations[0].rule: Invalid value: apiextensions.ValidationRule{{Rule:\"self.nonExistingField > 0\", Message:\"\", MessageExpression:\"\", Reason:(*apiextensions.FieldValueErrorReason)(nil), FieldPath:\"\", OptionalOldSelf:(*bool)(nil)}}: compilation failed: ERROR: <input>:1:5: undefined field 'nonExistingField'"
        )]
    );
    // A rule over every item of a list without maxItems, on strings without maxLength.
    let names = |bounds: Value| {
        let mut items = json!({"type": "string"});
        let mut list = json!({"type": "array", "x-kubernetes-validations": [{"rule": "self.all(n, n.matches('^[a-z]+$'))"}]});
        if let Some(b) = bounds.as_object() {
            if let Some(l) = b.get("maxLength") {
                items["maxLength"] = l.clone();
            }
            if let Some(n) = b.get("maxItems") {
                list["maxItems"] = n.clone();
            }
        }
        list["items"] = items;
        json!({"type": "object", "properties": {"names": list}})
    };
    let (code, body) = create_crd(&emu, names(Value::Null)).await;
    assert_eq!(code, 422, "{body}");
    let found = causes(&body);
    assert!(
        found.contains(&format!("{SPEC}.properties[names].x-kubernetes-validations[0].rule: Forbidden: estimated rule cost exceeds budget by factor of more than 100x (try simplifying the rule, or adding maxItems, maxProperties, and maxLength where arrays, maps, and strings are declared)")),
        "{found:?}"
    );
    let (code, body) = create_crd(&emu, names(json!({"maxItems": 64, "maxLength": 63}))).await;
    assert_eq!(code, 201, "bounded, the same rule fits: {body}");
}

#[tokio::test]
async fn crd_updates_are_validated_too() {
    let emu = started().await;
    let (code, created) = create_crd(
        &emu,
        json!({"type": "object", "properties": {"size": {"type": "integer"}}}),
    )
    .await;
    assert_eq!(code, 201, "{created}");
    let (code, body) = http(&emu, "PATCH", &format!("{CRDS}/widgets.example.com"), MERGE,
        json!({"spec": {"versions": [{"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": {"type": "object", "properties": {"spec": {"type": "object", "properties": {"size": {"default": 1}}}}}}}]}})).await;
    assert_eq!(code, 422, "{body}");
    assert_eq!(
        causes(&body),
        vec![format!(
            "{SPEC}.properties[size].type: Required value: must not be empty for specified object fields"
        )]
    );
}

#[tokio::test]
async fn kubectl_shows_the_crd_validation_error() {
    let kubectl = std::env::var("KUBECTL")
        .expect("KUBECTL is set (source .tools/env.sh): this test runs the real kubectl");
    let emu = started().await;
    let file = emu.dir().join("bad-crd.json");
    std::fs::write(
        &file,
        crd(json!({"type": "object", "properties": {"size": {"description": "no type"}}}))
            .to_string(),
    )
    .expect("write");
    let out = tokio::process::Command::new(kubectl)
        .args(["apply", "--server-side", "-f"])
        .arg(&file)
        .env("KUBECONFIG", emu.kubeconfig_path())
        .env("KUBECACHEDIR", emu.dir().join("cache"))
        .env("HOME", emu.dir())
        .output()
        .await
        .expect("kubectl");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(&format!("The CustomResourceDefinition \"widgets.example.com\" is invalid: {SPEC}.properties[size].type: Required value: must not be empty for specified object fields")),
        "{stderr}"
    );
}

// --- Item 5: validation ratcheting. ---

#[tokio::test]
async fn an_update_that_keeps_an_invalid_value_unchanged_is_accepted() {
    let emu = started().await;
    let (code, body) = create_crd(&emu, json!({"type": "object", "properties": {"name": {"type": "string"}, "size": {"type": "integer"}}})).await;
    assert_eq!(code, 201, "{body}");
    let widgets = "/apis/example.com/v1/namespaces/team/widgets";
    let widget = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"name": "too-long", "size": 1}});
    let (code, body) = http(&emu, "POST", widgets, "application/json", widget).await;
    assert_eq!(code, 201, "{body}");
    // The schema tightens: name gets a maxLength and a CEL rule the stored value breaks.
    let (code, body) = http(&emu, "PATCH", &format!("{CRDS}/widgets.example.com"), MERGE,
        json!({"spec": {"versions": [{"name": "v1", "served": true, "storage": true, "subresources": {"status": {}}, "schema": {"openAPIV3Schema": {"type": "object", "properties": {"spec": {"type": "object", "properties": {
            "name": {"type": "string", "maxLength": 4, "x-kubernetes-validations": [{"rule": "self.startsWith('w')", "message": "must start with w"}]},
            "size": {"type": "integer"}}}}}}}]}})).await;
    assert_eq!(code, 200, "{body}");
    // Changing another field: the unchanged invalid name is ratcheted.
    let (code, body) = http(
        &emu,
        "PATCH",
        &format!("{widgets}/w"),
        MERGE,
        json!({"spec": {"size": 2}}),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["spec"]["size"], 2);
    // Changing the name itself to another invalid value is refused, by both checks.
    let (code, body) = http(
        &emu,
        "PATCH",
        &format!("{widgets}/w"),
        MERGE,
        json!({"spec": {"name": "still-long"}}),
    )
    .await;
    assert_eq!(code, 422, "{body}");
    assert_eq!(
        causes(&body),
        vec!["spec.name: Too long: may not be more than 4 bytes".to_string()]
    );
    let (code, body) = http(
        &emu,
        "PATCH",
        &format!("{widgets}/w"),
        MERGE,
        json!({"spec": {"name": "abc"}}),
    )
    .await;
    assert_eq!(code, 422, "{body}");
    assert_eq!(
        causes(&body),
        vec!["spec.name: Invalid value: \"abc\": must start with w".to_string()]
    );
    // A new object gets no ratcheting.
    let (code, _) = http(&emu, "POST", widgets, "application/json", json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "v"}, "spec": {"name": "too-long"}})).await;
    assert_eq!(code, 422);
}
