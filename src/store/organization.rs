//! `LiteLLM_OrganizationTable`: how an update is merged onto the row as it is now.

use serde_json::value::RawValue;

use super::{OrganizationRow, RawObject};

/// The managed columns an update changes, in the order it writes them: only these are
/// written, onto the row as it is (every table's update strategy, see `store::budget`).
pub fn changed_columns(before: &OrganizationRow, after: &OrganizationRow) -> Vec<&'static str> {
    let mut columns = Vec::new();
    if before.organization_alias != after.organization_alias {
        columns.push("organization_alias");
    }
    if before.budget_id != after.budget_id {
        columns.push("budget_id");
    }
    if before.models != after.models {
        columns.push("models");
    }
    if before.metadata != after.metadata {
        columns.push("metadata");
    }
    columns
}

/// The `metadata` text to write: `current` (as read under the row's lock) with the keys the
/// plan changed between `before` and `after` set or removed; every other key keeps its text.
/// When either is not an object, `after` as planned (or `current` when the plan changes
/// nothing there).
pub fn merge_metadata(current: &str, before: &str, after: &str) -> String {
    if before == after {
        return current.to_string();
    }
    match (
        RawObject::parse(current),
        RawObject::parse(before),
        RawObject::parse(after),
    ) {
        (Some(mut now), Some(before), Some(after)) => {
            for key in before.changed_keys(&after) {
                match after.raw(key).map(|r| RawValue::from_string(r.to_string())) {
                    Some(Ok(raw)) => now.set_raw(key, raw),
                    _ => now.remove(key),
                }
            }
            now.to_text()
        }
        _ => after.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_litellm_added_in_between_is_kept() {
        let before = r#"{"x": "1"}"#;
        let after = r#"{"x":"2"}"#;
        let now = r#"{"x": "1", "y": 1.50}"#;
        assert_eq!(merge_metadata(now, before, after), r#"{"x":"2","y":1.50}"#);
        assert_eq!(merge_metadata(now, before, before), now);
    }
}
