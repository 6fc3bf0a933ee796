//! Validation of specs, pure. Mirrors the CRD's OpenAPI and CEL rules so the offline CLI and a
//! cluster without the CRD's validation reject the same input with the same field names.

use serde_json::{Map, Value};

use crate::crd::{
    BudgetSpec, METADATA_MAX_DEPTH, METADATA_MAX_ITEMS, METADATA_MAX_PROPERTIES,
    METADATA_MAX_STRING_LENGTH, OrganizationMemberSpec, OrganizationSpec,
};
use crate::error::{EngineError, FieldError};

pub use crate::duration::parse_duration;
pub use crate::store::OWNER_KEY;

const MAX_ID_LEN: usize = 128;

/// The most broken rules one object reports; past it they are counted ("and N more"), so a
/// spec with thousands of bad metadata keys gives a bounded list.
pub const MAX_SPEC_ERRORS: usize = 20;

/// The broken rules of one object, in the order they are checked: the first
/// [`MAX_SPEC_ERRORS`] kept, the others counted.
#[derive(Debug, Default)]
struct Problems {
    kept: Vec<FieldError>,
    omitted: usize,
}

impl Problems {
    /// Record a rule that broke.
    fn push(&mut self, field: impl Into<String>, message: impl Into<String>) {
        if self.kept.len() < MAX_SPEC_ERRORS {
            self.kept.push(FieldError::new(field, message));
        } else {
            self.omitted += 1;
        }
    }

    /// Record what a per-field check found; true when it passed (so a check that depends on
    /// it can run).
    fn check(&mut self, result: Result<(), EngineError>) -> bool {
        let Err(err) = result else {
            return true;
        };
        let (rules, omitted) = err.broken_rules();
        if rules.is_empty() {
            // The per-field checks only return invalid fields; keep anything else worded.
            self.push("spec", err.to_string());
        }
        for rule in rules {
            self.push(rule.field, rule.message);
        }
        self.omitted += omitted;
        false
    }

    fn into_result(self) -> Result<(), EngineError> {
        match EngineError::invalid_fields(self.kept, self.omitted) {
            None => Ok(()),
            Some(err) => Err(err),
        }
    }
}

/// Check an `Organization` spec: every broken rule, each with its field path, in the order
/// of the fields (at most [`MAX_SPEC_ERRORS`] listed).
pub fn validate_organization(name: &str, spec: &OrganizationSpec) -> Result<(), EngineError> {
    let mut p = Problems::default();
    p.check(validate_name("metadata.name", name));
    if let Some(alias) = &spec.alias {
        p.check(check_len("spec.alias", alias, 1, 256));
    }
    if let Some(id) = &spec.organization_id
        && p.check(check_len("spec.organizationId", id, 1, MAX_ID_LEN))
        && !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._:@-".contains(c))
    {
        p.push(
            "spec.organizationId",
            "may only contain letters, digits and . _ : @ -",
        );
    }
    if spec.models.len() > 256 {
        p.push("spec.models", "at most 256 models");
    }
    for (i, m) in spec.models.iter().enumerate() {
        p.check(check_len(&format!("spec.models[{i}]"), m, 1, 256));
    }
    if spec.budget.is_some() && spec.budget_ref.is_some() {
        p.push(
            "spec.budgetRef",
            "budget and budgetRef are mutually exclusive: set one of them, or neither",
        );
    }
    if let Some(budget) = &spec.budget {
        validate_budget(&mut p, "spec.budget", budget);
    }
    if let Some(r) = &spec.budget_ref {
        p.check(check_len(
            "spec.budgetRef.budgetId",
            &r.budget_id,
            1,
            MAX_ID_LEN,
        ));
    }
    if let Some(meta) = &spec.metadata {
        if meta.contains_key(OWNER_KEY) {
            p.push(
                format!("spec.metadata.{OWNER_KEY}"),
                "this key is reserved for the operator's ownership marker: remove it",
            );
        }
        check_metadata_object(&mut p, "spec.metadata", meta, 1);
    }
    p.into_result()
}

