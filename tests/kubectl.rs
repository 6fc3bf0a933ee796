//! The real `kubectl` (v1.37.1, from `$KUBECTL`, installed by scripts/install-tools.sh) against
//! the Kubernetes API emulator: apply (client-side and server-side), get with printer
//! columns, describe, patch, wait, delete with a finalizer, get --watch, and the emulator's
//! 422 for invalid manifests. Each test has its own emulator, kubeconfig and kubectl cache.
#[path = "support/emulator/mod.rs"]
mod emulator;
mod support;

use std::process::Output;
use std::time::Duration;

use emulator::Emulator;
use kube::Resource;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use litellm_org_operator::crd::Organization;
use support::kube::{Kubectl, finished, ready_status_apply};
use tokio::io::{AsyncBufReadExt, BufReader};

const NS: &str = "ai-platform";

fn kubectl(emu: &Emulator) -> Kubectl {
    Kubectl::new(emu.kubeconfig_path(), emu.dir())
}

async fn run(emu: &Emulator, args: &[&str]) -> Output {
    kubectl(emu).run(args).await
}

/// Run kubectl and require success; returns stdout.
async fn ok(emu: &Emulator, args: &[&str]) -> String {
    kubectl(emu).ok(args).await
}

async fn with_examples() -> Emulator {
    let emu = Emulator::start().await;
    emu.create_namespace(NS);
    let out = kubectl(&emu).apply_examples(false).await;
    for line in [
        "organization.litellm.dev/research created",
        "organization.litellm.dev/finance created",
        "organization.litellm.dev/marketing created",
        "organizationmember.litellm.dev/research-alice created",
        "organizationmember.litellm.dev/finance-alice created",
    ] {
        assert!(out.contains(line), "{line:?} in:\n{out}");
    }
    emu
}

