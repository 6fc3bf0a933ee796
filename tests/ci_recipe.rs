//! The CI recipe in `examples/ci/`: the GitHub Actions and GitLab CI pipelines call only the
//! recipe's scripts, and the scripts do what the pipelines promise when run as the pipelines
//! run them (a repository with `ci/` and `organizations/`, the tool on PATH, a database URL and
//! a manager in the environment).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_litellm-org-operator");

fn recipe() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/ci")
}

/// Every shell line of a pipeline file: GitHub's `run:`, GitLab's `script`,
/// `before_script`, `after_script`.
fn shell_lines(value: &serde_yaml::Value, out: &mut Vec<String>) {
    match value {
        serde_yaml::Value::Mapping(map) => {
            for (key, child) in map {
                let key = key.as_str().unwrap_or_default();
                let shell = matches!(key, "run" | "script" | "before_script" | "after_script");
                match child {
                    serde_yaml::Value::String(s) if shell => out.push(s.clone()),
                    serde_yaml::Value::Sequence(items) if shell => {
                        out.extend(items.iter().filter_map(|i| i.as_str().map(str::to_string)))
                    }
                    other => shell_lines(other, out),
                }
            }
        }
        serde_yaml::Value::Sequence(items) => items.iter().for_each(|i| shell_lines(i, out)),
        _ => {}
    }
}

/// The recipe's scripts a pipeline runs (`sh ci/NAME.sh ...`).
fn scripts_called(pipeline: &str) -> BTreeSet<String> {
    let text = std::fs::read_to_string(recipe().join(pipeline)).expect("read pipeline");
    let value: serde_yaml::Value = serde_yaml::from_str(&text).expect("pipeline is YAML");
    let mut lines = Vec::new();
    shell_lines(&value, &mut lines);
    assert!(!lines.is_empty(), "{pipeline}: no shell lines found");
    let mut called = BTreeSet::new();
    for line in &lines {
        assert!(
            !line.contains("litellm-org-operator plan")
                && !line.contains("litellm-org-operator apply"),
            "{pipeline}: plan and apply run through the recipe's scripts, not inline: {line}"
        );
        for word in line.split_whitespace() {
            if let Some(name) = word.strip_prefix("ci/") {
                called.insert(name.to_string());
            }
        }
    }
    called
}

#[test]
fn both_pipelines_call_the_recipes_scripts() {
    let scripts: BTreeSet<String> = std::fs::read_dir(recipe())
        .expect("examples/ci")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".sh"))
        .collect();
    assert_eq!(
        scripts,
        ["apply.sh", "plan.sh", "validate.sh"]
            .map(String::from)
            .into_iter()
            .collect()
    );
    for pipeline in ["github-actions.yml", "gitlab-ci.yml"] {
        assert_eq!(scripts_called(pipeline), scripts, "{pipeline}");
    }
}

/// A repository as the pipelines see it: `ci/` holds the scripts, `organizations/` the
/// manifests (the quickstart's), a SQLite database stands in for LiteLLM's.
struct Repository {
    dir: tempfile::TempDir,
}

