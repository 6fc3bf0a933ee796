//! Reading manifests from files and folders: multi-document YAML and JSON, `litellm.dev` kinds
//! only, every problem reported with its file, document, object and field.

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::cli::{documents, files};
use crate::crd::{API_VERSION, GROUP, Organization, OrganizationMember};
use crate::engine::validate::validate_namespace;
use crate::error::EngineError;

/// Where a document came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Source {
    pub file: PathBuf,
    /// 1-based index of the document in its file.
    pub document: usize,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (document {})", self.file.display(), self.document)
    }
}

/// A resource read from a manifest, with its origin.
#[derive(Clone, Debug)]
pub struct Loaded<T> {
    pub source: Source,
    pub object: T,
}

/// A problem with one document or object.
#[derive(Clone, Debug, PartialEq)]
pub struct ManifestError {
    pub source: Option<Source>,
    /// `Kind namespace/name`, when known.
    pub object: Option<String>,
    /// Dotted path of the offending field, when known.
    pub field: Option<String>,
    pub message: String,
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(s) = &self.source {
            write!(f, "{s}: ")?;
        }
        if let Some(o) = &self.object {
            write!(f, "{o}: ")?;
        }
        if let Some(field) = &self.field {
            write!(f, "{field}: ")?;
        }
        write!(f, "{}", self.message)
    }
}

/// Everything read from the paths given with `-f`.
#[derive(Debug, Default)]
pub struct ManifestSet {
    pub organizations: Vec<Loaded<Organization>>,
    pub members: Vec<Loaded<OrganizationMember>>,
    /// Documents of other kinds, skipped.
    pub skipped: Vec<String>,
    /// Other things worth a line on stderr that are not errors (a symbolic link loop).
    pub notices: Vec<String>,
    pub errors: Vec<ManifestError>,
}

/// Namespace used for manifests that do not set `metadata.namespace`.
pub const DEFAULT_NAMESPACE: &str = "default";

impl ManifestSet {
    /// Read files and folders (recursively: `.yaml`, `.yml`, `.json`, in name order, symbolic
    /// links followed).
    pub fn load(paths: &[PathBuf]) -> Self {
        let mut set = Self::default();
        let found = files::find(paths);
        set.notices.extend(found.notices);
        for message in found.errors {
            set.errors.push(ManifestError {
                source: None,
                object: None,
                field: None,
                message,
            });
        }
        for file in found.files {
            match std::fs::read(&file) {
                Ok(bytes) => match String::from_utf8(bytes) {
                    Ok(text) => set.add_text(&file, &text),
                    Err(e) => set.errors.push(ManifestError {
                        source: None,
                        object: None,
                        field: None,
                        message: format!("cannot read {}: not UTF-8 text ({e})", file.display()),
                    }),
                },
                Err(e) => set.errors.push(ManifestError {
                    source: None,
                    object: None,
                    field: None,
                    message: format!("cannot read {}: {e}", file.display()),
                }),
            }
        }
        set.reject_duplicates();
        set
    }

    /// Parse one file's text (YAML, possibly multi-document, or JSON). Every document that
    /// cannot be read is reported; the others are still read.
    pub fn add_text(&mut self, file: &Path, text: &str) {
        let is_json = file.extension().is_some_and(|e| e == "json");
        for doc in documents::read(text, is_json) {
            let source = Source {
                file: file.to_path_buf(),
                document: doc.number,
            };
            match doc.content {
                Ok(Value::Null) => {}
                Ok(value) => self.add_value(source, value),
                Err(e) => self.errors.push(ManifestError {
                    source: Some(source),
                    object: None,
                    field: e.field,
                    message: e.message,
                }),
            }
        }
    }

    /// Whether every input was read without error (what `--prune` needs).
    pub fn is_complete(&self) -> bool {
        self.errors.is_empty()
    }

