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
//! - an OrganizationMember names the user by id (and email, when the email is one the CRD
//!   accepts: the user is found by id first), declares the role as it is, and leaves the
//!   membership's budget undeclared (kept as LiteLLM has it; a comment shows it).
//!
//! Every row is either exported faithfully or left out, never written to be refused or
//! changed on apply: each manifest is read back through the reader `apply` uses (it must read
//! back as exactly what was meant, in YAML 1.1 and 1.2 alike: see `crate::yaml`) and checked
//! by the validation `apply` runs. A row that fails (a role outside the CRD's enum or NULL, an
//! alias past 256 characters, metadata past the CRD's bounds, an id the CRD refuses, text
//! PostgreSQL cannot store) or that cannot be read at all is left out, with a comment in the
//! output naming it and why, and listed in [`Export::left_out`] (the command then exits 3).
//!
//! Names are DNS-1123 names made from the alias (or the email's local part), unique among the
//! export and against every resource the ledger names in the namespace, of every manager.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use serde_json::{Map, Value, json};

use crate::cli::documents;
use crate::cli::manifest::ManifestSet;
use crate::crd::API_VERSION;
use crate::engine::validate::{
    validate_email, validate_member, validate_namespace, validate_organization,
};
use crate::error::{EngineError, StoreError};
use crate::store::{MemberSummary, OWNER_KEY, Store};

/// What `export` writes.
#[derive(Debug, Default)]
pub struct Export {
    /// The manifests, as one multi-document YAML stream, with a comment where a row was left
    /// out.
    pub yaml: String,
    /// One line per row left out: which row, and why.
    pub left_out: Vec<String>,
}

impl Export {
    fn leave_out(&mut self, line: String) {
        let line = crate::text::escape(&line).into_owned();
        self.yaml.push_str(&format!("# LEFT OUT: {line}\n"));
        self.left_out.push(line);
    }
}

