//! The one error enum of the engine and its stores, categorised so each class maps to a
//! condition reason and a retry behaviour.

use crate::crd::ConditionReason;

/// Failures of the database layer. Messages never contain the connection URL or password.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be used as configured (an unsupported or invalid URL).
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// The server could not be reached or the connection broke, worded for someone on call:
    /// what happened and where (host and port), never a driver's internals.
    #[error("{}", .fault.describe(.address.as_deref()))]
    Connection {
        fault: ConnectionFault,
        /// `HOST:PORT` from the parsed URL (never its user, password or options).
        address: Option<String>,
    },
    /// The database has LiteLLM tables but lacks some the operator needs.
    #[error(
        "the database schema is missing {}: upgrade LiteLLM (its migrations create them); the operator never alters an existing LiteLLM schema",
        .0.join(", ")
    )]
    SchemaMissing(Vec<String>),
    /// The database has none of LiteLLM's tables.
    #[error(
        "the database has no LiteLLM tables: point --database at LiteLLM's database, or run `litellm-org-operator migrate` to create them on this empty database"
    )]
    SchemaEmpty,
    /// A statement failed.
    #[error("database error: {0}")]
    Query(String),
    /// A row holds a value this tool cannot decode (metadata with a number no JSON number
    /// holds, such as `1e400`): that row cannot be read, the others can.
    #[error("a row cannot be read: {0}")]
    Unreadable(String),
    /// A row a plan creates was created by another writer since the plan read the database:
    /// nothing of the transaction was written; plan again.
    #[error("{0} was created by another writer since it was planned; nothing was written")]
    Stale(String),
    /// What a delete removes grew since it was planned (a team, key or membership added to
    /// the organization): nothing of the transaction was written; plan again.
    #[error("{0}; nothing was written: plan again")]
    Changed(String),
    /// The ledger names another resource or manager for a row this write claims.
    #[error(
        "{row} is managed by {resource} (manager {manager:?}); a row is never taken over from another resource or manager"
    )]
    Claimed {
        row: String,
        manager: String,
        resource: String,
    },
}

/// How a connection to the database failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConnectionFault {
    /// Nothing listens there.
    Refused,
    /// An open connection broke (reset, closed, cut mid-conversation).
    Lost,
    /// No connection within the pool's timeout.
    TimedOut,
    /// The TLS handshake failed.
    Tls,
    /// The pool is shut down (the process is stopping).
    Closed,
    /// Another failure to connect, in words that hold no library internals.
    Other(String),
}

impl ConnectionFault {
    /// Classify an I/O error of the connection: a refusal, a broken connection (a reset, a
    /// peer that went away, TLS closed without `close_notify`), or what its kind says.
    pub fn from_io(e: &std::io::Error) -> Self {
        use std::io::ErrorKind::*;
        match e.kind() {
            ConnectionRefused => Self::Refused,
            ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof | NotConnected => {
                Self::Lost
            }
            TimedOut => Self::Other("timed out".into()),
            _ => {
                let text = e.to_string();
                if text.contains("close_notify") || text.contains("rustls") {
                    Self::Lost
                } else {
                    Self::Other(without_links(&text))
                }
            }
        }
    }

    /// The sentence: "lost the connection to the database at HOST:PORT", "cannot connect to
    /// the database at HOST:PORT: connection refused", ...
    pub fn describe(&self, address: Option<&str>) -> String {
        let at = address.map(|a| format!(" at {a}")).unwrap_or_default();
        match self {
            Self::Refused => format!("cannot connect to the database{at}: connection refused"),
            Self::Lost => format!("lost the connection to the database{at}"),
            Self::TimedOut => {
                format!("cannot connect to the database{at}: timed out waiting for a connection")
            }
            Self::Tls => format!("cannot connect to the database{at}: TLS handshake failed"),
            Self::Closed => format!("the connections to the database{at} are closed"),
            Self::Other(why) => format!("cannot connect to the database{at}: {why}"),
        }
    }
}

/// The text before any link (libraries append "https://docs.rs/…" to some messages).
fn without_links(text: &str) -> String {
    let cut = text.find("http://").or_else(|| text.find("https://"));
    let kept = cut.map_or(text, |at| &text[..at]);
    kept.trim_end_matches([' ', ':', ';', ',', '-', '('])
        .to_string()
}

