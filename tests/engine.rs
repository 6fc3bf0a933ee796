//! Engine + store behaviour, run on PostgreSQL (the operator's own tables) and on SQLite.

mod support;

use litellm_org_operator::crd::{OrganizationMemberSpec, OrganizationSpec};
use litellm_org_operator::engine::{
    DesiredMember, DesiredOrganization, ObjectKey, ObjectPlan, ids,
};
use litellm_org_operator::error::{EngineError, StoreError};
use litellm_org_operator::store::{
    BudgetRow, Change, Dependents, MembershipRow, NewUserDefaults, OrganizationRow, Scalar, Store,
};
use support::{TestDb, spec};

const ACTOR: &str = "litellm-org-operator";

fn org(ns: &str, name: &str, yaml: &str) -> DesiredOrganization {
    let s: OrganizationSpec = spec(yaml);
    DesiredOrganization::from_spec(ObjectKey::new(ns, name), &s, ACTOR).expect("valid org")
}

fn member(ns: &str, name: &str, yaml: &str) -> DesiredMember {
    let s: OrganizationMemberSpec = spec(yaml);
    DesiredMember::from_spec(ObjectKey::new(ns, name), &s).expect("valid member")
}

/// The plan without its ledger claims and releases: the writes to LiteLLM's rows.
fn row_changes(mut plan: ObjectPlan) -> ObjectPlan {
    plan.changes
        .retain(|c| !matches!(c, Change::Claim { .. } | Change::Release { .. }));
    plan
}

/// Plan and apply an organization; returns the row changes that were applied.
async fn apply_org(db: &TestDb, d: &DesiredOrganization) -> ObjectPlan {
    let engine = db.engine();
    let plan = engine.plan_organization(d).await.expect("plan org");
    engine.apply(&plan).await.expect("apply org");
    row_changes(plan)
}

/// Plan and apply a member; returns the row changes that were applied.
async fn apply_member(db: &TestDb, d: &DesiredMember, org_id: &str) -> ObjectPlan {
    let engine = db.engine();
    let plan = engine
        .plan_member(d, org_id, false)
        .await
        .expect("plan member");
    engine.apply(&plan).await.expect("apply member");
    row_changes(plan)
}

macro_rules! on_both {
    ($name:ident) => {
        mod $name {
            #[tokio::test]
            async fn postgres() {
                let db = super::TestDb::postgres_migrated().await;
                super::$name(&db).await;
                db.cleanup().await;
            }
            #[tokio::test]
            async fn sqlite() {
                let db = super::TestDb::sqlite().await;
                super::$name(&db).await;
                db.cleanup().await;
            }
        }
    };
}

