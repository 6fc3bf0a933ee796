//! The command line as a newcomer uses it: the embedded SQLite default, Postgres URLs,
//! exit codes, and clear errors for bad input with no partial writes.

mod support;

use std::path::Path;
use std::process::{Command, Output};

use support::TestDb;

const BIN: &str = env!("CARGO_BIN_EXE_litellm-org-operator");

fn run(dir: &Path, args: &[&str], database: Option<&str>) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.current_dir(dir)
        .args(args)
        .env_remove("DATABASE_URL")
        // `--prune` needs the manager named explicitly; `--manager` in `args` still wins.
        .env("LITELLM_ORG_OPERATOR_MANAGER", "cli");
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
            org("{budget: {budgetDuration: 2mo}}"),
            "spec.budget.budgetDuration: \"2mo\" is not a budget duration LiteLLM accepts",
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

/// Both stores as the CLI meets them: LiteLLM's own schema on PostgreSQL, and SQLite.
async fn stores() -> Vec<TestDb> {
    vec![TestDb::sqlite().await, TestDb::litellm().await]
}

fn org_yaml(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: litellm.dev/v1alpha1\nkind: Organization\nmetadata: {{name: {name}}}\nspec: {spec}\n"
    )
}

/// `url` with one more query parameter.
fn with_parameter(url: &str, parameter: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{parameter}")
}

/// Issue 20, item 5: a query parameter the driver does not know is an error naming the key;
/// its value never reaches an error or a log line (text or JSON, at any level), nor does the
/// value of a known parameter the driver refuses, nor the password.
#[tokio::test]
async fn url_parameters_are_refused_by_key_and_never_shown() {
    for db in stores().await {
        let url = db.url();
        let dir = tempfile::tempdir().expect("tempdir");
        let unknown: &[&str] = if db.is_postgres() {
            &["sslpassword", "passfile", "service"]
        } else {
            &["sslpassword", "passfile"]
        };
        for key in unknown {
            let secret = format!("S3CRET-{key}");
            let bad = with_parameter(&url, &format!("{key}={secret}"));
            std::fs::write(dir.path().join("url"), &bad).expect("write");
            let url_file = dir.path().join("url").display().to_string();
            for args in [
                &["get", "organizations"][..],
                &["export"][..],
                &["apply", "-f", "."][..],
                &[
                    "run",
                    "--log-format",
                    "json",
                    "--database-url-file",
                    &url_file,
                ][..],
                &["run", "--database-url-file", &url_file][..],
            ] {
                let mut cmd = Command::new(BIN);
                cmd.current_dir(dir.path())
                    .args(args)
                    .env("DATABASE_URL", &bad)
                    .env("RUST_LOG", "trace")
                    .env("KUBECONFIG", "/nonexistent");
                let out = cmd.output().expect("run the binary");
                let (stdout, stderr) = text(&out);
                assert_eq!(out.status.code(), Some(1), "{args:?}: {stdout}{stderr}");
                assert!(
                    !stdout.contains(&secret) && !stderr.contains(&secret),
                    "{args:?}: {stdout}{stderr}"
                );
                assert!(
                    stderr.contains(&format!("unsupported parameter \"{key}\"")),
                    "{args:?}: {stderr}"
                );
            }
        }
        if db.is_postgres() {
            // A known parameter with a value the driver refuses: the key, not the value.
            let bad = with_parameter(&url, "sslmode=S3CRET-mode");
            let out = run(dir.path(), &["get", "organizations"], Some(&bad));
            let (_, stderr) = text(&out);
            assert_eq!(out.status.code(), Some(1), "{stderr}");
            assert!(
                stderr.contains("invalid value for the parameter \"sslmode\"")
                    && !stderr.contains("S3CRET"),
                "{stderr}"
            );
            // A working URL with a password, at the most verbose level: the password is
            // nowhere (the server trusts 127.0.0.1, so any password connects).
            let mut u = url::Url::parse(&url).expect("url");
            u.set_password(Some("S3CRET-password")).expect("password");
            let mut cmd = Command::new(BIN);
            let out = cmd
                .current_dir(dir.path())
                .args(["get", "organizations"])
                .env("DATABASE_URL", u.as_str())
                .env("RUST_LOG", "trace")
                .output()
                .expect("run");
            let (stdout, stderr) = text(&out);
            assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
            assert!(
                !stderr.contains("S3CRET") && !stdout.contains("S3CRET"),
                "{stderr}"
            );
        }
        db.cleanup().await;
    }
}

