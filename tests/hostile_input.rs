//! Hostile input on the cluster-less CLI, tried as a careless or malicious author of a
//! manifest folder would: `--prune` never deletes what could not be read, every unreadable
//! input is named, strings PostgreSQL cannot store are refused the same way on both stores,
//! printed values cannot fake a line, and the CRD bounds `spec.metadata` as the API server
//! enforces it. Every database test runs on SQLite and on PostgreSQL.

mod support;

use std::path::Path;
use std::process::{Command, Output};

use kube::Api;
use kube::api::{ApiResource, DynamicObject, PostParams};
use litellm_org_operator::crd::Organization;
use serde_json::{Value, json};
use support::TestDb;
use support::cluster::Cluster;

const BIN: &str = env!("CARGO_BIN_EXE_litellm-org-operator");

fn cli(dir: &Path, args: &[&str], database: &str) -> (Option<i32>, String, String) {
    let out: Output = Command::new(BIN)
        .current_dir(dir)
        .args(args)
        .env("DATABASE_URL", database)
        // `--prune` needs the manager named explicitly.
        .env("LITELLM_ORG_OPERATOR_MANAGER", "cli")
        .output()
        .expect("run the binary");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A fresh database of each kind, with the tables the CLI needs.
async fn stores() -> Vec<TestDb> {
    vec![TestDb::sqlite().await, TestDb::postgres_migrated().await]
}

fn org(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: litellm.dev/v1alpha1\nkind: Organization\nmetadata: {{name: {name}}}\nspec: {spec}\n"
    )
}

fn member(name: &str, org: &str, user: &str, role: &str) -> String {
    format!(
        "apiVersion: litellm.dev/v1alpha1\nkind: OrganizationMember\nmetadata: {{name: {name}}}\n\
         spec: {{organizationRef: {{name: {org}}}, user: {{userId: {user}}}, role: {role}}}\n"
    )
}

fn write(dir: &Path, file: &str, text: &str) {
    let path = dir.join(file);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("mkdir");
    }
    std::fs::write(path, text).expect("write");
}

fn get_json(dir: &Path, what: &str, url: &str) -> Vec<Value> {
    let (code, stdout, stderr) = cli(dir, &["get", what, "-o", "json"], url);
    assert_eq!(code, Some(0), "{stderr}");
    serde_json::from_str::<Vec<Value>>(&stdout).expect("json")
}

fn aliases(dir: &Path, url: &str) -> Vec<String> {
    let mut names: Vec<String> = get_json(dir, "organizations", url)
        .iter()
        .filter_map(|o| o["organization_alias"].as_str().map(str::to_string))
        .collect();
    names.sort();
    names
}

/// Finding 1: a typo, a syntax error or a bad enum in one file refuses prune outright, on
/// `apply` and on `plan`, and nothing is deleted.
#[tokio::test]
async fn prune_is_refused_when_any_input_fails() {
    for db in stores().await {
        let url = db.url();
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        write(
            d,
            "m/acme.yaml",
            &org("acme", "{alias: Acme, budget: {maxBudget: 10}}"),
        );
        write(d, "m/beta.yaml", &org("beta", "{alias: Beta}"));
        write(d, "m/pat.yaml", &member("pat", "acme", "pat", "org_admin"));
        let (code, _, stderr) = cli(d, &["apply", "-f", "m"], &url);
        assert_eq!(code, Some(0), "{stderr}");

        let breakages = [
            (
                "m/acme.yaml",
                org("acme", "{alias: Acme, budget: {softBudjet: 10}}"),
            ),
            ("m/acme.yaml", org("acme", "{alias: [Research}")),
            ("m/pat.yaml", member("pat", "acme", "pat", "org-admin")),
        ];
        for (file, broken) in &breakages {
            let good = std::fs::read_to_string(d.join(file)).expect("read");
            write(d, file, broken);
            for verb in ["plan", "apply"] {
                let (code, stdout, stderr) = cli(d, &[verb, "-f", "m", "--prune"], &url);
                assert_eq!(code, Some(1), "{verb} {file}: {stdout}{stderr}");
                let refusals: Vec<&str> = stderr
                    .lines()
                    .filter(|l| l.starts_with("prune refused"))
                    .collect();
                assert_eq!(refusals.len(), 1, "{verb} {file}: {stderr}");
                assert!(refusals[0].contains("nothing was deleted"), "{stderr}");
                assert!(!stdout.contains("(pruned)"), "{verb} {file}: {stdout}");
            }
            assert_eq!(aliases(d, &url), ["Acme", "Beta"], "{file}");
            assert_eq!(get_json(d, "members", &url).len(), 1, "{file}");
            write(d, file, &good);
        }

        // With every input read, prune does delete: the refusal above was the only guard.
        std::fs::remove_file(d.join("m/beta.yaml")).expect("rm");
        let (code, stdout, stderr) = cli(d, &["apply", "-f", "m", "--prune"], &url);
        assert_eq!(code, Some(0), "{stdout}{stderr}");
        assert!(stdout.contains("Organization (pruned)"), "{stdout}");
        assert_eq!(aliases(d, &url), ["Acme"]);
        db.cleanup().await;
    }
}

