//! Planting an object past admission, for tests that need one the server would refuse
//! (an object stored before its CRD's schema was tightened, or one a client cannot decode).

use serde_json::{Value, json};

use super::store::{ApiError, State, now, to_storage};

impl State {
    /// Store `obj` as given: no pruning, defaulting, schema, CEL or metadata validation. The
    /// server sets what it always sets: name and namespace from the arguments, `uid` and
    /// `creationTimestamp` (kept when the object exists), `generation` (1, or one more when
    /// the object exists), and a new `resourceVersion`; watches see ADDED or MODIFIED.
    pub fn insert_raw(
        &mut self,
        group: &str,
        version: &str,
        plural: &str,
        namespace: &str,
        mut obj: Value,
    ) -> Result<Value, ApiError> {
        let rd = self.find(group, version, plural).ok_or_else(|| {
            ApiError::new(
                404,
                "NotFound",
                format!("no resource {plural} in {group}/{version}"),
            )
        })?;
        let ns = if rd.namespaced { namespace } else { "" };
        self.namespace_check(&rd, ns)?;
        let name = obj["metadata"]["name"]
            .as_str()
            .filter(|n| !n.is_empty())
            .ok_or_else(|| ApiError::bad_request("insert_raw needs metadata.name"))?
            .to_string();
        let old = self
            .objects
            .get(&rd.key())
            .and_then(|m| m.get(&(ns.to_string(), name.clone())))
            .cloned();
        let Some(m) = obj.as_object_mut() else {
            return Err(ApiError::bad_request("insert_raw needs a JSON object"));
        };
        m.insert("apiVersion".into(), rd.api_version().into());
        m.insert("kind".into(), rd.kind.clone().into());
        if !m.get("metadata").is_some_and(Value::is_object) {
            m.insert("metadata".into(), json!({}));
        }
        self.rv += 1;
        let meta = &mut obj["metadata"];
        let old_meta = old.as_ref().map(|o| &o["metadata"]);
        meta["uid"] = old_meta
            .map(|m| m["uid"].clone())
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string().into());
        meta["creationTimestamp"] = old_meta
            .map(|m| m["creationTimestamp"].clone())
            .unwrap_or_else(|| now().into());
        if rd.has_generation {
            let generation = old_meta
                .and_then(|m| m["generation"].as_i64())
                .map_or(1, |g| g + 1);
            meta["generation"] = generation.into();
        }
        meta["resourceVersion"] = self.rv.to_string().into();
        if rd.namespaced {
            meta["namespace"] = ns.into();
        } else if let Some(m) = meta.as_object_mut() {
            m.remove("namespace");
        }
        self.objects
            .entry(rd.key())
            .or_default()
            .insert((ns.to_string(), name), to_storage(&rd, &obj));
        let event = if old.is_some() { "MODIFIED" } else { "ADDED" };
        self.record(&rd, ns, event, obj.clone(), old);
        Ok(obj)
    }
}
