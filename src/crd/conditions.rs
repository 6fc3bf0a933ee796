//! kstatus-compatible conditions shared by both kinds.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// Condition types the operator writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConditionType {
    /// The database holds exactly the desired rows.
    Ready,
    /// A reconcile is in progress or pending a retry.
    Reconciling,
    /// The object cannot progress until its spec or a dependency changes.
    Stalled,
    /// The organization's spend has reached its max budget.
    BudgetExceeded,
    /// Writes are switched off by the `litellm.dev/paused` annotation (kstatus readers and
    /// Argo CD's health check show the object as suspended).
    Paused,
}

impl ConditionType {
    /// The `type` string as it appears in `status.conditions`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ready => "Ready",
            Self::Reconciling => "Reconciling",
            Self::Stalled => "Stalled",
            Self::BudgetExceeded => "BudgetExceeded",
            Self::Paused => "Paused",
        }
    }
}

/// CamelCase reasons, one per outcome class.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConditionReason {
    Synced,
    Progressing,
    InvalidSpec,
    BudgetNotFound,
    OrganizationNotFound,
    OrganizationNotReady,
    DatabaseUnavailable,
    Conflict,
    /// The namespace may not reach the organization (tenancy).
    NotGranted,
    BudgetExceeded,
    /// Spend has crossed the soft budget (a Warning event's reason).
    SoftBudgetExceeded,
    WithinBudget,
    Paused,
    DriftCorrected,
    /// A delete waits: the organization has teams or keys and the spec does not opt in.
    DeletionBlocked,
    /// A delete waits: `spec.deletionProtection` is true.
    DeletionProtected,
}

impl ConditionReason {
    /// The `reason` string as it appears in `status.conditions`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Synced => "Synced",
            Self::Progressing => "Progressing",
            Self::InvalidSpec => "InvalidSpec",
            Self::BudgetNotFound => "BudgetNotFound",
            Self::OrganizationNotFound => "OrganizationNotFound",
            Self::OrganizationNotReady => "OrganizationNotReady",
            Self::DatabaseUnavailable => "DatabaseUnavailable",
            Self::Conflict => "Conflict",
            Self::NotGranted => "NotGranted",
            Self::BudgetExceeded => "BudgetExceeded",
            Self::SoftBudgetExceeded => "SoftBudgetExceeded",
            Self::WithinBudget => "WithinBudget",
            Self::Paused => "Paused",
            Self::DriftCorrected => "DriftCorrected",
            Self::DeletionBlocked => "DeletionBlocked",
            Self::DeletionProtected => "DeletionProtected",
        }
    }
}

/// Set or replace one condition, keeping `lastTransitionTime` unless the status flips,
/// so a status write that changes nothing else compares equal to the previous one.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: ConditionType,
    status: bool,
    reason: ConditionReason,
    message: impl Into<String>,
    observed_generation: Option<i64>,
) {
    let status = if status { "True" } else { "False" }.to_string();
    let message = message.into();
    let existing = conditions.iter_mut().find(|c| c.type_ == type_.as_str());
    match existing {
        Some(c) => {
            if c.status != status {
                c.last_transition_time = Time(now());
            }
            c.status = status;
            c.reason = reason.as_str().to_string();
            c.message = message;
            c.observed_generation = observed_generation;
        }
        None => conditions.push(Condition {
            type_: type_.as_str().to_string(),
            status,
            reason: reason.as_str().to_string(),
            message,
            observed_generation,
            last_transition_time: Time(now()),
        }),
    }
}

fn now() -> k8s_openapi::jiff::Timestamp {
    k8s_openapi::jiff::Timestamp::now()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_time_kept_when_status_unchanged() {
        let mut conds = Vec::new();
        set_condition(
            &mut conds,
            ConditionType::Ready,
            true,
            ConditionReason::Synced,
            "ok",
            Some(1),
        );
        let first = conds[0].last_transition_time.clone();
        conds[0].last_transition_time = Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH);
        set_condition(
            &mut conds,
            ConditionType::Ready,
            true,
            ConditionReason::Synced,
            "ok",
            Some(2),
        );
        assert_eq!(conds.len(), 1);
        assert_eq!(conds[0].observed_generation, Some(2));
        assert_eq!(
            conds[0].last_transition_time.0,
            k8s_openapi::jiff::Timestamp::UNIX_EPOCH
        );
        assert_ne!(first.0, k8s_openapi::jiff::Timestamp::UNIX_EPOCH);
        set_condition(
            &mut conds,
            ConditionType::Ready,
            false,
            ConditionReason::Conflict,
            "x",
            Some(2),
        );
        assert_ne!(
            conds[0].last_transition_time.0,
            k8s_openapi::jiff::Timestamp::UNIX_EPOCH
        );
        assert_eq!(conds[0].reason, "Conflict");
    }
}
