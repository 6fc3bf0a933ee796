//! Lists at one revision: consistent pages and `resourceVersionMatch=Exact`.
//!
//! As kube-apiserver's etcd3 store does (k8s.io/apiserver storage/etcd3 `GetList`): the
//! `continue` token carries the first page's resourceVersion and the last key served, every
//! later page is read at that revision (an object created, changed or deleted between pages
//! does not show in them), and every page reports the first page's resourceVersion. etcd
//! keeps old revisions until its compaction (kube-apiserver compacts every 5 minutes); the
//! emulator keeps the first page's whole result as a snapshot for its token, at most
//! [`MAX_SNAPSHOTS`] of them for at most [`SNAPSHOT_TTL`]. A page whose snapshot is gone
//! (expired, evicted, or `Emulator::compact`) gets 410 Expired with an "inconsistent" token
//! (`rv: -1`) that pages the current state, as etcd3 answers after a compaction.
//!
//! `resourceVersionMatch=Exact` rebuilds the revision by undoing the watch history's changes
//! since it (410 when the history no longer reaches back that far).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::store::{ApiError, ResourceDef, State, with_api_version};

const EXPIRED_CONTINUE: &str = "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.";

/// How long a paged list's snapshot is kept (kube-apiserver's etcd compaction interval).
pub const SNAPSHOT_TTL: Duration = Duration::from_secs(300);
/// How many paged lists' snapshots are kept at once; the oldest goes first.
pub const MAX_SNAPSHOTS: usize = 256;

/// The first page's result of each paged list in progress.
#[derive(Default)]
pub struct Snapshots {
    next_id: u64,
    lists: VecDeque<Snapshot>,
}

struct Snapshot {
    id: u64,
    taken: Instant,
    items: Arc<Vec<Value>>,
}

impl Snapshots {
    fn keep(&mut self, items: Arc<Vec<Value>>) -> u64 {
        self.expire();
        self.next_id += 1;
        self.lists.push_back(Snapshot {
            id: self.next_id,
            taken: Instant::now(),
            items,
        });
        while self.lists.len() > MAX_SNAPSHOTS {
            self.lists.pop_front();
        }
        self.next_id
    }

    fn get(&mut self, id: u64) -> Option<Arc<Vec<Value>>> {
        self.expire();
        self.lists
            .iter()
            .find(|s| s.id == id)
            .map(|s| s.items.clone())
    }

    fn expire(&mut self) {
        self.lists.retain(|s| s.taken.elapsed() < SNAPSHOT_TTL);
    }

    /// Drop every snapshot: every pending continue token expires (as an etcd compaction).
    pub fn clear(&mut self) {
        self.lists.clear();
    }
}

/// What a list request asks for.
pub struct ListRequest<'a> {
    pub namespace: Option<&'a str>,
    pub continue_token: Option<&'a str>,
    pub resource_version: Option<&'a str>,
    pub resource_version_match: Option<&'a str>,
    pub limit: Option<usize>,
    /// Label and field selectors are empty (then `remainingItemCount` is known).
    pub unfiltered: bool,
}

/// The page's items and its list metadata.
pub struct Page {
    pub items: Vec<Value>,
    pub metadata: Value,
}

