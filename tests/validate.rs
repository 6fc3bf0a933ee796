//! `validate -f PATH`: every check that needs no database, with no database opened or
//! created, and every error of every object listed.

use std::path::Path;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_litellm-org-operator");

/// Run `validate` with no database configured at all (no `DATABASE_URL`, no `--database`).
fn validate(dir: &Path, path: &Path) -> (Option<i32>, String, String) {
    let out: Output = Command::new(BIN)
        .current_dir(dir)
        .args(["validate", "-f"])
        .arg(path)
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

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Every folder under examples/ validates, and the run leaves no file behind (the default
/// database, `litellm-org-operator.db` in the working directory, is not created).
#[test]
fn every_example_validates_without_a_database() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut checked = 0;
    for entry in std::fs::read_dir(&examples).expect("examples") {
        let path = entry.expect("entry").path();
        let cwd = tempfile::tempdir().expect("tempdir");
        let (code, stdout, stderr) = validate(cwd.path(), &path);
        assert_eq!(code, Some(0), "{}: {stdout}{stderr}", path.display());
        assert!(stdout.starts_with("valid: "), "{stdout}");
        assert_eq!(stdout.lines().count(), 1, "{stdout}");
        assert!(!stderr.contains("error"), "{stderr}");
        assert!(entries(cwd.path()).is_empty(), "{:?}", entries(cwd.path()));
        checked += 1;
    }
    assert!(checked >= 3, "only {checked} example folders");
    let cwd = tempfile::tempdir().expect("tempdir");
    let (_, stdout, _) = validate(cwd.path(), &examples.join("quickstart"));
    assert_eq!(
        stdout,
        "valid: 2 Organization(s), 4 OrganizationMember(s)\n"
    );
}

fn org(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: litellm.dev/v1alpha1\nkind: Organization\nmetadata: {{name: {name}}}\nspec: {spec}\n"
    )
}

fn member(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: litellm.dev/v1alpha1\nkind: OrganizationMember\nmetadata: {{name: {name}}}\nspec: {spec}\n"
    )
}

/// One error of each class, each named with its file, object and field; all in one run.
#[test]
fn every_class_of_error_is_listed_in_one_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let m = dir.path().join("m");
    std::fs::create_dir_all(&m).expect("mkdir");
    let docs = [
        org("Bad_Name", "{alias: X}"),
        org("one", "{alias: One, organizationId: same}"),
        org("two", "{alias: Two, organizationId: same}"),
        org("typo", "{alais: Y}"),
        member(
            "orphan",
            "{organizationRef: {name: nowhere}, user: {email: a@example.com}, role: internal_user}",
        ),
        member(
            "noemail",
            "{organizationRef: {name: one}, user: {email: not-an-email}, role: internal_user}",
        ),
        org("one", "{alias: Again}"),
    ];
    std::fs::write(m.join("a.yaml"), docs.join("---\n")).expect("write");
    std::fs::write(m.join("broken.yaml"), "a: [unclosed\n").expect("write");

    let (code, stdout, stderr) = validate(dir.path(), Path::new("m"));
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("error: "))
        .collect();
    let expected = [
        // manifest parsing
        "broken.yaml (document 1): invalid YAML",
        // schema
        "(document 4): Organization default/typo: spec.alais: unknown field `alais`",
        // duplicate names
        "(document 7): Organization default/one: metadata.name: defined more than once",
        // the CRD's rules
        "(document 1): Organization default/Bad_Name: metadata.name: Invalid value",
        "(document 6): OrganizationMember default/noemail: spec.user.email:",
        // across objects
        "(document 3): Organization default/two: spec.organizationId: organization same is already claimed by Organization default/one",
        "(document 5): OrganizationMember default/orphan: spec.organizationRef.name: Organization default/nowhere is not among the manifests",
    ];
    for want in expected {
        assert_eq!(
            errors.iter().filter(|e| e.contains(want)).count(),
            1,
            "{want:?} not listed once in:\n{stderr}"
        );
    }
    assert_eq!(errors.len(), expected.len(), "{stderr}");
    assert_eq!(
        stdout,
        format!(
            "invalid: {} error(s) in 3 Organization(s), 2 OrganizationMember(s) read\n",
            expected.len()
        )
    );
    assert_eq!(entries(dir.path()), ["m"], "validate wrote a file");

    // Fix them one by one: the count drops with each, down to valid.
    std::fs::remove_file(m.join("broken.yaml")).expect("rm");
    let (code, _, stderr) = validate(dir.path(), Path::new("m"));
    assert_eq!(code, Some(1));
    assert_eq!(
        stderr.lines().filter(|l| l.starts_with("error: ")).count(),
        6
    );
    let fixed = [
        org("bad-name", "{alias: X}"),
        org("one", "{alias: One, organizationId: same}"),
        org("two", "{alias: Two, organizationId: other}"),
        org("typo", "{alias: Y}"),
        member(
            "orphan",
            "{organizationRef: {name: two}, user: {email: a@example.com}, role: internal_user}",
        ),
        member(
            "noemail",
            "{organizationRef: {name: one}, user: {email: b@example.com}, role: internal_user}",
        ),
    ];
    std::fs::write(m.join("a.yaml"), fixed.join("---\n")).expect("write");
    let (code, stdout, stderr) = validate(dir.path(), Path::new("m"));
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert_eq!(
        stdout,
        "valid: 4 Organization(s), 2 OrganizationMember(s)\n"
    );
}

