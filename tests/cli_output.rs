//! What `plan` and `apply` print for a reviewer: ledger lines only with `-v`, counts that
//! agree between `plan` and the `apply` that follows, singular and plural nouns.

use std::path::Path;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_litellm-org-operator");

fn run(dir: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let out: Output = Command::new(BIN)
        .current_dir(dir)
        .args(args)
        .env_remove("DATABASE_URL")
        .env_remove("LITELLM_ORG_OPERATOR_MANAGER")
        .output()
        .expect("run the binary");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn copy_quickstart(dir: &Path) {
    let target = dir.join("quickstart");
    std::fs::create_dir_all(&target).expect("mkdir");
    for entry in std::fs::read_dir("examples/quickstart").expect("examples") {
        let p = entry.expect("entry").path();
        std::fs::copy(&p, target.join(p.file_name().expect("name"))).expect("copy");
    }
}

/// The counts of the last line: `(create, change, delete)` after `prefix`.
fn counts(stdout: &str, prefix: &str) -> (usize, usize, usize) {
    let line = stdout
        .lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no line starting with {prefix:?}: {stdout}"));
    let numbers: Vec<usize> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .take(3)
        .map(|s| s.parse().expect("number"))
        .collect();
    (numbers[0], numbers[1], numbers[2])
}

/// On a fresh database `plan` counts exactly what `apply` then writes; the ledger lines show
/// only with `-v`, and every object with a change is still listed without it.
#[test]
fn plan_counts_agree_with_apply_and_ledger_lines_need_verbose() {
    let dir = tempfile::tempdir().expect("tempdir");
    copy_quickstart(dir.path());
    let (code, plain, stderr) = run(dir.path(), &["plan", "-f", "quickstart"]);
    assert_eq!(code, Some(2), "{plain}{stderr}");
    assert!(!plain.contains("= ledger:"), "{plain}");
    assert!(
        plain.contains("Organization ai-platform/research:"),
        "{plain}"
    );
    assert!(
        plain.contains("+ membership user alice in org-finance-2024"),
        "{plain}"
    );
    let (code, verbose, _) = run(dir.path(), &["plan", "-v", "-f", "quickstart"]);
    assert_eq!(code, Some(2), "{verbose}");
    assert!(
        verbose.contains("= ledger: organization/org-finance-2024 managed by Organization/ai-platform/finance (created)"),
        "{verbose}"
    );
    let planned = counts(&plain, "Plan: ");
    assert_eq!(planned, counts(&verbose, "Plan: "));
    assert!(plain.contains("(6 objects read)"), "{plain}");

    let (code, applied, stderr) = run(dir.path(), &["apply", "-f", "quickstart"]);
    assert_eq!(code, Some(0), "{applied}{stderr}");
    assert!(!applied.contains("= ledger:"), "{applied}");
    assert_eq!(planned, counts(&applied, "Applied: "), "{plain}\n{applied}");
    assert!(planned.0 > 0, "{plain}");
}

/// One object, one error: singular nouns.
#[test]
fn one_object_and_one_error_are_singular() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("org.yaml"),
        "apiVersion: litellm.dev/v1alpha1\nkind: Organization\nmetadata: {name: solo}\nspec: {alias: Solo}\n",
    )
    .expect("write");
    let (code, stdout, stderr) = run(dir.path(), &["plan", "-f", "org.yaml"]);
    assert_eq!(code, Some(2), "{stdout}{stderr}");
    assert!(stdout.contains("(1 object read)."), "{stdout}");
    std::fs::write(
        dir.path().join("org.yaml"),
        "apiVersion: litellm.dev/v1alpha1\nkind: Organization\nmetadata: {name: solo}\nspec: {alias: Solo, budget: {maxBudget: -1}}\n",
    )
    .expect("write");
    let (code, stdout, stderr) = run(dir.path(), &["plan", "-f", "org.yaml"]);
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert!(stderr.ends_with("1 error.\n"), "{stderr}");
    assert!(!stdout.contains("No changes"), "{stdout}");
}
