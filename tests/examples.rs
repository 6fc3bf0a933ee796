//! Every example manifest is valid: against the generated CRD schema (OpenAPI), against the
//! engine's own validation (which mirrors the CEL rules), and applied as a whole set.

mod support;

use std::path::{Path, PathBuf};

use litellm_org_operator::cli::manifest::ManifestSet;
use litellm_org_operator::cli::offline::{self, RunOptions};
use litellm_org_operator::crd::crds;
use litellm_org_operator::engine::{DEFAULT_ACTOR, DesiredMember, DesiredOrganization, ObjectKey};
use support::TestDb;

fn example_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in walkdir::WalkDir::new("examples").sort_by_file_name() {
        let entry = entry.expect("walk examples");
        let p = entry.path();
        if p.extension()
            .is_some_and(|e| e == "yaml" || e == "yml" || e == "json")
        {
            files.push(p.to_path_buf());
        }
    }
    files
}

/// OpenAPI's `nullable` is not JSON Schema: turn `type: t, nullable: true` into `[t, null]`.
fn to_json_schema(v: &mut serde_json::Value) {
    if let serde_json::Value::Object(m) = v {
        if m.remove("nullable") == Some(serde_json::Value::Bool(true))
            && let Some(serde_json::Value::String(t)) = m.get("type").cloned()
        {
            m.insert("type".into(), serde_json::json!([t, "null"]));
        }
        m.retain(|k, _| !k.starts_with("x-kubernetes"));
        for child in m.values_mut() {
            to_json_schema(child);
        }
    } else if let serde_json::Value::Array(items) = v {
        items.iter_mut().for_each(to_json_schema);
    }
}

fn validator(kind: &str) -> jsonschema::Validator {
    let crd = crds()
        .into_iter()
        .find(|c| c.spec.names.kind == kind)
        .expect("crd");
    let mut schema =
        serde_json::to_value(&crd.spec.versions[0].schema).expect("json")["openAPIV3Schema"]
            .clone();
    to_json_schema(&mut schema);
    // Unknown fields would be pruned by the apiserver; here they are errors.
    jsonschema::validator_for(&schema).expect("compile schema")
}

fn documents(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).expect("read example");
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| {
            let y = <serde_yaml::Value as serde::Deserialize>::deserialize(d).expect("yaml");
            serde_json::to_value(y).expect("json")
        })
        .filter(|v| !v.is_null())
        .collect()
}

#[test]
fn every_example_is_valid_against_the_schema_and_the_engine() {
    let files = example_files();
    assert!(files.len() >= 4, "examples/ holds the starter set");
    let org_schema = validator("Organization");
    let member_schema = validator("OrganizationMember");
    let mut checked = 0;
    for file in &files {
        for doc in documents(file) {
            let kind = doc["kind"].as_str().unwrap_or_default();
            let validator = match kind {
                "Organization" => &org_schema,
                "OrganizationMember" => &member_schema,
                _ => continue,
            };
            let errors: Vec<String> = validator.iter_errors(&doc).map(|e| e.to_string()).collect();
            assert!(errors.is_empty(), "{}: {errors:?}", file.display());
            checked += 1;
        }
        let set = ManifestSet::load(std::slice::from_ref(file));
        assert!(
            set.errors.is_empty(),
            "{}: {:?}",
            file.display(),
            set.errors
        );
        for o in &set.organizations {
            let key = ObjectKey::new(
                o.object.metadata.namespace.clone().unwrap_or_default(),
                o.object.metadata.name.clone().unwrap_or_default(),
            );
            DesiredOrganization::from_spec(key, &o.object.spec, DEFAULT_ACTOR)
                .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        }
        for m in &set.members {
            let key = ObjectKey::new(
                m.object.metadata.namespace.clone().unwrap_or_default(),
                m.object.metadata.name.clone().unwrap_or_default(),
            );
            DesiredMember::from_spec(key, &m.object.spec)
                .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        }
    }
    assert!(checked >= 7, "checked {checked} objects");
}

#[test]
fn the_schema_check_is_not_vacuous() {
    let v = validator("Organization");
    let bad = serde_json::json!({
        "apiVersion": "litellm.dev/v1alpha1", "kind": "Organization",
        "metadata": {"name": "x"},
        "spec": {"budget": {"maxBudget": -1, "budgetDuration": "2mo"}, "models": "gpt-4o"}
    });
    let errors: Vec<String> = v.iter_errors(&bad).map(|e| e.to_string()).collect();
    assert_eq!(errors.len(), 3, "{errors:?}");
}

async fn apply_whole_set(db: &TestDb) {
    db.exec(r#"INSERT INTO "LiteLLM_BudgetTable" (budget_id, max_budget, created_by, updated_by) VALUES ('shared-marketing-budget', 300, 'admin', 'admin')"#).await;
    let set = ManifestSet::load(&[PathBuf::from("examples")]);
    assert!(set.errors.is_empty(), "{:?}", set.errors);
    let engine = db.engine();
    let options = RunOptions {
        apply: true,
        ..Default::default()
    };
    let report = offline::run(&engine, &set, options).await;
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(db.count("LiteLLM_OrganizationTable").await, 3);
    assert_eq!(db.count("LiteLLM_OrganizationMembership").await, 4);
    let before = db.snapshot().await;
    let again = offline::run(&engine, &set, options).await;
    assert!(!again.has_changes() && again.errors.is_empty());
    assert_eq!(db.snapshot().await, before);
}

#[tokio::test]
async fn examples_apply_on_sqlite() {
    let db = TestDb::sqlite().await;
    apply_whole_set(&db).await;
    db.cleanup().await;
}

#[tokio::test]
async fn examples_apply_on_postgres() {
    let db = TestDb::postgres_migrated().await;
    apply_whole_set(&db).await;
    db.cleanup().await;
}
