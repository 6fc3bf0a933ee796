//! What the watches hold of an object: its metadata, and its spec and status as the JSON text
//! the API server sent, decoded only inside that object's own reconcile.
//!
//! Why: kube-runtime decodes a whole list page at once, so one object that the typed decode
//! refuses (a `spec.metadata` nested past serde_json's recursion limit, a field of the wrong
//! type written while the CRD's validation was off) would fail every list and stop every
//! reconcile. Keeping spec and status as [`RawValue`] makes the list decode unable to fail on
//! their content (serde_json skips raw values without recursing), so a bad object is reported
//! on its own and everything else is reconciled. The compact JSON text is also smaller than
//! the decoded structs it replaces in the caches.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta};
use kube::Resource;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::crd::DeletionPolicy;

/// An object of kind `K` with its spec and status kept undecoded.
#[derive(Deserialize, Serialize)]
pub struct Raw<K> {
    pub metadata: ObjectMeta,
    #[serde(
        default,
        deserialize_with = "raw_json",
        skip_serializing_if = "Option::is_none"
    )]
    spec: Option<Box<RawValue>>,
    #[serde(
        default,
        deserialize_with = "raw_json",
        skip_serializing_if = "Option::is_none"
    )]
    status: Option<Box<RawValue>>,
    #[serde(skip)]
    kind: PhantomData<fn() -> K>,
}

impl<K> Clone for Raw<K> {
    fn clone(&self) -> Self {
        Self {
            metadata: self.metadata.clone(),
            spec: self.spec.clone(),
            status: self.status.clone(),
            kind: PhantomData,
        }
    }
}

impl<K> fmt::Debug for Raw<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Raw")
            .field("metadata", &self.metadata)
            .field("spec", &self.spec.as_ref().map(|s| s.get().len()))
            .finish_non_exhaustive()
    }
}

impl<K: Resource<DynamicType = ()>> Resource for Raw<K> {
    type DynamicType = ();
    type Scope = K::Scope;

    fn kind(_: &()) -> Cow<'_, str> {
        K::kind(&())
    }
    fn group(_: &()) -> Cow<'_, str> {
        K::group(&())
    }
    fn version(_: &()) -> Cow<'_, str> {
        K::version(&())
    }
    fn plural(_: &()) -> Cow<'_, str> {
        K::plural(&())
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// The name under which serde_json hands out a value's raw text (what `RawValue` asks for).
const RAW_VALUE_TOKEN: &str = "$serde_json::private::RawValue";

/// A value kept as raw JSON text. Read straight from serde_json (a list page, or a watch event
/// whose `type` comes first, as kube-apiserver sends it) the text is taken without parsing it
/// into a tree, so no depth limit applies. Read through a buffer (a watch event whose `object`
/// comes first makes serde buffer it) the value arrives already parsed, and is written back
/// as text.
fn raw_json<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Box<RawValue>>, D::Error> {
    struct RawVisitor;

    impl<'de> serde::de::Visitor<'de> for RawVisitor {
        type Value = Option<Box<RawValue>>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("any JSON value")
        }

        // serde_json's raw path: one entry whose value is the text.
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut map: A,
        ) -> Result<Self::Value, A::Error> {
            let Some(_token) = map.next_key::<String>()? else {
                return Err(serde::de::Error::custom("empty raw value"));
            };
            let text: String = map.next_value()?;
            RawValue::from_string(text)
                .map(Some)
                .map_err(serde::de::Error::custom)
        }

        // Any other deserializer (serde's buffer): a parsed value, turned back into text.
        fn visit_newtype_struct<D: serde::Deserializer<'de>>(
            self,
            d: D,
        ) -> Result<Self::Value, D::Error> {
            let value = serde_json::Value::deserialize(d)?;
            if value.is_null() {
                return Ok(None);
            }
            serde_json::value::to_raw_value(&value)
                .map(Some)
                .map_err(serde::de::Error::custom)
        }
    }

    d.deserialize_newtype_struct(RAW_VALUE_TOKEN, RawVisitor)
}

