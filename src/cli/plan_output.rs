//! `plan` and `apply` output: the text a terminal shows, `-o json` (a versioned document for
//! programs, [`SCHEMA`]) and `-o markdown` (what a bot posts on a pull request). All three
//! come from one [`RunReport`] and agree on counts, errors and exit code.

use serde::Serialize;

use std::collections::HashMap;

use crate::cli::manifest::{DEFAULT_NAMESPACE, ManifestError, ManifestSet, Source};
use crate::cli::offline::RunReport;
use crate::cli::output::{count, plan_text};
use crate::engine::{ObjectKey, ObjectPlan};
use crate::store::{Change, ChangeView, FieldView};
use crate::text::escape;

/// The `schema` of `plan -o json`. A field is only ever added within one version; a field
/// renamed, removed or changed in meaning makes a new version.
pub const SCHEMA: &str = "litellm-org-operator/plan/v1";

/// How `plan` and `apply` print their report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum PlanFormat {
    /// Lines for a terminal or a job log.
    #[default]
    Text,
    /// One JSON document (schema `litellm-org-operator/plan/v1`).
    Json,
    /// A pull-request comment: a summary table, then each object, deletes first and in bold.
    Markdown,
}

/// What a run printed: stdout, and the process's exit code.
pub struct Rendered {
    pub stdout: String,
    pub exit_code: u8,
}

/// Everything the output needs besides the report.
pub struct Context<'a> {
    pub set: &'a ManifestSet,
    pub apply: bool,
    pub verbose: bool,
    /// The manager the run wrote (or would write) as.
    pub manager: &'a str,
    /// Where each object was read from, by kind and key.
    sources: HashMap<(&'static str, ObjectKey), &'a Source>,
}

impl<'a> Context<'a> {
    pub fn new(set: &'a ManifestSet, apply: bool, verbose: bool, manager: &'a str) -> Self {
        let key = |meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| {
            ObjectKey::new(
                meta.namespace.as_deref().unwrap_or(DEFAULT_NAMESPACE),
                meta.name.as_deref().unwrap_or_default(),
            )
        };
        let mut sources = HashMap::new();
        for o in &set.organizations {
            sources
                .entry(("Organization", key(&o.object.metadata)))
                .or_insert(&o.source);
        }
        for m in &set.members {
            sources
                .entry(("OrganizationMember", key(&m.object.metadata)))
                .or_insert(&m.source);
        }
        Self {
            set,
            apply,
            verbose,
            manager,
            sources,
        }
    }

    /// The file and document an object of the plan was read from (none for a prune).
    fn source_of(&self, plan: &ObjectPlan) -> Option<String> {
        let key = plan.key.clone()?;
        self.sources.get(&(plan.kind, key)).map(ToString::to_string)
    }
}

/// The report in `format`.
pub fn render(report: &RunReport, cx: &Context<'_>, format: PlanFormat) -> Rendered {
    let errors = all_errors(cx.set, report);
    let exit_code = report.exit_code(cx.apply, errors.len());
    let stdout = match format {
        PlanFormat::Text => text(report, cx, errors.len()),
        PlanFormat::Json => json(report, cx, &errors, exit_code),
        PlanFormat::Markdown => markdown(report, cx, &errors),
    };
    Rendered { stdout, exit_code }
}

/// Reading errors first, then each object's, in manifest order.
pub fn all_errors<'a>(set: &'a ManifestSet, report: &'a RunReport) -> Vec<&'a ManifestError> {
    set.errors.iter().chain(&report.errors).collect()
}