/// A change to the folder under test, and its undoing.
type Step<'a> = Box<dyn Fn() + 'a>;

/// Finding 2: symbolic links to files and folders are followed (a loop is noticed, not
/// walked forever), so their objects are declared and never pruned; a dangling link, a FIFO
/// or an unreadable file is an error that blocks prune.
#[tokio::test]
async fn symbolic_links_are_followed_and_unreadable_files_block_prune() {
    use std::os::unix::fs::symlink;
    for db in stores().await {
        let url = db.url();
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        write(d, "shared/acme.yaml", &org("acme", "{alias: Acme}"));
        write(
            d,
            "shared/team/pat.yaml",
            &member("pat", "acme", "pat", "internal_user"),
        );
        std::fs::create_dir_all(d.join("m")).expect("mkdir");
        symlink("../shared/acme.yaml", d.join("m/acme.yaml")).expect("file link");
        symlink("../shared/team", d.join("m/team")).expect("folder link");
        symlink(".", d.join("m/loop")).expect("loop link");
        symlink("acme.yaml", d.join("m/again.yaml")).expect("second link to one file");

        let (code, stdout, stderr) = cli(d, &["apply", "-f", "m", "--prune"], &url);
        assert_eq!(code, Some(0), "{stdout}{stderr}");
        assert!(stderr.contains("a symbolic link back to"), "{stderr}");
        assert_eq!(aliases(d, &url), ["Acme"]);
        assert_eq!(get_json(d, "members", &url).len(), 1);
        let (code, stdout, stderr) = cli(d, &["plan", "-f", "m", "--prune"], &url);
        assert_eq!(code, Some(0), "{stdout}{stderr}");
        assert!(stdout.starts_with("No changes"), "{stdout}");

        // Each of these makes the folder unreadable in part: an error, and no prune.
        std::fs::remove_file(d.join("m/team")).expect("rm link");
        let cases: Vec<(&str, Step, Step)> = vec![
            (
                "dangling symbolic link",
                Box::new(|| symlink("../shared/gone.yaml", d.join("m/gone.yaml")).expect("link")),
                Box::new(|| std::fs::remove_file(d.join("m/gone.yaml")).expect("rm")),
            ),
            (
                "not a regular file",
                Box::new(|| {
                    let made = Command::new("mkfifo")
                        .arg(d.join("m/pipe.yaml"))
                        .status()
                        .is_ok_and(|s| s.success());
                    assert!(made, "mkfifo");
                }),
                Box::new(|| std::fs::remove_file(d.join("m/pipe.yaml")).expect("rm")),
            ),
            (
                "not UTF-8",
                Box::new(|| {
                    std::fs::write(d.join("m/latin1.yaml"), b"alias: M\xfcnchen\n").expect("write")
                }),
                Box::new(|| std::fs::remove_file(d.join("m/latin1.yaml")).expect("rm")),
            ),
        ];
        for (expected, make, undo) in &cases {
            make();
            let (code, stdout, stderr) = cli(d, &["apply", "-f", "m", "--prune"], &url);
            assert_eq!(code, Some(1), "{expected}: {stdout}{stderr}");
            assert!(stderr.contains(expected), "{expected}: {stderr}");
            assert!(stderr.contains("prune refused"), "{expected}: {stderr}");
            assert_eq!(
                get_json(d, "members", &url).len(),
                1,
                "{expected}: nothing pruned"
            );
            undo();
        }
        // The member's folder link is gone and everything else reads: now prune deletes it.
        let (code, stdout, stderr) = cli(d, &["apply", "-f", "m", "--prune"], &url);
        assert_eq!(code, Some(0), "{stdout}{stderr}");
        assert!(stdout.contains("OrganizationMember (pruned)"), "{stdout}");
        assert!(get_json(d, "members", &url).is_empty());
        db.cleanup().await;
    }
}

