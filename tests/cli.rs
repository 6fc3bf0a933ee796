//! The command line as a newcomer uses it: the embedded SQLite default, Postgres URLs,
//! exit codes, and clear errors for bad input with no partial writes.

mod support;

use std::path::Path;
use std::process::{Command, Output};

use support::TestDb;

const BIN: &str = env!("CARGO_BIN_EXE_litellm-org-operator");

fn run(dir: &Path, args: &[&str], database: Option<&str>) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.current_dir(dir).args(args).env_remove("DATABASE_URL");
    if let Some(url) = database {
        cmd.env("DATABASE_URL", url);
    }
    cmd.output().expect("run the binary")
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
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

#[test]
fn first_run_on_the_embedded_default() {
    let dir = tempfile::tempdir().expect("tempdir");
    copy_quickstart(dir.path());

    let out = run(dir.path(), &["apply", "-f", "quickstart"], None);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("Applied: "), "{stdout}");
    assert!(dir.path().join("litellm-org-operator.db").exists());

    let out = run(dir.path(), &["get", "organizations"], None);
    let (stdout, _) = text(&out);
    assert!(
        stdout.contains("Research") && stdout.contains("Finance"),
        "{stdout}"
    );
    let out = run(dir.path(), &["get", "organizations", "-o", "json"], None);
    let orgs: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json output");
    assert_eq!(orgs.as_array().map(Vec::len), Some(2));
    let out = run(dir.path(), &["get", "members", "-o", "yaml"], None);
    let members: serde_yaml::Value = serde_yaml::from_slice(&out.stdout).expect("yaml output");
    assert_eq!(members.as_sequence().map(Vec::len), Some(4));

    let out = run(dir.path(), &["apply", "-f", "quickstart"], None);
    let (stdout, _) = text(&out);
    assert_eq!(out.status.code(), Some(0));
    assert!(stdout.starts_with("No changes"), "{stdout}");

    let out = run(dir.path(), &["plan", "-f", "quickstart"], None);
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));

    let file = dir.path().join("quickstart/organization-research.yaml");
    let yaml = std::fs::read_to_string(&file).expect("read");
    std::fs::write(&file, yaml.replace("maxBudget: 5000", "maxBudget: 6000")).expect("write");
    let out = run(dir.path(), &["plan", "-f", "quickstart"], None);
    let (stdout, _) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stdout}");
    assert!(stdout.contains("max_budget: 5000 -> 6000"), "{stdout}");
    assert!(
        stdout.contains("0 to create, 1 to change, 0 to delete"),
        "{stdout}"
    );
}

#[test]
fn other_kinds_are_skipped_with_a_notice() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("mixed.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\n---\n\
         apiVersion: litellm.dev/v1alpha1\nkind: Organization\nmetadata: {name: solo}\nspec: {}\n",
    )
    .expect("write");
    let out = run(dir.path(), &["apply", "-f", "."], None);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(
        stderr.contains("skipping v1 ConfigMap settings"),
        "{stderr}"
    );
}

/// Each bad manifest: exit 1, one message naming file, object and field, and nothing written
/// for that object.
#[test]
fn bad_input_is_named_and_writes_nothing() {
    let org = |spec: &str| {
        format!(
            "apiVersion: litellm.dev/v1alpha1\nkind: Organization\nmetadata: {{name: bad, namespace: ns}}\nspec: {spec}\n"
        )
    };
    let member = |spec: &str| {
        format!(
            "apiVersion: litellm.dev/v1alpha1\nkind: OrganizationMember\nmetadata: {{name: m, namespace: ns}}\nspec: {spec}\n"
        )
    };
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "unknown-field",
            org("{budget: {maxBudjet: 1}}"),
            "spec.budget.maxBudjet: unknown field",
        ),
        (
            "wrong-type",
            org("{models: gpt-4o}"),
            "spec.models: invalid type",
        ),
        (
            "both-budgets",
            org("{budget: {maxBudget: 1}, budgetRef: {budgetId: b}}"),
            "spec.budgetRef: budget and budgetRef are mutually exclusive",
        ),
        (
            "negative-budget",
            org("{budget: {maxBudget: -5}}"),
            "spec.budget.maxBudget: must be zero or more",
        ),
        (
            "bad-duration",
            org("{budget: {budgetDuration: monthly}}"),
            "spec.budget.budgetDuration: \"monthly\" is not a duration",
        ),
        (
            "missing-user",
            member("{organizationId: o, user: {}, role: internal_user}"),
            "spec.user: set user.userId, user.email, or both",
        ),
        (
            "bad-role",
            member("{organizationId: o, user: {userId: u}, role: owner}"),
            "spec.role: unknown variant `owner`",
        ),
        (
            "missing-org",
            member("{organizationRef: {name: nowhere}, user: {userId: u}, role: internal_user}"),
            "OrganizationNotFound: spec.organizationRef.name: Organization ns/nowhere is not among the manifests",
        ),
        (
            "malformed",
            "apiVersion: litellm.dev/v1alpha1\nkind: [Organization\n".to_string(),
            "invalid YAML",
        ),
    ];
    for (name, yaml, expected) in cases {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = format!("{name}.yaml");
        std::fs::write(dir.path().join(&file), yaml).expect("write");
        let out = run(dir.path(), &["apply", "-f", &file], None);
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(1), "{name}: {stdout}{stderr}");
        assert!(
            stderr.contains(&format!("{file} (document 1)")),
            "{name}: {stderr}"
        );
        assert!(
            stderr.contains(expected),
            "{name}: expected {expected:?} in {stderr}"
        );
        assert_eq!(
            stderr.matches("error: ").count(),
            1,
            "{name}: one message: {stderr}"
        );
        let out = run(dir.path(), &["get", "organizations", "-o", "json"], None);
        let orgs: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        assert_eq!(orgs, serde_json::json!([]), "{name}: nothing written");
    }
}

