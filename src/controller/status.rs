//! Building `status` from a reconcile outcome. Pure: the same outcome on an unchanged object
//! gives an equal status, so the write is skipped.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

use super::context::public_message;
use super::figures::{MemberFigures, OrganizationBudget, rfc3339};
use crate::crd::{
    ConditionReason, ConditionType, OrganizationMemberStatus, OrganizationStatus, set_condition,
};
use crate::error::EngineError;
use crate::store::OrganizationUsage;

/// How a reconcile ended, in the terms status reports.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// The database matches the spec.
    Synced { message: String },
    /// An error; its class decides the conditions.
    Failed {
        reason: ConditionReason,
        message: String,
        stalled: bool,
    },
    /// Writes are paused by annotation.
    Paused,
}

impl Outcome {
    /// An engine error as status reports it: stalled when only a change elsewhere helps
    /// (the error's [`next_step`](EngineError::next_step)), else progress pending a retry. The
    /// message is safe to publish (no database details).
    pub fn from_error(err: &EngineError) -> Self {
        Self::Failed {
            reason: err.reason(),
            message: public_message(err),
            stalled: err.next_step().is_stalled(),
        }
    }

    /// The condition an object is in, as the `objects` metric labels it.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Synced { .. } => "Ready",
            Self::Failed { stalled: true, .. } => "Stalled",
            Self::Failed { .. } => "Reconciling",
            Self::Paused => "Paused",
        }
    }
}

/// Apply an outcome to a condition list (kstatus: Ready, Reconciling, Stalled; and `Paused`
/// while the annotation pauses the object, gone once it is lifted).
pub fn apply_outcome(conditions: &mut Vec<Condition>, outcome: &Outcome, generation: Option<i64>) {
    if !matches!(outcome, Outcome::Paused) {
        conditions.retain(|c| c.type_ != ConditionType::Paused.as_str());
    }
    match outcome {
        Outcome::Synced { message } => {
            set_condition(
                conditions,
                ConditionType::Ready,
                true,
                ConditionReason::Synced,
                message.clone(),
                generation,
            );
            set_condition(
                conditions,
                ConditionType::Reconciling,
                false,
                ConditionReason::Synced,
                "",
                generation,
            );
            set_condition(
                conditions,
                ConditionType::Stalled,
                false,
                ConditionReason::Synced,
                "",
                generation,
            );
        }
        Outcome::Failed {
            reason,
            message,
            stalled,
        } => {
            set_condition(
                conditions,
                ConditionType::Ready,
                false,
                *reason,
                message.clone(),
                generation,
            );
            set_condition(
                conditions,
                ConditionType::Reconciling,
                !stalled,
                *reason,
                if *stalled {
                    String::new()
                } else {
                    message.clone()
                },
                generation,
            );
            set_condition(
                conditions,
                ConditionType::Stalled,
                *stalled,
                *reason,
                if *stalled {
                    message.clone()
                } else {
                    String::new()
                },
                generation,
            );
        }
        Outcome::Paused => {
            // Ready and Stalled stay as they were (they describe the last reconcile); the
            // Paused condition says that nothing is reconciled now, which a health check
            // reads before anything else.
            let message =
                "writes are paused by the litellm.dev/paused annotation; remove it to resume";
            set_condition(
                conditions,
                ConditionType::Reconciling,
                false,
                ConditionReason::Paused,
                message,
                generation,
            );
            set_condition(
                conditions,
                ConditionType::Paused,
                true,
                ConditionReason::Paused,
                message,
                generation,
            );
        }
    }
}