/// A path that does not exist is an error naming it, not an empty valid set.
#[test]
fn a_missing_path_is_invalid() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (code, stdout, stderr) = validate(dir.path(), Path::new("nowhere"));
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert!(stderr.contains("nowhere"), "{stderr}");
    assert!(entries(dir.path()).is_empty());
}

/// Every broken rule of an object is listed, one line each naming file, object and field, in
/// the order of the fields; the summary counts rules. The checks across objects still run for
/// objects with spec errors.
#[test]
fn every_broken_rule_of_an_object_is_listed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let docs = [
        org(
            "three",
            "{alias: \"\", organizationId: same, budget: {maxBudget: -5, budgetDuration: 2mo}}",
        ),
        org("other", "{alias: Other, organizationId: same}"),
        member(
            "two",
            "{organizationRef: {name: nowhere}, user: {email: not-an-email}, role: internal_user, maxBudgetInOrganization: -1}",
        ),
    ];
    std::fs::write(dir.path().join("a.yaml"), docs.join("---\n")).expect("write");
    let (code, stdout, stderr) = validate(dir.path(), Path::new("a.yaml"));
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("error: "))
        .collect();
    let expected = [
        "a.yaml (document 1): Organization default/three: spec.alias: must be 1 to 256 characters long",
        "a.yaml (document 1): Organization default/three: spec.budget.maxBudget: must be zero or more",
        "a.yaml (document 1): Organization default/three: spec.budget.budgetDuration: \"2mo\" is not a budget duration",
        "a.yaml (document 2): Organization default/other: spec.organizationId: organization same is already claimed by Organization default/three",
        "a.yaml (document 3): OrganizationMember default/two: spec.user.email:",
        "a.yaml (document 3): OrganizationMember default/two: spec.maxBudgetInOrganization: must be zero or more",
        "a.yaml (document 3): OrganizationMember default/two: spec.organizationRef.name: Organization default/nowhere is not among the manifests",
    ];
    assert_eq!(errors.len(), expected.len(), "{stderr}");
    for (line, want) in errors.iter().zip(expected) {
        assert!(line.contains(want), "{want:?} not in {line:?}:\n{stderr}");
    }
    assert_eq!(
        stdout,
        "invalid: 7 error(s) in 2 Organization(s), 1 OrganizationMember(s) read\n"
    );

    // Three broken rules of one Organization: three lines, and the summary says 3.
    std::fs::write(dir.path().join("a.yaml"), &docs[0]).expect("write");
    let (code, stdout, stderr) = validate(dir.path(), Path::new("a.yaml"));
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    let fields: Vec<&str> = stderr
        .lines()
        .filter_map(|l| l.strip_prefix("error: a.yaml (document 1): Organization default/three: "))
        .map(|l| l.split(": ").next().unwrap_or_default())
        .collect();
    assert_eq!(
        fields,
        [
            "spec.alias",
            "spec.budget.maxBudget",
            "spec.budget.budgetDuration"
        ],
        "{stderr}"
    );
    assert_eq!(
        stdout,
        "invalid: 3 error(s) in 1 Organization(s), 0 OrganizationMember(s) read\n"
    );
}

/// Thousands of broken rules in one object: a bounded list and a line counting the rest.
#[test]
fn the_list_of_one_object_is_capped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys: Vec<String> = (0..5000)
        .map(|i| format!("\"k{i:04}\": [[[[[[[1]]]]]]]"))
        .collect();
    let doc = org("wide", &format!("{{metadata: {{{}}}}}", keys.join(", ")));
    std::fs::write(dir.path().join("a.yaml"), doc).expect("write");
    let (code, stdout, stderr) = validate(dir.path(), Path::new("a.yaml"));
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("error: "))
        .collect();
    assert_eq!(errors.len(), 21, "{stderr}");
    assert!(
        errors[0].contains(": spec.metadata: Too many: 5000"),
        "{stderr}"
    );
    assert!(
        errors[1].contains(": spec.metadata.k0000[0][0][0][0][0]: nested too deep"),
        "{stderr}"
    );
    assert!(
        errors[20].ends_with(
            "Organization default/wide: and 4981 more broken rules not listed (at most 20 are listed per object)"
        ),
        "{stderr}"
    );
}
