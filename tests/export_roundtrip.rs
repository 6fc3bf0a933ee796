//! Issue 20, property: for generated hostile strings (YAML 1.1 keywords in any case, numbers
//! in every base, sexagesimal, timestamps, leading and trailing spaces, `~`, `null`, `-`,
//! `?`, `:`, `#`, quotes, unicode, control characters) in organization aliases, models,
//! metadata keys and values and user ids, `export` → read with YAML 1.1 readers (PyYAML and
//! kubectl) gives back every string byte for byte, and `apply` of the export changes nothing
//! in LiteLLM. On both stores.

mod export_support;
mod support;

use std::collections::BTreeMap;

use export_support::{
    adopting_changes_nothing, budget, kubectl_objects, member, organization, pyyaml_documents, run,
    text,
};
use proptest::prelude::*;
use serde_json::{Map, Value, json};
use support::TestDb;

const KEYWORDS: &[&str] = &[
    "y", "yes", "n", "no", "true", "false", "on", "off", "null", "~", "nan", ".nan", "inf", ".inf",
    "-.inf", "+.inf", "<<", "=",
];

const NUMBERS: &[&str] = &[
    "0",
    "-0",
    "+12",
    "017",
    "0o17",
    "0O17",
    "0b1010",
    "0B11",
    "0x1F",
    "0X1f",
    "0x_1F",
    "1_000",
    "1__0",
    "_1",
    "1e5",
    "1E+5",
    "1.0e-3",
    ".5",
    "5.",
    "12e3",
    "1:20",
    "190:20:30",
    "-1:20.5",
    "0x1p-2",
    "1_0.5",
    "0b_1",
    "685_230.15",
    "6.8523015e+5",
];

const TIMESTAMPS: &[&str] = &[
    "2001-12-14",
    "2001-12-14t21:59:43.10-05:00",
    "2001-12-14 21:59:43.10 -5",
    "2002-1-1",
    "2001-12-15T02:59:43.1Z",
];

const PUNCTUATION: &[&str] = &[
    "-", "?", ":", "#", "- x", "? x", ": x", "# x", "a #b", "a: b", "a:b", "&a", "*a", "!a",
    "!!str", "%a", "@a", "`a", "|", ">", "[a", "]", "{a", "}", ",", "'", "\"", "''", "\\", "\\n",
    "---", "...", "--- x",
];

const SPACES_AND_CONTROLS: &[&str] = &[
    " ", "  ", "\t", "\n", "\r\n", "\r", "\u{1}", "\u{7}", "\u{8}", "\u{b}", "\u{c}", "\u{1b}",
    "\u{1f}", "\u{7f}", "\u{80}", "\u{85}", "\u{9b}", "\u{9f}", "\u{a0}", "\u{2028}", "\u{2029}",
    "\u{feff}", "\u{fffe}", "\u{ffff}", "\u{200b}", "\u{202e}",
];

const UNICODE: &[&str] = &[
    "é",
    "ß",
    "日本",
    "😀",
    "Ω",
    "ﬁ",
    "\u{301}",
    "İ",
    "ǅ",
    "\u{e000}",
    "\u{10ffff}",
];

/// A YAML 1.1 keyword with each letter's case chosen by `bits`.
fn keyword() -> impl Strategy<Value = String> {
    (prop::sample::select(KEYWORDS), any::<u32>()).prop_map(|(w, bits)| {
        w.chars()
            .enumerate()
            .map(|(i, c)| {
                if bits >> (i % 32) & 1 == 1 {
                    c.to_ascii_uppercase()
                } else {
                    c
                }
            })
            .collect()
    })
}

fn piece() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => keyword(),
        2 => prop::sample::select(NUMBERS).prop_map(str::to_string),
        1 => prop::sample::select(TIMESTAMPS).prop_map(str::to_string),
        2 => prop::sample::select(PUNCTUATION).prop_map(str::to_string),
        2 => prop::sample::select(SPACES_AND_CONTROLS).prop_map(str::to_string),
        1 => prop::sample::select(UNICODE).prop_map(str::to_string),
        2 => "[a-zA-Z0-9 ._-]{0,6}",
    ]
}