/// The organization's next status.
pub fn organization_status(
    current: Option<&OrganizationStatus>,
    generation: Option<i64>,
    outcome: &Outcome,
    ids: Option<(&str, &str)>,
    usage: Option<&OrganizationUsage>,
    budget: Option<&OrganizationBudget>,
) -> OrganizationStatus {
    let mut status = current.cloned().unwrap_or_default();
    apply_outcome(&mut status.conditions, outcome, generation);
    if !matches!(outcome, Outcome::Paused) {
        status.observed_generation = generation;
    }
    if let Some((org_id, budget_id)) = ids {
        status.organization_id = Some(org_id.to_string());
        status.budget_id = Some(budget_id.to_string());
    }
    if let Some(u) = usage {
        status.spend = Some(u.spend);
        status.max_budget = u.max_budget;
        status.member_count = Some(u.member_count);
        let exceeded = u.max_budget.is_some_and(|max| u.spend >= max);
        let message = match u.max_budget {
            Some(max) => format!("spend {:.2} of max budget {max:.2}", u.spend),
            None => "no max budget".to_string(),
        };
        set_condition(
            &mut status.conditions,
            ConditionType::BudgetExceeded,
            exceeded,
            if exceeded {
                ConditionReason::BudgetExceeded
            } else {
                ConditionReason::WithinBudget
            },
            message,
            generation,
        );
    }
    if let Some(b) = budget {
        status.soft_budget = b.soft_budget;
        status.budget_reset_at = b.budget_reset_at.map(rfc3339);
    }
    status
}

/// The member's next status; `figures` are the membership's, and its spend and budget are
/// mirrored only while the member declares a budget (`declares_budget`).
pub fn member_status(
    current: Option<&OrganizationMemberStatus>,
    generation: Option<i64>,
    outcome: &Outcome,
    ids: Option<(&str, &str, bool, Option<&str>)>,
    figures: Option<&MemberFigures>,
    declares_budget: bool,
) -> OrganizationMemberStatus {
    let mut status = member_ids_status(current, generation, outcome, ids);
    if let Some(f) = figures {
        status.organization_alias = f.organization_alias.clone();
        status.user_email = f.user_email.clone();
        status.spend = declares_budget.then_some(f.spend);
        status.max_budget = f.max_budget.filter(|_| declares_budget);
    }
    status
}

/// What a status says of an object's spending, to tell when a threshold was crossed.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Spending {
    pub spend: Option<f64>,
    pub max_budget: Option<f64>,
    pub soft_budget: Option<f64>,
}

impl Spending {
    pub fn of_organization(s: &OrganizationStatus) -> Self {
        Self {
            spend: s.spend,
            max_budget: s.max_budget,
            soft_budget: s.soft_budget,
        }
    }

    pub fn of_member(s: &OrganizationMemberStatus) -> Self {
        Self {
            spend: s.spend,
            max_budget: s.max_budget,
            soft_budget: None,
        }
    }
}

/// A budget threshold crossed upwards: a Warning event with this reason and note.
#[derive(Clone, Debug, PartialEq)]
pub struct Crossing {
    pub reason: ConditionReason,
    pub note: String,
}

/// True when `spend` has reached `threshold` (both known).
fn reached(spend: Option<f64>, threshold: Option<f64>) -> bool {
    matches!((spend, threshold), (Some(s), Some(t)) if s >= t)
}

/// The thresholds `after` has reached and `before` had not: each crossing is reported once,
/// whatever the number of resyncs that see it, and again after spend went back below the
/// threshold (a reset, a raised budget) and crossed it anew. `what` names the spender in the
/// note ("the organization").
pub fn budget_crossings(what: &str, before: Spending, after: Spending) -> Vec<Crossing> {
    let mut crossings = Vec::new();
    let spend = after.spend.unwrap_or_default();
    if reached(after.spend, after.max_budget) && !reached(before.spend, before.max_budget) {
        crossings.push(Crossing {
            reason: ConditionReason::BudgetExceeded,
            note: format!(
                "{what}'s spend {spend:.2} USD has reached its max budget {:.2} USD",
                after.max_budget.unwrap_or_default()
            ),
        });
    }
    if reached(after.spend, after.soft_budget) && !reached(before.spend, before.soft_budget) {
        crossings.push(Crossing {
            reason: ConditionReason::SoftBudgetExceeded,
            note: format!(
                "{what}'s spend {spend:.2} USD has crossed its soft budget {:.2} USD",
                after.soft_budget.unwrap_or_default()
            ),
        });
    }
    crossings
}

