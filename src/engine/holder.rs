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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::store::Scalar;

    const OWN: &str = "own-budget";
    const RESOURCE: &str = "Organization/team-a/a";

    fn declared(max: f64) -> DeclaredBudget {
        DeclaredBudget {
            limits: BTreeMap::from([("max_budget", Scalar::Float(max))]),
            models: BTreeMap::new(),
        }
    }

    fn budget(id: &str, max: f64) -> BudgetRow {
        BudgetRow::new(id, "admin").with("max_budget", Some(Scalar::Float(max)))
    }

    /// The ledger entry of the own row, as [`hold`] claims it.
    fn entry(created: bool) -> LedgerEntry {
        LedgerEntry {
            row_key: budget_key(OWN),
            manager: "ops".into(),
            resource: RESOURCE.into(),
            organization_id: Some("org-1".into()),
            created,
            deletion_policy: "Delete".into(),
            managed: json!({}),
        }
    }

    fn own<'a>(
        row: Option<&'a BudgetRow>,
        current: Option<&'a BudgetRow>,
        entry: Option<&'a LedgerEntry>,
    ) -> OwnBudget<'a> {
        OwnBudget {
            id: OWN,
            row,
            current,
            entry,
        }
    }

    fn run(
        holder: &Holder,
        own: &OwnBudget<'_>,
        current: Option<&str>,
        row_created: bool,
        keep_own: bool,
        originals: &mut Originals,
    ) -> Held {
        let claim = OwnClaim {
            resource: RESOURCE,
            organization_id: "org-1",
            manager: "ops",
            policy: DeletionPolicy::Delete,
            replaces: None,
        };
        hold(
            holder,
            own,
            current,
            row_created,
            keep_own,
            originals,
            "operator",
            claim,
        )
    }

    /// Each change as `step: what`, for comparing whole plans.
    fn summary(held: &Held) -> Vec<String> {
        held.changes
            .iter()
            .map(|(step, change)| {
                let what = match change {
                    Change::CreateBudget(b) => {
                        format!("create {} max {:?}", b.budget_id, b.max_budget())
                    }
                    Change::CopyBudget { source, after } => format!(
                        "copy {} as {} max {:?}",
                        source.budget_id,
                        after.budget_id,
                        after.max_budget()
                    ),
                    Change::UpdateBudget { after, .. } => {
                        format!("update {} max {:?}", after.budget_id, after.max_budget())
                    }
                    Change::DeleteBudget { budget_id } => format!("delete {budget_id}"),
                    Change::Claim { entry, .. } => {
                        format!("claim {} created {}", entry.row_key, entry.created)
                    }
                    Change::Release { row_key } => format!("release {row_key}"),
                    other => format!("{other:?}"),
                };
                format!("{step:?}: {what}")
            })
            .collect()
    }

    fn originals(fields: Value) -> Originals {
        Originals::read(&json!({ "originals": fields }))
    }

    #[test]
    fn an_organization_spec_names_its_holder() {
        let none = Originals::default();
        let owned = DesiredBudget::Owned(OWN.into(), declared(5.0));
        assert_eq!(
            organization_holder(&owned, false, false, &none),
            Holder::Own(declared(5.0))
        );
        let referenced = DesiredBudget::Referenced("shared".into());
        assert_eq!(
            organization_holder(&referenced, true, false, &none),
            Holder::Referenced("shared".into())
        );
        let unset = DesiredBudget::Unset(OWN.into());
        let empty = Holder::Own(DeclaredBudget::default());
        // A created organization must have a budget: an empty one of its own.
        assert_eq!(organization_holder(&unset, true, false, &none), empty);
        // Adopted, on its own row with nothing recorded to give back: it keeps that row.
        assert_eq!(organization_holder(&unset, false, true, &none), empty);
        // Adopted, on its own row with the budget it had recorded: that budget comes back.
        let had = originals(json!({"budget_id": "theirs"}));
        assert_eq!(
            organization_holder(&unset, false, true, &had),
            Holder::Theirs
        );
        // Adopted, on LiteLLM's budget: it keeps it.
        assert_eq!(
            organization_holder(&unset, false, false, &none),
            Holder::Theirs
        );
    }

    #[test]
    fn a_created_row_gets_a_new_own_row_with_the_declared_limits() {
        let mut o = Originals::default();
        let held = run(
            &Holder::Own(declared(5.0)),
            &own(None, None, None),
            None,
            true,
            false,
            &mut o,
        );
        assert_eq!(
            summary(&held),
            [
                "Budget: create own-budget max Some(5.0)",
                "ClaimBudget: claim budget/own-budget created true"
            ]
        );
        assert_eq!(held.budget_id.as_deref(), Some(OWN));
    }

    #[test]
    fn litellm_budget_to_own_row_copies_the_budget_the_row_had() {
        let theirs = budget("theirs", 100.0).with("tpm_limit", Some(Scalar::Int(7)));
        let mut o = Originals::default();
        let held = run(
            &Holder::Own(declared(5.0)),
            &own(None, Some(&theirs), None),
            Some("theirs"),
            false,
            false,
            &mut o,
        );
        assert_eq!(
            summary(&held),
            [
                "Budget: copy theirs as own-budget max Some(5.0)",
                "ClaimBudget: claim budget/own-budget created true"
            ]
        );
        // Only the declared limit differs from the copy; the rest is LiteLLM's.
        let Change::CopyBudget { after, .. } = &held.changes[0].1 else {
            panic!("a copy: {held:?}");
        };
        assert_eq!(after.limit("tpm_limit"), Some(&Scalar::Int(7)));
        assert_eq!(held.budget_id.as_deref(), Some(OWN));
        assert_eq!(o.original("budget_id"), Some(&json!("theirs")));
    }

    #[test]
    fn own_row_to_litellm_budget_gives_back_the_budget_it_had() {
        let row = budget(OWN, 5.0);
        let created = entry(true);
        let mut o = originals(json!({"budget_id": "theirs", "budget.max_budget": 100.0}));
        let held = run(
            &Holder::Theirs,
            &own(Some(&row), None, Some(&created)),
            Some(OWN),
            false,
            false,
            &mut o,
        );
        assert_eq!(held.budget_id.as_deref(), Some("theirs"));
        assert_eq!(
            summary(&held),
            [
                "Release: delete own-budget",
                "Release: release budget/own-budget"
            ]
        );
        assert!(
            !o.manages("budget_id") && o.under("budget.").is_empty(),
            "{o:?}"
        );
    }

    #[test]
    fn an_own_row_still_used_by_other_rows_is_kept() {
        let row = budget(OWN, 5.0);
        let created = entry(true);
        let mut o = originals(json!({"budget_id": "theirs"}));
        let held = run(
            &Holder::Theirs,
            &own(Some(&row), None, Some(&created)),
            Some(OWN),
            false,
            true,
            &mut o,
        );
        assert_eq!(held.budget_id.as_deref(), Some("theirs"));
        assert!(held.changes.is_empty(), "{held:?}");
    }

    #[test]
    fn an_adopted_own_row_is_released_not_deleted() {
        let row = budget(OWN, 5.0);
        let adopted = entry(false);
        let mut o = originals(json!({"budget_id": "theirs"}));
        let held = run(
            &Holder::Theirs,
            &own(Some(&row), None, Some(&adopted)),
            Some(OWN),
            false,
            false,
            &mut o,
        );
        assert_eq!(summary(&held), ["Release: release budget/own-budget"]);
    }

    #[test]
    fn litellm_budget_stays_while_nothing_is_declared() {
        let mut o = Originals::default();
        let held = run(
            &Holder::Theirs,
            &own(None, None, None),
            Some("theirs"),
            false,
            false,
            &mut o,
        );
        assert_eq!(
            held,
            Held {
                budget_id: Some("theirs".into()),
                changes: Vec::new()
            }
        );
    }

    #[test]
    fn own_row_to_budget_ref_points_at_the_reference_and_drops_the_own_row() {
        let row = budget(OWN, 5.0);
        let created = entry(true);
        let mut o = originals(json!({"budget_id": "theirs", "budget.max_budget": 100.0}));
        let held = run(
            &Holder::Referenced("shared".into()),
            &own(Some(&row), None, Some(&created)),
            Some(OWN),
            false,
            false,
            &mut o,
        );
        assert_eq!(held.budget_id.as_deref(), Some("shared"));
        assert_eq!(
            summary(&held),
            [
                "Release: delete own-budget",
                "Release: release budget/own-budget"
            ]
        );
        // What the row had before the operator first set its budget is still what it gets
        // back when nothing is declared any more.
        assert_eq!(o.original("budget_id"), Some(&json!("theirs")));
        assert!(o.under("budget.").is_empty(), "{o:?}");
    }

    #[test]
    fn budget_ref_to_own_row_copies_on_an_adopted_row_and_creates_on_a_created_one() {
        let shared = budget("shared", 50.0);
        let on_shared = own(None, Some(&shared), None);
        let mut o = Originals::default();
        let adopted = run(
            &Holder::Own(declared(5.0)),
            &on_shared,
            Some("shared"),
            false,
            false,
            &mut o,
        );
        assert_eq!(
            summary(&adopted)[0],
            "Budget: copy shared as own-budget max Some(5.0)"
        );
        let mut o = Originals::default();
        let created = run(
            &Holder::Own(declared(5.0)),
            &on_shared,
            Some("shared"),
            true,
            false,
            &mut o,
        );
        assert_eq!(
            summary(&created)[0],
            "Budget: create own-budget max Some(5.0)"
        );
        assert_eq!(created.budget_id.as_deref(), Some(OWN));
    }

    #[test]
    fn an_own_row_is_updated_only_when_its_declared_limits_change() {
        let row = budget(OWN, 5.0);
        let held_entry = entry(true);
        let on_own = own(Some(&row), Some(&row), Some(&held_entry));
        let mut o = originals(json!({"budget.max_budget": null}));
        let same = run(
            &Holder::Own(declared(5.0)),
            &on_own,
            Some(OWN),
            true,
            false,
            &mut o,
        );
        assert_eq!(
            same,
            Held {
                budget_id: Some(OWN.into()),
                changes: Vec::new()
            }
        );
        let changed = run(
            &Holder::Own(declared(7.0)),
            &on_own,
            Some(OWN),
            true,
            false,
            &mut o,
        );
        assert_eq!(
            summary(&changed),
            ["Budget: update own-budget max Some(7.0)"]
        );
    }
}
