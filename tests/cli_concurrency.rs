//! The CLI's concurrent apply has the outcome of a sequential one: the same rows, the same
//! plans in the same order, the same errors. The reference here is the sequential algorithm
//! written out (each object planned after the previous one was applied, in manifest order),
//! run on a twin database; the manifests are made of the cases where order matters: members
//! sharing a user by email in another case, by user id, or through an existing user found by
//! id for one and by email for another; two members claiming one membership; organizations
//! claiming one id; an organization referencing the budget row another one creates (before
//! and after it in the manifests); members of missing and failed organizations; invalid specs.

mod support;

use std::collections::HashMap;
use std::path::Path;

use litellm_org_operator::cli::manifest::ManifestSet;
use litellm_org_operator::cli::offline::{self, RunOptions};
use litellm_org_operator::engine::{
    DesiredMember, DesiredOrganization, Engine, ObjectKey, ObjectPlan, OrganizationTarget, ids,
};
use litellm_org_operator::error::EngineError;
use litellm_org_operator::store::{AnyStore, Change};
use support::TestDb;

fn manifests() -> String {
    let mut t = String::new();
    let org = |t: &mut String, name: &str, spec: &str| {
        t.push_str(&format!(
            "---\napiVersion: litellm.dev/v1alpha1\nkind: Organization\nmetadata: {{name: {name}, namespace: eq}}\nspec: {spec}\n"
        ));
    };
    let member = |t: &mut String, name: &str, spec: &str| {
        t.push_str(&format!(
            "---\napiVersion: litellm.dev/v1alpha1\nkind: OrganizationMember\nmetadata: {{name: {name}, namespace: eq}}\nspec: {spec}\n"
        ));
    };
    // An organization referencing the budget row a later one creates: not there yet when it
    // is planned in manifest order.
    let owner_budget = ids::organization_budget_id("eq", "budget-owner");
    org(
        &mut t,
        "early-ref",
        &format!("{{budgetRef: {{budgetId: {owner_budget}}}}}"),
    );
    for i in 0..24 {
        org(
            &mut t,
            &format!("o{i}"),
            &format!("{{budget: {{maxBudget: {i}}}}}"),
        );
    }
    org(&mut t, "budget-owner", "{budget: {maxBudget: 7}}");
    // ... and one after it: found.
    org(
        &mut t,
        "late-ref",
        &format!("{{budgetRef: {{budgetId: {owner_budget}}}}}"),
    );
    // Two organizations pinning one id: the second is refused.
    org(&mut t, "pin-a", "{organizationId: pinned-1}");
    org(&mut t, "pin-b", "{organizationId: pinned-1}");
    // Invalid: a negative budget.
    org(&mut t, "bad", "{budget: {maxBudget: -1}}");

    for i in 0..24 {
        // Shared users across organizations, by email in other cases.
        member(
            &mut t,
            &format!("s{i}"),
            &format!(
                "{{organizationRef: {{name: o{i}}}, user: {{email: Shared{}@Example.com}}, role: internal_user}}",
                i % 3
            ),
        );
        member(
            &mut t,
            &format!("t{i}"),
            &format!(
                "{{organizationRef: {{name: o{}}}, user: {{email: shared{}@example.COM}}, role: internal_user, maxBudgetInOrganization: {i}}}",
                (i + 5) % 24,
                i % 3
            ),
        );
        // Own users.
        member(
            &mut t,
            &format!("u{i}"),
            &format!(
                "{{organizationRef: {{name: o{i}}}, user: {{email: own{i}@example.com}}, role: org_admin}}"
            ),
        );
    }
    // A user by id, then the same user by its email.
    member(
        &mut t,
        "by-id",
        "{organizationRef: {name: o1}, user: {userId: alice, email: alice@example.com}, role: internal_user}",
    );
    member(
        &mut t,
        "by-email",
        "{organizationRef: {name: o2}, user: {email: ALICE@example.com}, role: internal_user}",
    );
    // An existing user found by id by one member and by email by another, in one
    // organization: the second claims the membership the first has.
    member(
        &mut t,
        "pre-id",
        "{organizationRef: {name: o3}, user: {userId: pre-existing}, role: internal_user}",
    );
    member(
        &mut t,
        "pre-email",
        "{organizationRef: {name: o3}, user: {email: Pre@Example.com}, role: internal_user}",
    );
    // Two members of one organization with one email.
    member(
        &mut t,
        "twin-a",
        "{organizationRef: {name: o4}, user: {email: twin@example.com}, role: internal_user}",
    );
    member(
        &mut t,
        "twin-b",
        "{organizationRef: {name: o4}, user: {email: TWIN@example.com}, role: org_admin}",
    );
    // Missing and failed organizations; an invalid member.
    member(
        &mut t,
        "lost",
        "{organizationRef: {name: nowhere}, user: {email: lost@example.com}, role: internal_user}",
    );
    member(
        &mut t,
        "of-bad",
        "{organizationRef: {name: bad}, user: {email: x@example.com}, role: internal_user}",
    );
    member(
        &mut t,
        "negative",
        "{organizationRef: {name: o5}, user: {email: neg@example.com}, role: internal_user, maxBudgetInOrganization: -3}",
    );
    t
}

