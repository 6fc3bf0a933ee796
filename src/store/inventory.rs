//! The inventory of managed fields: every `LiteLLM_BudgetTable` limit a manifest may declare,
//! once, with its column, its type, how it is read from a spec, and how two values compare.
//! The planner, [`super::Change`]'s display, the SQL and the copy-on-adopt all read
//! [`BUDGET_LIMITS`]; a new LiteLLM limit column is one line here (and its CRD field).
//!
//! LiteLLM's default for every limit is SQL NULL (a limit not set), so a field the operator
//! created and no longer declares goes back to NULL.
//!
//! JSON that no manifest declares (undeclared `metadata` keys, models of `model_max_budget`
//! the manifest does not name, keys of a model's entry it does not set) is carried as its
//! own text ([`RawObject`]) and never decoded into floats: writes splice declared values
//! into that text.

use std::fmt;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::Value;
use serde_json::value::RawValue;

use crate::crd::BudgetSpec;

/// The SQL type of a limit column, which decides how it is read and bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `DOUBLE PRECISION` (`REAL` in SQLite).
    Float,
    /// `INTEGER` (32 bits in PostgreSQL).
    Int4,
    /// `BIGINT`.
    Int8,
    /// `TEXT`.
    Text,
}

/// A value of a limit column; a NULL column has no value.
#[derive(Clone, Debug, PartialEq)]
pub enum Scalar {
    Float(f64),
    Int(i64),
    Text(String),
}

impl fmt::Display for Scalar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scalar::Float(v) => write!(f, "{v}"),
            Scalar::Int(v) => write!(f, "{v}"),
            Scalar::Text(v) => f.write_str(v),
        }
    }
}

impl Scalar {
    /// The value as JSON (the ledger records originals as JSON).
    pub fn to_json(&self) -> Value {
        match self {
            Scalar::Float(v) => Value::from(*v),
            Scalar::Int(v) => Value::from(*v),
            Scalar::Text(v) => Value::from(v.clone()),
        }
    }

    /// A JSON value read back as a value of `kind` (`None` for null or a mismatched type).
    pub fn from_json(kind: Kind, v: &Value) -> Option<Self> {
        match kind {
            Kind::Float => v.as_f64().map(Scalar::Float),
            Kind::Int4 | Kind::Int8 => v.as_i64().map(Scalar::Int),
            Kind::Text => v.as_str().map(|s| Scalar::Text(s.to_string())),
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Scalar::Float(v) => Some(*v),
            Scalar::Int(v) => Some(*v as f64),
            Scalar::Text(_) => None,
        }
    }
}

/// One declarable limit of a budget row.
pub struct BudgetLimit {
    /// The column of `LiteLLM_BudgetTable`, and the field name in the ledger and the plan.
    pub column: &'static str,
    pub kind: Kind,
    /// The declared value in `spec.budget`, if any.
    pub declared: fn(&BudgetSpec) -> Option<Scalar>,
}

/// Every budget limit a manifest may declare (`model_max_budget` is managed per model and
/// per limit: see [`ModelLimit`]).
pub const BUDGET_LIMITS: &[BudgetLimit] = &[
    limit("max_budget", Kind::Float, |b| {
        b.max_budget.map(Scalar::Float)
    }),
    limit("soft_budget", Kind::Float, |b| {
        b.soft_budget.map(Scalar::Float)
    }),
    limit("max_parallel_requests", Kind::Int4, |b| {
        b.max_parallel_requests.map(Scalar::from)
    }),
    limit("tpm_limit", Kind::Int8, |b| b.tpm_limit.map(Scalar::Int)),
    limit("rpm_limit", Kind::Int8, |b| b.rpm_limit.map(Scalar::Int)),
    limit("tpd_limit", Kind::Int8, |b| b.tpd_limit.map(Scalar::Int)),
    limit("budget_duration", Kind::Text, |b| {
        b.budget_duration.clone().map(Scalar::Text)
    }),
];

const fn limit(
    column: &'static str,
    kind: Kind,
    declared: fn(&BudgetSpec) -> Option<Scalar>,
) -> BudgetLimit {
    BudgetLimit {
        column,
        kind,
        declared,
    }
}

impl From<i32> for Scalar {
    fn from(v: i32) -> Self {
        Scalar::Int(v.into())
    }
}

/// The inventory entry of `column`.
pub fn budget_limit(column: &str) -> Option<&'static BudgetLimit> {
    BUDGET_LIMITS.iter().find(|l| l.column == column)
}

