//! The Kubernetes side: one kube-runtime `Controller` per kind, a thin layer that turns a
//! resource into the engine's input and the engine's outcome into status and events.
//!
//! Reconcile is kube-runtime's `finalizer()` helper around the engine. Status is written by
//! server-side apply and skipped when nothing but timestamps would change; the controllers
//! only react to spec, finalizer, annotation and deletion changes, so their own status writes
//! never wake them again.

mod context;
mod driver;
pub mod figures;
mod index;
mod member;
mod organization;
pub mod raw;
pub mod status;
pub mod tenancy;

use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{ListParams, Patch, PatchParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::controller::{Action, Config as ControllerConfig, Controller};
use kube::runtime::events::Reporter;
use kube::runtime::reflector;
use kube::runtime::utils::{Predicate, predicates};
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};

pub use context::{Context, ControllerError, Leadership};
pub use driver::Reconciled;
use index::MemberIndex;
use raw::Raw;

use crate::crd::{FIELD_MANAGER, Organization, OrganizationMember, crds};
use crate::engine::Engine;
use crate::metrics::Metrics;
use crate::store::AnyStore;

/// Annotation that stops all writes for one object.
pub const PAUSED_ANNOTATION: &str = "litellm.dev/paused";

/// Settings of `run`.
#[derive(Clone, Debug)]
pub struct RunConfig {
    /// Namespaces to watch; empty means all namespaces.
    pub namespaces: Vec<String>,
    /// Reconciles in flight at once, per kind and namespace scope.
    pub concurrency: u16,
    /// Period of the drift-repairing resync.
    pub resync: Duration,
    /// `created_by` / `updated_by`.
    pub actor: String,
    /// The ledger's manager name of this operator.
    pub manager: String,
    /// The ledger's PostgreSQL schema.
    pub ledger_schema: String,
    /// Server-side apply the CRDs at start.
    pub install_crds: bool,
    /// Reporting instance name for events (the pod name in a cluster).
    pub instance: String,
    /// Namespaces allowed to reach organizations they do not declare (`--grant`).
    pub grants: tenancy::Grants,
}

/// What a status-only or metadata-only change looks like to the controller: nothing. Only
/// spec (generation), finalizers, annotations and the deletion timestamp trigger a reconcile.
fn trigger_predicate<K: Resource>() -> impl Predicate<K> {
    predicates::generation
        .combine(predicates::finalizers)
        .combine(predicates::annotations)
        .combine(|o: &K| Some(u64::from(o.meta().deletion_timestamp.is_some())))
}

/// Apply the operator's CRDs by server-side apply (Helm never upgrades CRDs).
pub async fn install_crds(client: &Client) -> Result<(), kube::Error> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in crds() {
        let name = crd.metadata.name.clone().unwrap_or_default();
        api.patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&crd),
        )
        .await?;
        tracing::info!(crd = %name, "applied CRD");
    }
    Ok(())
}

