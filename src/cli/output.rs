//! Rendering for people: `get` results as a table, JSON or YAML, and plans and errors with
//! control characters escaped.
//!
//! Plan output is read in pull-request reviews and terminals: a value holding a newline or
//! an ANSI escape sequence (a user id from the database, a namespace in a manifest) must not
//! be able to fake a line or hide one. Every value is escaped before it is printed; the
//! JSON and YAML outputs escape by their own rules.

use std::borrow::Cow;

use comfy_table::{Table, presets::NOTHING};
use serde::Serialize;

use crate::engine::{Change, ObjectKey, ObjectPlan};
use crate::store::{BudgetRow, MemberSummary, MembershipRow, OrganizationRow, OrganizationSummary};

/// Whether a character would change what a terminal or a review shows rather than show
/// itself: C0 and C1 controls, DEL, and the bidirectional overrides and isolates.
fn is_unsafe(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `text` with every control character written as an escape (`\n`, `\t`, `\u{1b}`).
pub fn escape(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_unsafe) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if is_unsafe(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

fn esc(text: &str) -> String {
    escape(text).into_owned()
}

fn esc_opt(text: &Option<String>) -> Option<String> {
    text.as_deref().map(esc)
}

fn esc_budget(b: &BudgetRow) -> BudgetRow {
    BudgetRow {
        budget_id: esc(&b.budget_id),
        budget_duration: esc_opt(&b.budget_duration),
        created_by: esc(&b.created_by),
        ..b.clone()
    }
}

fn esc_organization(o: &OrganizationRow) -> OrganizationRow {
    OrganizationRow {
        organization_id: esc(&o.organization_id),
        organization_alias: esc(&o.organization_alias),
        budget_id: esc(&o.budget_id),
        models: o.models.iter().map(|m| esc(m)).collect(),
        ..o.clone()
    }
}

fn esc_membership(m: &MembershipRow) -> MembershipRow {
    MembershipRow {
        user_id: esc(&m.user_id),
        organization_id: esc(&m.organization_id),
        user_role: esc_opt(&m.user_role),
        budget_id: esc_opt(&m.budget_id),
    }
}

/// A copy of `plan` safe to print: every text value escaped (metadata and per-model budgets
/// are printed as JSON, which escapes them already).
pub fn printable(plan: &ObjectPlan) -> ObjectPlan {
    let changes = plan
        .changes
        .iter()
        .map(|change| match change {
            Change::CreateBudget(b) => Change::CreateBudget(esc_budget(b)),
            Change::UpdateBudget { before, after } => Change::UpdateBudget {
                before: esc_budget(before),
                after: esc_budget(after),
            },
            Change::DeleteBudget { budget_id } => Change::DeleteBudget {
                budget_id: esc(budget_id),
            },
            Change::CreateOrganization(o) => Change::CreateOrganization(esc_organization(o)),
            Change::UpdateOrganization { before, after } => Change::UpdateOrganization {
                before: esc_organization(before),
                after: esc_organization(after),
            },
            Change::DeleteOrganization {
                organization_id,
                owned_budget_id,
            } => Change::DeleteOrganization {
                organization_id: esc(organization_id),
                owned_budget_id: esc_opt(owned_budget_id),
            },
            Change::CreateUser { user_id, email } => Change::CreateUser {
                user_id: esc(user_id),
                email: esc_opt(email),
            },
            Change::CreateMembership(m) => Change::CreateMembership(esc_membership(m)),
            Change::UpdateMembership { before, after } => Change::UpdateMembership {
                before: esc_membership(before),
                after: esc_membership(after),
            },
            Change::DeleteMembership {
                user_id,
                organization_id,
                owned_budget_id,
            } => Change::DeleteMembership {
                user_id: esc(user_id),
                organization_id: esc(organization_id),
                owned_budget_id: esc_opt(owned_budget_id),
            },
        })
        .collect();
    ObjectPlan {
        key: plan
            .key
            .as_ref()
            .map(|k| ObjectKey::new(esc(&k.namespace), esc(&k.name))),
        changes,
        ..plan.clone()
    }
}

/// Output format of `get`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
    Yaml,
}

fn money(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_string(), |v| format!("{v:.2}"))
}

fn serialized<T: Serialize>(rows: &[T], format: Format) -> Option<String> {
    match format {
        Format::Json => serde_json::to_string_pretty(rows).ok().map(|s| s + "\n"),
        Format::Yaml => serde_yaml::to_string(rows).ok(),
        Format::Table => None,
    }
}

fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(NOTHING).set_header(header.to_vec());
    t
}

/// Organizations as `get organizations` prints them.
pub fn organizations(rows: &[OrganizationSummary], format: Format) -> String {
    if let Some(s) = serialized(rows, format) {
        return s;
    }
    let mut t = table(&[
        "ALIAS", "ID", "SPEND", "BUDGET", "MEMBERS", "MODELS", "OWNER",
    ]);
    for r in rows {
        t.add_row(vec![
            esc(&r.alias),
            esc(&r.organization_id),
            format!("{:.2}", r.spend),
            money(r.max_budget),
            r.members.to_string(),
            if r.models.is_empty() {
                "all".to_string()
            } else {
                esc(&r.models.join(","))
            },
            r.owner.as_deref().map_or_else(|| "-".into(), esc),
        ]);
    }
    format!("{t}\n")
}

/// Memberships as `get members` prints them.
pub fn members(rows: &[MemberSummary], format: Format) -> String {
    if let Some(s) = serialized(rows, format) {
        return s;
    }
    let mut t = table(&["ORGANIZATION", "USER", "EMAIL", "ROLE", "BUDGET", "SPEND"]);
    for r in rows {
        t.add_row(vec![
            esc(&r.organization_alias),
            esc(&r.user_id),
            r.user_email.as_deref().map_or_else(|| "-".into(), esc),
            r.role.as_deref().map_or_else(|| "-".into(), esc),
            money(r.max_budget_in_organization),
            format!("{:.2}", r.spend),
        ]);
    }
    format!("{t}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped() {
        assert!(matches!(escape("plain ünïcode"), Cow::Borrowed(_)));
        assert_eq!(escape("a\nb\tc\r"), "a\\nb\\tc\\r");
        assert_eq!(escape("\u{1b}[2K"), "\\u{1b}[2K");
        assert_eq!(escape("x\u{9b}y\u{7f}"), "x\\u{9b}y\\u{7f}");
        assert_eq!(escape("\u{202e}txt"), "\\u{202e}txt");
        assert!(!escape("\0").contains('\0'));
    }

    #[test]
    fn a_printable_plan_has_one_line_per_change() {
        let plan = ObjectPlan {
            kind: "OrganizationMember",
            key: Some(ObjectKey::new("ns", "m")),
            changes: vec![Change::CreateMembership(MembershipRow {
                user_id: "eve\nNo changes (1 objects read).\u{1b}[8m".into(),
                organization_id: "org".into(),
                user_role: Some("org_admin".into()),
                budget_id: None,
            })],
            ..Default::default()
        };
        let shown = printable(&plan).to_string();
        assert_eq!(shown.lines().count(), 2, "{shown}");
        assert!(shown.contains("eve\\nNo changes"), "{shown}");
        assert!(!shown.contains('\u{1b}'), "{shown}");
    }
}
