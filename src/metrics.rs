//! Prometheus metrics (`/metrics`), via `prometheus-client`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    kind: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    kind: String,
    class: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConditionLabels {
    kind: String,
    condition: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    operation: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OrganizationLabels {
    namespace: String,
    name: String,
}

type FloatGauge = Gauge<f64, AtomicU64>;

/// Every metric the operator exports, registered under the `litellm_org_operator` prefix.
pub struct Metrics {
    registry: Registry,
    reconciles: Family<ResultLabels, Counter>,
    errors: Family<ErrorLabels, Counter>,
    duration: Family<KindLabels, Histogram, fn() -> Histogram>,
    objects: Family<ConditionLabels, Gauge>,
    writes: Family<KindLabels, Counter>,
    database: Family<OperationLabels, Counter>,
    spend: Family<OrganizationLabels, FloatGauge>,
    max_budget: Family<OrganizationLabels, FloatGauge>,
    /// Last condition label per object, so the `objects` gauge moves by one on a change.
    last_condition: Mutex<HashMap<String, &'static str>>,
}

fn duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("litellm_org_operator");
        let reconciles = Family::<ResultLabels, Counter>::default();
        let errors = Family::<ErrorLabels, Counter>::default();
        let duration = Family::<KindLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            duration_histogram as fn() -> Histogram,
        );
        let objects = Family::<ConditionLabels, Gauge>::default();
        let writes = Family::<KindLabels, Counter>::default();
        let database = Family::<OperationLabels, Counter>::default();
        let spend = Family::<OrganizationLabels, FloatGauge>::default();
        let max_budget = Family::<OrganizationLabels, FloatGauge>::default();
        registry.register(
            "reconciles",
            "Reconciles by kind and result",
            reconciles.clone(),
        );
        registry.register(
            "reconcile_errors",
            "Failed reconciles by kind and error class",
            errors.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Reconcile duration",
            duration.clone(),
        );
        registry.register(
            "objects",
            "Objects by kind and condition (Ready, Reconciling, Stalled, Paused)",
            objects.clone(),
        );
        registry.register(
            "database_writes",
            "Rows written (changes applied) by kind",
            writes.clone(),
        );
        registry.register(
            "database_operations",
            "Engine database operations (observe, apply, usage)",
            database.clone(),
        );
        registry.register(
            "organization_spend_usd",
            "Organization spend mirrored from LiteLLM",
            spend.clone(),
        );
        registry.register(
            "organization_max_budget_usd",
            "Organization max budget",
            max_budget.clone(),
        );
        Self {
            registry,
            reconciles,
            errors,
            duration,
            objects,
            writes,
            database,
            spend,
            max_budget,
            last_condition: Mutex::new(HashMap::new()),
        }
    }

    /// Count one reconcile and its duration; `error` is the error class, if it failed.
    pub fn observe_reconcile(&self, kind: &str, elapsed: Duration, error: Option<&str>) {
        let result = if error.is_some() { "error" } else { "ok" };
        self.reconciles
            .get_or_create(&ResultLabels {
                kind: kind.into(),
                result: result.into(),
            })
            .inc();
        if let Some(class) = error {
            self.count_error(kind, class);
        }
        self.duration
            .get_or_create(&KindLabels { kind: kind.into() })
            .observe(elapsed.as_secs_f64());
    }

    /// Count an error by class (also for errors handled without failing the reconcile).
    pub fn count_error(&self, kind: &str, class: &str) {
        self.errors
            .get_or_create(&ErrorLabels {
                kind: kind.into(),
                class: class.into(),
            })
            .inc();
    }

    /// Count changes applied.
    pub fn count_writes(&self, kind: &str, changes: usize) {
        self.writes
            .get_or_create(&KindLabels { kind: kind.into() })
            .inc_by(changes as u64);
    }

    /// Count one engine database operation.
    pub fn count_database(&self, operation: &'static str) {
        self.database
            .get_or_create(&OperationLabels {
                operation: operation.into(),
            })
            .inc();
    }

    /// Record the condition an object is in now (`Ready`, `Stalled`, `Reconciling`, `Paused`).
    pub fn set_condition(&self, kind: &str, object: &str, label: &'static str) {
        let Ok(mut last) = self.last_condition.lock() else {
            return;
        };
        let key = format!("{kind}/{object}");
        let previous = last.insert(key, label);
        if previous == Some(label) {
            return;
        }
        if let Some(p) = previous {
            self.objects
                .get_or_create(&ConditionLabels {
                    kind: kind.into(),
                    condition: p.into(),
                })
                .dec();
        }
        self.objects
            .get_or_create(&ConditionLabels {
                kind: kind.into(),
                condition: label.into(),
            })
            .inc();
    }

    /// Drop every series of a deleted object (`namespace/name`), so `/metrics` does not grow
    /// with churn: its condition leaves the `objects` gauge, its spend and budget series go.
    pub fn forget(&self, kind: &str, namespace: &str, name: &str) {
        if let Ok(mut last) = self.last_condition.lock()
            && let Some(previous) = last.remove(&format!("{kind}/{namespace}/{name}"))
        {
            self.objects
                .get_or_create(&ConditionLabels {
                    kind: kind.into(),
                    condition: previous.into(),
                })
                .dec();
        }
        let labels = OrganizationLabels {
            namespace: namespace.into(),
            name: name.into(),
        };
        if kind == "Organization" {
            self.spend.remove(&labels);
            self.max_budget.remove(&labels);
        }
    }

    /// Mirror an organization's spend and budget.
    pub fn set_spend(&self, namespace: &str, name: &str, spend: f64, max_budget: Option<f64>) {
        let labels = OrganizationLabels {
            namespace: namespace.into(),
            name: name.into(),
        };
        self.spend.get_or_create(&labels).set(spend);
        match max_budget {
            Some(m) => {
                self.max_budget.get_or_create(&labels).set(m);
            }
            None => {
                self.max_budget.remove(&labels);
            }
        }
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_and_condition_gauges_move() {
        let m = Metrics::new();
        m.observe_reconcile("Organization", Duration::from_millis(3), None);
        m.observe_reconcile(
            "Organization",
            Duration::from_millis(3),
            Some("DatabaseUnavailable"),
        );
        m.set_condition("Organization", "ns/a", "Ready");
        m.set_condition("Organization", "ns/a", "Paused");
        m.set_spend("ns", "a", 2.5, Some(10.0));
        let text = m.encode();
        assert!(
            text.contains(
                r#"litellm_org_operator_reconciles_total{kind="Organization",result="ok"} 1"#
            ),
            "{text}"
        );
        assert!(text.contains(r#"litellm_org_operator_reconcile_errors_total{kind="Organization",class="DatabaseUnavailable"} 1"#), "{text}");
        assert!(
            text.contains(
                r#"litellm_org_operator_objects{kind="Organization",condition="Ready"} 0"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"litellm_org_operator_objects{kind="Organization",condition="Paused"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"litellm_org_operator_organization_spend_usd{namespace="ns",name="a"} 2.5"#
            ),
            "{text}"
        );
    }

    #[test]
    fn forgetting_an_object_drops_its_series() {
        let m = Metrics::new();
        m.set_condition("Organization", "ns/a", "Ready");
        m.set_condition("Organization", "ns/b", "Ready");
        m.set_spend("ns", "a", 2.5, Some(10.0));
        m.set_spend("ns", "b", 1.0, None);
        m.forget("Organization", "ns", "a");
        let text = m.encode();
        assert!(!text.contains(r#"name="a""#), "{text}");
        assert!(
            text.contains(
                r#"litellm_org_operator_organization_spend_usd{namespace="ns",name="b"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"litellm_org_operator_objects{kind="Organization",condition="Ready"} 1"#
            ),
            "{text}"
        );
        // Forgetting twice, or an object never seen, changes nothing.
        m.forget("Organization", "ns", "a");
        m.forget("OrganizationMember", "ns", "zz");
        assert!(
            m.encode().contains(
                r#"litellm_org_operator_objects{kind="Organization",condition="Ready"} 1"#
            )
        );
    }
}
