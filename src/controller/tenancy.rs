//! Tenancy: a namespace reaches only the LiteLLM organizations it declares, and others only
//! where the operator's configuration grants it (`--grant NAMESPACE=ORGANIZATION_ID`, Helm
//! value `tenancy.grants`).
//!
//! Two things reach an organization by id: an `OrganizationMember` with
//! `spec.organizationId` (joining it), and an `Organization` with `spec.organizationId` whose
//! row it did not create (adopting it). Without a grant a member may only join an organization
//! an `Organization` of its own namespace declares and has made Ready; an `Organization` may
//! only pin an id that does not exist yet (it creates it) or one whose row it created. The
//! grants are held by whoever installs the operator, not by tenants: an organization made in
//! LiteLLM's UI lives in no namespace, so no tenant could grant it. The CLI has no tenants and
//! never reads them.

use std::fmt;
use std::str::FromStr;

use kube::ResourceExt;
use kube::runtime::reflector::Store;

use super::raw::Raw;
use super::status::is_ready;
use crate::crd::{Organization, OrganizationStatus};
use crate::engine::ids;
use crate::error::EngineError;

/// One side of a grant: a namespace or an organization id.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Pattern {
    /// `*`: every value.
    Any,
    /// `prefix*`: every value starting with the prefix.
    Prefix(String),
    /// Exactly this value.
    Exact(String),
}

impl Pattern {
    /// Read one side; `what` names it in the error.
    fn parse(text: &str, what: &str) -> Result<Self, String> {
        if text.is_empty() {
            return Err(format!("the {what} is empty"));
        }
        if let Some(c) = text.chars().find(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!("the {what} {text:?} holds {c:?}"));
        }
        let (body, wildcard) = match text.strip_suffix('*') {
            Some(body) => (body, true),
            None => (text, false),
        };
        if body.contains('*') {
            return Err(format!(
                "the {what} {text:?} has a * that is not at its end (a * stands alone or ends a prefix)"
            ));
        }
        Ok(match (body.is_empty(), wildcard) {
            (true, _) => Self::Any,
            (false, true) => Self::Prefix(body.to_string()),
            (false, false) => Self::Exact(body.to_string()),
        })
    }

    fn matches(&self, value: &str) -> bool {
        match self {
            Self::Any => true,
            Self::Prefix(prefix) => value.starts_with(prefix.as_str()),
            Self::Exact(exact) => value == exact,
        }
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Any => f.write_str("*"),
            Self::Prefix(prefix) => write!(f, "{prefix}*"),
            Self::Exact(exact) => f.write_str(exact),
        }
    }
}

/// `NAMESPACE=ORGANIZATION_ID`: the namespaces matching the left side may reach, by id, the
/// LiteLLM organizations matching the right side (join them, or adopt them). Each side is an
/// exact value, `*`, or a prefix ending in `*`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    namespace: Pattern,
    organization: Pattern,
}

impl Grant {
    /// True when this grant lets `namespace` reach `organization_id`.
    pub fn covers(&self, namespace: &str, organization_id: &str) -> bool {
        self.namespace.matches(namespace) && self.organization.matches(organization_id)
    }
}

impl FromStr for Grant {
    type Err = String;

    /// Read `NAMESPACE=ORGANIZATION_ID` (split at the first `=`: a namespace never holds
    /// one). The error says what is wrong and what a grant looks like.
    fn from_str(text: &str) -> Result<Self, String> {
        let shape = "a grant is NAMESPACE=ORGANIZATION_ID, each side an exact value, * or a prefix ending in * (for example tenant-b=org-finance-2024, tenant-b=org-finance-*, or *=* for every namespace and organization)";
        let Some((namespace, organization)) = text.split_once('=') else {
            return Err(format!("{text:?} has no '=': {shape}"));
        };
        let namespace =
            Pattern::parse(namespace, "namespace").map_err(|e| format!("{e}: {shape}"))?;
        if let Pattern::Exact(name) | Pattern::Prefix(name) = &namespace
            && !name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            return Err(format!(
                "the namespace {name:?} is not a namespace name (lowercase letters, digits and -): {shape}"
            ));
        }
        let organization =
            Pattern::parse(organization, "organization id").map_err(|e| format!("{e}: {shape}"))?;
        Ok(Self {
            namespace,
            organization,
        })
    }
}