/// Issue 20, item 7: `--manager ""` is refused (a manager needs a name the ledger can show).
#[test]
fn an_empty_manager_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    for manager in ["", "  ", "a\nb"] {
        let out = run(dir.path(), &["plan", "--manager", manager, "-f", "."], None);
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(1), "{manager:?}: {stdout}{stderr}");
        assert!(stderr.contains("--manager"), "{stderr}");
    }
    assert!(
        !dir.path().join("litellm-org-operator.db").exists(),
        "nothing opened"
    );
}

/// Issue 20, item 7: a write that fails (a read-only database) never ends with "No changes".
#[tokio::test]
async fn a_failed_write_does_not_end_with_no_changes() {
    for db in stores().await {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("org.yaml"),
            org_yaml("acme", "{alias: Acme}"),
        )
        .expect("write");
        if db.is_postgres() {
            db.exec(&format!(
                "ALTER DATABASE \"{}\" SET default_transaction_read_only = on",
                db.name()
            ))
            .await;
        } else {
            // SQLite has no read-only transactions: every write is refused the same way.
            db.exec(
                "CREATE TRIGGER read_only BEFORE INSERT ON litellm_org_operator_ledger \
                 BEGIN SELECT RAISE(ABORT, 'attempt to write a readonly database'); END",
            )
            .await;
        }
        let url = db.url();
        let out = run(dir.path(), &["apply", "-f", "org.yaml"], Some(&url));
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
        assert!(!stdout.contains("No changes"), "{stdout}");
        assert!(
            stdout.contains("Nothing applied; 1 error: nothing written for those (1 object read)."),
            "{stdout}"
        );
        assert!(stderr.contains("Organization default/acme"), "{stderr}");
        db.cleanup().await;
    }
}

/// Issue 20, item 7: a prune that only releases ledger entries (`Retain`) says so.
#[tokio::test]
async fn a_prune_that_releases_says_so() {
    for db in stores().await {
        let url = db.url();
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("m")).expect("mkdir");
        std::fs::create_dir_all(dir.path().join("none")).expect("mkdir");
        std::fs::write(
            dir.path().join("m/org.yaml"),
            org_yaml("acme", "{alias: Acme, deletionPolicy: Retain}"),
        )
        .expect("write");
        let out = run(dir.path(), &["apply", "-f", "m"], Some(&url));
        assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
        let out = run(dir.path(), &["plan", "--prune", "-f", "none"], Some(&url));
        let (stdout, _) = text(&out);
        assert!(
            stdout.contains(
                "No changes to LiteLLM's rows; 2 ledger entries to release (0 objects read)."
            ),
            "{stdout}"
        );
        let out = run(dir.path(), &["apply", "--prune", "-f", "none"], Some(&url));
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
        assert!(
            stdout.contains(
                "No changes to LiteLLM's rows; 2 ledger entries released (0 objects read)."
            ),
            "{stdout}"
        );
        assert_eq!(db.count("LiteLLM_OrganizationTable").await, 1, "retained");
        db.cleanup().await;
    }
}