/// The hint for objects removed from the manifests, whose rows only `--prune` removes: what
/// they are, and the command that shows how.
pub fn undeclared_hint(report: &RunReport, manager: &str) -> Option<(String, String)> {
    if report.undeclared.is_empty() {
        return None;
    }
    let (organizations, members) = report.undeclared_counts();
    let mut what = Vec::new();
    if organizations > 0 {
        what.push(count(organizations, "Organization", "Organizations"));
    }
    if members > 0 {
        what.push(count(members, "OrganizationMember", "OrganizationMembers"));
    }
    let text = format!(
        "{} that manager {manager:?} applied {} no longer in these manifests; their rows stay \
         until a run with --prune deletes them (rows adopted rather than created are released \
         and stay in LiteLLM)",
        what.join(" and "),
        if organizations + members == 1 {
            "is"
        } else {
            "are"
        },
    );
    Some((text, format!("plan --prune --manager {manager} -f …")))
}

fn text(report: &RunReport, cx: &Context<'_>, errors: usize) -> String {
    let mut out = String::new();
    for plan in &report.plans {
        out.push_str(&plan_text(plan, cx.verbose));
    }
    if let Some((hint, command)) = undeclared_hint(report, cx.manager) {
        out.push_str(&format!(
            "hint: {}; to see how: {}\n",
            escape(&hint),
            escape(&command)
        ));
    }
    out.push_str(&report.summary(cx.apply, errors));
    out.push('\n');
    out
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Document<'a> {
    schema: &'static str,
    command: &'static str,
    manager: &'a str,
    exit_code: u8,
    summary: Summary,
    objects: Vec<ObjectView<'a>>,
    errors: Vec<ErrorView>,
    prune: PruneView<'a>,
    notices: Vec<&'a str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Summary {
    objects_read: usize,
    create: usize,
    update: usize,
    delete: usize,
    ledger_claims: usize,
    ledger_releases: usize,
    errors: usize,
    changes_pending: bool,
    text: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ObjectView<'a> {
    kind: &'a str,
    /// The file and document the object was read from; null for a prune.
    source: Option<String>,
    /// A delete `--prune` made (or would make) for an object no manifest declares.
    pruned: bool,
    namespace: Option<&'a str>,
    name: Option<&'a str>,
    organization_id: Option<&'a str>,
    user_id: Option<&'a str>,
    changes: Vec<ChangeView>,
    notes: &'a [String],
}

#[derive(Serialize)]
struct ErrorView {
    source: Option<String>,
    object: Option<String>,
    field: Option<String>,
    message: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PruneView<'a> {
    requested: bool,
    refused: Option<&'a str>,
    /// Objects whose rows only `--prune` would remove (without `--prune`).
    undeclared: Vec<ObjectView<'a>>,
    hint: Option<String>,
}

fn object_view<'a>(plan: &'a ObjectPlan, cx: &Context<'_>) -> ObjectView<'a> {
    let (kind, pruned) = match plan.kind.strip_suffix(" (pruned)") {
        Some(kind) => (kind, true),
        None => (plan.kind, false),
    };
    ObjectView {
        kind,
        source: cx.source_of(plan),
        pruned,
        namespace: plan.key.as_ref().map(|k| k.namespace.as_str()),
        name: plan.key.as_ref().map(|k| k.name.as_str()),
        organization_id: plan.organization_id.as_deref(),
        user_id: plan.user_id.as_deref(),
        changes: plan.changes.iter().map(Change::view).collect(),
        notes: &plan.notes,
    }
}

fn json(report: &RunReport, cx: &Context<'_>, errors: &[&ManifestError], exit_code: u8) -> String {
    let (create, update, delete) = report.counts();
    let (claims, releases) = report.ledger_counts();
    let document = Document {
        schema: SCHEMA,
        command: if cx.apply { "apply" } else { "plan" },
        manager: cx.manager,
        exit_code,
        summary: Summary {
            objects_read: report.objects,
            create,
            update,
            delete,
            ledger_claims: claims,
            ledger_releases: releases,
            errors: errors.len(),
            changes_pending: !cx.apply && report.has_changes(),
            text: report.summary(cx.apply, errors.len()),
        },
        objects: report.plans.iter().map(|p| object_view(p, cx)).collect(),
        errors: errors
            .iter()
            .map(|e| ErrorView {
                source: e.source.as_ref().map(ToString::to_string),
                object: e.object.clone(),
                field: e.field.clone(),
                message: e.message.clone(),
            })
            .collect(),
        prune: PruneView {
            requested: report.prune_refused.is_some() || report.pruned,
            refused: report.prune_refused.as_deref(),
            undeclared: report
                .undeclared
                .iter()
                .map(|p| object_view(p, cx))
                .collect(),
            hint: undeclared_hint(report, cx.manager).map(|(hint, _)| hint),
        },
        notices: cx
            .set
            .skipped
            .iter()
            .chain(&cx.set.notices)
            .map(String::as_str)
            .collect(),
    };
    serde_json::to_string_pretty(&document).unwrap_or_default() + "\n"
}

