//! A database user that may not create the ledger's schema gets an error naming the grant to
//! run, and nothing is written.

mod support;

use std::process::Command;

use support::TestDb;

const BIN: &str = env!("CARGO_BIN_EXE_litellm-org-operator");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_create_privilege_names_the_grant() {
    let db = TestDb::litellm().await;
    let role = format!("lorg_noperm_{}", uuid::Uuid::new_v4().simple());
    db.exec(&format!(
        r#"CREATE ROLE {role} LOGIN;
           REVOKE CREATE ON DATABASE "{name}" FROM PUBLIC;
           GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role};"#,
        name = db.name()
    ))
    .await;
    let mut url = url::Url::parse(&db.url()).expect("url");
    url.set_username(&role).expect("user");
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("org.yaml"),
        "apiVersion: litellm.dev/v1alpha1\nkind: Organization\nmetadata: {name: acme}\nspec: {}\n",
    )
    .expect("write");
    let apply = || {
        Command::new(BIN)
            .current_dir(dir.path())
            .args(["apply", "-f", "org.yaml"])
            .env("DATABASE_URL", url.as_str())
            .output()
            .expect("run")
    };
    // No ledger schema yet, and no right to create one.
    db.exec("DROP SCHEMA litellm_org_operator CASCADE").await;
    let before = db.snapshot().await;
    let out = apply();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("GRANT CREATE ON DATABASE") && stderr.contains("--ledger-schema"),
        "{stderr}"
    );
    assert_eq!(db.snapshot().await, before, "nothing written");
    // `plan` needs no ledger before the first `apply`: it still works for that user.
    let out = Command::new(BIN)
        .current_dir(dir.path())
        .args(["plan", "-f", "org.yaml"])
        .env("DATABASE_URL", url.as_str())
        .output()
        .expect("run");
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The schema made by an administrator, without grants to the user: the grants are named.
    db.exec("CREATE SCHEMA litellm_org_operator").await;
    let out = apply();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("permission denied") && stderr.contains("GRANT USAGE, CREATE ON SCHEMA"),
        "{stderr}"
    );
    assert_eq!(db.snapshot().await, before, "nothing written");
    db.exec(&format!(
        r#"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {role}; DROP OWNED BY {role}; DROP ROLE {role};"#
    ))
    .await;
    db.cleanup().await;
}
