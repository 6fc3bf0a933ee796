//! Step 2 of planning, shared by both kinds: the managed fields of a row, read through the
//! inventory ([`crate::store::inventory`]). Each function takes the row as it is and the
//! declared values, records originals the first time a field is declared, and returns the
//! row as it should be. Values no manifest declares are carried as their own text.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::desired::DeclaredBudget;
use super::plan::Originals;
use crate::error::EngineError;
use crate::store::inventory::{MODEL_LIMITS, ModelLimit, same_meaning};
use crate::store::{BUDGET_LIMITS, BudgetRow, OWNER_KEY, RawObject, Scalar};

/// The prefix of the per-model fields of `model_max_budget`.
const MODELS: &str = "budget.model_max_budget.";

/// The resource's own budget row after applying `declared` on `base` (the row as it is, or
/// what it starts from): every limit of the inventory, then each model's limits.
pub fn managed_budget(
    originals: &mut Originals,
    declared: &DeclaredBudget,
    base: &BudgetRow,
) -> BudgetRow {
    let mut want = base.clone();
    for limit in BUDGET_LIMITS {
        let current = base
            .limit(limit.column)
            .map_or(Value::Null, Scalar::to_json);
        let declared_value = declared.limits.get(limit.column).map(Scalar::to_json);
        let name = format!("budget.{}", limit.column);
        let value = originals.field(&name, declared_value, current);
        want.set(limit.column, Scalar::from_json(limit.kind, &value));
    }
    want.model_max_budget = managed_model_budgets(
        originals,
        &declared.models,
        base.model_max_budget.as_deref(),
    );
    want
}

/// True when two budget rows hold the same limits (ids and ownership columns not compared):
/// the planner's test for "this budget needs no write". `model_max_budget` is compared as
/// text: the planner keeps its text unless a managed limit in it changes meaning.
pub fn same_limits(a: &BudgetRow, b: &BudgetRow) -> bool {
    fn empty(v: Option<&str>) -> Option<&str> {
        v.filter(|t| RawObject::parse(t).is_none_or(|o| !o.is_empty()))
    }
    a.limits == b.limits
        && empty(a.model_max_budget.as_deref()) == empty(b.model_max_budget.as_deref())
}

/// The model limits a row manages or declares: `(model, limit)`.
fn model_fields(
    originals: &Originals,
    declared: &BTreeMap<String, BTreeMap<&'static str, Value>>,
) -> BTreeSet<(String, &'static ModelLimit)> {
    let mut fields = BTreeSet::new();
    for name in originals.under(MODELS) {
        for limit in MODEL_LIMITS {
            if let Some(model) = name
                .strip_suffix(limit.key)
                .and_then(|m| m.strip_suffix('.'))
            {
                fields.insert((model.to_string(), limit));
            }
        }
    }
    for (model, limits) in declared {
        for limit in MODEL_LIMITS.iter().filter(|l| limits.contains_key(l.key)) {
            fields.insert((model.clone(), limit));
        }
    }
    fields
}

impl PartialEq for ModelLimit {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}
impl Eq for ModelLimit {}
impl PartialOrd for ModelLimit {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for ModelLimit {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.key.cmp(other.key)
    }
}

/// `model_max_budget` with each declared model limit set (in LiteLLM's own shape,
/// `max_budget` / `budget_duration`) and each limit no longer declared given back. A limit
/// equal by meaning in either of the shapes LiteLLM's `BudgetConfig` reads is left as it is;
/// other models, and other keys of a model's entry (`tpm_limit`, `rpm_limit`), keep their
/// text.
fn managed_model_budgets(
    originals: &mut Originals,
    declared: &BTreeMap<String, BTreeMap<&'static str, Value>>,
    current: Option<&str>,
) -> Option<String> {
    // An earlier version managed the whole column as one field.
    if let Some(whole) = originals.take("budget.model_max_budget")
        && declared.is_empty()
    {
        return (!whole.is_null()).then(|| whole.to_string());
    }
    let mut object = current.and_then(RawObject::parse).unwrap_or_default();
    let mut changed = false;
    for (model, limit) in model_fields(originals, declared) {
        let entry = object
            .raw(&model)
            .and_then(RawObject::parse)
            .unwrap_or_default();
        let have = entry
            .value(limit.key)
            .or_else(|| entry.value(limit.alias))
            .unwrap_or(Value::Null);
        let want = declared.get(&model).and_then(|m| m.get(limit.key)).cloned();
        let value = originals.field(
            &format!("{MODELS}{model}.{}", limit.key),
            want,
            have.clone(),
        );
        if same_meaning(&value, &have) {
            continue;
        }
        changed = true;
        set_model_limit(&mut object, &model, limit, &value);
    }
    if !changed {
        return current.map(str::to_string);
    }
    Some(object.to_text())
}

