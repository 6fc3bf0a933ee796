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
//!
//! The text is kept LZ4-compressed ([`Packed`]) against a dictionary of the field names and
//! values both kinds share: a member's status is about 730 bytes of JSON and 180 packed, which
//! at 60,000 objects is most of the operator's memory (measured with the `dhat-heap` feature;
//! see BENCHMARKS.md). Unpacking costs microseconds, once per reconcile.

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
        deserialize_with = "packed_json",
        skip_serializing_if = "Option::is_none"
    )]
    spec: Option<Packed>,
    #[serde(
        default,
        deserialize_with = "packed_json",
        skip_serializing_if = "Option::is_none"
    )]
    status: Option<Packed>,
    #[serde(skip)]
    kind: PhantomData<fn() -> K>,
}

/// What the compressor may refer back to: the field names and the values the operator and the
/// CRDs' defaults write, in the order they are serialized. Changing it changes nothing but the
/// compression ratio of objects read afterwards (nothing packed outlives the process).
const DICTIONARY: &[u8] = br#"{"organizationRef":{"name":""},"user":{"email":"@example.com"},"userId":"","role":"internal_user","maxBudgetInOrganization":10,"deletionPolicy":"Delete","alias":"","organizationId":"","models":[""],"budget":{"maxBudget":100,"budgetDuration":"30d","tpmLimit":,"rpmLimit":,"modelMaxBudget":{}},"budgetRef":{"budgetId":""},"metadata":{}}{"budgetId":"","conditions":[{"lastTransitionTime":"2026-01-01T00:00:00Z","message":"the database matches the spec","observedGeneration":1,"reason":"Synced","status":"True","type":"Ready"},{"lastTransitionTime":"2026-01-01T00:00:00Z","message":"","observedGeneration":1,"reason":"Synced","status":"False","type":"Reconciling"},{"lastTransitionTime":"2026-01-01T00:00:00Z","message":"","observedGeneration":1,"reason":"Synced","status":"False","type":"Stalled"},{"lastTransitionTime":"2026-01-01T00:00:00Z","message":"spend 0.00 of max budget 100.00","observedGeneration":1,"reason":"WithinBudget","status":"False","type":"BudgetExceeded"}],"maxBudget":100.0,"memberCount":1,"observedGeneration":1,"organizationId":"","spend":0.0}{"budgetId":"","conditions":[{"lastTransitionTime":"2026-01-01T00:00:00Z","message":"user  is internal_user in organization ","observedGeneration":1,"reason":"Synced","status":"True","type":"Ready"},{"lastTransitionTime":"2026-01-01T00:00:00Z","message":"","observedGeneration":1,"reason":"Synced","status":"False","type":"Reconciling"},{"lastTransitionTime":"2026-01-01T00:00:00Z","message":"","observedGeneration":1,"reason":"Synced","status":"False","type":"Stalled"}],"observedGeneration":1,"organizationId":"","userCreated":true,"userId":""}"#;

/// A JSON value's text, LZ4-compressed (block format, size first) against [`DICTIONARY`].
#[derive(Clone)]
struct Packed(Box<[u8]>);

impl Packed {
    fn new(raw: &RawValue) -> Self {
        Self(
            lz4_flex::block::compress_prepend_size_with_dict(raw.get().as_bytes(), DICTIONARY)
                .into_boxed_slice(),
        )
    }

    /// The JSON text again. Only what [`Packed::new`] wrote is ever unpacked, so an error
    /// here would be a defect: it reads as a value that is not there, and is logged.
    fn raw(&self) -> Option<Box<RawValue>> {
        let unpacked = lz4_flex::block::decompress_size_prepended_with_dict(&self.0, DICTIONARY)
            .map_err(|e| e.to_string())
            .and_then(|bytes| String::from_utf8(bytes).map_err(|e| e.to_string()))
            .and_then(|text| RawValue::from_string(text).map_err(|e| e.to_string()));
        match unpacked {
            Ok(raw) => Some(raw),
            Err(error) => {
                tracing::error!(%error, "a cached value could not be unpacked");
                None
            }
        }
    }
}

impl Serialize for Packed {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.raw().serialize(s)
    }
}