/// The manifests adopting every organization (and its members) no manager holds yet.
pub async fn export<S: Store>(store: &S, namespace: &str) -> Result<Export, EngineError> {
    validate_namespace("--namespace", namespace)?;
    let organizations = store.list_organizations().await?;
    let members = store.list_members().await?;
    let mut names = Names::default();
    names.reserve_resources(&store.ledger_resources().await?, namespace);
    // Organizations an earlier version marked: their names are taken until the first
    // `apply` imports them into the ledger.
    names.reserve_resources(
        organizations
            .rows
            .iter()
            .filter_map(|o| o.owner.as_ref())
            .map(|o| o.resource.as_str()),
        namespace,
    );
    let mut out = Export {
        yaml: "# Exported by litellm-org-operator from LiteLLM: organizations no manager holds yet.\n# Applying this changes nothing in LiteLLM and records the adoption in the ledger.\n".into(),
        left_out: Vec::new(),
    };
    for row in organizations.unreadable.iter().chain(&members.unreadable) {
        out.leave_out(format!("{row}"));
    }
    let mut by_org: BTreeMap<&str, Vec<&MemberSummary>> = BTreeMap::new();
    for m in &members.rows {
        by_org
            .entry(m.organization_id.as_str())
            .or_default()
            .push(m);
    }
    for org in organizations.rows.iter().filter(|o| o.owner.is_none()) {
        let org_members = by_org.get(org.organization_id.as_str());
        let id = &org.organization_id;
        let observed = match store
            .observe_organization(id, &org.budget_id, &org.budget_id)
            .await
        {
            Ok(o) => o,
            Err(StoreError::Unreadable(why)) => {
                out.leave_out(format!("organization {id} cannot be read: {why}"));
                leave_out_members(&mut out, org_members, id);
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        let Some(row) = observed.organization else {
            continue;
        };
        let name = names.claim(&slug(&row.organization_alias), id);
        let mut metadata: Map<String, Value> = row.metadata_map();
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
        let note = format!(
            "organization {} (spend {:.2}, budget {})",
            row.organization_id, org.spend, row.budget_id
        );
        match manifest("Organization", &name, namespace, spec) {
            Ok(yaml) => out.yaml.push_str(&document(&note, &yaml)),
            Err(why) => {
                out.leave_out(format!(
                    "organization {id} (alias {:?}) cannot be exported as it is: {why}",
                    row.organization_alias
                ));
                leave_out_members(&mut out, org_members, id);
                continue;
            }
        }
        for m in org_members.into_iter().flatten() {
            if m.owner.is_none() {
                export_member(&mut out, &mut names, &name, namespace, m);
            }
        }
    }
    Ok(out)
}

/// One membership of an exported organization, or a line saying why it is left out.
fn export_member(
    out: &mut Export,
    names: &mut Names,
    organization: &str,
    namespace: &str,
    m: &MemberSummary,
) {
    let what = format!(
        "membership of user {} in organization {}",
        m.user_id, m.organization_id
    );
    let Some(role) = &m.role else {
        out.leave_out(format!(
            "{what}: its role is NULL in LiteLLM; an OrganizationMember declares org_admin, internal_user or internal_user_viewer, so applying any of them would change it"
        ));
        return;
    };
    // The user is found by id; an email the CRD would refuse (it only helps find a user) is
    // left out of the manifest rather than the member.
    let email = m
        .user_email
        .as_deref()
        .filter(|e| validate_email("spec.user.email", e).is_ok());
    let who = email
        .and_then(|e| e.split('@').next())
        .map(slug)
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| slug(&m.user_id));
    let base = if who.is_empty() {
        String::new()
    } else {
        format!("{organization}-{who}")
    };
    let name = names.claim(&base, &format!("{organization}-member"));
    let mut user = json!({"userId": m.user_id});
    if let Some(e) = email {
        user["email"] = json!(e);
    }
    let spec = json!({
        "organizationRef": {"name": organization},
        "user": user,
        "role": role,
    });
    let note = match (&m.budget_id, m.max_budget_in_organization) {
        (Some(b), Some(max)) => format!(
            "membership budget {b} (max {max:.2}) is kept as LiteLLM has it; declare maxBudgetInOrganization to manage it"
        ),
        (Some(b), None) => format!("membership budget {b} is kept as LiteLLM has it"),
        (None, _) => "no membership budget".to_string(),
    };
    match manifest("OrganizationMember", &name, namespace, spec) {
        Ok(yaml) => out.yaml.push_str(&document(&note, &yaml)),
        Err(why) => out.leave_out(format!("{what} cannot be exported as it is: {why}")),
    }
}

/// The members of an organization that is left out go with it.
fn leave_out_members(out: &mut Export, members: Option<&Vec<&MemberSummary>>, id: &str) {
    for m in members.into_iter().flatten().filter(|m| m.owner.is_none()) {
        out.leave_out(format!(
            "membership of user {} in organization {id}: its organization is left out",
            m.user_id
        ));
    }
}

/// One manifest as YAML, once it is known to be one `apply` takes as it is: it reads back
/// through the reader `apply` uses as exactly `spec` (so YAML 1.1 and 1.2 readers agree on
/// every string), and passes the same strict decoding and validation. Otherwise, why not.
fn manifest(kind: &str, name: &str, namespace: &str, spec: Value) -> Result<String, String> {
    let object = json!({
        "apiVersion": API_VERSION,
        "kind": kind,
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    });
    let yaml =
        crate::yaml::to_string(&object).map_err(|e| format!("cannot be written as YAML: {e}"))?;
    match documents::read(&yaml, false).as_slice() {
        [doc] => match &doc.content {
            Ok(read) if *read == object => {}
            Ok(_) => return Err("its YAML does not read back as the same values".into()),
            Err(e) => return Err(format!("its YAML does not read back: {}", e.message)),
        },
        _ => return Err("its YAML does not read back as one document".into()),
    }
    let mut set = ManifestSet::default();
    set.add_text(Path::new("export"), &yaml);
    if let Some(e) = set.errors.first() {
        return Err(match &e.field {
            Some(field) => format!("{field}: {}", e.message),
            None => e.message.clone(),
        });
    }
    let checked = match (set.organizations.first(), set.members.first()) {
        (Some(o), _) => validate_organization(name, &o.object.spec),
        (None, Some(m)) => validate_member(name, &m.object.spec),
        (None, None) => Err(EngineError::invalid("kind", "not read back")),
    };
    checked.map_err(|e| e.to_string())?;
    Ok(yaml)
}

/// A manifest with its comment, as one document of the stream.
fn document(note: &str, yaml: &str) -> String {
    let comment: String = crate::text::escape(note).replace('\n', " ");
    format!("---\n# {comment}\n{yaml}")
}

/// Names given so far, and the ones the ledger already holds in the namespace.
#[derive(Default)]
struct Names {
    taken: HashSet<String>,
}

impl Names {
    /// Take the names of `Kind/namespace/name` resources in `namespace`.
    fn reserve_resources<I, S>(&mut self, resources: I, namespace: &str)
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        for resource in resources {
            let mut parts = resource.as_ref().splitn(3, '/');
            if let (Some(_kind), Some(ns), Some(name)) = (parts.next(), parts.next(), parts.next())
                && ns == namespace
            {
                self.taken.insert(name.to_string());
            }
        }
    }

    /// `base`, or `base-<n>` when taken; `fallback` (slugged) when `base` is empty.
    fn claim(&mut self, base: &str, fallback: &str) -> String {
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
        while !self.taken.insert(name.clone()) {
            name = format!("{base}-{n}");
            n += 1;
        }
        name
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_dns_labels_and_unique() {
        assert_eq!(slug("Made in the UI!"), "made-in-the-ui");
        assert_eq!(slug("ÄÖ__x"), "x");
        assert_eq!(slug("---"), "");
        let mut names = Names::default();
        assert_eq!(names.claim("a", "id"), "a");
        assert_eq!(names.claim("a", "id"), "a-2");
        assert_eq!(names.claim("", "Org 1"), "org-1");
    }

    #[test]
    fn names_the_ledger_holds_in_the_namespace_are_taken() {
        let mut names = Names::default();
        names.reserve_resources(
            [
                "Organization/platform/research",
                "OrganizationMember/platform/research-ann",
                "Organization/other/sales",
                "OrganizationMember/legacy:b1",
            ],
            "platform",
        );
        assert_eq!(names.claim("research", "x"), "research-2");
        assert_eq!(names.claim("research-ann", "x"), "research-ann-2");
        assert_eq!(names.claim("sales", "x"), "sales");
    }

    #[test]
    fn a_manifest_that_apply_would_refuse_or_change_is_refused() {
        let ok = manifest(
            "Organization",
            "a",
            "ns",
            json!({"alias": "no", "metadata": {"on": "0X1F"}}),
        );
        assert!(ok.is_ok(), "{ok:?}");
        for (spec, field) in [
            (json!({"alias": "x".repeat(300)}), "spec.alias"),
            (json!({"models": [""]}), "spec.models[0]"),
            (json!({"organizationId": "a b"}), "spec.organizationId"),
            (
                json!({"metadata": {"s": "x".repeat(5000)}}),
                "spec.metadata.s",
            ),
        ] {
            let why = manifest("Organization", "a", "ns", spec).expect_err("refused");
            assert!(why.starts_with(field), "{field}: {why}");
        }
        let why = manifest(
            "OrganizationMember",
            "m",
            "ns",
            json!({"organizationRef": {"name": "a"}, "user": {"userId": "u"}, "role": "proxy_admin"}),
        )
        .expect_err("refused");
        assert!(why.starts_with("spec.role"), "{why}");
    }
}
