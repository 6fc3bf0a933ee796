//! The Argo CD health check in `examples/gitops/`: the Lua script gives the kstatus reading of
//! both kinds, and the argocd-cm patch embeds exactly that script for both.
//!
//! Argo CD runs health scripts in gopher-lua, a Lua 5.1, so the script runs here in a vendored
//! Lua 5.1 (mlua): a Lua 5.2+ construct would fail here as it would in Argo CD.

use mlua::{Lua, Value as LuaValue};
use serde_json::{Value, json};

const SCRIPT: &str = "examples/gitops/argocd-health.lua";
const CM_PATCH: &str = "examples/gitops/argocd-cm-patch.yaml";
const KINDS: [&str; 2] = ["Organization", "OrganizationMember"];

fn script() -> String {
    std::fs::read_to_string(SCRIPT).unwrap_or_else(|e| panic!("read {SCRIPT}: {e}"))
}

/// JSON into a Lua value the way Argo CD hands `obj` to the script: objects and arrays become
/// tables (arrays 1-based), numbers are Lua 5.1 numbers (doubles), `null` is nil (absent).
fn to_lua(lua: &Lua, value: &Value) -> LuaValue {
    match value {
        Value::Null => LuaValue::Nil,
        Value::Bool(b) => LuaValue::Boolean(*b),
        Value::Number(n) => LuaValue::Number(n.as_f64().expect("finite number")),
        Value::String(s) => LuaValue::String(lua.create_string(s).expect("lua string")),
        Value::Array(items) => {
            let table = lua.create_table().expect("lua table");
            for (i, item) in items.iter().enumerate() {
                table.raw_set(i + 1, to_lua(lua, item)).expect("set item");
            }
            LuaValue::Table(table)
        }
        Value::Object(map) => {
            let table = lua.create_table().expect("lua table");
            for (k, v) in map {
                table
                    .raw_set(k.as_str(), to_lua(lua, v))
                    .expect("set field");
            }
            LuaValue::Table(table)
        }
    }
}

/// Runs the health script on `obj` in a fresh interpreter; returns (status, message).
fn health_of(source: &str, obj: &Value) -> (String, String) {
    let lua = Lua::new();
    lua.globals()
        .set("obj", to_lua(&lua, obj))
        .expect("set obj");
    let result: mlua::Table = lua
        .load(source)
        .set_name("argocd-health.lua")
        .eval()
        .unwrap_or_else(|e| panic!("health script failed on {obj}: {e}"));
    let status: String = result.get("status").expect("status is a string");
    let message: String = result.get("message").expect("message is a string");
    (status, message)
}

fn object(kind: &str, generation: Option<i64>, status: Option<Value>) -> Value {
    let mut obj = json!({
        "apiVersion": "litellm.dev/v1alpha1",
        "kind": kind,
        "metadata": {"name": "research", "namespace": "ai-platform"},
        "spec": {},
    });
    if let Some(g) = generation {
        obj["metadata"]["generation"] = json!(g);
    }
    if let Some(s) = status {
        obj["status"] = s;
    }
    obj
}

fn cond(kind: &str, status: &str, reason: &str, message: &str) -> Value {
    json!({
        "type": kind, "status": status, "reason": reason, "message": message,
        "observedGeneration": 3, "lastTransitionTime": "2026-01-01T00:00:00Z",
    })
}

fn with_conditions(observed: i64, conditions: Vec<Value>) -> Value {
    json!({"observedGeneration": observed, "conditions": conditions})
}

/// One case of the kstatus reading: what it shows, `metadata.generation`, `status`, and the
/// expected Argo CD status and message ("" to skip the message check).
type Case = (
    &'static str,
    Option<i64>,
    Option<Value>,
    &'static str,
    &'static str,
);

