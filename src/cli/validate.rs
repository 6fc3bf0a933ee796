//! `validate`: every check on a manifest set that needs no database. Reading and parsing
//! (with duplicate names) is `ManifestSet::load`; this adds the rules the CRDs state (the
//! engine's spec validation) and the rules across objects of one set: an organization id
//! claimed by two `Organization`s, and an `organizationRef` naming an `Organization` that is
//! not among the manifests. Every object is checked, and every error is returned.

use std::collections::HashMap;

use crate::cli::manifest::{DEFAULT_NAMESPACE, ManifestError, ManifestSet, Source};
use crate::engine::validate::MAX_SPEC_ERRORS;
use crate::engine::{DesiredMember, DesiredOrganization, ObjectKey, OrganizationTarget};
use crate::error::EngineError;

/// The errors of a loaded set: its reading errors, then each object's, in manifest order.
/// An object with spec errors lists every broken rule (up to the engine's cap), and still
/// takes part in the checks across objects where the field they read is itself valid.
pub fn check(set: &ManifestSet, actor: &str) -> Vec<ManifestError> {
    let mut errors = set.errors.clone();
    let mut claimed: HashMap<String, ObjectKey> = HashMap::new();
    for loaded in &set.organizations {
        let key = key_of(&loaded.object.metadata);
        let object = format!("Organization {key}");
        let spec = &loaded.object.spec;
        let mut id_valid = true;
        if let Err(e) = DesiredOrganization::from_spec(key.clone(), spec, actor) {
            id_valid = !names_field(&e, "spec.organizationId");
            errors.extend(object_errors(Some(&loaded.source), &object, &e));
        }
        if !id_valid {
            continue;
        }
        let (organization_id, _) = DesiredOrganization::organization_id_of(&key, spec);
        if let Some(other) = claimed.get(&organization_id) {
            errors.push(ManifestError {
                source: Some(loaded.source.clone()),
                object: Some(object),
                field: Some("spec.organizationId".into()),
                message: format!(
                    "organization {organization_id} is already claimed by Organization {other} in these manifests; give each Organization its own organizationId"
                ),
            });
        } else {
            claimed.insert(organization_id, key);
        }
    }
    for loaded in &set.members {
        let key = key_of(&loaded.object.metadata);
        let object = format!("OrganizationMember {key}");
        let spec = &loaded.object.spec;
        let mut target = match (&spec.organization_ref, &spec.organization_id) {
            (Some(r), None) => Some(OrganizationTarget::Resource(r.name.clone())),
            _ => None,
        };
        if let Err(e) = DesiredMember::from_spec(key.clone(), spec) {
            if names_field(&e, "spec.organizationRef.name") {
                target = None;
            }
            errors.extend(object_errors(Some(&loaded.source), &object, &e));
        }
        if let Some(OrganizationTarget::Resource(name)) = &target {
            let org_key = ObjectKey::new(key.namespace.clone(), name.clone());
            let declared = set
                .organizations
                .iter()
                .any(|o| key_of(&o.object.metadata) == org_key);
            if !declared {
                errors.push(ManifestError {
                    source: Some(loaded.source.clone()),
                    object: Some(object),
                    field: Some("spec.organizationRef.name".into()),
                    message: undeclared_organization(&org_key),
                });
            }
        }
    }
    errors
}

/// True when `field` is among the broken rules `err` lists.
fn names_field(err: &EngineError, field: &str) -> bool {
    err.broken_rules().0.iter().any(|r| r.field == field)
}

/// An object's error as lines of the report: one per broken rule of an invalid spec (each
/// with its field), and a last one saying how many more there are past the cap; any other
/// error is one line, worded by `other`.
pub fn errors_of(
    source: Option<&Source>,
    object: &str,
    err: &EngineError,
    other: impl FnOnce(&EngineError) -> (Option<String>, String),
) -> Vec<ManifestError> {
    let line = |field: Option<String>, message: String| ManifestError {
        source: source.cloned(),
        object: Some(object.to_string()),
        field,
        message,
    };
    let (rules, omitted) = err.broken_rules();
    if rules.is_empty() {
        let (field, message) = other(err);
        return vec![line(field, message)];
    }
    let mut lines: Vec<ManifestError> = rules
        .into_iter()
        .map(|r| line(Some(r.field), r.message))
        .collect();
    if omitted > 0 {
        lines.push(line(
            None,
            format!(
                "and {omitted} more broken {} not listed (at most {MAX_SPEC_ERRORS} are listed per object)",
                if omitted == 1 { "rule" } else { "rules" }
            ),
        ));
    }
    lines
}

/// The rule an `organizationRef` breaks when it names an `Organization` the manifests do not
/// hold (field `spec.organizationRef.name`): `validate`, `plan` and `apply` word it alike.
pub fn undeclared_organization(org_key: &ObjectKey) -> String {
    format!(
        "Organization {org_key} is not among the manifests; add it, or name an existing organization with spec.organizationId"
    )
}

fn key_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> ObjectKey {
    ObjectKey::new(
        meta.namespace.as_deref().unwrap_or(DEFAULT_NAMESPACE),
        meta.name.as_deref().unwrap_or_default(),
    )
}

fn object_errors(source: Option<&Source>, object: &str, err: &EngineError) -> Vec<ManifestError> {
    errors_of(source, object, err, |err| match err {
        EngineError::BudgetNotFound { field, message } => (Some(field.clone()), message.clone()),
        other => (None, other.to_string()),
    })
}
