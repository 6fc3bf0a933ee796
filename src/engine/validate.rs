//! Validation of specs, pure. Mirrors the CRD's OpenAPI and CEL rules so the offline CLI and a
//! cluster without the CRD's validation reject the same input with the same field names.

use crate::crd::{BudgetSpec, OrganizationMemberSpec, OrganizationSpec};
use crate::error::EngineError;

pub use crate::duration::parse_duration;
pub use crate::store::OWNER_KEY;

const MAX_ID_LEN: usize = 128;

/// Check an `Organization` spec; the first broken rule is returned with its field path.
pub fn validate_organization(name: &str, spec: &OrganizationSpec) -> Result<(), EngineError> {
    validate_name("metadata.name", name)?;
    if let Some(alias) = &spec.alias {
        check_len("spec.alias", alias, 1, 256)?;
    }
    if let Some(id) = &spec.organization_id {
        check_len("spec.organizationId", id, 1, MAX_ID_LEN)?;
        if !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._:@-".contains(c))
        {
            return Err(EngineError::invalid(
                "spec.organizationId",
                "may only contain letters, digits and . _ : @ -",
            ));
        }
    }
    if spec.models.len() > 256 {
        return Err(EngineError::invalid("spec.models", "at most 256 models"));
    }
    for (i, m) in spec.models.iter().enumerate() {
        check_len(&format!("spec.models[{i}]"), m, 1, 256)?;
    }
    if spec.budget.is_some() && spec.budget_ref.is_some() {
        return Err(EngineError::invalid(
            "spec.budgetRef",
            "budget and budgetRef are mutually exclusive: set one of them, or neither",
        ));
    }
    if let Some(budget) = &spec.budget {
        validate_budget("spec.budget", budget)?;
    }
    if let Some(r) = &spec.budget_ref {
        check_len("spec.budgetRef.budgetId", &r.budget_id, 1, MAX_ID_LEN)?;
    }
    if let Some(meta) = &spec.metadata
        && meta.contains_key(OWNER_KEY)
    {
        return Err(EngineError::invalid(
            format!("spec.metadata.{OWNER_KEY}"),
            "this key is reserved for the operator's ownership marker: remove it",
        ));
    }
    Ok(())
}

fn validate_budget(path: &str, b: &BudgetSpec) -> Result<(), EngineError> {
    check_money(&format!("{path}.maxBudget"), b.max_budget)?;
    check_money(&format!("{path}.softBudget"), b.soft_budget)?;
    check_non_negative(&format!("{path}.tpmLimit"), b.tpm_limit)?;
    check_non_negative(&format!("{path}.rpmLimit"), b.rpm_limit)?;
    check_non_negative(
        &format!("{path}.maxParallelRequests"),
        b.max_parallel_requests.map(i64::from),
    )?;
    if let Some(d) = &b.budget_duration {
        check_duration(&format!("{path}.budgetDuration"), d)?;
    }
    if b.model_max_budget.len() > 256 {
        return Err(EngineError::invalid(
            format!("{path}.modelMaxBudget"),
            "at most 256 models",
        ));
    }
    for (model, mb) in &b.model_max_budget {
        let p = format!("{path}.modelMaxBudget.{model}");
        check_len(&p, model, 1, 256)?;
        check_money(&format!("{p}.budgetLimit"), Some(mb.budget_limit))?;
        if let Some(t) = &mb.time_period {
            check_duration(&format!("{p}.timePeriod"), t)?;
        }
    }
    Ok(())
}

/// Check an `OrganizationMember` spec.
pub fn validate_member(name: &str, spec: &OrganizationMemberSpec) -> Result<(), EngineError> {
    validate_name("metadata.name", name)?;
    match (&spec.organization_ref, &spec.organization_id) {
        (Some(_), Some(_)) | (None, None) => {
            return Err(EngineError::invalid(
                "spec.organizationRef",
                "set exactly one of organizationRef (an Organization in this namespace) or organizationId (an organization not managed here)",
            ));
        }
        (Some(r), None) => validate_name("spec.organizationRef.name", &r.name)?,
        (None, Some(id)) => check_len("spec.organizationId", id, 1, MAX_ID_LEN)?,
    }
    if spec.user.user_id.is_none() && spec.user.email.is_none() {
        return Err(EngineError::invalid(
            "spec.user",
            "set user.userId, user.email, or both",
        ));
    }
    if let Some(id) = &spec.user.user_id {
        check_len("spec.user.userId", id, 1, 256)?;
    }
    if let Some(email) = &spec.user.email {
        check_len("spec.user.email", email, 3, 320)?;
        let parts: Vec<&str> = email.split('@').collect();
        if parts.len() != 2
            || parts.iter().any(|p| p.is_empty())
            || email.chars().any(char::is_whitespace)
        {
            return Err(EngineError::invalid(
                "spec.user.email",
                format!("{email:?} is not an email address (expected name@domain)"),
            ));
        }
    }
    check_money(
        "spec.maxBudgetInOrganization",
        spec.max_budget_in_organization,
    )?;
    Ok(())
}

/// A Kubernetes object name: a DNS-1123 subdomain.
fn validate_name(field: &str, name: &str) -> Result<(), EngineError> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(EngineError::invalid(
            field,
            format!(
                "{name:?} is not a valid name: use at most 253 lowercase letters, digits, '-' or '.', starting and ending with a letter or digit"
            ),
        ))
    }
}

fn check_len(field: &str, value: &str, min: usize, max: usize) -> Result<(), EngineError> {
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
                "{value:?} is not a duration: use a number and a unit, such as 30s, 30m, 24h, 30d, 2w or 1mo"
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{BudgetReference, ModelBudget, OrganizationReference, UserSelector};

    fn field_of(r: Result<(), EngineError>) -> String {
        match r {
            Err(EngineError::InvalidSpec { field, .. }) => field,
            other => panic!("expected InvalidSpec, got {other:?}"),
        }
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
            budget_duration: Some("monthly".into()),
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