/// Set (or, for null, remove) one limit of one model's entry, in LiteLLM's spelling.
fn set_model_limit(object: &mut RawObject, model: &str, limit: &ModelLimit, value: &Value) {
    let mut entry = object
        .raw(model)
        .and_then(RawObject::parse)
        .unwrap_or_default();
    entry.remove(limit.alias);
    match value {
        Value::Null => entry.remove(limit.key),
        v => entry.set(limit.key, v),
    }
    match RawValue::from_string(entry.to_text()) {
        Ok(raw) if !entry.is_empty() => object.set_raw(model, raw),
        _ => object.remove(model),
    }
}

/// The key under which the ledger records an original whose JSON text a decoded value would
/// not give back (a number beyond a double's precision, `1.50`): `{RAW: "<text>"}`.
const RAW: &str = "litellm-org-operator/raw";

/// A metadata value as the ledger records it: decoded when that gives its text back, else
/// its text under [`RAW`].
fn recordable(raw: &str) -> Value {
    match serde_json::from_str::<Value>(raw) {
        Ok(v) if serde_json::to_string(&v).is_ok_and(|text| text == raw) => v,
        _ => serde_json::json!({ RAW: raw }),
    }
}

/// The organization's `metadata` text with each declared key set, each key no longer
/// declared given back, and the marker of an earlier version removed. Keys the manifest does
/// not declare keep their exact text; with nothing to change the text is returned as it
/// was. Metadata that is not an object is never replaced: declaring keys on it is a
/// `Conflict`.
pub fn managed_metadata(
    originals: &mut Originals,
    declared: &Map<String, Value>,
    current: Option<&str>,
    organization_id: &str,
) -> Result<String, EngineError> {
    let text = current.unwrap_or("{}");
    let previously = originals.under("metadata.");
    let Some(mut object) = RawObject::parse(text) else {
        if declared.is_empty() && previously.is_empty() {
            return Ok(text.to_string());
        }
        return Err(EngineError::Conflict(format!(
            "the metadata of organization {organization_id} is not a JSON object ({}), so the keys spec.metadata declares cannot be merged into it: make it an object in LiteLLM, or remove spec.metadata",
            crate::text::escape(&text.chars().take(80).collect::<String>())
        )));
    };
    let mut changed = object.raw(OWNER_KEY).is_some();
    object.remove(OWNER_KEY);
    let keys = previously.into_iter().filter(|k| !declared.contains_key(k));
    let keys: Vec<(String, Option<Value>)> = keys
        .map(|k| (k, None))
        .chain(declared.iter().map(|(k, v)| (k.clone(), Some(v.clone()))))
        .collect();
    for (key, value) in keys {
        let have = object.value(&key);
        let recorded = object.raw(&key).map_or(Value::Null, recordable);
        let want = originals.field(&format!("metadata.{key}"), value, recorded);
        match (have, want) {
            (Some(h), w) if !w.is_null() && same_meaning(&h, &w) => {}
            (None, Value::Null) => {}
            (_, Value::Null) => {
                object.remove(&key);
                changed = true;
            }
            (_, w) => {
                match w
                    .get(RAW)
                    .and_then(Value::as_str)
                    .map(|r| RawValue::from_string(r.to_string()))
                {
                    Some(Ok(raw)) => object.set_raw(&key, raw),
                    _ => object.set(&key, &w),
                }
                changed = true;
            }
        }
    }
    Ok(if changed {
        object.to_text()
    } else {
        text.to_string()
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn declared_models(model: &str, max: f64) -> BTreeMap<String, BTreeMap<&'static str, Value>> {
        BTreeMap::from([(
            model.to_string(),
            BTreeMap::from([("max_budget", json!(max))]),
        )])
    }

    #[test]
    fn undeclared_metadata_keeps_its_text() {
        let text = r#"{"big": 123456789012345678901234567890, "money": 19.999999999999999999, "p": 1.50, "x": "1"}"#;
        let mut o = Originals::default();
        let declared = Map::from_iter([("x".to_string(), json!("2"))]);
        let out = managed_metadata(&mut o, &declared, Some(text), "org").expect("object");
        assert_eq!(
            out,
            r#"{"big":123456789012345678901234567890,"money":19.999999999999999999,"p":1.50,"x":"2"}"#
        );
        assert_eq!(o.original("metadata.x"), Some(&json!("1")));
        // A key declared and then removed gets its text back, whatever it held.
        let declared = Map::from_iter([("big".to_string(), json!(1))]);
        let set = managed_metadata(&mut o, &declared, Some(&out), "org").expect("object");
        let back = managed_metadata(&mut o, &Map::new(), Some(&set), "org").expect("object");
        assert!(
            back.contains(r#""big":123456789012345678901234567890"#),
            "{back}"
        );
        // Nothing to change: the text as it was.
        let declared = Map::from_iter([("p".to_string(), json!(1.5))]);
        assert_eq!(
            managed_metadata(&mut Originals::default(), &declared, Some(text), "org")
                .expect("object"),
            text
        );
    }

    #[test]
    fn metadata_that_is_not_an_object_is_never_replaced() {
        let text = r#"["legacy", {"a": 1}]"#;
        assert_eq!(
            managed_metadata(&mut Originals::default(), &Map::new(), Some(text), "org")
                .expect("untouched"),
            text
        );
        let declared = Map::from_iter([("x".to_string(), json!("2"))]);
        assert!(matches!(
            managed_metadata(&mut Originals::default(), &declared, Some(text), "org"),
            Err(EngineError::Conflict(_))
        ));
    }

    #[test]
    fn model_budgets_compare_by_meaning_and_keep_what_is_not_declared() {
        let litellm = r#"{"gpt-4o": {"max_budget": 5, "budget_duration": "30d", "tpm_limit": 100}, "claude": {"budget_limit": 1.50}}"#;
        let mut o = Originals::default();
        assert_eq!(
            managed_model_budgets(&mut o, &declared_models("gpt-4o", 5.0), Some(litellm))
                .as_deref(),
            Some(litellm)
        );
        let out = managed_model_budgets(&mut o, &declared_models("gpt-4o", 7.0), Some(litellm));
        assert_eq!(
            out.as_deref(),
            Some(
                r#"{"gpt-4o":{"max_budget":7.0,"budget_duration":"30d","tpm_limit":100},"claude":{"budget_limit": 1.50}}"#
            )
        );
        // The older spelling is rewritten in LiteLLM's when its value changes.
        let old = r#"{"gpt-4o": {"budget_limit": 5.0, "time_period": "1d"}}"#;
        let out = managed_model_budgets(
            &mut Originals::default(),
            &declared_models("gpt-4o", 6.0),
            Some(old),
        );
        assert_eq!(
            out.as_deref(),
            Some(r#"{"gpt-4o":{"time_period":"1d","max_budget":6.0}}"#)
        );
        // No longer declared: the original comes back; an entry the operator made goes.
        let out = managed_model_budgets(&mut o, &BTreeMap::new(), out.as_deref());
        assert_eq!(
            out.as_deref(),
            Some(r#"{"gpt-4o":{"time_period":"1d","max_budget":5}}"#)
        );
        let mut fresh = Originals::default();
        let made = managed_model_budgets(&mut fresh, &declared_models("o1", 2.0), None);
        assert_eq!(made.as_deref(), Some(r#"{"o1":{"max_budget":2.0}}"#));
        assert_eq!(
            managed_model_budgets(&mut fresh, &BTreeMap::new(), made.as_deref()).as_deref(),
            Some("{}")
        );
    }

    #[test]
    fn every_inventory_limit_is_managed() {
        let declared = DeclaredBudget {
            limits: BUDGET_LIMITS
                .iter()
                .map(|l| {
                    (
                        l.column,
                        Scalar::from_json(
                            l.kind,
                            &json!(if l.kind == crate::store::Kind::Text {
                                json!("1d")
                            } else {
                                json!(3)
                            }),
                        )
                        .expect("value"),
                    )
                })
                .collect(),
            models: BTreeMap::new(),
        };
        let mut o = Originals::default();
        let want = managed_budget(&mut o, &declared, &BudgetRow::new("b", "me"));
        assert_eq!(want.limits, declared.limits);
        assert_eq!(o.under("budget.").len(), BUDGET_LIMITS.len());
        let back = managed_budget(&mut o, &DeclaredBudget::default(), &want);
        assert!(back.limits.is_empty(), "{back:?}");
    }
}
