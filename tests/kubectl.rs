//! The real `kubectl` (v1.37.1, from `$KUBECTL`, installed by scripts/install-tools.sh) against
//! a real control plane with the project's CRDs: apply (client-side and server-side), get with
//! printer columns, describe, patch, wait, delete with a finalizer, get --watch, and
//! kube-apiserver's 422 for invalid manifests. Each test works in a namespace of its own, with
//! its own kubectl cache.
mod support;

use std::process::Output;
use std::time::Duration;

use kube::Resource;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use litellm_org_operator::crd::Organization;
use support::cluster::Cluster;
use support::kube::{Kubectl, finished, ready_status_apply};
use tokio::io::{AsyncBufReadExt, BufReader};

/// A test's namespace on the shared control plane.
struct Env {
    cluster: Cluster,
    ns: String,
}

fn kubectl(env: &Env) -> Kubectl {
    env.cluster.kubectl()
}

async fn run(env: &Env, args: &[&str]) -> Output {
    kubectl(env).run(args).await
}

/// Run kubectl and require success; returns stdout.
async fn ok(env: &Env, args: &[&str]) -> String {
    kubectl(env).ok(args).await
}

async fn env(prefix: &str) -> Env {
    let cluster = Cluster::shared().await;
    let ns = cluster.namespace(prefix).await;
    Env { cluster, ns }
}

/// The examples applied (client-side) into a new namespace.
async fn with_examples(prefix: &str) -> Env {
    let env = env(prefix).await;
    let out = kubectl(&env).apply_examples(&env.ns, false).await;
    for line in [
        "organization.litellm.dev/research created",
        "organization.litellm.dev/finance created",
        "organization.litellm.dev/marketing created",
        "organizationmember.litellm.dev/research-alice created",
        "organizationmember.litellm.dev/finance-alice created",
    ] {
        assert!(out.contains(line), "{line:?} in:\n{out}");
    }
    env
}