/// `HOST:PORT` of a parsed URL (`[HOST]:PORT` for an IPv6 address).
pub fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

impl StoreError {
    /// A connection failure.
    pub fn connection(fault: ConnectionFault) -> Self {
        Self::Connection {
            fault,
            address: None,
        }
    }

    /// Name the database's `HOST:PORT` in a connection failure (other errors are unchanged).
    pub fn at(self, address: &str) -> Self {
        match self {
            Self::Connection {
                fault,
                address: None,
            } => Self::Connection {
                fault,
                address: Some(address.to_string()),
            },
            other => other,
        }
    }

    /// Map a driver error, keeping only what is safe to show (never the URL).
    pub fn from_sqlx(err: sqlx::Error) -> Self {
        match err {
            sqlx::Error::Io(e) => Self::connection(ConnectionFault::from_io(&e)),
            sqlx::Error::Tls(_) => Self::connection(ConnectionFault::Tls),
            sqlx::Error::PoolTimedOut => Self::connection(ConnectionFault::TimedOut),
            sqlx::Error::PoolClosed => Self::connection(ConnectionFault::Closed),
            sqlx::Error::Configuration(_) => {
                Self::Unavailable("invalid database URL (check scheme, host and options)".into())
            }
            // A connection that broke mid-conversation reads as garbage: the server went away.
            sqlx::Error::Protocol(_) | sqlx::Error::WorkerCrashed => {
                Self::connection(ConnectionFault::Lost)
            }
            sqlx::Error::Database(db) if db.code().as_deref() == Some("42501") => {
                Self::Query(format!(
                    "{}: the operator's database user lacks a privilege; grant it access to LiteLLM's tables (GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO <user>) and to the ledger's schema (GRANT USAGE, CREATE ON SCHEMA <ledger schema> TO <user>; GRANT ALL ON ALL TABLES IN SCHEMA <ledger schema> TO <user>)",
                    db.message()
                ))
            }
            // The server's words name the user ("password authentication failed for user
            // ..."): a part of the URL that no message may carry.
            sqlx::Error::Database(db) if db.code().is_some_and(|c| c.starts_with("28")) => {
                Self::Unavailable(
                    "the server refused the login: check the user name and password of the database URL"
                        .into(),
                )
            }
            sqlx::Error::Database(db) => Self::Query(db.message().to_string()),
            e @ (sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_)) => {
                Self::Unreadable(e.to_string())
            }
            other => Self::Query(other.to_string()),
        }
    }
}

impl StoreError {
    /// Map a failure to create the ledger: a missing privilege names the grant to run.
    pub fn from_ledger_ddl(err: sqlx::Error) -> Self {
        match &err {
            sqlx::Error::Database(db) if db.code().as_deref() == Some("42501") => Self::Query(
                "the database user may not create the operator's ledger schema: run `GRANT CREATE ON DATABASE <litellm database> TO <operator user>` (or create the schema named by --ledger-schema yourself and grant the user ALL on it)".into(),
            ),
            _ => Self::from_sqlx(err),
        }
    }
}

/// Failures of planning or applying one object.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The spec breaks rules; nothing is written until it changes. The first broken rule is
    /// `field` and `message`; the others of the same object follow in `more`, in the order
    /// they were checked, and past the per-object cap only their number is kept (`omitted`).
    /// Shown as the first rule, then the names of the others, in bounded text.
    #[error("{}", describe_invalid(.field, .message, .more, *.omitted))]
    InvalidSpec {
        field: String,
        message: String,
        more: Vec<FieldError>,
        omitted: usize,
    },
    /// A row the spec names is not in the database (a `budgetRef` to a budget LiteLLM does
    /// not hold): the database's content, not the manifest, decides it, so it is looked at
    /// again at each resync and clears once the row exists.
    #[error("{field}: {message}")]
    BudgetNotFound { field: String, message: String },
    /// The organization a member points at does not exist (yet), or is being deleted.
    #[error("{0}")]
    OrganizationNotFound(String),
    /// The referenced organization exists as a resource but has not been reconciled.
    #[error("{0}")]
    OrganizationNotReady(String),
    /// A row belongs to another resource, or the lookup is ambiguous.
    #[error("{0}")]
    Conflict(String),
    /// The namespace may not reach this organization: it does not declare it and no grant of
    /// the operator's configuration covers it (see `controller::tenancy`).
    #[error("{0}")]
    NotGranted(String),
    /// The database failed.
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for EngineError {
    /// A claim the ledger refused is a conflict between resources, not a database fault.
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Claimed { .. } => Self::Conflict(err.to_string()),
            other => Self::Store(other),
        }
    }
}

