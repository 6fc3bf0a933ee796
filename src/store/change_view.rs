//! A [`Change`] as data: what `plan -o json` and `plan -o markdown` print. The text plan
//! (`Change`'s `Display`) and this view read the same rows; values here are unescaped (each
//! output format escapes by its own rules) and kept as the text the row holds, so a number is
//! never re-encoded on its way to a reviewer.

use serde::Serialize;

use super::inventory::{BUDGET_LIMITS, RawObject};
use super::{BudgetRow, Change, MembershipRow, OrganizationRow};

/// One row-level write, as data.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChangeView {
    /// `create`, `update`, `delete`, `claim` (a ledger entry written) or `release` (removed).
    pub action: &'static str,
    /// `budget`, `organization`, `user`, `membership` or `ledger`.
    pub resource: &'static str,
    /// The row's id (`budget_id`, `organization_id`, `user_id`; the ledger's row key); null
    /// for a membership, whose key is `userId` and `organizationId`.
    pub id: Option<String>,
    /// A membership's user.
    pub user_id: Option<String>,
    /// A membership's organization.
    pub organization_id: Option<String>,
    /// A budget row created as a copy: the row it copies.
    pub copy_of: Option<String>,
    /// An organization's delete: what LiteLLM's cascade removes with it.
    pub cascade: Option<CascadeView>,
    /// A ledger entry: who holds the row.
    pub ledger: Option<LedgerView>,
    /// Every field the write sets: on a create its value, on an update each field that
    /// changes (`metadata.<key>` per metadata key), on a delete none.
    pub fields: Vec<FieldView>,
}

/// One field of a write: `before` null on a create, `after` null when the write clears it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FieldView {
    pub name: String,
    pub before: Option<String>,
    pub after: Option<String>,
}

/// What an organization's delete takes with it.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CascadeView {
    pub teams: i64,
    pub keys: i64,
    pub memberships: i64,
    /// The organization's own budget row, deleted after it.
    pub owned_budget_id: Option<String>,
}

/// A ledger entry written.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LedgerView {
    pub resource: String,
    pub manager: String,
    /// True when the row was created by this manager; false when adopted.
    pub created: bool,
}

impl ChangeView {
    fn new(action: &'static str, resource: &'static str, id: Option<String>) -> Self {
        Self {
            action,
            resource,
            id,
            user_id: None,
            organization_id: None,
            copy_of: None,
            cascade: None,
            ledger: None,
            fields: Vec::new(),
        }
    }

    fn membership(action: &'static str, m: &MembershipRow) -> Self {
        Self {
            user_id: Some(m.user_id.clone()),
            organization_id: Some(m.organization_id.clone()),
            ..Self::new(action, "membership", None)
        }
    }

    fn with_fields(mut self, fields: Vec<FieldView>) -> Self {
        self.fields = fields;
        self
    }

    /// True for a write that removes a row of LiteLLM's.
    pub fn deletes(&self) -> bool {
        self.action == "delete"
    }
}