/// The bounds the CRD's `spec.metadata` schema enforces (see `crd::bounded_metadata`), and
/// text PostgreSQL can store, in keys and values at every level.
fn check_metadata_object(p: &mut Problems, path: &str, map: &Map<String, Value>, level: usize) {
    if map.len() > METADATA_MAX_PROPERTIES {
        p.push(
            path,
            format!(
                "Too many: {}: must have at most {METADATA_MAX_PROPERTIES} keys",
                map.len()
            ),
        );
    }
    for (key, value) in map {
        let child = format!("{path}.{key}");
        // A key PostgreSQL cannot store: what it holds is not looked at.
        if p.check(check_storable_text(&child, key)) {
            check_metadata_value(p, &child, value, level + 1);
        }
    }
}

fn check_metadata_value(p: &mut Problems, path: &str, value: &Value, level: usize) {
    let too_deep = || {
        format!(
            "nested too deep: spec.metadata holds at most {METADATA_MAX_DEPTH} levels of objects and arrays"
        )
    };
    match value {
        Value::Object(map) if level > METADATA_MAX_DEPTH && !map.is_empty() => {
            p.push(path, too_deep())
        }
        Value::Array(items) if level > METADATA_MAX_DEPTH && !items.is_empty() => {
            p.push(path, too_deep())
        }
        Value::Object(map) => check_metadata_object(p, path, map, level),
        Value::Array(items) => {
            if items.len() > METADATA_MAX_ITEMS {
                p.push(
                    path,
                    format!(
                        "Too many: {}: must have at most {METADATA_MAX_ITEMS} items",
                        items.len()
                    ),
                );
            }
            for (i, item) in items.iter().enumerate() {
                check_metadata_value(p, &format!("{path}[{i}]"), item, level + 1);
            }
        }
        Value::String(text) => {
            p.check(check_len(path, text, 0, METADATA_MAX_STRING_LENGTH));
        }
        _ => {}
    }
}

fn validate_budget(p: &mut Problems, path: &str, b: &BudgetSpec) {
    p.check(check_money(&format!("{path}.maxBudget"), b.max_budget));
    p.check(check_money(&format!("{path}.softBudget"), b.soft_budget));
    p.check(check_non_negative(&format!("{path}.tpmLimit"), b.tpm_limit));
    p.check(check_non_negative(&format!("{path}.rpmLimit"), b.rpm_limit));
    p.check(check_non_negative(
        &format!("{path}.maxParallelRequests"),
        b.max_parallel_requests.map(i64::from),
    ));
    if let Some(d) = &b.budget_duration {
        p.check(check_duration(&format!("{path}.budgetDuration"), d));
    }
    if b.model_max_budget.len() > 256 {
        p.push(format!("{path}.modelMaxBudget"), "at most 256 models");
    }
    for (model, mb) in &b.model_max_budget {
        let at = format!("{path}.modelMaxBudget.{model}");
        p.check(check_len(&at, model, 1, 256));
        p.check(check_money(
            &format!("{at}.budgetLimit"),
            Some(mb.budget_limit),
        ));
        if let Some(t) = &mb.time_period {
            p.check(check_duration(&format!("{at}.timePeriod"), t));
        }
    }
}

/// Check an `OrganizationMember` spec: every broken rule, as [`validate_organization`].
pub fn validate_member(name: &str, spec: &OrganizationMemberSpec) -> Result<(), EngineError> {
    let mut p = Problems::default();
    p.check(validate_name("metadata.name", name));
    let (reference, id) = (&spec.organization_ref, &spec.organization_id);
    if reference.is_some() == id.is_some() {
        p.push(
            "spec.organizationRef",
            "set exactly one of organizationRef (an Organization in this namespace) or organizationId (an organization not managed here)",
        );
    }
    if let Some(r) = reference {
        p.check(validate_name("spec.organizationRef.name", &r.name));
    }
    if let Some(id) = id {
        p.check(check_len("spec.organizationId", id, 1, MAX_ID_LEN));
    }
    if spec.user.user_id.is_none() && spec.user.email.is_none() {
        p.push("spec.user", "set user.userId, user.email, or both");
    }
    if let Some(id) = &spec.user.user_id {
        p.check(check_len("spec.user.userId", id, 1, 256));
    }
    if let Some(email) = &spec.user.email {
        p.check(validate_email("spec.user.email", email));
    }
    p.check(check_money(
        "spec.maxBudgetInOrganization",
        spec.max_budget_in_organization,
    ));
    p.into_result()
}