#[test]
fn second_claim_on_a_membership_is_a_conflict() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("dup.yaml"),
        "apiVersion: litellm.dev/v1alpha1\nkind: Organization\nmetadata: {name: acme}\nspec: {}\n---\n\
         apiVersion: litellm.dev/v1alpha1\nkind: OrganizationMember\nmetadata: {name: first}\n\
         spec: {organizationRef: {name: acme}, user: {email: pat@example.com}, role: internal_user}\n---\n\
         apiVersion: litellm.dev/v1alpha1\nkind: OrganizationMember\nmetadata: {name: second}\n\
         spec: {organizationRef: {name: acme}, user: {email: PAT@example.com}, role: org_admin}\n",
    )
    .expect("write");
    let out = run(dir.path(), &["apply", "-f", "dup.yaml"], None);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        stderr.contains("dup.yaml (document 3): OrganizationMember default/second: Conflict: user")
            && stderr.contains("is managed by OrganizationMember/default/first (manager \"cli\")"),
        "{stderr}"
    );
    // `plan` on a fresh database sees the clash inside the manifests themselves.
    let fresh = tempfile::tempdir().expect("tempdir");
    std::fs::copy(dir.path().join("dup.yaml"), fresh.path().join("dup.yaml")).expect("copy");
    let out = run(fresh.path(), &["plan", "-f", "dup.yaml"], None);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("already claimed by OrganizationMember default/first"),
        "{stderr}"
    );
    let out = run(dir.path(), &["get", "members", "-o", "json"], None);
    let members: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(members.as_array().map(Vec::len), Some(1));
    assert_eq!(members[0]["role"], "internal_user", "the first claim wins");
}

#[tokio::test]
async fn postgres_needs_migrate_on_an_empty_database() {
    let db = TestDb::postgres(None).await;
    let url = db.url();
    let dir = tempfile::tempdir().expect("tempdir");
    copy_quickstart(dir.path());
    let out = run(dir.path(), &["apply", "-f", "quickstart"], Some(&url));
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("litellm-org-operator migrate"), "{stderr}");
    let out = run(dir.path(), &["migrate"], Some(&url));
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    let out = run(dir.path(), &["apply", "-f", "quickstart"], Some(&url));
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    let out = run(dir.path(), &["plan", "-f", "quickstart"], Some(&url));
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    db.cleanup().await;
}

#[test]
fn database_password_never_printed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let secret = "s3cr3t-Pa55word";
    // Nothing listens on port 9; the connection fails.
    let url = format!("postgres://admin:{secret}@127.0.0.1:9/litellm");
    for args in [
        &["get", "organizations"][..],
        &["migrate"][..],
        &["--help"][..],
    ] {
        let out = run(dir.path(), args, Some(&url));
        let (stdout, stderr) = text(&out);
        assert!(
            !stdout.contains(secret) && !stderr.contains(secret),
            "{args:?}: {stdout}{stderr}"
        );
    }
    let out = run(dir.path(), &["get", "organizations"], Some(&url));
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains("cannot connect to the database at 127.0.0.1:9"),
        "{stderr}"
    );
    // A malformed URL is reported without echoing it.
    let out = run(
        dir.path(),
        &["get", "organizations"],
        Some(&format!("mysql://u:{secret}@h/db")),
    );
    let (_, stderr) = text(&out);
    assert!(
        !stderr.contains(secret) && stderr.contains("unsupported database URL"),
        "{stderr}"
    );
}
