//! The database named by libpq's environment (`PGHOST`, `PGPORT`, `PGDATABASE`, `PGUSER`,
//! `PGPASSWORD`, `PGSSLMODE`) behind a bare `--database postgres://`, as the chart passes the
//! keys of a CloudNativePG application Secret; the password never printed.

mod support;

use std::process::{Command, Output};

use support::TestDb;

const BIN: &str = env!("CARGO_BIN_EXE_litellm-org-operator");
const PASSWORD: &str = "pw-never-printed-7f3a";

/// The binary with only the PG* variables naming the test database (the URL's parts).
fn with_pg_env(db: &TestDb, args: &[&str], overrides: &[(&str, &str)]) -> Output {
    let url = url::Url::parse(&db.url()).expect("test database URL");
    let mut cmd = Command::new(BIN);
    cmd.args(args).env_remove("DATABASE_URL");
    for var in [
        "PGHOST",
        "PGPORT",
        "PGDATABASE",
        "PGUSER",
        "PGPASSWORD",
        "PGSSLMODE",
        "PGSSLROOTCERT",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("PGHOST", url.host_str().expect("host"))
        .env("PGPORT", url.port().unwrap_or(5432).to_string())
        .env("PGDATABASE", url.path().trim_start_matches('/'))
        .env("PGUSER", url.username())
        .env("PGPASSWORD", PASSWORD);
    for (k, v) in overrides {
        cmd.env(k, v);
    }
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("org.yaml"),
        "apiVersion: litellm.dev/v1alpha1\nkind: Organization\nmetadata:\n  name: research\n  \
         namespace: ai\nspec:\n  alias: Research From Env\n",
    )
    .expect("manifest");
    cmd.current_dir(dir.path())
        .output()
        .expect("run the binary")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bare_postgres_url_takes_the_rest_from_the_pg_environment() {
    let db = TestDb::litellm().await;
    let out = with_pg_env(
        &db,
        &["apply", "-f", "org.yaml", "--database", "postgres://"],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(!text(&out).contains(PASSWORD));
    let aliases = db
        .strings(r#"SELECT organization_alias FROM "LiteLLM_OrganizationTable""#)
        .await;
    assert_eq!(aliases, ["Research From Env"]);

    let out = with_pg_env(
        &db,
        &["get", "organizations", "--database", "postgres://"],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("Research From Env"), "{}", text(&out));

    // A database that does not exist: the error names where it looked, never the password.
    let out = with_pg_env(
        &db,
        &["get", "organizations", "--database", "postgres://"],
        &[("PGDATABASE", "lorg_no_such_database")],
    );
    let report = text(&out);
    assert!(!out.status.success(), "{report}");
    assert!(!report.contains(PASSWORD), "{report}");
    assert!(
        report.contains("5432") || report.contains("database"),
        "{report}"
    );
}

/// PGSSLMODE is honoured: `require` against the test server, which serves no TLS, is refused
/// (the same variables with `disable` connect above), and the message carries no password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgsslmode_is_honoured() {
    let db = TestDb::litellm().await;
    let ssl: Vec<String> = db
        .strings("SELECT setting FROM pg_settings WHERE name = 'ssl'")
        .await;
    let ok = with_pg_env(
        &db,
        &["get", "organizations", "--database", "postgres://"],
        &[("PGSSLMODE", "disable")],
    );
    assert!(ok.status.success(), "{}", text(&ok));
    let required = with_pg_env(
        &db,
        &["get", "organizations", "--database", "postgres://"],
        &[("PGSSLMODE", "require")],
    );
    let report = text(&required);
    assert!(!report.contains(PASSWORD), "{report}");
    if ssl == ["off"] {
        assert!(!required.status.success(), "{report}");
        assert!(
            report.contains("cannot connect to the database at ") && report.contains("TLS"),
            "{report}"
        );
    } else {
        assert!(required.status.success(), "{report}");
    }
}
