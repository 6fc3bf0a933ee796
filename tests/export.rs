//! `export` → `apply` on organizations made in LiteLLM: the manifests adopt the rows with
//! exactly their values (`plan` exits 0, nothing in LiteLLM changes), the adoption is recorded
//! in the ledger, and from then on the declared fields are managed.

mod export_support;
mod support;

use export_support::{
    adopting_changes_nothing, budget, kubectl_objects, member, organization, pyyaml_documents, run,
    text,
};
use serde_json::{Value, json};
use support::TestDb;

/// What LiteLLM's `/organization/new` and `member_add` leave, written with SQL.
async fn made_in_litellm(db: &TestDb) {
    let (arr, empty) = if db.is_postgres() {
        ("'{gpt-4o}'", "'{}'")
    } else {
        ("'[\"gpt-4o\"]'", "'[]'")
    };
    db.exec(&format!(
        r#"INSERT INTO "LiteLLM_BudgetTable" (budget_id, max_budget, budget_duration, created_by, updated_by) VALUES ('ui-budget', 1000, '30d', 'admin', 'admin');
           INSERT INTO "LiteLLM_BudgetTable" (budget_id, max_budget, created_by, updated_by) VALUES ('ui-member-budget', 100, 'admin', 'admin');
           INSERT INTO "LiteLLM_OrganizationTable" (organization_id, organization_alias, budget_id, models, metadata, spend, created_by, updated_by)
             VALUES ('ui-org', 'Made in the UI', 'ui-budget', {arr}, '{{"team": "ui"}}', 12.5, 'admin', 'admin');
           INSERT INTO "LiteLLM_UserTable" (user_id, user_email, user_role, models, teams, metadata, spend) VALUES ('u-ann', 'ann@example.com', 'internal_user', {empty}, {empty}, '{{}}', 0);
           INSERT INTO "LiteLLM_UserTable" (user_id, user_email, user_role, models, teams, metadata, spend) VALUES ('u-bob', NULL, 'internal_user', {empty}, {empty}, '{{}}', 0);
           INSERT INTO "LiteLLM_OrganizationMembership" (user_id, organization_id, user_role, budget_id, spend) VALUES ('u-ann', 'ui-org', 'org_admin', 'ui-member-budget', 0);
           INSERT INTO "LiteLLM_OrganizationMembership" (user_id, organization_id, user_role, spend) VALUES ('u-bob', 'ui-org', 'internal_user', 0);"#
    ))
    .await;
}

async fn export_then_apply_changes_nothing(db: TestDb) {
    made_in_litellm(&db).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let url = db.url();
    let out = run(dir.path(), &["export", "--namespace", "platform"], &url);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let manifests = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(manifests.contains("organizationId: ui-org"), "{manifests}");
    assert!(manifests.contains("budgetId: ui-budget"), "{manifests}");
    assert!(manifests.contains("name: made-in-the-ui"), "{manifests}");
    std::fs::write(dir.path().join("adopt.yaml"), &manifests).expect("write");

    adopting_changes_nothing(&db, dir.path(), "adopt.yaml").await;
    let ledger = if db.is_postgres() {
        r#"SELECT resource || ' ' || CAST(created AS TEXT) FROM litellm_org_operator.ledger ORDER BY resource"#
    } else {
        r#"SELECT resource || ' ' || CAST(created AS TEXT) FROM litellm_org_operator_ledger ORDER BY resource"#
    };
    let entries = db.strings(ledger).await;
    let adopted = if db.is_postgres() { "false" } else { "0" };
    assert_eq!(
        entries,
        vec![
            format!("Organization/platform/made-in-the-ui {adopted}"),
            format!("OrganizationMember/platform/made-in-the-ui-ann {adopted}"),
            format!("OrganizationMember/platform/made-in-the-ui-u-bob {adopted}"),
        ],
        "adopted, not created"
    );
    // From now on the declared fields are managed: an alias changed in LiteLLM is drift.
    db.exec(r#"UPDATE "LiteLLM_OrganizationTable" SET organization_alias = 'Renamed' WHERE organization_id = 'ui-org'"#)
        .await;
    let out = run(dir.path(), &["plan", "-f", "adopt.yaml"], &url);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("organization_alias: \"Renamed\" -> \"Made in the UI\""),
        "{}",
        text(&out)
    );
    // Exporting again finds nothing left to adopt.
    let out = run(dir.path(), &["export"], &url);
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("kind: Organization"),
        "{}",
        text(&out)
    );
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_then_apply_on_litellm_schema() {
    export_then_apply_changes_nothing(TestDb::litellm().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_then_apply_on_sqlite() {
    export_then_apply_changes_nothing(TestDb::sqlite().await).await;
}

/// A test on each store: `NAME::litellm_schema` (PostgreSQL with LiteLLM's migrations) and
/// `NAME::sqlite`.
macro_rules! on_both_stores {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn litellm_schema() {
                super::$name(super::TestDb::litellm().await).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name(super::TestDb::sqlite().await).await;
            }
        }
    };
}

