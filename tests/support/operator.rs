//! What the tests that run the operator binary share: the operator as a child process
//! ([`Operator`], started with [`Options`]), a minimal HTTP GET for its endpoints, a TCP proxy
//! in front of PostgreSQL that can be cut or slowed down ([`DbProxy`]), and the polls on the
//! objects it reconciles.
//!
//! The operator takes a kubeconfig path: the chart's ServiceAccount on a real control plane
//! (`support::cluster`), or the API emulator's.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::Api;
use litellm_org_operator::crd::{Organization, OrganizationMember};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};

/// The operator binary of this build.
pub const BIN: &str = env!("CARGO_BIN_EXE_litellm-org-operator");

/// A free port on 127.0.0.1 (bound, read, released).
pub async fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    l.local_addr().expect("addr").port()
}

/// A minimal HTTP/1.0 GET (no client library needed for the operator's endpoints): the status
/// code and the body.
pub async fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(addr).await?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes())
        .await?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).await?;
    let code = buf
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = buf
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((code, body))
}

/// How one operator process is started: `run --http-addr <a free port>` and [`Options::args`].
#[derive(Clone, Debug)]
pub struct Options {
    /// `DATABASE_URL` of the process; `None` removes it from the environment (the arguments
    /// then name the database).
    pub database_url: Option<String>,
    /// Arguments after `run --http-addr <addr>`.
    pub args: Vec<String>,
    /// `--resync-interval` added when the arguments do not name one (`None`: the binary's
    /// default).
    pub resync_interval: Option<String>,
    pub rust_log: String,
    /// `POD_NAME` (the identity in a Lease); `None` leaves it unset.
    pub pod_name: Option<String>,
    /// Keep the log (stderr) for [`Operator::log_lines`], passing it through to the test's
    /// stderr; otherwise stderr is simply inherited.
    pub capture_log: bool,
}

impl Default for Options {
    /// The tests' defaults: a 3 s resync, info logs of the operator kept, pod
    /// `litellm-org-operator-0`, no `DATABASE_URL`.
    fn default() -> Self {
        Self {
            database_url: None,
            args: Vec::new(),
            resync_interval: Some("3s".into()),
            rust_log: "warn,litellm_org_operator=info".into(),
            pod_name: Some("litellm-org-operator-0".into()),
            capture_log: true,
        }
    }
}

impl Options {
    /// The defaults, with `DATABASE_URL` set to `database_url`.
    pub fn new(database_url: &str) -> Self {
        Self {
            database_url: Some(database_url.to_string()),
            ..Self::default()
        }
    }

    pub fn args<S: AsRef<str>>(mut self, args: &[S]) -> Self {
        self.args
            .extend(args.iter().map(|a| a.as_ref().to_string()));
        self
    }

    pub fn pod_name(mut self, pod: Option<&str>) -> Self {
        self.pod_name = pod.map(str::to_string);
        self
    }

    pub fn rust_log(mut self, filter: &str) -> Self {
        self.rust_log = filter.into();
        self
    }

    pub fn resync_interval(mut self, interval: Option<&str>) -> Self {
        self.resync_interval = interval.map(str::to_string);
        self
    }

    /// Pass stderr through without keeping it.
    pub fn inherit_log(mut self) -> Self {
        self.capture_log = false;
        self
    }
}

/// The operator binary as a child process; killed (SIGKILL) when dropped.
pub struct Operator {
    child: tokio::process::Child,
    http: SocketAddr,
    log: Option<Arc<Mutex<Vec<String>>>>,
    /// The task that reads the log; it ends when the process closes stderr.
    reader: Option<tokio::task::JoinHandle<()>>,
}

impl Operator {
    /// Started with [`Options::new`] and `extra` arguments; returns once /readyz answers 200.
    pub async fn start(kubeconfig: &Path, database_url: &str, extra: &[&str]) -> Self {
        Self::start_with(kubeconfig, Options::new(database_url).args(extra)).await
    }