impl Repository {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        for (from, to) in [
            ("examples/ci", "ci"),
            ("examples/quickstart", "organizations"),
        ] {
            let target = dir.path().join(to);
            std::fs::create_dir_all(&target).expect("mkdir");
            for entry in
                std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(from)).expect("read")
            {
                let path = entry.expect("entry").path();
                std::fs::copy(&path, target.join(path.file_name().expect("name"))).expect("copy");
            }
        }
        Self { dir }
    }

    /// `sh ci/SCRIPT ARGS` with the tool on PATH; `database` false for the job that holds no
    /// credentials. Returns the exit code and the output.
    fn sh(&self, script: &str, args: &[&str], database: bool) -> (i32, String) {
        let bin_dir = Path::new(BIN).parent().expect("bin dir");
        let path = format!(
            "{}:{}",
            bin_dir.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut cmd = Command::new("sh");
        cmd.current_dir(self.dir.path())
            .arg(format!("ci/{script}"))
            .args(args)
            .env("PATH", path)
            .env("LITELLM_ORG_OPERATOR_MANAGER", "repo-a")
            .env_remove("DATABASE_URL");
        if database {
            cmd.env("DATABASE_URL", "sqlite://litellm.db");
        }
        let out = cmd.output().expect("run sh");
        (
            out.status.code().expect("exit code"),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }

    fn read(&self, path: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(path)).expect("read output")
    }

    fn plan(&self) -> (i32, String, serde_json::Value, String) {
        let (code, log) = self.sh("plan.sh", &["organizations", "plan-output"], true);
        let json = serde_json::from_str(&self.read("plan-output/plan.json")).expect("plan.json");
        let schema: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(
                Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/plan-v1.schema.json"),
            )
            .expect("schema"),
        )
        .expect("schema json");
        let validator = jsonschema::validator_for(&schema).expect("compile schema");
        let errors: Vec<String> = validator
            .iter_errors(&json)
            .map(|e| e.to_string())
            .collect();
        assert!(
            errors.is_empty(),
            "plan.json against the schema: {errors:?}"
        );
        (code, self.read("plan-output/plan.md"), json, log)
    }
}

#[test]
fn the_scripts_validate_plan_post_and_apply() {
    let repo = Repository::new();

    // The job without credentials.
    let (code, log) = repo.sh("validate.sh", &["organizations"], false);
    assert_eq!(code, 0, "{log}");
    assert!(
        !repo.dir.path().join("litellm.db").exists(),
        "validate opened no database"
    );

    // A pull request on an empty database: changes pending, the comment written.
    let (code, md, json, log) = repo.plan();
    assert_eq!(code, 0, "{log}");
    assert_eq!(repo.read("plan-output/exit-code").trim(), "2");
    assert!(md.starts_with("### litellm-org-operator plan\n"), "{md}");
    assert_eq!(json["exitCode"], 2);
    assert_eq!(json["manager"], "repo-a");
    assert!(json["summary"]["create"].as_u64().expect("create") > 0);

    // Merged: applied; the next plan has nothing to do.
    let (code, log) = repo.sh("apply.sh", &["organizations"], true);
    assert_eq!(code, 0, "{log}");
    let (code, md, json, log) = repo.plan();
    assert_eq!(code, 0, "{log}");
    assert_eq!(repo.read("plan-output/exit-code").trim(), "0");
    assert_eq!(json["exitCode"], 0);
    assert!(md.contains("No changes"), "{md}");

    // A pull request removing the members: the deletes lead the comment, in bold.
    std::fs::remove_file(repo.dir.path().join("organizations/members.yaml")).expect("rm");
    let (code, md, json, log) = repo.plan();
    assert_eq!(code, 0, "{log}");
    assert_eq!(json["exitCode"], 2);
    // Three memberships and the two member budgets; carol's membership says Retain, so the
    // prune releases it and leaves the row.
    assert_eq!(json["summary"]["delete"], 5, "{json}");
    let first_section = md.split("\n#### ").nth(1).expect("a section");
    assert!(first_section.contains("\n- **delete membership"), "{md}");

    // A pull request with a broken manifest: validate fails; the plan job fails too and its
    // comment carries the error.
    std::fs::write(
        repo.dir.path().join("organizations/broken.yaml"),
        "apiVersion: litellm.dev/v1alpha1\nkind: Organization\nmetadata:\n  name: broken\nspec:\n  budget:\n    maxBudget: -1\n",
    )
    .expect("write");
    let (code, log) = repo.sh("validate.sh", &["organizations"], false);
    assert_eq!(code, 1, "{log}");
    assert!(log.contains("spec.budget.maxBudget"), "{log}");
    let (code, md, json, log) = repo.plan();
    assert_eq!(code, 1, "{log}");
    assert_eq!(repo.read("plan-output/exit-code").trim(), "1");
    assert_eq!(json["exitCode"], 1);
    assert!(
        md.contains("#### Errors") && md.contains("spec.budget.maxBudget"),
        "{md}"
    );
    assert!(json["prune"]["refused"].is_string(), "{json}");
}
