//! Operator scale benchmark: the real operator binary against the in-process Kubernetes API
//! emulator and a fresh LiteLLM database, at several population sizes in one run.
//!
//!     cargo bench --bench operator_scale                  # 1,000, 10,000 and 60,000 objects
//!     OPBENCH_SIZES=1000,10000 cargo bench --bench operator_scale
//!     OPBENCH_QUICK=1 cargo bench --bench operator_scale  # one tiny population
//!
//! For each size n (n/6 Organizations, 5 OrganizationMembers each, in one namespace) the
//! objects are stored in the emulator first, then the operator (`run`, the binary Cargo
//! builds for this bench: target/release/litellm-org-operator under `cargo bench`) is
//! started against an empty database cloned from the LiteLLM template
//! (`LITELLM_TEMPLATE_DB`, built by scripts/litellm-template-db.sh). It measures:
//!
//! - cold start to every object Ready (Ready=True for its current generation);
//! - the operator's peak RSS (VmHWM) and its RSS once Ready and after a resync;
//! - the operator's CPU seconds (utime+stime of its process) and, separately, those of this
//!   process, which runs the emulator;
//! - API writes per object as the emulator records them: status writes, finalizer patches,
//!   other writes of the objects, and Events;
//! - one idle resync window (`--resync-interval`, default 30 s; 3 s in quick mode) after
//!   Ready: reconciles, database transactions and tuples written (pg_stat_database), API
//!   writes, engine operations (the operator's /metrics), operator CPU and mean reconcile time.
//!
//! Prints one table and writes target/bench/operator.json. Under `cargo test` (no `--bench`
//! argument) it runs only the quick population, as a smoke test that asserts correctness
//! (every object Ready, no write while idle) and nothing about time.
//!
//! Environment: DATABASE_TEST_URL (admin URL, default postgres://postgres@127.0.0.1:5432/postgres),
//! LITELLM_TEMPLATE_DB, OPBENCH_SIZES, OPBENCH_RESYNC (e.g. 30s), OPBENCH_TIMEOUT (seconds to
//! wait for Ready per size, default 600), OPBENCH_CONCURRENCY (the operator's --concurrency,
//! default its own), OPBENCH_RUST_LOG (the operator's RUST_LOG, default warn; its stderr goes to
//! target/bench/operator-<objects>.log), OPERATOR_BIN (another operator binary).
use std::collections::{BTreeMap, HashMap};
use std::process::Stdio;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kube_emulator as emulator;
use serde_json::{Value, json};
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, Row};

#[path = "common/mod.rs"]
mod common;
/// The tests' operator helpers: the bench uses their HTTP GET and free port.
#[path = "../tests/support/operator.rs"]
mod operator_support;
use common::{admin_url, drop_database, fresh_database};

fn operator_bin() -> String {
    std::env::var("OPERATOR_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_litellm-org-operator").to_string())
}

const GROUP: &str = "litellm.dev";
const VERSION: &str = "v1alpha1";
const NS: &str = "bench";
const MEMBERS_PER_ORG: usize = 5;

/// The database URL the operator gets (the admin URL with the bench database's name).
fn database_url(name: &str) -> String {
    let mut url = url::Url::parse(&admin_url()).expect("DATABASE_TEST_URL is a URL");
    url.set_path(&format!("/{name}"));
    url.to_string()
}

/// Counters of one database from pg_stat_database.
#[derive(Debug, Clone, Copy, Default)]
struct DbStats {
    xact_commit: i64,
    xact_rollback: i64,
    tup_returned: i64,
    tup_fetched: i64,
    tup_written: i64,
}

async fn db_stats(admin: &PgConnectOptions, name: &str) -> DbStats {
    let mut conn = admin.connect().await.expect("connect for stats");
    let row = sqlx::query(
        "SELECT xact_commit, xact_rollback, tup_returned, tup_fetched, \
         tup_inserted + tup_updated + tup_deleted AS written \
         FROM pg_stat_database WHERE datname = $1",
    )
    .bind(name)
    .fetch_one(&mut conn)
    .await
    .expect("pg_stat_database");
    conn.close().await.ok();
    DbStats {
        xact_commit: row.get(0),
        xact_rollback: row.get(1),
        tup_returned: row.get(2),
        tup_fetched: row.get(3),
        tup_written: row.get(4),
    }
}

