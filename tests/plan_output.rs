//! `plan -o json` and `plan -o markdown`: golden files (the exact output for a fixed history
//! on a fresh SQLite database), and the outputs parsed and checked against each other and
//! against the exit code.
//!
//! The golden files are under `tests/golden/plan/`; after a deliberate change of the output,
//! `UPDATE_GOLDEN=1 cargo test --test plan_output every_format` rewrites them (review the
//! diff; the schema test reads them, so it is left out of that run).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_litellm-org-operator");

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/plan")
}

/// A working folder holding the three manifest sets and a SQLite database with `before`
/// applied by manager `ci`.
struct History {
    dir: tempfile::TempDir,
}

impl History {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        for set in ["before", "after", "invalid"] {
            let target = dir.path().join(set);
            std::fs::create_dir_all(&target).expect("mkdir");
            for entry in std::fs::read_dir(golden_dir().join(set)).expect("golden set") {
                let path = entry.expect("entry").path();
                std::fs::copy(&path, target.join(path.file_name().expect("name"))).expect("copy");
            }
        }
        let history = Self { dir };
        let (code, out, err) = history.run(&["apply", "-f", "before"]);
        assert_eq!(code, 0, "{out}{err}");
        history
    }

    /// Run with the database and manager `ci`: (exit code, stdout, stderr).
    fn run(&self, args: &[&str]) -> (i32, String, String) {
        let out = Command::new(BIN)
            .current_dir(self.dir.path())
            .args(args)
            .env("DATABASE_URL", "sqlite://plans.db")
            .env("LITELLM_ORG_OPERATOR_MANAGER", "ci")
            .env_remove("NO_COLOR")
            .output()
            .expect("run the binary");
        (
            out.status.code().expect("exit code"),
            String::from_utf8(out.stdout).expect("utf-8 stdout"),
            String::from_utf8(out.stderr).expect("utf-8 stderr"),
        )
    }
}

/// Compare with the golden file `name`, or write it under `UPDATE_GOLDEN=1`.
fn golden(name: &str, actual: &str) {
    let path = golden_dir().join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).expect("write golden");
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (UPDATE_GOLDEN=1 writes it)", path.display()));
    assert_eq!(
        actual,
        expected,
        "{} differs (UPDATE_GOLDEN=1 cargo test --test plan_output every_format rewrites it after a deliberate change)",
        path.display()
    );
}

/// The three cases: changes with a prune, the same without `--prune` (the hint), and
/// objects with errors.
const CASES: &[(&str, &[&str], i32)] = &[
    ("prune", &["plan", "-f", "after", "--prune"], 2),
    ("hint", &["plan", "-f", "after"], 2),
    ("invalid", &["plan", "-f", "invalid"], 1),
];

#[test]
fn every_format_matches_its_golden_file() {
    let history = History::new();
    for (case, args, expected_code) in CASES {
        for (format, extension) in [("text", "txt"), ("json", "json"), ("markdown", "md")] {
            let mut args = args.to_vec();
            args.extend(["-o", format]);
            let (code, stdout, stderr) = history.run(&args);
            assert_eq!(code, *expected_code, "{case} {format}: {stdout}{stderr}");
            golden(&format!("{case}.{extension}"), &stdout);
        }
    }
}

fn counts_of(objects: &Value) -> (u64, u64, u64) {
    let mut c = (0, 0, 0);
    for change in objects
        .as_array()
        .expect("objects")
        .iter()
        .flat_map(|o| o["changes"].as_array().expect("changes"))
    {
        match change["action"].as_str().expect("action") {
            "create" => c.0 += 1,
            "update" => c.1 += 1,
            "delete" => c.2 += 1,
            "claim" | "release" => assert_eq!(change["resource"], "ledger", "{change}"),
            other => panic!("unknown action {other}"),
        }
    }
    c
}