/// Issue 19, §2: a prune never takes teams or keys no manifest declares without an opt-in.
/// The organization that has them is refused (named, with the counts; exit 1), the rest of
/// the prune runs, and `--delete-teams-and-keys` runs LiteLLM's whole cascade.
#[tokio::test]
async fn a_prune_refuses_to_take_teams_and_keys_unless_told() {
    for db in stores().await {
        let url = db.url();
        let dir = tempfile::tempdir().expect("tempdir");
        for d in ["m", "none"] {
            std::fs::create_dir_all(dir.path().join(d)).expect("mkdir");
        }
        std::fs::write(
            dir.path().join("m/orgs.yaml"),
            format!(
                "{}---\n{}",
                org_yaml("busy", "{organizationId: org-busy}"),
                org_yaml("idle", "{organizationId: org-idle}")
            ),
        )
        .expect("write");
        let out = run(dir.path(), &["apply", "-f", "m"], Some(&url));
        assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
        // LiteLLM's UI adds a team and two keys to one of them.
        db.exec(
            r#"INSERT INTO "LiteLLM_TeamTable" (team_id, organization_id) VALUES ('ui-team', 'org-busy');
               INSERT INTO "LiteLLM_VerificationToken" (token, organization_id) VALUES ('hashed-1', 'org-busy');
               INSERT INTO "LiteLLM_VerificationToken" (token, organization_id) VALUES ('hashed-2', 'org-busy');"#,
        )
        .await;

        // plan shows the refusal as apply would meet it, with the counts.
        let out = run(dir.path(), &["plan", "--prune", "-f", "none"], Some(&url));
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
        assert!(
            stderr.contains("prune Organization default/busy")
                && stderr.contains("1 team and 2 keys")
                && stderr.contains("--delete-teams-and-keys"),
            "{stderr}"
        );
        assert!(
            stdout.contains("organization org-idle (cascade: 0 teams, 0 keys, 0 memberships)"),
            "{stdout}"
        );

        let out = run(dir.path(), &["apply", "--prune", "-f", "none"], Some(&url));
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
        assert!(stderr.contains("1 team and 2 keys"), "{stderr}");
        assert_eq!(
            db.strings(r#"SELECT organization_id FROM "LiteLLM_OrganizationTable""#)
                .await,
            vec!["org-busy".to_string()],
            "the idle organization pruned, the busy one kept"
        );
        assert_eq!(db.count("LiteLLM_VerificationToken").await, 2);
        assert_eq!(db.count("LiteLLM_TeamTable").await, 1);

        // The opt-in needs --prune, and then runs the cascade, naming what it removed.
        let out = run(
            dir.path(),
            &["apply", "--delete-teams-and-keys", "-f", "none"],
            Some(&url),
        );
        let (_, stderr) = text(&out);
        assert_ne!(out.status.code(), Some(0), "{stderr}");
        assert!(stderr.contains("--prune"), "{stderr}");
        assert_eq!(db.count("LiteLLM_OrganizationTable").await, 1);
        let out = run(
            dir.path(),
            &["apply", "--prune", "--delete-teams-and-keys", "-f", "none"],
            Some(&url),
        );
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
        assert!(
            stdout.contains("organization org-busy (cascade: 1 team, 2 keys, 0 memberships)"),
            "{stdout}"
        );
        for table in [
            "LiteLLM_OrganizationTable",
            "LiteLLM_TeamTable",
            "LiteLLM_VerificationToken",
        ] {
            assert_eq!(db.count(table).await, 0, "{table}");
        }
        db.cleanup().await;
    }
}

/// The "N to create" of a run's last line.
fn created(stdout: &str) -> usize {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("Applied: "))
        .and_then(|l| l.split(" to create").next())
        .map_or(0, |n| n.parse().expect("a count"))
}

/// Issue 20, item 7: two `apply` runs on one database at once each report what they wrote:
/// the creates they count add up to the rows there are.
#[tokio::test]
async fn concurrent_applies_count_what_each_wrote() {
    for db in stores().await {
        let url = db.url();
        let dir = tempfile::tempdir().expect("tempdir");
        let mut text_ = String::new();
        for i in 0..120 {
            text_.push_str(&org_yaml(
                &format!("o{i}"),
                &format!("{{budget: {{maxBudget: {i}}}}}"),
            ));
            text_.push_str("---\n");
            for u in 0..2 {
                text_.push_str(&format!(
                    "apiVersion: litellm.dev/v1alpha1\nkind: OrganizationMember\nmetadata: {{name: o{i}-u{u}}}\n\
                     spec: {{organizationRef: {{name: o{i}}}, user: {{userId: u{i}-{u}}}, role: internal_user}}\n---\n"
                ));
            }
        }
        std::fs::write(dir.path().join("m.yaml"), &text_).expect("write");
        let count = || async {
            db.count("LiteLLM_OrganizationTable").await
                + db.count("LiteLLM_BudgetTable").await
                + db.count("LiteLLM_UserTable").await
                + db.count("LiteLLM_OrganizationMembership").await
        };
        let before = count().await;
        let spawn = || {
            Command::new(BIN)
                .current_dir(dir.path())
                .args(["apply", "-f", "m.yaml"])
                .env("DATABASE_URL", &url)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("spawn")
        };
        let (a, b) = (spawn(), spawn());
        let (a, b) = (
            a.wait_with_output().expect("wait"),
            b.wait_with_output().expect("wait"),
        );
        for o in [&a, &b] {
            let (stdout, stderr) = text(o);
            assert_eq!(o.status.code(), Some(0), "{stdout}{stderr}");
        }
        let rows = count().await - before;
        assert_eq!(rows, 120 * 6, "every row once");
        let (ca, cb) = (created(&text(&a).0), created(&text(&b).0));
        eprintln!("creates counted by the two runs: {ca} + {cb}");
        assert_eq!(ca + cb, rows, "each run counts what it wrote ({ca} + {cb})");
        db.cleanup().await;
    }
}

