//! The write vocabulary: one [`Change`] is one row-level write the stores know how to apply.
//! The engine plans lists of them; a list for one object is applied in one transaction. Its
//! `Display` is the `plan` output the CLI prints and reviewers read.

use std::fmt;

use super::inventory::RawObject;
use super::{BudgetRow, Dependents, LedgerEntry, MembershipRow, OrganizationRow};

/// What LiteLLM gives every internal user it creates (`get_new_internal_user_defaults`):
/// `models` from `default_internal_user_params`, `max_budget` from
/// `max_internal_user_budget`, `budget_duration` from `internal_user_budget_duration`. The
/// operator applies the same values, configured with `--new-user-*`, to users it creates; it
/// never changes users that exist.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NewUserDefaults {
    pub models: Vec<String>,
    pub max_budget: Option<f64>,
    pub budget_duration: Option<String>,
}

/// One write. A list of these for one object is applied in one transaction, in order.
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    CreateBudget(BudgetRow),
    /// A new budget row `after.budget_id` that starts as a whole copy of the row `source`
    /// (every column LiteLLM has, whichever version made it, and its reset window), with
    /// only the managed columns where `after` differs from `source` written.
    CopyBudget {
        source: BudgetRow,
        after: BudgetRow,
    },
    UpdateBudget {
        before: BudgetRow,
        after: BudgetRow,
    },
    DeleteBudget {
        budget_id: String,
    },
    CreateOrganization(OrganizationRow),
    UpdateOrganization {
        before: OrganizationRow,
        after: OrganizationRow,
    },
    /// Cascade in foreign-key order: teams, memberships, keys, the organization, its owned
    /// budget, and the member budgets the operator created for those memberships.
    DeleteOrganization {
        organization_id: String,
        owned_budget_id: Option<String>,
        /// What the cascade removes, as the plan read it: the transaction counts again under
        /// the organization's lock and fails, writing nothing, when there is more.
        dependents: Dependents,
    },
    /// A new `LiteLLM_UserTable` row with LiteLLM's new-internal-user defaults.
    CreateUser {
        user_id: String,
        email: Option<String>,
        /// The proxy's defaults for new internal users, as configured.
        defaults: NewUserDefaults,
    },
    CreateMembership(MembershipRow),
    UpdateMembership {
        before: MembershipRow,
        after: MembershipRow,
    },
    /// Record in the ledger that `entry.resource` manages a row (first in a transaction, so a
    /// row another resource or manager holds fails the whole transaction). `replaces` names
    /// a placeholder resource the entry may take over (rows imported from earlier versions).
    Claim {
        entry: LedgerEntry,
        replaces: Option<String>,
    },
    /// Remove a row's ledger entry: the row stays in LiteLLM, no longer managed.
    Release {
        row_key: String,
    },
    /// Remove one membership (its budget row, if the operator owns it, is a separate
    /// `DeleteBudget` after it).
    DeleteMembership {
        user_id: String,
        organization_id: String,
    },
}