    fn add_value(&mut self, source: Source, value: Value) {
        let error =
            |object: Option<String>, field: Option<String>, message: String| ManifestError {
                source: Some(source.clone()),
                object,
                field,
                message,
            };
        let Value::Object(map) = &value else {
            self.errors.push(error(
                None,
                None,
                "expected a mapping with apiVersion, kind, metadata and spec".into(),
            ));
            return;
        };
        let api_version = map.get("apiVersion").and_then(Value::as_str).unwrap_or("");
        let kind = map.get("kind").and_then(Value::as_str).unwrap_or("");
        if kind == "List" && api_version == "v1" {
            if let Some(unknown) = unknown_key(map, &["apiVersion", "kind", "metadata", "items"]) {
                self.errors.push(error(
                    Some("List".into()),
                    Some(unknown.clone()),
                    format!(
                        "unknown field {unknown:?}: a List has apiVersion, kind, metadata and items"
                    ),
                ));
                return;
            }
            match map.get("items") {
                Some(Value::Array(items)) => {
                    for item in items.clone() {
                        self.add_value(source.clone(), item);
                    }
                }
                None | Some(Value::Null) => {}
                Some(_) => self.errors.push(error(
                    Some("List".into()),
                    Some("items".into()),
                    "must be a list of objects".into(),
                )),
            }
            return;
        }
        let group = api_version.split_once('/').map_or("", |(g, _)| g);
        let name = map
            .get("metadata")
            .and_then(|m| m.get("name"))
            .and_then(Value::as_str)
            .map(str::to_string);
        if group != GROUP {
            let what = if api_version.is_empty() && kind.is_empty() {
                "a document without apiVersion or kind".to_string()
            } else {
                format!("{api_version} {kind} {}", name.as_deref().unwrap_or(""))
            };
            self.skipped.push(format!(
                "{source}: skipping {} (not a litellm.dev kind)",
                what.trim()
            ));
            return;
        }
        let label = |ns: &str| {
            Some(format!(
                "{kind} {ns}/{}",
                name.as_deref().unwrap_or("<no name>")
            ))
        };
        let metadata = map.get("metadata");
        let namespace = metadata
            .and_then(|m| m.get("namespace"))
            .and_then(Value::as_str)
            .unwrap_or(DEFAULT_NAMESPACE)
            .to_string();
        if api_version != API_VERSION {
            self.errors.push(error(
                label(&namespace),
                Some("apiVersion".into()),
                format!("{api_version:?} is not served: use {API_VERSION}"),
            ));
            return;
        }
        // As the API server's strict field validation (kubectl's default) does.
        if let Some(unknown) = unknown_key(map, TOP_LEVEL_FIELDS) {
            self.errors.push(error(
                label(&namespace),
                Some(unknown.clone()),
                format!(
                    "strict decoding error: unknown field {unknown:?} (an object has apiVersion, kind, metadata, spec and status)"
                ),
            ));
            return;
        }
        match metadata {
            Some(Value::Object(meta)) => {
                if let Some(unknown) = unknown_key(meta, OBJECT_META_FIELDS) {
                    self.errors.push(error(
                        label(&namespace),
                        Some(format!("metadata.{unknown}")),
                        format!("strict decoding error: unknown field \"metadata.{unknown}\""),
                    ));
                    return;
                }
                match meta.get("namespace") {
                    None => {}
                    Some(Value::String(ns)) => {
                        if let Err(EngineError::InvalidSpec { field, message, .. }) =
                            validate_namespace("metadata.namespace", ns)
                        {
                            self.errors
                                .push(error(label(&namespace), Some(field), message));
                            return;
                        }
                    }
                    Some(other) => {
                        self.errors.push(error(
                            label(&namespace),
                            Some("metadata.namespace".into()),
                            format!("must be a string (got {other})"),
                        ));
                        return;
                    }
                }
            }
            None => {}
            Some(_) => {
                self.errors.push(error(
                    label(&namespace),
                    Some("metadata".into()),
                    "must be an object with name (and namespace, labels, annotations)".into(),
                ));
                return;
            }
        }
        if name.as_deref().unwrap_or("").is_empty() {
            self.errors.push(error(
                label(&namespace),
                Some("metadata.name".into()),
                "Required value: name or generateName is required (every object needs a name)"
                    .into(),
            ));
            return;
        }
        match kind {
            "Organization" => match parse::<Organization>(value.clone()) {
                Ok(mut org) => {
                    org.metadata.namespace = Some(namespace);
                    self.organizations.push(Loaded {
                        source,
                        object: org,
                    });
                }
                Err((field, message)) => self.errors.push(error(label(&namespace), field, message)),
            },
            "OrganizationMember" => match parse::<OrganizationMember>(value.clone()) {
                Ok(mut member) => {
                    member.metadata.namespace = Some(namespace);
                    self.members.push(Loaded {
                        source,
                        object: member,
                    });
                }
                Err((field, message)) => self.errors.push(error(label(&namespace), field, message)),
            },
            other => self.errors.push(error(
                label(&namespace),
                Some("kind".into()),
                format!(
                    "{other:?} is not a kind of {GROUP}: use Organization or OrganizationMember"
                ),
            )),
        }
    }

    fn reject_duplicates(&mut self) {
        let mut seen = HashSet::new();
        let mut errors = Vec::new();
        self.organizations.retain(|o| {
            let key = (
                o.object.metadata.namespace.clone(),
                o.object.metadata.name.clone(),
            );
            let fresh = seen.insert(key);
            if !fresh {
                errors.push(duplicate_error(
                    &o.source,
                    "Organization",
                    &o.object.metadata,
                ));
            }
            fresh
        });
        let mut seen = HashSet::new();
        self.members.retain(|m| {
            let key = (
                m.object.metadata.namespace.clone(),
                m.object.metadata.name.clone(),
            );
            let fresh = seen.insert(key);
            if !fresh {
                errors.push(duplicate_error(
                    &m.source,
                    "OrganizationMember",
                    &m.object.metadata,
                ));
            }
            fresh
        });
        self.errors.extend(errors);
    }