/// What a delete needs, read leniently from a spec that may not decode as a whole.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DeleteTarget {
    pub deletion_policy: DeletionPolicy,
    /// `spec.organizationId`.
    pub spec_organization_id: Option<String>,
    /// `status.organizationId`: the id the operator recorded.
    pub status_organization_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeleteFields {
    #[serde(default)]
    deletion_policy: DeletionPolicy,
    #[serde(default)]
    organization_id: Option<String>,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StatusFields {
    #[serde(default)]
    organization_id: Option<String>,
    #[serde(default)]
    conditions: Vec<Condition>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OrganizationRefFields {
    #[serde(default)]
    organization_ref: Option<NameField>,
}

#[derive(Deserialize)]
struct NameField {
    name: String,
}

impl<K: Resource<DynamicType = ()> + DeserializeOwned> Raw<K> {
    /// The typed object, with serde_json's usual limits: an error names what is wrong.
    pub fn decode(&self) -> Result<K, serde_json::Error> {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Whole<'a> {
            api_version: Cow<'a, str>,
            kind: Cow<'a, str>,
            metadata: &'a ObjectMeta,
            #[serde(skip_serializing_if = "Option::is_none")]
            spec: Option<&'a RawValue>,
            #[serde(skip_serializing_if = "Option::is_none")]
            status: Option<&'a RawValue>,
        }
        let text = serde_json::to_string(&Whole {
            api_version: K::api_version(&()),
            kind: K::kind(&()),
            metadata: &self.metadata,
            spec: self.spec.as_deref(),
            status: self.status.as_deref(),
        })?;
        serde_json::from_str(&text)
    }

    /// The status decoded as `S`, `None` when absent or unreadable.
    pub fn status_as<S: DeserializeOwned>(&self) -> Option<S> {
        serde_json::from_str(self.status.as_deref()?.get()).ok()
    }

    /// The fields a delete needs. Everything else in the spec is skipped unread, so a spec
    /// that does not decode as a whole still yields them; an error means these very fields
    /// are malformed and nothing may be deleted on a guess.
    pub fn delete_target(&self) -> Result<DeleteTarget, serde_json::Error> {
        let spec: DeleteFields = match self.spec.as_deref() {
            Some(s) => serde_json::from_str(s.get())?,
            None => DeleteFields {
                deletion_policy: DeletionPolicy::default(),
                organization_id: None,
            },
        };
        let status: StatusFields = self.status_as().unwrap_or_default();
        Ok(DeleteTarget {
            deletion_policy: spec.deletion_policy,
            spec_organization_id: spec.organization_id,
            status_organization_id: status.organization_id,
        })
    }

    /// The status conditions as they stand (empty when unreadable).
    pub fn conditions(&self) -> Vec<Condition> {
        self.status_as::<StatusFields>()
            .map(|s| s.conditions)
            .unwrap_or_default()
    }

    /// `spec.organizationRef.name`, for the member index.
    pub fn organization_ref(&self) -> Option<String> {
        let spec = self.spec.as_deref()?;
        serde_json::from_str::<OrganizationRefFields>(spec.get())
            .ok()?
            .organization_ref
            .map(|r| r.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{Organization, OrganizationMember};

    fn deep(levels: usize) -> String {
        let mut v = String::from("1");
        for _ in 0..levels {
            v = format!("{{\"k\":{v}}}");
        }
        v
    }

    fn list_of(items: &[String]) -> String {
        format!(
            r#"{{"apiVersion":"litellm.dev/v1alpha1","kind":"OrganizationList","metadata":{{"resourceVersion":"1"}},"items":[{}]}}"#,
            items.join(",")
        )
    }

    fn org(name: &str, metadata: &str) -> String {
        format!(
            r#"{{"apiVersion":"litellm.dev/v1alpha1","kind":"Organization","metadata":{{"name":"{name}","namespace":"ns"}},"spec":{{"alias":"A","metadata":{metadata},"deletionPolicy":"Retain","organizationId":"pinned"}},"status":{{"organizationId":"recorded","conditions":[]}}}}"#
        )
    }

    #[test]
    fn one_deep_object_does_not_fail_the_list() {
        let body = list_of(&[org("ok", "{}"), org("deep", &deep(200))]);
        // The typed list fails as a whole: this is what would stop every reconcile.
        assert!(serde_json::from_str::<kube::core::ObjectList<Organization>>(&body).is_err());
        let list: kube::core::ObjectList<Raw<Organization>> =
            serde_json::from_str(&body).expect("the raw list decodes");
        assert_eq!(list.items.len(), 2);
        assert!(list.items[0].decode().is_ok());
        let err = list.items[1]
            .decode()
            .expect_err("the deep one alone fails");
        assert!(err.to_string().contains("recursion limit"), "{err}");
        // What a delete needs is still read.
        assert_eq!(
            list.items[1].delete_target().expect("delete fields"),
            DeleteTarget {
                deletion_policy: DeletionPolicy::Retain,
                spec_organization_id: Some("pinned".into()),
                status_organization_id: Some("recorded".into()),
            }
        );
    }

    #[test]
    fn watch_events_decode_whichever_key_comes_first() {
        use kube::api::WatchEvent;
        let object = org("ok", r#"{"a":[1,2]}"#);
        for line in [
            format!(r#"{{"type":"ADDED","object":{object}}}"#),
            format!(r#"{{"object":{object},"type":"ADDED"}}"#),
        ] {
            let event: WatchEvent<Raw<Organization>> =
                serde_json::from_str(&line).expect("watch event");
            let WatchEvent::Added(raw) = event else {
                panic!("added")
            };
            let typed = raw.decode().expect("typed");
            assert_eq!(
                typed.spec.metadata.and_then(|m| m.get("a").cloned()),
                Some(serde_json::json!([1, 2]))
            );
        }
        // With `type` first (as kube-apiserver sends it), a deep object is taken as text.
        let deep_event = format!(
            r#"{{"type":"MODIFIED","object":{}}}"#,
            org("deep", &deep(200))
        );
        let event: WatchEvent<Raw<Organization>> =
            serde_json::from_str(&deep_event).expect("deep watch event");
        assert!(matches!(event, WatchEvent::Modified(r) if r.decode().is_err()));
    }

    #[test]
    fn a_decoded_object_round_trips() {
        let raw: Raw<Organization> = serde_json::from_str(&org("ok", r#"{"a":1}"#)).expect("raw");
        let typed = raw.decode().expect("typed");
        assert_eq!(typed.spec.alias.as_deref(), Some("A"));
        assert_eq!(
            typed.status.and_then(|s| s.organization_id).as_deref(),
            Some("recorded")
        );
    }

    #[test]
    fn a_malformed_deletion_policy_blocks_the_delete() {
        let raw: Raw<OrganizationMember> = serde_json::from_str(
            r#"{"metadata":{"name":"m","namespace":"ns"},"spec":{"deletionPolicy":5,"organizationRef":{"name":"o"}}}"#,
        )
        .expect("raw");
        assert!(raw.delete_target().is_err());
        assert_eq!(raw.organization_ref().as_deref(), Some("o"));
    }
}
