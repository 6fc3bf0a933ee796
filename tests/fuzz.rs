//! Property tests: arbitrary text and arbitrary JSON fed to the manifest parser and the
//! validator never panic (and every rejected object carries a message).

use std::path::Path;

use litellm_org_operator::cli::manifest::ManifestSet;
use litellm_org_operator::engine::{DEFAULT_ACTOR, DesiredMember, DesiredOrganization, ObjectKey};
use proptest::prelude::*;
use serde_json::{Value, json};

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        "[a-zA-Z0-9@._ -]{0,12}".prop_map(Value::from),
        prop_oneof![
            Just("org_admin"),
            Just("internal_user"),
            Just("owner"),
            Just("30d"),
            Just("1mo"),
            Just("-1"),
            Just("Retain"),
            Just("a@b.c")
        ]
        .prop_map(Value::from),
    ];
    let keys = prop_oneof![
        Just("alias"),
        Just("organizationId"),
        Just("models"),
        Just("budget"),
        Just("budgetRef"),
        Just("budgetId"),
        Just("maxBudget"),
        Just("softBudget"),
        Just("tpmLimit"),
        Just("rpmLimit"),
        Just("maxParallelRequests"),
        Just("budgetDuration"),
        Just("modelMaxBudget"),
        Just("budgetLimit"),
        Just("timePeriod"),
        Just("metadata"),
        Just("deletionPolicy"),
        Just("organizationRef"),
        Just("name"),
        Just("user"),
        Just("userId"),
        Just("email"),
        Just("role"),
        Just("maxBudgetInOrganization"),
        Just("litellm-org-operator"),
        Just("x")
    ]
    .prop_map(str::to_string);
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(keys.clone(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn check_set(set: &ManifestSet) {
    for e in &set.errors {
        assert!(!e.message.is_empty());
    }
    for o in &set.organizations {
        let key = ObjectKey::new("ns", o.object.metadata.name.clone().unwrap_or_default());
        if let Err(e) = DesiredOrganization::from_spec(key, &o.object.spec, DEFAULT_ACTOR) {
            assert!(!e.to_string().is_empty());
        }
    }
    for m in &set.members {
        let key = ObjectKey::new("ns", m.object.metadata.name.clone().unwrap_or_default());
        if let Err(e) = DesiredMember::from_spec(key, &m.object.spec) {
            assert!(!e.to_string().is_empty());
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn arbitrary_text_never_panics(text in "(?s).{0,400}") {
        let mut set = ManifestSet::default();
        set.add_text(Path::new("fuzz.yaml"), &text);
        set.add_text(Path::new("fuzz.json"), &text);
        check_set(&set);
    }

    #[test]
    fn yaml_shaped_text_never_panics(
        lines in prop::collection::vec(
            prop_oneof![
                Just("apiVersion: litellm.dev/v1alpha1".to_string()),
                Just("kind: Organization".to_string()),
                Just("kind: OrganizationMember".to_string()),
                Just("metadata: {name: a}".to_string()),
                Just("---".to_string()),
                Just("spec:".to_string()),
                "  [a-zA-Z]{1,8}: [-0-9a-z.\\[\\]{}:]{0,8}",
                "[ :\\[\\]{}'\"&*!|>-]{0,6}",
            ],
            0..12,
        )
    ) {
        let mut set = ManifestSet::default();
        set.add_text(Path::new("fuzz.yaml"), &lines.join("\n"));
        check_set(&set);
    }

    /// However broken some documents of a stream are, every other one is read and every
    /// broken one is reported: nothing is dropped silently (a dropped object would be pruned).
    #[test]
    fn every_document_is_read_or_reported(
        docs in prop::collection::vec(
            prop_oneof![
                Just(None),
                Just(Some("alias: [unclosed")),
                Just(Some("spec: {alias: x")),
                Just(Some("metadata: {name: a}\n  bad: indentation")),
                Just(Some("\"unterminated")),
                Just(Some("key: 'x")),
                Just(Some("a: 1\na: 2")),
                Just(Some("x: .nan")),
            ],
            0..10,
        ),
        bom in any::<bool>(),
    ) {
        let mut text = if bom { "\u{feff}".to_string() } else { String::new() };
        let mut valid = 0;
        let mut broken = 0;
        for (i, doc) in docs.iter().enumerate() {
            match doc {
                None => {
                    valid += 1;
                    text.push_str(&format!(
                        "apiVersion: litellm.dev/v1alpha1\nkind: Organization\nmetadata: {{name: o{i}}}\nspec: {{}}\n"
                    ));
                }
                Some(garbage) => {
                    broken += 1;
                    text.push_str(&format!("apiVersion: litellm.dev/v1alpha1\nkind: Organization\n{garbage}\n"));
                }
            }
            text.push_str("---\n");
        }
        let mut set = ManifestSet::default();
        set.add_text(Path::new("stream.yaml"), &text);
        prop_assert_eq!(set.organizations.len(), valid, "{:?}", set.errors);
        prop_assert_eq!(set.errors.len(), broken, "{:?}", set.errors);
        check_set(&set);
    }

    #[test]
    fn arbitrary_specs_never_panic(spec in arb_json(), kind in prop_oneof![Just("Organization"), Just("OrganizationMember")]) {
        let doc = json!({
            "apiVersion": "litellm.dev/v1alpha1",
            "kind": kind,
            "metadata": {"name": "fuzzed"},
            "spec": spec,
        });
        let mut set = ManifestSet::default();
        set.add_text(Path::new("fuzz.json"), &doc.to_string());
        prop_assert_eq!(set.errors.len() + set.len(), 1);
        check_set(&set);
    }
}
