//! The Kubernetes API emulator (tests/support/emulator): each apiserver semantic it claims,
//! checked over real HTTP, and kube-rs's watcher + reflector surviving 410 Gone and cut streams.
#[path = "support/emulator/mod.rs"]
mod emulator;
mod support;

use std::time::Duration;

use emulator::{Emulator, Options};
use futures::{StreamExt, TryStreamExt};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use litellm_org_operator::crd::Organization;
use prost::Message;
use serde_json::{Value, json};
use support::kube::{member_json, organization, organization_json as org};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ORGS: &str = "/apis/litellm.dev/v1alpha1/namespaces/team/organizations";

/// One HTTP/1.1 request with `Connection: close` and any body and `Accept`; returns status,
/// headers (lower case) and the body's bytes as sent (not de-chunked).
async fn http_bytes(
    emu: &Emulator,
    method: &str,
    path: &str,
    content_type: &str,
    accept: &str,
    body: &[u8],
) -> (u16, String, Vec<u8>) {
    let mut stream = tokio::net::TcpStream::connect(emu.addr())
        .await
        .expect("connect to the emulator");
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: emulator\r\nConnection: close\r\nAccept: {accept}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.expect("send");
    stream.write_all(body).await.expect("send the body");
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut raw))
        .await
        .expect("the emulator answered in time")
        .expect("read");
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP response");
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    let code: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status code");
    (code, head, raw[split + 4..].to_vec())
}

/// One JSON/YAML request; returns status, headers and the body (de-chunked, so a watch that
/// ends by its timeout can be read whole).
async fn http_raw(
    emu: &Emulator,
    method: &str,
    path: &str,
    content_type: &str,
    body: &str,
) -> (u16, String, String) {
    let (code, head, bytes) = http_bytes(
        emu,
        method,
        path,
        content_type,
        "application/json",
        body.as_bytes(),
    )
    .await;
    let text = String::from_utf8_lossy(&bytes).to_string();
    let body = if head.contains("transfer-encoding: chunked") {
        dechunk(&text)
    } else {
        text
    };
    (code, head, body)
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

async fn http(
    emu: &Emulator,
    method: &str,
    path: &str,
    content_type: &str,
    body: Value,
) -> (u16, Value) {
    let text = if body.is_null() {
        String::new()
    } else {
        body.to_string()
    };
    let (code, _, body) = http_raw(emu, method, path, content_type, &text).await;
    (code, serde_json::from_str(&body).unwrap_or(Value::Null))
}

async fn get(emu: &Emulator, path: &str) -> (u16, Value) {
    http(emu, "GET", path, "application/json", Value::Null).await
}

async fn post(emu: &Emulator, path: &str, body: Value) -> (u16, Value) {
    http(emu, "POST", path, "application/json", body).await
}

async fn merge_patch(emu: &Emulator, path: &str, body: Value) -> (u16, Value) {
    http(emu, "PATCH", path, "application/merge-patch+json", body).await
}

async fn create_org(emu: &Emulator, name: &str, spec: Value) -> Value {
    let (code, body) = http(emu, "POST", ORGS, "application/json", org(name, spec)).await;
    assert_eq!(code, 201, "create {name}: {body}");
    body
}

fn rv(obj: &Value) -> u64 {
    obj["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("resourceVersion")
}

async fn started() -> Emulator {
    let emu = Emulator::start().await;
    emu.create_namespace("team");
    emu
}

/// Watch events from a raw watch request that ends by its own timeoutSeconds.
async fn watch_events(emu: &Emulator, path: &str) -> Vec<Value> {
    let (code, _, body) = http_raw(emu, "GET", path, "application/json", "").await;
    assert_eq!(code, 200, "watch {path}: {body}");
    body.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("a JSON watch event"))
        .collect()
}

fn types(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["type"].as_str().unwrap_or("").to_string())
        .collect()
}

