//! Which LiteLLM user a member is: the one rule, here. The store reads the candidates (the
//! user by `user.userId`, the users whose email matches case-insensitively, at most
//! [`EMAIL_MATCHES_READ`] of them, and the user the resource already holds) and applies
//! [`RULE`] to know which membership to read; the planner resolves with the same functions.
//!
//! The rule: by `user.userId`; else the user the resource already holds in the organization
//! (LiteLLM's `/user/update` may have changed its email); else the one user with the email.
//! Several users sharing the email are a conflict the manifest settles with `userId`; no user
//! with it is a user to create.

use super::desired::DesiredMember;
use crate::error::EngineError;
use crate::store::{
    Change, EMAIL_MATCHES_READ, LedgerEntry, MemberLookup, NewUserDefaults, ObservedMember,
    UserRow, UserRule,
};

/// The rule, as the store applies it.
pub const RULE: UserRule = UserRule {
    held: held_user,
    resolve: resolved_user,
};

/// The user a member resolves to among the candidates read: by `user.userId`; else the user
/// the resource already holds; else the one user with the email (none when several have it).
pub fn resolved_user(observed: &ObservedMember) -> Option<&UserRow> {
    observed
        .user_by_id
        .as_ref()
        .or(observed.held_user.as_ref())
        .or(match observed.users_by_email.as_slice() {
            [one] => Some(one),
            _ => None,
        })
}

fn held_user<'e>(own_entries: &'e [LedgerEntry], lookup: &MemberLookup<'_>) -> Option<&'e str> {
    held_user_id(
        own_entries,
        lookup.organization_id,
        lookup.user_id,
        lookup.email,
    )
}

/// The user a member resource found by email already holds its membership in
/// `organization_id` for, from its ledger entries: the resource keeps that user while its
/// manifest names the same email (LiteLLM's `/user/update` may change the user's). A member
/// that names a `userId`, or whose manifest now names another email, resolves afresh.
pub fn held_user_id<'a>(
    own_entries: &'a [LedgerEntry],
    organization_id: &str,
    user_id: Option<&str>,
    email: Option<&str>,
) -> Option<&'a str> {
    if user_id.is_some() {
        return None;
    }
    own_entries
        .iter()
        .filter(|e| {
            e.row_key.starts_with("membership/")
                && e.organization_id.as_deref() == Some(organization_id)
        })
        .filter(|e| {
            match (
                e.managed.get("email").and_then(serde_json::Value::as_str),
                email,
            ) {
                (Some(held), Some(email)) => held.eq_ignore_ascii_case(email),
                (None, _) => true,
                (Some(_), None) => false,
            }
        })
        .find_map(|e| e.managed.get("user_id").and_then(serde_json::Value::as_str))
}

/// The user a member resolves to, and the write that creates it when it does not exist.
pub(super) struct MemberUser {
    pub user_id: String,
    pub create: Option<Change>,
    pub note: Option<String>,
}

/// Step 1 of a membership: its user, as LiteLLM's `member_add` finds it (by id, else by
/// email), except that the user this resource already holds a membership for stays its
/// user even when LiteLLM changed that user's email (said in a note).
pub(super) fn resolve_member_user(
    desired: &DesiredMember,
    observed: &ObservedMember,
    new_user: &NewUserDefaults,
) -> Result<MemberUser, EngineError> {
    if let Some(u) = resolved_user(observed) {
        let held = observed.user_by_id.is_none() && observed.held_user.is_some();
        let email = |e: Option<&str>| e.map(str::to_lowercase);
        let note = (held && email(u.user_email.as_deref()) != email(desired.email.as_deref()))
            .then(|| {
                format!(
                    "user {} no longer has the email {} in LiteLLM (it has {}); this member keeps the user it holds",
                    u.user_id,
                    desired.email.as_deref().unwrap_or("none"),
                    u.user_email.as_deref().unwrap_or("none")
                )
            });
        return Ok(MemberUser {
            user_id: u.user_id.clone(),
            create: None,
            note,
        });
    }
    if observed.users_by_email.len() > 1 {
        return Err(ambiguous_email(desired, &observed.users_by_email));
    }
    let user_id = match (&desired.user_id, &desired.email) {
        (Some(id), _) => id.clone(),
        (None, Some(email)) => super::ids::user_id_for_email(email),
        (None, None) => {
            return Err(EngineError::invalid(
                "spec.user",
                "set user.userId, user.email, or both",
            ));
        }
    };
    let create = Change::CreateUser {
        user_id: user_id.clone(),
        email: desired.email.clone(),
        defaults: new_user.clone(),
    };
    Ok(MemberUser {
        user_id,
        create: Some(create),
        note: None,
    })
}