/// Fail fast, with the fix in the message, when the CRDs are not served.
/// With `namespaces` set the check lists in the first of them only, which is all the
/// namespaced RBAC of the chart allows.
pub async fn check_crds(client: &Client, namespaces: &[String]) -> Result<(), String> {
    let mut last = String::new();
    // Freshly installed CRDs take a moment to be served.
    for _ in 0..20 {
        let (orgs, members): (Api<Raw<Organization>>, Api<Raw<OrganizationMember>>) =
            match namespaces.first() {
                Some(ns) => (
                    Api::namespaced(client.clone(), ns),
                    Api::namespaced(client.clone(), ns),
                ),
                None => (Api::all(client.clone()), Api::all(client.clone())),
            };
        let lp = ListParams::default().limit(1);
        match (orgs.list(&lp).await, members.list(&lp).await) {
            (Ok(_), Ok(_)) => return Ok(()),
            (Err(e), _) | (_, Err(e)) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Err(format!(
        "the litellm.dev CRDs are not served ({last}): install them with `kubectl apply --server-side -f crds/` or run with --install-crds"
    ))
}

/// Run both controllers until SIGTERM / Ctrl-C; in-flight reconciles finish first.
pub async fn run(
    client: Client,
    engine: Arc<Engine<AnyStore>>,
    config: RunConfig,
    metrics: Arc<Metrics>,
    ready: Arc<crate::http::Readiness>,
    leadership: Leadership,
) -> anyhow::Result<()> {
    let reporter = Reporter {
        controller: FIELD_MANAGER.to_string(),
        instance: Some(config.instance.clone()),
    };
    let scopes: Vec<Option<String>> = if config.namespaces.is_empty() {
        vec![None]
    } else {
        config.namespaces.iter().cloned().map(Some).collect()
    };
    // One watcher of SIGTERM / Ctrl-C for every controller of every scope (kube-runtime's
    // `shutdown_on_signal` would install one per controller, each announcing itself).
    let shutdown = shutdown_signal().boxed().shared();
    tokio::spawn(leadership.clone().report_to(metrics.clone()));
    let mut runs = Vec::new();
    for scope in scopes {
        let (org_api, member_api): (Api<Raw<Organization>>, Api<Raw<OrganizationMember>>) =
            match &scope {
                Some(ns) => (
                    Api::namespaced(client.clone(), ns),
                    Api::namespaced(client.clone(), ns),
                ),
                None => (Api::all(client.clone()), Api::all(client.clone())),
            };
        let wc = watcher::Config::default();
        let controller_config = ControllerConfig::default().concurrency(config.concurrency);

        // Organizations: one watch and one cache, shared by the organization controller and
        // the member lookups. The organization controller is triggered by their own
        // spec/finalizer/annotation/deletion changes. Members are woken from the same stream,
        // after the cache has the change (so a woken member never reads the organization as it
        // was), and only when what they read of it changes: its id, its readiness, its
        // deletion (not its spend, nor any other status write).
        let (org_reader, org_writer) = reflector::store::<Raw<Organization>>();
        let (wake_tx, wake_rx) = futures::channel::mpsc::unbounded::<Raw<Organization>>();
        let mut seen = OrganizationViews::default();
        let org_trigger = watcher(org_api.clone(), wc.clone())
            .default_backoff()
            .modify(slim)
            .reflect(org_writer)
            .inspect(move |event| {
                if let Ok(event) = event {
                    for org in seen.changed(event) {
                        let _ = wake_tx.unbounded_send(org);
                    }
                }
            })
            .applied_objects()
            .predicate_filter(trigger_predicate(), Default::default());
        let org_changes = wake_rx.map(Ok::<_, watcher::Error>);

        let index = MemberIndex::default();
        let follow = index.clone();
        let (member_reader, member_writer) = reflector::store::<Raw<OrganizationMember>>();
        let member_trigger = watcher(member_api.clone(), wc.clone())
            .default_backoff()
            .modify(slim)
            .inspect(move |event| {
                if let Ok(event) = event {
                    follow.observe(event);
                }
            })
            .reflect(member_writer)
            .applied_objects()
            .predicate_filter(trigger_predicate(), Default::default());

        let ctx = Arc::new(
            Context::new(
                client.clone(),
                engine.clone(),
                reporter.clone(),
                config.resync,
                metrics.clone(),
                org_reader.clone(),
                leadership.clone(),
            )
            .with_grants(config.grants.clone()),
        );

        let member_controller = Controller::for_stream(member_trigger, member_reader.clone())
            .with_config(controller_config.clone())
            .watches_stream(org_changes, move |org: Raw<Organization>| {
                index.members_of(&org.namespace().unwrap_or_default(), &org.name_any())
            })
            .reconcile_all_on(leadership.elected("OrganizationMember"))
            .graceful_shutdown_on(shutdown.clone())
            .run(
                driver::reconcile::<OrganizationMember>,
                driver::error_policy::<OrganizationMember>,
                ctx.clone(),
            )
            .for_each(|result| async move {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "member reconcile not completed");
                }
            });

        let org_controller = Controller::for_stream(org_trigger, org_reader.clone())
            .with_config(controller_config)
            .reconcile_all_on(leadership.elected("Organization"))
            .graceful_shutdown_on(shutdown.clone())
            .run(
                driver::reconcile::<Organization>,
                driver::error_policy::<Organization>,
                ctx.clone(),
            )
            .for_each(|result| async move {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "organization reconcile not completed");
                }
            });

        let readiness = ready.clone();
        let stores_ready = async move {
            let _ = org_reader.wait_until_ready().await;
            let _ = member_reader.wait_until_ready().await;
            readiness.watches_synced();
        };
        runs.push(futures::future::join3(
            org_controller,
            member_controller,
            stores_ready,
        ));
    }
    futures::future::join_all(runs).await;
    tracing::info!("controllers stopped");
    Ok(())
}