impl fmt::Display for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.namespace, self.organization)
    }
}

/// Every grant of the operator's configuration. Empty: each namespace reaches only the
/// organizations it declares.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Grants(Vec<Grant>);

impl Grants {
    pub fn new(grants: Vec<Grant>) -> Self {
        Self(grants)
    }

    /// True when some grant lets `namespace` reach `organization_id`.
    pub fn allow(&self, namespace: &str, organization_id: &str) -> bool {
        self.0.iter().any(|g| g.covers(namespace, organization_id))
    }

    /// The grants as the flag spells them, for the start-up log.
    pub fn describe(&self) -> Vec<String> {
        self.0.iter().map(ToString::to_string).collect()
    }
}

/// The refusal: the rule, why it applies, and the two ways to grant it.
fn not_granted(namespace: &str, organization_id: &str, action: &str, why: &str) -> EngineError {
    EngineError::NotGranted(format!(
        "namespace {namespace} may not {action} organization {organization_id}: {why} and no --grant covers it; grant it with the chart value tenancy.grants (namespace: {namespace}, organizationIds: [{organization_id}]) or --grant {namespace}={organization_id}"
    ))
}

/// Whether an `Organization` of `namespace` that pins `organization_id` may adopt the row,
/// which exists and which it did not create. Creating a new organization needs no grant.
pub fn check_adoption(
    grants: &Grants,
    namespace: &str,
    organization_id: &str,
) -> Result<(), EngineError> {
    if grants.allow(namespace, organization_id) {
        return Ok(());
    }
    Err(not_granted(
        namespace,
        organization_id,
        "adopt",
        "it already exists in LiteLLM, this Organization did not create it,",
    ))
}

