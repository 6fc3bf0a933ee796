//! The chart's PrometheusRule and Grafana dashboard: the rule groups checked and unit-tested by
//! the real `promtool` (`scripts/go-tools.sh promtool` builds `.tools/bin/promtool`) on
//! synthetic series (`tests/prometheus/alerts_test.yaml`), and every metric name the rules and
//! the dashboard use checked against what the operator's `/metrics` declares.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use litellm_org_operator::metrics::Metrics;
use serde_json::{Value, json};
use support::cluster::World;
use support::helm::render_objects;
use support::operator::{http_get, poll};

const RELEASE: &str = "lorg";
const NAMESPACE: &str = "litellm-system";
const JOB: &str = "lorg-litellm-org-operator-metrics";
const PREFIX: &str = "litellm_org_operator_";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn promtool() -> PathBuf {
    let path = repo().join(".tools/bin/promtool");
    assert!(
        path.is_file(),
        "{} is missing: run `bash scripts/go-tools.sh promtool` (scripts/test.sh does)",
        path.display()
    );
    path
}

fn run_promtool(args: &[&str], dir: &Path) -> Output {
    Command::new(promtool())
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run promtool")
}

fn render(values: Value) -> Vec<Value> {
    let mut values = values;
    values["database"] = json!({ "existingSecret": "litellm-db" });
    render_objects(&values, RELEASE, NAMESPACE)
}

fn only<'a>(objects: &'a [Value], kind: &str) -> &'a Value {
    let found: Vec<&Value> = objects.iter().filter(|o| o["kind"] == kind).collect();
    assert_eq!(found.len(), 1, "exactly one {kind}");
    found[0]
}

/// The PrometheusRule's `spec` (its rule groups) as rendered with `prometheusRule.enabled`.
fn rule_groups(extra: Value) -> Value {
    let mut values = json!({ "prometheusRule": { "enabled": true } });
    for (k, v) in extra.as_object().expect("object") {
        values["prometheusRule"][k] = v.clone();
    }
    only(&render(values), "PrometheusRule")["spec"].clone()
}

