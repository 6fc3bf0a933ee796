//! Which members point at which organization, kept from the member watch, so an
//! organization's change wakes exactly its members without scanning every member.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher::Event;

use super::raw::Raw;
use crate::crd::OrganizationMember;

type Key = (String, String);

#[derive(Default)]
struct Maps {
    /// (namespace, organization name) → member names.
    by_org: HashMap<Key, HashSet<String>>,
    /// (namespace, member name) → organization name.
    by_member: HashMap<Key, String>,
    /// Members seen during a re-list, swapped in when it completes.
    relist: Option<Vec<(Key, String)>>,
}

/// Shared between the member watch (writer) and the organization mapper (reader).
#[derive(Clone, Default)]
pub struct MemberIndex {
    maps: Arc<Mutex<Maps>>,
}

fn member_key(m: &Raw<OrganizationMember>) -> Option<(Key, String)> {
    let org = m.organization_ref()?;
    Some(((m.namespace().unwrap_or_default(), m.name_any()), org))
}

impl Maps {
    fn insert(&mut self, member: Key, org: String) {
        self.remove(&member);
        self.by_org
            .entry((member.0.clone(), org.clone()))
            .or_default()
            .insert(member.1.clone());
        self.by_member.insert(member, org);
    }

    fn remove(&mut self, member: &Key) {
        if let Some(org) = self.by_member.remove(member) {
            let key = (member.0.clone(), org);
            if let Some(set) = self.by_org.get_mut(&key) {
                set.remove(&member.1);
                if set.is_empty() {
                    self.by_org.remove(&key);
                }
            }
        }
    }
}

impl MemberIndex {
    /// Follow one watch event.
    pub fn observe(&self, event: &Event<Raw<OrganizationMember>>) {
        let Ok(mut maps) = self.maps.lock() else {
            return;
        };
        match event {
            Event::Apply(m) => match member_key(m) {
                Some((key, org)) => maps.insert(key, org),
                None => maps.remove(&(m.namespace().unwrap_or_default(), m.name_any())),
            },
            Event::Delete(m) => maps.remove(&(m.namespace().unwrap_or_default(), m.name_any())),
            Event::Init => maps.relist = Some(Vec::new()),
            Event::InitApply(m) => {
                if let (Some(pending), Some(entry)) = (maps.relist.as_mut(), member_key(m)) {
                    pending.push(entry);
                }
            }
            Event::InitDone => {
                if let Some(pending) = maps.relist.take() {
                    maps.by_org.clear();
                    maps.by_member.clear();
                    for (key, org) in pending {
                        maps.insert(key, org);
                    }
                }
            }
        }
    }

    /// The members that point at organization `name` in `namespace`.
    pub fn members_of(
        &self,
        namespace: &str,
        name: &str,
    ) -> Vec<ObjectRef<Raw<OrganizationMember>>> {
        let Ok(maps) = self.maps.lock() else {
            return Vec::new();
        };
        maps.by_org
            .get(&(namespace.to_string(), name.to_string()))
            .map(|set| {
                set.iter()
                    .map(|m| ObjectRef::new(m).within(namespace))
                    .collect()
            })
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(ns: &str, name: &str, org: &str) -> Raw<OrganizationMember> {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "litellm.dev/v1alpha1", "kind": "OrganizationMember",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"organizationRef": {"name": org}, "user": {"userId": "u"}, "role": "internal_user"}
        }))
        .expect("member")
    }

    fn names(v: Vec<ObjectRef<Raw<OrganizationMember>>>) -> Vec<String> {
        let mut n: Vec<String> = v.into_iter().map(|r| r.name).collect();
        n.sort();
        n
    }

    #[test]
    fn follows_applies_moves_deletes_and_relists() {
        let idx = MemberIndex::default();
        idx.observe(&Event::Apply(member("ns", "a", "acme")));
        idx.observe(&Event::Apply(member("ns", "b", "acme")));
        idx.observe(&Event::Apply(member("other", "c", "acme")));
        assert_eq!(names(idx.members_of("ns", "acme")), vec!["a", "b"]);
        idx.observe(&Event::Apply(member("ns", "b", "beta")));
        assert_eq!(names(idx.members_of("ns", "acme")), vec!["a"]);
        assert_eq!(names(idx.members_of("ns", "beta")), vec!["b"]);
        idx.observe(&Event::Delete(member("ns", "a", "acme")));
        assert!(idx.members_of("ns", "acme").is_empty());
        idx.observe(&Event::Init);
        idx.observe(&Event::InitApply(member("ns", "z", "acme")));
        assert_eq!(
            names(idx.members_of("ns", "beta")),
            vec!["b"],
            "old view until the re-list completes"
        );
        idx.observe(&Event::InitDone);
        assert!(idx.members_of("ns", "beta").is_empty());
        assert_eq!(names(idx.members_of("ns", "acme")), vec!["z"]);
        assert_eq!(names(idx.members_of("other", "acme")), Vec::<String>::new());
    }
}