/// Finding 4: NUL in any text field is refused in validation with the field named, and
/// both stores give the same answer (PostgreSQL could not store it; SQLite would have).
#[tokio::test]
async fn nul_characters_are_refused_with_the_field_named_on_both_stores() {
    let cases = [
        ("spec.alias", org("o", r#"{alias: "a\0b"}"#)),
        ("spec.models[1]", org("o", r#"{models: [gpt-4o, "x\0"]}"#)),
        ("spec.metadata.a\\u{0}b", org("o", r#"{metadata: {"a\0b": 1}}"#)),
        ("spec.metadata.team.tags[0]", org("o", r#"{metadata: {team: {tags: ["\0"]}}}"#)),
        ("spec.budgetRef.budgetId", org("o", r#"{budgetRef: {budgetId: "b\0"}}"#)),
        ("spec.budget.modelMaxBudget.gpt\\u{0}", org("o", r#"{budget: {modelMaxBudget: {"gpt\0": {budgetLimit: 1}}}}"#)),
        ("metadata.namespace", "apiVersion: litellm.dev/v1alpha1\nkind: Organization\nmetadata: {name: o, namespace: \"ns\\0\"}\nspec: {}\n".to_string()),
        ("metadata.name", org("\"o\\0\"", "{}")),
        ("spec.user.userId", "apiVersion: litellm.dev/v1alpha1\nkind: OrganizationMember\nmetadata: {name: m}\nspec: {organizationId: x, user: {userId: \"u\\0\"}, role: internal_user}\n".to_string()),
        ("spec.user.email", "apiVersion: litellm.dev/v1alpha1\nkind: OrganizationMember\nmetadata: {name: m}\nspec: {organizationId: x, user: {email: \"a\\0@b.c\"}, role: internal_user}\n".to_string()),
        ("spec.organizationId", "apiVersion: litellm.dev/v1alpha1\nkind: OrganizationMember\nmetadata: {name: m}\nspec: {organizationId: \"x\\0\", user: {userId: u}, role: internal_user}\n".to_string()),
    ];
    let mut answers: Vec<Vec<String>> = Vec::new();
    for db in stores().await {
        let url = db.url();
        let mut these = Vec::new();
        for (field, yaml) in &cases {
            let dir = tempfile::tempdir().expect("tempdir");
            write(dir.path(), "nul.yaml", yaml);
            let (code, stdout, stderr) = cli(dir.path(), &["apply", "-f", "nul.yaml"], &url);
            assert_eq!(code, Some(1), "{field}: {stdout}{stderr}");
            assert!(
                stderr.contains(&format!(": {field}: ")),
                "{field} named in {stderr}"
            );
            assert!(!stderr.contains("DatabaseUnavailable"), "{stderr}");
            assert!(
                !stderr.contains('\0'),
                "the NUL is not echoed raw: {stderr:?}"
            );
            these.push(stderr);
        }
        assert_eq!(db.count("LiteLLM_OrganizationTable").await, 0);
        assert_eq!(db.count("LiteLLM_UserTable").await, 0);
        answers.push(these);
        db.cleanup().await;
    }
    assert_eq!(answers[0], answers[1], "SQLite and PostgreSQL answer alike");
}

/// Finding 5: after a syntax error the later documents are still read (and the bad ones
/// all reported); a byte order mark is accepted; YAML merge keys are resolved.
#[tokio::test]
async fn yaml_documents_after_an_error_bom_and_merge_keys() {
    for db in stores().await {
        let url = db.url();
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        let text = format!(
            "{}---\n{}---\n{}---\n{}",
            org("first", "{alias: [Research}"),
            org("second", "{alias: Second}"),
            "apiVersion: litellm.dev/v1alpha1\nkind: Organization\nmetadata: {name: third\n",
            org("fourth", "{alias: Fourth}"),
        );
        write(d, "m/multi.yaml", &text);
        write(
            d,
            "m/bom.yaml",
            &format!("\u{feff}{}", org("bom", "{alias: Bom}")),
        );
        write(
            d,
            "m/merge.yaml",
            &format!(
                "{}---\n{}",
                org("merged", "{alias: Merged}"),
                "apiVersion: v1\nkind: List\nitems:\n\
                 - apiVersion: litellm.dev/v1alpha1\n  kind: OrganizationMember\n  metadata: {name: pat}\n\
                 \x20 spec: &common\n    organizationRef: {name: merged}\n    role: internal_user\n    user: {userId: pat}\n\
                 - apiVersion: litellm.dev/v1alpha1\n  kind: OrganizationMember\n  metadata: {name: sam}\n\
                 \x20 spec:\n    <<: *common\n    role: org_admin\n    user: {userId: sam}\n"
            ),
        );
        let (code, stdout, stderr) = cli(d, &["apply", "-f", "m"], &url);
        assert_eq!(code, Some(1), "{stdout}{stderr}");
        let errors: Vec<&str> = stderr
            .lines()
            .filter(|l| l.starts_with("error: "))
            .collect();
        assert_eq!(errors.len(), 2, "{stderr}");
        assert!(
            errors[0].contains("multi.yaml (document 1): invalid YAML"),
            "{stderr}"
        );
        assert!(
            errors[1].contains("multi.yaml (document 3): invalid YAML"),
            "{stderr}"
        );
        assert!(
            !stderr.contains("bom.yaml"),
            "the BOM is accepted: {stderr}"
        );
        assert_eq!(aliases(d, &url), ["Bom", "Fourth", "Merged", "Second"]);
        let mut roles: Vec<(String, String)> = get_json(d, "members", &url)
            .iter()
            .map(|m| {
                (
                    m["user_id"].as_str().unwrap_or_default().to_string(),
                    m["role"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect();
        roles.sort();
        assert_eq!(
            roles,
            [
                ("pat".to_string(), "internal_user".to_string()),
                ("sam".to_string(), "org_admin".to_string())
            ]
        );
        db.cleanup().await;
    }
}

/// Finding 6: a prune deletion that fails names its object, the others are still pruned,
/// and the run exits 1.
#[tokio::test]
async fn a_failed_prune_names_the_object_and_carries_on() {
    for db in stores().await {
        let url = db.url();
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        for name in ["alpha", "stuck", "gamma", "keep"] {
            write(d, &format!("m/{name}.yaml"), &org(name, "{}"));
        }
        let (code, _, stderr) = cli(d, &["apply", "-f", "m"], &url);
        assert_eq!(code, Some(0), "{stderr}");
        // A database that refuses one delete, on either store.
        if db.is_postgres() {
            db.exec(
                r#"CREATE FUNCTION refuse_stuck() RETURNS trigger LANGUAGE plpgsql AS $$
                   BEGIN IF OLD.organization_alias = 'stuck' THEN RAISE EXCEPTION 'stuck is held'; END IF; RETURN OLD; END $$;
                   CREATE TRIGGER hold BEFORE DELETE ON "LiteLLM_OrganizationTable" FOR EACH ROW EXECUTE FUNCTION refuse_stuck();"#,
            )
            .await;
        } else {
            db.exec(
                r#"CREATE TRIGGER hold BEFORE DELETE ON "LiteLLM_OrganizationTable"
                   WHEN OLD.organization_alias = 'stuck' BEGIN SELECT RAISE(ABORT, 'stuck is held'); END;"#,
            )
            .await;
        }
        for name in ["alpha", "stuck", "gamma"] {
            std::fs::remove_file(d.join(format!("m/{name}.yaml"))).expect("rm");
        }
        let (code, stdout, stderr) = cli(d, &["apply", "-f", "m", "--prune"], &url);
        assert_eq!(code, Some(1), "{stdout}{stderr}");
        let errors: Vec<&str> = stderr
            .lines()
            .filter(|l| l.starts_with("error: "))
            .collect();
        assert_eq!(errors.len(), 1, "{stderr}");
        assert!(
            errors[0].contains("prune Organization default/stuck")
                && errors[0].contains("stuck is held"),
            "{stderr}"
        );
        assert_eq!(
            aliases(d, &url),
            ["keep", "stuck"],
            "alpha and gamma were pruned"
        );
        db.cleanup().await;
    }
}

/// Finding 7: what the API server's strict reading refuses is refused here too, with its
/// wording: unknown fields at the top and in `metadata`, duplicate keys in YAML and JSON,
/// `.inf` / `.nan`, and namespaces and names that are not DNS-1123.
#[tokio::test]
async fn strict_reading_as_the_api_server_does() {
    let object = |meta: &str, rest: &str| {
        format!("apiVersion: litellm.dev/v1alpha1\nkind: Organization\nmetadata: {meta}\n{rest}")
    };
    let cases: Vec<(&str, &str, String, &str)> = vec![
        ("top", "yaml", object("{name: o}", "spec: {}\nspek: {alias: x}\n"), "spek: strict decoding error: unknown field \"spek\""),
        ("meta", "yaml", object("{name: o, nmae: p}", "spec: {}\n"), "metadata.nmae: strict decoding error: unknown field \"metadata.nmae\""),
        ("dup-yaml", "yaml", object("{name: o}", "spec:\n  alias: a\n  alias: b\n"), "spec.alias: duplicate field \"alias\""),
        ("dup-json", "json", r#"{"apiVersion": "litellm.dev/v1alpha1", "kind": "Organization", "metadata": {"name": "o"}, "spec": {"alias": "a", "alias": "b"}}"#.to_string(), "spec.alias: invalid JSON: duplicate field \"alias\""),
        ("inf", "yaml", object("{name: o}", "spec: {metadata: {ratio: .inf}}\n"), "spec.metadata.ratio: json: unsupported value: +Inf"),
        ("nan", "yaml", object("{name: o}", "spec: {budget: {maxBudget: .nan}}\n"), "spec.budget.maxBudget: json: unsupported value: NaN"),
        ("ns-empty", "yaml", object("{name: o, namespace: \"\"}", "spec: {}\n"), "metadata.namespace: Invalid value: \"\": a lowercase RFC 1123 label must consist of"),
        ("ns-slash", "yaml", object("{name: o, namespace: a/b}", "spec: {}\n"), "metadata.namespace: Invalid value: \"a/b\": a lowercase RFC 1123 label"),
        ("ns-newline", "yaml", object("{name: o, namespace: \"a\\nb\"}", "spec: {}\n"), "metadata.namespace: Invalid value: \"a\\nb\": a lowercase RFC 1123 label"),
        ("name-slash", "yaml", object("{name: a/b}", "spec: {}\n"), "metadata.name: Invalid value: \"a/b\": a lowercase RFC 1123 subdomain"),
        ("name-empty", "yaml", object("{name: \"\"}", "spec: {}\n"), "metadata.name: Required value: name or generateName is required"),
        ("name-dots", "yaml", object("{name: a..b}", "spec: {}\n"), "metadata.name: Invalid value: \"a..b\": a lowercase RFC 1123 subdomain"),
    ];
    for db in stores().await {
        let url = db.url();
        for (name, ext, text, expected) in &cases {
            let dir = tempfile::tempdir().expect("tempdir");
            let file = format!("{name}.{ext}");
            write(dir.path(), &file, text);
            let (code, stdout, stderr) = cli(dir.path(), &["apply", "-f", &file], &url);
            assert_eq!(code, Some(1), "{name}: {stdout}{stderr}");
            assert!(
                stderr.contains(expected),
                "{name}: expected {expected:?} in {stderr}"
            );
            let errors = stderr.lines().filter(|l| l.starts_with("error: ")).count();
            assert_eq!(errors, 1, "{name}: {stderr}");
        }
        assert_eq!(
            db.count("LiteLLM_OrganizationTable").await,
            0,
            "nothing written"
        );
        db.cleanup().await;
    }
}

/// Finding 8: a value with a newline and ANSI escapes cannot fake or hide a line in `plan`,
/// in errors or in `get` tables.
#[tokio::test]
async fn control_characters_are_escaped_in_plan_errors_and_tables() {
    let hostile = "eve\\nNo changes (2 objects read).\\e[8m";
    for db in stores().await {
        let url = db.url();
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        write(
            d,
            "m/team.yaml",
            &format!(
                "{}---\napiVersion: litellm.dev/v1alpha1\nkind: OrganizationMember\nmetadata: {{name: eve}}\n\
                 spec: {{organizationRef: {{name: team}}, user: {{userId: \"{hostile}\"}}, role: org_admin}}\n",
                org("team", "{alias: \"Team\\e[2K\"}")
            ),
        );
        let (code, stdout, stderr) = cli(d, &["plan", "-f", "m"], &url);
        assert_eq!(code, Some(2), "{stdout}{stderr}");
        assert!(!stdout.contains('\u{1b}'), "{stdout:?}");
        assert!(
            !stdout
                .lines()
                .any(|l| l.trim_start().starts_with("No changes")),
            "no faked line: {stdout}"
        );
        assert!(
            stdout.contains("eve\\nNo changes (2 objects read).\\u{1b}[8m"),
            "{stdout}"
        );
        assert!(
            stdout.contains("role: org_admin"),
            "the real change shows: {stdout}"
        );

        let (code, _, stderr) = cli(d, &["apply", "-f", "m"], &url);
        assert_eq!(code, Some(0), "{stderr}");
        let (code, table, _) = cli(d, &["get", "members"], &url);
        assert_eq!(code, Some(0));
        assert!(!table.contains('\u{1b}'), "{table:?}");
        assert_eq!(table.lines().count(), 2, "a header and one row: {table}");
        let (_, orgs, _) = cli(d, &["get", "organizations"], &url);
        assert!(
            orgs.contains("Team\\u{1b}[2K") && !orgs.contains('\u{1b}'),
            "{orgs:?}"
        );

        // An error that quotes the hostile value stays on one line.
        write(
            d,
            "bad/ns.yaml",
            "apiVersion: litellm.dev/v1alpha1\nkind: Organization\nmetadata: {name: o, namespace: \"x\\nerror: fake\\e[0m\"}\nspec: {}\n",
        );
        let (code, _, stderr) = cli(d, &["plan", "-f", "bad"], &url);
        assert_eq!(code, Some(1));
        let starts = stderr.lines().filter(|l| l.starts_with("error: ")).count();
        assert_eq!(
            starts, 1,
            "one error line, the fake one stays inside it: {stderr}"
        );
        assert_eq!(
            stderr.lines().filter(|l| l.contains("fake")).count(),
            1,
            "{stderr}"
        );
        assert!(!stderr.contains('\u{1b}'), "{stderr:?}");
        db.cleanup().await;
    }
}

/// Finding 9: a refused connection says so at once, with host and port, never the password.
#[test]
fn a_refused_connection_is_named_with_host_and_port() {
    let dir = tempfile::tempdir().expect("tempdir");
    let secret = "s3cr3t-Pa55word";
    let url = format!("postgres://admin:{secret}@127.0.0.1:9/litellm");
    for args in [&["get", "organizations"][..], &["migrate"][..]] {
        let (code, stdout, stderr) = cli(dir.path(), args, &url);
        assert_eq!(code, Some(1), "{stdout}{stderr}");
        assert!(
            stderr.contains("cannot connect to the database at 127.0.0.1:9: connection refused"),
            "{stderr}"
        );
        assert!(!stderr.contains("timed out"), "{stderr}");
        assert!(!stderr.contains(secret) && !stdout.contains(secret));
    }
}

/// Finding 3, CLI side: the engine refuses what the CRD refuses, naming the field.
#[tokio::test]
async fn metadata_past_the_bounds_is_refused_by_the_cli() {
    let deep = |levels: usize| {
        let mut v = json!("leaf");
        for _ in 0..levels {
            v = json!({ "a": v });
        }
        v
    };
    let many: serde_json::Map<String, Value> =
        (0..65).map(|i| (format!("k{i}"), json!(i))).collect();
    let cases = [
        (deep(7), "spec.metadata.a.a.a.a.a.a", "nested too deep"),
        // Past what the reader nests (128 levels of the whole document) is a read error.
        (
            deep(130),
            "spec.metadata.a.a.a.a.a.a",
            "nested more than 128 levels (recursion limit exceeded",
        ),
        (
            Value::Object(many),
            "spec.metadata",
            "must have at most 64 keys",
        ),
        (
            json!({"s": "x".repeat(4097)}),
            "spec.metadata.s",
            "must be 0 to 4096 characters long",
        ),
    ];
    for db in stores().await {
        let url = db.url();
        for (metadata, field, message) in &cases {
            let dir = tempfile::tempdir().expect("tempdir");
            let doc = json!({"apiVersion": "litellm.dev/v1alpha1", "kind": "Organization",
                "metadata": {"name": "o"}, "spec": {"metadata": metadata}});
            write(dir.path(), "o.json", &doc.to_string());
            let (code, stdout, stderr) = cli(dir.path(), &["plan", "-f", "o.json"], &url);
            assert_eq!(code, Some(1), "{field}: {stdout}{stderr}");
            // The reader's error names the whole path down to where it stopped.
            let named = if message.contains("128 levels") {
                stderr.contains(&format!(": {field}.a.a"))
            } else {
                stderr.contains(&format!(": {field}: "))
            };
            assert!(
                named && stderr.contains(message),
                "{field} {message}: {stderr}"
            );
        }
        // Just inside the bound is fine.
        let dir = tempfile::tempdir().expect("tempdir");
        let doc = json!({"apiVersion": "litellm.dev/v1alpha1", "kind": "Organization",
            "metadata": {"name": "o"}, "spec": {"metadata": deep(6)}});
        write(dir.path(), "o.json", &doc.to_string());
        let (code, stdout, stderr) = cli(dir.path(), &["apply", "-f", "o.json"], &url);
        assert_eq!(code, Some(0), "{stdout}{stderr}");
        db.cleanup().await;
    }
}

/// Create an Organization from raw JSON; returns the HTTP status and kube-apiserver's message.
async fn create(orgs: &Api<DynamicObject>, body: Value) -> (u16, String) {
    let object: DynamicObject = serde_json::from_value(body).expect("an object");
    match orgs.create(&PostParams::default(), &object).await {
        Ok(_) => (201, String::new()),
        Err(kube::Error::Api(status)) => (status.code, status.message),
        Err(e) => panic!("create: {e}"),
    }
}

/// Finding 3, CRD side: the committed CRD bounds `spec.metadata` (depth, keys, items, string
/// length) with schema keywords kube-apiserver enforces on untyped values, and answers 422
/// naming the field.
#[tokio::test]
async fn the_crd_bounds_metadata_with_a_422() {
    let cluster = Cluster::shared().await;
    let ns = cluster.namespace("hostile").await;
    let orgs: Api<DynamicObject> = Api::namespaced_with(
        cluster.client(),
        &ns,
        &ApiResource::erase::<Organization>(&()),
    );
    let nest = |levels: usize, leaf: Value| {
        let mut v = leaf;
        for _ in 0..levels {
            v = json!({ "a": v });
        }
        v
    };
    let body = |name: &str, metadata: Value| {
        json!({"apiVersion": "litellm.dev/v1alpha1", "kind": "Organization",
            "metadata": {"name": name}, "spec": {"metadata": metadata}})
    };
    // Six levels of objects and arrays, scalars at the bottom, at most 64 keys: accepted.
    let (code, ok) = create(&orgs, body("six", nest(5, json!({"k": "v"})))).await;
    assert_eq!(code, 201, "{ok}");
    let (code, ok) = create(
        &orgs,
        body(
            "list",
            nest(4, json!({"list": [1, "x", true], "empty": {}})),
        ),
    )
    .await;
    assert_eq!(code, 201, "{ok}");
    let (code, ok) = create(
        &orgs,
        body(
            "wide",
            Value::Object((0..64).map(|i| (format!("k{i}"), json!(i))).collect()),
        ),
    )
    .await;
    assert_eq!(code, 201, "{ok}");

    let too_deep = nest(7, json!("leaf"));
    let array_deep = nest(4, json!({"list": [[1]]}));
    let too_many: serde_json::Map<String, Value> =
        (0..65).map(|i| (format!("k{i}"), json!(i))).collect();
    let cases = [
        (
            "deep",
            too_deep,
            "spec.metadata.a.a.a.a.a.a",
            "Too many: 1: must have at most 0 items",
        ),
        (
            "arrays",
            array_deep,
            "spec.metadata.a.a.a.a.list[0]",
            "Too many: 1: must have at most 0 items",
        ),
        (
            "many",
            Value::Object(too_many),
            "spec.metadata",
            "Too many: 65: must have at most 64 items",
        ),
        (
            "long",
            json!({"s": "x".repeat(4097)}),
            "spec.metadata.s",
            "Too long: may not be more than 4096",
        ),
    ];
    for (name, metadata, field, detail) in cases {
        let (code, message) = create(&orgs, body(name, metadata)).await;
        assert_eq!(code, 422, "{name}: {message}");
        assert!(
            message.contains(&format!("{field}: {detail}")),
            "{name}: {field}: {detail} in {message}"
        );
    }
    // 130 levels: kube-apiserver reads JSON up to 10 000 levels deep, so the schema answers,
    // as for seven levels above; the object is refused and never stored.
    let (code, message) = create(&orgs, body("deep130", nest(130, json!("leaf")))).await;
    assert!(
        code == 422 && message.contains("spec.metadata.a.a.a.a.a.a: Too many: 1"),
        "{code} {message}"
    );
}

/// Issue 20, item 4: nesting past 128 levels is refused at once in any style (flow sequences
/// in a field, flow mappings in an unknown field, inside a kind that is skipped, block
/// style), each document on its own: the other documents of the file are still applied.
/// (The time each refusal takes is measured by hand, not asserted: see the README.)
#[tokio::test]
async fn deep_nesting_is_refused_at_once_and_the_rest_applied() {
    let n = 100_000;
    let hostile = [
        format!(
            "apiVersion: litellm.dev/v1alpha1\nkind: Organization\nmetadata: {{name: flow}}\nspec:\n  models: {}{}\n",
            "[".repeat(n),
            "]".repeat(n)
        ),
        format!(
            "apiVersion: litellm.dev/v1alpha1\nkind: Organization\nmetadata: {{name: mapping}}\nspec:\n  unknown: {}\n",
            "{a: ".repeat(n)
        ),
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: skipped}}\ndata:\n  x: {}\n",
            "[".repeat(40_000)
        ),
        format!(
            "apiVersion: litellm.dev/v1alpha1\nkind: Organization\nmetadata: {{name: block}}\nspec:\n  metadata:\n{}",
            (0..200)
                .map(|i| format!("{}k{i}:\n", " ".repeat(4 + 2 * i)))
                .collect::<String>()
        ),
    ];
    for db in [TestDb::sqlite().await, TestDb::litellm().await] {
        let url = db.url();
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        let mut text = String::new();
        for doc in &hostile {
            text.push_str(doc);
            text.push_str("---\n");
        }
        text.push_str(&org("after", "{alias: After}"));
        write(d, "deep.yaml", &text);
        let (code, stdout, stderr) = cli(d, &["apply", "-f", "deep.yaml"], &url);
        assert_eq!(code, Some(1), "{stdout}{stderr}");
        let errors: Vec<&str> = stderr
            .lines()
            .filter(|l| l.starts_with("error: "))
            .collect();
        assert_eq!(errors.len(), 4, "{stderr}");
        for (i, e) in errors.iter().enumerate() {
            assert!(
                e.contains(&format!(
                    "deep.yaml (document {}): invalid YAML: nested more than 128 levels",
                    i + 1
                )),
                "{e}"
            );
        }
        assert_eq!(aliases(d, &url), ["After"]);
        db.cleanup().await;
    }
}