fn set() -> ManifestSet {
    let mut set = ManifestSet::default();
    set.add_text(Path::new("population.yaml"), &manifests());
    assert!(set.errors.is_empty(), "{:?}", set.errors);
    set
}

/// One object's outcome as the report shows it: the object and its plan, or its error.
type Outcome = (String, Result<ObjectPlan, String>);

fn error_text(err: &EngineError) -> String {
    match err {
        EngineError::InvalidSpec { field, message, .. }
        | EngineError::BudgetNotFound { field, message } => format!("{field}: {message}"),
        other => format!("{}: {other}", other.reason().as_str()),
    }
}

/// The sequential algorithm: each object planned after the previous one was applied.
async fn sequential(engine: &Engine<AnyStore>, set: &ManifestSet) -> Vec<Outcome> {
    let key_of = |m: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| {
        ObjectKey::new(
            m.namespace.as_deref().unwrap_or("default"),
            m.name.as_deref().unwrap_or_default(),
        )
    };
    let mut out = Vec::new();
    let mut org_ids: HashMap<String, ObjectKey> = HashMap::new();
    let mut orgs: HashMap<ObjectKey, Option<String>> = HashMap::new();
    for l in &set.organizations {
        let key = key_of(&l.object.metadata);
        let result: Result<ObjectPlan, EngineError> = async {
            let d = DesiredOrganization::from_spec(key.clone(), &l.object.spec, engine.actor())?;
            if let Some(other) = org_ids.get(&d.organization_id) {
                return Err(EngineError::Conflict(format!(
                    "organization {} is already claimed by Organization {other} in these manifests",
                    d.organization_id
                )));
            }
            org_ids.insert(d.organization_id.clone(), key.clone());
            let plan = engine.plan_organization(&d).await?;
            engine.apply(&plan).await?;
            Ok(plan)
        }
        .await;
        orgs.insert(
            key.clone(),
            result
                .as_ref()
                .ok()
                .map(|p| p.organization_id.clone().unwrap_or_default()),
        );
        out.push((
            format!("Organization {key}"),
            result.map_err(|e| error_text(&e)),
        ));
    }
    let mut claims: HashMap<(String, String), ObjectKey> = HashMap::new();
    for l in &set.members {
        let key = key_of(&l.object.metadata);
        let result: Result<ObjectPlan, EngineError> = async {
            let d = DesiredMember::from_spec(key.clone(), &l.object.spec)?;
            let organization_id = match &d.organization {
                OrganizationTarget::Id(id) => id.clone(),
                OrganizationTarget::Resource(name) => {
                    let org_key = ObjectKey::new(key.namespace.clone(), name.clone());
                    match orgs.get(&org_key) {
                        None => {
                            return Err(EngineError::OrganizationNotFound(format!(
                                "spec.organizationRef.name: {}",
                                litellm_org_operator::cli::validate::undeclared_organization(
                                    &org_key
                                )
                            )));
                        }
                        Some(None) => {
                            return Err(EngineError::OrganizationNotReady(format!(
                                "Organization {org_key} has errors (see above)"
                            )));
                        }
                        Some(Some(id)) => id.clone(),
                    }
                }
            };
            let plan = engine.plan_member(&d, &organization_id, false).await?;
            let pair = (plan.user_id.clone().unwrap_or_default(), organization_id);
            if let Some(other) = claims.get(&pair) {
                return Err(EngineError::Conflict(format!(
                    "user {} in organization {} is already claimed by OrganizationMember {other}",
                    pair.0, pair.1
                )));
            }
            claims.insert(pair, key.clone());
            engine.apply(&plan).await?;
            Ok(plan)
        }
        .await;
        out.push((
            format!("OrganizationMember {key}"),
            result.map_err(|e| error_text(&e)),
        ));
    }
    out
}

/// The concurrent run's outcomes in the same shape, from its report (plans with changes and
/// errors, each in manifest order).
fn outcomes_of(report: &offline::RunReport) -> (Vec<ObjectPlan>, Vec<(String, String)>) {
    (
        report.plans.clone(),
        report
            .errors
            .iter()
            .map(|e| {
                let message = match &e.field {
                    Some(f) => format!("{f}: {}", e.message),
                    None => e.message.clone(),
                };
                (e.object.clone().unwrap_or_default(), message)
            })
            .collect(),
    )
}