fn squeeze(s: &str) -> String {
    s.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_get_describe_and_patch() {
    let env = with_examples("kubectl-get").await;
    let ns = env.ns.as_str();
    let table = squeeze(&ok(&env, &["get", "lorg", "-n", ns]).await);
    assert!(
        table.starts_with("NAME ALIAS ID SPEND BUDGET READY REASON AGE"),
        "printer columns:\n{table}"
    );
    assert!(table.contains("\nfinance Finance "), "{table}");
    assert!(table.contains("\nresearch Research "), "{table}");
    let wide = squeeze(
        &ok(
            &env,
            &["get", "organizationmembers", "-n", ns, "-o", "wide"],
        )
        .await,
    );
    assert!(
        wide.starts_with("NAME ORGANIZATION USER ROLE READY REASON AGE ORGANIZATION ID USER ID"),
        "{wide}"
    );
    assert!(
        wide.contains("research-carol internal_user_viewer"),
        "{wide}"
    );
    let category = ok(&env, &["get", "litellm", "-n", ns]).await;
    assert!(
        category.contains("organization.litellm.dev/research")
            && category.contains("organizationmember.litellm.dev/research-bob"),
        "{category}"
    );
    let yaml = ok(&env, &["get", "lorg", "research", "-n", ns, "-o", "yaml"]).await;
    for needle in [
        "kind: Organization",
        "alias: Research",
        "deletionPolicy: Delete",
        "observedGeneration: -1",
        "generation: 1",
        "uid: ",
    ] {
        assert!(yaml.contains(needle), "{needle:?} in:\n{yaml}");
    }
    // An event recorded the way the operator records them (kube-runtime's Recorder writes
    // events.k8s.io/v1); kubectl describe reads core/v1 Events with field selectors.
    let api: Api<Organization> = Api::namespaced(env.cluster.client(), ns);
    let research = api.get("research").await.expect("get research");
    let recorder = Recorder::new(
        env.cluster.client(),
        Reporter {
            controller: "litellm-org-operator".into(),
            instance: Some("test".into()),
        },
    );
    recorder
        .publish(
            &Event {
                type_: EventType::Normal,
                reason: "Synced".into(),
                note: Some("organization written to LiteLLM".into()),
                action: "Reconcile".into(),
                secondary: None,
            },
            &research.object_ref(&()),
        )
        .await
        .expect("publish an event");
    let described = ok(&env, &["describe", "lorg", "research", "-n", ns]).await;
    let events = squeeze(&described);
    assert!(
        events.contains("Normal Synced")
            && events.contains("litellm-org-operator organization written to LiteLLM"),
        "the event in describe:\n{described}"
    );
    for needle in [
        "Name:",
        "research",
        "Namespace:",
        "API Version:  litellm.dev/v1alpha1",
        "Alias:",
        "Research",
        "Max Budget:",
    ] {
        assert!(described.contains(needle), "{needle:?} in:\n{described}");
    }
    assert!(
        kubectl(&env)
            .merge_patch("lorg", "research", ns, r#"{"spec":{"alias":"Research 2"}}"#)
            .await
            .contains("patched")
    );
    let after = kubectl(&env)
        .jsonpath(
            "lorg",
            "research",
            ns,
            "{.spec.alias}/{.metadata.generation}",
        )
        .await;
    assert_eq!(after, "Research 2/2");
    let reapplied = kubectl(&env).apply_examples(ns, false).await;
    assert!(
        reapplied.contains("organization.litellm.dev/research configured"),
        "{reapplied}"
    );
    assert!(
        reapplied.contains("organization.litellm.dev/finance unchanged"),
        "{reapplied}"
    );
    let back = kubectl(&env)
        .jsonpath("lorg", "research", ns, "{.spec.alias}")
        .await;
    assert_eq!(back, "Research");
}

/// What `kubectl get` shows of a member once the operator wrote its status: the
/// organization's alias and the user's email, Ready and its reason; `-o wide` adds the ids.
/// The status is applied here as the operator applies it (the operator's own writes of these
/// fields are checked in tests/operator.rs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn printer_columns_show_names_and_reasons_and_wide_shows_ids() {
    let env = with_examples("kubectl-columns").await;
    let ns = env.ns.as_str();
    let members: Api<litellm_org_operator::crd::OrganizationMember> =
        Api::namespaced(env.cluster.client(), ns);
    let mut status = ready_status_apply("OrganizationMember", 1);
    status["status"]["organizationAlias"] = "Research".into();
    status["status"]["userEmail"] = "carol@example.com".into();
    status["status"]["organizationId"] = "4f1c9a4e-0d7e-4b8e-9d51-3f0f4c2a9b10".into();
    status["status"]["userId"] = "existing-carol".into();
    members
        .patch_status(
            "research-carol",
            &PatchParams::apply("litellm-org-operator").force(),
            &Patch::Apply(status),
        )
        .await
        .expect("status apply");
    let orgs: Api<Organization> = Api::namespaced(env.cluster.client(), ns);
    let mut org_status = ready_status_apply("Organization", 1);
    org_status["status"]["conditions"][0]["status"] = "False".into();
    org_status["status"]["conditions"][0]["reason"] = "Conflict".into();
    org_status["status"]["organizationId"] = "org-finance-2024".into();
    org_status["status"]["budgetId"] = "finance-budget".into();
    org_status["status"]["softBudget"] = 150.into();
    orgs.patch_status(
        "finance",
        &PatchParams::apply("litellm-org-operator").force(),
        &Patch::Apply(org_status),
    )
    .await
    .expect("status apply");

    let table = squeeze(&ok(&env, &["get", "lorgm", "research-carol", "-n", ns]).await);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(
        lines[0], "NAME ORGANIZATION USER ROLE READY REASON AGE",
        "{table}"
    );
    assert!(
        lines[1].starts_with(
            "research-carol Research carol@example.com internal_user_viewer True Synced "
        ),
        "{table}"
    );
    assert!(!table.contains("4f1c9a4e"), "no ids by default: {table}");
    let wide = squeeze(
        &ok(
            &env,
            &["get", "lorgm", "research-carol", "-n", ns, "-o", "wide"],
        )
        .await,
    );
    assert!(
        wide.ends_with(" 4f1c9a4e-0d7e-4b8e-9d51-3f0f4c2a9b10 existing-carol"),
        "{wide}"
    );

    let table = squeeze(&ok(&env, &["get", "lorg", "finance", "-n", ns]).await);
    assert!(table.contains("\nfinance Finance "), "{table}");
    assert!(table.contains(" False Conflict "), "{table}");
    assert!(
        table.contains("\nfinance Finance org-finance-2024 "),
        "{table}"
    );
    let wide = squeeze(&ok(&env, &["get", "lorg", "finance", "-n", ns, "-o", "wide"]).await);
    assert!(
        wide.starts_with(
            "NAME ALIAS ID SPEND BUDGET READY REASON AGE BUDGET ID SOFT BUDGET BUDGET RESET"
        ),
        "{wide}"
    );
    // kubectl prints nothing for a column whose field is absent (no budgetResetAt here).
    assert!(wide.ends_with(" finance-budget 150"), "{wide}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_side_apply() {
    let env = env("kubectl-ssa").await;
    let ns = env.ns.as_str();
    let out = kubectl(&env).apply_examples(ns, true).await;
    assert!(
        out.contains("organization.litellm.dev/research serverside-applied"),
        "{out}"
    );
    let managed = ok(
        &env,
        &[
            "get",
            "lorg",
            "research",
            "-n",
            ns,
            "-o",
            "yaml",
            "--show-managed-fields",
        ],
    )
    .await;
    assert!(
        managed.contains("manager: kubectl") && managed.contains("operation: Apply"),
        "{managed}"
    );
    assert!(managed.contains("alias: Research"), "{managed}");
    let again = ok(
        &env,
        &[
            "apply",
            "--server-side",
            "-f",
            &kubectl(&env)
                .examples(ns)
                .join("quickstart/organization-research.yaml")
                .display()
                .to_string(),
        ],
    )
    .await;
    assert!(again.contains("serverside-applied"), "{again}");
    let generation = kubectl(&env)
        .jsonpath("lorg", "research", ns, "{.metadata.generation}")
        .await;
    assert_eq!(generation, "1", "an unchanged apply is a no-op");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_for_ready_while_another_task_sets_the_status() {
    let env = with_examples("kubectl-wait").await;
    let ns = env.ns.as_str();
    let waiting = kubectl(&env).start_wait_ready(ns, &["lorg/research"], Duration::from_secs(30));
    tokio::time::sleep(Duration::from_millis(800)).await;
    let api: Api<Organization> = Api::namespaced(env.cluster.client(), ns);
    api.patch_status(
        "research",
        &PatchParams::apply("litellm-org-operator").force(),
        &Patch::Apply(ready_status_apply("Organization", 1)),
    )
    .await
    .expect("status apply");
    let out = finished(waiting, Duration::from_secs(30)).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "kubectl wait: {stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("organization.litellm.dev/research condition met"),
        "{stdout}"
    );
    let ready = squeeze(&ok(&env, &["get", "lorg", "research", "-n", ns]).await);
    assert!(
        ready.contains("research Research True"),
        "the Ready printer column: {ready}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_waits_for_the_finalizer_and_delete_wait_false_returns_at_once() {
    let env = with_examples("kubectl-delete").await;
    let ns = env.ns.as_str();
    kubectl(&env)
        .merge_patch(
            "lorg",
            "finance",
            ns,
            r#"{"metadata":{"finalizers":["litellm.dev/cleanup"]}}"#,
        )
        .await;
    let out = ok(
        &env,
        &["delete", "lorg", "finance", "-n", ns, "--wait=false"],
    )
    .await;
    assert!(out.contains("deleted"), "{out}");
    let ts = kubectl(&env)
        .jsonpath("lorg", "finance", ns, "{.metadata.deletionTimestamp}")
        .await;
    assert!(ts.ends_with('Z'), "still there, terminating: {ts:?}");
    let mut deleting =
        kubectl(&env).spawn(&["delete", "lorg", "finance", "-n", ns, "--timeout=30s"]);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        deleting.try_wait().expect("try_wait").is_none(),
        "kubectl delete waits while the finalizer is present"
    );
    ok(&env, &["patch", "lorg", "finance", "-n", ns, "--type=json", "-p", r#"[{"op":"test","path":"/metadata/finalizers/0","value":"litellm.dev/cleanup"},{"op":"remove","path":"/metadata/finalizers/0"}]"#]).await;
    let out = finished(deleting, Duration::from_secs(30)).await;
    assert!(
        out.status.success(),
        "kubectl delete: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let gone = run(&env, &["get", "lorg", "finance", "-n", ns]).await;
    assert!(!gone.status.success());
    assert!(
        String::from_utf8_lossy(&gone.stderr).contains("NotFound"),
        "{}",
        String::from_utf8_lossy(&gone.stderr)
    );
    let out = ok(
        &env,
        &["delete", "lorgm", "research-bob", "-n", ns, "--wait=false"],
    )
    .await;
    assert!(
        out.contains("organizationmember.litellm.dev \"research-bob\" deleted"),
        "{out}"
    );
    assert!(
        !run(&env, &["get", "lorgm", "research-bob", "-n", ns])
            .await
            .status
            .success(),
        "no finalizer: gone at once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_watch_prints_events() {
    let env = with_examples("kubectl-watch").await;
    let ns = env.ns.as_str();
    let mut watching =
        kubectl(&env).spawn(&["get", "lorg", "-n", ns, "--watch", "--output-watch-events"]);
    let stdout = watching.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut seen = Vec::new();
    let mut next = async |seen: &mut Vec<String>, want: &str| {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let line = tokio::time::timeout_at(deadline, lines.next_line())
                .await
                .unwrap_or_else(|_| panic!("no {want:?} from kubectl get --watch; saw {seen:?}"))
                .expect("read")
                .unwrap_or_else(|| panic!("kubectl get --watch ended; saw {seen:?}"));
            let line = line.split_whitespace().collect::<Vec<_>>().join(" ");
            seen.push(line.clone());
            if line.starts_with(want) {
                return;
            }
        }
    };
    next(&mut seen, "ADDED research Research").await;
    kubectl(&env)
        .merge_patch("lorg", "research", ns, r#"{"spec":{"alias":"Renamed"}}"#)
        .await;
    next(&mut seen, "MODIFIED research Renamed").await;
    ok(&env, &["delete", "lorg", "marketing", "-n", ns]).await;
    next(&mut seen, "DELETED marketing").await;
    assert!(
        seen[0].starts_with("EVENT NAME ALIAS"),
        "a header first: {seen:?}"
    );
    watching.start_kill().expect("stop kubectl get --watch");
    let _ = watching.wait().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_manifests_are_rejected_with_the_apiservers_422() {
    let env = env("kubectl-invalid").await;
    let ns = env.ns.as_str();
    let bad = env.cluster.dir().join("bad.yaml");
    std::fs::write(
        &bad,
        format!("apiVersion: litellm.dev/v1alpha1\nkind: Organization\nmetadata:\n  name: bad\n  namespace: {ns}\nspec:\n  budget:\n    maxBudget: -5\n    budgetDuration: 3x\n"),
    )
    .expect("write");
    let out = run(&env, &["apply", "-f", &bad.to_string_lossy()]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("The Organization \"bad\" is invalid"),
        "{stderr}"
    );
    assert!(stderr.contains("spec.budget.maxBudget: Invalid value: -5: spec.budget.maxBudget in body should be greater than or equal to 0"), "{stderr}");
    assert!(
        stderr.contains("spec.budget.budgetDuration: Invalid value: \"3x\""),
        "{stderr}"
    );
    let exclusive = env.cluster.dir().join("exclusive.yaml");
    std::fs::write(
        &exclusive,
        format!("apiVersion: litellm.dev/v1alpha1\nkind: OrganizationMember\nmetadata:\n  name: m\n  namespace: {ns}\nspec:\n  organizationRef: {{name: research}}\n  organizationId: org-1\n  user: {{email: a@example.com}}\n  role: org_admin\n"),
    )
    .expect("write");
    let out = run(
        &env,
        &["apply", "--server-side", "-f", &exclusive.to_string_lossy()],
    )
    .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("spec.organizationRef: Required value: set exactly one of organizationRef"),
        "{stderr}"
    );
    let unknown = env.cluster.dir().join("unknown.yaml");
    std::fs::write(&unknown, format!("apiVersion: litellm.dev/v1alpha1\nkind: Organization\nmetadata:\n  name: u\n  namespace: {ns}\nspec:\n  aliass: typo\n")).expect("write");
    let out = run(&env, &["apply", "-f", &unknown.to_string_lossy()]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "kubectl's strict field validation refuses unknown fields"
    );
    assert!(stderr.contains("unknown field \"spec.aliass\""), "{stderr}");
    let finance = kubectl(&env)
        .examples(ns)
        .join("quickstart/organization-finance-retain.yaml");
    ok(&env, &["apply", "-f", &finance.display().to_string()]).await;
    let out = run(
        &env,
        &[
            "patch",
            "lorg",
            "finance",
            "-n",
            ns,
            "--type=merge",
            "-p",
            r#"{"spec":{"organizationId":"other"}}"#,
        ],
    )
    .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("organizationId is immutable once set"),
        "{stderr}"
    );
}