/// The rule groups written as a rules file in a fresh folder, next to the unit tests.
fn rules_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = serde_yaml::to_string(&rule_groups(json!({}))).expect("YAML");
    std::fs::write(dir.path().join("rules.yaml"), rules).expect("write rules");
    std::fs::copy(
        repo().join("tests/prometheus/alerts_test.yaml"),
        dir.path().join("alerts_test.yaml"),
    )
    .expect("copy unit tests");
    dir
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Every alert and its rule, in order.
fn alerts(groups: &Value) -> Vec<(String, Value)> {
    groups["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_array().expect("rules").iter())
        .map(|r| (r["alert"].as_str().expect("alert").to_string(), r.clone()))
        .collect()
}

#[test]
fn promtool_checks_the_rendered_rules() {
    let dir = rules_dir();
    let out = run_promtool(&["check", "rules", "rules.yaml"], dir.path());
    let report = text(&out);
    assert!(out.status.success(), "{report}");
    assert!(report.contains("SUCCESS: 6 rules found"), "{report}");
}

/// `tests/prometheus/alerts_test.yaml`: each alert at times it must fire and times it must not
/// (under the threshold, pending its `for`, resolved, another release's series).
#[test]
fn promtool_unit_tests_fire_each_alert_exactly_when_due() {
    let dir = rules_dir();
    let out = run_promtool(&["test", "rules", "alerts_test.yaml"], dir.path());
    assert!(out.status.success(), "{}", text(&out));

    // The unit tests cover every alert the chart ships, each both firing and silent.
    let tests = std::fs::read_to_string(dir.path().join("alerts_test.yaml")).expect("read");
    let tests: serde_yaml::Value = serde_yaml::from_str(&tests).expect("YAML");
    let tests = serde_json::to_value(tests).expect("JSON");
    let mut firing = BTreeSet::new();
    let mut silent = BTreeSet::new();
    for group in tests["tests"].as_array().expect("tests") {
        for case in group["alert_rule_test"]
            .as_array()
            .expect("alert_rule_test")
        {
            let name = case["alertname"].as_str().expect("alertname").to_string();
            match case["exp_alerts"].as_array().map(Vec::is_empty) {
                Some(false) => firing.insert(name),
                _ => silent.insert(name),
            };
        }
    }
    let shipped: BTreeSet<String> = alerts(&rule_groups(json!({})))
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    assert_eq!(firing, shipped, "alerts tested firing");
    assert_eq!(silent, shipped, "alerts tested silent");
}

/// A rules file that breaks the unit tests makes promtool fail: the test above can fail.
#[test]
fn promtool_unit_tests_catch_a_wrong_threshold() {
    let dir = rules_dir();
    let rules = std::fs::read_to_string(dir.path().join("rules.yaml")).expect("read");
    let broken = rules.replace(
        ">= max by (namespace, name) (litellm_org_operator_organization_max_budget_usd",
        "> max by (namespace, name) (litellm_org_operator_organization_max_budget_usd",
    );
    assert_ne!(broken, rules, "the budget comparison is in the rules");
    std::fs::write(dir.path().join("rules.yaml"), broken).expect("write");
    let out = run_promtool(&["test", "rules", "alerts_test.yaml"], dir.path());
    let report = text(&out);
    assert!(!out.status.success(), "{report}");
    assert!(
        report.contains("alertname: LiteLLMOrganizationBudgetExceeded"),
        "{report}"
    );
}

#[test]
fn rule_values_reach_the_rendered_rules() {
    let objects = render(json!({ "prometheusRule": {
        "enabled": true,
        "labels": { "release": "kube-prometheus-stack" },
        "alertLabels": { "team": "platform" },
        "selector": "job=\"lorg\", cluster=\"eu\"",
        "reconcileErrorsFor": "30m", "noLeaderFor": "2m", "stalledFor": "1h", "budgetFor": "10m",
    }}));
    let rule = only(&objects, "PrometheusRule");
    assert_eq!(rule["metadata"]["namespace"], NAMESPACE);
    assert_eq!(
        rule["metadata"]["labels"]["release"],
        "kube-prometheus-stack"
    );
    let rules = alerts(&rule["spec"]);
    assert_eq!(rules.len(), 6);
    for (name, rule) in &rules {
        assert_eq!(rule["labels"]["team"], "platform", "{name}");
        let severity = rule["labels"]["severity"].as_str().unwrap_or_default();
        assert!(
            ["info", "warning", "critical"].contains(&severity),
            "{name}"
        );
        let expr = rule["expr"].as_str().expect("expr");
        assert!(
            expr.contains("{job=\"lorg\", cluster=\"eu\"") && !expr.contains(JOB),
            "{name}: {expr}"
        );
        let expected_for = match name.as_str() {
            "LiteLLMOrgOperatorReconcileErrors" => "30m",
            "LiteLLMOrgOperatorNoLeader" => "2m",
            "LiteLLMOrgOperatorObjectsStalled" => "1h",
            _ => "10m",
        };
        assert_eq!(rule["for"], expected_for, "{name}");
    }
}

#[test]
fn monitoring_objects_are_off_by_default_and_follow_their_values() {
    let kinds = |objects: &[Value]| -> Vec<String> {
        objects
            .iter()
            .map(|o| o["kind"].as_str().unwrap_or_default().to_string())
            .collect()
    };
    let defaults = kinds(&render(json!({})));
    assert!(!defaults.contains(&"PrometheusRule".to_string()));
    assert!(!defaults.contains(&"ConfigMap".to_string()));

    let objects = render(json!({ "grafanaDashboard": { "enabled": true } }));
    let map = only(&objects, "ConfigMap");
    assert_eq!(map["metadata"]["labels"]["grafana_dashboard"], "1");
    assert_eq!(map["metadata"]["namespace"], NAMESPACE);

    let objects = render(json!({ "grafanaDashboard": {
        "enabled": true, "namespace": "monitoring",
        "labels": { "dashboards": "litellm" }, "annotations": { "grafana_folder": "LiteLLM" },
    }}));
    let map = only(&objects, "ConfigMap");
    assert_eq!(map["metadata"]["namespace"], "monitoring");
    assert_eq!(map["metadata"]["labels"]["dashboards"], "litellm");
    // Helm merges maps: the sidecar's default label stays unless set to null.
    assert_eq!(map["metadata"]["labels"]["grafana_dashboard"], "1");
    assert_eq!(map["metadata"]["annotations"]["grafana_folder"], "LiteLLM");
}

/// The dashboard JSON from the rendered ConfigMap.
fn dashboard() -> Value {
    let objects = render(json!({ "grafanaDashboard": { "enabled": true } }));
    let map = only(&objects, "ConfigMap");
    let text = map["data"]["litellm-org-operator.json"]
        .as_str()
        .expect("dashboard data");
    serde_json::from_str(text).expect("the dashboard is JSON")
}

/// Every panel, rows' nested panels included.
fn panels(dashboard: &Value) -> Vec<Value> {
    let mut out = Vec::new();
    for p in dashboard["panels"].as_array().expect("panels") {
        out.push(p.clone());
        if let Some(nested) = p["panels"].as_array() {
            out.extend(nested.iter().cloned());
        }
    }
    out
}

#[test]
fn dashboard_shows_budgets_reconciles_work_and_leader() {
    let dashboard = dashboard();
    assert_eq!(dashboard["uid"], "litellm-org-operator");
    let panels = panels(&dashboard);
    let by_title = |title: &str| -> Vec<String> {
        let panel = panels
            .iter()
            .find(|p| p["title"] == title)
            .unwrap_or_else(|| panic!("no panel {title:?}"));
        assert_eq!(panel["datasource"]["uid"], "${datasource}", "{title}");
        panel["targets"]
            .as_array()
            .expect("targets")
            .iter()
            .map(|t| t["expr"].as_str().expect("expr").to_string())
            .collect()
    };
    let spend = by_title("Spend vs budget per organization").join("\n");
    for metric in [
        "organization_spend_usd",
        "organization_max_budget_usd",
        "organization_soft_budget_usd",
    ] {
        assert!(spend.contains(&format!("{PREFIX}{metric}")), "{spend}");
    }
    for (title, metric) in [
        ("Reconcile rate by result", "reconciles_total"),
        ("Reconcile errors by class", "reconcile_errors_total"),
        ("Work in progress", "reconciles_in_flight"),
        ("Leader", "leader"),
    ] {
        let exprs = by_title(title).join("\n");
        assert!(exprs.contains(&format!("{PREFIX}{metric}{{")), "{title}");
    }
    // Every query of a panel is scoped to the selected jobs.
    for panel in &panels {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().expect("expr");
            let names = metric_names(expr);
            assert!(!names.is_empty(), "{expr}");
            for name in names {
                assert!(
                    expr.contains(&format!("{name}{{job=~\"$job\"}}")),
                    "{name} unscoped in {expr}"
                );
            }
        }
    }
}