/// Issue 20, item 7: a statement slower than a second (here: waiting for a lock another
/// connection holds) prints no SQL and no colours at the default level; `RUST_LOG` shows it,
/// still without colours when stderr is not a terminal.
#[tokio::test]
async fn slow_statements_print_no_sql_and_no_colours() {
    use sqlx::Connection;
    for db in stores().await {
        let url = db.url();
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("org.yaml"),
            org_yaml("acme", "{alias: Acme}"),
        )
        .expect("write");
        for (log, shown) in [(None, false), (Some("sqlx=debug"), true)] {
            // Hold a lock the apply must wait for, longer than the one-second threshold.
            let release = {
                let url = url.clone();
                let postgres = db.is_postgres();
                let (locked_tx, locked_rx) = tokio::sync::oneshot::channel();
                let task = tokio::spawn(async move {
                    if postgres {
                        let mut c = sqlx::PgConnection::connect(&url).await.expect("connect");
                        let mut tx = c.begin().await.expect("begin");
                        sqlx::query(
                            r#"LOCK TABLE "LiteLLM_OrganizationTable" IN ACCESS EXCLUSIVE MODE"#,
                        )
                        .execute(&mut *tx)
                        .await
                        .expect("lock");
                        locked_tx.send(()).ok();
                        tokio::time::sleep(std::time::Duration::from_millis(1800)).await;
                        tx.rollback().await.expect("rollback");
                    } else {
                        let mut c = sqlx::SqliteConnection::connect(&url)
                            .await
                            .expect("connect");
                        sqlx::raw_sql("BEGIN IMMEDIATE")
                            .execute(&mut c)
                            .await
                            .expect("lock");
                        locked_tx.send(()).ok();
                        tokio::time::sleep(std::time::Duration::from_millis(1800)).await;
                        sqlx::raw_sql("ROLLBACK")
                            .execute(&mut c)
                            .await
                            .expect("rollback");
                    }
                });
                locked_rx.await.expect("locked");
                task
            };
            let mut cmd = Command::new(BIN);
            cmd.current_dir(dir.path())
                .args(["apply", "-f", "org.yaml"])
                .env("DATABASE_URL", &url)
                .env_remove("RUST_LOG");
            if let Some(filter) = log {
                cmd.env("RUST_LOG", filter);
            }
            let out = tokio::task::spawn_blocking(move || cmd.output().expect("run"))
                .await
                .expect("join");
            release.await.expect("lock holder");
            let (stdout, stderr) = text(&out);
            assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
            assert!(!stderr.contains('\u{1b}'), "no colours: {stderr:?}");
            assert_eq!(
                stderr.contains("slow statement"),
                shown,
                "{log:?}: {stderr}"
            );
            if !shown {
                assert!(
                    !stderr.contains("SELECT") && !stderr.contains("INSERT"),
                    "{stderr}"
                );
            }
            db.exec(
                r#"DELETE FROM "LiteLLM_OrganizationTable"; DELETE FROM "LiteLLM_BudgetTable""#,
            )
            .await;
            let ledger = if db.is_postgres() {
                "DELETE FROM litellm_org_operator.ledger"
            } else {
                "DELETE FROM litellm_org_operator_ledger"
            };
            db.exec(ledger).await;
        }
        db.cleanup().await;
    }
}

