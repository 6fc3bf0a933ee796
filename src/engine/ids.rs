//! Deterministic ids: the same resource always maps to the same rows, so a crash between the
//! database commit and the status write, or a repeated `apply`, can never create a second row.

use uuid::Uuid;

/// UUIDv5 namespace of this project (itself the v5 of `litellm-org-operator.litellm.dev`
/// in the DNS namespace), fixed forever: changing it would orphan every row.
const NAMESPACE: Uuid = Uuid::from_u128(0x6f3c_2a8e_41d7_5b9a_9e0c_7d1f_4a2b_8c35);

fn v5(name: &str) -> String {
    Uuid::new_v5(&NAMESPACE, name.as_bytes()).to_string()
}

/// Organization id when `spec.organizationId` is not set.
pub fn organization_id(namespace: &str, name: &str) -> String {
    v5(&format!("organization/{namespace}/{name}"))
}

/// Id of the budget row an `Organization` owns.
pub fn organization_budget_id(namespace: &str, name: &str) -> String {
    v5(&format!("budget/organization/{namespace}/{name}"))
}

/// Id of the budget row an `OrganizationMember` owns.
pub fn member_budget_id(namespace: &str, name: &str) -> String {
    v5(&format!("budget/organizationmember/{namespace}/{name}"))
}

/// User id of a user the operator creates from an email alone.
pub fn user_id_for_email(email: &str) -> String {
    v5(&format!("user/{}", email.trim().to_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_and_distinct() {
        assert_eq!(organization_id("a", "b"), organization_id("a", "b"));
        assert_ne!(organization_id("a", "b"), organization_id("b", "a"));
        assert_ne!(organization_id("a", "b"), organization_budget_id("a", "b"));
        assert_ne!(organization_budget_id("a", "b"), member_budget_id("a", "b"));
    }

    #[test]
    fn email_ids_ignore_case_and_whitespace() {
        assert_eq!(
            user_id_for_email("Ann@Example.com "),
            user_id_for_email("ann@example.com")
        );
        let id = user_id_for_email("ann@example.com");
        assert_eq!(
            Uuid::parse_str(&id).map(|u| u.get_version_num()).ok(),
            Some(5)
        );
    }

    #[test]
    fn pinned_values_never_change() {
        // These values are stored in databases: a change here would orphan every row.
        assert_eq!(
            organization_id("default", "acme"),
            "80467783-bbd9-55ce-b988-3a61e65b3007"
        );
        assert_eq!(
            user_id_for_email("ann@example.com"),
            "6577abde-1c6f-5c56-8d2b-15b3f306274f"
        );
    }
}