type Values = Vec<(&'static str, Option<String>)>;

/// Every managed budget column with its value as the row holds it (None when NULL), in
/// inventory order.
pub(crate) fn budget_values(b: &BudgetRow) -> Values {
    let mut values: Values = BUDGET_LIMITS
        .iter()
        .map(|l| (l.column, b.limit(l.column).map(ToString::to_string)))
        .collect();
    values.push(("model_max_budget", b.model_max_budget.clone()));
    values
}

fn organization_values(o: &OrganizationRow) -> Values {
    vec![
        ("organization_alias", Some(o.organization_alias.clone())),
        ("budget_id", Some(o.budget_id.clone())),
        (
            "models",
            Some(serde_json::to_string(&o.models).unwrap_or_default()),
        ),
    ]
}

fn membership_values(m: &MembershipRow) -> Values {
    vec![
        ("user_role", m.user_role.clone()),
        ("budget_id", m.budget_id.clone()),
    ]
}

/// The fields a create sets (those with a value).
fn created(values: Values) -> Vec<FieldView> {
    values
        .into_iter()
        .filter_map(|(name, after)| {
            after.map(|a| FieldView {
                name: name.to_string(),
                before: None,
                after: Some(a),
            })
        })
        .collect()
}

/// The fields whose value differs between two rows.
fn changed(before: Values, after: Values) -> Vec<FieldView> {
    before
        .into_iter()
        .zip(after)
        .filter(|((_, b), (_, a))| b != a)
        .map(|((name, b), (_, a))| FieldView {
            name: name.to_string(),
            before: b,
            after: a,
        })
        .collect()
}

/// `metadata.<key>` for each key whose text changes; the whole text when either side is not
/// a JSON object.
fn metadata_changes(before: &str, after: &str) -> Vec<FieldView> {
    match (RawObject::parse(before), RawObject::parse(after)) {
        (Some(b), Some(a)) => b
            .changed_keys(&a)
            .into_iter()
            .map(|k| FieldView {
                name: format!("metadata.{k}"),
                before: b.raw(k).map(str::to_string),
                after: a.raw(k).map(str::to_string),
            })
            .collect(),
        _ if before != after => vec![FieldView {
            name: "metadata".into(),
            before: Some(before.to_string()),
            after: Some(after.to_string()),
        }],
        _ => Vec::new(),
    }
}

impl Change {
    /// This write as data (see [`ChangeView`]).
    pub fn view(&self) -> ChangeView {
        match self {
            Change::CreateBudget(b) => {
                ChangeView::new("create", "budget", Some(b.budget_id.clone()))
                    .with_fields(created(budget_values(b)))
            }
            Change::CopyBudget { source, after } => ChangeView {
                copy_of: Some(source.budget_id.clone()),
                ..ChangeView::new("create", "budget", Some(after.budget_id.clone()))
                    .with_fields(changed(budget_values(source), budget_values(after)))
            },
            Change::UpdateBudget { before, after } => {
                ChangeView::new("update", "budget", Some(after.budget_id.clone()))
                    .with_fields(changed(budget_values(before), budget_values(after)))
            }
            Change::DeleteBudget { budget_id } => {
                ChangeView::new("delete", "budget", Some(budget_id.clone()))
            }
            Change::CreateOrganization(o) => {
                let mut fields = created(organization_values(o));
                fields.push(FieldView {
                    name: "metadata".into(),
                    before: None,
                    after: Some(o.metadata.clone()),
                });
                ChangeView::new("create", "organization", Some(o.organization_id.clone()))
                    .with_fields(fields)
            }
            Change::UpdateOrganization { before, after } => {
                let mut fields = changed(organization_values(before), organization_values(after));
                fields.extend(metadata_changes(&before.metadata, &after.metadata));
                ChangeView::new(
                    "update",
                    "organization",
                    Some(after.organization_id.clone()),
                )
                .with_fields(fields)
            }
            Change::DeleteOrganization {
                organization_id,
                owned_budget_id,
                dependents,
            } => ChangeView {
                cascade: Some(CascadeView {
                    teams: dependents.teams,
                    keys: dependents.keys,
                    memberships: dependents.memberships,
                    owned_budget_id: owned_budget_id.clone(),
                }),
                ..ChangeView::new("delete", "organization", Some(organization_id.clone()))
            },
            Change::CreateUser {
                user_id,
                email,
                defaults,
            } => {
                ChangeView::new("create", "user", Some(user_id.clone())).with_fields(created(vec![
                    ("user_email", email.clone()),
                    (
                        "models",
                        (!defaults.models.is_empty())
                            .then(|| serde_json::to_string(&defaults.models).unwrap_or_default()),
                    ),
                    ("max_budget", defaults.max_budget.map(|b| b.to_string())),
                    ("budget_duration", defaults.budget_duration.clone()),
                ]))
            }
            Change::CreateMembership(m) => {
                ChangeView::membership("create", m).with_fields(created(membership_values(m)))
            }
            Change::UpdateMembership { before, after } => ChangeView::membership("update", after)
                .with_fields(changed(membership_values(before), membership_values(after))),
            Change::DeleteMembership {
                user_id,
                organization_id,
            } => ChangeView {
                user_id: Some(user_id.clone()),
                organization_id: Some(organization_id.clone()),
                ..ChangeView::new("delete", "membership", None)
            },
            Change::Claim { entry, .. } => ChangeView {
                ledger: Some(LedgerView {
                    resource: entry.resource.clone(),
                    manager: entry.manager.clone(),
                    created: entry.created,
                }),
                ..ChangeView::new("claim", "ledger", Some(entry.row_key.clone()))
            },
            Change::Release { row_key } => {
                ChangeView::new("release", "ledger", Some(row_key.clone()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Scalar;

    #[test]
    fn an_update_lists_only_the_fields_it_changes_with_their_text() {
        let before = BudgetRow::new("b1", "ci").with("max_budget", Some(Scalar::Float(100.0)));
        let after = before
            .clone()
            .with("max_budget", Some(Scalar::Float(250.5)))
            .with("tpm_limit", Some(Scalar::Int(10)));
        let view = Change::UpdateBudget { before, after }.view();
        assert_eq!((view.action, view.resource), ("update", "budget"));
        assert_eq!(view.id.as_deref(), Some("b1"));
        let fields: Vec<(&str, Option<&str>, Option<&str>)> = view
            .fields
            .iter()
            .map(|f| (f.name.as_str(), f.before.as_deref(), f.after.as_deref()))
            .collect();
        assert_eq!(
            fields,
            vec![
                ("max_budget", Some("100"), Some("250.5")),
                ("tpm_limit", None, Some("10")),
            ]
        );
    }

    #[test]
    fn metadata_changes_are_per_key_and_keep_the_text() {
        let row = |metadata: &str| OrganizationRow {
            organization_id: "o".into(),
            organization_alias: "a".into(),
            budget_id: "b".into(),
            models: vec![],
            metadata: metadata.into(),
            spend: 0.0,
        };
        let view = Change::UpdateOrganization {
            before: row(r#"{"cost_center":1.50,"team":"x"}"#),
            after: row(r#"{"cost_center":1.50,"team":"y"}"#),
        }
        .view();
        assert_eq!(view.fields.len(), 1, "{view:?}");
        assert_eq!(view.fields[0].name, "metadata.team");
        assert_eq!(view.fields[0].before.as_deref(), Some("\"x\""));
        assert_eq!(view.fields[0].after.as_deref(), Some("\"y\""));
    }
}