/// The JSON document parses, names its schema, carries the process's exit code, and its
/// summary counts are the changes its objects list.
#[test]
fn json_is_versioned_and_agrees_with_itself_and_the_exit_code() {
    let history = History::new();
    for (case, args, _) in CASES {
        let mut args = args.to_vec();
        args.extend(["-o", "json"]);
        let (code, stdout, _) = history.run(&args);
        let doc: Value = serde_json::from_str(&stdout).expect("one JSON document");
        assert_eq!(doc["schema"], "litellm-org-operator/plan/v1", "{case}");
        assert_eq!(doc["command"], "plan");
        assert_eq!(doc["manager"], "ci");
        assert_eq!(doc["exitCode"], code, "{case}");
        let summary = &doc["summary"];
        let (create, update, delete) = counts_of(&doc["objects"]);
        assert_eq!(summary["create"], create, "{case}");
        assert_eq!(summary["update"], update, "{case}");
        assert_eq!(summary["delete"], delete, "{case}");
        assert_eq!(
            summary["errors"],
            doc["errors"].as_array().expect("errors").len(),
            "{case}"
        );
        assert_eq!(
            summary["changesPending"],
            code == 2,
            "{case}: changesPending is exit code 2"
        );
        for error in doc["errors"].as_array().expect("errors") {
            assert!(error["message"].is_string(), "{error}");
            assert!(error["object"].is_string(), "{error}");
        }
        match *case {
            "prune" => {
                assert_eq!(doc["prune"]["requested"], true);
                assert!(delete >= 2, "the organization and a membership: {doc}");
                let pruned: Vec<&Value> = doc["objects"]
                    .as_array()
                    .expect("objects")
                    .iter()
                    .filter(|o| o["pruned"] == true)
                    .collect();
                assert_eq!(pruned.len(), 2, "legacy and legacy-bob: {pruned:?}");
            }
            "hint" => {
                assert_eq!(delete, 0);
                assert_eq!(doc["prune"]["requested"], false);
                let undeclared = doc["prune"]["undeclared"].as_array().expect("undeclared");
                let names: Vec<&str> = undeclared
                    .iter()
                    .map(|o| o["name"].as_str().expect("name"))
                    .collect();
                assert_eq!(names, ["legacy-bob", "legacy"]);
                assert!(
                    doc["prune"]["hint"]
                        .as_str()
                        .expect("hint")
                        .contains("1 Organization and 1 OrganizationMember"),
                    "{}",
                    doc["prune"]["hint"]
                );
            }
            _ => {
                assert!(doc["objects"].as_array().expect("objects").is_empty());
                assert!(doc["prune"]["undeclared"].as_array().expect("u").is_empty());
                assert!(
                    !summary["text"]
                        .as_str()
                        .expect("text")
                        .starts_with("No changes"),
                    "{summary}"
                );
            }
        }
        // Values keep the text the row holds: the budget update is "500" -> "750".
        if *case == "prune" {
            let budget_update = doc["objects"]
                .as_array()
                .expect("objects")
                .iter()
                .flat_map(|o| o["changes"].as_array().expect("changes"))
                .find(|c| c["action"] == "update" && c["resource"] == "budget")
                .expect("the budget update");
            assert_eq!(
                budget_update["fields"],
                serde_json::json!([{"name": "max_budget", "before": "500", "after": "750"}])
            );
        }
    }
}

/// The Markdown a bot posts: the summary table agrees with the JSON, objects with deletes
/// come first, every delete is bold, and a hostile value stays inside a code span.
#[test]
fn markdown_puts_deletes_first_in_bold_and_values_in_code() {
    let history = History::new();
    let (code, md, _) = history.run(&["plan", "-f", "after", "--prune", "-o", "markdown"]);
    assert_eq!(code, 2);
    let (_, json, _) = history.run(&["plan", "-f", "after", "--prune", "-o", "json"]);
    let doc: Value = serde_json::from_str(&json).expect("json");

    let row = md
        .lines()
        .skip_while(|l| !l.starts_with("|---"))
        .nth(1)
        .expect("the summary table's row");
    let cells: Vec<String> = row
        .trim_matches('|')
        .split('|')
        .map(|c| c.trim().trim_matches('*').to_string())
        .collect();
    let s = &doc["summary"];
    assert_eq!(cells[0], s["create"].to_string(), "{row}");
    assert_eq!(cells[1], s["update"].to_string(), "{row}");
    assert_eq!(cells[2], s["delete"].to_string(), "{row}");
    assert_eq!(cells[4], s["errors"].to_string(), "{row}");
    assert_eq!(cells[5], s["objectsRead"].to_string(), "{row}");

    // Sections in order; each with whether it deletes.
    let sections: Vec<(&str, bool)> = md
        .split("\n#### ")
        .skip(1)
        .map(|section| {
            let title = section.lines().next().unwrap_or_default();
            (title, section.contains("\n- **delete "))
        })
        .collect();
    let first_without = sections
        .iter()
        .position(|(_, deletes)| !deletes)
        .unwrap_or(sections.len());
    assert!(first_without >= 2, "{sections:?}");
    assert!(
        sections[first_without..].iter().all(|(_, d)| !d),
        "deletes first: {sections:?}"
    );
    for line in md
        .lines()
        .filter(|l| l.starts_with("- ") && l.contains("delete "))
    {
        assert!(
            line.starts_with("- **delete ") && line.ends_with("**"),
            "{line}"
        );
    }
    // The hostile metadata value is one code span, with its backticks fenced.
    let note = md
        .lines()
        .find(|l| l.contains("metadata.note"))
        .expect("the note's line");
    assert!(
        note.ends_with("_none_ → ``\"@platform-team <b>ship</b> `now` | *bold*\"``"),
        "{note}"
    );
}