/// Resolves on the first SIGTERM or Ctrl-C, once for the whole process: the controllers then
/// start no new reconcile and let those in flight finish. A second signal exits at once.
async fn shutdown_signal() {
    termination().await;
    tracing::info!(
        "shutdown requested: in-flight reconciles finish first (a second SIGTERM or Ctrl-C exits at once)"
    );
    tokio::spawn(async {
        termination().await;
        tracing::warn!("second shutdown signal: exiting without waiting for in-flight reconciles");
        std::process::exit(130);
    });
}

/// The next SIGTERM or SIGINT (Ctrl-C).
async fn termination() {
    let sigterm = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                term.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch SIGTERM: only Ctrl-C stops the operator gracefully");
                futures::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = sigterm => {}
    }
}

/// What a member reads of its organization (see `member::resolve_organization`), hashed.
fn member_view(org: &Raw<Organization>) -> u64 {
    use std::hash::{Hash, Hasher};
    let status = org.status_as::<crate::crd::OrganizationStatus>();
    let ready = status.as_ref().is_some_and(|s| {
        status::is_ready(
            &s.conditions,
            s.observed_generation,
            org.metadata.generation,
        )
    });
    let mut h = std::collections::hash_map::DefaultHasher::new();
    status.and_then(|s| s.organization_id).hash(&mut h);
    ready.hash(&mut h);
    org.metadata.deletion_timestamp.is_some().hash(&mut h);
    h.finish()
}

/// The last member view of every organization, to wake members only on a change of it.
#[derive(Default)]
struct OrganizationViews(std::collections::HashMap<(String, String), u64>);

impl OrganizationViews {
    /// The organizations whose members this watch event should wake: those whose member view
    /// changed, and those deleted.
    fn changed(&mut self, event: &watcher::Event<Raw<Organization>>) -> Vec<Raw<Organization>> {
        let key = |o: &Raw<Organization>| (o.namespace().unwrap_or_default(), o.name_any());
        match event {
            watcher::Event::Apply(org) | watcher::Event::InitApply(org) => {
                let view = member_view(org);
                (self.0.insert(key(org), view) != Some(view))
                    .then(|| org.clone())
                    .into_iter()
                    .collect()
            }
            watcher::Event::Delete(org) => {
                self.0.remove(&key(org));
                vec![org.clone()]
            }
            watcher::Event::Init | watcher::Event::InitDone => Vec::new(),
        }
    }
}

/// What the caches keep of an object: not its managedFields, labels nor kubectl's copy of the
/// last applied manifest, which together are most of its metadata and which no reconcile
/// reads. (Annotations stay: one of them pauses an object, and any change to them asks for a
/// reconcile, as `kubectl annotate` users expect.)
fn slim<K: Resource>(obj: &mut K) {
    let meta = obj.meta_mut();
    meta.managed_fields = None;
    meta.labels = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.remove("kubectl.kubernetes.io/last-applied-configuration");
    }
}

/// True when the object carries `litellm.dev/paused: "true"`.
pub fn is_paused<K: Resource>(obj: &K) -> bool {
    obj.meta()
        .annotations
        .as_ref()
        .and_then(|a| a.get(PAUSED_ANNOTATION))
        .is_some_and(|v| v == "true")
}

/// The periodic resync, spread by ±10% so objects created together do not resync together.
pub fn resync_action(resync: Duration) -> Action {
    let factor = 0.9 + fastrand::f64() * 0.2;
    Action::requeue(resync.mul_f64(factor))
}