/// Every row of every table of the bench database (LiteLLM's and the ledger), as
/// (table, rows, sum of a hash of each row's ctid and xmin): an insert, update or delete
/// changes it, whenever the statistics collector gets to report it.
async fn row_fingerprint(admin: &PgConnectOptions, name: &str) -> BTreeMap<String, (i64, i64)> {
    let mut conn = admin
        .clone()
        .database(name)
        .connect()
        .await
        .expect("connect to the bench database");
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT format('%I.%I', schemaname, tablename) FROM pg_tables \
         WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1",
    )
    .fetch_all(&mut conn)
    .await
    .expect("list tables");
    let mut out = BTreeMap::new();
    for table in tables {
        // The name comes quoted from format('%I.%I') on the catalog.
        let sql = format!(
            "SELECT count(*), coalesce(sum(hashtext(ctid::text || ':' || xmin::text)::bigint), 0)::bigint FROM {table}"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_one(&mut conn)
            .await
            .expect("fingerprint a table");
        out.insert(table, (row.get(0), row.get(1)));
    }
    conn.close().await.ok();
    out
}

fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// utime + stime of a process, in seconds.
fn cpu_seconds(pid: &str, ticks: f64) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return f64::NAN;
    };
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return f64::NAN;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    let stime: f64 = fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    (utime + stime) / ticks
}

/// A `Vm*:` line of /proc/<pid>/status, in MiB.
fn vm_mib(pid: &str, field: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<f64>().ok())
        })
        .map(|kib| kib / 1024.0)
        .unwrap_or(f64::NAN)
}

/// API writes the emulator recorded, classified by what changed.
#[derive(Debug, Clone, Copy, Default)]
struct Writes {
    status: u64,
    finalizer: u64,
    other: u64,
    created: u64,
    deleted: u64,
    events: u64,
    elsewhere: u64,
}

impl Writes {
    fn api_total(&self) -> u64 {
        self.status + self.finalizer + self.other + self.created + self.deleted + self.events
    }
    fn minus(&self, o: &Writes) -> Writes {
        Writes {
            status: self.status - o.status,
            finalizer: self.finalizer - o.finalizer,
            other: self.other - o.other,
            created: self.created - o.created,
            deleted: self.deleted - o.deleted,
            events: self.events - o.events,
            elsewhere: self.elsewhere - o.elsewhere,
        }
    }
}