/// `--prune` without a manager named (no `--manager`, no `LITELLM_ORG_OPERATOR_MANAGER`) is
/// refused before anything is read or written: the database file is not created and the
/// manifest folder (missing here) is not read. With the manager named, the same run works.
#[test]
fn prune_refused_without_an_explicit_manager() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("fresh.db");
    let url = format!("sqlite://{}", db.display());
    for verb in ["plan", "apply"] {
        let out = Command::new(BIN)
            .current_dir(dir.path())
            .args([verb, "--prune", "-f", "missing"])
            .env("DATABASE_URL", &url)
            .env_remove("LITELLM_ORG_OPERATOR_MANAGER")
            .output()
            .expect("run the binary");
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(1), "{verb}: {stdout}{stderr}");
        assert!(
            stderr.contains("--prune needs the manager named explicitly")
                && stderr.contains("--manager NAME")
                && stderr.contains("LITELLM_ORG_OPERATOR_MANAGER")
                && stderr.contains("--manager operator"),
            "{verb}: {stderr}"
        );
        assert!(
            !stderr.contains("missing"),
            "{verb} read the manifests: {stderr}"
        );
        assert!(!db.exists(), "{verb} created the database");
    }
    std::fs::create_dir_all(dir.path().join("missing")).expect("mkdir");
    for manager in [&["--manager", "team-a"][..], &[][..]] {
        let mut cmd = Command::new(BIN);
        cmd.current_dir(dir.path())
            .args(["plan", "--prune", "-f", "missing"])
            .args(manager)
            .env("DATABASE_URL", &url);
        if manager.is_empty() {
            cmd.env("LITELLM_ORG_OPERATOR_MANAGER", "team-a");
        } else {
            cmd.env_remove("LITELLM_ORG_OPERATOR_MANAGER");
        }
        let out = cmd.output().expect("run the binary");
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(0), "{manager:?}: {stdout}{stderr}");
    }
}

/// `get` on a SQLite path that does not exist is an error naming the path; no empty database
/// is created. Once `apply` wrote the file, the same `get` reads it.
#[test]
fn get_on_a_missing_sqlite_file_names_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = "sqlite://absent.db";
    for what in ["organizations", "members"] {
        let out = run(dir.path(), &["get", what], Some(url));
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
        assert!(
            stderr.contains("no SQLite database at absent.db"),
            "{stderr}"
        );
        assert!(stdout.is_empty(), "{stdout}");
        assert!(
            !dir.path().join("absent.db").exists(),
            "get created the file"
        );
    }
    std::fs::create_dir_all(dir.path().join("none")).expect("mkdir");
    let out = run(dir.path(), &["apply", "-f", "none"], Some(url));
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    let out = run(
        dir.path(),
        &["get", "organizations", "-o", "json"],
        Some(url),
    );
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
}

/// `get -o json` names a field the same in both kinds: the organization's id and alias are
/// `organization_id` and `organization_alias` in `get organizations` as in `get members`.
#[test]
fn get_json_names_organization_fields_alike_in_both_kinds() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = "sqlite://db.sqlite";
    std::fs::create_dir_all(dir.path().join("m")).expect("mkdir");
    let docs = [
        org_yaml("acme", "{alias: Acme Corp}"),
        "apiVersion: litellm.dev/v1alpha1\nkind: OrganizationMember\nmetadata: {name: ann}\n\
         spec: {organizationRef: {name: acme}, user: {email: ann@example.com}, role: internal_user}\n"
            .to_string(),
    ];
    std::fs::write(dir.path().join("m/all.yaml"), docs.join("---\n")).expect("write");
    let out = run(dir.path(), &["apply", "-f", "m"], Some(url));
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    let json = |what: &str| -> Vec<serde_json::Value> {
        let out = run(dir.path(), &["get", what, "-o", "json"], Some(url));
        assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
        serde_json::from_slice(&out.stdout).expect("JSON")
    };
    let (orgs, members) = (json("organizations"), json("members"));
    assert_eq!((orgs.len(), members.len()), (1, 1), "{orgs:?} {members:?}");
    for key in ["organization_id", "organization_alias"] {
        assert!(orgs[0][key].is_string(), "{key} in {}", orgs[0]);
        assert_eq!(orgs[0][key], members[0][key], "{key}");
    }
    assert_eq!(orgs[0]["organization_alias"], "Acme Corp");
    assert!(orgs[0].get("alias").is_none(), "{}", orgs[0]);
}