#[tokio::test]
async fn discovery_serves_groups_resources_short_names_and_categories() {
    let emu = started().await;
    let (code, version) = get(&emu, "/version").await;
    assert_eq!((code, version["major"].as_str()), (200, Some("1")));
    let (_, api) = get(&emu, "/api").await;
    assert_eq!(api["versions"], json!(["v1"]));
    let (_, groups) = get(&emu, "/apis").await;
    let names: Vec<&str> = groups["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .filter_map(|g| g["name"].as_str())
        .collect();
    for g in [
        "litellm.dev",
        "events.k8s.io",
        "coordination.k8s.io",
        "apiextensions.k8s.io",
    ] {
        assert!(names.contains(&g), "{g} in {names:?}");
    }
    let (_, list) = get(&emu, "/apis/litellm.dev/v1alpha1").await;
    let orgs = list["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .find(|r| r["name"] == "organizations")
        .expect("organizations")
        .clone();
    assert_eq!(orgs["shortNames"], json!(["lorg"]));
    assert_eq!(orgs["categories"], json!(["litellm"]));
    assert_eq!(orgs["namespaced"], json!(true));
    assert!(
        orgs["verbs"]
            .as_array()
            .expect("verbs")
            .contains(&json!("watch"))
    );
    assert!(
        list["resources"]
            .as_array()
            .expect("resources")
            .iter()
            .any(|r| r["name"] == "organizations/status")
    );
    let (_, core) = get(&emu, "/api/v1").await;
    assert!(
        core["resources"]
            .as_array()
            .expect("core")
            .iter()
            .any(|r| r["name"] == "namespaces")
    );
    // kube-rs discovery finds the kinds too.
    let discovery = kube::discovery::Discovery::new(emu.client())
        .run()
        .await
        .expect("discovery");
    assert!(discovery.groups().any(|g| g.name() == "litellm.dev"));
}

#[tokio::test]
async fn create_sets_system_metadata_defaults_and_drops_status() {
    let emu = started().await;
    let mut body = org("a", json!({"alias": "A"}));
    body["status"] = json!({"observedGeneration": 7});
    let (code, a) = post(&emu, ORGS, body).await;
    assert_eq!(code, 201, "{a}");
    assert!(a["metadata"]["uid"].as_str().is_some_and(|u| u.len() == 36));
    assert!(
        a["metadata"]["creationTimestamp"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z'))
    );
    assert_eq!(a["metadata"]["generation"], 1);
    assert_eq!(a["metadata"]["namespace"], "team");
    assert_eq!(
        a["status"],
        json!({"observedGeneration": -1}),
        "status on create is ignored, then defaulted"
    );
    assert_eq!(a["spec"]["deletionPolicy"], "Delete", "schema default");
    let b = create_org(&emu, "b", json!({})).await;
    assert!(rv(&b) > rv(&a), "cluster-wide increasing resourceVersion");
    let (code, dup) = post(&emu, ORGS, org("a", json!({}))).await;
    assert_eq!((code, dup["reason"].as_str()), (409, Some("AlreadyExists")));
    let (code, missing) = post(
        &emu,
        "/apis/litellm.dev/v1alpha1/namespaces/nope/organizations",
        org("x", json!({})),
    )
    .await;
    assert_eq!(code, 404, "{missing}");
    assert_eq!(missing["message"], "namespaces \"nope\" not found");
    let (code, got) = get(&emu, &format!("{ORGS}/a")).await;
    assert_eq!((code, got["spec"]["alias"].as_str()), (200, Some("A")));
    let (code, nf) = get(&emu, &format!("{ORGS}/zzz")).await;
    assert_eq!(
        (code, nf["reason"].as_str(), nf["kind"].as_str()),
        (404, Some("NotFound"), Some("Status"))
    );
}

#[tokio::test]
async fn update_uses_optimistic_concurrency_and_generation_follows_spec_only() {
    let emu = started().await;
    let a = create_org(&emu, "a", json!({"alias": "A"})).await;
    let mut stale = a.clone();
    let mut fresh = a.clone();
    fresh["metadata"]["labels"] = json!({"team": "x"});
    let (code, labelled) = http(&emu, "PUT", &format!("{ORGS}/a"), "application/json", fresh).await;
    assert_eq!(code, 200, "{labelled}");
    assert_eq!(
        labelled["metadata"]["generation"], 1,
        "a metadata change does not bump generation"
    );
    assert!(rv(&labelled) > rv(&a));
    stale["spec"]["alias"] = json!("B");
    let (code, conflict) = http(
        &emu,
        "PUT",
        &format!("{ORGS}/a"),
        "application/json",
        stale.clone(),
    )
    .await;
    assert_eq!(
        (code, conflict["reason"].as_str()),
        (409, Some("Conflict")),
        "{conflict}"
    );
    assert!(
        conflict["message"]
            .as_str()
            .unwrap_or("")
            .contains("the object has been modified")
    );
    let mut no_rv = labelled.clone();
    no_rv["metadata"]
        .as_object_mut()
        .expect("metadata")
        .remove("resourceVersion");
    let (code, _) = http(&emu, "PUT", &format!("{ORGS}/a"), "application/json", no_rv).await;
    assert_eq!(
        code, 422,
        "a custom resource update must carry a resourceVersion"
    );
    let mut spec_change = labelled.clone();
    spec_change["spec"]["alias"] = json!("B");
    let (code, updated) = http(
        &emu,
        "PUT",
        &format!("{ORGS}/a"),
        "application/json",
        spec_change,
    )
    .await;
    assert_eq!(code, 200, "{updated}");
    assert_eq!(updated["metadata"]["generation"], 2);
    let (code, same) = http(
        &emu,
        "PUT",
        &format!("{ORGS}/a"),
        "application/json",
        updated.clone(),
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(
        rv(&same),
        rv(&updated),
        "a no-op update keeps the resourceVersion"
    );
    let mut system = updated.clone();
    system["metadata"]["uid"] = json!("forged");
    system["metadata"]["creationTimestamp"] = json!("2000-01-01T00:00:00Z");
    let (_, kept) = http(
        &emu,
        "PUT",
        &format!("{ORGS}/a"),
        "application/json",
        system,
    )
    .await;
    assert_eq!(kept["metadata"]["uid"], updated["metadata"]["uid"]);
    assert_eq!(
        kept["metadata"]["creationTimestamp"],
        updated["metadata"]["creationTimestamp"]
    );
}

#[tokio::test]
async fn status_subresource_separates_spec_and_status() {
    let emu = started().await;
    let a = create_org(&emu, "a", json!({"alias": "A"})).await;
    let (code, main) = merge_patch(
        &emu,
        &format!("{ORGS}/a"),
        json!({"status": {"observedGeneration": 5}, "spec": {"alias": "B"}}),
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(
        main["status"]["observedGeneration"], -1,
        "status is ignored on the main resource"
    );
    assert_eq!(main["spec"]["alias"], "B");
    let (code, status) = merge_patch(&emu, &format!("{ORGS}/a/status"), json!({"status": {"observedGeneration": 2}, "spec": {"alias": "C"}, "metadata": {"labels": {"x": "y"}}})).await;
    assert_eq!(code, 200, "{status}");
    assert_eq!(status["status"]["observedGeneration"], 2);
    assert_eq!(status["spec"]["alias"], "B", "spec is ignored on /status");
    assert!(
        status["metadata"].get("labels").is_none(),
        "metadata is ignored on /status"
    );
    assert_eq!(
        status["metadata"]["generation"], 2,
        "a status write does not bump generation"
    );
    let mut put = status.clone();
    put["status"]["observedGeneration"] = json!(3);
    let (code, put) = http(
        &emu,
        "PUT",
        &format!("{ORGS}/a/status"),
        "application/json",
        put,
    )
    .await;
    assert_eq!(
        (code, put["status"]["observedGeneration"].as_i64()),
        (200, Some(3))
    );
    let (code, got) = get(&emu, &format!("{ORGS}/a/status")).await;
    assert_eq!(
        (code, got["metadata"]["uid"].clone()),
        (200, a["metadata"]["uid"].clone())
    );
}

#[tokio::test]
async fn list_filters_by_labels_and_name_and_pages() {
    let emu = started().await;
    for (name, tier) in [
        ("a", "gold"),
        ("b", "silver"),
        ("c", "gold"),
        ("d", "bronze"),
    ] {
        let mut o = org(name, json!({}));
        o["metadata"]["labels"] = json!({"tier": tier});
        let (code, _) = post(&emu, ORGS, o).await;
        assert_eq!(code, 201);
    }
    let names = |list: &Value| -> Vec<String> {
        list["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|i| i["metadata"]["name"].as_str().unwrap_or("").to_string())
            .collect()
    };
    let (_, all) = get(&emu, ORGS).await;
    assert_eq!(all["kind"], "OrganizationList");
    assert_eq!(names(&all), ["a", "b", "c", "d"]);
    let (_, gold) = get(&emu, &format!("{ORGS}?labelSelector=tier%3Dgold")).await;
    assert_eq!(names(&gold), ["a", "c"]);
    let (_, not_gold) = get(&emu, &format!("{ORGS}?labelSelector=tier!%3Dgold")).await;
    assert_eq!(names(&not_gold), ["b", "d"]);
    let (_, set) = get(
        &emu,
        &format!("{ORGS}?labelSelector=tier%20in%20(silver,bronze)"),
    )
    .await;
    assert_eq!(names(&set), ["b", "d"]);
    let (_, notin) = get(
        &emu,
        &format!("{ORGS}?labelSelector=tier%20notin%20(silver,bronze)"),
    )
    .await;
    assert_eq!(names(&notin), ["a", "c"]);
    let (_, missing) = get(&emu, &format!("{ORGS}?labelSelector=!tier")).await;
    assert!(names(&missing).is_empty());
    let (_, by_name) = get(&emu, &format!("{ORGS}?fieldSelector=metadata.name%3Dc")).await;
    assert_eq!(names(&by_name), ["c"]);
    let (code, bad) = get(&emu, &format!("{ORGS}?fieldSelector=spec.alias%3Dx")).await;
    assert_eq!(code, 400, "{bad}");
    let (_, page1) = get(&emu, &format!("{ORGS}?limit=3")).await;
    assert_eq!(names(&page1), ["a", "b", "c"]);
    assert_eq!(page1["metadata"]["remainingItemCount"], 1);
    let token = page1["metadata"]["continue"]
        .as_str()
        .expect("continue token")
        .to_string();
    let (_, page2) = get(&emu, &format!("{ORGS}?limit=3&continue={token}")).await;
    assert_eq!(names(&page2), ["d"]);
    assert!(page2["metadata"].get("continue").is_none());
    let (_, everywhere) = get(&emu, "/apis/litellm.dev/v1alpha1/organizations").await;
    assert_eq!(names(&everywhere).len(), 4);
}

#[tokio::test]
async fn finalizers_hold_deletion_until_the_last_one_is_removed() {
    let emu = started().await;
    let mut o = org("a", json!({}));
    o["metadata"]["finalizers"] = json!(["litellm.dev/cleanup", "other/x"]);
    let (_, a) = post(&emu, ORGS, o).await;
    let (code, deleting) = http(
        &emu,
        "DELETE",
        &format!("{ORGS}/a"),
        "application/json",
        Value::Null,
    )
    .await;
    assert_eq!(code, 200);
    assert!(deleting["metadata"]["deletionTimestamp"].is_string());
    assert_eq!(
        deleting["metadata"]["generation"], 2,
        "graceful deletion bumps generation like kube-apiserver"
    );
    let (code, still) = get(&emu, &format!("{ORGS}/a")).await;
    assert_eq!(
        (code, still["metadata"]["uid"].clone()),
        (200, a["metadata"]["uid"].clone())
    );
    let (code, refused) = merge_patch(
        &emu,
        &format!("{ORGS}/a"),
        json!({"metadata": {"finalizers": ["litellm.dev/cleanup", "other/x", "new/y"]}}),
    )
    .await;
    assert_eq!(code, 422, "{refused}");
    assert!(
        refused["message"]
            .as_str()
            .unwrap_or("")
            .contains("no new finalizers can be added if the object is being deleted")
    );
    let (code, one_left) = merge_patch(
        &emu,
        &format!("{ORGS}/a"),
        json!({"metadata": {"finalizers": ["other/x"]}}),
    )
    .await;
    assert_eq!(
        (code, one_left["metadata"]["finalizers"].clone()),
        (200, json!(["other/x"]))
    );
    let (code, _) = http(&emu, "PATCH", &format!("{ORGS}/a"), "application/json-patch+json", json!([{"op": "test", "path": "/metadata/finalizers/0", "value": "other/x"}, {"op": "remove", "path": "/metadata/finalizers/0"}])).await;
    assert_eq!(code, 200);
    let (code, _) = get(&emu, &format!("{ORGS}/a")).await;
    assert_eq!(code, 404, "gone once the last finalizer is removed");
    create_org(&emu, "b", json!({})).await;
    let (code, _) = http(
        &emu,
        "DELETE",
        &format!("{ORGS}/b"),
        "application/json",
        json!({"preconditions": {"uid": "wrong"}}),
    )
    .await;
    assert_eq!(code, 409, "a failed uid precondition is a conflict");
    let (code, _) = http(
        &emu,
        "DELETE",
        &format!("{ORGS}/b"),
        "application/json",
        json!({"propagationPolicy": "Background"}),
    )
    .await;
    assert_eq!(code, 200);
    let (code, _) = get(&emu, &format!("{ORGS}/b")).await;
    assert_eq!(code, 404, "no finalizers: deleted at once");
}

#[tokio::test]
async fn patches_merge_json_with_test_op_and_strategic_is_415_on_custom_resources() {
    let emu = started().await;
    let a = create_org(&emu, "a", json!({"alias": "A", "models": ["x"]})).await;
    let (code, merged) = merge_patch(
        &emu,
        &format!("{ORGS}/a"),
        json!({"spec": {"models": null, "alias": "M"}}),
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(merged["spec"]["alias"], "M");
    assert!(
        merged["spec"].get("models").is_none(),
        "null removes a key in a merge patch"
    );
    let rv_now = merged["metadata"]["resourceVersion"].clone();
    let (code, ok) = http(&emu, "PATCH", &format!("{ORGS}/a"), "application/json-patch+json", json!([{"op": "test", "path": "/metadata/resourceVersion", "value": rv_now}, {"op": "add", "path": "/metadata/finalizers", "value": ["litellm.dev/cleanup"]}])).await;
    assert_eq!(code, 200, "{ok}");
    assert_eq!(ok["metadata"]["finalizers"], json!(["litellm.dev/cleanup"]));
    let (code, failed) = http(&emu, "PATCH", &format!("{ORGS}/a"), "application/json-patch+json", json!([{"op": "test", "path": "/metadata/resourceVersion", "value": rv_now}, {"op": "remove", "path": "/metadata/finalizers"}])).await;
    assert_eq!(
        code, 422,
        "a failed test op rejects the whole patch: {failed}"
    );
    let (code, stale) = merge_patch(&emu, &format!("{ORGS}/a"), json!({"metadata": {"resourceVersion": a["metadata"]["resourceVersion"]}, "spec": {"alias": "Z"}})).await;
    assert_eq!(
        code, 409,
        "a resourceVersion in a merge patch is a precondition: {stale}"
    );
    let (code, smp) = http(
        &emu,
        "PATCH",
        &format!("{ORGS}/a"),
        "application/strategic-merge-patch+json",
        json!({"spec": {"alias": "S"}}),
    )
    .await;
    assert_eq!(
        (code, smp["reason"].as_str()),
        (415, Some("UnsupportedMediaType"))
    );
    let (code, ns) = http(
        &emu,
        "PATCH",
        "/api/v1/namespaces/team",
        "application/strategic-merge-patch+json",
        json!({"metadata": {"labels": {"a": "b"}}}),
    )
    .await;
    assert_eq!(
        (code, ns["metadata"]["labels"]["a"].as_str()),
        (200, Some("b")),
        "built-in kinds accept strategic merge"
    );
}

#[tokio::test]
async fn server_side_apply_merges_records_the_manager_and_drops_released_fields() {
    let emu = started().await;
    let path = format!("{ORGS}/a?fieldManager=gitops");
    let first = "apiVersion: litellm.dev/v1alpha1\nkind: Organization\nmetadata:\n  name: a\n  labels:\n    team: x\nspec:\n  alias: A\n  models: [m1]\n";
    let (code, _, body) =
        http_raw(&emu, "PATCH", &path, "application/apply-patch+yaml", first).await;
    assert_eq!(code, 201, "apply creates: {body}");
    let created: Value = serde_json::from_str(&body).expect("json");
    let managers: Vec<&str> = created["metadata"]["managedFields"]
        .as_array()
        .expect("managedFields")
        .iter()
        .filter_map(|m| m["manager"].as_str())
        .collect();
    assert_eq!(managers, ["gitops"]);
    assert_eq!(
        created["metadata"]["managedFields"][0]["operation"],
        "Apply"
    );
    // Another writer sets a field the apply never owned; a second apply drops `models` only.
    let (code, _) = merge_patch(
        &emu,
        &format!("{ORGS}/a"),
        json!({"spec": {"organizationId": "pinned"}}),
    )
    .await;
    assert_eq!(code, 200);
    let second = "apiVersion: litellm.dev/v1alpha1\nkind: Organization\nmetadata:\n  name: a\nspec:\n  alias: B\n";
    let (code, _, body) =
        http_raw(&emu, "PATCH", &path, "application/apply-patch+yaml", second).await;
    assert_eq!(code, 200, "{body}");
    let applied: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(applied["spec"]["alias"], "B");
    assert!(
        applied["spec"].get("models").is_none(),
        "a field this manager released is removed"
    );
    assert_eq!(
        applied["spec"]["organizationId"], "pinned",
        "fields of other writers are kept"
    );
    assert!(
        applied["metadata"]
            .get("labels")
            .and_then(|l| l.get("team"))
            .is_none()
    );
    // Status applies from two managers merge the conditions list by `type`.
    let cond = |t: &str| {
        format!(
            "apiVersion: litellm.dev/v1alpha1\nkind: Organization\nmetadata:\n  name: a\nstatus:\n  conditions:\n  - type: {t}\n    status: \"True\"\n    reason: R\n    message: m\n    lastTransitionTime: \"2026-01-01T00:00:00Z\"\n"
        )
    };
    let (code, _, _) = http_raw(
        &emu,
        "PATCH",
        &format!("{ORGS}/a/status?fieldManager=one&force=true"),
        "application/apply-patch+yaml",
        &cond("Ready"),
    )
    .await;
    assert_eq!(code, 200);
    let (code, _, body) = http_raw(
        &emu,
        "PATCH",
        &format!("{ORGS}/a/status?fieldManager=two&force=true"),
        "application/apply-patch+yaml",
        &cond("Stalled"),
    )
    .await;
    assert_eq!(code, 200);
    let both: Value = serde_json::from_str(&body).expect("json");
    let kinds: Vec<&str> = both["status"]["conditions"]
        .as_array()
        .expect("conditions")
        .iter()
        .filter_map(|c| c["type"].as_str())
        .collect();
    assert_eq!(
        kinds,
        ["Ready", "Stalled"],
        "x-kubernetes-list-type: map merges by key"
    );
    let (code, _, body) = http_raw(
        &emu,
        "PATCH",
        &format!("{ORGS}/a"),
        "application/apply-patch+yaml",
        second,
    )
    .await;
    assert_eq!(code, 400, "apply needs a fieldManager: {body}");
}

#[tokio::test]
async fn watch_streams_added_modified_deleted_and_bookmarks_from_a_resource_version() {
    let emu = Emulator::start_with(Options {
        bookmark_interval: Duration::from_millis(200),
        ..Options::default()
    })
    .await
    .expect("start");
    emu.create_namespace("team");
    emu.create_namespace("other");
    let start = emu.resource_version();
    create_org(&emu, "a", json!({})).await;
    merge_patch(&emu, &format!("{ORGS}/a"), json!({"spec": {"alias": "B"}})).await;
    post(
        &emu,
        "/apis/litellm.dev/v1alpha1/namespaces/other/organizations",
        org("o", json!({})),
    )
    .await;
    http(
        &emu,
        "DELETE",
        &format!("{ORGS}/a"),
        "application/json",
        Value::Null,
    )
    .await;
    let events = watch_events(
        &emu,
        &format!(
            "{ORGS}?watch=1&resourceVersion={start}&allowWatchBookmarks=true&timeoutSeconds=1"
        ),
    )
    .await;
    let t = types(&events);
    assert_eq!(t[..3], ["ADDED", "MODIFIED", "DELETED"], "{t:?}");
    assert!(
        t[3..].iter().all(|x| x == "BOOKMARK") && t.len() > 3,
        "bookmarks after the replay, before the timeout: {t:?}"
    );
    assert_eq!(events[1]["object"]["spec"]["alias"], "B");
    let bookmark_rv: u64 = events[3]["object"]["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("bookmark rv");
    assert_eq!(bookmark_rv, emu.resource_version());
    let all = watch_events(&emu, &format!("/apis/litellm.dev/v1alpha1/organizations?watch=1&resourceVersion={start}&timeoutSeconds=1")).await;
    assert_eq!(
        types(&all),
        ["ADDED", "MODIFIED", "ADDED", "DELETED"],
        "all namespaces, no bookmarks unless asked"
    );
    let initial = watch_events(
        &emu,
        "/apis/litellm.dev/v1alpha1/organizations?watch=1&timeoutSeconds=1",
    )
    .await;
    assert_eq!(
        types(&initial),
        ["ADDED"],
        "no resourceVersion: synthetic ADDED for what exists"
    );
    let streaming = watch_events(&emu, "/apis/litellm.dev/v1alpha1/namespaces/other/organizations?watch=1&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true&timeoutSeconds=1").await;
    assert_eq!(types(&streaming)[..2], ["ADDED", "BOOKMARK"]);
    assert_eq!(
        streaming[1]["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"],
        "true"
    );
    // A label change that stops matching the selector is a DELETED for that watch.
    let before = emu.resource_version();
    merge_patch(
        &emu,
        "/apis/litellm.dev/v1alpha1/namespaces/other/organizations/o",
        json!({"metadata": {"labels": {"k": "v"}}}),
    )
    .await;
    merge_patch(
        &emu,
        "/apis/litellm.dev/v1alpha1/namespaces/other/organizations/o",
        json!({"metadata": {"labels": {"k": "w"}}}),
    )
    .await;
    let selected = watch_events(&emu, &format!("/apis/litellm.dev/v1alpha1/organizations?watch=1&resourceVersion={before}&labelSelector=k%3Dv&timeoutSeconds=1")).await;
    assert_eq!(types(&selected), ["ADDED", "DELETED"]);
}

#[tokio::test]
async fn watch_from_a_compacted_resource_version_gets_410_gone_in_the_stream() {
    let emu = Emulator::start_with(Options {
        history_limit: 3,
        ..Options::default()
    })
    .await
    .expect("start");
    emu.create_namespace("team");
    let start = emu.resource_version();
    for i in 0..5 {
        create_org(&emu, &format!("o{i}"), json!({})).await;
    }
    // As kube-apiserver does it: HTTP 200, then one ERROR event carrying the 410 Status.
    let gone = watch_events(&emu, &format!("{ORGS}?watch=1&resourceVersion={start}")).await;
    assert_eq!(types(&gone), ["ERROR"], "{gone:?}");
    assert_eq!(gone[0]["object"]["code"], 410);
    assert_eq!(gone[0]["object"]["reason"], "Expired");
    assert!(
        gone[0]["object"]["message"]
            .as_str()
            .unwrap_or("")
            .starts_with("too old resource version")
    );
    let recent = emu.resource_version() - 1;
    let events = watch_events(
        &emu,
        &format!("{ORGS}?watch=1&resourceVersion={recent}&timeoutSeconds=1"),
    )
    .await;
    assert_eq!(
        types(&events),
        ["ADDED"],
        "a resourceVersion still in the history replays"
    );
    emu.compact();
    let compacted = watch_events(&emu, &format!("{ORGS}?watch=1&resourceVersion={recent}")).await;
    assert_eq!(compacted[0]["object"]["code"], 410, "{compacted:?}");
    emu.force_gone_next_watches(1);
    let forced = watch_events(
        &emu,
        &format!("{ORGS}?watch=1&resourceVersion={}", emu.resource_version()),
    )
    .await;
    assert_eq!(types(&forced), ["ERROR"]);
    assert_eq!(forced[0]["object"]["code"], 410);
}

#[tokio::test]
async fn validation_answers_422_with_causes_naming_the_fields() {
    let emu = started().await;
    let (code, bad) = post(&emu, ORGS, org("bad", json!({"budget": {"maxBudget": -1, "budgetDuration": "3x"}, "deletionPolicy": "Keep", "alias": ""}))).await;
    assert_eq!(
        (code, bad["reason"].as_str(), bad["kind"].as_str()),
        (422, Some("Invalid"), Some("Status"))
    );
    let fields: Vec<&str> = bad["details"]["causes"]
        .as_array()
        .expect("causes")
        .iter()
        .filter_map(|c| c["field"].as_str())
        .collect();
    for f in [
        "spec.budget.maxBudget",
        "spec.budget.budgetDuration",
        "spec.deletionPolicy",
        "spec.alias",
    ] {
        assert!(fields.contains(&f), "{f} in {fields:?}");
    }
    let message = bad["message"].as_str().expect("message");
    assert!(
        message.starts_with("Organization.litellm.dev \"bad\" is invalid: ["),
        "{message}"
    );
    assert!(message.contains("spec.budget.maxBudget: Invalid value: -1: spec.budget.maxBudget in body should be greater than or equal to 0"), "{message}");
    assert!(message.contains("spec.deletionPolicy: Unsupported value: \"Keep\": supported values: \"Delete\", \"Retain\""), "{message}");
    // Type errors, required fields and lengths.
    let (code, typed) = post(&emu, ORGS, org("t", json!({"models": "gpt"}))).await;
    assert_eq!(code, 422);
    assert!(
        typed["message"]
            .as_str()
            .unwrap_or("")
            .contains("spec.models in body must be of type array"),
        "{typed}"
    );
    let (code, required) = post(&emu, ORGS, json!({"apiVersion": "litellm.dev/v1alpha1", "kind": "Organization", "metadata": {"name": "r"}})).await;
    assert_eq!(
        (code, required["details"]["causes"][0]["field"].as_str()),
        (422, Some("spec"))
    );
    let (code, long) = post(&emu, ORGS, org("l", json!({"alias": "x".repeat(300)}))).await;
    assert_eq!(
        (code, long["details"]["causes"][0]["reason"].as_str()),
        (422, Some("FieldValueTooLong"))
    );
    // CEL: mutually exclusive fields, with the rule's fieldPath and reason.
    let (code, cel) = post(
        &emu,
        ORGS,
        org(
            "c",
            json!({"budget": {"maxBudget": 1}, "budgetRef": {"budgetId": "b"}}),
        ),
    )
    .await;
    assert_eq!(code, 422, "{cel}");
    assert_eq!(cel["details"]["causes"][0]["field"], "spec.budgetRef");
    assert_eq!(cel["details"]["causes"][0]["reason"], "FieldValueForbidden");
    assert!(
        cel["message"]
            .as_str()
            .unwrap_or("")
            .contains("budget and budgetRef are mutually exclusive")
    );
    // CEL transition rule with oldSelf: organizationId is immutable once set.
    create_org(&emu, "pinned", json!({"organizationId": "org-1"})).await;
    let (code, immutable) = merge_patch(
        &emu,
        &format!("{ORGS}/pinned"),
        json!({"spec": {"organizationId": "org-2"}}),
    )
    .await;
    assert_eq!(code, 422, "{immutable}");
    assert!(
        immutable["message"]
            .as_str()
            .unwrap_or("")
            .contains("organizationId is immutable once set")
    );
    let (code, _) = merge_patch(
        &emu,
        &format!("{ORGS}/pinned"),
        json!({"spec": {"alias": "fine"}}),
    )
    .await;
    assert_eq!(code, 200, "other changes pass the transition rule");
    // Members: nested CEL on spec.user, and required enum.
    let (code, member) = post(
        &emu,
        "/apis/litellm.dev/v1alpha1/namespaces/team/organizationmembers",
        member_json(
            "m",
            json!({"organizationId": "o", "user": {}, "role": "org_admin"}),
        ),
    )
    .await;
    assert_eq!(code, 422);
    assert_eq!(member["details"]["causes"][0]["field"], "spec.user");
}

#[tokio::test]
async fn unknown_fields_are_pruned_or_refused_and_preserved_where_the_schema_says() {
    let emu = started().await;
    let mut body = org(
        "p",
        json!({"alias": "A", "bogus": 1, "metadata": {"free": {"form": true}}}),
    );
    body["extra"] = json!("x");
    let (code, head, text) =
        http_raw(&emu, "POST", ORGS, "application/json", &body.to_string()).await;
    assert_eq!(code, 201, "{text}");
    assert!(
        head.contains("warning: 299 - \"unknown field \\\"spec.bogus\\\"\""),
        "{head}"
    );
    let created: Value = serde_json::from_str(&text).expect("json");
    assert!(
        created["spec"].get("bogus").is_none() && created.get("extra").is_none(),
        "pruned"
    );
    assert_eq!(
        created["spec"]["metadata"]["free"]["form"], true,
        "x-kubernetes-preserve-unknown-fields keeps it"
    );
    let (code, strict) = post(
        &emu,
        &format!("{ORGS}?fieldValidation=Strict"),
        org("s", json!({"bogus": 1})),
    )
    .await;
    assert_eq!(code, 400, "{strict}");
    assert!(
        strict["message"]
            .as_str()
            .unwrap_or("")
            .contains("strict decoding error: unknown field \"spec.bogus\"")
    );
    let (code, _) = post(&emu, ORGS, org("n", json!({"alias": null}))).await;
    assert_eq!(code, 201, "null is allowed on a nullable field");
}

#[tokio::test]
async fn fault_injection_fails_the_next_requests_then_recovers() {
    let emu = started().await;
    create_org(&emu, "a", json!({})).await;
    emu.fail_next(Some("get"), Some("organizations"), 2, 500);
    assert_eq!(get(&emu, &format!("{ORGS}/a")).await.0, 500);
    assert_eq!(get(&emu, &format!("{ORGS}/a")).await.0, 500);
    assert_eq!(get(&emu, &format!("{ORGS}/a")).await.0, 200);
    emu.fail_next(Some("patch"), None, 1, 429);
    let (code, head, _) = http_raw(
        &emu,
        "PATCH",
        &format!("{ORGS}/a"),
        "application/merge-patch+json",
        "{}",
    )
    .await;
    assert_eq!(code, 429);
    assert!(head.contains("retry-after: 1"));
    emu.fail_next(None, Some("organizations"), 1, 409);
    let (code, conflict) = get(&emu, ORGS).await;
    assert_eq!((code, conflict["reason"].as_str()), (409, Some("Conflict")));
    assert_eq!(get(&emu, ORGS).await.0, 200);
    // Through kube-rs, the injected 500 surfaces as an API error.
    let api: Api<Organization> = Api::namespaced(emu.client(), "team");
    emu.fail_next(Some("get"), None, 1, 500);
    match api.get("a").await {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 500),
        other => panic!("expected an injected 500, got {other:?}"),
    }
    assert!(api.get("a").await.is_ok());
}

#[tokio::test]
async fn posted_crds_are_served_at_once_and_tables_use_printer_columns() {
    let emu = started().await;
    let crd = json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {"group": "example.com", "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "shortNames": ["wd"]},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "additionalPrinterColumns": [{"name": "Size", "type": "integer", "jsonPath": ".spec.size"}],
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {"spec": {"type": "object", "properties": {"size": {"type": "integer", "maximum": 10}}}}}}}]}
    });
    let (code, created) = post(
        &emu,
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
        crd,
    )
    .await;
    assert_eq!(code, 201, "{created}");
    assert!(
        created["status"]["conditions"]
            .as_array()
            .expect("conditions")
            .iter()
            .any(|c| c["type"] == "Established" && c["status"] == "True")
    );
    let (code, _) = get(&emu, "/apis/example.com/v1").await;
    assert_eq!(code, 200);
    let widgets = "/apis/example.com/v1/namespaces/team/widgets";
    let (code, _) = post(&emu, widgets, json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"size": 3}})).await;
    assert_eq!(code, 201);
    let (code, _) = post(&emu, widgets, json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "big"}, "spec": {"size": 30}})).await;
    assert_eq!(code, 422, "the posted schema validates at once");
    let (code, head, text) = {
        let mut stream = tokio::net::TcpStream::connect(emu.addr())
            .await
            .expect("connect");
        let req = format!(
            "GET {widgets} HTTP/1.1\r\nHost: e\r\nConnection: close\r\nAccept: application/json;as=Table;v=v1;g=meta.k8s.io,application/json\r\n\r\n"
        );
        stream.write_all(req.as_bytes()).await.expect("send");
        let mut raw = String::new();
        stream.read_to_string(&mut raw).await.expect("read");
        let (h, b) = raw.split_once("\r\n\r\n").expect("response");
        (
            h.split_whitespace().nth(1).unwrap_or("").to_string(),
            h.to_string(),
            b.to_string(),
        )
    };
    assert_eq!(code, "200", "{head}");
    let table: Value = serde_json::from_str(&text).expect("table json");
    assert_eq!(table["kind"], "Table");
    let columns: Vec<&str> = table["columnDefinitions"]
        .as_array()
        .expect("columns")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(columns, ["Name", "Size"]);
    assert_eq!(table["rows"][0]["cells"], json!(["w", 3]));
    // A CRD PUT with a new printer column takes effect, and deleting the CRD stops serving it.
    let (_, mut current) = get(
        &emu,
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.example.com",
    )
    .await;
    current["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
        ["size"]["maximum"] = json!(100);
    let (code, _) = http(
        &emu,
        "PUT",
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.example.com",
        "application/json",
        current,
    )
    .await;
    assert_eq!(code, 200);
    let (code, _) = post(&emu, widgets, json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "big"}, "spec": {"size": 30}})).await;
    assert_eq!(code, 201, "the updated schema applies at once");
    let (code, _) = http(
        &emu,
        "DELETE",
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.example.com",
        "application/json",
        Value::Null,
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(get(&emu, widgets).await.0, 404);
}