/// `litellm_org_operator_…` names in a text (a PromQL expression, an annotation).
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find(PREFIX) {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.insert(tail[..end].to_string());
        rest = &tail[end..];
    }
    names
}

/// Every string in a JSON value.
fn strings(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(s) => out.push(s.clone()),
        Value::Array(items) => items.iter().for_each(|v| strings(v, out)),
        Value::Object(map) => map.values().for_each(|v| strings(v, out)),
        _ => {}
    }
}

fn names_in(value: &Value) -> BTreeSet<String> {
    let mut texts = Vec::new();
    strings(value, &mut texts);
    texts.iter().flat_map(|t| metric_names(t)).collect()
}

/// The sample names an exposition can carry, from its `# TYPE` lines: a counter's samples end in
/// `_total`, a histogram's in `_bucket`, `_sum` and `_count`, an info metric's in `_info`.
fn declared(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let (name, kind) = rest.split_once(' ').expect("# TYPE name kind");
        let suffixes: &[&str] = match kind {
            "counter" => &["_total"],
            "histogram" => &["_bucket", "_sum", "_count"],
            "info" => &["_info"],
            _ => &[""],
        };
        for suffix in suffixes {
            names.insert(format!("{name}{suffix}"));
        }
    }
    names
}

#[test]
fn declared_names_follow_the_metric_types() {
    let text = "# HELP a_reconciles Reconciles\n# TYPE a_reconciles counter\n\
                a_reconciles_total{kind=\"x\"} 1\n# TYPE a_duration_seconds histogram\n\
                # TYPE a_build info\n# TYPE a_objects gauge\n# EOF\n";
    let names: Vec<String> = declared(text).into_iter().collect();
    assert_eq!(
        names,
        [
            "a_build_info",
            "a_duration_seconds_bucket",
            "a_duration_seconds_count",
            "a_duration_seconds_sum",
            "a_objects",
            "a_reconciles_total",
        ]
    );
}

