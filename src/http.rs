//! `/healthz`, `/readyz` and `/metrics`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;

use crate::engine::Engine;
use crate::metrics::Metrics;
use crate::store::{AnyStore, SchemaState, Store};

/// Ready when the watches have synced and the database answers.
pub struct Readiness {
    synced: AtomicBool,
    engine: Arc<Engine<AnyStore>>,
}

impl Readiness {
    pub fn new(engine: Arc<Engine<AnyStore>>) -> Self {
        Self {
            synced: AtomicBool::new(false),
            engine,
        }
    }

    /// Called once every reflector store has its first full list.
    pub fn watches_synced(&self) {
        self.synced.store(true, Ordering::SeqCst);
    }

    async fn check(&self) -> Result<(), String> {
        if !self.synced.load(Ordering::SeqCst) {
            return Err("watches not synced yet".into());
        }
        match self.engine.store().schema_state().await {
            Ok(SchemaState::Ready) => Ok(()),
            Ok(_) => Err("database schema not usable".into()),
            Err(e) => Err(e.to_string()),
        }
    }
}

#[derive(Clone)]
struct AppState {
    readiness: Arc<Readiness>,
    metrics: Arc<Metrics>,
}

/// Bind the address of `/healthz`, `/readyz` and `/metrics`, before anything else starts: a
/// process that cannot serve its probes must not run (a second instance on a taken port
/// would otherwise run unseen). The message names the address.
pub async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener, String> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| cannot_serve(addr, &e))
}

/// "cannot serve /healthz, /readyz and /metrics on ADDR: WHY".
pub fn cannot_serve(addr: SocketAddr, error: &std::io::Error) -> String {
    let why = match error.kind() {
        std::io::ErrorKind::AddrInUse => "address in use".to_string(),
        std::io::ErrorKind::AddrNotAvailable => "address not available on this host".to_string(),
        std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
        _ => error.to_string(),
    };
    format!("cannot serve /healthz, /readyz and /metrics on {addr}: {why}")
}

/// Serve on a bound listener until the process ends; an error ends the process too.
pub async fn serve(
    listener: tokio::net::TcpListener,
    readiness: Arc<Readiness>,
    metrics: Arc<Metrics>,
) -> Result<(), String> {
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(|State(s): State<AppState>| async move {
                match s.readiness.check().await {
                    Ok(()) => (StatusCode::OK, "ready".to_string()),
                    Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e),
                }
            }),
        )
        .route(
            "/metrics",
            get(|State(s): State<AppState>| async move {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    s.metrics.encode(),
                )
            }),
        )
        .with_state(AppState { readiness, metrics });
    tracing::info!(%addr, "serving /healthz, /readyz, /metrics");
    axum::serve(listener, app)
        .await
        .map_err(|e| cannot_serve(addr, &e))
}