    /// Number of litellm.dev objects read.
    pub fn len(&self) -> usize {
        self.organizations.len() + self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn duplicate_error(
    source: &Source,
    kind: &str,
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> ManifestError {
    ManifestError {
        source: Some(source.clone()),
        object: Some(format!(
            "{kind} {}/{}",
            meta.namespace.as_deref().unwrap_or(DEFAULT_NAMESPACE),
            meta.name.as_deref().unwrap_or("")
        )),
        field: Some("metadata.name".into()),
        message: "defined more than once: each object must appear once".into(),
    }
}

/// The fields of a resource; anything else is refused, as the API server's strict field
/// validation refuses it.
const TOP_LEVEL_FIELDS: &[&str] = &["apiVersion", "kind", "metadata", "spec", "status"];

/// The fields of `ObjectMeta`.
const OBJECT_META_FIELDS: &[&str] = &[
    "name",
    "generateName",
    "namespace",
    "selfLink",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "labels",
    "annotations",
    "ownerReferences",
    "finalizers",
    "managedFields",
];

fn unknown_key<'a>(map: &'a serde_json::Map<String, Value>, known: &[&str]) -> Option<&'a String> {
    map.keys().find(|k| !known.contains(&k.as_str()))
}

/// Deserialize with the path of the failing field.
fn parse<T: DeserializeOwned>(value: Value) -> Result<T, (Option<String>, String)> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let field = (path != ".").then_some(path);
        (field, e.into_inner().to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> ManifestSet {
        let mut set = ManifestSet::default();
        set.add_text(Path::new("test.yaml"), text);
        set.reject_duplicates();
        set
    }

    #[test]
    fn reads_multi_document_yaml_and_skips_other_kinds() {
        let set = load(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n---\n\
             apiVersion: litellm.dev/v1alpha1\nkind: Organization\nmetadata: {name: acme}\nspec: {}\n---\n",
        );
        assert!(set.errors.is_empty(), "{:?}", set.errors);
        assert_eq!(set.organizations.len(), 1);
        assert_eq!(
            set.organizations[0].object.metadata.namespace.as_deref(),
            Some("default")
        );
        assert_eq!(set.skipped.len(), 1);
        assert!(set.skipped[0].contains("ConfigMap"));
    }

    #[test]
    fn unknown_field_names_the_path() {
        let set = load(
            "apiVersion: litellm.dev/v1alpha1\nkind: Organization\nmetadata: {name: acme}\n\
             spec: {budget: {maxBudjet: 3}}\n",
        );
        assert_eq!(set.errors.len(), 1);
        let e = &set.errors[0];
        assert_eq!(e.field.as_deref(), Some("spec.budget.maxBudjet"));
        assert!(e.message.contains("unknown field"), "{e}");
        assert_eq!(e.object.as_deref(), Some("Organization default/acme"));
        assert!(e.to_string().starts_with("test.yaml (document 1): "));
    }

    #[test]
    fn wrong_type_and_bad_role_name_the_field() {
        let set = load(
            "apiVersion: litellm.dev/v1alpha1\nkind: OrganizationMember\nmetadata: {name: m}\n\
             spec: {organizationId: x, user: {userId: u}, role: owner}\n---\n\
             apiVersion: litellm.dev/v1alpha1\nkind: Organization\nmetadata: {name: a}\n\
             spec: {budget: {maxBudget: lots}}\n",
        );
        assert_eq!(set.errors.len(), 2, "{:?}", set.errors);
        assert_eq!(set.errors[0].field.as_deref(), Some("spec.role"));
        assert_eq!(
            set.errors[1].field.as_deref(),
            Some("spec.budget.maxBudget")
        );
    }

    #[test]
    fn malformed_yaml_and_duplicates_are_errors() {
        for text in [
            "apiVersion: [unclosed\n",
            "apiVersion: litellm.dev/v1alpha1\nkind: [Organization\n",
        ] {
            let set = load(text);
            assert_eq!(set.errors.len(), 1, "{text}");
            assert!(set.errors[0].message.starts_with("invalid YAML"));
        }
        let doc =
            "apiVersion: litellm.dev/v1alpha1\nkind: Organization\nmetadata: {name: a}\nspec: {}\n";
        let set = load(&format!("{doc}---\n{doc}"));
        assert_eq!(set.organizations.len(), 1);
        assert_eq!(set.errors.len(), 1);
        assert!(set.errors[0].message.contains("more than once"));
    }

    #[test]
    fn wrong_version_and_kind_are_errors() {
        let set = load(
            "apiVersion: litellm.dev/v1\nkind: Organization\nmetadata: {name: a}\nspec: {}\n---\n\
             apiVersion: litellm.dev/v1alpha1\nkind: Team\nmetadata: {name: a}\nspec: {}\n",
        );
        assert_eq!(set.errors.len(), 2);
        assert_eq!(set.errors[0].field.as_deref(), Some("apiVersion"));
        assert_eq!(set.errors[1].field.as_deref(), Some("kind"));
    }
}