/// Every case of the kstatus reading.
fn cases() -> Vec<Case> {
    let ready = cond("Ready", "True", "Synced", "In sync with the database");
    let not_ready = cond(
        "Ready",
        "False",
        "DatabaseUnavailable",
        "connection refused",
    );
    let stalled = cond(
        "Stalled",
        "True",
        "InvalidSpec",
        "spec.budget: maxBudget must be >= 0",
    );
    let reconciling = cond(
        "Reconciling",
        "True",
        "Progressing",
        "Applying generation 3",
    );
    let paused = cond("Reconciling", "False", "Paused", "Reconciliation is paused");
    let paused_condition = cond(
        "Paused",
        "True",
        "Paused",
        "writes are paused by the litellm.dev/paused annotation",
    );
    let not_reconciling = cond("Reconciling", "False", "Synced", "");
    vec![
        ("no status at all", Some(3), None, "Progressing", ""),
        (
            "status without observedGeneration",
            Some(3),
            Some(json!({"conditions": [ready.clone()]})),
            "Progressing",
            "",
        ),
        (
            "the schema default observedGeneration -1",
            Some(1),
            Some(json!({"observedGeneration": -1})),
            "Progressing",
            "",
        ),
        (
            "a Ready=True status of an older generation",
            Some(4),
            Some(with_conditions(3, vec![ready.clone()])),
            "Progressing",
            "",
        ),
        (
            "Stalled=True",
            Some(3),
            Some(with_conditions(
                3,
                vec![not_ready.clone(), stalled.clone(), not_reconciling.clone()],
            )),
            "Degraded",
            "spec.budget: maxBudget must be >= 0",
        ),
        (
            "Stalled=True wins over Ready=True",
            Some(3),
            Some(with_conditions(3, vec![ready.clone(), stalled.clone()])),
            "Degraded",
            "spec.budget: maxBudget must be >= 0",
        ),
        (
            "Stalled=True without a message gives its reason",
            Some(3),
            Some(with_conditions(
                3,
                vec![cond("Stalled", "True", "Conflict", "")],
            )),
            "Degraded",
            "Conflict",
        ),
        (
            "Ready=True",
            Some(3),
            Some(with_conditions(
                3,
                vec![
                    ready.clone(),
                    not_reconciling.clone(),
                    cond("Stalled", "False", "Synced", ""),
                ],
            )),
            "Healthy",
            "In sync with the database",
        ),
        (
            "Ready=True on an object without metadata.generation",
            None,
            Some(with_conditions(3, vec![ready.clone()])),
            "Healthy",
            "In sync with the database",
        ),
        (
            "Reconciling=True",
            Some(3),
            Some(with_conditions(3, vec![not_ready.clone(), reconciling])),
            "Progressing",
            "Applying generation 3",
        ),
        (
            "Reconciling=False with reason Paused",
            Some(3),
            Some(with_conditions(3, vec![not_ready.clone(), paused.clone()])),
            "Suspended",
            "Reconciliation is paused",
        ),
        (
            "Paused=True wins over Ready=True (a paused object is not kept in sync)",
            Some(3),
            Some(with_conditions(
                3,
                vec![ready.clone(), paused.clone(), paused_condition.clone()],
            )),
            "Suspended",
            "writes are paused by the litellm.dev/paused annotation",
        ),
        (
            "Paused=True after a spec change the operator has not observed",
            Some(4),
            Some(with_conditions(3, vec![ready.clone(), paused_condition])),
            "Suspended",
            "writes are paused by the litellm.dev/paused annotation",
        ),
        (
            "Ready=True with an earlier release's Reconciling=False reason Paused",
            Some(3),
            Some(with_conditions(3, vec![ready.clone(), paused.clone()])),
            "Suspended",
            "Reconciliation is paused",
        ),
        (
            "Ready=False alone",
            Some(3),
            Some(with_conditions(3, vec![not_ready, not_reconciling])),
            "Progressing",
            "connection refused",
        ),
        (
            "a current status with no conditions yet",
            Some(3),
            Some(with_conditions(3, vec![])),
            "Progressing",
            "",
        ),
    ]
}

#[test]
fn health_script_reads_status_as_kstatus_for_both_kinds() {
    let source = script();
    let mut checked = 0;
    for kind in KINDS {
        for (what, generation, status, want_status, want_message) in cases() {
            let obj = object(kind, generation, status);
            let (got_status, got_message) = health_of(&source, &obj);
            assert_eq!(got_status, want_status, "{kind}, {what}: {obj}");
            assert!(!got_message.is_empty(), "{kind}, {what}: empty message");
            if !want_message.is_empty() {
                assert_eq!(got_message, want_message, "{kind}, {what}");
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 2 * cases().len());
}

#[test]
fn health_script_returns_only_argocd_statuses() {
    // The statuses Argo CD knows; anything else shows as Unknown in its UI.
    let known = [
        "Healthy",
        "Progressing",
        "Degraded",
        "Suspended",
        "Missing",
        "Unknown",
    ];
    let source = script();
    for (what, generation, status, _, _) in cases() {
        let (got, _) = health_of(&source, &object("Organization", generation, status));
        assert!(known.contains(&got.as_str()), "{what}: {got}");
    }
}

#[test]
fn argocd_cm_patch_embeds_the_script_for_both_kinds() {
    let source = script();
    let text = std::fs::read_to_string(CM_PATCH).unwrap_or_else(|e| panic!("read {CM_PATCH}: {e}"));
    let cm: Value = serde_yaml::from_str(&text).expect("argocd-cm patch is one YAML document");
    assert_eq!(cm["apiVersion"], "v1");
    assert_eq!(cm["kind"], "ConfigMap");
    assert_eq!(cm["metadata"]["name"], "argocd-cm");
    let data = cm["data"].as_object().expect("data");
    let mut keys: Vec<&str> = data.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "resource.customizations.health.litellm.dev_Organization",
            "resource.customizations.health.litellm.dev_OrganizationMember",
        ]
    );
    for (key, embedded) in data {
        let embedded = embedded.as_str().unwrap_or_default();
        if embedded != source {
            let line = embedded
                .lines()
                .zip(source.lines())
                .position(|(a, b)| a != b)
                .map_or_else(|| "the length".to_string(), |i| format!("line {}", i + 1));
            panic!("{key} in {CM_PATCH} differs from {SCRIPT} at {line}: copy the script in again");
        }
    }
}

#[test]
fn health_script_is_lua_5_1() {
    // gopher-lua has no integer division, bitwise operators or goto; loading (not running)
    // the script in Lua 5.1 is the check that none crept in.
    let lua = Lua::new();
    lua.load(script())
        .set_name("argocd-health.lua")
        .into_function()
        .expect("the script compiles as Lua 5.1");
}