fn packed_json<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Packed>, D::Error> {
    Ok(raw_json(d)?.map(|raw| Packed::new(&raw)))
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
            .field("spec", &self.spec.as_ref().map(|s| s.0.len()))
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
    /// `spec.deleteTeamsAndKeys` (an Organization's opt-in to LiteLLM's whole cascade).
    pub delete_teams_and_keys: bool,
    /// `spec.deletionProtection`.
    pub deletion_protection: bool,
    /// `spec.organizationId`.
    pub spec_organization_id: Option<String>,
    /// `status.organizationId`: the id the operator recorded.
    pub status_organization_id: Option<String>,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeleteFields {
    #[serde(default)]
    deletion_policy: DeletionPolicy,
    #[serde(default)]
    organization_id: Option<String>,
    #[serde(default)]
    delete_teams_and_keys: bool,
    #[serde(default)]
    deletion_protection: bool,
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
        let (spec, status) = (self.spec(), self.status());
        let text = serde_json::to_string(&Whole {
            api_version: K::api_version(&()),
            kind: K::kind(&()),
            metadata: &self.metadata,
            spec: spec.as_deref(),
            status: status.as_deref(),
        })?;
        serde_json::from_str(&text)
    }

    fn spec(&self) -> Option<Box<RawValue>> {
        self.spec.as_ref()?.raw()
    }

    fn status(&self) -> Option<Box<RawValue>> {
        self.status.as_ref()?.raw()
    }

    /// The status decoded as `S`, `None` when absent or unreadable.
    pub fn status_as<S: DeserializeOwned>(&self) -> Option<S> {
        serde_json::from_str(self.status()?.get()).ok()
    }

    /// The fields a delete needs. Everything else in the spec is skipped unread, so a spec
    /// that does not decode as a whole still yields them; an error means these very fields
    /// are malformed and nothing may be deleted on a guess.
    pub fn delete_target(&self) -> Result<DeleteTarget, serde_json::Error> {
        let spec: DeleteFields = match self.spec().as_deref() {
            Some(s) => serde_json::from_str(s.get())?,
            None => DeleteFields::default(),
        };
        let status: StatusFields = self.status_as().unwrap_or_default();
        Ok(DeleteTarget {
            deletion_policy: spec.deletion_policy,
            delete_teams_and_keys: spec.delete_teams_and_keys,
            deletion_protection: spec.deletion_protection,
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
        let spec = self.spec()?;
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
            r#"{{"apiVersion":"litellm.dev/v1alpha1","kind":"Organization","metadata":{{"name":"{name}","namespace":"ns"}},"spec":{{"alias":"A","metadata":{metadata},"deletionPolicy":"Retain","deletionProtection":true,"organizationId":"pinned"}},"status":{{"organizationId":"recorded","conditions":[]}}}}"#
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
                delete_teams_and_keys: false,
                deletion_protection: true,
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
    fn the_cache_keeps_a_status_packed_and_gives_it_back_unchanged() {
        let status = r#"{"budgetId":"4089284a-ea6b-5fca-b57d-c1d845dfa349","conditions":[{"lastTransitionTime":"2026-11-28T03:32:06Z","message":"user 3e8d3d36-d877-5a83-ac57-e4b24b4aee52 is internal_user in organization 3127105e-2981-507e-a1f7-db5e6e703869","observedGeneration":1,"reason":"Synced","status":"True","type":"Ready"},{"lastTransitionTime":"2026-11-28T03:32:06Z","message":"","observedGeneration":1,"reason":"Synced","status":"False","type":"Reconciling"},{"lastTransitionTime":"2026-11-28T03:32:06Z","message":"","observedGeneration":1,"reason":"Synced","status":"False","type":"Stalled"}],"observedGeneration":1,"organizationId":"3127105e-2981-507e-a1f7-db5e6e703869","userCreated":true,"userId":"3e8d3d36-d877-5a83-ac57-e4b24b4aee52"}"#;
        let text = format!(
            r#"{{"metadata":{{"name":"m","namespace":"ns"}},"spec":{{"organizationRef":{{"name":"o"}},"user":{{"email":"ann@example.com"}},"role":"internal_user"}},"status":{status}}}"#
        );
        let raw: Raw<OrganizationMember> = serde_json::from_str(&text).expect("raw");
        let packed = raw.status.as_ref().expect("status").0.len();
        assert!(
            packed * 3 < status.len(),
            "{packed} bytes packed for {} of JSON",
            status.len()
        );
        assert_eq!(raw.status().expect("unpacked").get(), status);
        let typed = raw.decode().expect("typed");
        assert_eq!(typed.status.expect("status").conditions.len(), 3);
        // Serialized again (as the finalizer helper does), the object is what was read.
        let again: serde_json::Value = serde_json::to_value(&raw).expect("serialize");
        let read: serde_json::Value = serde_json::from_str(&text).expect("json");
        assert_eq!(again, read);
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