/// The member's status with its outcome and ids.
fn member_ids_status(
    current: Option<&OrganizationMemberStatus>,
    generation: Option<i64>,
    outcome: &Outcome,
    ids: Option<(&str, &str, bool, Option<&str>)>,
) -> OrganizationMemberStatus {
    let mut status = current.cloned().unwrap_or_default();
    apply_outcome(&mut status.conditions, outcome, generation);
    if !matches!(outcome, Outcome::Paused) {
        status.observed_generation = generation;
    }
    if let Some((org_id, user_id, created, budget_id)) = ids {
        status.organization_id = Some(org_id.to_string());
        status.user_id = Some(user_id.to_string());
        // Once the operator created the user, that stays true on later reconciles.
        status.user_created = Some(created || status.user_created == Some(true));
        // The membership's budget, when it has one (a member that declares none may have none).
        status.budget_id = budget_id.map(str::to_string);
    }
    status
}

/// The part of a status the operator owns, as it applies it: every field it writes, and of
/// the conditions only the types it writes. Applying this (and comparing it to decide whether
/// to write) never claims a condition another controller wrote.
pub fn own_status<S: serde::Serialize>(status: &S) -> serde_json::Value {
    const OWN: [ConditionType; 5] = [
        ConditionType::Ready,
        ConditionType::Reconciling,
        ConditionType::Stalled,
        ConditionType::BudgetExceeded,
        ConditionType::Paused,
    ];
    let mut value = serde_json::to_value(status).unwrap_or_default();
    if let Some(conditions) = value
        .get_mut("conditions")
        .and_then(serde_json::Value::as_array_mut)
    {
        conditions.retain(|c| {
            c.get("type")
                .and_then(serde_json::Value::as_str)
                .is_some_and(|t| OWN.iter().any(|o| o.as_str() == t))
        });
    }
    value
}