/// The rows both runs write, without timestamps.
async fn rows(db: &TestDb) -> Vec<String> {
    let mut out = Vec::new();
    for sql in [
        r#"SELECT budget_id || '|' || COALESCE(CAST(max_budget AS TEXT), '') || '|' || created_by FROM "LiteLLM_BudgetTable" ORDER BY 1"#,
        r#"SELECT organization_id || '|' || COALESCE(organization_alias, '') || '|' || budget_id FROM "LiteLLM_OrganizationTable" ORDER BY 1"#,
        r#"SELECT user_id || '|' || COALESCE(user_email, '') FROM "LiteLLM_UserTable" ORDER BY 1"#,
        r#"SELECT user_id || '|' || organization_id || '|' || COALESCE(user_role, '') || '|' || COALESCE(budget_id, '') FROM "LiteLLM_OrganizationMembership" ORDER BY 1"#,
    ] {
        out.extend(db.strings(sql).await);
    }
    out
}

/// An existing user (created outside these manifests) both databases start with.
async fn seed(db: &TestDb) {
    db.exec(
        r#"INSERT INTO "LiteLLM_UserTable" ("user_id", "user_email", "user_role", "models", "teams", "metadata", "spend", "created_at", "updated_at")
           VALUES ('pre-existing', 'pre@example.com', 'internal_user', '{}', '{}', '{}', 0, now(), now())"#,
    )
    .await;
}

const APPLY: RunOptions = RunOptions {
    apply: true,
    prune: false,
    delete_teams_and_keys: false,
    progress: false,
};

/// Run the set sequentially on `reference_db` and concurrently on `concurrent_db`; assert the
/// same plans, errors and rows; return the concurrent run's plans and errors.
async fn compare(
    reference_db: &TestDb,
    concurrent_db: &TestDb,
    set: &ManifestSet,
) -> (Vec<ObjectPlan>, Vec<(String, String)>) {
    let reference = sequential(&reference_db.engine(), set).await;
    let report = offline::run(&concurrent_db.engine(), set, APPLY).await;
    let want_plans: Vec<ObjectPlan> = reference
        .iter()
        .filter_map(|(_, r)| r.as_ref().ok())
        .filter(|p| !p.is_empty())
        .cloned()
        .collect();
    let want_errors: Vec<(String, String)> = reference
        .iter()
        .filter_map(|(o, r)| r.as_ref().err().map(|e| (o.clone(), e.clone())))
        .collect();
    let (plans, errors) = outcomes_of(&report);
    assert_eq!(errors, want_errors);
    assert_eq!(plans.len(), want_plans.len());
    for (have, want) in plans.iter().zip(&want_plans) {
        assert_eq!(have, want);
    }
    assert_eq!(rows(concurrent_db).await, rows(reference_db).await);
    (plans, errors)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_apply_equals_sequential_apply() {
    let set = set();
    let reference_db = TestDb::litellm().await;
    let concurrent_db = TestDb::litellm().await;
    seed(&reference_db).await;
    seed(&concurrent_db).await;

    let (plans, errors) = compare(&reference_db, &concurrent_db, &set).await;
    // The cases the manifests were made for did happen.
    let failed: Vec<&str> = errors.iter().map(|(o, _)| o.as_str()).collect();
    for object in [
        "Organization eq/early-ref",
        "Organization eq/pin-b",
        "Organization eq/bad",
        "OrganizationMember eq/pre-email",
        "OrganizationMember eq/twin-b",
        "OrganizationMember eq/lost",
        "OrganizationMember eq/of-bad",
        "OrganizationMember eq/negative",
    ] {
        assert!(
            failed.contains(&object),
            "{object} should fail: {errors:#?}"
        );
    }
    assert!(!failed.contains(&"Organization eq/late-ref"), "{errors:#?}");
    let creates_user = |name: &str| {
        plans.iter().any(|p| {
            p.key.as_ref().is_some_and(|k| k.name == name)
                && p.changes
                    .iter()
                    .any(|c| matches!(c, Change::CreateUser { .. }))
        })
    };
    assert!(
        creates_user("s0") && !creates_user("t5"),
        "a later member sees the user an earlier one created"
    );
    assert!(creates_user("by-id") && !creates_user("by-email"));

    // Second run: the organization that referenced a budget not created yet now finds it,
    // and its members follow; again the same outcome both ways.
    let (_, errors_2) = compare(&reference_db, &concurrent_db, &set).await;
    assert!(
        !errors_2
            .iter()
            .any(|(o, _)| o == "Organization eq/early-ref")
    );

    // Third run: nothing to write.
    let before = concurrent_db.snapshot().await;
    let again = offline::run(&concurrent_db.engine(), &set, APPLY).await;
    assert!(again.plans.is_empty(), "{:#?}", again.plans);
    assert_eq!(outcomes_of(&again).1, errors_2);
    assert_eq!(concurrent_db.snapshot().await, before);

    reference_db.cleanup().await;
    concurrent_db.cleanup().await;
}
