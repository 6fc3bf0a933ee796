//! Lists at one revision: consistent pages and `resourceVersionMatch=Exact`.
//!
//! As kube-apiserver's etcd3 store does (k8s.io/apiserver storage/etcd3 `GetList`): the
//! `continue` token carries the first page's resourceVersion and the last key served, and
//! every later page is read at that revision, so an object created, changed or deleted
//! between pages does not show in them and every page reports the first page's
//! resourceVersion. etcd keeps old revisions until compaction; the emulator rebuilds a
//! revision by undoing the watch history's changes since it, so a revision older than the
//! history (`history_limit` changes, or `Emulator::compact`) is gone: the page gets 410
//! Expired with an "inconsistent" token (`rv: -1`) that pages the current state, as etcd3
//! answers after a compaction.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::store::{ApiError, ResourceDef, State, with_api_version};

const EXPIRED_CONTINUE: &str = "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.";

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

/// A `continue` token: the list's revision (-1: none, page the current state) and the last
/// key served. Hex of JSON, opaque to clients as the real (base64) one is.
fn encode(rv: i64, start: &str) -> String {
    json!({"v": "meta.k8s.io/v1", "rv": rv, "start": start})
        .to_string()
        .bytes()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn decode(token: &str) -> Result<(i64, String), ApiError> {
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
        (Some(rv), Some(start)) if rv == -1 || rv > 0 => Ok((rv, start.to_string())),
        _ => Err(invalid()),
    }
}

fn key_of(o: &Value) -> String {
    format!(
        "{}/{}",
        o["metadata"]["namespace"].as_str().unwrap_or(""),
        o["metadata"]["name"].as_str().unwrap_or("")
    )
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
    rd: &ResourceDef,
    req: &ListRequest,
    matches: impl Fn(&Value) -> bool,
) -> Result<Page, ApiError> {
    let (list_rv, start, objects) = match req.continue_token.filter(|c| !c.is_empty()) {
        Some(token) => {
            if req
                .resource_version
                .is_some_and(|v| !v.is_empty() && v != "0")
            {
                return Err(ApiError::bad_request(
                    "specifying resource version is not allowed when using continue",
                ));
            }
            let (rv, start) = decode(token)?;
            if rv == -1 {
                (st.rv, Some(start), st.list(rd, req.namespace))
            } else {
                let rv = rv as u64;
                let Some(objects) = objects_at(st, rd, req.namespace, rv) else {
                    let mut e = ApiError::new(410, "Expired", EXPIRED_CONTINUE);
                    e.list_continue = Some(encode(-1, &start));
                    return Err(e);
                };
                (rv, Some(start), objects)
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
                (rv, None, objects)
            }
            _ => (st.rv, None, st.list(rd, req.namespace)),
        },
    };
    let items: Vec<Value> = objects
        .into_iter()
        .filter(|o| start.as_ref().is_none_or(|s| key_of(o) > *s))
        .filter(|o| matches(o))
        .collect();
    let end = req.limit.map(|l| l.min(items.len())).unwrap_or(items.len());
    let mut metadata = json!({"resourceVersion": list_rv.to_string()});
    if end < items.len()
        && let Some(last) = items.get(end.wrapping_sub(1))
    {
        metadata["continue"] = encode(list_rv as i64, &key_of(last)).into();
        if req.unfiltered {
            metadata["remainingItemCount"] = ((items.len() - end) as i64).into();
        }
    }
    let mut items = items;
    items.truncate(end);
    Ok(Page { items, metadata })
}
