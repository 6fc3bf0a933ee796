//! `validate`: every check on a manifest set that needs no database. Reading and parsing
//! (with duplicate names) is `ManifestSet::load`; this adds the rules the CRDs state (the
//! engine's spec validation) and the rules across objects of one set: an organization id
//! claimed by two `Organization`s, and an `organizationRef` naming an `Organization` that is
//! not among the manifests. Every object is checked, and every error is returned.

use std::collections::HashMap;

use crate::cli::manifest::{DEFAULT_NAMESPACE, ManifestError, ManifestSet, Source};
use crate::engine::{DesiredMember, DesiredOrganization, ObjectKey, OrganizationTarget};
use crate::error::EngineError;

/// The errors of a loaded set: its reading errors, then each object's, in manifest order.
pub fn check(set: &ManifestSet, actor: &str) -> Vec<ManifestError> {
    let mut errors = set.errors.clone();
    let mut claimed: HashMap<String, ObjectKey> = HashMap::new();
    for loaded in &set.organizations {
        let key = key_of(&loaded.object.metadata);
        let object = format!("Organization {key}");
        match DesiredOrganization::from_spec(key.clone(), &loaded.object.spec, actor) {
            Err(e) => errors.push(error(&loaded.source, &object, &e)),
            Ok(desired) => {
                if let Some(other) = claimed.get(&desired.organization_id) {
                    errors.push(ManifestError {
                        source: Some(loaded.source.clone()),
                        object: Some(object),
                        field: Some("spec.organizationId".into()),
                        message: format!(
                            "organization {} is already claimed by Organization {other} in these manifests; give each Organization its own organizationId",
                            desired.organization_id
                        ),
                    });
                } else {
                    claimed.insert(desired.organization_id, key);
                }
            }
        }
    }
    for loaded in &set.members {
        let key = key_of(&loaded.object.metadata);
        let object = format!("OrganizationMember {key}");
        match DesiredMember::from_spec(key.clone(), &loaded.object.spec) {
            Err(e) => errors.push(error(&loaded.source, &object, &e)),
            Ok(desired) => {
                if let OrganizationTarget::Resource(name) = &desired.organization {
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
                            message: format!(
                                "Organization {org_key} is not among the manifests; add it, or name an existing organization with spec.organizationId"
                            ),
                        });
                    }
                }
            }
        }
    }
    errors
}

fn key_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> ObjectKey {
    ObjectKey::new(
        meta.namespace.as_deref().unwrap_or(DEFAULT_NAMESPACE),
        meta.name.as_deref().unwrap_or_default(),
    )
}

fn error(source: &Source, object: &str, err: &EngineError) -> ManifestError {
    let (field, message) = match err {
        EngineError::InvalidSpec { field, message }
        | EngineError::BudgetNotFound { field, message } => (Some(field.clone()), message.clone()),
        other => (None, other.to_string()),
    };
    ManifestError {
        source: Some(source.clone()),
        object: Some(object.to_string()),
        field,
        message,
    }
}