fn squeeze(s: &str) -> String {
    s.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_get_describe_and_patch() {
    let emu = with_examples().await;
    let table = squeeze(&ok(&emu, &["get", "lorg", "-n", NS]).await);
    assert!(
        table.starts_with("NAME ALIAS ID SPEND BUDGET READY AGE"),
        "printer columns:\n{table}"
    );
    assert!(table.contains("\nfinance Finance "), "{table}");
    assert!(table.contains("\nresearch Research "), "{table}");
    let wide = squeeze(
        &ok(
            &emu,
            &["get", "organizationmembers", "-n", NS, "-o", "wide"],
        )
        .await,
    );
    assert!(
        wide.starts_with("NAME ORGANIZATION USER ROLE READY AGE"),
        "{wide}"
    );
    assert!(
        wide.contains("research-carol internal_user_viewer"),
        "{wide}"
    );
    let category = ok(&emu, &["get", "litellm", "-A"]).await;
    assert!(
        category.contains("organization.litellm.dev/research")
            && category.contains("organizationmember.litellm.dev/research-bob"),
        "{category}"
    );
    let yaml = ok(&emu, &["get", "lorg", "research", "-n", NS, "-o", "yaml"]).await;
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
    let api: Api<Organization> = Api::namespaced(emu.client(), NS);
    let research = api.get("research").await.expect("get research");
    let recorder = Recorder::new(
        emu.client(),
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
    let described = ok(&emu, &["describe", "lorg", "research", "-n", NS]).await;
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
        kubectl(&emu)
            .merge_patch("lorg", "research", NS, r#"{"spec":{"alias":"Research 2"}}"#)
            .await
            .contains("patched")
    );
    let after = kubectl(&emu)
        .jsonpath(
            "lorg",
            "research",
            NS,
            "{.spec.alias}/{.metadata.generation}",
        )
        .await;
    assert_eq!(after, "Research 2/2");
    let reapplied = kubectl(&emu).apply_examples(false).await;
    assert!(
        reapplied.contains("organization.litellm.dev/research configured"),
        "{reapplied}"
    );
    assert!(
        reapplied.contains("organization.litellm.dev/finance unchanged"),
        "{reapplied}"
    );
    let back = kubectl(&emu)
        .jsonpath("lorg", "research", NS, "{.spec.alias}")
        .await;
    assert_eq!(back, "Research");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_side_apply() {
    let emu = Emulator::start().await;
    emu.create_namespace(NS);
    let out = kubectl(&emu).apply_examples(true).await;
    assert!(
        out.contains("organization.litellm.dev/research serverside-applied"),
        "{out}"
    );
    let managed = ok(
        &emu,
        &[
            "get",
            "lorg",
            "research",
            "-n",
            NS,
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
        &emu,
        &[
            "apply",
            "--server-side",
            "-f",
            "examples/quickstart/organization-research.yaml",
        ],
    )
    .await;
    assert!(again.contains("serverside-applied"), "{again}");
    let generation = kubectl(&emu)
        .jsonpath("lorg", "research", NS, "{.metadata.generation}")
        .await;
    assert_eq!(generation, "1", "an unchanged apply is a no-op");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_for_ready_while_another_task_sets_the_status() {
    let emu = with_examples().await;
    let waiting = kubectl(&emu).start_wait_ready(NS, &["lorg/research"], Duration::from_secs(30));
    tokio::time::sleep(Duration::from_millis(800)).await;
    let api: Api<Organization> = Api::namespaced(emu.client(), NS);
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
    let ready = squeeze(&ok(&emu, &["get", "lorg", "research", "-n", NS]).await);
    assert!(
        ready.contains("research Research True"),
        "the Ready printer column: {ready}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_waits_for_the_finalizer_and_delete_wait_false_returns_at_once() {
    let emu = with_examples().await;
    kubectl(&emu)
        .merge_patch(
            "lorg",
            "finance",
            NS,
            r#"{"metadata":{"finalizers":["litellm.dev/cleanup"]}}"#,
        )
        .await;
    let out = ok(
        &emu,
        &["delete", "lorg", "finance", "-n", NS, "--wait=false"],
    )
    .await;
    assert!(out.contains("deleted"), "{out}");
    let ts = kubectl(&emu)
        .jsonpath("lorg", "finance", NS, "{.metadata.deletionTimestamp}")
        .await;
    assert!(ts.ends_with('Z'), "still there, terminating: {ts:?}");
    let mut deleting =
        kubectl(&emu).spawn(&["delete", "lorg", "finance", "-n", NS, "--timeout=30s"]);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        deleting.try_wait().expect("try_wait").is_none(),
        "kubectl delete waits while the finalizer is present"
    );
    ok(&emu, &["patch", "lorg", "finance", "-n", NS, "--type=json", "-p", r#"[{"op":"test","path":"/metadata/finalizers/0","value":"litellm.dev/cleanup"},{"op":"remove","path":"/metadata/finalizers/0"}]"#]).await;
    let out = finished(deleting, Duration::from_secs(30)).await;
    assert!(
        out.status.success(),
        "kubectl delete: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let gone = run(&emu, &["get", "lorg", "finance", "-n", NS]).await;
    assert!(!gone.status.success());
    assert!(
        String::from_utf8_lossy(&gone.stderr).contains("NotFound"),
        "{}",
        String::from_utf8_lossy(&gone.stderr)
    );
    let out = ok(
        &emu,
        &["delete", "lorgm", "research-bob", "-n", NS, "--wait=false"],
    )
    .await;
    assert!(
        out.contains("organizationmember.litellm.dev \"research-bob\" deleted"),
        "{out}"
    );
    assert!(
        !run(&emu, &["get", "lorgm", "research-bob", "-n", NS])
            .await
            .status
            .success(),
        "no finalizer: gone at once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_watch_prints_events() {
    let emu = with_examples().await;
    let mut watching =
        kubectl(&emu).spawn(&["get", "lorg", "-n", NS, "--watch", "--output-watch-events"]);
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
    kubectl(&emu)
        .merge_patch("lorg", "research", NS, r#"{"spec":{"alias":"Renamed"}}"#)
        .await;
    next(&mut seen, "MODIFIED research Renamed").await;
    ok(&emu, &["delete", "lorg", "marketing", "-n", NS]).await;
    next(&mut seen, "DELETED marketing").await;
    assert!(
        seen[0].starts_with("EVENT NAME ALIAS"),
        "a header first: {seen:?}"
    );
    watching.start_kill().expect("stop kubectl get --watch");
    let _ = watching.wait().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_manifests_are_rejected_with_the_emulators_422() {
    let emu = Emulator::start().await;
    emu.create_namespace(NS);
    let bad = emu.dir().join("bad.yaml");
    std::fs::write(
        &bad,
        "apiVersion: litellm.dev/v1alpha1\nkind: Organization\nmetadata:\n  name: bad\n  namespace: ai-platform\nspec:\n  budget:\n    maxBudget: -5\n    budgetDuration: 3x\n",
    )
    .expect("write");
    let out = run(&emu, &["apply", "-f", &bad.to_string_lossy()]).await;
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
    let exclusive = emu.dir().join("exclusive.yaml");
    std::fs::write(
        &exclusive,
        "apiVersion: litellm.dev/v1alpha1\nkind: OrganizationMember\nmetadata:\n  name: m\n  namespace: ai-platform\nspec:\n  organizationRef: {name: research}\n  organizationId: org-1\n  user: {email: a@example.com}\n  role: org_admin\n",
    )
    .expect("write");
    let out = run(
        &emu,
        &["apply", "--server-side", "-f", &exclusive.to_string_lossy()],
    )
    .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("spec.organizationRef: Required value: set exactly one of organizationRef"),
        "{stderr}"
    );
    let unknown = emu.dir().join("unknown.yaml");
    std::fs::write(&unknown, "apiVersion: litellm.dev/v1alpha1\nkind: Organization\nmetadata:\n  name: u\n  namespace: ai-platform\nspec:\n  aliass: typo\n").expect("write");
    let out = run(&emu, &["apply", "-f", &unknown.to_string_lossy()]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "kubectl's strict field validation refuses unknown fields"
    );
    assert!(stderr.contains("unknown field \"spec.aliass\""), "{stderr}");
    ok(
        &emu,
        &[
            "apply",
            "-f",
            "examples/quickstart/organization-finance-retain.yaml",
        ],
    )
    .await;
    let out = run(
        &emu,
        &[
            "patch",
            "lorg",
            "finance",
            "-n",
            NS,
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

/// kubectl's typed clients speak protobuf: `kubectl create namespace` sends a protobuf body
/// and asks for a protobuf answer (errors included).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_namespace_speaks_protobuf() {
    let emu = Emulator::start().await;
    let out = run(&emu, &["create", "namespace", "platform", "-v=8"]).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("namespace/platform created"), "{stdout}");
    let log = stderr.to_ascii_lowercase();
    // The request's and the response's headers, as `-v=8` logs them.
    assert!(
        log.matches("content-type: application/vnd.kubernetes.protobuf")
            .count()
            >= 2,
        "a protobuf request and answer in kubectl's log:\n{stderr}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&ok(&emu, &["get", "namespace", "platform", "-o", "json"]).await)
            .expect("namespace JSON");
    assert_eq!(json["status"]["phase"], "Active", "{json}");
    assert_eq!(
        json["metadata"]["labels"]["kubernetes.io/metadata.name"], "platform",
        "{json}"
    );
    let again = run(&emu, &["create", "namespace", "platform"]).await;
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(
        !again.status.success() && stderr.contains("namespaces \"platform\" already exists"),
        "a protobuf Status for the second create: {stderr}"
    );
}