/// An email address as the CRD takes it (`^[^@\s]+@[^@\s]+$`, 3 to 320 characters).
pub fn validate_email(field: &str, email: &str) -> Result<(), EngineError> {
    check_len(field, email, 3, 320)?;
    let parts: Vec<&str> = email.split('@').collect();
    if parts.len() != 2
        || parts.iter().any(|p| p.is_empty())
        || email.chars().any(char::is_whitespace)
    {
        return Err(EngineError::invalid(
            field,
            format!("{email:?} is not an email address (expected name@domain)"),
        ));
    }
    Ok(())
}

/// A Kubernetes object name: a DNS-1123 subdomain, worded as the API server words it.
fn validate_name(field: &str, name: &str) -> Result<(), EngineError> {
    if name.is_empty() {
        return Err(EngineError::invalid(
            field,
            "Required value: name or generateName is required",
        ));
    }
    if name.len() > 253 {
        return Err(EngineError::invalid(
            field,
            format!("Invalid value: {name:?}: must be no more than 253 characters"),
        ));
    }
    if !name.split('.').all(is_dns_label) {
        return Err(EngineError::invalid(
            field,
            format!(
                "Invalid value: {name:?}: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
            ),
        ));
    }
    Ok(())
}

/// A namespace: a DNS-1123 label, worded as the API server words it.
pub fn validate_namespace(field: &str, namespace: &str) -> Result<(), EngineError> {
    if namespace.len() > 63 {
        return Err(EngineError::invalid(
            field,
            format!("Invalid value: {namespace:?}: must be no more than 63 characters"),
        ));
    }
    if !is_dns_label(namespace) {
        return Err(EngineError::invalid(
            field,
            format!(
                "Invalid value: {namespace:?}: a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
            ),
        ));
    }
    Ok(())
}

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?`
fn is_dns_label(label: &str) -> bool {
    !label.is_empty()
        && label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !label.starts_with('-')
        && !label.ends_with('-')
}

/// PostgreSQL's `text` and `jsonb` cannot hold U+0000; refuse it before any write so both
/// stores agree.
fn check_storable_text(field: &str, value: &str) -> Result<(), EngineError> {
    if value.contains('\0') {
        return Err(EngineError::invalid(
            field,
            "must not contain NUL characters (\\u0000): PostgreSQL cannot store them",
        ));
    }
    Ok(())
}

fn check_len(field: &str, value: &str, min: usize, max: usize) -> Result<(), EngineError> {
    check_storable_text(field, value)?;
    let n = value.chars().count();
    if n < min || n > max {
        return Err(EngineError::invalid(
            field,
            format!("must be {min} to {max} characters long (got {n})"),
        ));
    }
    Ok(())
}

fn check_money(field: &str, value: Option<f64>) -> Result<(), EngineError> {
    match value {
        Some(v) if !v.is_finite() => Err(EngineError::invalid(field, "must be a finite number")),
        Some(v) if v < 0.0 => Err(EngineError::invalid(
            field,
            format!("must be zero or more (got {v})"),
        )),
        _ => Ok(()),
    }
}

fn check_non_negative(field: &str, value: Option<i64>) -> Result<(), EngineError> {
    match value {
        Some(v) if v < 0 => Err(EngineError::invalid(
            field,
            format!("must be zero or more (got {v})"),
        )),
        _ => Ok(()),
    }
}

fn check_duration(field: &str, value: &str) -> Result<(), EngineError> {
    if parse_duration(value).is_some() {
        Ok(())
    } else {
        Err(EngineError::invalid(
            field,
            format!(
                "{value:?} is not a budget duration LiteLLM accepts: use a number and a unit, such as 30s, 30m, 24h, 30d or 2w, or one of 1mo, hourly, daily, weekly, monthly (LiteLLM's monthly reset takes only 1mo)"
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{BudgetReference, ModelBudget, OrganizationReference, UserSelector};

    /// The field of the first broken rule.
    fn field_of(r: Result<(), EngineError>) -> String {
        match r {
            Err(EngineError::InvalidSpec { field, .. }) => field,
            other => panic!("expected InvalidSpec, got {other:?}"),
        }
    }

    /// The fields of every broken rule listed, in order, and the number past the cap.
    fn fields_of(r: Result<(), EngineError>) -> (Vec<String>, usize) {
        match r {
            Err(e @ EngineError::InvalidSpec { .. }) => {
                let (rules, omitted) = e.broken_rules();
                (rules.into_iter().map(|r| r.field).collect(), omitted)
            }
            other => panic!("expected InvalidSpec, got {other:?}"),
        }
    }

    #[test]
    fn every_broken_rule_of_an_organization_is_listed_in_order() {
        let spec = OrganizationSpec {
            alias: Some(String::new()),
            organization_id: Some("has space".into()),
            budget: Some(BudgetSpec {
                max_budget: Some(-1.0),
                ..Default::default()
            }),
            ..Default::default()
        };
        let err = validate_organization("a", &spec).expect_err("invalid");
        assert_eq!(
            fields_of(Err(err)),
            (
                vec![
                    "spec.alias".to_string(),
                    "spec.organizationId".to_string(),
                    "spec.budget.maxBudget".to_string(),
                ],
                0
            )
        );
        // Shown as the first rule, then the names of the others.
        let err = validate_organization("a", &spec).expect_err("invalid");
        assert_eq!(
            err.to_string(),
            "spec.alias: must be 1 to 256 characters long (got 0); and 2 more: spec.organizationId, spec.budget.maxBudget"
        );
        assert_eq!(err.next_step(), crate::error::NextStep::AwaitChange);
        // The name too, and both budgets with each one's own rules.
        let spec = OrganizationSpec {
            budget: Some(BudgetSpec {
                budget_duration: Some("2mo".into()),
                tpm_limit: Some(-1),
                ..Default::default()
            }),
            budget_ref: Some(BudgetReference {
                budget_id: String::new(),
            }),
            ..Default::default()
        };
        assert_eq!(
            fields_of(validate_organization("Bad_Name", &spec)).0,
            [
                "metadata.name",
                "spec.budgetRef",
                "spec.budget.tpmLimit",
                "spec.budget.budgetDuration",
                "spec.budgetRef.budgetId",
            ]
        );
    }

    #[test]
    fn a_field_reports_one_rule_and_dependent_checks_are_skipped() {
        // Too long and full of characters it may not hold: the length only.
        let spec = OrganizationSpec {
            organization_id: Some(" ".repeat(MAX_ID_LEN + 1)),
            ..Default::default()
        };
        let err = validate_organization("a", &spec).expect_err("invalid");
        assert_eq!(fields_of(Err(err)).0, ["spec.organizationId"]);
        // A metadata key PostgreSQL cannot store: what it holds is not looked at.
        let spec = OrganizationSpec {
            metadata: serde_json::json!({"k\u{0}": "\u{0}", "ok": "\u{0}"})
                .as_object()
                .cloned(),
            ..Default::default()
        };
        assert_eq!(
            fields_of(validate_organization("a", &spec)).0,
            ["spec.metadata.k\u{0}", "spec.metadata.ok"]
        );
    }

    #[test]
    fn every_broken_rule_of_a_member_is_listed() {
        let spec = OrganizationMemberSpec {
            organization_id: Some("o".into()),
            user: UserSelector {
                user_id: None,
                email: Some("not-an-email".into()),
            },
            max_budget_in_organization: Some(-1.0),
            ..Default::default()
        };
        assert_eq!(
            fields_of(validate_member("m", &spec)),
            (
                vec![
                    "spec.user.email".to_string(),
                    "spec.maxBudgetInOrganization".to_string()
                ],
                0
            )
        );
        // Neither organization nor user: both named; both organizations: each checked too.
        let spec = OrganizationMemberSpec {
            organization_ref: Some(OrganizationReference {
                name: "Not_A_Name".into(),
            }),
            organization_id: Some("x".into()),
            ..Default::default()
        };
        assert_eq!(
            fields_of(validate_member("m", &spec)).0,
            [
                "spec.organizationRef",
                "spec.organizationRef.name",
                "spec.user"
            ]
        );
    }

    #[test]
    fn the_list_is_capped_and_the_rest_counted() {
        let bad: Map<String, Value> = (0..10_000)
            .map(|i| (format!("k{i:05}"), Value::from("\u{0}")))
            .collect();
        let spec = OrganizationSpec {
            alias: Some(String::new()),
            metadata: Some(bad),
            ..Default::default()
        };
        let err = validate_organization("a", &spec).expect_err("invalid");
        let (fields, omitted) = fields_of(validate_organization("a", &spec));
        assert_eq!(fields.len(), MAX_SPEC_ERRORS);
        assert_eq!(fields[0], "spec.alias");
        // Too many keys, then each key's own rule.
        assert_eq!(fields[1], "spec.metadata");
        assert_eq!(fields[2], "spec.metadata.k00000");
        assert_eq!(fields.len() + omitted, 2 + 10_000);
        // The text names the first, counts the rest and stays small.
        let text = err.to_string();
        assert!(
            text.starts_with("spec.alias: must be 1 to 256 characters long (got 0); and 10001 more: spec.metadata, spec.metadata.k00000, "),
            "{text}"
        );
        assert!(text.ends_with(", 9982 not named here"), "{text}");
        assert!(text.len() < 4096, "{}", text.len());
        // Long field names are cut, and the list stops at its bound.
        let long: Map<String, Value> = (0..30)
            .map(|i| (format!("{i:02}{}", "k".repeat(5000)), Value::from("\u{0}")))
            .collect();
        let spec = OrganizationSpec {
            budget: Some(BudgetSpec {
                budget_duration: Some("x".repeat(100_000)),
                ..Default::default()
            }),
            metadata: Some(long),
            ..Default::default()
        };
        let text = validate_organization("a", &spec)
            .expect_err("invalid")
            .to_string();
        assert!(
            text.starts_with("spec.budget.budgetDuration: \"xxx"),
            "{text}"
        );
        assert!(text.len() < 4096, "{}", text.len());
        assert!(
            text.contains("; and 30 more: spec.metadata.00kkk"),
            "{text}"
        );
        assert!(text.ends_with(" not named here"), "{text}");
    }

    #[test]
    fn organization_rules_name_the_field() {
        let mut spec = OrganizationSpec {
            budget: Some(BudgetSpec::default()),
            budget_ref: Some(BudgetReference {
                budget_id: "b".into(),
            }),
            ..Default::default()
        };
        assert_eq!(
            field_of(validate_organization("a", &spec)),
            "spec.budgetRef"
        );
        spec.budget_ref = None;
        spec.budget = Some(BudgetSpec {
            max_budget: Some(-1.0),
            ..Default::default()
        });
        assert_eq!(
            field_of(validate_organization("a", &spec)),
            "spec.budget.maxBudget"
        );
        spec.budget = Some(BudgetSpec {
            budget_duration: Some("2mo".into()),
            ..Default::default()
        });
        assert_eq!(
            field_of(validate_organization("a", &spec)),
            "spec.budget.budgetDuration"
        );
        let mut models = std::collections::BTreeMap::new();
        models.insert(
            "gpt-4o".to_string(),
            ModelBudget {
                budget_limit: f64::NAN,
                time_period: None,
            },
        );
        spec.budget = Some(BudgetSpec {
            model_max_budget: models,
            ..Default::default()
        });
        assert_eq!(
            field_of(validate_organization("a", &spec)),
            "spec.budget.modelMaxBudget.gpt-4o.budgetLimit"
        );
        spec.budget = None;
        assert!(validate_organization("a", &spec).is_ok());
        assert_eq!(
            field_of(validate_organization("Bad_Name", &spec)),
            "metadata.name"
        );
        spec.organization_id = Some("has space".into());
        assert_eq!(
            field_of(validate_organization("a", &spec)),
            "spec.organizationId"
        );
        spec.organization_id = None;
        let mut meta = serde_json::Map::new();
        meta.insert(OWNER_KEY.into(), serde_json::json!("x"));
        spec.metadata = Some(meta);
        assert!(field_of(validate_organization("a", &spec)).starts_with("spec.metadata."));
    }

    #[test]
    fn metadata_is_bounded_as_the_crd_bounds_it() {
        let nested = |levels: usize, leaf: serde_json::Value| {
            let mut v = leaf;
            for _ in 0..levels {
                v = serde_json::json!({ "a": v });
            }
            v
        };
        let with = |metadata: serde_json::Value| OrganizationSpec {
            metadata: metadata.as_object().cloned(),
            ..Default::default()
        };
        // Six levels of objects and arrays, scalars or empty containers below: fine.
        let six = nested(4, serde_json::json!({"l": [1, {}, []], "o": {"k": "v"}}));
        assert!(validate_organization("a", &with(six)).is_ok());
        let seven = nested(7, serde_json::json!("x"));
        assert_eq!(
            field_of(validate_organization("a", &with(seven))),
            "spec.metadata.a.a.a.a.a.a"
        );
        let in_arrays = nested(4, serde_json::json!({"l": [[1]]}));
        assert_eq!(
            field_of(validate_organization("a", &with(in_arrays))),
            "spec.metadata.a.a.a.a.l[0]"
        );
        let wide: Map<String, Value> = (0..=METADATA_MAX_PROPERTIES)
            .map(|i| (format!("k{i}"), Value::from(i)))
            .collect();
        assert_eq!(
            field_of(validate_organization("a", &with(Value::Object(wide)))),
            "spec.metadata"
        );
        let long = serde_json::json!({"t": {"s": "x".repeat(METADATA_MAX_STRING_LENGTH + 1)}});
        assert_eq!(
            field_of(validate_organization("a", &with(long))),
            "spec.metadata.t.s"
        );
        let items = serde_json::json!({"l": vec![1; METADATA_MAX_ITEMS + 1]});
        assert_eq!(
            field_of(validate_organization("a", &with(items))),
            "spec.metadata.l"
        );
    }

    #[test]
    fn nul_and_names_are_refused_with_the_field() {
        let spec = OrganizationSpec {
            alias: Some("a\0".into()),
            ..Default::default()
        };
        assert_eq!(field_of(validate_organization("a", &spec)), "spec.alias");
        let spec = OrganizationSpec {
            metadata: serde_json::json!({"k": ["ok", "\0"]}).as_object().cloned(),
            ..Default::default()
        };
        assert_eq!(
            field_of(validate_organization("a", &spec)),
            "spec.metadata.k[1]"
        );
        for bad in ["", "A", "a/b", "a..b", "-a", "a-", "a\nb", &"a".repeat(254)] {
            assert_eq!(
                field_of(validate_organization(bad, &OrganizationSpec::default())),
                "metadata.name",
                "{bad:?}"
            );
        }
        for ok in ["a", "a.b-c", "0x", &"a".repeat(253)] {
            assert!(validate_organization(ok, &OrganizationSpec::default()).is_ok());
        }
        for bad in ["", "a.b", "a/b", "A", "-a", "a\n", &"a".repeat(64)] {
            assert_eq!(
                field_of(validate_namespace("metadata.namespace", bad)),
                "metadata.namespace",
                "{bad:?}"
            );
        }
        assert!(validate_namespace("metadata.namespace", &"a".repeat(63)).is_ok());
    }

    #[test]
    fn member_rules_name_the_field() {
        let mut spec = OrganizationMemberSpec {
            organization_ref: Some(OrganizationReference {
                name: "acme".into(),
            }),
            organization_id: Some("x".into()),
            user: UserSelector {
                user_id: Some("u".into()),
                email: None,
            },
            ..Default::default()
        };
        assert_eq!(
            field_of(validate_member("m", &spec)),
            "spec.organizationRef"
        );
        spec.organization_id = None;
        assert!(validate_member("m", &spec).is_ok());
        spec.user = UserSelector::default();
        assert_eq!(field_of(validate_member("m", &spec)), "spec.user");
        spec.user.email = Some("not-an-email".into());
        assert_eq!(field_of(validate_member("m", &spec)), "spec.user.email");
        spec.user.email = Some("a@b.c".into());
        spec.max_budget_in_organization = Some(-5.0);
        assert_eq!(
            field_of(validate_member("m", &spec)),
            "spec.maxBudgetInOrganization"
        );
    }
}