async fn organization_lifecycle(db: &TestDb) {
    let d = org(
        "team-a",
        "acme",
        "alias: Acme\nmodels: [gpt-4o]\nbudget: {maxBudget: 100, budgetDuration: 30d, modelMaxBudget: {gpt-4o: {budgetLimit: 10, timePeriod: 1d}}}\nmetadata: {tier: gold}\n",
    );
    let plan = apply_org(db, &d).await;
    assert_eq!(plan.changes.len(), 2, "{plan}");
    assert!(matches!(plan.changes[0], Change::CreateBudget(_)));
    assert!(matches!(plan.changes[1], Change::CreateOrganization(_)));

    let orgs = db.store().list_organizations().await.expect("list").rows;
    assert_eq!(orgs.len(), 1);
    assert_eq!(
        orgs[0].organization_id,
        ids::organization_id("team-a", "acme")
    );
    assert_eq!(orgs[0].alias, "Acme");
    assert_eq!(orgs[0].max_budget, Some(100.0));
    assert_eq!(orgs[0].models, vec!["gpt-4o".to_string()]);
    let owner = orgs[0].owner.as_ref().expect("owner");
    assert_eq!(owner.to_string(), "Organization/team-a/acme (cli)");
    assert_eq!(
        (
            owner.manager.as_deref(),
            owner.kind.as_str(),
            owner.namespace.as_deref(),
            owner.name.as_deref()
        ),
        (Some("cli"), "Organization", Some("team-a"), Some("acme"))
    );
    let reset = db
        .strings(r#"SELECT CAST(budget_reset_at AS TEXT) FROM "LiteLLM_BudgetTable""#)
        .await;
    assert_ne!(
        reset,
        vec!["NULL".to_string()],
        "budget_reset_at is set for a duration"
    );

    // Second pass: nothing to do, and nothing written.
    let before = db.snapshot().await;
    let again = apply_org(db, &d).await;
    assert!(again.is_empty(), "{again}");
    assert_eq!(db.snapshot().await, before);

    // A budget change updates the budget row only.
    let changed = org(
        "team-a",
        "acme",
        "alias: Acme\nmodels: [gpt-4o]\nbudget: {maxBudget: 250, budgetDuration: 30d, modelMaxBudget: {gpt-4o: {budgetLimit: 10, timePeriod: 1d}}}\nmetadata: {tier: gold}\n",
    );
    let plan = apply_org(db, &changed).await;
    assert_eq!(plan.changes.len(), 1, "{plan}");
    assert!(matches!(plan.changes[0], Change::UpdateBudget { .. }));
    assert!(
        plan.to_string().contains("max_budget: 100 -> 250"),
        "{plan}"
    );
    assert_eq!(
        db.strings(r#"SELECT CAST(max_budget AS TEXT) FROM "LiteLLM_BudgetTable""#)
            .await
            .iter()
            .map(|s| s.parse::<f64>().unwrap_or(-1.0))
            .collect::<Vec<_>>(),
        vec![250.0]
    );

    // Switching to a budgetRef re-points the org and removes the owned budget row.
    db.engine()
        .store()
        .apply(
            &[Change::CreateBudget(
                BudgetRow::new("shared", "someone-else")
                    .with("max_budget", Some(Scalar::Float(9.0))),
            )],
            "someone-else",
        )
        .await
        .expect("shared budget");
    let with_ref = org(
        "team-a",
        "acme",
        "alias: Acme\nmodels: [gpt-4o]\nbudgetRef: {budgetId: shared}\nmetadata: {tier: gold}\n",
    );
    let plan = apply_org(db, &with_ref).await;
    assert!(
        matches!(plan.changes[0], Change::UpdateOrganization { .. }),
        "{plan}"
    );
    assert!(
        matches!(&plan.changes[1], Change::DeleteBudget { budget_id } if *budget_id == d.owned_budget_id),
        "{plan}"
    );
    let budgets = db
        .strings(r#"SELECT budget_id FROM "LiteLLM_BudgetTable""#)
        .await;
    assert_eq!(budgets, vec!["shared".to_string()]);

    // A missing budgetRef names the field (the database decides it, not the spec); nothing
    // is written.
    let missing = org("team-a", "other", "budgetRef: {budgetId: nope}\n");
    match db.engine().plan_organization(&missing).await {
        Err(EngineError::BudgetNotFound { field, .. }) => {
            assert_eq!(field, "spec.budgetRef.budgetId")
        }
        other => panic!("expected BudgetNotFound, got {other:?}"),
    }
}
on_both!(organization_lifecycle);

async fn metadata_keeps_foreign_keys(db: &TestDb) {
    let d = org("ns", "meta", "metadata: {a: 1, b: two}\n");
    apply_org(db, &d).await;
    // Someone else (LiteLLM's UI) adds a key.
    let observed = db
        .store()
        .observe_organization(&d.organization_id, &d.owned_budget_id, &d.owned_budget_id)
        .await
        .expect("observe");
    let mut row: OrganizationRow = observed.organization.expect("org row");
    let before = row.clone();
    let mut metadata = row.metadata_map();
    metadata.insert("ui_key".into(), serde_json::json!(true));
    row.metadata = serde_json::Value::Object(metadata).to_string();
    db.store()
        .apply(&[Change::UpdateOrganization { before, after: row }], "ui")
        .await
        .expect("outside write");
    // The spec drops `a`: `a` goes, `ui_key` stays.
    let d2 = org("ns", "meta", "metadata: {b: three}\n");
    apply_org(db, &d2).await;
    let observed = db
        .store()
        .observe_organization(&d.organization_id, &d.owned_budget_id, &d.owned_budget_id)
        .await
        .expect("observe");
    let meta = observed.organization.expect("org").metadata_map();
    assert!(!meta.contains_key("a"));
    assert_eq!(meta.get("b"), Some(&serde_json::json!("three")));
    assert_eq!(meta.get("ui_key"), Some(&serde_json::json!(true)));
    assert!(
        !meta.contains_key("litellm-org-operator"),
        "ownership lives in the ledger, not in LiteLLM's metadata"
    );
    assert!(apply_org(db, &d2).await.is_empty());
}
on_both!(metadata_keeps_foreign_keys);

async fn ownership_conflicts(db: &TestDb) {
    // An organization made outside the operator, adopted through spec.organizationId.
    db.engine()
        .store()
        .apply(
            &[
                Change::CreateBudget(BudgetRow::new("ui-budget", "admin")),
                Change::CreateOrganization(OrganizationRow {
                    organization_id: "org-ui".into(),
                    organization_alias: "From UI".into(),
                    budget_id: "ui-budget".into(),
                    ..Default::default()
                }),
            ],
            "admin",
        )
        .await
        .expect("outside org");
    let adopt = org("ns", "adopter", "organizationId: org-ui\nalias: Adopted\n");
    let plan = apply_org(db, &adopt).await;
    assert!(
        plan.changes
            .iter()
            .any(|c| matches!(c, Change::UpdateOrganization { .. }))
    );
    // A second resource pinning the same id is refused and writes nothing.
    let thief = org("other-ns", "thief", "organizationId: org-ui\n");
    let before = db.snapshot().await;
    match db.engine().plan_organization(&thief).await {
        Err(EngineError::Conflict(msg)) => {
            assert!(msg.contains("Organization/ns/adopter"), "{msg}")
        }
        other => panic!("expected Conflict, got {other:?}"),
    }
    assert_eq!(db.snapshot().await, before);
}
on_both!(ownership_conflicts);

async fn members_resolve_users_like_litellm(db: &TestDb) {
    let o = org("ns", "acme", "{}\n");
    apply_org(db, &o).await;
    let org_id = o.organization_id.clone();

    // By email, unknown: the user is created with a deterministic id.
    let m1 = member(
        "ns",
        "ann",
        "organizationRef: {name: acme}\nuser: {email: Ann@Example.com}\nrole: internal_user\nmaxBudgetInOrganization: 20\n",
    );
    let p1 = apply_member(db, &m1, &org_id).await;
    assert!(p1.user_created);
    assert_eq!(
        p1.user_id.as_deref(),
        Some(ids::user_id_for_email("ann@example.com").as_str())
    );
    let role = db
        .strings(r#"SELECT user_role FROM "LiteLLM_UserTable""#)
        .await;
    assert_eq!(role, vec!["internal_user".to_string()]);

    // The same person by a differently-cased email in another org resource: found, not created.
    let o2 = org("ns", "beta", "{}\n");
    apply_org(db, &o2).await;
    let m2 = member(
        "ns",
        "ann-beta",
        "organizationRef: {name: beta}\nuser: {email: ann@EXAMPLE.com}\nrole: org_admin\n",
    );
    let p2 = apply_member(db, &m2, &o2.organization_id).await;
    assert!(!p2.user_created);
    assert_eq!(p2.user_id, p1.user_id);
    assert_eq!(db.count("LiteLLM_UserTable").await, 1);

    // Second pass writes nothing.
    let before = db.snapshot().await;
    assert!(apply_member(db, &m1, &org_id).await.is_empty());
    assert!(apply_member(db, &m2, &o2.organization_id).await.is_empty());
    assert_eq!(db.snapshot().await, before);

    // A role change is one membership update.
    let m1b = member(
        "ns",
        "ann",
        "organizationRef: {name: acme}\nuser: {email: Ann@Example.com}\nrole: internal_user_viewer\nmaxBudgetInOrganization: 20\n",
    );
    let p = apply_member(db, &m1b, &org_id).await;
    assert_eq!(p.changes.len(), 1, "{p}");
    assert!(matches!(p.changes[0], Change::UpdateMembership { .. }));

    // Another resource claiming the same (user, org) pair gets Conflict and writes nothing.
    let dup = member(
        "ns",
        "ann-again",
        "organizationRef: {name: acme}\nuser: {email: ann@example.com}\nrole: org_admin\n",
    );
    let before = db.snapshot().await;
    match db.engine().plan_member(&dup, &org_id, false).await {
        Err(EngineError::Conflict(msg)) => {
            assert!(
                msg.contains("is managed by OrganizationMember/ns/ann"),
                "{msg}"
            )
        }
        other => panic!("expected Conflict, got {other:?}"),
    }
    assert_eq!(db.snapshot().await, before);

    // Two users with one email: a Conflict, never a guess.
    db.exec(r#"INSERT INTO "LiteLLM_UserTable" (user_id, user_email) VALUES ('x1', 'twin@example.com'), ('x2', 'TWIN@example.com')"#).await;
    let twin = member(
        "ns",
        "twin",
        "organizationRef: {name: acme}\nuser: {email: twin@example.com}\nrole: internal_user\n",
    );
    match db.engine().plan_member(&twin, &org_id, false).await {
        Err(EngineError::Conflict(msg)) => {
            assert!(msg.contains("x1") && msg.contains("x2"), "{msg}")
        }
        other => panic!("expected Conflict, got {other:?}"),
    }
    // By id it is unambiguous.
    let by_id = member(
        "ns",
        "twin",
        "organizationRef: {name: acme}\nuser: {userId: x2, email: twin@example.com}\nrole: internal_user\n",
    );
    let p = apply_member(db, &by_id, &org_id).await;
    assert_eq!(p.user_id.as_deref(), Some("x2"));
    assert!(!p.user_created);

    // A member of an organization that does not exist.
    let lost = member(
        "ns",
        "lost",
        "organizationId: no-such-org\nuser: {userId: x1}\nrole: internal_user\n",
    );
    assert!(matches!(
        db.engine().plan_member(&lost, "no-such-org", false).await,
        Err(EngineError::OrganizationNotFound(_))
    ));
}
on_both!(members_resolve_users_like_litellm);

async fn member_moves_and_deletes(db: &TestDb) {
    let a = org("ns", "a", "{}\n");
    let b = org("ns", "b", "{}\n");
    apply_org(db, &a).await;
    apply_org(db, &b).await;
    let m = member(
        "ns",
        "m",
        "organizationRef: {name: a}\nuser: {userId: u1}\nrole: internal_user\n",
    );
    apply_member(db, &m, &a.organization_id).await;
    // The member resource now points at org b: the old membership goes.
    let moved = member(
        "ns",
        "m",
        "organizationRef: {name: b}\nuser: {userId: u1}\nrole: internal_user\n",
    );
    let p = apply_member(db, &moved, &b.organization_id).await;
    assert!(p.changes.iter().any(|c| matches!(c, Change::DeleteMembership { organization_id, .. } if *organization_id == a.organization_id)), "{p}");
    let rows = db
        .strings(r#"SELECT organization_id FROM "LiteLLM_OrganizationMembership""#)
        .await;
    assert_eq!(rows, vec![b.organization_id.clone()]);

    // Delete: the membership and its budget go, the user stays.
    let engine = db.engine();
    let plan = engine
        .plan_delete_member(&moved.key, false)
        .await
        .expect("plan delete");
    engine.apply(&plan).await.expect("delete");
    assert_eq!(db.count("LiteLLM_OrganizationMembership").await, 0);
    assert_eq!(db.count("LiteLLM_UserTable").await, 1);
    assert_eq!(
        db.strings(r#"SELECT budget_id FROM "LiteLLM_BudgetTable" ORDER BY budget_id"#)
            .await
            .len(),
        2,
        "only the two org budgets remain"
    );
    // Deleting again is a no-op (forgiving).
    let plan = engine
        .plan_delete_member(&moved.key, false)
        .await
        .expect("plan delete again");
    assert!(plan.is_empty());
}
on_both!(member_moves_and_deletes);

async fn organization_delete_cascades(db: &TestDb) {
    let o = org("ns", "doomed", "budget: {maxBudget: 5}\n");
    apply_org(db, &o).await;
    let id = o.organization_id.clone();
    for (name, user) in [("m1", "u1"), ("m2", "u2")] {
        let m = member(
            "ns",
            name,
            &format!(
                "organizationRef: {{name: doomed}}\nuser: {{userId: {user}}}\nrole: internal_user\nmaxBudgetInOrganization: 1\n"
            ),
        );
        apply_member(db, &m, &id).await;
    }
    db.exec(&format!(
        r#"INSERT INTO "LiteLLM_TeamTable" (team_id, organization_id) VALUES ('team-1', '{id}');
           INSERT INTO "LiteLLM_VerificationToken" (token, organization_id) VALUES ('hashed-key-1', '{id}');
           UPDATE "LiteLLM_UserTable" SET organization_id = '{id}' WHERE user_id = 'u1';"#
    ))
    .await;
    let engine = db.engine();
    let plan = engine
        .plan_delete_organization(&o.key, &o.organization_id, false)
        .await
        .expect("plan");
    assert_eq!(row_changes(plan.clone()).changes.len(), 1, "{plan}");
    // The plan names what the cascade takes.
    assert_eq!(
        plan.deleted_dependents(),
        Some(Dependents {
            teams: 1,
            keys: 1,
            memberships: 2
        })
    );
    assert!(
        plan.to_string()
            .contains("(cascade: 1 team, 1 key, 2 memberships)"),
        "{plan}"
    );
    // A key added after the plan read: the delete writes nothing and says to plan again.
    db.exec(&format!(
        r#"INSERT INTO "LiteLLM_VerificationToken" (token, organization_id) VALUES ('hashed-key-2', '{id}');"#
    ))
    .await;
    let before = db.snapshot().await;
    match engine.apply(&plan).await {
        Err(EngineError::Store(StoreError::Changed(m))) => {
            assert!(m.contains("2 keys"), "{m}")
        }
        other => panic!("expected Changed, got {other:?}"),
    }
    assert_eq!(
        db.snapshot().await,
        before,
        "nothing of the delete was written"
    );
    let plan = engine
        .plan_delete_organization(&o.key, &o.organization_id, false)
        .await
        .expect("plan");
    assert_eq!(plan.deleted_dependents().map(|d| d.keys), Some(2));
    engine.apply(&plan).await.expect("cascade");
    for table in [
        "LiteLLM_TeamTable",
        "LiteLLM_OrganizationMembership",
        "LiteLLM_VerificationToken",
        "LiteLLM_OrganizationTable",
        "LiteLLM_BudgetTable",
    ] {
        assert_eq!(db.count(table).await, 0, "{table} should be empty");
    }
    assert_eq!(
        db.count("LiteLLM_UserTable").await,
        2,
        "users are never deleted"
    );
    assert_eq!(
        db.strings(r#"SELECT organization_id FROM "LiteLLM_UserTable" WHERE user_id = 'u1'"#)
            .await,
        vec!["NULL".to_string()]
    );
    // Already gone: planning the delete again is empty.
    assert!(
        engine
            .plan_delete_organization(&o.key, &o.organization_id, false)
            .await
            .expect("plan")
            .is_empty()
    );
}
on_both!(organization_delete_cascades);

async fn failed_transaction_leaves_nothing(db: &TestDb) {
    // The second change violates a foreign key, so the first must be rolled back.
    let before = db.snapshot().await;
    let result = db
        .store()
        .apply(
            &[
                Change::CreateBudget(BudgetRow::new("half", ACTOR)),
                Change::CreateOrganization(OrganizationRow {
                    organization_id: "o".into(),
                    organization_alias: "o".into(),
                    budget_id: "missing-budget".into(),
                    ..Default::default()
                }),
            ],
            ACTOR,
        )
        .await;
    assert!(result.is_err());
    assert_eq!(db.snapshot().await, before);
}
on_both!(failed_transaction_leaves_nothing);

async fn new_users_get_the_proxys_defaults(db: &TestDb) {
    let o = org("ns", "acme", "{}\n");
    apply_org(db, &o).await;
    db.exec(r#"INSERT INTO "LiteLLM_UserTable" (user_id, user_email, user_role, models, teams, metadata, spend) VALUES ('existing', 'old@example.com', 'internal_user', '{}', '{}', '{}', 0)"#.replace("'{}', '{}', '{}'", if db.is_postgres() { "'{}', '{}', '{}'" } else { "'[]', '[]', '{}'" }).as_str())
        .await;
    let engine = db.engine().with_new_user_defaults(NewUserDefaults {
        models: vec!["gpt-4o".into(), "claude".into()],
        max_budget: Some(25.0),
        budget_duration: Some("30d".into()),
    });
    for (name, email) in [("new", "new@example.com"), ("old", "old@example.com")] {
        let m = member(
            "ns",
            name,
            &format!(
                "organizationRef: {{name: acme}}\nuser: {{email: {email}}}\nrole: internal_user\n"
            ),
        );
        let plan = engine
            .plan_member(&m, &o.organization_id, false)
            .await
            .expect("plan");
        engine.apply(&plan).await.expect("apply");
    }
    let new_id = ids::user_id_for_email("new@example.com");
    let row = db
        .strings(&format!(
            r#"SELECT CAST(max_budget AS TEXT) || '|' || budget_duration || '|' || CAST(budget_reset_at IS NOT NULL AS TEXT) FROM "LiteLLM_UserTable" WHERE user_id = '{new_id}'"#
        ))
        .await;
    let expected_reset = if db.is_postgres() { "true" } else { "1" };
    assert_eq!(
        row,
        vec![format!(
            "25{}|30d|{expected_reset}",
            if db.is_postgres() { "" } else { ".0" }
        )]
    );
    let models = if db.is_postgres() {
        db.strings(&format!(
            r#"SELECT array_to_string(models, ',') FROM "LiteLLM_UserTable" WHERE user_id = '{new_id}'"#
        ))
        .await
    } else {
        db.strings(&format!(
            r#"SELECT models FROM "LiteLLM_UserTable" WHERE user_id = '{new_id}'"#
        ))
        .await
    };
    assert!(
        models[0].contains("gpt-4o") && models[0].contains("claude"),
        "{models:?}"
    );
    // An existing user is never changed.
    let old = db
        .strings(r#"SELECT COALESCE(CAST(max_budget AS TEXT), 'none') || '|' || COALESCE(budget_duration, 'none') FROM "LiteLLM_UserTable" WHERE user_id = 'existing'"#)
        .await;
    assert_eq!(old, vec!["none|none".to_string()]);
}
on_both!(new_users_get_the_proxys_defaults);

async fn member_count(
    engine: &litellm_org_operator::engine::Engine<litellm_org_operator::store::AnyStore>,
    org_id: &str,
) -> i64 {
    engine
        .organization_usage(org_id)
        .await
        .expect("usage")
        .expect("the organization exists")
        .member_count
}

/// Member counts for status come from one grouped read kept for a resync period; after the
/// engine itself adds or removes a membership the read is repeated once it is 2 s old, so an
/// organization's next status shows its new members (and not a resync period later).
async fn member_counts_follow_the_engines_own_writes(db: &TestDb) {
    let engine = db
        .engine()
        .with_member_counts_every(std::time::Duration::from_secs(600));
    let d = org("counts", "acme", "budget: {maxBudget: 10}\n");
    let plan = engine.plan_organization(&d).await.expect("plan org");
    engine.apply(&plan).await.expect("apply org");
    let org_id = plan.organization_id.clone().expect("org id");
    assert_eq!(member_count(&engine, &org_id).await, 0);

    for (name, email) in [("ann", "ann@example.com"), ("bob", "bob@example.com")] {
        let m = member(
            "counts",
            name,
            &format!(
                "organizationRef: {{name: acme}}\nuser: {{email: {email}}}\nrole: internal_user\n"
            ),
        );
        let plan = engine
            .plan_member(&m, &org_id, false)
            .await
            .expect("plan member");
        engine.apply(&plan).await.expect("apply member");
    }
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    assert_eq!(
        member_count(&engine, &org_id).await,
        2,
        "the engine's own member writes are counted"
    );

    // A membership LiteLLM adds is seen at the next read, which the cached counts put off
    // until they are a resync period old (600 s here): still 2.
    db.exec(
        r#"INSERT INTO "LiteLLM_UserTable" (user_id, user_email, user_role, models, spend) VALUES ('ui-user', 'ui@example.com', 'internal_user', '{}', 0)"#,
    )
    .await;
    db.exec(&format!(
        r#"INSERT INTO "LiteLLM_OrganizationMembership" (user_id, organization_id, user_role, spend) VALUES ('ui-user', '{org_id}', 'internal_user', 0)"#
    ))
    .await;
    assert_eq!(
        member_count(&engine, &org_id).await,
        2,
        "counts are read once per period"
    );
    // A fresh engine (a new period) reads them again.
    let fresh = db
        .engine()
        .with_member_counts_every(std::time::Duration::from_secs(600));
    assert_eq!(member_count(&fresh, &org_id).await, 3);
}
on_both!(member_counts_follow_the_engines_own_writes);

/// The store's update strategy, on both stores: an update writes only the managed columns the
/// plan changes, so a column LiteLLM changed after the plan read the row is kept (a
/// membership's `user_role` while its `budget_id` moves; a budget's `tpm_limit` while its
/// `max_budget` changes).
async fn updates_write_only_the_columns_the_plan_changes(db: &TestDb) {
    let a = org("ns", "a", "{}\n");
    apply_org(db, &a).await;
    let m = member(
        "ns",
        "m",
        "organizationRef: {name: a}\nuser: {userId: u1}\nrole: internal_user\n",
    );
    apply_member(db, &m, &a.organization_id).await;
    let before = MembershipRow {
        user_id: "u1".into(),
        organization_id: a.organization_id.clone(),
        user_role: Some("internal_user".into()),
        budget_id: None,
    };
    let after = MembershipRow {
        budget_id: Some(a.owned_budget_id.clone()),
        ..before.clone()
    };
    let budget_before = BudgetRow::new(&a.owned_budget_id, ACTOR);
    let budget_after = budget_before
        .clone()
        .with("max_budget", Some(Scalar::Float(5.0)));
    // LiteLLM's writes after the plan read the rows.
    db.exec(r#"UPDATE "LiteLLM_OrganizationMembership" SET "user_role" = 'org_admin'"#)
        .await;
    db.exec(r#"UPDATE "LiteLLM_BudgetTable" SET "tpm_limit" = 7"#)
        .await;
    db.store()
        .apply(
            &[
                Change::UpdateBudget {
                    before: budget_before,
                    after: budget_after,
                },
                Change::UpdateMembership { before, after },
            ],
            ACTOR,
        )
        .await
        .expect("apply");
    assert_eq!(
        db.strings(
            r#"SELECT "user_role" || ' ' || "budget_id" FROM "LiteLLM_OrganizationMembership""#
        )
        .await,
        [format!("org_admin {}", a.owned_budget_id)]
    );
    assert_eq!(
        db.strings(
            r#"SELECT CAST("tpm_limit" AS TEXT) || ' ' || CAST(CAST("max_budget" AS INTEGER) AS TEXT) FROM "LiteLLM_BudgetTable""#
        )
        .await,
        ["7 5"]
    );
}
on_both!(updates_write_only_the_columns_the_plan_changes);