    /// Started with `options`; returns once /readyz answers 200.
    pub async fn start_with(kubeconfig: &Path, options: Options) -> Self {
        let http: SocketAddr = format!("127.0.0.1:{}", free_port().await)
            .parse()
            .expect("addr");
        let mut args = vec!["run".to_string(), "--http-addr".into(), http.to_string()];
        if let Some(interval) = &options.resync_interval
            && !options.args.iter().any(|a| a == "--resync-interval")
        {
            args.extend(["--resync-interval".to_string(), interval.clone()]);
        }
        args.extend(options.args.iter().cloned());
        let mut cmd = tokio::process::Command::new(BIN);
        cmd.args(&args)
            .env("KUBECONFIG", kubeconfig)
            .env("RUST_LOG", &options.rust_log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .kill_on_drop(true);
        match &options.database_url {
            Some(url) => cmd.env("DATABASE_URL", url),
            None => cmd.env_remove("DATABASE_URL"),
        };
        if let Some(pod) = &options.pod_name {
            cmd.env("POD_NAME", pod);
        }
        cmd.stderr(if options.capture_log {
            Stdio::piped()
        } else {
            Stdio::inherit()
        });
        let mut child = cmd.spawn().expect("start the operator");
        let (log, reader) = match child.stderr.take() {
            Some(stderr) => {
                let log = Arc::new(Mutex::new(Vec::new()));
                let sink = log.clone();
                let reader = tokio::spawn(async move {
                    let mut lines = tokio::io::BufReader::new(stderr).lines();
                    while let Ok(Some(line)) = lines.next_line().await {
                        eprintln!("{line}");
                        sink.lock().expect("log").push(line);
                    }
                });
                (Some(log), Some(reader))
            }
            None => (None, None),
        };
        let mut op = Self {
            child,
            http,
            log,
            reader,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !matches!(http_get(op.http, "/readyz").await, Ok((200, _))) {
            if let Ok(Some(status)) = op.child.try_wait() {
                panic!("the operator exited before it was ready ({status}; {args:?})");
            }
            assert!(
                Instant::now() < deadline,
                "the operator never became ready ({args:?})"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        op
    }

    /// The address of /healthz, /readyz and /metrics.
    pub fn http(&self) -> SocketAddr {
        self.http
    }

    /// Every line the operator logged so far (the log must be captured).
    pub fn log_lines(&self) -> Vec<String> {
        self.log
            .as_ref()
            .expect("the operator's log is not captured")
            .lock()
            .expect("log")
            .clone()
    }

    /// Still the same live process (no crash, no restart)?
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Every sample of /metrics, by series (name and labels).
    pub async fn metrics(&self) -> BTreeMap<String, f64> {
        let (code, body) = http_get(self.http, "/metrics")
            .await
            .expect("scrape /metrics");
        assert_eq!(code, 200);
        body.lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (k, v) = l.rsplit_once(' ')?;
                Some((k.to_string(), v.parse().ok()?))
            })
            .collect()
    }

    /// The sum of every sample of `metric` whose series contains `label`.
    pub async fn metric(&self, metric: &str, label: &str) -> f64 {
        self.metrics()
            .await
            .iter()
            .filter(|(k, _)| k.contains(metric) && k.contains(label))
            .map(|(_, v)| v)
            .sum()
    }

    /// How much the series for which `series` holds grew, summed, over `secs` seconds.
    pub async fn growth_over(&self, secs: u64, series: impl Fn(&str) -> bool) -> f64 {
        let sum = |m: BTreeMap<String, f64>| -> f64 {
            m.iter().filter(|(k, _)| series(k)).map(|(_, v)| v).sum()
        };
        let before = sum(self.metrics().await);
        tokio::time::sleep(Duration::from_secs(secs)).await;
        sum(self.metrics().await) - before
    }

    /// SIGKILL, and wait for the process to be gone.
    pub async fn kill(mut self) {
        self.child.kill().await.ok();
    }

    /// SIGTERM, then the exit status and every line logged, the last ones included (the log
    /// must be captured).
    pub async fn terminate_with_log(mut self) -> (ExitStatus, Vec<String>) {
        let log = self
            .log
            .clone()
            .expect("the operator's log is not captured");
        let reader = self.reader.take();
        let status = self.terminate().await;
        if let Some(reader) = reader {
            tokio::time::timeout(Duration::from_secs(10), reader)
                .await
                .expect("the log ends when the process does")
                .expect("log reader");
        }
        let lines = log.lock().expect("log").clone();
        (status, lines)
    }

    /// SIGTERM, then the exit status (in-flight reconciles finish first).
    pub async fn terminate(mut self) -> ExitStatus {
        let pid = self.child.id().expect("running").to_string();
        let sent = tokio::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .await
            .expect("kill -TERM");
        assert!(sent.success());
        tokio::time::timeout(Duration::from_secs(20), self.child.wait())
            .await
            .expect("the operator did not stop within 20 s of SIGTERM")
            .expect("exit status")
    }
}

/// A TCP proxy in front of the shared PostgreSQL server, to take the database away from the
/// operator ([`DbProxy::down`]) or slow it down ([`DbProxy::set_delay`]) without touching the
/// server other tests share.
pub struct DbProxy {
    port: u16,
    up: Arc<AtomicBool>,
    /// Bumped by each cut: every open connection ends.
    generation: tokio::sync::watch::Sender<u64>,
    /// Latency of each chunk, in microseconds.
    delay: Arc<AtomicU64>,
}

impl DbProxy {
    /// A proxy on a free port of 127.0.0.1 to the server of `DATABASE_TEST_URL`.
    pub async fn start() -> Self {
        let admin = url::Url::parse(&super::admin_url()).expect("admin url");
        let upstream = format!(
            "{}:{}",
            admin.host_str().unwrap_or("127.0.0.1"),
            admin.port().unwrap_or(5432)
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let port = listener.local_addr().expect("addr").port();
        let up = Arc::new(AtomicBool::new(true));
        let delay = Arc::new(AtomicU64::new(0));
        let (generation, _) = tokio::sync::watch::channel(0u64);
        let flag = up.clone();
        let cuts = generation.clone();
        let latency = delay.clone();
        tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                if !flag.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let mut cut = cuts.subscribe();
                let latency = latency.clone();
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    let Ok(outbound) = TcpStream::connect(&upstream).await else {
                        return;
                    };
                    inbound.set_nodelay(true).ok();
                    outbound.set_nodelay(true).ok();
                    let (client_read, client_write) = inbound.into_split();
                    let (server_read, server_write) = outbound.into_split();
                    tokio::select! {
                        _ = async {
                            tokio::join!(
                                forward(client_read, server_write, latency.clone()),
                                forward(server_read, client_write, latency),
                            )
                        } => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        Self {
            port,
            up,
            generation,
            delay,
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `database_url` with the proxy in front of its server.
    pub fn url(&self, database_url: &str) -> String {
        let mut u = url::Url::parse(database_url).expect("database url");
        u.set_host(Some("127.0.0.1")).expect("host");
        u.set_port(Some(self.port)).expect("port");
        u.to_string()
    }

    /// Cut every open connection and refuse new ones.
    pub fn down(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.generation.send_modify(|g| *g += 1);
    }

    /// Accept connections again.
    pub fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }

    /// Hold each chunk read from then on, in either direction and on open connections too,
    /// for `delay` before it is written on (zero: forward at once).
    pub fn set_delay(&self, delay: Duration) {
        self.delay.store(delay.as_micros() as u64, Ordering::SeqCst);
    }
}

/// One direction of a proxied connection: each chunk read is written on once the latency in
/// force when it was read has passed, in order (the reader goes on reading meanwhile, so the
/// latency does not cut the throughput). The end of the input shuts the output down.
async fn forward(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, delay: Arc<AtomicU64>) {
    let (chunks, mut due) = tokio::sync::mpsc::channel::<(tokio::time::Instant, Vec<u8>)>(64);
    let read = async move {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match from.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let at =
                tokio::time::Instant::now() + Duration::from_micros(delay.load(Ordering::SeqCst));
            if chunks.send((at, buf[..n].to_vec())).await.is_err() {
                break;
            }
        }
    };
    let write = async move {
        while let Some((at, chunk)) = due.recv().await {
            tokio::time::sleep_until(at).await;
            if to.write_all(&chunk).await.is_err() {
                return;
            }
        }
        to.shutdown().await.ok();
    };
    tokio::join!(read, write);
}

// ---------------------------------------------------------------------------------------------
// Polls on the objects the operator reconciles.

fn ready(conditions: &[Condition], observed: Option<i64>, generation: Option<i64>) -> bool {
    observed == generation
        && conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
}

/// Ready for the object's current generation.
pub fn org_ready(o: &Organization) -> bool {
    o.status
        .as_ref()
        .is_some_and(|s| ready(&s.conditions, s.observed_generation, o.metadata.generation))
}

/// Ready for the object's current generation.
pub fn member_ready(m: &OrganizationMember) -> bool {
    m.status
        .as_ref()
        .is_some_and(|s| ready(&s.conditions, s.observed_generation, m.metadata.generation))
}

/// Poll `probe` until it returns `Ok`, or fail after `secs` with `what` and the last `Err`.
pub async fn poll<T, F, Fut>(secs: u64, what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        match probe().await {
            Ok(value) => return value,
            Err(last) => assert!(
                Instant::now() < deadline,
                "{what}: not done after {secs} s: {last}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Poll until `check` holds for the object, or fail after `secs`.
pub async fn wait_for<K, F>(api: &Api<K>, name: &str, secs: u64, what: &str, check: F) -> K
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

/// Every events.k8s.io/v1 Event in `ns` about the object named `name`.
pub async fn events_about(
    client: &kube::Client,
    ns: &str,
    name: &str,
) -> Vec<k8s_openapi::api::events::v1::Event> {
    let api: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), ns);
    api.list(&Default::default())
        .await
        .expect("list events")
        .items
        .into_iter()
        .filter(|e| {
            e.regarding
                .as_ref()
                .and_then(|r| r.name.as_deref())
                .is_some_and(|n| n == name)
        })
        .collect()
}

/// Poll until an event about `name` with this type and reason exists; returns it.
pub async fn wait_event(
    client: &kube::Client,
    ns: &str,
    name: &str,
    type_: &str,
    reason: &str,
) -> k8s_openapi::api::events::v1::Event {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let events = events_about(client, ns, name).await;
        if let Some(e) = events
            .iter()
            .find(|e| e.type_.as_deref() == Some(type_) && e.reason.as_deref() == Some(reason))
        {
            return e.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no {type_} {reason} event about {name}; events: {events:#?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}