#[tokio::test]
async fn events_leases_and_namespace_deletion() {
    let emu = started().await;
    let event = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "e1"}, "eventTime": "2026-01-01T00:00:00.000000Z", "reportingController": "litellm.dev/operator", "reportingInstance": "i", "action": "Reconcile", "reason": "Synced", "type": "Normal", "note": "ok", "regarding": {"kind": "Organization", "name": "a", "namespace": "team"}});
    let (code, _) = post(&emu, "/apis/events.k8s.io/v1/namespaces/team/events", event).await;
    assert_eq!(code, 201);
    let (_, events) = get(
        &emu,
        "/apis/events.k8s.io/v1/namespaces/team/events?fieldSelector=regarding.name%3Da",
    )
    .await;
    assert_eq!(events["items"].as_array().map(Vec::len), Some(1));
    // One Event storage, two views: core/v1 sees it converted, with its own field names.
    let (_, core) = get(
        &emu,
        "/api/v1/namespaces/team/events?fieldSelector=involvedObject.name%3Da,involvedObject.kind%3DOrganization",
    )
    .await;
    assert_eq!(core["kind"], "EventList");
    assert_eq!(core["items"][0]["apiVersion"], "v1");
    assert_eq!(core["items"][0]["message"], "ok");
    assert_eq!(
        core["items"][0]["reportingComponent"],
        "litellm.dev/operator"
    );
    assert_eq!(core["items"][0]["involvedObject"]["name"], "a");
    let legacy = json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "e2"}, "involvedObject": {"kind": "Organization", "name": "b", "namespace": "team"}, "reason": "Old", "message": "legacy", "type": "Warning", "count": 2});
    let (code, _) = post(&emu, "/api/v1/namespaces/team/events", legacy).await;
    assert_eq!(code, 201);
    let (_, e2) = get(&emu, "/apis/events.k8s.io/v1/namespaces/team/events/e2").await;
    assert_eq!(
        (
            e2["note"].as_str(),
            e2["regarding"]["name"].as_str(),
            e2["deprecatedCount"].as_i64()
        ),
        (Some("legacy"), Some("b"), Some(2))
    );
    // deletecollection with a selector.
    let (code, deleted) = http(
        &emu,
        "DELETE",
        "/api/v1/namespaces/team/events?fieldSelector=involvedObject.name%3Db",
        "application/json",
        Value::Null,
    )
    .await;
    assert_eq!(
        (code, deleted["items"].as_array().map(Vec::len)),
        (200, Some(1))
    );
    let (_, left) = get(&emu, "/apis/events.k8s.io/v1/namespaces/team/events").await;
    assert_eq!(left["items"].as_array().map(Vec::len), Some(1));
    let lease = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "leader"}, "spec": {"holderIdentity": "a", "leaseDurationSeconds": 15}});
    let (code, created) = post(
        &emu,
        "/apis/coordination.k8s.io/v1/namespaces/team/leases",
        lease,
    )
    .await;
    assert_eq!(code, 201);
    let mut take = created.clone();
    take["spec"]["holderIdentity"] = json!("b");
    let (code, _) = http(
        &emu,
        "PUT",
        "/apis/coordination.k8s.io/v1/namespaces/team/leases/leader",
        "application/json",
        take.clone(),
    )
    .await;
    assert_eq!(code, 200);
    take["spec"]["holderIdentity"] = json!("c");
    let (code, _) = http(
        &emu,
        "PUT",
        "/apis/coordination.k8s.io/v1/namespaces/team/leases/leader",
        "application/json",
        take,
    )
    .await;
    assert_eq!(
        code, 409,
        "a second writer with the old resourceVersion loses the lease race"
    );
    let mut held = org("held", json!({}));
    held["metadata"]["finalizers"] = json!(["litellm.dev/cleanup"]);
    post(&emu, ORGS, held).await;
    let (code, ns) = http(
        &emu,
        "DELETE",
        "/api/v1/namespaces/team",
        "application/json",
        Value::Null,
    )
    .await;
    assert_eq!(
        (code, ns["status"]["phase"].as_str()),
        (200, Some("Terminating"))
    );
    assert_eq!(
        get(
            &emu,
            "/apis/coordination.k8s.io/v1/namespaces/team/leases/leader"
        )
        .await
        .0,
        404,
        "content is deleted"
    );
    let (code, _) = post(&emu, ORGS, org("late", json!({}))).await;
    assert_eq!(code, 403, "no new content in a terminating namespace");
    let (code, _) = merge_patch(
        &emu,
        &format!("{ORGS}/held"),
        json!({"metadata": {"finalizers": null}}),
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(
        get(&emu, "/api/v1/namespaces/team").await.0,
        404,
        "the namespace goes when it is empty"
    );
}