/// Whether an `OrganizationMember` of `namespace` may join `organization_id` by id: granted,
/// or declared by an `Organization` of the same namespace that is Ready with that id. One of
/// them declaring it that is not Ready yet (applied together with the member) is a wait, not
/// a refusal.
pub fn check_member(
    grants: &Grants,
    organizations: &Store<Raw<Organization>>,
    namespace: &str,
    organization_id: &str,
) -> Result<(), EngineError> {
    if grants.allow(namespace, organization_id) {
        return Ok(());
    }
    let mut pending = None;
    for org in organizations.state() {
        if org.namespace().as_deref() != Some(namespace) {
            continue;
        }
        let status = org.status_as::<OrganizationStatus>();
        let status_id = status.as_ref().and_then(|s| s.organization_id.as_deref());
        let ready = status.as_ref().is_some_and(|s| {
            is_ready(
                &s.conditions,
                s.observed_generation,
                org.metadata.generation,
            )
        });
        if status_id == Some(organization_id) && ready && org.metadata.deletion_timestamp.is_none()
        {
            return Ok(());
        }
        // The id it declares: pinned by its spec, else derived from its name (known before
        // its first reconcile reports it, so a member applied with it waits rather than be
        // refused).
        let declared = org
            .delete_target()
            .ok()
            .and_then(|t| t.spec_organization_id)
            .unwrap_or_else(|| ids::organization_id(namespace, &org.name_any()));
        if status_id == Some(organization_id) || declared == organization_id {
            pending = Some(org.name_any());
        }
    }
    match pending {
        Some(name) => Err(EngineError::OrganizationNotReady(format!(
            "Organization {namespace}/{name} declares organization {organization_id} and is not Ready yet"
        ))),
        None => Err(not_granted(
            namespace,
            organization_id,
            "reach",
            "it is not declared in this namespace",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::runtime::reflector;
    use kube::runtime::watcher::Event;
    use serde_json::json;

    fn grant(text: &str) -> Grant {
        text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn exact_grants_cover_exactly_their_namespace_and_organization() {
        let g = grant("tenant-b=org-finance-2024");
        assert!(g.covers("tenant-b", "org-finance-2024"));
        assert!(!g.covers("tenant-b", "org-finance-2025"));
        assert!(!g.covers("tenant-b", "org-finance-2024x"));
        assert!(!g.covers("tenant-bb", "org-finance-2024"));
        assert!(!g.covers("tenant-c", "org-finance-2024"));
        assert_eq!(g.to_string(), "tenant-b=org-finance-2024");
    }

    #[test]
    fn a_star_covers_everything_on_its_side() {
        let g = grant("*=*");
        assert!(g.covers("any", "thing"));
        let g = grant("tenant-b=*");
        assert!(g.covers("tenant-b", "anything"));
        assert!(!g.covers("tenant-c", "anything"));
        let g = grant("*=org-shared");
        assert!(g.covers("a", "org-shared"));
        assert!(g.covers("b", "org-shared"));
        assert!(!g.covers("b", "org-other"));
        assert_eq!(g.to_string(), "*=org-shared");
    }

    #[test]
    fn a_trailing_star_is_a_prefix() {
        let g = grant("tenant-*=org-finance-*");
        assert!(g.covers("tenant-b", "org-finance-2024"));
        assert!(g.covers("tenant-", "org-finance-"));
        assert!(!g.covers("team-b", "org-finance-2024"));
        assert!(!g.covers("tenant-b", "org-marketing"));
        assert_eq!(g.to_string(), "tenant-*=org-finance-*");
        // An id holding '=' is read whole: only the first '=' splits.
        assert!(grant("a=x=y").covers("a", "x=y"));
    }

    #[test]
    fn malformed_grants_say_what_is_wrong_and_what_a_grant_looks_like() {
        for (text, says) in [
            ("tenant-b", "has no '='"),
            ("", "has no '='"),
            ("=org", "the namespace is empty"),
            ("tenant-b=", "the organization id is empty"),
            ("tenant-b=org*x", "not at its end"),
            ("*tenant=org", "not at its end"),
            ("te**=org", "not at its end"),
            ("Tenant_B=org", "is not a namespace name"),
            ("tenant-b=org 1", "holds ' '"),
            ("tenant-b=org\n", "holds '\\n'"),
        ] {
            let err = Grant::from_str(text).expect_err(text);
            assert!(err.contains(says), "{text:?}: {err}");
            assert!(err.contains("NAMESPACE=ORGANIZATION_ID"), "{err}");
        }
    }

    #[test]
    fn no_grants_allow_nothing_and_any_matching_grant_allows() {
        assert!(!Grants::default().allow("a", "x"));
        let grants = Grants::new(vec![grant("a=x"), grant("b=y-*")]);
        assert!(grants.allow("a", "x"));
        assert!(grants.allow("b", "y-1"));
        assert!(!grants.allow("a", "y-1"));
        assert!(!grants.allow("b", "x"));
        assert_eq!(grants.describe(), ["a=x", "b=y-*"]);
    }

    #[test]
    fn an_adoption_needs_a_grant_and_the_refusal_names_it() {
        let err = check_adoption(&Grants::default(), "tenant-b", "org-ui").expect_err("refused");
        assert_eq!(err.reason().as_str(), "NotGranted");
        let text = err.to_string();
        assert!(
            text.starts_with("namespace tenant-b may not adopt organization org-ui"),
            "{text}"
        );
        assert!(
            text.contains("tenancy.grants (namespace: tenant-b, organizationIds: [org-ui])"),
            "{text}"
        );
        assert!(text.contains("--grant tenant-b=org-ui"), "{text}");
        assert!(
            check_adoption(
                &Grants::new(vec![grant("tenant-*=org-*")]),
                "tenant-b",
                "org-ui"
            )
            .is_ok()
        );
    }

    fn org(
        namespace: &str,
        name: &str,
        spec: serde_json::Value,
        status: serde_json::Value,
    ) -> Raw<Organization> {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": namespace, "generation": 1},
            "spec": spec,
            "status": status,
        }))
        .expect("organization")
    }

    fn ready(id: &str) -> serde_json::Value {
        json!({
            "observedGeneration": 1,
            "organizationId": id,
            "conditions": [{"type": "Ready", "status": "True", "reason": "Synced", "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z"}],
        })
    }

    fn cache(orgs: Vec<Raw<Organization>>) -> Store<Raw<Organization>> {
        let (reader, mut writer) = reflector::store();
        for o in orgs {
            writer.apply_watcher_event(&Event::Apply(o));
        }
        reader
    }

    #[test]
    fn a_member_reaches_what_its_own_namespace_declares() {
        let none = Grants::default();
        let orgs = cache(vec![
            org(
                "tenant-a",
                "finance",
                json!({"organizationId": "org-finance-2024"}),
                ready("org-finance-2024"),
            ),
            org("tenant-b", "research", json!({}), ready("derived-id")),
            org(
                "tenant-b",
                "coming",
                json!({"organizationId": "org-coming"}),
                json!({"observedGeneration": -1}),
            ),
        ]);
        // Declared and Ready in the member's namespace.
        assert!(check_member(&none, &orgs, "tenant-b", "derived-id").is_ok());
        assert!(check_member(&none, &orgs, "tenant-a", "org-finance-2024").is_ok());
        // Declared in another namespace: refused, naming the rule and the grant.
        let err = check_member(&none, &orgs, "tenant-b", "org-finance-2024").expect_err("refused");
        assert!(matches!(err, EngineError::NotGranted(_)), "{err:?}");
        assert_eq!(
            err.to_string(),
            "namespace tenant-b may not reach organization org-finance-2024: it is not declared in this namespace and no --grant covers it; grant it with the chart value tenancy.grants (namespace: tenant-b, organizationIds: [org-finance-2024]) or --grant tenant-b=org-finance-2024"
        );
        // Declared here, not Ready yet: a wait.
        let err = check_member(&none, &orgs, "tenant-b", "org-coming").expect_err("waits");
        assert!(
            matches!(err, EngineError::OrganizationNotReady(_)),
            "{err:?}"
        );
        assert!(err.to_string().contains("tenant-b/coming"), "{err}");
        // Also by the id derived from its name, before its first status reports it.
        let fresh = cache(vec![org(
            "tenant-b",
            "fresh",
            json!({}),
            json!({"observedGeneration": -1}),
        )]);
        let derived = ids::organization_id("tenant-b", "fresh");
        let err = check_member(&none, &fresh, "tenant-b", &derived).expect_err("waits");
        assert!(
            matches!(err, EngineError::OrganizationNotReady(_)),
            "{err:?}"
        );
        let err = check_member(&none, &fresh, "tenant-c", &derived).expect_err("refused");
        assert!(matches!(err, EngineError::NotGranted(_)), "{err:?}");
        // Made in LiteLLM, declared nowhere: refused.
        assert!(matches!(
            check_member(&none, &orgs, "tenant-b", "org-ui"),
            Err(EngineError::NotGranted(_))
        ));
        // A grant opens exactly what it names.
        let grants = Grants::new(vec![grant("tenant-b=org-finance-2024")]);
        assert!(check_member(&grants, &orgs, "tenant-b", "org-finance-2024").is_ok());
        assert!(check_member(&grants, &orgs, "tenant-c", "org-finance-2024").is_err());
        assert!(check_member(&grants, &orgs, "tenant-b", "org-ui").is_err());
    }

    #[test]
    fn an_organization_that_is_not_ready_or_stale_lets_no_member_in() {
        let none = Grants::default();
        let mut stale = org("t", "stale", json!({}), ready("x"));
        stale.metadata.generation = Some(2);
        let mut going = org("t", "going", json!({}), ready("y"));
        going.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
            ));
        let refused = org(
            "t",
            "refused",
            json!({"organizationId": "z"}),
            json!({
                "observedGeneration": 1,
                "organizationId": "z",
                "conditions": [{"type": "Ready", "status": "False", "reason": "NotGranted", "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z"}],
            }),
        );
        let orgs = cache(vec![stale, going, refused]);
        for id in ["x", "y", "z"] {
            let err = check_member(&none, &orgs, "t", id).expect_err(id);
            assert!(
                matches!(err, EngineError::OrganizationNotReady(_)),
                "{id}: {err:?}"
            );
        }
    }
}