/// `get -o json|yaml` gives each row's owner as an object: the ledger's manager and the
/// resource's kind, namespace and name; `manager: null` for an organization only the marker
/// of an earlier version names; `null` for a row nothing holds. The table keeps its
/// readable OWNER column.
#[tokio::test]
async fn get_json_gives_the_owner_as_an_object() {
    for db in [TestDb::sqlite().await, TestDb::litellm().await] {
        let url = db.url();
        let dir = tempfile::tempdir().expect("tempdir");
        let acme = "apiVersion: litellm.dev/v1alpha1\nkind: Organization\n\
                    metadata: {name: acme, namespace: team-a}\nspec: {alias: Acme}\n---\n\
                    apiVersion: litellm.dev/v1alpha1\nkind: OrganizationMember\n\
                    metadata: {name: ann, namespace: team-a}\n\
                    spec: {organizationRef: {name: acme}, user: {email: ann@example.com}, role: internal_user}\n";
        for (folder, docs) in [
            ("a", acme.to_string()),
            ("b", org_yaml("beta", "{alias: Beta}")),
        ] {
            std::fs::create_dir_all(dir.path().join(folder)).expect("mkdir");
            std::fs::write(dir.path().join(folder).join("all.yaml"), docs).expect("write");
        }
        let out = run(dir.path(), &["apply", "-f", "a"], Some(&url));
        assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
        let out = run(
            dir.path(),
            &["apply", "--manager", "team-b", "-f", "b"],
            Some(&url),
        );
        assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
        let models = if db.is_postgres() { "'{}'" } else { "'[]'" };
        db.exec(&format!(
            r#"INSERT INTO "LiteLLM_BudgetTable" (budget_id, created_by, updated_by) VALUES ('ui-budget', 'admin', 'admin'), ('old-budget', 'admin', 'admin');
               INSERT INTO "LiteLLM_OrganizationTable" (organization_id, organization_alias, budget_id, metadata, models, created_by, updated_by)
               VALUES ('ui-org', 'Made in the UI', 'ui-budget', '{{}}', {models}, 'admin', 'admin');
               INSERT INTO "LiteLLM_OrganizationTable" (organization_id, organization_alias, budget_id, metadata, models, created_by, updated_by)
               VALUES ('old-org', 'Marked', 'old-budget', '{{"litellm-org-operator": {{"owner": "Organization/ns/old"}}}}', {models}, 'admin', 'admin');"#
        ))
        .await;
        let json = |what: &str| -> Vec<serde_json::Value> {
            let out = run(dir.path(), &["get", what, "-o", "json"], Some(&url));
            assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
            serde_json::from_slice(&out.stdout).expect("JSON")
        };
        let orgs = json("organizations");
        let owner_of = |alias: &str| {
            orgs.iter()
                .find(|o| o["organization_alias"] == alias)
                .unwrap_or_else(|| panic!("{alias} in {orgs:?}"))["owner"]
                .clone()
        };
        assert_eq!(
            owner_of("Acme"),
            serde_json::json!({"manager": "cli", "kind": "Organization", "namespace": "team-a",
                "name": "acme", "resource": "Organization/team-a/acme"})
        );
        assert_eq!(
            owner_of("Beta"),
            serde_json::json!({"manager": "team-b", "kind": "Organization", "namespace": "default",
                "name": "beta", "resource": "Organization/default/beta"})
        );
        assert_eq!(owner_of("Made in the UI"), serde_json::Value::Null);
        assert_eq!(
            owner_of("Marked"),
            serde_json::json!({"manager": null, "kind": "Organization", "namespace": "ns",
                "name": "old", "resource": "Organization/ns/old"})
        );
        let members = json("members");
        assert_eq!(members.len(), 1, "{members:?}");
        assert_eq!(
            members[0]["owner"],
            serde_json::json!({"manager": "cli", "kind": "OrganizationMember",
                "namespace": "team-a", "name": "ann",
                "resource": "OrganizationMember/team-a/ann"})
        );
        let out = run(
            dir.path(),
            &["get", "organizations", "-o", "yaml"],
            Some(&url),
        );
        let yaml: serde_yaml::Value = serde_yaml::from_slice(&out.stdout).expect("YAML");
        let yaml = serde_json::to_value(yaml).expect("YAML as JSON");
        assert_eq!(yaml, serde_json::Value::Array(orgs.clone()), "YAML as JSON");
        let out = run(dir.path(), &["get", "organizations"], Some(&url));
        let (table, _) = text(&out);
        assert!(
            table.contains("OWNER")
                && table.contains("Organization/team-a/acme (cli)")
                && table.contains("Organization/default/beta (team-b)")
                && table.contains("Organization/ns/old (marker of an earlier version)"),
            "{table}"
        );
        db.cleanup().await;
    }
}