fn org_typed(name: &str) -> Organization {
    organization(name, json!({"alias": name}))
}

/// Wait until the reflector's store holds exactly `want` (names with aliases), or fail.
async fn store_converges(
    store: &reflector::Store<Organization>,
    want: &[(&str, &str)],
    what: &str,
) {
    let mut want: Vec<(String, String)> = want
        .iter()
        .map(|(n, a)| (n.to_string(), a.to_string()))
        .collect();
    want.sort();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let mut have: Vec<(String, String)> = store
            .state()
            .iter()
            .map(|o| {
                (
                    o.metadata.name.clone().unwrap_or_default(),
                    o.spec.alias.clone().unwrap_or_default(),
                )
            })
            .collect();
        have.sort();
        if have == want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: the reflector has {have:?}, want {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn kube_watcher_and_reflector_survive_410_gone_and_cut_streams() {
    let emu = Emulator::start_with(Options {
        history_limit: 4,
        ..Options::default()
    })
    .await
    .expect("start");
    emu.create_namespace("team");
    let api: Api<Organization> = Api::namespaced(emu.client(), "team");
    api.create(&PostParams::default(), &org_typed("a"))
        .await
        .expect("create a");
    let (store, writer) = reflector::store();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let log = seen.clone();
    let stream = reflector(writer, watcher(api.clone(), watcher::Config::default()))
        .default_backoff()
        .applied_objects()
        .map_ok(move |o: Organization| {
            let mut l = log.lock().unwrap_or_else(|p| p.into_inner());
            l.push(format!(
                "{}={}",
                o.metadata.name.clone().unwrap_or_default(),
                o.spec.alias.clone().unwrap_or_default()
            ));
        });
    let driver = tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        // Errors (the 410s) are items of the stream, not its end: keep consuming.
        while stream.next().await.is_some() {}
    });
    store_converges(&store, &[("a", "a")], "initial list").await;

    // 1. A 410 Gone inside the next watch stream, forced while the stream is cut.
    emu.force_gone_next_watches(1);
    emu.cut_watches();
    api.create(&PostParams::default(), &org_typed("b"))
        .await
        .expect("create b");
    api.patch(
        "a",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"alias": "a2"}})),
    )
    .await
    .expect("patch a");
    store_converges(&store, &[("a", "a2"), ("b", "b")], "after an in-stream 410").await;

    // 2. A cut stream while changes happen: the re-watch resumes from the last resourceVersion.
    emu.cut_watches();
    api.create(&PostParams::default(), &org_typed("c"))
        .await
        .expect("create c");
    api.delete("b", &DeleteParams::default())
        .await
        .expect("delete b");
    store_converges(&store, &[("a", "a2"), ("c", "c")], "after a cut stream").await;

    // 3. A real 410 from compaction: more changes than the history keeps while no watch is
    //    open (the next two watch requests fail with 500, holding the watcher off).
    emu.fail_next(Some("watch"), Some("organizations"), 2, 500);
    emu.cut_watches();
    for name in ["d", "e", "f", "g", "h"] {
        api.create(&PostParams::default(), &org_typed(name))
            .await
            .expect("create");
    }
    api.delete("c", &DeleteParams::default())
        .await
        .expect("delete c");
    api.patch(
        "a",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"alias": "a3"}})),
    )
    .await
    .expect("patch a");
    let want = [
        ("a", "a3"),
        ("d", "d"),
        ("e", "e"),
        ("f", "f"),
        ("g", "g"),
        ("h", "h"),
    ];
    store_converges(&store, &want, "after a 410 from compaction").await;

    // Every object version written was observed (as an event or through the re-list).
    let seen = seen.lock().unwrap_or_else(|p| p.into_inner()).clone();
    for expected in ["a=a", "b=b", "a=a2", "c=c", "d=d", "h=h", "a=a3"] {
        assert!(
            seen.contains(&expected.to_string()),
            "{expected} was never observed: {seen:?}"
        );
    }
    // And the store equals the server's list.
    let server: Vec<String> = api
        .list(&Default::default())
        .await
        .expect("list")
        .items
        .into_iter()
        .filter_map(|o| o.metadata.name)
        .collect();
    let mut local: Vec<String> = store
        .state()
        .iter()
        .filter_map(|o| o.metadata.name.clone())
        .collect();
    local.sort();
    assert_eq!(local, server);
    driver.abort();
}