/// The organizations' metadata as the database holds it, by id.
async fn metadata(db: &TestDb) -> Vec<(String, Value)> {
    db.strings(
        r#"SELECT organization_id || ' ' || CAST(metadata AS TEXT) FROM "LiteLLM_OrganizationTable" ORDER BY organization_id"#,
    )
    .await
    .iter()
    .map(|l| {
        let (id, json) = l.split_once(' ').expect("id and metadata");
        (id.to_string(), serde_json::from_str(json).expect("metadata JSON"))
    })
    .collect()
}

fn ledger_resources(db: &TestDb) -> &'static str {
    if db.is_postgres() {
        r#"SELECT DISTINCT resource FROM litellm_org_operator.ledger ORDER BY resource"#
    } else {
        r#"SELECT DISTINCT resource FROM litellm_org_operator_ledger ORDER BY resource"#
    }
}

/// Issue 20, item 1: strings a YAML 1.1 reader (kubectl) would read as booleans, numbers or
/// null are written so that kubectl and PyYAML read back the same strings, and applying the
/// export changes nothing.
async fn yaml_1_1_words_read_back_as_strings(db: TestDb) {
    budget(&db, "b1").await;
    let meta = json!({
        "approved": "no", "on": "on", "hex": "0X1F", "n": "N", "y": "y", "off": "Off",
        "yes": "YES", "thousand": "1_000", "time": "1:20", "float": "1e5", "octal": "0o17",
        "nested": {"list": ["~", "null", "2001-12-14", "-", "? x", "#", " lead", "trail "]}
    });
    organization(
        &db,
        "o-1",
        "yes",
        "b1",
        &["on".into(), "0X1F".into()],
        &meta,
    )
    .await;
    member(&db, "o-1", "y", Some("Off@example.com"), Some("org_admin")).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let url = db.url();
    let out = run(dir.path(), &["export", "--namespace", "platform"], &url);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let file = dir.path().join("adopt.yaml");
    std::fs::write(&file, &out.stdout).expect("write");
    for (reader, docs) in [
        ("PyYAML", pyyaml_documents(&file)),
        ("kubectl", kubectl_objects(&file)),
    ] {
        let org = docs
            .iter()
            .find(|d| d["kind"] == "Organization")
            .unwrap_or_else(|| panic!("{reader}: no Organization in {docs:?}"));
        assert_eq!(org["spec"]["alias"], "yes", "{reader}");
        assert_eq!(org["spec"]["models"], json!(["on", "0X1F"]), "{reader}");
        assert_eq!(org["spec"]["metadata"], meta, "{reader}");
        let m = docs
            .iter()
            .find(|d| d["kind"] == "OrganizationMember")
            .unwrap_or_else(|| panic!("{reader}: no member in {docs:?}"));
        assert_eq!(m["spec"]["user"]["userId"], "y", "{reader}");
        assert_eq!(m["spec"]["user"]["email"], "Off@example.com", "{reader}");
    }
    adopting_changes_nothing(&db, dir.path(), "adopt.yaml").await;
    assert_eq!(metadata(&db).await, vec![("o-1".to_string(), meta)]);
    db.cleanup().await;
}

on_both_stores!(yaml_1_1_words_read_back_as_strings);

/// Issue 20, item 2: a row export cannot represent as a manifest `apply` takes unchanged is
/// left out with a comment naming it and why, the exit code is 3, and applying what was
/// written is accepted whole and changes nothing.
async fn rows_export_cannot_represent_are_left_out(db: TestDb) {
    budget(&db, "b1").await;
    let none: &[String] = &[];
    let empty = json!({});
    organization(&db, "fine", "Fine", "b1", none, &empty).await;
    member(
        &db,
        "fine",
        "u-ok",
        Some("ok@example.com"),
        Some("internal_user"),
    )
    .await;
    member(&db, "fine", "u-admin", None, Some("proxy_admin")).await;
    member(&db, "fine", "u-null", None, None).await;
    // An email whose local part makes no name: the name comes from the user id.
    member(
        &db,
        "fine",
        "u-mail",
        Some("ü@example.com"),
        Some("org_admin"),
    )
    .await;
    organization(&db, "o-model", "Model", "b1", &[String::new()], &empty).await;
    organization(&db, "o-alias", &"a".repeat(300), "b1", none, &empty).await;
    let wide: serde_json::Map<String, Value> =
        (0..70).map(|i| (format!("k{i}"), json!(i))).collect();
    organization(&db, "o-wide", "Wide", "b1", none, &Value::Object(wide)).await;
    organization(
        &db,
        "o-long",
        "Long",
        "b1",
        none,
        &json!({"s": "x".repeat(5000)}),
    )
    .await;
    let deep = json!({"a": {"b": {"c": {"d": {"e": {"f": {"g": 1}}}}}}});
    organization(&db, "o-deep", "Deep", "b1", none, &deep).await;
    organization(&db, "org 1", "Spaced", "b1", none, &empty).await;
    member(&db, "org 1", "u-spaced", None, Some("org_admin")).await;

    let dir = tempfile::tempdir().expect("tempdir");
    let url = db.url();
    let out = run(dir.path(), &["export"], &url);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert_eq!(out.status.code(), Some(3), "{stdout}{stderr}");
    for (row, why) in [
        (
            "membership of user u-admin in organization fine",
            "spec.role",
        ),
        (
            "membership of user u-null in organization fine",
            "its role is NULL",
        ),
        ("organization o-model", "spec.models[0]"),
        ("organization o-alias", "spec.alias"),
        ("organization o-wide", "spec.metadata"),
        ("organization o-long", "spec.metadata.s"),
        ("organization o-deep", "spec.metadata"),
        ("organization org 1", "spec.organizationId"),
        (
            "membership of user u-spaced in organization org 1",
            "its organization is left out",
        ),
    ] {
        let line = stdout
            .lines()
            .find(|l| l.starts_with("# LEFT OUT: ") && l.contains(row))
            .unwrap_or_else(|| panic!("no comment for {row}: {stdout}"));
        assert!(line.contains(why), "{row}: {why} in {line}");
        assert!(
            stderr
                .lines()
                .any(|l| l.starts_with("export: left out ") && l.contains(row)),
            "{row} on stderr: {stderr}"
        );
    }
    assert!(stderr.contains("9 row(s) left out"), "{stderr}");
    std::fs::write(dir.path().join("adopt.yaml"), &stdout).expect("write");
    adopting_changes_nothing(&db, dir.path(), "adopt.yaml").await;
    assert_eq!(
        db.strings(ledger_resources(&db)).await,
        [
            "Organization/default/fine",
            "OrganizationMember/default/fine-ok",
            "OrganizationMember/default/fine-u-mail",
        ]
    );
    db.cleanup().await;
}