/// `run` without a database URL (the embedded default), as exit code, stdout and stderr.
fn run3(dir: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let out = run(dir, args, None);
    let (stdout, stderr) = text(&out);
    (out.status.code(), stdout, stderr)
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
    let (code, plain, stderr) = run3(dir.path(), &["plan", "-f", "quickstart"]);
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
    let (code, verbose, _) = run3(dir.path(), &["plan", "-v", "-f", "quickstart"]);
    assert_eq!(code, Some(2), "{verbose}");
    assert!(
        verbose.contains("= ledger: organization/org-finance-2024 managed by Organization/ai-platform/finance (created)"),
        "{verbose}"
    );
    let planned = counts(&plain, "Plan: ");
    assert_eq!(planned, counts(&verbose, "Plan: "));
    assert!(plain.contains("(6 objects read)"), "{plain}");

    let (code, applied, stderr) = run3(dir.path(), &["apply", "-f", "quickstart"]);
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
    let (code, stdout, stderr) = run3(dir.path(), &["plan", "-f", "org.yaml"]);
    assert_eq!(code, Some(2), "{stdout}{stderr}");
    assert!(stdout.contains("(1 object read)."), "{stdout}");
    std::fs::write(
        dir.path().join("org.yaml"),
        "apiVersion: litellm.dev/v1alpha1\nkind: Organization\nmetadata: {name: solo}\nspec: {alias: Solo, budget: {maxBudget: -1}}\n",
    )
    .expect("write");
    let (code, stdout, stderr) = run3(dir.path(), &["plan", "-f", "org.yaml"]);
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert!(stderr.ends_with("1 error.\n"), "{stderr}");
    assert!(!stdout.contains("No changes"), "{stdout}");
}

/// `plan` and `apply` list every broken rule of an object, one `error:` line each naming the
/// file, the object and the field; the last line counts rules; nothing is written.
#[test]
fn plan_lists_every_broken_rule_of_an_object() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("org.yaml"),
        "apiVersion: litellm.dev/v1alpha1\nkind: Organization\nmetadata: {name: three}\nspec: {alias: \"\", organizationId: \"has space\", budget: {maxBudget: -1}}\n",
    )
    .expect("write");
    for verb in ["plan", "apply"] {
        let (code, stdout, stderr) = run3(dir.path(), &[verb, "-f", "org.yaml"]);
        assert_eq!(code, Some(1), "{verb}: {stdout}{stderr}");
        let fields: Vec<&str> = stderr
            .lines()
            .filter(|l| l.starts_with("error: "))
            .map(|l| {
                l.strip_prefix("error: org.yaml (document 1): Organization default/three: ")
                    .unwrap_or_else(|| panic!("{verb}: file and object in {l:?}"))
                    .split(": ")
                    .next()
                    .unwrap_or_default()
            })
            .collect();
        assert_eq!(
            fields,
            ["spec.alias", "spec.organizationId", "spec.budget.maxBudget"],
            "{verb}: {stderr}"
        );
        assert!(stderr.ends_with("3 errors.\n"), "{verb}: {stderr}");
        assert!(stdout.contains("3 error"), "{verb}: {stdout}");
    }
    let out = run(dir.path(), &["get", "organizations", "-o", "json"], None);
    let orgs: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(orgs, serde_json::json!([]), "nothing written");
}
