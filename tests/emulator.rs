//! The API emulator's fault injection (`kube-emulator`), which the tests that stay on it rely
//! on: injected 500/429/409 answers, cut watch streams, 410 Gone in a watch and after
//! compaction (for watches and paged lists), objects planted past admission; and kube-rs's
//! watcher and reflector riding through them. (Everything else the emulator does is checked
//! against the real kube-apiserver instead: the operator's tests run there.)
mod support;

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube_emulator::{Emulator, Options};
use litellm_org_operator::crd::Organization;
use serde_json::{Value, json};
use support::kube::{organization, organization_json as org};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ORGS: &str = "/apis/litellm.dev/v1alpha1/namespaces/team/organizations";

/// The defaults with the committed CRDs.
fn options() -> Options {
    Options {
        crds: Some(support::crds_dir()),
        ..Options::default()
    }
}

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

async fn create_org(emu: &Emulator, name: &str, spec: Value) -> Value {
    let (code, body) = http(emu, "POST", ORGS, "application/json", org(name, spec)).await;
    assert_eq!(code, 201, "create {name}: {body}");
    body
}

async fn started() -> Emulator {
    let emu = Emulator::start(&support::crds_dir()).await;
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

fn names(list: &Value) -> Vec<String> {
    list["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap_or("").to_string())
        .collect()
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
async fn watch_from_a_compacted_resource_version_gets_410_gone_in_the_stream() {
    let emu = Emulator::start_with(Options {
        history_limit: 3,
        ..options()
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
async fn kube_watcher_and_reflector_survive_410_gone_and_cut_streams() {
    let emu = Emulator::start_with(Options {
        history_limit: 4,
        ..options()
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

/// `compact` (etcd compaction) expires a paged list in progress: its next page gets 410
/// Expired with an inconsistent continue token, which serves the rest at the present.
#[tokio::test]
async fn compaction_expires_a_paged_list_in_progress() {
    let emu = started().await;
    for name in ["b", "d", "f", "j"] {
        create_org(&emu, name, json!({"alias": name})).await;
    }
    let (_, page1) = get(&emu, &format!("{ORGS}?limit=2")).await;
    assert_eq!(names(&page1), ["b", "d"]);
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
    assert_eq!(names(&rest), ["f", "j", "k"]);
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
    let (code, _) = http(&emu, "POST", ORGS, "application/json", o.clone()).await;
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