// ---------------------------------------------------------------------------------------
// Wire and admission strictness: protobuf, Event validation, ObjectMeta round trip,
// consistent pages, planting objects past admission.

const PROTOBUF: &str = "application/vnd.kubernetes.protobuf";
const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/team/leases";

/// kube-apiserver's protobuf envelope: `k8s\0` + runtime.Unknown.
fn envelope(api_version: &str, kind: &str, raw: Vec<u8>) -> Vec<u8> {
    let unknown = k8s_pb::apimachinery::pkg::runtime::Unknown {
        type_meta: Some(k8s_pb::apimachinery::pkg::runtime::TypeMeta {
            api_version: Some(api_version.into()),
            kind: Some(kind.into()),
        }),
        raw: Some(raw),
        content_encoding: Some(String::new()),
        content_type: Some(String::new()),
    };
    let mut out = b"k8s\0".to_vec();
    out.extend(unknown.encode_to_vec());
    out
}

/// The kind and message bytes of an enveloped protobuf answer.
fn open_envelope(body: &[u8]) -> (String, Vec<u8>) {
    let rest = body
        .strip_prefix(b"k8s\0")
        .unwrap_or_else(|| panic!("no protobuf magic in {:?}", String::from_utf8_lossy(body)));
    let unknown =
        k8s_pb::apimachinery::pkg::runtime::Unknown::decode(rest).expect("a runtime.Unknown");
    let tm = unknown.type_meta.unwrap_or_default();
    (
        format!(
            "{}/{}",
            tm.api_version.unwrap_or_default(),
            tm.kind.unwrap_or_default()
        ),
        unknown.raw.unwrap_or_default(),
    )
}

