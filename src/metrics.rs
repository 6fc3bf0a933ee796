//! Prometheus metrics (`/metrics`), via `prometheus-client`.
//!
//! The exposed names are an interface: alerting rules and dashboards are written against them,
//! so a name or a label is never changed here without a note in the CHANGELOG.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

use crate::crd::ConditionReason;

/// The kinds the operator reconciles, as the `kind` label spells them.
pub const KINDS: [&str; 2] = ["Organization", "OrganizationMember"];

/// Every value of the `class` label of `reconcile_errors_total`: the condition reasons an
/// error reports, and the classes of faults outside the engine (the Kubernetes API, a
/// finalizer patch on a stale cache, a delete that waits for the user).
pub const ERROR_CLASSES: [&str; 10] = [
    ConditionReason::InvalidSpec.as_str(),
    ConditionReason::BudgetNotFound.as_str(),
    ConditionReason::OrganizationNotFound.as_str(),
    ConditionReason::OrganizationNotReady.as_str(),
    ConditionReason::DatabaseUnavailable.as_str(),
    ConditionReason::Conflict.as_str(),
    ConditionReason::NotGranted.as_str(),
    "KubernetesApi",
    "StaleCache",
    "DeleteWaits",
];

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

/// One object's series (`namespace`, `name`); the metric's name says the kind.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ObjectLabels {
    namespace: String,
    name: String,
}

impl ObjectLabels {
    fn new(namespace: &str, name: &str) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: String,
}

