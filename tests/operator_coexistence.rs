//! The operator end to end while LiteLLM edits the same rows: `/organization/update` (alias
//! changed, metadata replaced wholesale) and `/organization/member_update` (role and budget)
//! between two reconciles. Declared fields are put back (DriftCorrected), undeclared ones kept,
//! status stays Ready, no Conflict.

#[path = "support/emulator/mod.rs"]
mod emulator;
mod support;

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use emulator::Emulator;
use kube::Api;
use kube::api::PostParams;
use litellm_org_operator::crd::{Organization, OrganizationMember};
use litellm_org_operator::engine::ids;
use serde_json::json;
use support::TestDb;
use support::kube::{Kubectl, member, organization};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const BIN: &str = env!("CARGO_BIN_EXE_litellm-org-operator");
const NS: &str = "coexistence";

/// The operator as a child process, killed when dropped; its log is kept.
struct Operator {
    _child: tokio::process::Child,
    log: Arc<std::sync::Mutex<Vec<String>>>,
}

impl Operator {
    async fn start(emu: &Emulator, database_url: &str) -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
        let http: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
        let mut child = tokio::process::Command::new(BIN)
            .args([
                "run",
                "--http-addr",
                &http.to_string(),
                "--resync-interval",
                "2s",
                "--install-crds",
            ])
            .env("KUBECONFIG", emu.kubeconfig_path())
            .env("DATABASE_URL", database_url)
            .env("RUST_LOG", "warn,litellm_org_operator=info")
            .env("POD_NAME", "litellm-org-operator-0")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start the operator");
        let log = Arc::new(std::sync::Mutex::new(Vec::new()));
        let stderr = child.stderr.take().expect("stderr");
        let sink = log.clone();
        tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                eprintln!("{line}");
                sink.lock().expect("log").push(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        while http_get(http, "/readyz").await.ok() != Some(200) {
            assert!(Instant::now() < deadline, "the operator never became ready");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Self { _child: child, log }
    }

    fn log_lines(&self) -> Vec<String> {
        self.log.lock().expect("log").clone()
    }
}

/// The status code of a minimal HTTP/1.0 GET.
async fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<u16> {
    let mut s = TcpStream::connect(addr).await?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes())
        .await?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).await?;
    Ok(buf
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0))
}

fn ready(
    status: Option<(
        Option<i64>,
        &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
    )>,
    generation: Option<i64>,
) -> bool {
    status.is_some_and(|(observed, conditions)| {
        observed == generation
            && conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
    })
}

fn org_ready(o: &Organization) -> bool {
    ready(
        o.status
            .as_ref()
            .map(|s| (s.observed_generation, s.conditions.as_slice())),
        o.metadata.generation,
    )
}

fn member_ready(m: &OrganizationMember) -> bool {
    ready(
        m.status
            .as_ref()
            .map(|s| (s.observed_generation, s.conditions.as_slice())),
        m.metadata.generation,
    )
}