on_both_stores!(rows_export_cannot_represent_are_left_out);

/// Issue 20, item 3: a name the ledger already gives a resource (of any manager) is not
/// given again: the unmanaged organization aliased like a managed one gets a name of its own,
/// and each resource holds one organization.
async fn export_names_avoid_the_ledger(db: TestDb) {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = db.url();
    std::fs::write(
        dir.path().join("research.yaml"),
        "apiVersion: litellm.dev/v1alpha1\nkind: Organization\nmetadata: {name: research, namespace: platform}\nspec: {alias: Research}\n",
    )
    .expect("write");
    let out = run(dir.path(), &["apply", "-f", "research.yaml"], &url);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    budget(&db, "b1").await;
    organization(&db, "ui-research", "Research", "b1", &[], &json!({})).await;
    let out = run(dir.path(), &["export", "--namespace", "platform"], &url);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let manifests = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(manifests.contains("name: research-2\n"), "{manifests}");
    std::fs::write(dir.path().join("adopt.yaml"), &manifests).expect("write");
    let out = run(dir.path(), &["apply", "-f", "adopt.yaml"], &url);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = run(
        dir.path(),
        &["plan", "-f", "research.yaml", "-f", "adopt.yaml"],
        &url,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let owners = if db.is_postgres() {
        r#"SELECT resource || ' ' || organization_id FROM litellm_org_operator.ledger WHERE row_key LIKE 'organization/%' ORDER BY resource"#
    } else {
        r#"SELECT resource || ' ' || organization_id FROM litellm_org_operator_ledger WHERE row_key LIKE 'organization/%' ORDER BY resource"#
    };
    let entries = db.strings(owners).await;
    assert_eq!(entries.len(), 2, "{entries:?}");
    assert!(
        entries[0].starts_with("Organization/platform/research "),
        "{entries:?}"
    );
    assert_eq!(entries[1], "Organization/platform/research-2 ui-research");
    db.cleanup().await;
}

on_both_stores!(export_names_avoid_the_ledger);

/// Issue 20, item 6: one organization whose metadata no JSON number can hold (`1e400`) is
/// named and skipped by `get` and `export`; the others are still listed and exported, and
/// the exit code is 3.
async fn one_unreadable_row_does_not_block_the_others(db: TestDb) {
    budget(&db, "b1").await;
    organization(&db, "o-ok", "Readable", "b1", &[], &json!({"n": 1})).await;
    db.exec(
        r#"INSERT INTO "LiteLLM_OrganizationTable" (organization_id, organization_alias, budget_id, metadata, spend, created_by, updated_by)
           VALUES ('o-bad', 'Unreadable', 'b1', '{"h": 1e400}', 0, 'admin', 'admin')"#,
    )
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let url = db.url();
    for format in ["table", "json", "yaml"] {
        let out = run(dir.path(), &["get", "organizations", "-o", format], &url);
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert_eq!(out.status.code(), Some(3), "{format}: {stdout}{stderr}");
        assert!(
            stdout.contains("Readable") && !stdout.contains("Unreadable"),
            "{stdout}"
        );
        assert!(
            stderr.contains("get: skipped organization o-bad cannot be read")
                && stderr.contains("metadata"),
            "{stderr}"
        );
    }
    let out = run(dir.path(), &["export"], &url);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(stdout.contains("organizationId: o-ok"), "{stdout}");
    assert!(
        stdout.contains("# LEFT OUT: organization o-bad cannot be read"),
        "{stdout}"
    );
    db.cleanup().await;
}

on_both_stores!(one_unreadable_row_does_not_block_the_others);
