//! State shared by the reconcilers: clients, the engine, the event recorder, per-object
//! failure counts for backoff, metrics.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event as EventsV1Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::finalizer;
use kube::runtime::reflector::Store;
use kube::{Client, Resource};
use serde::de::DeserializeOwned;

use super::raw::Raw;
use crate::crd::{API_VERSION, FIELD_MANAGER, Organization};
use crate::engine::Engine;
use crate::error::{EngineError, StoreError};
use crate::metrics::Metrics;
use crate::store::AnyStore;

/// Why a reconcile did not complete; the error policy turns it into a backoff.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("{0}")]
    Finalizer(Box<finalizer::Error<ControllerError>>),
    /// A delete that waits for the user (protection, teams or keys); status says why.
    #[error("the delete waits; see the object's status")]
    DeleteWaits,
}

impl ControllerError {
    /// True when the finalizer patch was refused because the cached object was older than
    /// the stored one: its `test` of the finalizer list failed (422: the watch had not yet
    /// brought this operator's own earlier finalizer write), or the object is already gone
    /// (404). Common at a cold start of many objects; the retry reads the newer object.
    pub fn is_stale_cache(&self) -> bool {
        let Self::Finalizer(inner) = self else {
            return false;
        };
        match inner.as_ref() {
            finalizer::Error::AddFinalizer(kube::Error::Api(e))
            | finalizer::Error::RemoveFinalizer(kube::Error::Api(e)) => {
                e.code == 422 || e.code == 404
            }
            _ => false,
        }
    }

    /// Label for the errors metric.
    pub fn class(&self) -> &'static str {
        if self.is_stale_cache() {
            return "StaleCache";
        }
        match self {
            Self::Engine(e) => e.reason().as_str(),
            Self::Kube(_) => "KubernetesApi",
            Self::DeleteWaits => "DeleteWaits",
            Self::Finalizer(inner) => match inner.as_ref() {
                finalizer::Error::ApplyFailed(e) | finalizer::Error::CleanupFailed(e) => e.class(),
                _ => "KubernetesApi",
            },
        }
    }
}

/// Whether this replica may write. Without leader election every replica is the leader.
#[derive(Clone, Default)]
pub struct Leadership {
    lease: Option<tokio::sync::watch::Receiver<bool>>,
}

impl Leadership {
    /// Follow a lease: `true` on the channel while this replica holds it.
    pub fn from_lease(lease: tokio::sync::watch::Receiver<bool>) -> Self {
        Self { lease: Some(lease) }
    }

    /// Checked before every write: a lost lease stops writes at once.
    pub fn is_leader(&self) -> bool {
        self.lease.as_ref().is_none_or(|rx| *rx.borrow())
    }

    /// Keep the `leader` gauge equal to [`Leadership::is_leader`] until the lease's channel
    /// closes (then 0: this replica no longer knows it holds the lease).
    pub async fn report_to(self, metrics: Arc<Metrics>) {
        let Some(mut rx) = self.lease else {
            metrics.set_leader(true);
            return;
        };
        loop {
            metrics.set_leader(*rx.borrow_and_update());
            if rx.changed().await.is_err() {
                metrics.set_leader(false);
                return;
            }
        }
    }