/// Poll until `check` holds for the object, or fail after `secs`.
async fn wait_for<K, F>(api: &Api<K>, name: &str, secs: u64, what: &str, check: F) -> K
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    F: Fn(&K) -> bool,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Ok(Some(obj)) = api.get_opt(name).await
            && check(&obj)
        {
            return obj;
        }
        if Instant::now() > deadline {
            let current = api.get_opt(name).await.ok().flatten();
            panic!("{name}: timed out waiting for {what}; now {current:#?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Poll a query until it returns `want`, or fail after `secs`.
async fn wait_rows(db: &TestDb, sql: &str, want: &[String], secs: u64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let rows = db.strings(sql).await;
        if rows == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{sql}\nstill {rows:?}, waiting for {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn litellm_updates_between_reconciles() {
    let db = TestDb::litellm().await;
    let emu = Emulator::start().await;
    emu.create_namespace(NS);
    let op = Operator::start(&emu, &db.url()).await;
    let client = emu.client();
    let orgs: Api<Organization> = Api::namespaced(client.clone(), NS);
    let members: Api<OrganizationMember> = Api::namespaced(client.clone(), NS);
    orgs.create(
        &PostParams::default(),
        &organization(
            "acme",
            json!({"alias": "Acme", "metadata": {"team": "a"}, "budget": {"maxBudget": 100}}),
        ),
    )
    .await
    .expect("create the Organization");
    for (name, spec) in [
        (
            "pat",
            json!({"organizationRef": {"name": "acme"}, "user": {"email": "pat@example.com"}, "role": "internal_user", "maxBudgetInOrganization": 10}),
        ),
        (
            "quinn",
            json!({"organizationRef": {"name": "acme"}, "user": {"email": "quinn@example.com"}, "role": "internal_user"}),
        ),
    ] {
        members
            .create(&PostParams::default(), &member(name, spec))
            .await
            .expect("create the OrganizationMember");
    }
    let acme = wait_for(&orgs, "acme", 60, "Ready", org_ready).await;
    for name in ["pat", "quinn"] {
        wait_for(&members, name, 60, "Ready", member_ready).await;
    }
    let id = acme
        .status
        .as_ref()
        .and_then(|s| s.organization_id.clone())
        .expect("organizationId in status");
    let pat = ids::user_id_for_email("pat@example.com");
    let quinn = ids::user_id_for_email("quinn@example.com");
    let pat_budget = ids::member_budget_id(NS, "pat");

    // What LiteLLM's endpoints write: /organization/update (the seed's: metadata wholesale),
    // /organization/member_update for both members (role; budget: the existing row updated,
    // or a new row attached when the membership had none).
    db.exec(&format!(
        r#"UPDATE "LiteLLM_OrganizationTable" SET organization_alias = 'Acme (UI)', metadata = '{{"cost_center": "42"}}', updated_by = 'admin', updated_at = now() WHERE organization_id = '{id}';
           UPDATE "LiteLLM_OrganizationMembership" SET user_role = 'org_admin', updated_at = now() WHERE organization_id = '{id}';
           UPDATE "LiteLLM_BudgetTable" SET max_budget = 99, updated_by = 'admin' WHERE budget_id = '{pat_budget}';
           INSERT INTO "LiteLLM_BudgetTable" (budget_id, max_budget, created_by, updated_by) VALUES ('ui-quinn-budget', 25, 'admin', 'admin');
           UPDATE "LiteLLM_OrganizationMembership" SET budget_id = 'ui-quinn-budget' WHERE user_id = '{quinn}' AND organization_id = '{id}';"#
    ))
    .await;

    // The resync puts the declared fields back and keeps the rest.
    wait_rows(
        &db,
        &format!(
            r#"SELECT organization_alias || '|' || COALESCE(metadata->>'team', 'NULL') || '|' || COALESCE(metadata->>'cost_center', 'NULL') FROM "LiteLLM_OrganizationTable" WHERE organization_id = '{id}'"#
        ),
        &["Acme|a|42".to_string()],
        60,
    )
    .await;
    let mut want = vec![
        format!("{pat}|internal_user|{pat_budget}|10"),
        format!("{quinn}|internal_user|ui-quinn-budget|25"),
    ];
    want.sort();
    wait_rows(
        &db,
        &format!(
            r#"SELECT m.user_id || '|' || m.user_role || '|' || COALESCE(m.budget_id, 'NULL') || '|' || COALESCE(CAST(b.max_budget AS TEXT), 'NULL')
               FROM "LiteLLM_OrganizationMembership" m LEFT JOIN "LiteLLM_BudgetTable" b ON b.budget_id = m.budget_id
               WHERE m.organization_id = '{id}' ORDER BY m.user_id"#
        ),
        &want,
        60,
    )
    .await;

    let events = Kubectl::new(emu.kubeconfig_path(), emu.dir())
        .ok(&["get", "events.events.k8s.io", "-n", NS, "-o", "json"])
        .await;
    assert!(
        events.contains("DriftCorrected") && events.contains("organization_alias"),
        "{events}"
    );
    assert!(
        events.contains("user_role"),
        "the member's drift is reported too: {events}"
    );
    assert!(!events.contains("Conflict"), "{events}");

    // Still Ready, and a further resync changes nothing.
    let acme = orgs.get("acme").await.expect("get");
    assert!(org_ready(&acme), "{:?}", acme.status);
    for name in ["pat", "quinn"] {
        let m = members.get(name).await.expect("get");
        assert!(member_ready(&m), "{name}: {:?}", m.status);
    }
    let rows = db.snapshot().await;
    tokio::time::sleep(Duration::from_secs(5)).await; // two resync periods
    assert_eq!(db.snapshot().await, rows, "no write once converged");
    let log = op.log_lines();
    assert!(
        !log.iter().any(|l| l.contains("Conflict")),
        "{}",
        log.join("\n")
    );
    db.cleanup().await;
}