fn ambiguous_email(desired: &DesiredMember, many: &[UserRow]) -> EngineError {
    let ids: Vec<&str> = many.iter().map(|u| u.user_id.as_str()).collect();
    // The store reads at most EMAIL_MATCHES_READ of them.
    let truncated = many.len() >= EMAIL_MATCHES_READ;
    let count = if truncated {
        format!("{} or more", many.len())
    } else {
        many.len().to_string()
    };
    EngineError::Conflict(format!(
        "{count} users have the email {:?} ({}{}): set spec.user.userId to choose one",
        desired.email.as_deref().unwrap_or_default(),
        ids.join(", "),
        if truncated { ", ..." } else { "" }
    ))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn membership_entry(organization_id: &str, user_id: &str, email: Option<&str>) -> LedgerEntry {
        let mut managed = json!({"originals": {}, "user_id": user_id});
        if let Some(e) = email {
            managed["email"] = json!(e);
        }
        LedgerEntry {
            row_key: format!("membership/{organization_id}/{user_id}"),
            manager: "ops".into(),
            resource: "OrganizationMember/ns/m".into(),
            organization_id: Some(organization_id.into()),
            created: true,
            deletion_policy: "Delete".into(),
            managed,
        }
    }

    fn user(id: &str) -> UserRow {
        UserRow {
            user_id: id.into(),
            user_email: Some(format!("{id}@example.com")),
        }
    }

    #[test]
    fn the_held_user_is_the_one_this_resource_holds_for_the_same_email() {
        let entries = [
            membership_entry("org-2", "u-other-org", Some("bob@example.com")),
            membership_entry("org-1", "u-bob", Some("Bob@Example.com")),
        ];
        let held = |user_id, email| held_user_id(&entries, "org-1", user_id, email);
        assert_eq!(held(None, Some("bob@example.com")), Some("u-bob"));
        // A manifest that names another email, or a userId, resolves afresh.
        assert_eq!(held(None, Some("alice@example.com")), None);
        assert_eq!(held(Some("u-x"), Some("bob@example.com")), None);
        assert_eq!(
            held_user_id(&entries, "org-3", None, Some("bob@example.com")),
            None
        );
        // An entry of an earlier version records no email: it holds whatever the manifest names.
        let legacy = [membership_entry("org-1", "u-old", None)];
        assert_eq!(
            held_user_id(&legacy, "org-1", None, Some("x@example.com")),
            Some("u-old")
        );
    }

    #[test]
    fn the_user_is_by_id_then_held_then_the_one_with_the_email() {
        let mut observed = ObservedMember {
            users_by_email: vec![user("u-1"), user("u-2")],
            ..Default::default()
        };
        // Two users share the email: none is chosen.
        assert_eq!(resolved_user(&observed), None);
        observed.held_user = Some(user("u-held"));
        assert_eq!(
            resolved_user(&observed).map(|u| u.user_id.as_str()),
            Some("u-held")
        );
        observed.user_by_id = Some(user("u-id"));
        assert_eq!(
            resolved_user(&observed).map(|u| u.user_id.as_str()),
            Some("u-id")
        );
        let one = ObservedMember {
            users_by_email: vec![user("u-1")],
            ..Default::default()
        };
        assert_eq!(resolved_user(&one).map(|u| u.user_id.as_str()), Some("u-1"));
    }
}