    /// Fires each time this replica becomes the leader (to reconcile everything then).
    pub fn elected(&self, kind: &'static str) -> impl futures::Stream<Item = ()> + Send + 'static {
        let rx = self.lease.clone();
        futures::stream::unfold(rx, move |rx| async move {
            let mut rx = rx?;
            loop {
                if rx.changed().await.is_err() {
                    return None;
                }
                if *rx.borrow_and_update() {
                    tracing::info!(kind, "elected leader: reconciling every object");
                    return Some(((), Some(rx)));
                }
            }
        })
    }
}

/// Shared by both controllers of one namespace scope.
pub struct Context {
    pub client: Client,
    pub engine: Arc<Engine<AnyStore>>,
    pub recorder: Recorder,
    /// Who publishes events, for one-off recorders.
    pub reporter: Reporter,
    pub resync: Duration,
    pub metrics: Arc<Metrics>,
    /// Organizations in scope, for member lookups.
    pub organizations: Store<Raw<Organization>>,
    /// Only the leader writes.
    pub leadership: Leadership,
    /// Which namespaces may reach which organizations by id beyond their own (`--grant`).
    pub grants: super::tenancy::Grants,
    failures: Mutex<HashMap<String, u32>>,
    /// When each object without a status first waited for its organization.
    quiet_waits: Mutex<HashMap<String, std::time::Instant>>,
    /// Status properties the installed CRD does not declare (see [`Context::apply_status`]).
    undeclared_status_fields: Mutex<std::collections::BTreeSet<String>>,
    /// The status this process last wrote for each object (see [`WrittenStatuses`]).
    pub written: WrittenStatuses,
}

/// The status this process last wrote for each object, to tell a cached status that is
/// current from one the watch has not caught up with.
///
/// A reconcile skips the status write when the status it would write is the one the cache
/// holds. Right after a write, the cache may still hold the status from before it (the watch
/// event of the write has not arrived): a reconcile then that wants the older status back
/// (an organization turned Ready between two reconciles of its member) would compare against
/// the stale copy, skip, and leave the newer, wrong status in place until the next resync.
/// So a write is skipped only when the cache holds the status to write *and* it is the one
/// this process wrote last (or this process never wrote one). Kept per object as two hashes.
#[derive(Default)]
pub struct WrittenStatuses(Mutex<HashMap<u64, u64>>);

fn hash_of(value: &impl std::hash::Hash) -> u64 {
    use std::hash::Hasher;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    value.hash(&mut h);
    h.finish()
}

impl WrittenStatuses {
    /// True when writing `next` for `key` would change nothing: the cache holds it and no
    /// different status was written by this process since the cache last saw one.
    pub fn unchanged(
        &self,
        key: &str,
        cached: Option<&serde_json::Value>,
        next: &serde_json::Value,
    ) -> bool {
        if cached != Some(next) {
            return false;
        }
        let Ok(written) = self.0.lock() else {
            return false;
        };
        written
            .get(&hash_of(&key))
            .is_none_or(|w| *w == hash_of(&next.to_string()))
    }

    /// `next` was written for `key`.
    pub fn record(&self, key: &str, next: &serde_json::Value) {
        if let Ok(mut written) = self.0.lock() {
            written.insert(hash_of(&key), hash_of(&next.to_string()));
        }
    }

    /// The object `key` is gone.
    pub fn forget(&self, key: &str) {
        if let Ok(mut written) = self.0.lock() {
            written.remove(&hash_of(&key));
        }
    }
}

/// How long a member with no status yet may wait for its organization before the wait is
/// written to its status.
pub const QUIET_WAIT: Duration = Duration::from_secs(30);

/// Backoff bounds for transient failures.
const BACKOFF_BASE: Duration = Duration::from_secs(2);
const BACKOFF_CAP: Duration = Duration::from_secs(300);

impl Context {
    pub fn new(
        client: Client,
        engine: Arc<Engine<AnyStore>>,
        reporter: Reporter,
        resync: Duration,
        metrics: Arc<Metrics>,
        organizations: Store<Raw<Organization>>,
        leadership: Leadership,
    ) -> Self {
        Self {
            recorder: Recorder::new(client.clone(), reporter.clone()),
            client,
            engine,
            reporter,
            resync,
            metrics,
            organizations,
            leadership,
            grants: super::tenancy::Grants::default(),
            failures: Mutex::new(HashMap::new()),
            quiet_waits: Mutex::new(HashMap::new()),
            undeclared_status_fields: Mutex::default(),
            written: WrittenStatuses::default(),
        }
    }

    /// With these grants (`--grant`); none by default: each namespace reaches only what it
    /// declares.
    pub fn with_grants(mut self, grants: super::tenancy::Grants) -> Self {
        self.grants = grants;
        self
    }

    /// Record a success: the next failure starts the backoff from the bottom again.
    pub fn reset_failures(&self, key: &str) {
        if let Ok(mut f) = self.failures.lock() {
            f.remove(key);
        }
    }

    /// The object `key` no longer waits for its organization (synced, or deleted).
    pub fn done_waiting(&self, key: &str) {
        if let Ok(mut w) = self.quiet_waits.lock() {
            w.remove(key);
        }
    }

    /// True while the object `key` has waited for its organization for less than
    /// [`QUIET_WAIT`] since its first wait (which this call records).
    pub fn quiet_wait(&self, key: &str) -> bool {
        match self.quiet_waits.lock() {
            Ok(mut w) => {
                w.entry(key.to_string())
                    .or_insert_with(std::time::Instant::now)
                    .elapsed()
                    < QUIET_WAIT
            }
            Err(_) => false,
        }
    }

