//! Which budget row holds a resource's declared limits: the step of the planner both kinds
//! share. [`organization_holder`] (and a member's `maxBudgetInOrganization`) decide it:
//! - [`Holder::Own`]: the resource's own row, with the declared limits (an adopted row's own
//!   budget starts as a whole copy of the budget it had);
//! - [`Holder::Referenced`]: `spec.budgetRef`, a row that exists and is never written;
//! - [`Holder::Theirs`]: no limits declared, the row keeps the budget LiteLLM gave it, or gets
//!   back the one it had before the operator gave it its own.
//!
//! [`hold`] plans the move between them: the `budget_id` the resource's row points at, the
//! writes of its own budget row (created, copied, updated, or deleted once no longer used)
//! and that row's ledger claim or release.

use serde_json::{Value, json};

use super::desired::{DeclaredBudget, DesiredBudget};
use super::fields::{managed_budget, same_limits};
use super::plan::{Originals, Step, claim_if_changed, policy_str};
use crate::crd::DeletionPolicy;
use crate::store::{BudgetRow, Change, LedgerEntry, budget_key};

/// Which budget row holds a resource's declared limits.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Holder {
    /// The resource's own row, with these limits.
    Own(DeclaredBudget),
    /// `spec.budgetRef`: an existing row, never written.
    Referenced(String),
    /// No limits declared: the budget LiteLLM gave the row, or the one it had before.
    Theirs,
}

/// The holder an organization's spec asks for. A created organization must have a budget,
/// so without one declared it gets an empty row of its own; an adopted one whose own row is
/// the only budget it has (nothing recorded to give back) keeps it; any other adopted one
/// that declares no budget keeps or gets back its own.
pub(super) fn organization_holder(
    budget: &DesiredBudget,
    created: bool,
    on_own_row: bool,
    originals: &Originals,
) -> Holder {
    match budget {
        DesiredBudget::Referenced(id) => Holder::Referenced(id.clone()),
        DesiredBudget::Owned(_, declared) => Holder::Own(declared.clone()),
        DesiredBudget::Unset(_) if created || (on_own_row && !originals.manages("budget_id")) => {
            Holder::Own(DeclaredBudget::default())
        }
        DesiredBudget::Unset(_) => Holder::Theirs,
    }
}

/// What [`hold`] plans: the `budget_id` of the resource's row, and the writes.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Held {
    pub budget_id: Option<String>,
    pub changes: Vec<(Step, Change)>,
}

/// The writes that make `holder` hold the resource's limits. `current` is the `budget_id`
/// the resource's row has; `row_created` whether the operator created (or creates) that row;
/// `keep_own` keeps the own row while other rows still point at it.
#[allow(clippy::too_many_arguments)]
pub(super) fn hold(
    holder: &Holder,
    own: &OwnBudget<'_>,
    current: Option<&str>,
    row_created: bool,
    keep_own: bool,
    originals: &mut Originals,
    actor: &str,
    claim: OwnClaim<'_>,
) -> Held {
    let mut held = Held::default();
    let release = |held: &mut Held| {
        held.changes
            .extend(drop_own_budget(own).into_iter().map(|c| (Step::Release, c)));
    };
    match holder {
        Holder::Own(declared) => {
            let write = plan_own_budget(own, row_created, declared, originals, actor);
            held.changes.extend(write.map(|c| (Step::Budget, c)));
            held.changes
                .extend(own_budget_claim(own, claim).map(|c| (Step::ClaimBudget, c)));
            held.budget_id = managed_budget_id(originals, Some(own.id), current);
        }
        Holder::Referenced(id) => {
            originals.forget_prefix("budget.");
            release(&mut held);
            held.budget_id = managed_budget_id(originals, Some(id), current);
        }
        Holder::Theirs => {
            originals.forget_prefix("budget.");
            held.budget_id = managed_budget_id(originals, None, current);
            if held.budget_id.as_deref() != Some(own.id) && !keep_own {
                release(&mut held);
            }
        }
    }
    held
}

