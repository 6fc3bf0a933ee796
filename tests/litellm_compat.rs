//! The engine against LiteLLM's own schema: every SQL migration of the pinned
//! `litellm-proxy-extras` package applied to a template database (scripts/test.sh builds it),
//! cloned per test.

mod support;

use litellm_org_operator::cli::manifest::ManifestSet;
use litellm_org_operator::cli::offline::{self, RunOptions};
use litellm_org_operator::crd::{OrganizationMemberSpec, OrganizationSpec};
use litellm_org_operator::engine::{DesiredMember, DesiredOrganization, ObjectKey, ids};
use litellm_org_operator::store::{SchemaState, Store};
use support::{TestDb, spec};

#[tokio::test]
async fn schema_check_accepts_litellm_and_never_migrates_it() {
    let db = TestDb::litellm().await;
    let store = db.store();
    assert_eq!(
        store.schema_state().await.expect("state"),
        SchemaState::Ready
    );
    // `migrate` on a LiteLLM database changes nothing.
    let tables_before = db
        .strings("SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1")
        .await;
    store.migrate().await.expect("migrate is a no-op");
    let tables_after = db
        .strings("SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1")
        .await;
    assert_eq!(tables_before, tables_after);
    assert!(tables_before.len() > 50, "LiteLLM has many tables");
    db.cleanup().await;
}