/// An object's budget figures, as `/metrics` mirrors them.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct BudgetFigures {
    pub spend: f64,
    pub max_budget: Option<f64>,
    pub soft_budget: Option<f64>,
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
    in_flight: Family<KindLabels, Gauge>,
    leader: Gauge,
    spend: Family<ObjectLabels, FloatGauge>,
    max_budget: Family<ObjectLabels, FloatGauge>,
    soft_budget: Family<ObjectLabels, FloatGauge>,
    member_spend: Family<ObjectLabels, FloatGauge>,
    member_max_budget: Family<ObjectLabels, FloatGauge>,
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
        let in_flight = Family::<KindLabels, Gauge>::default();
        let leader = Gauge::default();
        let spend = Family::<ObjectLabels, FloatGauge>::default();
        let max_budget = Family::<ObjectLabels, FloatGauge>::default();
        let soft_budget = Family::<ObjectLabels, FloatGauge>::default();
        let member_spend = Family::<ObjectLabels, FloatGauge>::default();
        let member_max_budget = Family::<ObjectLabels, FloatGauge>::default();
        registry.register(
            "build",
            "The operator's version",
            Info::new(BuildLabels {
                version: env!("CARGO_PKG_VERSION").into(),
            }),
        );
        registry.register(
            "leader",
            "1 while this replica may write (it holds the lease, or leader election is off), else 0",
            leader.clone(),
        );
        registry.register(
            "reconciles_in_flight",
            "Reconciles running now, by kind",
            in_flight.clone(),
        );
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
        registry.register(
            "organization_soft_budget_usd",
            "Organization soft budget (LiteLLM's alerting threshold)",
            soft_budget.clone(),
        );
        registry.register(
            "member_spend_usd",
            "Spend of a member that declares a budget, mirrored from LiteLLM's membership row",
            member_spend.clone(),
        );
        registry.register(
            "member_max_budget_usd",
            "Max budget a member declares in its organization",
            member_max_budget.clone(),
        );
        // Every kind and error class from the start, so a rate over the counter works before
        // the first error and an alert on it does not need `absent()`.
        for kind in KINDS {
            in_flight
                .get_or_create(&KindLabels { kind: kind.into() })
                .set(0);
            for class in ERROR_CLASSES {
                errors
                    .get_or_create(&ErrorLabels {
                        kind: kind.into(),
                        class: class.into(),
                    })
                    .inc_by(0);
            }
        }
        Self {
            registry,
            reconciles,
            errors,
            duration,
            objects,
            writes,
            database,
            in_flight,
            leader,
            spend,
            max_budget,
            soft_budget,
            member_spend,
            member_max_budget,
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
        let labels = ObjectLabels::new(namespace, name);
        for family in self.budget_families(kind) {
            family.remove(&labels);
        }
    }

    /// The per-object budget series of `kind`: spend, max budget, and soft budget.
    fn budget_families(&self, kind: &str) -> Vec<&Family<ObjectLabels, FloatGauge>> {
        match kind {
            "Organization" => vec![&self.spend, &self.max_budget, &self.soft_budget],
            "OrganizationMember" => vec![&self.member_spend, &self.member_max_budget],
            _ => Vec::new(),
        }
    }

    /// Mirror an organization's spend and budgets (a budget not set has no series).
    pub fn set_organization_budget(&self, namespace: &str, name: &str, figures: BudgetFigures) {
        let labels = ObjectLabels::new(namespace, name);
        self.spend.get_or_create(&labels).set(figures.spend);
        set_or_remove(&self.max_budget, &labels, figures.max_budget);
        set_or_remove(&self.soft_budget, &labels, figures.soft_budget);
    }

    /// Mirror a member's spend and max budget while it declares a budget (`None`: it declares
    /// none, and has no series).
    pub fn set_member_budget(&self, namespace: &str, name: &str, figures: Option<BudgetFigures>) {
        let labels = ObjectLabels::new(namespace, name);
        set_or_remove(&self.member_spend, &labels, figures.map(|f| f.spend));
        set_or_remove(
            &self.member_max_budget,
            &labels,
            figures.and_then(|f| f.max_budget),
        );
    }

    /// Whether this replica may write now.
    pub fn set_leader(&self, leader: bool) {
        self.leader.set(i64::from(leader));
    }

    /// Count a reconcile as running until the returned guard is dropped (however the
    /// reconcile ends, a cancelled one included).
    pub fn reconcile_started(&self, kind: &str) -> InFlight {
        let gauge = self
            .in_flight
            .get_or_create(&KindLabels { kind: kind.into() })
            .clone();
        gauge.inc();
        InFlight(gauge)
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

fn set_or_remove(
    family: &Family<ObjectLabels, FloatGauge>,
    labels: &ObjectLabels,
    value: Option<f64>,
) {
    match value {
        Some(v) => {
            family.get_or_create(labels).set(v);
        }
        None => {
            family.remove(labels);
        }
    }
}

/// A reconcile counted in `reconciles_in_flight` while this lives.
pub struct InFlight(Gauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figures(spend: f64, max_budget: Option<f64>, soft_budget: Option<f64>) -> BudgetFigures {
        BudgetFigures {
            spend,
            max_budget,
            soft_budget,
        }
    }

    /// The value of the one sample `series` (name and labels, exactly), if exposed.
    fn sample(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    #[test]
    fn every_series_an_alert_reads_is_exposed_from_the_start() {
        let text = Metrics::new().encode();
        let version = env!("CARGO_PKG_VERSION");
        assert_eq!(
            sample(
                &text,
                &format!(r#"litellm_org_operator_build_info{{version="{version}"}}"#)
            ),
            Some(1.0),
            "{text}"
        );
        assert_eq!(
            sample(&text, "litellm_org_operator_leader"),
            Some(0.0),
            "{text}"
        );
        for kind in KINDS {
            for class in ERROR_CLASSES {
                let series = format!(
                    r#"litellm_org_operator_reconcile_errors_total{{kind="{kind}",class="{class}"}}"#
                );
                assert_eq!(sample(&text, &series), Some(0.0), "{series} in {text}");
            }
            let series = format!(r#"litellm_org_operator_reconciles_in_flight{{kind="{kind}"}}"#);
            assert_eq!(sample(&text, &series), Some(0.0), "{series} in {text}");
        }
    }

    #[test]
    fn every_error_class_the_controller_reports_is_listed() {
        use crate::error::EngineError;
        let engine_errors = [
            EngineError::invalid("spec.x", "bad"),
            EngineError::OrganizationNotFound(String::new()),
            EngineError::OrganizationNotReady(String::new()),
            EngineError::Conflict(String::new()),
            EngineError::NotGranted(String::new()),
            EngineError::Store(crate::error::StoreError::Unavailable(String::new())),
        ];
        for e in &engine_errors {
            assert!(ERROR_CLASSES.contains(&e.reason().as_str()), "{e:?}");
        }
        assert!(ERROR_CLASSES.contains(&ConditionReason::BudgetNotFound.as_str()));
        let unique: std::collections::BTreeSet<_> = ERROR_CLASSES.iter().collect();
        assert_eq!(unique.len(), ERROR_CLASSES.len());
    }

    #[test]
    fn in_flight_and_leader_gauges_follow_the_process() {
        let m = Metrics::new();
        let series = r#"litellm_org_operator_reconciles_in_flight{kind="Organization"}"#;
        let first = m.reconcile_started("Organization");
        let second = m.reconcile_started("Organization");
        assert_eq!(sample(&m.encode(), series), Some(2.0));
        drop(first);
        assert_eq!(sample(&m.encode(), series), Some(1.0));
        drop(second);
        assert_eq!(sample(&m.encode(), series), Some(0.0));
        m.set_leader(true);
        assert_eq!(
            sample(&m.encode(), "litellm_org_operator_leader"),
            Some(1.0)
        );
        m.set_leader(false);
        assert_eq!(
            sample(&m.encode(), "litellm_org_operator_leader"),
            Some(0.0)
        );
    }

    #[test]
    fn budgets_not_set_have_no_series() {
        let m = Metrics::new();
        m.set_organization_budget("ns", "a", figures(3.0, Some(10.0), Some(4.0)));
        m.set_member_budget("ns", "m", Some(figures(1.5, Some(2.0), None)));
        let text = m.encode();
        for (series, value) in [
            (
                r#"litellm_org_operator_organization_spend_usd{namespace="ns",name="a"}"#,
                3.0,
            ),
            (
                r#"litellm_org_operator_organization_max_budget_usd{namespace="ns",name="a"}"#,
                10.0,
            ),
            (
                r#"litellm_org_operator_organization_soft_budget_usd{namespace="ns",name="a"}"#,
                4.0,
            ),
            (
                r#"litellm_org_operator_member_spend_usd{namespace="ns",name="m"}"#,
                1.5,
            ),
            (
                r#"litellm_org_operator_member_max_budget_usd{namespace="ns",name="m"}"#,
                2.0,
            ),
        ] {
            assert_eq!(sample(&text, series), Some(value), "{series} in {text}");
        }
        // The soft budget is removed from the spec, the member stops declaring a budget.
        m.set_organization_budget("ns", "a", figures(3.0, Some(10.0), None));
        m.set_member_budget("ns", "m", None);
        let text = m.encode();
        assert!(!text.contains("organization_soft_budget_usd{"), "{text}");
        assert!(!text.contains("member_spend_usd{"), "{text}");
        assert!(!text.contains("member_max_budget_usd{"), "{text}");
        assert!(text.contains("organization_max_budget_usd{"), "{text}");
    }

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
        m.set_organization_budget("ns", "a", figures(2.5, Some(10.0), None));
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
        m.set_organization_budget("ns", "a", figures(2.5, Some(10.0), Some(5.0)));
        m.set_organization_budget("ns", "b", figures(1.0, None, None));
        m.set_member_budget("ns", "a", Some(figures(0.5, Some(1.0), None)));
        m.set_member_budget("ns", "c", Some(figures(0.25, Some(2.0), None)));
        m.forget("OrganizationMember", "ns", "a");
        m.forget("Organization", "ns", "a");
        let text = m.encode();
        assert!(!text.contains(r#"name="a""#), "{text}");
        assert!(
            text.contains(r#"litellm_org_operator_member_spend_usd{namespace="ns",name="c"} 0.25"#),
            "{text}"
        );
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