/// The resource's own budget row as observed: what the own-budget steps read.
pub(super) struct OwnBudget<'a> {
    pub id: &'a str,
    /// The own row, if it exists.
    pub row: Option<&'a BudgetRow>,
    /// The budget the resource's row points at today (an adopted row's own budget starts as
    /// a whole copy of it).
    pub current: Option<&'a BudgetRow>,
    /// The own row's ledger entry.
    pub entry: Option<&'a LedgerEntry>,
}

impl OwnBudget<'_> {
    /// Whether the operator created the own row (or will): deleted when no longer used.
    fn created(&self) -> bool {
        self.row.is_none() || self.entry.is_none_or(|e| e.created)
    }
}

/// Step 3 of both kinds: the writes that give the resource's own budget row the declared
/// limits. An adopted row's own budget starts as a whole copy of the budget it had (every
/// column, its reset window), with only the declared limits changed.
pub(super) fn plan_own_budget(
    own: &OwnBudget<'_>,
    row_created: bool,
    declared: &DeclaredBudget,
    originals: &mut Originals,
    actor: &str,
) -> Option<Change> {
    let source = own.current.filter(|_| own.row.is_none() && !row_created);
    let base = match (own.row, source) {
        (Some(row), _) => row.clone(),
        (None, Some(theirs)) => BudgetRow {
            budget_id: own.id.to_string(),
            created_by: actor.to_string(),
            ..theirs.clone()
        },
        (None, None) => BudgetRow::new(own.id, actor),
    };
    let want = managed_budget(originals, declared, &base);
    match (own.row, source) {
        (None, Some(source)) => Some(Change::CopyBudget {
            source: source.clone(),
            after: want,
        }),
        (None, None) => Some(Change::CreateBudget(want)),
        (Some(have), _) if !same_limits(have, &want) => Some(Change::UpdateBudget {
            before: have.clone(),
            after: BudgetRow {
                created_by: have.created_by.clone(),
                ..want
            },
        }),
        (Some(_), _) => None,
    }
}

/// Who claims the resource's own budget row in the ledger.
pub(super) struct OwnClaim<'a> {
    pub resource: &'a str,
    pub organization_id: &'a str,
    pub manager: &'a str,
    pub policy: DeletionPolicy,
    /// A placeholder resource the claim may take over (rows of earlier versions).
    pub replaces: Option<String>,
}

/// The ledger claim of the resource's own budget row.
fn own_budget_claim(own: &OwnBudget<'_>, claim: OwnClaim<'_>) -> Option<Change> {
    let entry = LedgerEntry {
        row_key: budget_key(own.id),
        manager: claim.manager.to_string(),
        resource: claim.resource.to_string(),
        organization_id: Some(claim.organization_id.to_string()),
        created: own.created(),
        deletion_policy: policy_str(claim.policy).into(),
        managed: json!({}),
    };
    claim_if_changed(own.entry, entry, claim.replaces)
}

/// The resource's own budget row, no longer used by it: deleted if the operator created it,
/// and its ledger entry released.
pub(super) fn drop_own_budget(own: &OwnBudget<'_>) -> Vec<Change> {
    let mut changes = Vec::new();
    if own.row.is_some() && own.created() {
        changes.push(Change::DeleteBudget {
            budget_id: own.id.to_string(),
        });
    }
    if own.entry.is_some() {
        changes.push(Change::Release {
            row_key: budget_key(own.id),
        });
    }
    changes
}

/// The `budget_id` a row gets: the own row's while it declares one, else what the
/// originals give back (or what it has).
pub(super) fn managed_budget_id(
    originals: &mut Originals,
    declared: Option<&str>,
    current: Option<&str>,
) -> Option<String> {
    let current = current.map_or(Value::Null, Value::from);
    match originals.field("budget_id", declared.map(Value::from), current) {
        Value::String(s) => Some(s),
        _ => None,
    }
}