#[tokio::test]
async fn built_in_kinds_speak_protobuf_and_answers_follow_accept() {
    use k8s_pb::api::coordination::v1 as coordination;
    use k8s_pb::api::core::v1 as core;
    use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
    let emu = started().await;
    let lease = coordination::Lease {
        metadata: Some(meta::ObjectMeta {
            name: Some("leader".into()),
            labels: [("app".to_string(), "operator".to_string())].into(),
            ..Default::default()
        }),
        spec: Some(coordination::LeaseSpec {
            holder_identity: Some("pod-a".into()),
            lease_duration_seconds: Some(15),
            acquire_time: Some(meta::MicroTime {
                seconds: Some(1_767_225_600),
                nanos: Some(123_456_000),
            }),
            ..Default::default()
        }),
    };
    let body = envelope("coordination.k8s.io/v1", "Lease", lease.encode_to_vec());
    let (code, head, answer) = http_bytes(&emu, "POST", LEASES, PROTOBUF, PROTOBUF, &body).await;
    assert_eq!(code, 201, "{}", String::from_utf8_lossy(&answer));
    assert!(
        head.contains(&format!("content-type: {PROTOBUF}")),
        "{head}"
    );
    let (kind, raw) = open_envelope(&answer);
    assert_eq!(kind, "coordination.k8s.io/v1/Lease");
    let created = coordination::Lease::decode(raw.as_slice()).expect("a Lease");
    let meta = created.metadata.clone().unwrap_or_default();
    assert!(meta.uid.is_some_and(|u| !u.is_empty()), "{created:?}");
    assert!(meta.creation_timestamp.is_some(), "{created:?}");
    assert_eq!(created.spec, lease.spec, "the spec round-trips");
    // The same object in JSON, with the API's field names and a microsecond time.
    let (_, json) = get(&emu, &format!("{LEASES}/leader")).await;
    assert_eq!(json["spec"]["holderIdentity"], "pod-a");
    assert_eq!(json["spec"]["leaseDurationSeconds"], 15);
    assert_eq!(json["spec"]["acquireTime"], "2026-01-01T00:00:00.123456Z");
    assert_eq!(json["metadata"]["labels"]["app"], "operator");
    // A JSON body of a built-in kind goes through its type: a wrong type is refused naming
    // the field, a field the type lacks is dropped with a warning, times take their precision.
    let (code, status) = post(
        &emu,
        LEASES,
        json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "typed"}, "spec": {"leaseDurationSeconds": "15"}}),
    )
    .await;
    assert_eq!(code, 400, "{status}");
    assert!(
        status["message"]
            .as_str()
            .is_some_and(|m| m.contains("spec.leaseDurationSeconds")),
        "{status}"
    );
    let (code, head, body) = http_raw(
        &emu,
        "POST",
        LEASES,
        "application/json",
        &json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "typed"}, "spec": {"holderIdentity": "b", "holder": "typo", "renewTime": "2026-01-01T00:00:00.123456789Z"}}).to_string(),
    )
    .await;
    assert_eq!(code, 201, "{body}");
    assert!(head.contains(r#"unknown field \"spec.holder\""#), "{head}");
    let typed: Value = serde_json::from_str(&body).expect("JSON");
    assert!(typed["spec"].get("holder").is_none(), "{typed}");
    assert_eq!(typed["spec"]["renewTime"], "2026-01-01T00:00:00.123456Z");
    // Lists and errors in protobuf too.
    let (code, _, answer) = http_bytes(&emu, "GET", LEASES, "", PROTOBUF, b"").await;
    assert_eq!(code, 200);
    let (kind, raw) = open_envelope(&answer);
    assert_eq!(kind, "coordination.k8s.io/v1/LeaseList");
    let list = coordination::LeaseList::decode(raw.as_slice()).expect("a LeaseList");
    assert_eq!(list.items.len(), 2);
    assert!(list.metadata.and_then(|m| m.resource_version).is_some());
    let (code, _, answer) = http_bytes(
        &emu,
        "GET",
        &format!("{LEASES}/missing"),
        "",
        &format!("{PROTOBUF}, application/json"),
        b"",
    )
    .await;
    assert_eq!(code, 404);
    let (kind, raw) = open_envelope(&answer);
    assert_eq!(kind, "v1/Status");
    let status = meta::Status::decode(raw.as_slice()).expect("a Status");
    assert_eq!(
        (status.code, status.reason.as_deref()),
        (Some(404), Some("NotFound"))
    );
    // A core/v1 Event in protobuf, read back through events.k8s.io/v1 in JSON.
    let event = core::Event {
        metadata: Some(meta::ObjectMeta {
            name: Some("ev1".into()),
            ..Default::default()
        }),
        involved_object: Some(core::ObjectReference {
            kind: Some("Organization".into()),
            name: Some("a".into()),
            namespace: Some("team".into()),
            ..Default::default()
        }),
        reason: Some("Synced".into()),
        message: Some("from a typed client".into()),
        r#type: Some("Normal".into()),
        ..Default::default()
    };
    let (code, _, answer) = http_bytes(
        &emu,
        "POST",
        "/api/v1/namespaces/team/events",
        PROTOBUF,
        PROTOBUF,
        &envelope("v1", "Event", event.encode_to_vec()),
    )
    .await;
    assert_eq!(code, 201, "{}", String::from_utf8_lossy(&answer));
    let (_, json) = get(&emu, "/apis/events.k8s.io/v1/namespaces/team/events/ev1").await;
    assert_eq!(json["note"], "from a typed client", "{json}");
    assert_eq!(json["regarding"]["name"], "a", "{json}");
    // Custom resources have no protobuf form: 415 for a body, 406 for an answer.
    let (code, _, answer) = http_bytes(
        &emu,
        "POST",
        ORGS,
        PROTOBUF,
        PROTOBUF,
        &envelope("litellm.dev/v1alpha1", "Organization", Vec::new()),
    )
    .await;
    assert_eq!(code, 415, "{}", String::from_utf8_lossy(&answer));
    create_org(&emu, "a", json!({})).await;
    let (code, _, _) = http_bytes(&emu, "GET", ORGS, "", PROTOBUF, b"").await;
    assert_eq!(code, 406);
    let (code, head, answer) = http_bytes(
        &emu,
        "GET",
        ORGS,
        "",
        &format!("{PROTOBUF},application/json"),
        b"",
    )
    .await;
    assert_eq!(code, 200);
    assert!(head.contains("content-type: application/json"), "{head}");
    let list: Value = serde_json::from_slice(&answer).expect("JSON for a custom resource");
    assert_eq!(list["items"][0]["metadata"]["name"], "a");
    let (code, head, answer) = http_bytes(
        &emu,
        "GET",
        &format!("{ORGS}/a"),
        "",
        "application/yaml",
        b"",
    )
    .await;
    assert_eq!(code, 200);
    assert!(head.contains("content-type: application/yaml"), "{head}");
    let yaml: Value = serde_yaml::from_slice(&answer).expect("YAML");
    assert_eq!(yaml["kind"], "Organization");
}

const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/team/events";

fn valid_event(name: &str) -> Value {
    json!({
        "apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": name},
        "eventTime": "2026-01-01T00:00:00.000000Z",
        "reportingController": "litellm.dev/operator", "reportingInstance": "pod-a",
        "action": "Reconcile", "reason": "Synced", "type": "Normal", "note": "ok",
        "regarding": {"kind": "Organization", "name": "a", "namespace": "team"},
    })
}