/// Text of one to three pieces: a lone keyword or number as often as a mixture.
fn hostile() -> impl Strategy<Value = String> {
    prop::collection::vec(piece(), 1..4)
        .prop_map(|p| p.concat())
        .prop_filter("not empty", |s| !s.is_empty())
}

/// What one organization holds, and what its member's user id is.
struct Row {
    id: String,
    alias: String,
    models: Vec<String>,
    metadata: Value,
    user: String,
}

fn rows(strings: &[String]) -> Vec<Row> {
    let n = strings.len();
    let mut users = std::collections::HashSet::new();
    (0..n)
        .map(|i| {
            let at = |k: usize| strings[(i + k) % n].clone();
            let mut metadata = Map::new();
            metadata.insert(at(0), json!(at(1)));
            metadata.insert("list".into(), json!([at(2), at(3), {"k": at(4)}]));
            let mut user = at(5);
            while !users.insert(user.clone()) {
                user.push('+');
            }
            Row {
                id: format!("o{i}"),
                alias: at(0),
                models: vec![at(6), at(7)],
                metadata: Value::Object(metadata),
                user,
            }
        })
        .collect()
}

/// Export, read the output with both YAML 1.1 readers and compare every string with what
/// the database holds; then apply the export and check that nothing in LiteLLM changed.
async fn round_trip(db: TestDb, strings: Vec<String>) {
    let rows = rows(&strings);
    budget(&db, "b1").await;
    for r in &rows {
        organization(&db, &r.id, &r.alias, "b1", &r.models, &r.metadata).await;
        member(&db, &r.id, &r.user, None, Some("internal_user")).await;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let url = db.url();
    let out = run(dir.path(), &["export", "--namespace", "p"], &url);
    assert_eq!(
        out.status.code(),
        Some(0),
        "nothing is left out: {}",
        text(&out)
    );
    let file = dir.path().join("adopt.yaml");
    std::fs::write(&file, &out.stdout).expect("write");
    let by_id: BTreeMap<&str, &Row> = rows.iter().map(|r| (r.id.as_str(), r)).collect();
    for (reader, docs) in [
        ("PyYAML", pyyaml_documents(&file)),
        ("kubectl", kubectl_objects(&file)),
    ] {
        let mut orgs = 0;
        let mut users = Vec::new();
        for d in &docs {
            let spec = &d["spec"];
            match d["kind"].as_str() {
                Some("Organization") => {
                    orgs += 1;
                    let id = spec["organizationId"].as_str().expect("organizationId");
                    let r = by_id[id];
                    assert_eq!(spec["alias"], json!(r.alias), "{reader}: alias of {id}");
                    assert_eq!(spec["models"], json!(r.models), "{reader}: models of {id}");
                    assert_eq!(spec["metadata"], r.metadata, "{reader}: metadata of {id}");
                }
                Some("OrganizationMember") => {
                    users.push(spec["user"]["userId"].clone());
                }
                other => panic!("{reader}: unexpected kind {other:?}"),
            }
        }
        assert_eq!(orgs, rows.len(), "{reader}: every organization");
        let mut want: Vec<Value> = rows.iter().map(|r| json!(r.user)).collect();
        want.sort_by_key(|v| v.to_string());
        users.sort_by_key(|v| v.to_string());
        assert_eq!(users, want, "{reader}: every user id");
    }
    adopting_changes_nothing(&db, dir.path(), "adopt.yaml").await;
    let aliases = db
        .strings(r#"SELECT organization_alias FROM "LiteLLM_OrganizationTable" ORDER BY organization_id"#)
        .await;
    let mut want: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| (r.id.as_str(), r.alias.as_str()))
        .collect();
    want.sort();
    assert_eq!(
        aliases,
        want.iter().map(|(_, a)| a.to_string()).collect::<Vec<_>>()
    );
    db.cleanup().await;
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 6,
        max_shrink_iters: 64,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn block_on(f: impl std::future::Future<Output = ()>) {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f);
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn hostile_strings_round_trip_on_sqlite(strings in prop::collection::vec(hostile(), 12..24)) {
        block_on(async { round_trip(TestDb::sqlite().await, strings).await });
    }

    #[test]
    fn hostile_strings_round_trip_on_litellm_schema(strings in prop::collection::vec(hostile(), 12..24)) {
        block_on(async { round_trip(TestDb::litellm().await, strings).await });
    }
}
