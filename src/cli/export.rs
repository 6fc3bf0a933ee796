//! `export`: the way in for teams that already have organizations in LiteLLM. Writes
//! `Organization` and `OrganizationMember` manifests that adopt the rows no manager holds yet,
//! with exactly their current values, so applying them right after changes nothing in LiteLLM
//! (`plan` exits 0) and records the adoption in the ledger.
//!
//! What each manifest declares:
//! - an Organization pins `organizationId`, and declares `alias`, `models` and every
//!   `metadata` key as they are; its budget is `budgetRef` to the row it has (a budget the
//!   operator never modifies: switch to an inline `budget` to manage the limits, and the
//!   organization gets a budget row of its own, copied from this one);
//! - an OrganizationMember names the user by id (and email), declares the role as it is, and
//!   leaves the membership's budget undeclared (kept as LiteLLM has it; a comment shows it).

use std::collections::{BTreeMap, HashSet};

use serde_json::{Map, Value, json};

use crate::crd::API_VERSION;
use crate::error::EngineError;
use crate::store::{MemberSummary, OWNER_KEY, Store};

/// The manifests, as one multi-document YAML stream.
pub async fn export<S: Store>(store: &S, namespace: &str) -> Result<String, EngineError> {
    let organizations = store.list_organizations().await?;
    let members = store.list_members().await?;
    let mut names = HashSet::new();
    let mut out = String::new();
    out.push_str(
        "# Exported by litellm-org-operator from LiteLLM: organizations no manager holds yet.\n# Applying this changes nothing in LiteLLM and records the adoption in the ledger.\n",
    );
    let mut by_org: BTreeMap<&str, Vec<&MemberSummary>> = BTreeMap::new();
    for m in &members {
        by_org
            .entry(m.organization_id.as_str())
            .or_default()
            .push(m);
    }
    for org in organizations.iter().filter(|o| o.owner.is_none()) {
        let observed = store
            .observe_organization(&org.organization_id, &org.budget_id, &org.budget_id)
            .await?;
        let Some(row) = observed.organization else {
            continue;
        };
        let name = unique_name(
            &mut names,
            &slug(&row.organization_alias),
            &row.organization_id,
        );
        let mut metadata: Map<String, Value> = row.metadata.clone();
        metadata.remove(OWNER_KEY);
        let mut spec = json!({
            "organizationId": row.organization_id,
            "alias": row.organization_alias,
            "budgetRef": {"budgetId": row.budget_id},
        });
        if !row.models.is_empty() {
            spec["models"] = json!(row.models);
        }
        if !metadata.is_empty() {
            spec["metadata"] = Value::Object(metadata);
        }
        out.push_str(&document(
            "Organization",
            &name,
            namespace,
            spec,
            &format!(
                "organization {} (spend {:.2}, budget {})",
                row.organization_id, org.spend, row.budget_id
            ),
        )?);
        for m in by_org
            .get(org.organization_id.as_str())
            .into_iter()
            .flatten()
        {
            let who = m
                .user_email
                .as_deref()
                .and_then(|e| e.split('@').next())
                .unwrap_or(&m.user_id);
            let member_name = unique_name(
                &mut names,
                &format!("{name}-{}", slug(who)),
                &format!("{}-{}", org.organization_id, m.user_id),
            );
            let mut user = json!({"userId": m.user_id});
            if let Some(e) = &m.user_email {
                user["email"] = json!(e);
            }
            let spec = json!({
                "organizationRef": {"name": name},
                "user": user,
                "role": m.role.clone().unwrap_or_else(|| "internal_user".into()),
            });
            let note = match (&m.budget_id, m.max_budget_in_organization) {
                (Some(b), Some(max)) => format!(
                    "membership budget {b} (max {max:.2}) is kept as LiteLLM has it; declare maxBudgetInOrganization to manage it"
                ),
                (Some(b), None) => format!("membership budget {b} is kept as LiteLLM has it"),
                (None, _) => "no membership budget".to_string(),
            };
            out.push_str(&document(
                "OrganizationMember",
                &member_name,
                namespace,
                spec,
                &note,
            )?);
        }
    }
    Ok(out)
}

fn document(
    kind: &str,
    name: &str,
    namespace: &str,
    spec: Value,
    note: &str,
) -> Result<String, EngineError> {
    let object = json!({
        "apiVersion": API_VERSION,
        "kind": kind,
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    });
    let yaml = crate::yaml::to_string(&object)
        .map_err(|e| EngineError::invalid("export", format!("cannot write YAML: {e}")))?;
    let comment: String = crate::text::escape(note).replace('\n', " ");
    Ok(format!("---\n# {comment}\n{yaml}"))
}

/// A DNS-1123 label made from `text`: lower case, `-` for anything else, at most 50
/// characters (room for a suffix).
fn slug(text: &str) -> String {
    let mut s = String::new();
    for c in text.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_alphanumeric() {
            s.push(c);
        } else if !s.ends_with('-') {
            s.push('-');
        }
    }
    let s: String = s.trim_matches('-').chars().take(50).collect();
    s.trim_end_matches('-').to_string()
}

/// `base`, or `base-<n>` when taken; `fallback` (slugged) when `base` is empty.
fn unique_name(taken: &mut HashSet<String>, base: &str, fallback: &str) -> String {
    let base = if base.is_empty() {
        let f = slug(fallback);
        if f.is_empty() {
            "imported".to_string()
        } else {
            f
        }
    } else {
        base.to_string()
    };
    let mut name = base.clone();
    let mut n = 2;
    while !taken.insert(name.clone()) {
        name = format!("{base}-{n}");
        n += 1;
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_dns_labels_and_unique() {
        assert_eq!(slug("Made in the UI!"), "made-in-the-ui");
        assert_eq!(slug("ÄÖ__x"), "x");
        assert_eq!(slug("---"), "");
        let mut taken = HashSet::new();
        assert_eq!(unique_name(&mut taken, "a", "id"), "a");
        assert_eq!(unique_name(&mut taken, "a", "id"), "a-2");
        assert_eq!(unique_name(&mut taken, "", "Org 1"), "org-1");
    }
}