impl Change {
    /// The columns this change writes, for drift events (`max_budget`, `user_role`, ...).
    pub fn changed_fields(&self) -> Vec<String> {
        fn diff(
            before: Vec<(&'static str, String)>,
            after: Vec<(&'static str, String)>,
        ) -> Vec<String> {
            before
                .into_iter()
                .zip(after)
                .filter(|((_, b), (_, a))| b != a)
                .map(|((name, _), _)| name.to_string())
                .collect()
        }
        match self {
            Change::UpdateBudget { before, after } => {
                diff(budget_fields(before), budget_fields(after))
            }
            Change::CopyBudget { .. } => vec!["budget row".to_string()],
            Change::UpdateOrganization { before, after } => {
                let mut f = diff(org_fields(before), org_fields(after));
                if before.metadata != after.metadata {
                    f.push("metadata".to_string());
                }
                f
            }
            Change::UpdateMembership { before, after } => {
                let mut f = Vec::new();
                if before.user_role != after.user_role {
                    f.push("user_role".to_string());
                }
                if before.budget_id != after.budget_id {
                    f.push("budget_id".to_string());
                }
                f
            }
            Change::CreateBudget(_) => vec!["budget row".to_string()],
            Change::CreateOrganization(_) => vec!["organization row".to_string()],
            Change::CreateUser { .. } => vec!["user row".to_string()],
            Change::CreateMembership(_) => vec!["membership row".to_string()],
            Change::DeleteBudget { .. }
            | Change::DeleteOrganization { .. }
            | Change::DeleteMembership { .. } => vec!["stale row".to_string()],
            Change::Claim { .. } | Change::Release { .. } => Vec::new(),
        }
    }
}

/// A value as the plan shows it: `none` when absent, control characters escaped.
fn opt<T: fmt::Display>(v: &Option<T>) -> String {
    v.as_ref()
        .map_or_else(|| "none".to_string(), |v| t(&v.to_string()).into_owned())
}

/// A text value as the plan shows it (see [`crate::text::escape`]).
fn t(value: &str) -> std::borrow::Cow<'_, str> {
    crate::text::escape(value)
}

/// Every managed budget column as the plan shows it, in inventory order.
pub(crate) fn budget_fields(b: &BudgetRow) -> Vec<(&'static str, String)> {
    super::change_view::budget_values(b)
        .into_iter()
        .map(|(k, v)| (k, opt(&v)))
        .collect()
}

fn org_fields(o: &OrganizationRow) -> Vec<(&'static str, String)> {
    vec![
        (
            "organization_alias",
            t(&format!("{:?}", o.organization_alias)).into_owned(),
        ),
        ("budget_id", t(&o.budget_id).into_owned()),
        ("models", t(&format!("{:?}", o.models)).into_owned()),
    ]
}

/// `metadata.<key>: before -> after` for each key whose text the update changes.
fn write_metadata_diff(f: &mut fmt::Formatter<'_>, before: &str, after: &str) -> fmt::Result {
    match (RawObject::parse(before), RawObject::parse(after)) {
        (Some(b), Some(a)) => {
            for k in b.changed_keys(&a) {
                writeln!(
                    f,
                    "      metadata.{}: {} -> {}",
                    t(k),
                    t(b.raw(k).unwrap_or("none")),
                    t(a.raw(k).unwrap_or("none"))
                )?;
            }
            Ok(())
        }
        _ if before != after => writeln!(f, "      metadata: {} -> {}", t(before), t(after)),
        _ => Ok(()),
    }
}

fn write_new_budget(f: &mut fmt::Formatter<'_>, b: &BudgetRow) -> fmt::Result {
    writeln!(f, "  + budget {}", t(&b.budget_id))?;
    for (k, v) in budget_fields(b).into_iter().filter(|(_, v)| v != "none") {
        writeln!(f, "      {k}: {v}")?;
    }
    Ok(())
}

fn write_new_organization(f: &mut fmt::Formatter<'_>, o: &OrganizationRow) -> fmt::Result {
    writeln!(f, "  + organization {}", t(&o.organization_id))?;
    for (k, v) in org_fields(o) {
        writeln!(f, "      {k}: {v}")?;
    }
    writeln!(f, "      metadata: {}", t(&o.metadata))
}

fn write_new_user(
    f: &mut fmt::Formatter<'_>,
    user_id: &str,
    email: &Option<String>,
    defaults: &NewUserDefaults,
) -> fmt::Result {
    writeln!(f, "  + user {} (email: {})", t(user_id), opt(email))?;
    if !defaults.models.is_empty() {
        writeln!(f, "      models: {}", t(&format!("{:?}", defaults.models)))?;
    }
    if let Some(b) = defaults.max_budget {
        writeln!(f, "      max_budget: {b}")?;
    }
    if let Some(d) = &defaults.budget_duration {
        writeln!(f, "      budget_duration: {}", t(d))?;
    }
    Ok(())
}

fn write_membership_update(
    f: &mut fmt::Formatter<'_>,
    before: &MembershipRow,
    after: &MembershipRow,
) -> fmt::Result {
    writeln!(
        f,
        "  ~ membership user {} in {}",
        t(&after.user_id),
        t(&after.organization_id)
    )?;
    if before.user_role != after.user_role {
        writeln!(
            f,
            "      user_role: {} -> {}",
            opt(&before.user_role),
            opt(&after.user_role)
        )?;
    }
    if before.budget_id != after.budget_id {
        writeln!(
            f,
            "      budget_id: {} -> {}",
            opt(&before.budget_id),
            opt(&after.budget_id)
        )?;
    }
    Ok(())
}

fn write_diff(
    f: &mut fmt::Formatter<'_>,
    before: Vec<(&'static str, String)>,
    after: Vec<(&'static str, String)>,
) -> fmt::Result {
    for ((name, b), (_, a)) in before.into_iter().zip(after) {
        if b != a {
            writeln!(f, "      {name}: {b} -> {a}")?;
        }
    }
    Ok(())
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::CreateBudget(b) => write_new_budget(f, b),
            Change::UpdateBudget { before, after } => {
                writeln!(f, "  ~ budget {}", t(&after.budget_id))?;
                write_diff(f, budget_fields(before), budget_fields(after))
            }
            Change::CopyBudget { source, after } => {
                writeln!(
                    f,
                    "  + budget {} (a copy of budget {})",
                    t(&after.budget_id),
                    t(&source.budget_id)
                )?;
                write_diff(f, budget_fields(source), budget_fields(after))
            }
            Change::DeleteBudget { budget_id } => writeln!(f, "  - budget {}", t(budget_id)),
            Change::CreateOrganization(o) => write_new_organization(f, o),
            Change::UpdateOrganization { before, after } => {
                writeln!(f, "  ~ organization {}", t(&after.organization_id))?;
                write_diff(f, org_fields(before), org_fields(after))?;
                write_metadata_diff(f, &before.metadata, &after.metadata)
            }
            Change::DeleteOrganization {
                organization_id,
                owned_budget_id,
                dependents,
            } => {
                writeln!(
                    f,
                    "  - organization {} (cascade: {dependents})",
                    t(organization_id)
                )?;
                if let Some(b) = owned_budget_id {
                    writeln!(f, "  - budget {}", t(b))?;
                }
                Ok(())
            }
            Change::CreateUser {
                user_id,
                email,
                defaults,
            } => write_new_user(f, user_id, email, defaults),
            Change::CreateMembership(m) => writeln!(
                f,
                "  + membership user {} in {} (role: {}, budget: {})",
                t(&m.user_id),
                t(&m.organization_id),
                opt(&m.user_role),
                opt(&m.budget_id)
            ),
            Change::UpdateMembership { before, after } => write_membership_update(f, before, after),
            Change::Claim { entry, .. } => writeln!(
                f,
                "  = ledger: {} managed by {} ({})",
                t(&entry.row_key),
                t(&entry.resource),
                if entry.created { "created" } else { "adopted" }
            ),
            Change::Release { row_key } => {
                writeln!(f, "  = ledger: {} released (the row stays)", t(row_key))
            }
            Change::DeleteMembership {
                user_id,
                organization_id,
            } => writeln!(
                f,
                "  - membership user {} in {}",
                t(user_id),
                t(organization_id)
            ),
        }
    }
}