/// The message of a 422 for an Event, or a failure naming what happened instead.
async fn event_refused(emu: &Emulator, method: &str, path: &str, ct: &str, body: Value) -> String {
    let (code, status) = http(emu, method, path, ct, body).await;
    assert_eq!(code, 422, "expected 422 Invalid, got {code}: {status}");
    assert_eq!(status["reason"], "Invalid");
    status["message"].as_str().unwrap_or("").to_string()
}

#[tokio::test]
async fn events_are_validated_as_kube_apiserver_validates_them() {
    let emu = started().await;
    let (code, body) = post(&emu, EVENTS, valid_event("ok")).await;
    assert_eq!(code, 201, "{body}");
    let mut at_limit = valid_event("at-limit");
    at_limit["note"] = json!("n".repeat(1024));
    let (code, body) = post(&emu, EVENTS, at_limit).await;
    assert_eq!(code, 201, "a 1024-byte note is allowed: {body}");

    // (what, the top-level field set, its value, the expected cause)
    let cases = [
        (
            "note over 1024 bytes",
            "note",
            json!("n".repeat(1025)),
            r#"message: Invalid value: "": can have at most 1024 characters"#,
        ),
        (
            "no reportingController",
            "reportingController",
            Value::Null,
            "reportingController: Required value",
        ),
        (
            "no reportingInstance",
            "reportingInstance",
            Value::Null,
            "reportingInstance: Required value",
        ),
        ("no action", "action", Value::Null, "action: Required value"),
        (
            "reason over 128 bytes",
            "reason",
            json!("R".repeat(129)),
            "reason: Invalid value: \"\": can have at most 128 characters",
        ),
        (
            "type Info",
            "type",
            json!("Info"),
            r#"type: Invalid value: "": has invalid value: Info"#,
        ),
        (
            "a 254-character name",
            "metadata",
            json!({"name": "e".repeat(254)}),
            "metadata.name: Invalid value: \"eeee",
        ),
        (
            "series.count 1",
            "series",
            json!({"count": 1, "lastObservedTime": "2026-01-01T00:00:01.000000Z"}),
            r#"series.count: Invalid value: "": should be at least 2"#,
        ),
        (
            "no eventTime",
            "eventTime",
            Value::Null,
            "eventTime: Required value",
        ),
        (
            "a deprecated count",
            "deprecatedCount",
            json!(3),
            r#"count: Invalid value: "": needs to be unset"#,
        ),
    ];
    for (what, field, value, expected) in cases {
        let mut event = valid_event("bad");
        event[field] = value;
        let message = event_refused(&emu, "POST", EVENTS, "application/json", event).await;
        assert!(
            message.starts_with("Event.events.k8s.io \"") && message.contains(expected),
            "{what}: {expected:?} in {message:?}"
        );
        if what == "a 254-character name" {
            assert!(
                message.contains("must be no more than 253 characters"),
                "{message}"
            );
        }
    }

    // Updates: the series may grow (kube-runtime's Recorder merge-patches it), the rest of
    // the event is immutable.
    let path = format!("{EVENTS}/ok");
    let (code, body) = merge_patch(
        &emu,
        &path,
        json!({"series": {"count": 2, "lastObservedTime": "2026-01-01T00:01:00.000000Z"}}),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let message = event_refused(
        &emu,
        "PATCH",
        &path,
        "application/merge-patch+json",
        json!({"note": "changed"}),
    )
    .await;
    assert!(
        message.contains(r#"message: Invalid value: "changed": field is immutable"#),
        "{message}"
    );
    let message = event_refused(
        &emu,
        "PATCH",
        &path,
        "application/merge-patch+json",
        json!({"series": {"count": 1, "lastObservedTime": null}}),
    )
    .await;
    assert!(message.contains("series.count"), "{message}");
    assert!(
        message.contains("series.lastObservedTime: Required value"),
        "{message}"
    );
    let message = event_refused(
        &emu,
        "PATCH",
        &path,
        "application/merge-patch+json",
        json!({"regarding": {"name": "b"}}),
    )
    .await;
    assert!(
        message.contains("involvedObject: Invalid value"),
        "{message}"
    );

    // core/v1 keeps the legacy rules only: a long name passes, a long message with an
    // eventTime does not.
    let long_name = json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "c".repeat(254)}, "involvedObject": {"kind": "Organization", "name": "a", "namespace": "team"}, "reason": "Old", "message": "legacy", "type": "Warning"});
    let (code, body) = post(&emu, "/api/v1/namespaces/team/events", long_name).await;
    assert_eq!(code, 201, "{body}");
    let long_message = json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "c2"}, "involvedObject": {"kind": "Organization", "name": "a", "namespace": "team"}, "reason": "New", "message": "m".repeat(1025), "type": "Normal", "eventTime": "2026-01-01T00:00:00.000000Z", "reportingComponent": "litellm.dev/operator", "reportingInstance": "pod-a", "action": "Reconcile"});
    let message = event_refused(
        &emu,
        "POST",
        "/api/v1/namespaces/team/events",
        "application/json",
        long_message,
    )
    .await;
    assert!(
        message.contains("can have at most 1024 characters"),
        "{message}"
    );

    // kube-runtime's Recorder, as the operator uses it: an over-long note is refused.
    let recorder = kube::runtime::events::Recorder::new(
        emu.client(),
        kube::runtime::events::Reporter {
            controller: "litellm-org-operator".into(),
            instance: Some("pod-a".into()),
        },
    );
    let regarding = k8s_openapi::api::core::v1::ObjectReference {
        kind: Some("Organization".into()),
        name: Some("a".into()),
        namespace: Some("team".into()),
        api_version: Some("litellm.dev/v1alpha1".into()),
        ..Default::default()
    };
    // The Recorder keys its series by reason (not note): one reason per case.
    let event = |reason: &str, note: String| kube::runtime::events::Event {
        type_: kube::runtime::events::EventType::Warning,
        reason: reason.into(),
        note: Some(note),
        action: "Reconcile".into(),
        secondary: None,
    };
    recorder
        .publish(&event("Synced", "short".into()), &regarding)
        .await
        .expect("a valid event is recorded");
    let refused = recorder
        .publish(&event("Conflict", "u".repeat(2000)), &regarding)
        .await;
    assert!(
        matches!(&refused, Err(kube::Error::Api(s)) if s.code == 422),
        "{refused:?}"
    );
}