#[tokio::test]
async fn missing_columns_are_named() {
    let db = TestDb::litellm().await;
    db.exec(r#"ALTER TABLE "LiteLLM_OrganizationMembership" DROP COLUMN "budget_id""#)
        .await;
    match db.store().schema_state().await.expect("state") {
        SchemaState::Missing(m) => assert_eq!(
            m,
            vec!["column \"LiteLLM_OrganizationMembership\".\"budget_id\"".to_string()]
        ),
        other => panic!("expected Missing, got {other:?}"),
    }
    db.cleanup().await;
}

#[tokio::test]
async fn create_update_member_delete_on_litellm_schema() {
    let db = TestDb::litellm().await;
    let engine = db.engine();

    let o_spec: OrganizationSpec = spec(
        "alias: Research\nmodels: [gpt-4o]\nbudget: {maxBudget: 50, tpmLimit: 1000, rpmLimit: 10, maxParallelRequests: 4, budgetDuration: 1mo, modelMaxBudget: {gpt-4o: {budgetLimit: 5, timePeriod: 1d}}}\nmetadata: {team: r}\n",
    );
    let o =
        DesiredOrganization::from_spec(ObjectKey::new("ns", "research"), &o_spec, engine.actor())
            .expect("valid");
    let plan = engine.plan_organization(&o).await.expect("plan");
    engine.apply(&plan).await.expect("apply");
    let id = o.organization_id.clone();

    // The rows LiteLLM itself reads.
    let org_row = db
        .strings(&format!(
            r#"SELECT organization_alias || '|' || budget_id || '|' || array_to_string(models, ',') || '|' || (metadata->>'team') || '|' || created_by || '|' || spend::text
               FROM "LiteLLM_OrganizationTable" WHERE organization_id = '{id}'"#
        ))
        .await;
    assert_eq!(
        org_row,
        vec![format!(
            "Research|{}|gpt-4o|r|litellm-org-operator|0",
            o.owned_budget_id
        )]
    );
    let budget_row = db
        .strings(&format!(
            r#"SELECT max_budget::text || '|' || tpm_limit::text || '|' || rpm_limit::text || '|' || max_parallel_requests::text || '|' || budget_duration || '|' || (model_max_budget->'gpt-4o'->>'max_budget') || '|' || (model_max_budget->'gpt-4o'->>'budget_duration') || '|' || (budget_reset_at > now() AT TIME ZONE 'UTC')::text
               FROM "LiteLLM_BudgetTable" WHERE budget_id = '{}'"#,
            o.owned_budget_id
        ))
        .await;
    assert_eq!(budget_row, vec!["50|1000|10|4|1mo|5.0|1d|true".to_string()]);

    // A member created by email gets LiteLLM's new-internal-user defaults.
    let m_spec: OrganizationMemberSpec = spec(
        "organizationRef: {name: research}\nuser: {email: New.User@Example.com}\nrole: org_admin\nmaxBudgetInOrganization: 7.5\n",
    );
    let m = DesiredMember::from_spec(ObjectKey::new("ns", "new-user"), &m_spec).expect("valid");
    let plan = engine
        .plan_member(&m, &id, false)
        .await
        .expect("plan member");
    engine.apply(&plan).await.expect("apply member");
    let uid = ids::user_id_for_email("new.user@example.com");
    let user_row = db
        .strings(&format!(
            r#"SELECT user_email || '|' || user_role || '|' || cardinality(models)::text || '|' || cardinality(teams)::text || '|' || metadata::text || '|' || spend::text || '|' || COALESCE(max_budget::text, 'null')
               FROM "LiteLLM_UserTable" WHERE user_id = '{uid}'"#
        ))
        .await;
    assert_eq!(
        user_row,
        vec!["New.User@Example.com|internal_user|0|0|{}|0|null".to_string()]
    );
    let membership = db
        .strings(&format!(
            r#"SELECT m.user_role || '|' || b.max_budget::text || '|' || m.spend::text
               FROM "LiteLLM_OrganizationMembership" m JOIN "LiteLLM_BudgetTable" b ON b.budget_id = m.budget_id
               WHERE m.user_id = '{uid}' AND m.organization_id = '{id}'"#
        ))
        .await;
    assert_eq!(membership, vec!["org_admin|7.5|0".to_string()]);

    // An existing LiteLLM user, found by email case-insensitively, is not duplicated.
    db.exec(r#"INSERT INTO "LiteLLM_UserTable" (user_id, user_email, user_role, models, spend) VALUES ('existing-1', 'Old@Example.com', 'internal_user', '{}', 3.5)"#).await;
    let m2_spec: OrganizationMemberSpec = spec(
        "organizationRef: {name: research}\nuser: {email: old@example.com}\nrole: internal_user_viewer\n",
    );
    let m2 = DesiredMember::from_spec(ObjectKey::new("ns", "old-user"), &m2_spec).expect("valid");
    let plan = engine.plan_member(&m2, &id, false).await.expect("plan");
    assert_eq!(plan.user_id.as_deref(), Some("existing-1"));
    assert!(!plan.user_created);
    engine.apply(&plan).await.expect("apply");

    // Zero writes on a second pass.
    let before = db.snapshot().await;
    for p in [
        engine.plan_organization(&o).await.expect("plan"),
        engine.plan_member(&m, &id, false).await.expect("plan"),
        engine.plan_member(&m2, &id, false).await.expect("plan"),
    ] {
        assert!(p.is_empty(), "{p}");
    }
    assert_eq!(db.snapshot().await, before);

    // Rows LiteLLM adds around an organization: a team, a project on it, keys, a user whose
    // organization_id points at the org. The cascade must satisfy every foreign key.
    db.exec(&format!(
        r#"INSERT INTO "LiteLLM_TeamTable" (team_id, team_alias, organization_id, admins, members, models) VALUES ('team-1', 't', '{id}', '{{}}', '{{}}', '{{}}');
           INSERT INTO "LiteLLM_ProjectTable" (project_id, team_id, models, created_by, updated_by) VALUES ('proj-1', 'team-1', '{{}}', 'x', 'x');
           INSERT INTO "LiteLLM_VerificationToken" (token, organization_id, team_id, models) VALUES ('sk-hash-1', '{id}', 'team-1', '{{}}');
           UPDATE "LiteLLM_UserTable" SET organization_id = '{id}' WHERE user_id = 'existing-1';"#
    ))
    .await;
    let plan = engine
        .plan_delete_organization(&o.key, &o.organization_id, false)
        .await
        .expect("plan delete");
    engine
        .apply(&plan)
        .await
        .expect("cascade in one transaction");
    for (table, column) in [
        ("LiteLLM_TeamTable", "organization_id"),
        ("LiteLLM_OrganizationMembership", "organization_id"),
        ("LiteLLM_VerificationToken", "organization_id"),
        ("LiteLLM_OrganizationTable", "organization_id"),
    ] {
        let n = db
            .strings(&format!(
                r#"SELECT count(*)::text FROM "{table}" WHERE "{column}" = '{id}'"#
            ))
            .await;
        assert_eq!(n, vec!["0".to_string()], "{table}");
    }
    assert_eq!(
        db.count("LiteLLM_BudgetTable").await,
        0,
        "org and member budgets removed"
    );
    assert_eq!(
        db.count("LiteLLM_UserTable").await,
        2,
        "users are never deleted"
    );
    assert_eq!(
        db.strings(r#"SELECT COALESCE(team_id, 'NULL') FROM "LiteLLM_ProjectTable""#)
            .await,
        vec!["NULL".to_string()],
        "the project survives with its team link cleared by LiteLLM's ON DELETE SET NULL"
    );
    db.cleanup().await;
}

#[tokio::test]
async fn examples_apply_on_litellm_schema() {
    let db = TestDb::litellm().await;
    db.exec(r#"INSERT INTO "LiteLLM_BudgetTable" (budget_id, max_budget, created_by, updated_by) VALUES ('shared-marketing-budget', 300, 'admin', 'admin')"#).await;
    let set = ManifestSet::load(&[std::path::PathBuf::from("examples")]);
    assert!(set.errors.is_empty(), "{:?}", set.errors);
    let engine = db.engine();
    let apply = RunOptions {
        apply: true,
        ..Default::default()
    };
    let report = offline::run(&engine, &set, apply).await;
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(db.count("LiteLLM_OrganizationTable").await, 3);
    let again = offline::run(&engine, &set, apply).await;
    assert!(!again.has_changes(), "{:?}", again.plans);
    db.cleanup().await;
}
