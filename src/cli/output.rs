//! Rendering for people: `get` results as a table, JSON or YAML, and plans and errors with
//! control characters escaped.
//!
//! Plan output is read in pull-request reviews and terminals: a value holding a newline or
//! an ANSI escape sequence (a user id from the database, a namespace in a manifest) must not
//! be able to fake a line or hide one. Every value is escaped before it is printed; the
//! JSON and YAML outputs escape by their own rules.

use comfy_table::{Table, presets::NOTHING};
use serde::Serialize;

use crate::store::{MemberSummary, OrganizationSummary};

pub use crate::text::escape;

fn esc(text: &str) -> String {
    escape(text).into_owned()
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
        Format::Yaml => crate::yaml::to_string(&rows).ok(),
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
            r.owner
                .as_ref()
                .map_or_else(|| "-".into(), |o| esc(&o.to_string())),
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

/// One object's plan as `plan` and `apply` print it: its changes to LiteLLM's rows and its
/// notes; the ledger lines (`= ledger: … managed by …`) only when `verbose`. An object whose
/// plan writes only the ledger is left out unless `verbose` (the summary still counts it).
pub fn plan_text(plan: &crate::engine::ObjectPlan, verbose: bool) -> String {
    use crate::store::Change;
    if verbose {
        return plan.to_string();
    }
    let rows: Vec<&Change> = plan
        .changes
        .iter()
        .filter(|c| !matches!(c, Change::Claim { .. } | Change::Release { .. }))
        .collect();
    if rows.is_empty() && plan.notes.is_empty() {
        return String::new();
    }
    let mut out = match &plan.key {
        Some(k) => format!("{} {}:\n", plan.kind, esc(&k.to_string())),
        None => format!("{}:\n", plan.kind),
    };
    for c in rows {
        out.push_str(&c.to_string());
    }
    for n in &plan.notes {
        out.push_str(&format!("  ! {}\n", esc(n)));
    }
    out
}

/// `1 object`, `2 objects`: a count and its noun, plural unless one.
pub fn count(n: usize, singular: &str, plural: &str) -> String {
    if n == 1 {
        format!("1 {singular}")
    } else {
        format!("{n} {plural}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped() {
        assert!(matches!(
            escape("plain ünïcode"),
            std::borrow::Cow::Borrowed(_)
        ));
        assert_eq!(escape("a\nb\tc\r"), "a\\nb\\tc\\r");
        assert_eq!(escape("\u{1b}[2K"), "\\u{1b}[2K");
        assert_eq!(escape("x\u{9b}y\u{7f}"), "x\\u{9b}y\\u{7f}");
        assert_eq!(escape("\u{202e}txt"), "\\u{202e}txt");
        assert!(!escape("\0").contains('\0'));
    }

    #[test]
    fn counts_are_singular_only_for_one() {
        assert_eq!(count(0, "object", "objects"), "0 objects");
        assert_eq!(count(1, "object", "objects"), "1 object");
        assert_eq!(
            count(2, "ledger entry", "ledger entries"),
            "2 ledger entries"
        );
    }
}