#[tokio::test]
async fn metadata_is_stored_as_object_meta_keeps_it() {
    let emu = started().await;
    let mut o = org("empty-lists", json!({}));
    o["metadata"]["finalizers"] = json!([]);
    o["metadata"]["labels"] = json!({});
    o["metadata"]["annotations"] = json!({});
    o["metadata"]["ownerReferences"] = json!([]);
    o["metadata"]["generateName"] = json!("");
    o["metadata"]["notAField"] = json!("x");
    let (code, head, body) = http_raw(&emu, "POST", ORGS, "application/json", &o.to_string()).await;
    assert_eq!(code, 201, "{body}");
    assert!(
        head.contains(r#"unknown field \"metadata.notafield\""#),
        "a warning for the dropped field: {head}"
    );
    let (_, stored) = get(&emu, &format!("{ORGS}/empty-lists")).await;
    let meta = stored["metadata"].as_object().expect("metadata");
    for dropped in [
        "finalizers",
        "labels",
        "annotations",
        "ownerReferences",
        "generateName",
        "notAField",
    ] {
        assert!(!meta.contains_key(dropped), "{dropped} in {stored}");
    }
    // kube-runtime's finalizer helper on that object: its JSON patch tests
    // /metadata/finalizers against null, which a stored `[]` would fail forever.
    let api: Api<Organization> = Api::namespaced(emu.client(), "team");
    let mut seen: Organization = serde_json::from_value(o.clone()).expect("an Organization");
    seen.metadata.namespace = Some("team".into());
    let action = kube::runtime::finalizer(
        &api,
        "litellm.dev/test",
        std::sync::Arc::new(seen),
        |_| async {
            Ok::<_, std::convert::Infallible>(kube::runtime::controller::Action::await_change())
        },
    )
    .await;
    assert!(action.is_ok(), "{action:?}");
    let after = api.get("empty-lists").await.expect("get");
    assert_eq!(
        after.metadata.finalizers.as_deref(),
        Some(&["litellm.dev/test".to_string()][..])
    );
    // Emptying the list by a patch drops it too.
    let (code, patched) = merge_patch(
        &emu,
        &format!("{ORGS}/empty-lists"),
        json!({"metadata": {"finalizers": [], "labels": {}}}),
    )
    .await;
    assert_eq!(code, 200, "{patched}");
    assert!(patched["metadata"].get("finalizers").is_none(), "{patched}");
    // Strict field validation refuses a field ObjectMeta does not have.
    let mut strict = org("strict", json!({}));
    strict["metadata"]["notAField"] = json!("x");
    let (code, status) = post(&emu, &format!("{ORGS}?fieldValidation=Strict"), strict).await;
    assert_eq!(code, 400, "{status}");
    assert!(
        status["message"]
            .as_str()
            .is_some_and(|m| m.contains(r#"unknown field "metadata.notAField""#)),
        "{status}"
    );
}

fn names(list: &Value) -> Vec<String> {
    list["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap_or("").to_string())
        .collect()
}

#[tokio::test]
async fn paged_lists_are_served_at_the_first_pages_revision() {
    let emu = started().await;
    for name in ["b", "d", "f", "h", "j"] {
        create_org(&emu, name, json!({"alias": name})).await;
    }
    let (_, page1) = get(&emu, &format!("{ORGS}?limit=2")).await;
    assert_eq!(names(&page1), ["b", "d"]);
    let first_rv = page1["metadata"]["resourceVersion"].clone();
    let token = page1["metadata"]["continue"]
        .as_str()
        .expect("continue")
        .to_string();
    // Between pages: one created after the last key served, one deleted, one changed.
    create_org(&emu, "g", json!({})).await;
    let (code, _) = http(
        &emu,
        "DELETE",
        &format!("{ORGS}/h"),
        "application/json",
        Value::Null,
    )
    .await;
    assert_eq!(code, 200);
    let (code, _) = merge_patch(
        &emu,
        &format!("{ORGS}/f"),
        json!({"spec": {"alias": "changed"}}),
    )
    .await;
    assert_eq!(code, 200);
    let (code, page2) = get(&emu, &format!("{ORGS}?limit=2&continue={token}")).await;
    assert_eq!(code, 200, "{page2}");
    assert_eq!(
        names(&page2),
        ["f", "h"],
        "the list as it was at the first page"
    );
    assert_eq!(page2["items"][0]["spec"]["alias"], "f");
    assert_eq!(page2["metadata"]["resourceVersion"], first_rv);
    assert_eq!(page2["metadata"]["remainingItemCount"], 1);
    let token = page2["metadata"]["continue"]
        .as_str()
        .expect("continue")
        .to_string();
    let (_, page3) = get(&emu, &format!("{ORGS}?limit=2&continue={token}")).await;
    assert_eq!(names(&page3), ["j"]);
    assert_eq!(page3["metadata"]["resourceVersion"], first_rv);
    assert!(page3["metadata"].get("continue").is_none());
    // A fresh list sees the present.
    let (_, now) = get(&emu, ORGS).await;
    assert_eq!(names(&now), ["b", "d", "f", "g", "j"]);
    // An exact revision is served too.
    let (_, exact) = get(
        &emu,
        &format!(
            "{ORGS}?resourceVersion={}&resourceVersionMatch=Exact",
            first_rv.as_str().unwrap_or("")
        ),
    )
    .await;
    assert_eq!(names(&exact), ["b", "d", "f", "h", "j"]);
    // After compaction the revision is gone: 410 Expired with an inconsistent token.
    let (_, page1) = get(&emu, &format!("{ORGS}?limit=2")).await;
    let token = page1["metadata"]["continue"]
        .as_str()
        .expect("continue")
        .to_string();
    create_org(&emu, "k", json!({})).await;
    emu.compact();
    let (code, status) = get(&emu, &format!("{ORGS}?limit=2&continue={token}")).await;
    assert_eq!(
        (code, status["reason"].as_str()),
        (410, Some("Expired")),
        "{status}"
    );
    let inconsistent = status["metadata"]["continue"]
        .as_str()
        .expect("an inconsistent continue token")
        .to_string();
    let (code, rest) = get(&emu, &format!("{ORGS}?continue={inconsistent}")).await;
    assert_eq!(code, 200, "{rest}");
    assert_eq!(names(&rest), ["f", "g", "j", "k"]);
    // kube-rs pages the same way (its watcher lists by pages of 500).
    let api: Api<Organization> = Api::namespaced(emu.client(), "team");
    let mut params = kube::api::ListParams::default().limit(2);
    let mut seen = Vec::new();
    loop {
        let page = api.list(&params).await.expect("list");
        seen.extend(page.items.iter().filter_map(|o| o.metadata.name.clone()));
        match page.metadata.continue_ {
            Some(c) if !c.is_empty() => params = params.continue_token(&c),
            _ => break,
        }
    }
    assert_eq!(seen, ["b", "d", "f", "g", "j", "k"]);
    // Across namespaces, pages follow the store's (namespace, name) order: "team" sorts
    // before "team-b", though "team-b/x" sorts before "team/x" as text.
    emu.create_namespace("team-b");
    let (code, _) = post(
        &emu,
        "/apis/litellm.dev/v1alpha1/namespaces/team-b/organizations",
        org("x", json!({})),
    )
    .await;
    assert_eq!(code, 201);
    let all: Api<Organization> = Api::all(emu.client());
    let mut params = kube::api::ListParams::default().limit(1);
    let mut seen = Vec::new();
    loop {
        let page = all.list(&params).await.expect("list");
        seen.extend(page.items.iter().map(|o| {
            format!(
                "{}/{}",
                o.metadata.namespace.as_deref().unwrap_or(""),
                o.metadata.name.as_deref().unwrap_or("")
            )
        }));
        match page.metadata.continue_ {
            Some(c) if !c.is_empty() => params = params.continue_token(&c),
            _ => break,
        }
    }
    assert_eq!(
        seen,
        [
            "team/b", "team/d", "team/f", "team/g", "team/j", "team/k", "team-b/x"
        ]
    );
}

#[tokio::test]
async fn insert_raw_plants_an_object_the_schema_would_refuse() {
    let emu = started().await;
    let mut deep = json!("leaf");
    for _ in 0..130 {
        deep = json!({ "a": deep });
    }
    let mut o = org("deep", json!({}));
    o["spec"]["metadata"] = deep;
    o["spec"]["models"] = json!("not-a-list");
    let (code, _) = post(&emu, ORGS, o.clone()).await;
    assert!(code == 400 || code == 422, "the server refuses it: {code}");
    let stored = emu.insert_raw("litellm.dev", "v1alpha1", "organizations", "team", o);
    assert_eq!(stored["metadata"]["generation"], 1);
    assert_eq!(stored["metadata"]["namespace"], "team");
    let rv = stored["metadata"]["resourceVersion"].clone();
    let (code, _, body) = http_raw(&emu, "GET", &format!("{ORGS}/deep"), "", "").await;
    assert_eq!(code, 200);
    assert_eq!(body.matches(r#"{"a":"#).count(), 130, "stored as given");
    assert!(body.contains(r#""models":"not-a-list""#));
    assert!(body.contains(&format!(r#""resourceVersion":{rv}"#)));
    // A client that decodes it with serde_json's default depth limit fails, as the operator
    // would on a real cluster holding such an object.
    let api: Api<Organization> = Api::namespaced(emu.client(), "team");
    assert!(api.get("deep").await.is_err());
    // Watches saw it.
    let (code, _, stream) = http_raw(
        &emu,
        "GET",
        &format!("{ORGS}?watch=1&resourceVersion=1&timeoutSeconds=1"),
        "",
        "",
    )
    .await;
    assert_eq!(code, 200);
    assert!(
        stream.contains(r#""type":"ADDED""#) && stream.contains(r#""name":"deep""#),
        "{stream}"
    );
}
