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

/// Serve until the process ends.
pub async fn serve(
    addr: SocketAddr,
    readiness: Arc<Readiness>,
    metrics: Arc<Metrics>,
) -> std::io::Result<()> {
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
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "serving /healthz, /readyz, /metrics");
    axum::serve(listener, app).await
}