    /// Record a failure and return the requeue: exponential from 2 s, capped at 5 min, with
    /// ±20% jitter so a database outage does not bring every object back at once.
    pub fn backoff(&self, key: &str) -> Action {
        let n = match self.failures.lock() {
            Ok(mut f) => {
                let n = f.entry(key.to_string()).or_insert(0);
                *n = n.saturating_add(1);
                *n
            }
            Err(_) => 1,
        };
        Action::requeue(backoff_delay(n, fastrand::f64()))
    }

    /// Write `status` by server-side apply under the operator's field manager. A release
    /// may write a status property the installed CRD lacks (Helm never upgrades CRDs); the
    /// API server then refuses the whole apply, so that property is dropped from this and
    /// every later write, once, with a warning saying to upgrade the CRDs.
    pub async fn apply_status<K>(
        &self,
        api: &kube::Api<K>,
        name: &str,
        kind: &str,
        mut status: serde_json::Value,
    ) -> Result<(), kube::Error>
    where
        K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
    {
        let undeclared: Vec<String> = self
            .undeclared_status_fields
            .lock()
            .map(|u| u.iter().cloned().collect())
            .unwrap_or_default();
        if let Some(map) = status.as_object_mut() {
            for field in &undeclared {
                map.remove(field);
            }
        }
        loop {
            let body = serde_json::json!({
                "apiVersion": API_VERSION,
                "kind": kind,
                "status": status,
            });
            let result = api
                .patch_status(
                    name,
                    &kube::api::PatchParams::apply(FIELD_MANAGER).force(),
                    &kube::api::Patch::Apply(&body),
                )
                .await;
            let field = match &result {
                Err(kube::Error::Api(e)) => undeclared_status_field(&e.message),
                _ => None,
            };
            let dropped = field.as_ref().is_some_and(|f| {
                status
                    .as_object_mut()
                    .is_some_and(|m| m.remove(f).is_some())
            });
            match (field, dropped) {
                (Some(field), true) => {
                    // Reconciles running at once may each be refused before the first one
                    // records the field: only the one that records it warns.
                    let first = self
                        .undeclared_status_fields
                        .lock()
                        .is_ok_and(|mut u| u.insert(field.clone()));
                    if first {
                        tracing::warn!(
                            kind,
                            field = %format!("status.{field}"),
                            "the installed CRD does not declare this status field: it is not written; upgrade the CRDs (kubectl apply --server-side -f crds/)"
                        );
                    }
                }
                _ => return result.map(|_| ()),
            }
        }
    }

    /// Publish an event, and log it: one line with the object's kind, namespace and name
    /// as fields (WARN for a Warning, INFO otherwise), so the log tells every change the
    /// operator made and every problem it reported, as the events do. Failures to publish are
    /// logged, never fatal. The note is cut to the 1024 bytes kube-apiserver accepts.
    pub async fn event<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        warning: bool,
        reason: &str,
        action: &str,
        note: String,
    ) {
        let kind = K::kind(&());
        let namespace = obj.meta().namespace.as_deref().unwrap_or_default();
        let name = obj.meta().name.as_deref().unwrap_or_default();
        if warning {
            tracing::warn!(%kind, namespace, name, reason, "{note}");
        } else {
            tracing::info!(%kind, namespace, name, reason, "{note}");
        }
        let event = Event {
            type_: if warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: reason.to_string(),
            note: Some(truncate_note(note)),
            action: action.to_string(),
            secondary: None,
        };
        let reference = obj.object_ref(&());
        // kube-runtime names an event `<object name>.<16 hex digits>`: past 236 characters
        // that breaks the 253-character limit on names, so such objects get events named here.
        let long_name = reference
            .name
            .as_ref()
            .is_some_and(|n| n.len() > MAX_NAME_FOR_RECORDER);
        // Warnings repeat and are aggregated into series by the shared recorder, which keeps
        // each one for a few minutes. One-off notices (created, updated, deleted, drift) go
        // through a recorder without that cache, so a cold start of tens of thousands of
        // objects does not hold tens of thousands of events in memory.
        let published = if long_name {
            self.publish_with_short_name(&event, reference).await
        } else if warning {
            self.recorder.publish(&event, &reference).await
        } else {
            Recorder::new(self.client.clone(), self.reporter.clone())
                .publish(&event, &reference)
                .await
        };
        if let Err(e) = published {
            tracing::warn!(%kind, namespace, name, error = %e, reason, "could not publish event");
        }
    }