/// A `continue` token: the list's revision (-1: none, page the current state), the last key
/// served and the snapshot holding the list at that revision. Hex of JSON, opaque to clients
/// as the real (base64) one is.
fn encode(rv: i64, start: &str, snapshot: u64) -> String {
    json!({"v": "meta.k8s.io/v1", "rv": rv, "start": start, "snapshot": snapshot})
        .to_string()
        .bytes()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn decode(token: &str) -> Result<(i64, String, u64), ApiError> {
    let invalid = || {
        ApiError::bad_request(
            "continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)",
        )
    };
    if !token.len().is_multiple_of(2) {
        return Err(invalid());
    }
    let bytes: Vec<u8> = (0..token.len())
        .step_by(2)
        .map(|i| {
            token
                .get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        })
        .collect::<Option<_>>()
        .ok_or_else(invalid)?;
    let v: Value = serde_json::from_slice(&bytes).map_err(|_| invalid())?;
    match (v["rv"].as_i64(), v["start"].as_str()) {
        (Some(rv), Some(start)) if rv == -1 || rv > 0 => {
            Ok((rv, start.to_string(), v["snapshot"].as_u64().unwrap_or(0)))
        }
        _ => Err(invalid()),
    }
}

/// An object's place in a list: (namespace, name), the store's order.
fn key_of(o: &Value) -> (String, String) {
    (
        o["metadata"]["namespace"]
            .as_str()
            .unwrap_or("")
            .to_string(),
        o["metadata"]["name"].as_str().unwrap_or("").to_string(),
    )
}

/// A key in a token: `namespace/name` (a namespace has no `/`).
fn key_text(key: &(String, String)) -> String {
    format!("{}/{}", key.0, key.1)
}

fn parse_key(text: &str) -> (String, String) {
    let (ns, name) = text.split_once('/').unwrap_or(("", text));
    (ns.to_string(), name.to_string())
}

/// The objects of a resource as they were at revision `rv`, or `None` if the history no
/// longer reaches back that far.
fn objects_at(st: &State, rd: &ResourceDef, ns: Option<&str>, rv: u64) -> Option<Vec<Value>> {
    if rv >= st.rv {
        return Some(st.list(rd, ns));
    }
    if rv < st.compacted_rv {
        return None;
    }
    let key = rd.key();
    let mut objects: BTreeMap<(String, String), Value> =
        st.objects.get(&key).cloned().unwrap_or_default();
    for change in st.history.iter().rev().take_while(|c| c.rv > rv) {
        if change.key != key {
            continue;
        }
        let name = change.object["metadata"]["name"]
            .as_str()
            .unwrap_or("")
            .to_string();
        let k = (change.namespace.clone(), name);
        match &change.prev {
            Some(prev) => objects.insert(k, prev.clone()),
            None => objects.remove(&k),
        };
    }
    Some(
        objects
            .iter()
            .filter(|((n, _), _)| ns.is_none_or(|want| want == n))
            .map(|(_, o)| with_api_version(o, rd))
            .collect(),
    )
}

/// One page of a list, `matches` being the request's selectors.
pub fn list(
    st: &State,
    snapshots: &mut Snapshots,
    rd: &ResourceDef,
    req: &ListRequest,
    matches: impl Fn(&Value) -> bool,
) -> Result<Page, ApiError> {
    let matching = |objects: Vec<Value>| -> Arc<Vec<Value>> {
        Arc::new(objects.into_iter().filter(|o| matches(o)).collect())
    };
    // The list's revision, the last key already served, the matching objects at that
    // revision in key order, and the snapshot they come from.
    let (list_rv, start, all, snapshot) = match req.continue_token.filter(|c| !c.is_empty()) {
        Some(token) => {
            if req
                .resource_version
                .is_some_and(|v| !v.is_empty() && v != "0")
            {
                return Err(ApiError::bad_request(
                    "specifying resource version is not allowed when using continue",
                ));
            }
            let (rv, start, id) = decode(token)?;
            if rv == -1 {
                let all = matching(st.list(rd, req.namespace));
                (st.rv, Some(parse_key(&start)), all, None)
            } else {
                let Some(all) = snapshots.get(id) else {
                    let mut e = ApiError::new(410, "Expired", EXPIRED_CONTINUE);
                    e.list_continue = Some(encode(-1, &start, 0));
                    return Err(e);
                };
                (rv as u64, Some(parse_key(&start)), all, Some(id))
            }
        }
        None => match (req.resource_version_match, req.resource_version) {
            (Some("Exact"), Some(v)) => {
                let rv: u64 = v
                    .parse()
                    .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion: {v}")))?;
                if rv > st.rv {
                    return Err(ApiError::new(
                        504,
                        "Timeout",
                        format!(
                            "Timeout: Too large resource version: {rv}, current: {}",
                            st.rv
                        ),
                    ));
                }
                let objects = objects_at(st, rd, req.namespace, rv).ok_or_else(|| {
                    ApiError::new(
                        410,
                        "Expired",
                        format!(
                            "The resourceVersion for the provided list is too old. too old resource version: {rv} ({})",
                            st.compacted_rv + 1
                        ),
                    )
                })?;
                (rv, None, matching(objects), None)
            }
            _ => (st.rv, None, matching(st.list(rd, req.namespace)), None),
        },
    };
    let from = start
        .as_ref()
        .map_or(0, |s| all.partition_point(|o| key_of(o) <= *s));
    let rest = all.len() - from;
    let take = req.limit.map_or(rest, |l| l.min(rest));
    let items = all[from..from + take].to_vec();
    let mut metadata = json!({"resourceVersion": list_rv.to_string()});
    if take < rest
        && let Some(last) = items.last()
    {
        let id = match snapshot {
            Some(id) => id,
            None => snapshots.keep(all.clone()),
        };
        metadata["continue"] = encode(list_rv as i64, &key_text(&key_of(last)), id).into();
        if req.unfiltered {
            metadata["remainingItemCount"] = ((rest - take) as i64).into();
        }
    }
    Ok(Page { items, metadata })
}