/// A limit inside one model's entry of `model_max_budget`. LiteLLM's endpoints store
/// `{"max_budget": 5, "budget_duration": "30d"}`; its `BudgetConfig` also reads the older
/// names `budget_limit` and `time_period`, so both spellings mean the same value.
pub struct ModelLimit {
    /// The key LiteLLM writes.
    pub key: &'static str,
    /// The older key `BudgetConfig` maps onto it.
    pub alias: &'static str,
}

/// The per-model limits a manifest may declare (`budgetLimit`, `timePeriod`).
pub const MODEL_LIMITS: &[ModelLimit] = &[
    ModelLimit {
        key: "max_budget",
        alias: "budget_limit",
    },
    ModelLimit {
        key: "budget_duration",
        alias: "time_period",
    },
];

/// Whether two JSON values mean the same limit (numbers by value, `1.50` == `1.5`).
pub fn same_meaning(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

/// A JSON object kept as text: each member's value stays exactly as it was written, in its
/// order. Only values set through [`RawObject::set`] are encoded here.
#[derive(Clone, Debug, Default)]
pub struct RawObject(Vec<(String, Box<RawValue>)>);

impl RawObject {
    /// The object `text` holds; `None` when it is not a JSON object.
    pub fn parse(text: &str) -> Option<Self> {
        serde_json::from_str(text).ok()
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(k, _)| k.as_str())
    }

    /// The text of the member `key`.
    pub fn raw(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v.get())
    }

    /// The member `key`, decoded (for comparing a declared value by meaning).
    pub fn value(&self, key: &str) -> Option<Value> {
        self.raw(key).and_then(|r| serde_json::from_str(r).ok())
    }

    /// Set `key` to the text `raw` (a JSON value), in place or at the end.
    pub fn set_raw(&mut self, key: &str, raw: Box<RawValue>) {
        match self.0.iter_mut().find(|(k, _)| k == key) {
            Some((_, v)) => *v = raw,
            None => self.0.push((key.to_string(), raw)),
        }
    }

    /// Set `key` to `value`.
    pub fn set(&mut self, key: &str, value: &Value) {
        if let Ok(raw) = serde_json::value::to_raw_value(value) {
            self.set_raw(key, raw);
        }
    }

    pub fn remove(&mut self, key: &str) {
        self.0.retain(|(k, _)| k != key);
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The object as JSON text, every untouched member byte for byte as it was read.
    pub fn to_text(&self) -> String {
        let mut out = String::from("{");
        for (i, (k, v)) in self.0.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&Value::from(k.as_str()).to_string());
            out.push(':');
            out.push_str(v.get());
        }
        out.push('}');
        out
    }

    /// Keys whose text differs between `self` and `other` (in either).
    pub fn changed_keys<'a>(&'a self, other: &'a RawObject) -> Vec<&'a str> {
        let mut keys: Vec<&str> = Vec::new();
        for k in self.keys().chain(other.keys()) {
            if self.raw(k) != other.raw(k) && !keys.contains(&k) {
                keys.push(k);
            }
        }
        keys
    }
}

impl<'de> serde::Deserialize<'de> for RawObject {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Members;
        impl<'de> Visitor<'de> for Members {
            type Value = RawObject;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawObject, A::Error> {
                let mut members = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, Box<RawValue>>()? {
                    members.push((k, v));
                }
                Ok(RawObject(members))
            }
        }
        deserializer.deserialize_map(Members)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn untouched_members_keep_their_text() {
        let text = r#"{"big": 123456789012345678901234567890, "money": 19.999999999999999999, "p": 1.50, "x": "1"}"#;
        let mut o = RawObject::parse(text).expect("object");
        o.set("x", &Value::from("2"));
        assert_eq!(
            o.to_text(),
            r#"{"big":123456789012345678901234567890,"money":19.999999999999999999,"p":1.50,"x":"2"}"#
        );
        assert!(RawObject::parse(r#"["legacy", {"a": 1}]"#).is_none());
        assert!(same_meaning(
            &serde_json::json!(1.5),
            &serde_json::json!(1.50)
        ));
    }

    #[test]
    fn every_limit_has_one_entry() {
        for (i, l) in BUDGET_LIMITS.iter().enumerate() {
            assert!(BUDGET_LIMITS[i + 1..].iter().all(|o| o.column != l.column));
        }
    }
}