/// Text output: the hint names what only `--prune` removes; with `--prune` it is gone.
#[test]
fn text_hint_appears_only_without_prune() {
    let history = History::new();
    let (_, without, _) = history.run(&["plan", "-f", "after"]);
    assert!(
        without.contains("hint: 1 Organization and 1 OrganizationMember that manager \"ci\""),
        "{without}"
    );
    assert!(without.contains("plan --prune --manager ci"), "{without}");
    let (_, with, _) = history.run(&["plan", "-f", "after", "--prune"]);
    assert!(!with.contains("hint:"), "{with}");
    // Once pruned, no hint either.
    let (code, out, err) = history.run(&["apply", "-f", "after", "--prune"]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, after, _) = history.run(&["plan", "-f", "after"]);
    assert_eq!(code, 0, "{after}");
    assert!(!after.contains("hint:"), "{after}");
}

fn plan_schema() -> jsonschema::Validator {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/plan-v1.schema.json");
    let schema: Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("read schema")).expect("json");
    jsonschema::validator_for(&schema).expect("compile the schema")
}

fn schema_errors(validator: &jsonschema::Validator, doc: &Value) -> Vec<String> {
    validator.iter_errors(doc).map(|e| e.to_string()).collect()
}

/// `schemas/plan-v1.schema.json` describes every document the tool prints (each golden file,
/// `apply -o json`, `--output-file json=…`), and it is closed: a field the schema does not
/// know, or one missing, fails.
#[test]
fn every_json_document_follows_the_published_schema() {
    let validator = plan_schema();
    let mut checked = 0;
    for (case, _, _) in CASES {
        let text = std::fs::read_to_string(golden_dir().join(format!("{case}.json")))
            .expect("golden json");
        let doc: Value = serde_json::from_str(&text).expect("json");
        assert_eq!(
            schema_errors(&validator, &doc),
            Vec::<String>::new(),
            "{case}"
        );
        checked += 1;
    }
    let history = History::new();
    let (code, stdout, stderr) = history.run(&[
        "apply",
        "-f",
        "after",
        "--prune",
        "-o",
        "json",
        "--output-file",
        "json=applied.json",
    ]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let doc: Value = serde_json::from_str(&stdout).expect("apply json");
    assert_eq!(doc["command"], "apply");
    assert_eq!(schema_errors(&validator, &doc), Vec::<String>::new());
    let file: Value = serde_json::from_str(
        &std::fs::read_to_string(history.dir.path().join("applied.json")).expect("output file"),
    )
    .expect("file json");
    assert_eq!(file, doc, "the file holds the same run's report");
    checked += 1;
    assert_eq!(checked, 4);

    let mut extra = doc.clone();
    extra["summary"]["unknown"] = Value::from(1);
    assert!(!schema_errors(&validator, &extra).is_empty());
    let mut missing = doc.clone();
    missing["objects"][0]
        .as_object_mut()
        .expect("an object")
        .remove("source");
    assert!(!schema_errors(&validator, &missing).is_empty());
    let mut wrong = doc;
    wrong["objects"][0]["changes"][0]["action"] = Value::from("rename");
    assert!(!schema_errors(&validator, &wrong).is_empty());
}

/// `--output-file FORMAT=PATH` writes other formats of the same run; the stdout format is
/// unchanged, and a malformed value is a usage error (exit 1) naming the fix.
#[test]
fn output_files_hold_the_same_run() {
    let history = History::new();
    let (code, markdown, stderr) = history.run(&[
        "plan",
        "-f",
        "after",
        "-o",
        "markdown",
        "--output-file",
        "json=plan.json",
        "--output-file",
        "text=plan.txt",
    ]);
    assert_eq!(code, 2, "{markdown}{stderr}");
    let read = |name: &str| std::fs::read_to_string(history.dir.path().join(name)).expect(name);
    let (_, json, _) = history.run(&["plan", "-f", "after", "-o", "json"]);
    let (_, text, _) = history.run(&["plan", "-f", "after"]);
    let (_, md_again, _) = history.run(&["plan", "-f", "after", "-o", "markdown"]);
    assert_eq!(read("plan.json"), json);
    assert_eq!(read("plan.txt"), text);
    assert_eq!(markdown, md_again);

    for (value, needle) in [
        ("plan.json", "FORMAT=PATH"),
        ("yaml=plan.yaml", "text, json or markdown"),
        ("json=", "names no file"),
    ] {
        let (code, out, err) = history.run(&["plan", "-f", "after", "--output-file", value]);
        assert_eq!(code, 1, "{value}: {out}{err}");
        assert!(err.contains(needle), "{value}: {err}");
    }
}