/// Counts every change the emulator broadcasts, on its own thread so it keeps up; `lagged`
/// counts changes it missed (then the figures are a lower bound, and the table says so).
struct Tally {
    writes: Arc<Mutex<Writes>>,
    lagged: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl Tally {
    fn start(emu: &emulator::Emulator) -> Tally {
        let mut rx = emu.state().events.subscribe();
        let writes = Arc::new(Mutex::new(Writes::default()));
        let lagged = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (w, l, s) = (writes.clone(), lagged.clone(), stop.clone());
        let trace = std::env::var_os("OPBENCH_TRACE").is_some();
        std::thread::spawn(move || {
            use tokio::sync::broadcast::error::RecvError;
            loop {
                let change = match rx.blocking_recv() {
                    Ok(c) => c,
                    Err(RecvError::Lagged(n)) => {
                        l.fetch_add(n, Ordering::Relaxed);
                        continue;
                    }
                    Err(RecvError::Closed) => return,
                };
                if s.load(Ordering::Relaxed) {
                    return;
                }
                let mut w = w.lock().unwrap_or_else(|p| p.into_inner());
                let (group, plural) = (&change.key.0, &change.key.1);
                if plural == "events" {
                    w.events += 1;
                    continue;
                }
                if group != GROUP {
                    w.elsewhere += 1;
                    continue;
                }
                if trace {
                    let o = &change.object;
                    eprintln!(
                        "change {} {} {}/{} finalizers={} status={}",
                        change.rv,
                        change.event_type,
                        plural,
                        o["metadata"]["name"].as_str().unwrap_or(""),
                        o["metadata"]["finalizers"],
                        o["status"]
                    );
                }
                match (change.event_type, &change.prev) {
                    ("ADDED", _) | (_, None) => w.created += 1,
                    ("DELETED", _) => w.deleted += 1,
                    (_, Some(prev)) => {
                        let now = &change.object;
                        if now["status"] != prev["status"] {
                            w.status += 1;
                        } else if now["metadata"]["finalizers"] != prev["metadata"]["finalizers"] {
                            w.finalizer += 1;
                        } else {
                            w.other += 1;
                        }
                    }
                }
            }
        });
        Tally {
            writes,
            lagged,
            stop,
        }
    }

    fn now(&self) -> Writes {
        *self.writes.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for Tally {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn organization(o: usize) -> Value {
    json!({
        "apiVersion": format!("{GROUP}/{VERSION}"),
        "kind": "Organization",
        "metadata": {"name": format!("org-{o}"), "namespace": NS},
        "spec": {
            "models": ["gpt-4o"],
            "budget": {"maxBudget": 100 + o, "budgetDuration": "30d"},
            "deletionPolicy": "Delete",
        },
        "status": {"observedGeneration": -1},
    })
}

fn member(o: usize, m: usize) -> Value {
    json!({
        "apiVersion": format!("{GROUP}/{VERSION}"),
        "kind": "OrganizationMember",
        "metadata": {"name": format!("org-{o}-m{m}"), "namespace": NS},
        "spec": {
            "organizationRef": {"name": format!("org-{o}")},
            "user": {"email": format!("user{m}-org{o}@example.com")},
            "role": "internal_user",
            "maxBudgetInOrganization": 10,
            "deletionPolicy": "Delete",
        },
        "status": {"observedGeneration": -1},
    })
}

/// Ready=True for the object's current generation.
fn is_ready(object: &Value) -> bool {
    let generation = object["metadata"]["generation"].as_i64();
    let observed = object["status"]["observedGeneration"].as_i64();
    object["status"]["conditions"].as_array().is_some_and(|cs| {
        cs.iter().any(|c| {
            c["type"] == "Ready"
                && c["status"] == "True"
                && c["observedGeneration"]
                    .as_i64()
                    .or(observed)
                    .is_some_and(|g| Some(g) == generation)
        })
    })
}

fn count_ready(emu: &emulator::Emulator) -> usize {
    let st = emu.state();
    ["organizations", "organizationmembers"]
        .iter()
        .filter_map(|plural| st.objects.get(&(GROUP.to_string(), plural.to_string())))
        .flat_map(|m| m.values())
        .filter(|o| is_ready(o))
        .count()
}

/// The operator's /metrics, series → value.
async fn metrics(addr: &str) -> BTreeMap<String, f64> {
    let Ok(addr) = addr.parse() else {
        return BTreeMap::new();
    };
    match operator_support::http_get(addr, "/metrics").await {
        Ok((200, body)) => body
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (k, v) = l.rsplit_once(' ')?;
                Some((k.to_string(), v.parse().ok()?))
            })
            .collect(),
        _ => BTreeMap::new(),
    }
}

fn sum_series(m: &BTreeMap<String, f64>, prefix: &str) -> f64 {
    m.iter()
        .filter(|(k, _)| k.starts_with(prefix))
        .map(|(_, v)| v)
        .sum()
}

/// What one size measured.
#[derive(Debug, Default)]
struct Result {
    objects: usize,
    organizations: usize,
    members: usize,
    ready: usize,
    cold_seconds: f64,
    finished: bool,
    peak_rss_mib: f64,
    ready_rss_mib: f64,
    steady_rss_mib: f64,
    operator_cpu_cold: f64,
    bench_cpu_cold: f64,
    cold_writes: Writes,
    lagged: u64,
    resync_seconds: f64,
    window_seconds: f64,
    idle_reconciles: f64,
    idle_writes: Writes,
    idle_db: DbStats,
    idle_tables_changed: Vec<String>,
    idle_engine_ops: f64,
    idle_engine_writes: f64,
    idle_operator_cpu: f64,
    idle_reconcile_ms: f64,
    idle_rss_mib: f64,
    final_peak_rss_mib: f64,
    cold_db_written: i64,
}

impl Result {
    fn json(&self) -> Value {
        let per = |x: f64| x / self.objects.max(1) as f64;
        let reconciles = self.idle_reconciles.max(1.0);
        json!({
            "objects": self.objects,
            "organizations": self.organizations,
            "members": self.members,
            "ready": self.ready,
            "all_ready": self.finished,
            "cold_start_seconds": self.cold_seconds,
            "objects_per_second": self.ready as f64 / self.cold_seconds.max(1e-9),
            "rss_mib": {
                "peak_at_ready": self.peak_rss_mib,
                "at_ready": self.ready_rss_mib,
                "steady_after_ready": self.steady_rss_mib,
                "after_resync": self.idle_rss_mib,
                "peak_after_resync": self.final_peak_rss_mib,
            },
            "cold_cpu_seconds": {
                "operator": self.operator_cpu_cold,
                "operator_ms_per_object": per(self.operator_cpu_cold) * 1000.0,
                "bench_process_with_emulator": self.bench_cpu_cold,
            },
            "cold_api_writes_per_object": {
                "status": per(self.cold_writes.status as f64),
                "finalizer": per(self.cold_writes.finalizer as f64),
                "other_object_writes": per(self.cold_writes.other as f64),
                "events": per(self.cold_writes.events as f64),
            },
            "cold_api_writes": {
                "status": self.cold_writes.status,
                "finalizer": self.cold_writes.finalizer,
                "other_object_writes": self.cold_writes.other,
                "created": self.cold_writes.created,
                "deleted": self.cold_writes.deleted,
                "events": self.cold_writes.events,
                "other_kinds": self.cold_writes.elsewhere,
            },
            "cold_database_tuples_written": self.cold_db_written,
            "changes_missed_by_the_tally": self.lagged,
            "idle_resync": {
                "resync_interval_seconds": self.resync_seconds,
                "window_seconds": self.window_seconds,
                "reconciles": self.idle_reconciles,
                "api_writes": self.idle_writes.api_total(),
                "api_writes_detail": {
                    "status": self.idle_writes.status,
                    "finalizer": self.idle_writes.finalizer,
                    "other_object_writes": self.idle_writes.other,
                    "events": self.idle_writes.events,
                },
                "database_tuples_written": self.idle_db.tup_written,
                "tables_whose_rows_changed": self.idle_tables_changed,
                "operator_database_writes_metric": self.idle_engine_writes,
                "database_transactions": self.idle_db.xact_commit + self.idle_db.xact_rollback,
                "transactions_per_reconcile": (self.idle_db.xact_commit + self.idle_db.xact_rollback) as f64 / reconciles,
                "rows_read_per_reconcile": (self.idle_db.tup_returned + self.idle_db.tup_fetched) as f64 / reconciles,
                "engine_operations_per_reconcile": self.idle_engine_ops / reconciles,
                "operator_cpu_seconds": self.idle_operator_cpu,
                "operator_cpu_ms_per_reconcile": self.idle_operator_cpu * 1000.0 / reconciles,
                "mean_reconcile_ms": self.idle_reconcile_ms,
            },
        })
    }
}

fn parse_duration(s: &str) -> Duration {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num.parse().unwrap_or(30);
    match unit {
        "ms" => Duration::from_millis(n),
        "m" => Duration::from_secs(n * 60),
        _ => Duration::from_secs(n),
    }
}

struct Operator {
    child: tokio::process::Child,
    pid: String,
    http: String,
}

impl Operator {
    async fn start(
        emu: &emulator::Emulator,
        db: &str,
        resync: Duration,
        log: &std::path::Path,
    ) -> Operator {
        let port = operator_support::free_port().await;
        let http = format!("127.0.0.1:{port}");
        let mut args = vec![
            "run".to_string(),
            "--http-addr".into(),
            http.clone(),
            "--resync-interval".into(),
            format!("{}ms", resync.as_millis()),
        ];
        if let Ok(c) = std::env::var("OPBENCH_CONCURRENCY") {
            args.extend(["--concurrency".into(), c]);
        }
        let bin = operator_bin();
        let log_file = std::fs::File::create(log).expect("operator log file");
        let child = tokio::process::Command::new(&bin)
            .args(&args)
            .env("KUBECONFIG", emu.kubeconfig_path())
            .env("DATABASE_URL", database_url(db))
            .env(
                "RUST_LOG",
                std::env::var("OPBENCH_RUST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .env("POD_NAME", "litellm-org-operator-bench")
            .stdout(Stdio::null())
            .stderr(log_file)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("start the operator {bin}: {e} (build it with `cargo build --release`)")
            });
        let pid = child.id().expect("operator pid").to_string();
        Operator { child, pid, http }
    }

    async fn stop(mut self) {
        let _ = tokio::process::Command::new("kill")
            .args(["-TERM", &self.pid])
            .status()
            .await;
        if tokio::time::timeout(Duration::from_secs(20), self.child.wait())
            .await
            .is_err()
        {
            self.child.kill().await.ok();
        }
    }
}

async fn run_size(n: usize, resync: Duration, timeout: Duration, ticks: f64) -> Result {
    let orgs = (n / (MEMBERS_PER_ORG + 1)).max(1);
    let members = orgs * MEMBERS_PER_ORG;
    let objects = orgs + members;
    let name = format!("lorg_opbench_{}_{objects}", std::process::id());
    fresh_database(&name).await;
    let admin = PgConnectOptions::from_str(&admin_url()).expect("url");

    let emu =
        emulator::Emulator::start(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("crds"))
            .await;
    emu.create_namespace(NS);
    // The first of each kind goes through admission (schema, defaults, CEL); the rest are
    // stored as fast as `insert_raw` can, in exactly the admitted form.
    for (plural, object) in [
        ("organizations", organization(0)),
        ("organizationmembers", member(0, 0)),
    ] {
        let mut st = emu.state();
        let rd = st
            .find(GROUP, VERSION, plural)
            .expect("the CRDs are loaded");
        let admitted = st
            .create(&rd, NS, object.clone(), &Default::default())
            .unwrap_or_else(|e| panic!("create {plural}: {}", e.message))
            .object;
        for part in ["spec", "status"] {
            assert_eq!(
                admitted[part], object[part],
                "the bench's {plural} must be stored as admission stores them (defaults included)"
            );
        }
    }
    for o in 0..orgs {
        if o > 0 {
            emu.insert_raw(GROUP, VERSION, "organizations", NS, organization(o));
        }
        for m in 0..MEMBERS_PER_ORG {
            if o > 0 || m > 0 {
                emu.insert_raw(GROUP, VERSION, "organizationmembers", NS, member(o, m));
            }
        }
    }
    let tally = Tally::start(&emu);
    let me = std::process::id().to_string();
    let bench_cpu0 = cpu_seconds(&me, ticks);
    let db0 = db_stats(&admin, &name).await;
    let log = bench_dir().join(format!("operator-{objects}.log"));

    let started = Instant::now();
    let op = Operator::start(&emu, &name, resync, &log).await;
    let mut result = Result {
        objects,
        organizations: orgs,
        members,
        resync_seconds: resync.as_secs_f64(),
        ..Result::default()
    };
    let mut last_report = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let ready = count_ready(&emu);
        result.ready = ready;
        let peak = vm_mib(&op.pid, "VmHWM:");
        if !peak.is_nan() {
            result.peak_rss_mib = peak;
        }
        if ready == objects {
            result.finished = true;
            break;
        }
        if started.elapsed() > timeout {
            break;
        }
        if let Ok(Some(status)) = op_status(&op) {
            eprintln!(
                "operator exited early ({status}); its log: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            break;
        }
        if last_report.elapsed() > Duration::from_secs(15) {
            eprintln!(
                "  {objects} objects: {ready} Ready after {:.0} s, operator RSS {:.0} MiB, CPU {:.1} s",
                started.elapsed().as_secs_f64(),
                vm_mib(&op.pid, "VmRSS:"),
                cpu_seconds(&op.pid, ticks)
            );
            last_report = Instant::now();
        }
    }
    result.cold_seconds = started.elapsed().as_secs_f64();
    result.operator_cpu_cold = cpu_seconds(&op.pid, ticks);
    result.bench_cpu_cold = cpu_seconds(&me, ticks) - bench_cpu0;
    let peak = vm_mib(&op.pid, "VmHWM:");
    if !peak.is_nan() {
        result.peak_rss_mib = peak;
    }
    result.ready_rss_mib = vm_mib(&op.pid, "VmRSS:");
    result.cold_writes = tally.now();

    if result.finished {
        // Let the last status writes settle, and one full resync pass: member counts are read
        // once per resync period, so the first resync after Ready brings the counts of
        // members that turned Ready after their organization up to date (a real change, one
        // status write each). The window measured below is the one after: nothing changed.
        tokio::time::sleep(resync.mul_f64(1.1) + Duration::from_secs(3)).await;
        result.steady_rss_mib = vm_mib(&op.pid, "VmRSS:");
        // Backends flush their statistics at most once a second when busy, within 10 s when idle.
        let db_ready = db_stats(&admin, &name).await;
        result.cold_db_written = db_ready.tup_written - db0.tup_written;

        let m0 = metrics(&op.http).await;
        let w0 = tally.now();
        let cpu0 = cpu_seconds(&op.pid, ticks);
        let db1 = db_stats(&admin, &name).await;
        let rows1 = row_fingerprint(&admin, &name).await;
        // One full resync: every object requeues within resync × 1.1 of its last reconcile.
        let window = resync.mul_f64(1.1) + Duration::from_secs(1);
        if std::env::var_os("OPBENCH_TRACE").is_some() {
            eprintln!("idle resync window starts");
        }
        tokio::time::sleep(window).await;
        let m1 = metrics(&op.http).await;
        let w1 = tally.now();
        let cpu1 = cpu_seconds(&op.pid, ticks);
        let db2 = db_stats(&admin, &name).await;
        let rows2 = row_fingerprint(&admin, &name).await;
        result.idle_tables_changed = rows2
            .iter()
            .filter(|(t, v)| rows1.get(*t) != Some(*v))
            .map(|(t, _)| t.clone())
            .collect();
        result.window_seconds = window.as_secs_f64();
        let d = |p: &str| sum_series(&m1, p) - sum_series(&m0, p);
        result.idle_reconciles = d("litellm_org_operator_reconciles_total");
        result.idle_engine_ops = d("litellm_org_operator_database_operations_total");
        result.idle_engine_writes = d("litellm_org_operator_database_writes_total");
        let secs = d("litellm_org_operator_reconcile_duration_seconds_sum");
        let count = d("litellm_org_operator_reconcile_duration_seconds_count");
        result.idle_reconcile_ms = if count > 0.0 {
            secs * 1000.0 / count
        } else {
            f64::NAN
        };
        result.idle_writes = w1.minus(&w0);
        result.idle_operator_cpu = cpu1 - cpu0;
        result.idle_db = DbStats {
            xact_commit: db2.xact_commit - db1.xact_commit,
            xact_rollback: db2.xact_rollback - db1.xact_rollback,
            tup_returned: db2.tup_returned - db1.tup_returned,
            tup_fetched: db2.tup_fetched - db1.tup_fetched,
            tup_written: db2.tup_written - db1.tup_written,
        };
        result.idle_rss_mib = vm_mib(&op.pid, "VmRSS:");
        result.final_peak_rss_mib = vm_mib(&op.pid, "VmHWM:");
    } else {
        eprintln!(
            "  {objects} objects: only {} Ready after {:.0} s; operator log tail:\n{}",
            result.ready,
            result.cold_seconds,
            tail(&log, 20)
        );
    }
    result.lagged = tally.lagged.load(Ordering::Relaxed);
    op.stop().await;
    drop(tally);
    drop(emu);
    drop_database(&name).await;
    result
}

fn op_status(op: &Operator) -> std::io::Result<Option<String>> {
    // /proc/<pid> is gone (or a zombie) once the operator exited.
    match std::fs::read_to_string(format!("/proc/{}/stat", op.pid)) {
        Ok(s)
            if s.rsplit_once(')')
                .is_some_and(|(_, r)| r.trim_start().starts_with('Z')) =>
        {
            Ok(Some("exited".into()))
        }
        Ok(_) => Ok(None),
        Err(_) => Ok(Some("gone".into())),
    }
}

fn tail(path: &std::path::Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// target/bench: the JSON report and each size's operator log (stderr).
fn bench_dir() -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench");
    std::fs::create_dir_all(&dir).expect("create target/bench");
    dir
}

fn uptime() -> String {
    std::process::Command::new("uptime")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// One row of the table: how to print a measure of one size.
type Cell = Box<dyn Fn(&Result) -> String>;

fn print_table(results: &[Result]) {
    let rows: Vec<(&str, Cell)> = vec![
        (
            "objects (orgs + members)",
            Box::new(|r| format!("{} ({} + {})", r.objects, r.organizations, r.members)),
        ),
        (
            "cold start to all Ready",
            Box::new(|r| {
                if r.finished {
                    format!("{:.1} s", r.cold_seconds)
                } else {
                    format!("{}/{} after {:.0} s", r.ready, r.objects, r.cold_seconds)
                }
            }),
        ),
        (
            "objects/s",
            Box::new(|r| format!("{:.0}", r.ready as f64 / r.cold_seconds.max(1e-9))),
        ),
        (
            "operator CPU (cold)",
            Box::new(|r| {
                format!(
                    "{:.1} s, {:.2} ms/object",
                    r.operator_cpu_cold,
                    r.operator_cpu_cold * 1000.0 / r.objects as f64
                )
            }),
        ),
        (
            "bench+emulator CPU (cold)",
            Box::new(|r| format!("{:.1} s", r.bench_cpu_cold)),
        ),
        (
            "operator peak RSS (at Ready)",
            Box::new(|r| format!("{:.1} MiB", r.peak_rss_mib)),
        ),
        (
            "operator RSS Ready / +3 s",
            Box::new(|r| format!("{:.1} / {:.1} MiB", r.ready_rss_mib, r.steady_rss_mib)),
        ),
        (
            "RSS after resync / peak",
            Box::new(|r| format!("{:.1} / {:.1} MiB", r.idle_rss_mib, r.final_peak_rss_mib)),
        ),
        (
            "status writes / object",
            Box::new(|r| format!("{:.2}", r.cold_writes.status as f64 / r.objects as f64)),
        ),
        (
            "finalizer patches / object",
            Box::new(|r| format!("{:.2}", r.cold_writes.finalizer as f64 / r.objects as f64)),
        ),
        (
            "other object writes, Events",
            Box::new(|r| format!("{}, {}", r.cold_writes.other, r.cold_writes.events)),
        ),
        (
            "changes missed by the tally",
            Box::new(|r| r.lagged.to_string()),
        ),
        (
            "resync window",
            Box::new(|r| {
                format!(
                    "{:.0} s (resync {:.0} s)",
                    r.window_seconds, r.resync_seconds
                )
            }),
        ),
        (
            "  reconciles in window",
            Box::new(|r| format!("{:.0}", r.idle_reconciles)),
        ),
        (
            "  API writes",
            Box::new(|r| r.idle_writes.api_total().to_string()),
        ),
        (
            "  DB tuples written (stats)",
            Box::new(|r| r.idle_db.tup_written.to_string()),
        ),
        (
            "  tables whose rows changed",
            Box::new(|r| r.idle_tables_changed.len().to_string()),
        ),
        (
            "  DB transactions / reconcile",
            Box::new(|r| {
                format!(
                    "{:.2}",
                    (r.idle_db.xact_commit + r.idle_db.xact_rollback) as f64
                        / r.idle_reconciles.max(1.0)
                )
            }),
        ),
        (
            "  rows read / reconcile",
            Box::new(|r| {
                format!(
                    "{:.1}",
                    (r.idle_db.tup_returned + r.idle_db.tup_fetched) as f64
                        / r.idle_reconciles.max(1.0)
                )
            }),
        ),
        (
            "  engine ops / reconcile",
            Box::new(|r| format!("{:.2}", r.idle_engine_ops / r.idle_reconciles.max(1.0))),
        ),
        (
            "  operator CPU / reconcile",
            Box::new(|r| {
                format!(
                    "{:.2} ms",
                    r.idle_operator_cpu * 1000.0 / r.idle_reconciles.max(1.0)
                )
            }),
        ),
        (
            "  mean reconcile time",
            Box::new(|r| format!("{:.2} ms", r.idle_reconcile_ms)),
        ),
    ];
    let width = rows.iter().map(|(h, _)| h.len()).max().unwrap_or(0);
    for (head, cell) in &rows {
        let cells: Vec<String> = results.iter().map(|r| format!("{:>24}", cell(r))).collect();
        println!("{head:<width$} | {}", cells.join(" | "));
    }
}

fn main() {
    let benchmarking = std::env::args().any(|a| a == "--bench");
    let quick = !benchmarking || std::env::var_os("OPBENCH_QUICK").is_some();
    let sizes: Vec<usize> = if quick {
        vec![60]
    } else {
        std::env::var("OPBENCH_SIZES")
            .unwrap_or_else(|_| "1000,10000,60000".into())
            .split(',')
            .map(|s| {
                s.trim()
                    .replace('_', "")
                    .parse()
                    .expect("OPBENCH_SIZES: numbers, e.g. 1000,10000")
            })
            .collect()
    };
    let resync = std::env::var("OPBENCH_RESYNC")
        .map(|s| parse_duration(&s))
        .unwrap_or(if quick {
            Duration::from_secs(3)
        } else {
            Duration::from_secs(30)
        });
    let timeout = Duration::from_secs(
        std::env::var("OPBENCH_TIMEOUT")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(if quick { 120 } else { 600 }),
    );
    let bin = operator_bin();
    assert!(
        std::path::Path::new(&bin).exists(),
        "no operator binary at {bin}: build it with `cargo build --release` (or set OPERATOR_BIN)"
    );
    let ticks = clock_ticks();
    let load_before = uptime();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut results = Vec::new();
    for n in sizes {
        eprintln!("operator_scale: {n} objects, resync {resync:?}, operator {bin}");
        let r = runtime.block_on(run_size(n, resync, timeout, ticks));
        let stop = !r.finished;
        results.push(r);
        if stop {
            eprintln!(
                "operator_scale: stopping: the last size did not reach Ready within {timeout:?}"
            );
            break;
        }
    }
    let load_after = uptime();
    if benchmarking {
        print_table(&results);
        println!("load: before {load_before}; after {load_after}");
        let dir = bench_dir();
        let report = json!({
            "operator": bin,
            "load_before": load_before,
            "load_after": load_after,
            "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
            "sizes": results.iter().map(Result::json).collect::<Vec<_>>(),
        });
        let path = dir.join("operator.json");
        std::fs::write(&path, serde_json::to_string_pretty(&report).expect("json"))
            .expect("write target/bench/operator.json");
        println!("wrote {}", path.display());
    }
    // Correctness holds at every size, timed or not.
    let mut failures: HashMap<usize, String> = HashMap::new();
    for r in &results {
        if !r.finished {
            failures.insert(r.objects, format!("{} of {} Ready", r.ready, r.objects));
        } else if r.idle_writes.api_total() != 0 || !r.idle_tables_changed.is_empty() {
            failures.insert(
                r.objects,
                format!(
                    "the idle resync wrote: {} API writes, rows changed in {:?}",
                    r.idle_writes.api_total(),
                    r.idle_tables_changed
                ),
            );
        }
    }
    if !benchmarking {
        assert!(failures.is_empty(), "operator smoke run: {failures:?}");
        println!(
            "operator_scale smoke run: {} objects Ready, idle resync wrote nothing",
            results[0].objects
        );
    } else if !failures.is_empty() {
        println!("not met: {failures:?}");
    }
}