/// One broken rule of a spec: the dotted path of its field and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// The most bytes [`EngineError::InvalidSpec`]'s text gives the first rule.
const MAX_FIRST_RULE_BYTES: usize = 2048;
/// The most bytes it gives the names of the other broken rules.
const MAX_OTHER_FIELDS_BYTES: usize = 1024;
/// The most bytes of one field name in that list.
const MAX_FIELD_NAME_BYTES: usize = 128;

/// `FIELD: MESSAGE`, then `; and N more: FIELD, FIELD, ...` naming the others as far as the
/// bound allows (a condition's message and an event's note must stay small, whatever the
/// spec holds).
fn describe_invalid(field: &str, message: &str, more: &[FieldError], omitted: usize) -> String {
    let mut text = cut(format!("{field}: {message}"), MAX_FIRST_RULE_BYTES);
    let others = more.len() + omitted;
    if others == 0 {
        return text;
    }
    text.push_str(&format!("; and {others} more: "));
    let mut listed = 0;
    let mut budget = MAX_OTHER_FIELDS_BYTES;
    for other in more {
        let name = cut(other.field.clone(), MAX_FIELD_NAME_BYTES);
        if name.len() + 2 > budget {
            break;
        }
        if listed > 0 {
            text.push_str(", ");
        }
        budget -= name.len() + 2;
        text.push_str(&name);
        listed += 1;
    }
    let unnamed = others - listed;
    if unnamed > 0 {
        if listed > 0 {
            text.push_str(", ");
        }
        text.push_str(&format!("{unnamed} not named here"));
    }
    text
}

/// `text` cut to at most `max` bytes on a character boundary, the cut marked with `…`.
fn cut(mut text: String, max: usize) -> String {
    if text.len() <= max {
        return text;
    }
    let mut end = max - '…'.len_utf8();
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.push('…');
    text
}

impl EngineError {
    /// Shorthand for an invalid field.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::InvalidSpec {
            field: field.into(),
            message: message.into(),
            more: Vec::new(),
            omitted: 0,
        }
    }

    /// The broken rules of an object, in the order they were checked, and how many more were
    /// found past the cap: `None` when the spec is valid (an empty list).
    pub fn invalid_fields(mut rules: Vec<FieldError>, omitted: usize) -> Option<Self> {
        if rules.is_empty() {
            return None;
        }
        let first = rules.remove(0);
        Some(Self::InvalidSpec {
            field: first.field,
            message: first.message,
            more: rules,
            omitted,
        })
    }

    /// Every broken rule an [`InvalidSpec`](Self::InvalidSpec) carries, first one first
    /// (none for other errors), and how many more were counted but not kept.
    pub fn broken_rules(&self) -> (Vec<FieldError>, usize) {
        match self {
            Self::InvalidSpec {
                field,
                message,
                more,
                omitted,
            } => {
                let mut rules = Vec::with_capacity(1 + more.len());
                rules.push(FieldError::new(field.clone(), message.clone()));
                rules.extend(more.iter().cloned());
                (rules, *omitted)
            }
            _ => (Vec::new(), 0),
        }
    }

    /// The condition reason this class of error reports.
    pub fn reason(&self) -> ConditionReason {
        match self {
            Self::InvalidSpec { .. } => ConditionReason::InvalidSpec,
            Self::BudgetNotFound { .. } => ConditionReason::BudgetNotFound,
            Self::OrganizationNotFound(_) => ConditionReason::OrganizationNotFound,
            Self::OrganizationNotReady(_) => ConditionReason::OrganizationNotReady,
            Self::Conflict(_) => ConditionReason::Conflict,
            Self::NotGranted(_) => ConditionReason::NotGranted,
            Self::Store(_) => ConditionReason::DatabaseUnavailable,
        }
    }

    /// What happens after this error: the one answer the controller's requeue, the status
    /// conditions (stalled or still reconciling) and the events all read.
    pub fn next_step(&self) -> NextStep {
        match self {
            // What the manifest alone decides: nothing changes until the spec does.
            Self::InvalidSpec { .. } => NextStep::AwaitChange,
            // What the database's content (or another object) decides: the other owner may
            // let go, the budget or the organization may be created; stalled, and looked at
            // again at each resync. A member whose Organization comes back is woken by its
            // watch sooner. A grant comes with a restart of the operator (a new flag), which
            // reconciles everything; an organization the namespace declares later is seen at
            // the resync.
            Self::Conflict(_)
            | Self::BudgetNotFound { .. }
            | Self::OrganizationNotFound(_)
            | Self::NotGranted(_) => NextStep::Resync,
            // The organization's own reconcile (or its watch) usually wakes the member sooner.
            Self::OrganizationNotReady(_) => NextStep::RetryAfter(ORGANIZATION_WAIT),
            Self::Store(_) => NextStep::Backoff,
        }
    }
}