/// What the operator exposes: the `# TYPE` lines of a fresh registry
/// (`Metrics::new().encode()`, the metrics present from the start) and of a running operator's
/// `/metrics` once the examples (an organization with a max and a soft budget, members with
/// budgets) are Ready and their spend was read: the registry leaves a family out until it holds
/// a series.
async fn exposed() -> BTreeSet<String> {
    let mut names = declared(&Metrics::new().encode());
    let w = World::new("metrics").await;
    w.db.exec(r#"INSERT INTO "LiteLLM_BudgetTable" (budget_id, max_budget, created_by, updated_by) VALUES ('shared-marketing-budget', 300, 'admin', 'admin')"#).await;
    let op = w.operator(&[]).await;
    w.kubectl().apply_examples(&w.ns, false).await;
    let (ok, out) = w
        .kubectl()
        .wait_ready(
            &w.ns,
            &["organizations,organizationmembers", "--all"],
            Duration::from_secs(60),
        )
        .await;
    assert!(ok, "{out}");
    // Spend is read from the database on the resync (3 s here), after Ready.
    let text = poll(60, "budget gauges on /metrics", || async {
        let (code, body) = http_get(op.http(), "/metrics")
            .await
            .map_err(|e| e.to_string())?;
        let wanted = ["organization_spend_usd{", "reconciles_total{"];
        if code == 200
            && wanted
                .iter()
                .all(|w| body.contains(&format!("{PREFIX}{w}")))
        {
            Ok(body)
        } else {
            Err(format!("HTTP {code}:\n{body}"))
        }
    })
    .await;
    names.extend(declared(&text));
    names
}

/// Every metric the alert rules and the dashboard's queries name is one the operator exposes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_and_dashboard_use_only_metrics_the_operator_exposes() {
    let exposed = exposed().await;
    for name in [
        "reconciles_total",
        "reconcile_duration_seconds_bucket",
        "objects",
        "organization_spend_usd",
    ] {
        assert!(
            exposed.contains(&format!("{PREFIX}{name}")),
            "{name}: {exposed:?}"
        );
    }
    let rules = names_in(&rule_groups(json!({})));
    let dashboard = names_in(&dashboard());
    assert!(rules.len() >= 8, "{rules:?}");
    assert!(dashboard.len() >= 12, "{dashboard:?}");
    let unknown: Vec<(&str, &String)> = rules
        .iter()
        .map(|n| ("rules", n))
        .chain(dashboard.iter().map(|n| ("dashboard", n)))
        .filter(|(_, n)| !exposed.contains(*n))
        .collect();
    assert!(
        unknown.is_empty(),
        "metrics used but not exposed: {unknown:?}; exposed: {exposed:?}"
    );
}