    /// An `events.k8s.io/v1` event whose name fits in 253 characters whatever the object's.
    async fn publish_with_short_name(
        &self,
        event: &Event,
        reference: ObjectReference,
    ) -> Result<(), kube::Error> {
        let name = reference.name.clone().unwrap_or_default();
        let prefix: String = name.chars().take(MAX_NAME_FOR_RECORDER).collect();
        let prefix = prefix.trim_end_matches(['.', '-']);
        let now = k8s_openapi::jiff::Timestamp::now();
        let namespace = reference.namespace.clone().unwrap_or_default();
        let body = EventsV1Event {
            metadata: ObjectMeta {
                name: Some(format!("{prefix}.{:x}", now.as_nanosecond())),
                namespace: Some(namespace.clone()),
                ..Default::default()
            },
            action: Some(event.action.clone()),
            reason: Some(event.reason.clone()),
            note: event.note.clone(),
            type_: Some(match event.type_ {
                EventType::Normal => "Normal".into(),
                EventType::Warning => "Warning".into(),
            }),
            event_time: Some(MicroTime(now)),
            regarding: Some(reference),
            reporting_controller: Some(self.reporter.controller.clone()),
            reporting_instance: Some(
                self.reporter
                    .instance
                    .clone()
                    .unwrap_or_else(|| self.reporter.controller.clone()),
            ),
            ..Default::default()
        };
        let api: kube::Api<EventsV1Event> = kube::Api::namespaced(self.client.clone(), &namespace);
        api.create(&Default::default(), &body).await?;
        Ok(())
    }
}

/// Longest object name kube-runtime's recorder can name an event after (253 − 17).
const MAX_NAME_FOR_RECORDER: usize = 236;

/// The longest event note kube-apiserver accepts, in bytes.
const MAX_NOTE_BYTES: usize = 1024;

/// Cut a note to [`MAX_NOTE_BYTES`] on a character boundary, marking the cut.
fn truncate_note(mut note: String) -> String {
    if note.len() <= MAX_NOTE_BYTES {
        return note;
    }
    let mut end = MAX_NOTE_BYTES - '…'.len_utf8();
    while !note.is_char_boundary(end) {
        end -= 1;
    }
    note.truncate(end);
    note.push('…');
    note
}

/// The delay after `failures` consecutive failures; `jitter` in `[0, 1)`.
pub fn backoff_delay(failures: u32, jitter: f64) -> Duration {
    let exp = BACKOFF_BASE.saturating_mul(2u32.saturating_pow(failures.saturating_sub(1).min(16)));
    let capped = exp.min(BACKOFF_CAP);
    capped.mul_f64(0.8 + 0.4 * jitter.clamp(0.0, 1.0))
}

/// Text safe to put in a condition or event: database errors are summarised (no SQL, no
/// connection details); the full error goes to the operator's log only.
pub fn public_message(err: &EngineError) -> String {
    match err {
        EngineError::Store(StoreError::Query(_)) => {
            "the database rejected the change; see the operator log".to_string()
        }
        EngineError::Store(StoreError::Unavailable(_)) => {
            "the database is unavailable; retrying with backoff".to_string()
        }
        // Where and what (refused, lost), never a driver's internals or the URL.
        EngineError::Store(e @ StoreError::Connection { .. }) => {
            format!("{e}; retrying with backoff")
        }
        other => other.to_string(),
    }
}