/// True when the object's `Ready` condition is `True` for its current generation.
pub fn is_ready(conditions: &[Condition], observed: Option<i64>, generation: Option<i64>) -> bool {
    observed == generation
        && conditions
            .iter()
            .any(|c| c.type_ == ConditionType::Ready.as_str() && c.status == "True")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cond<'a>(s: &'a OrganizationStatus, t: &str) -> &'a Condition {
        s.conditions
            .iter()
            .find(|c| c.type_ == t)
            .expect("condition")
    }

    #[test]
    fn synced_then_unchanged_is_equal() {
        let usage = OrganizationUsage {
            spend: 1.0,
            max_budget: Some(10.0),
            member_count: 2,
            ..OrganizationUsage::default()
        };
        let ok = Outcome::Synced {
            message: "in sync".into(),
        };
        let first = organization_status(None, Some(3), &ok, Some(("o", "b")), Some(&usage), None);
        assert_eq!(first.observed_generation, Some(3));
        assert_eq!(cond(&first, "Ready").status, "True");
        assert_eq!(cond(&first, "Stalled").status, "False");
        assert_eq!(cond(&first, "BudgetExceeded").status, "False");
        let second = organization_status(
            Some(&first),
            Some(3),
            &ok,
            Some(("o", "b")),
            Some(&usage),
            None,
        );
        assert_eq!(first, second, "no change, no write");
    }

    #[test]
    fn errors_classify_into_stalled_or_reconciling() {
        let invalid = Outcome::from_error(&EngineError::invalid("spec.x", "bad"));
        let s = organization_status(None, Some(1), &invalid, None, None, None);
        assert_eq!(cond(&s, "Stalled").status, "True");
        assert_eq!(cond(&s, "Stalled").reason, "InvalidSpec");
        assert_eq!(cond(&s, "Reconciling").status, "False");
        assert_eq!(cond(&s, "Ready").message, "spec.x: bad");
        let down = Outcome::from_error(&EngineError::Store(crate::error::StoreError::Unavailable(
            "x".into(),
        )));
        let s = organization_status(Some(&s), Some(1), &down, None, None, None);
        assert_eq!(cond(&s, "Stalled").status, "False");
        assert_eq!(cond(&s, "Reconciling").status, "True");
        assert_eq!(cond(&s, "Reconciling").reason, "DatabaseUnavailable");
    }

    #[test]
    fn every_broken_rule_is_named_in_a_bounded_condition() {
        let spec = crate::crd::OrganizationSpec {
            alias: Some(String::new()),
            budget: Some(crate::crd::BudgetSpec {
                max_budget: Some(-1.0),
                ..Default::default()
            }),
            metadata: Some(
                (0..500)
                    .map(|i| (format!("{i:03}{}", "k".repeat(300)), "\u{0}".into()))
                    .collect(),
            ),
            ..Default::default()
        };
        let err = crate::engine::validate::validate_organization("a", &spec).expect_err("invalid");
        let outcome = Outcome::from_error(&err);
        let s = organization_status(None, Some(1), &outcome, None, None, None);
        let ready = cond(&s, "Ready");
        assert_eq!(ready.reason, "InvalidSpec");
        assert!(
            ready.message.starts_with(
                "spec.alias: must be 1 to 256 characters long (got 0); and 502 more: spec.budget.maxBudget, spec.metadata, spec.metadata.000kkk"
            ),
            "{}",
            ready.message
        );
        assert!(
            ready.message.ends_with(" not named here"),
            "{}",
            ready.message
        );
        assert!(ready.message.len() < 4096, "{}", ready.message.len());
        assert_eq!(cond(&s, "Stalled").status, "True");
        // No retry until the spec changes.
        assert_eq!(err.next_step(), crate::error::NextStep::AwaitChange);
    }

    #[test]
    fn budget_exceeded_when_spend_reaches_max() {
        let usage = OrganizationUsage {
            spend: 10.0,
            max_budget: Some(10.0),
            member_count: 0,
            ..OrganizationUsage::default()
        };
        let s = organization_status(
            None,
            Some(1),
            &Outcome::Synced {
                message: String::new(),
            },
            None,
            Some(&usage),
            None,
        );
        assert_eq!(cond(&s, "BudgetExceeded").status, "True");
        assert_eq!(s.spend, Some(10.0));
    }

    #[test]
    fn status_shows_the_soft_budget_and_the_next_reset() {
        let budget = OrganizationBudget {
            soft_budget: Some(5.0),
            budget_reset_at: chrono::NaiveDate::from_ymd_opt(2027, 1, 1)
                .and_then(|d| d.and_hms_opt(0, 0, 0)),
        };
        let ok = Outcome::Synced {
            message: String::new(),
        };
        let s = organization_status(None, Some(1), &ok, None, None, Some(&budget));
        assert_eq!(s.soft_budget, Some(5.0));
        assert_eq!(s.budget_reset_at.as_deref(), Some("2027-01-01T00:00:00Z"));
        // A failed reconcile reads nothing and keeps what the last one read.
        let down = Outcome::from_error(&EngineError::Store(crate::error::StoreError::Unavailable(
            "x".into(),
        )));
        let f = organization_status(Some(&s), Some(1), &down, None, None, None);
        assert_eq!(f.soft_budget, Some(5.0));
    }

    #[test]
    fn members_mirror_spend_only_while_they_declare_a_budget() {
        let figures = MemberFigures {
            spend: 1.5,
            max_budget: Some(2.0),
            user_email: Some("Carol@Example.com".into()),
            organization_alias: Some("Research".into()),
        };
        let ok = Outcome::Synced {
            message: String::new(),
        };
        let ids = Some(("org", "user", false, Some("budget")));
        let s = member_status(None, Some(1), &ok, ids, Some(&figures), true);
        assert_eq!(s.user_email.as_deref(), Some("Carol@Example.com"));
        assert_eq!(s.organization_alias.as_deref(), Some("Research"));
        assert_eq!((s.spend, s.max_budget), (Some(1.5), Some(2.0)));
        let s = member_status(Some(&s), Some(2), &ok, ids, Some(&figures), false);
        assert_eq!((s.spend, s.max_budget), (None, None));
        assert_eq!(s.user_email.as_deref(), Some("Carol@Example.com"));
    }

    fn spending(spend: f64, max: Option<f64>, soft: Option<f64>) -> Spending {
        Spending {
            spend: Some(spend),
            max_budget: max,
            soft_budget: soft,
        }
    }

    fn reasons(c: &[Crossing]) -> Vec<&'static str> {
        c.iter().map(|c| c.reason.as_str()).collect()
    }

    #[test]
    fn each_crossing_is_reported_once() {
        let below = spending(1.0, Some(10.0), Some(5.0));
        let soft = spending(6.0, Some(10.0), Some(5.0));
        let over = spending(12.0, Some(10.0), Some(5.0));
        assert!(budget_crossings("the organization", below, below).is_empty());
        let crossed = budget_crossings("the organization", below, soft);
        assert_eq!(reasons(&crossed), ["SoftBudgetExceeded"]);
        assert_eq!(
            crossed[0].note,
            "the organization's spend 6.00 USD has crossed its soft budget 5.00 USD"
        );
        // Seen again at the next resync: nothing new.
        assert!(budget_crossings("the organization", soft, soft).is_empty());
        assert_eq!(
            reasons(&budget_crossings("the organization", soft, over)),
            ["BudgetExceeded"]
        );
        // Both at once, from a first status that knew nothing.
        assert_eq!(
            reasons(&budget_crossings(
                "the organization",
                Spending::default(),
                over
            )),
            ["BudgetExceeded", "SoftBudgetExceeded"]
        );
        // Back below (a reset), then above again: reported again.
        assert!(budget_crossings("the organization", over, below).is_empty());
        assert_eq!(
            reasons(&budget_crossings("the organization", below, soft)),
            ["SoftBudgetExceeded"]
        );
        // A budget raised above the spend, then lowered under it: a new crossing.
        let raised = spending(12.0, Some(20.0), Some(15.0));
        assert!(budget_crossings("the organization", over, raised).is_empty());
        assert_eq!(
            reasons(&budget_crossings("the organization", raised, over)),
            ["BudgetExceeded", "SoftBudgetExceeded"]
        );
        // No budget, no crossing.
        assert!(budget_crossings("x", below, spending(100.0, None, None)).is_empty());
    }

    #[test]
    fn paused_keeps_observed_generation() {
        let ok = Outcome::Synced {
            message: String::new(),
        };
        let s = organization_status(None, Some(1), &ok, None, None, None);
        let p = organization_status(Some(&s), Some(2), &Outcome::Paused, None, None, None);
        assert_eq!(p.observed_generation, Some(1));
        assert_eq!(cond(&p, "Reconciling").reason, "Paused");
        assert_eq!(cond(&p, "Paused").status, "True");
        assert!(is_ready(&p.conditions, p.observed_generation, Some(1)));
        assert!(!is_ready(&p.conditions, p.observed_generation, Some(2)));
        // Resumed: the Paused condition goes (and own_status no longer carries it, so the
        // server-side apply removes it).
        let r = organization_status(Some(&p), Some(2), &ok, None, None, None);
        assert!(r.conditions.iter().all(|c| c.type_ != "Paused"), "{r:?}");
        let applied = own_status(&p);
        assert!(
            applied["conditions"]
                .as_array()
                .is_some_and(|c| c.iter().any(|c| c["type"] == "Paused")),
            "{applied}"
        );
    }
}
