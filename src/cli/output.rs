//! Rendering of `get` results as a table, JSON or YAML.

use comfy_table::{Table, presets::NOTHING};
use serde::Serialize;

use crate::store::{MemberSummary, OrganizationSummary};

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
            r.alias.clone(),
            r.organization_id.clone(),
            format!("{:.2}", r.spend),
            money(r.max_budget),
            r.members.to_string(),
            if r.models.is_empty() {
                "all".to_string()
            } else {
                r.models.join(",")
            },
            r.owner.clone().unwrap_or_else(|| "-".into()),
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
            r.organization_alias.clone(),
            r.user_id.clone(),
            r.user_email.clone().unwrap_or_else(|| "-".into()),
            r.role.clone().unwrap_or_else(|| "-".into()),
            money(r.max_budget_in_organization),
            format!("{:.2}", r.spend),
        ]);
    }
    format!("{t}\n")
}