/// The status field a server-side apply was refused for: structured-merge-diff reports a
/// field the installed CRD's schema lacks as `.status.<field>: field not declared in schema`.
fn undeclared_status_field(message: &str) -> Option<String> {
    let at = message.find(": field not declared in schema")?;
    let path = message[..at].rsplit(' ').next()?;
    let field = path.strip_prefix(".status.")?;
    // Only a top-level status property: a nested one is not ours to drop.
    (!field.is_empty() && field.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        .then(|| field.to_string())
}
#[cfg(test)]
mod tests {
    use super::*;

    /// The stale-cache case: a member written NotReady while the cache still holds the Ready
    /// it had before; its organization turns Ready again and the next reconcile wants Ready,
    /// which the stale cache holds. The write must not be skipped.
    #[test]
    fn a_status_written_since_the_cache_was_filled_is_not_taken_as_current() {
        let written = WrittenStatuses::default();
        let ready = serde_json::json!({"conditions": [{"type": "Ready", "status": "True"}]});
        let waiting = serde_json::json!({"conditions": [{"type": "Ready", "status": "False"}]});
        let key = "OrganizationMember/ns/m";
        // Never written by this process: the cache is all it knows.
        assert!(written.unchanged(key, Some(&ready), &ready));
        assert!(!written.unchanged(key, Some(&ready), &waiting));
        assert!(!written.unchanged(key, None, &ready));
        // Written NotReady; the cache has not seen it yet.
        written.record(key, &waiting);
        assert!(
            !written.unchanged(key, Some(&ready), &ready),
            "a stale cached Ready must not skip the write"
        );
        // Written Ready again; the cache catches up.
        written.record(key, &ready);
        assert!(written.unchanged(key, Some(&ready), &ready));
        // Other objects are not affected; a deleted object is forgotten.
        assert!(written.unchanged("OrganizationMember/ns/other", Some(&waiting), &waiting));
        written.record(key, &waiting);
        written.forget(key);
        assert!(written.unchanged(key, Some(&ready), &ready));
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        assert_eq!(backoff_delay(1, 0.5), Duration::from_secs(2));
        assert_eq!(backoff_delay(2, 0.5), Duration::from_secs(4));
        assert_eq!(backoff_delay(5, 0.5), Duration::from_secs(32));
        assert_eq!(backoff_delay(40, 0.5), Duration::from_secs(300));
        assert!(backoff_delay(1, 0.0) >= Duration::from_millis(1600));
        assert!(backoff_delay(1, 0.999) <= Duration::from_millis(2400));
    }

    #[test]
    fn refused_finalizer_patches_on_a_stale_cache_are_told_apart() {
        let api = |code: u16| {
            kube::Error::Api(Box::new(kube::core::Status {
                code,
                ..Default::default()
            }))
        };
        let add =
            |code| ControllerError::Finalizer(Box::new(finalizer::Error::AddFinalizer(api(code))));
        let remove = |code| {
            ControllerError::Finalizer(Box::new(finalizer::Error::RemoveFinalizer(api(code))))
        };
        assert!(add(422).is_stale_cache());
        assert!(remove(404).is_stale_cache());
        assert_eq!(add(422).class(), "StaleCache");
        // Anything else is a failure as before.
        assert!(!add(403).is_stale_cache());
        assert!(!add(500).is_stale_cache());
        assert!(!ControllerError::Kube(api(422)).is_stale_cache());
        assert_eq!(add(403).class(), "KubernetesApi");
    }

    #[test]
    fn undeclared_status_fields_are_recognised() {
        let msg = "failed to create typed patch object (litellm.dev/v1alpha1, Kind=Organization): .status.memberCount: field not declared in schema";
        assert_eq!(undeclared_status_field(msg).as_deref(), Some("memberCount"));
        assert_eq!(
            undeclared_status_field(".spec.x: field not declared in schema"),
            None
        );
        assert_eq!(
            undeclared_status_field(
                ".status.conditions[type=\"A\"].x: field not declared in schema"
            ),
            None
        );
        assert_eq!(undeclared_status_field("conflict"), None);
    }

    #[test]
    fn notes_fit_the_api_servers_limit() {
        assert_eq!(truncate_note("short".into()), "short");
        let long = "é".repeat(800);
        let cut = truncate_note(long);
        assert!(cut.len() <= MAX_NOTE_BYTES, "{}", cut.len());
        assert!(cut.ends_with('…'));
        let exact = "a".repeat(MAX_NOTE_BYTES);
        assert_eq!(truncate_note(exact.clone()), exact);
    }

    #[test]
    fn public_messages_hide_database_details() {
        let e = EngineError::Store(StoreError::Query(
            "duplicate key value violates unique constraint \"x\"".into(),
        ));
        assert!(!public_message(&e).contains("duplicate"));
        let e = EngineError::invalid("spec.alias", "too long");
        assert_eq!(public_message(&e), "spec.alias: too long");
    }
}