/// How long a member waits for its organization before looking again. The organization's
/// watch wakes its members as soon as it turns Ready; this is the fallback for a wake-up lost
/// while the member index was still being filled at start.
pub const ORGANIZATION_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// What the controller does after a failed reconcile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NextStep {
    /// Stalled until the object changes (an invalid spec).
    AwaitChange,
    /// Stalled, re-checked at the periodic resync (a conflict another resource may resolve).
    Resync,
    /// Waiting on something that comes by itself; look again after this long.
    RetryAfter(std::time::Duration),
    /// A fault that may pass (the database): retry with per-object exponential backoff.
    Backoff,
}

impl NextStep {
    /// True when only a change elsewhere can unblock the object (kstatus `Stalled`).
    pub fn is_stalled(self) -> bool {
        matches!(self, Self::AwaitChange | Self::Resync)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn io(kind: std::io::ErrorKind, text: &str) -> sqlx::Error {
        sqlx::Error::Io(std::io::Error::new(kind, text.to_string()))
    }

    #[test]
    fn a_refused_connection_names_host_and_port() {
        let e = StoreError::from_sqlx(io(std::io::ErrorKind::ConnectionRefused, "os error 111"))
            .at("db.example:5432");
        assert_eq!(
            e.to_string(),
            "cannot connect to the database at db.example:5432: connection refused"
        );
    }

    #[test]
    fn a_tls_close_without_close_notify_reads_as_a_lost_connection() {
        // What rustls reports when the peer goes away mid-run.
        let e = StoreError::from_sqlx(io(
            std::io::ErrorKind::UnexpectedEof,
            "peer closed connection without sending TLS close_notify: https://docs.rs/rustls/latest/rustls/manual/_03_howto/index.html#unexpected-eof",
        ))
        .at("10.0.0.5:5432");
        assert_eq!(
            e.to_string(),
            "lost the connection to the database at 10.0.0.5:5432"
        );
        // Whatever kind it comes with.
        let e = StoreError::from_sqlx(io(
            std::io::ErrorKind::Other,
            "peer closed connection without sending TLS close_notify: https://docs.rs/rustls/",
        ));
        assert_eq!(e.to_string(), "lost the connection to the database");
    }

    #[test]
    fn broken_connections_read_as_lost() {
        use std::io::ErrorKind::*;
        for kind in [
            ConnectionReset,
            ConnectionAborted,
            BrokenPipe,
            UnexpectedEof,
        ] {
            let e = StoreError::from_sqlx(io(kind, "os detail")).at("h:1");
            assert_eq!(e.to_string(), "lost the connection to the database at h:1");
        }
        let e = StoreError::from_sqlx(sqlx::Error::Protocol("garbage".into())).at("h:1");
        assert_eq!(e.to_string(), "lost the connection to the database at h:1");
    }

    #[test]
    fn other_failures_keep_no_links_and_never_replace_an_address() {
        let e = StoreError::from_sqlx(io(
            std::io::ErrorKind::Other,
            "something odd: https://docs.rs/some/page",
        ))
        .at("h:1")
        .at("other:2");
        assert_eq!(
            e.to_string(),
            "cannot connect to the database at h:1: something odd"
        );
        let e = StoreError::from_sqlx(sqlx::Error::PoolTimedOut).at("h:1");
        assert_eq!(
            e.to_string(),
            "cannot connect to the database at h:1: timed out waiting for a connection"
        );
        assert_eq!(host_port("::1", 5432), "[::1]:5432");
        assert_eq!(host_port("db", 5432), "db:5432");
    }
}