/// GitHub's limit on a comment is 65,536 characters: details stop before it.
const MARKDOWN_BUDGET: usize = 60_000;

/// Text for a Markdown document: control characters escaped as in the text plan, then every
/// ASCII punctuation character backslash-escaped, so a value can neither format, link, start
/// an HTML tag, mention (`@`) nor break a table.
fn md(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in escape(text).chars() {
        if c.is_ascii_punctuation() {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A value as a Markdown code span: nothing inside one formats, links, mentions or starts an
/// HTML tag. Control characters are escaped as in the text plan; the fence is one backtick
/// longer than the longest run of backticks the value holds.
fn code(text: &str) -> String {
    let text = escape(text);
    if text.is_empty() {
        return "_empty_".into();
    }
    let longest = text.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let fence = "`".repeat(longest + 1);
    let pad = if text.starts_with('`') || text.ends_with('`') {
        " "
    } else {
        ""
    };
    format!("{fence}{pad}{text}{pad}{fence}")
}

fn markdown(report: &RunReport, cx: &Context<'_>, errors: &[&ManifestError]) -> String {
    let (create, update, delete) = report.counts();
    let (claims, releases) = report.ledger_counts();
    let title = if cx.apply { "apply" } else { "plan" };
    let mut out = format!("### litellm-org-operator {title}\n\n");
    out.push_str("| create | update | delete | ledger entries | errors | objects read |\n");
    out.push_str("|---:|---:|---:|---:|---:|---:|\n");
    let delete_cell = if delete > 0 {
        format!("**{delete}**")
    } else {
        "0".into()
    };
    out.push_str(&format!(
        "| {create} | {update} | {delete_cell} | {} | {} | {} |\n\n",
        claims + releases,
        errors.len(),
        report.objects
    ));
    // The summary holds numbers and fixed words only.
    out.push_str(&report.summary(cx.apply, errors.len()));
    out.push_str("\n\n");
    if let Some(refused) = &report.prune_refused {
        out.push_str(&format!("> **{}**\n\n", md(refused)));
    }
    if let Some((hint, command)) = undeclared_hint(report, cx.manager) {
        out.push_str(&format!(
            "> {}; to see how: {}\n\n",
            md(&hint),
            code(&command)
        ));
    }
    if !errors.is_empty() {
        out.push_str("#### Errors\n\n");
        for e in errors {
            out.push_str(&format!("- {}\n", error_line(e)));
        }
        out.push('\n');
    }
    let mut plans: Vec<&ObjectPlan> = report
        .plans
        .iter()
        .filter(|p| cx.verbose || p.changes_rows() || !p.notes.is_empty())
        .collect();
    // Deletes first (stable: manifest order within each part).
    plans.sort_by_cached_key(|p| !p.changes.iter().any(|c| c.view().deletes()));
    let mut shown = 0;
    for plan in &plans {
        let section = object_markdown(plan, cx);
        if out.len() + section.len() > MARKDOWN_BUDGET {
            break;
        }
        out.push_str(&section);
        shown += 1;
    }
    if shown < plans.len() {
        out.push_str(&format!(
            "_{} not shown (the comment's size limit): the job log or `plan -o json` has every one._\n",
            count(plans.len() - shown, "more object", "more objects")
        ));
    }
    out
}

/// An error: where (file, object, field) as code spans, then its message.
fn error_line(e: &ManifestError) -> String {
    let mut parts: Vec<String> = Vec::new();
    if let Some(source) = &e.source {
        parts.push(code(&source.to_string()));
    }
    if let Some(object) = &e.object {
        parts.push(code(object));
    }
    if let Some(field) = &e.field {
        parts.push(code(field));
    }
    parts.push(md(&e.message));
    parts.join(": ")
}

fn object_markdown(plan: &ObjectPlan, cx: &Context<'_>) -> String {
    let verbose = cx.verbose;
    let name = match &plan.key {
        Some(k) => format!("{} {}", plan.kind, code(&k.to_string())),
        None => plan.kind.to_string(),
    };
    let mut out = format!("#### {name}\n\n");
    if let Some(source) = cx.source_of(plan) {
        out.push_str(&format!("from {}\n\n", code(&source)));
    }
    for change in &plan.changes {
        let view = change.view();
        if view.resource == "ledger" && !verbose {
            continue;
        }
        let line = change_line(&view);
        if view.deletes() {
            out.push_str(&format!("- **{line}**\n"));
        } else {
            out.push_str(&format!("- {line}\n"));
        }
        for f in &view.fields {
            out.push_str(&format!("  - {}\n", field_line(f, view.action == "create")));
        }
    }
    for note in &plan.notes {
        out.push_str(&format!("- ⚠️ {}\n", md(note)));
    }
    out.push('\n');
    out
}

fn change_line(v: &ChangeView) -> String {
    let subject = match (&v.id, &v.user_id, &v.organization_id) {
        (Some(id), _, _) => format!("{} {}", v.resource, code(id)),
        (None, Some(user), Some(org)) => {
            format!("{} of user {} in {}", v.resource, code(user), code(org))
        }
        _ => v.resource.to_string(),
    };
    let mut line = format!("{} {subject}", v.action);
    if let Some(source) = &v.copy_of {
        line.push_str(&format!(" (a copy of budget {})", code(source)));
    }
    if let Some(c) = &v.cascade {
        line.push_str(&format!(
            " (with {}, {}, {}",
            count(c.teams as usize, "team", "teams"),
            count(c.keys as usize, "key", "keys"),
            count(c.memberships as usize, "membership", "memberships")
        ));
        if let Some(b) = &c.owned_budget_id {
            line.push_str(&format!("; its budget {}", code(b)));
        }
        line.push(')');
    }
    if let Some(l) = &v.ledger {
        line.push_str(&format!(
            ": managed by {} for {}",
            code(&l.manager),
            code(&l.resource)
        ));
    }
    line
}

/// `name: value` on a create, `name: before → after` on an update.
fn field_line(f: &FieldView, create: bool) -> String {
    let value = |v: &Option<String>| v.as_deref().map_or_else(|| "_none_".into(), code);
    if create {
        format!("{}: {}", code(&f.name), value(&f.after))
    } else {
        format!(
            "{}: {} → {}",
            code(&f.name),
            value(&f.before),
            value(&f.after)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::{code, md};

    #[test]
    fn markdown_code_spans_hold_any_value() {
        assert_eq!(code("gpt-4o"), "`gpt-4o`");
        assert_eq!(code("a`b"), "``a`b``");
        assert_eq!(code("`x``"), "``` `x`` ```");
        assert_eq!(code("a\nb\u{1b}"), "`a\\nb\\u{1b}`");
        assert_eq!(code(""), "_empty_");
    }

    #[test]
    fn markdown_values_cannot_format_link_or_mention() {
        assert_eq!(md("a_b"), "a\\_b");
        assert_eq!(md("@team"), "\\@team");
        assert_eq!(md("<img src=x>"), "\\<img src\\=x\\>");
        assert_eq!(md("x|y"), "x\\|y");
        assert_eq!(md("a\nb"), "a\\\\nb");
        assert_eq!(md("ünï"), "ünï");
    }
}
