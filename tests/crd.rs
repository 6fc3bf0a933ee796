//! The committed CRDs match what `crd` generates, and keep the shape the apiserver needs.

use litellm_org_operator::crd::{crds, crds_yaml};

const COMMITTED: &str = include_str!("../crds/litellm.dev.yaml");

#[test]
fn committed_crds_match_generated() {
    let generated = crds_yaml().expect("serialize");
    assert!(
        generated == COMMITTED,
        "crds/litellm.dev.yaml is stale: run `cargo run -- crd > crds/litellm.dev.yaml` and commit it"
    );
}

fn walk(v: &serde_json::Value, path: &str, found: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            if m.get("additionalProperties") == Some(&serde_json::Value::Bool(false)) {
                found.push(path.to_string());
            }
            for (k, child) in m {
                walk(child, &format!("{path}.{k}"), found);
            }
        }
        serde_json::Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                walk(child, &format!("{path}[{i}]"), found);
            }
        }
        _ => {}
    }
}

#[test]
fn schemas_are_structural_and_kstatus_ready() {
    for crd in crds() {
        let v = serde_json::to_value(&crd).expect("json");
        let name = crd.metadata.name.clone().unwrap_or_default();
        let schema = &v["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
        let mut closed = Vec::new();
        walk(schema, "", &mut closed);
        assert!(
            closed.is_empty(),
            "{name}: additionalProperties false at {closed:?}"
        );
        let status = &schema["properties"]["status"];
        assert_eq!(
            status["default"],
            serde_json::json!({"observedGeneration": -1}),
            "{name}"
        );
        let conditions = &status["properties"]["conditions"];
        assert_eq!(conditions["x-kubernetes-list-type"], "map", "{name}");
        assert_eq!(
            conditions["x-kubernetes-list-map-keys"],
            serde_json::json!(["type"]),
            "{name}"
        );
        assert_eq!(
            v["spec"]["versions"][0]["subresources"]["status"],
            serde_json::json!({}),
            "{name}"
        );
        assert_eq!(
            v["spec"]["names"]["categories"],
            serde_json::json!(["litellm"]),
            "{name}"
        );
        assert!(
            schema["properties"]["spec"]["x-kubernetes-validations"].is_array(),
            "{name}: CEL rules on spec"
        );
        // No unsigned formats the apiserver does not know.
        let text = v.to_string();
        assert!(!text.contains("\"uint"), "{name}");
    }
}

#[test]
fn organization_schema_bounds() {
    let v = serde_json::to_value(&crds()[0]).expect("json");
    let spec = &v["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
    let budget = &spec["properties"]["budget"]["properties"];
    assert_eq!(budget["maxBudget"]["minimum"], 0.0);
    assert_eq!(
        budget["budgetDuration"]["pattern"],
        "^([1-9][0-9]{0,5}(s|m|h|d)|[1-9][0-9]{0,4}w|1mo|hourly|daily|weekly|monthly)$"
    );
    assert_eq!(spec["properties"]["models"]["maxItems"], 256);
    assert_eq!(spec["properties"]["alias"]["maxLength"], 256);
    let rules = spec["x-kubernetes-validations"].to_string();
    assert!(
        rules.contains("oldSelf.organizationId"),
        "immutability rule"
    );
    assert!(
        rules.contains("has(self.budgetRef)"),
        "exclusive budget rule"
    );
    assert_eq!(
        spec["properties"]["deletionPolicy"]["enum"],
        serde_json::json!(["Delete", "Retain"])
    );
}
