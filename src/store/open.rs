//! Opening the store a `--database` URL names, and the start-up schema check.
//!
//! The URL is a secret: no part of it but its scheme, host, port and database name reaches a
//! message, a log line (this tool's or a dependency's), an event or a metric. It is read here,
//! before any driver sees it: a query parameter the driver does not know is an error naming
//! the key (sqlx would log it, value and all, and go on without it), and a value the driver
//! refuses is an error naming its key, never echoing the value.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use sqlx::ConnectOptions;
use sqlx::postgres::PgConnectOptions;
use sqlx::sqlite::SqliteConnectOptions;

use crate::error::{StoreError, host_port};
use crate::store::{AnyStore, PostgresStore, SchemaState, SqliteStore, Store};

/// The embedded default: a SQLite file in the working directory, created on first use.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://litellm-org-operator.db";

/// Which backend a URL names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

/// Decide the backend from the URL's scheme (the URL itself is never printed).
pub fn backend_of(url: &SecretString) -> Result<Backend, StoreError> {
    let u = url.expose_secret();
    if u.starts_with("postgres://") || u.starts_with("postgresql://") {
        Ok(Backend::Postgres)
    } else if u.starts_with("sqlite:") {
        Ok(Backend::Sqlite)
    } else {
        Err(StoreError::Unavailable(
            "unsupported database URL: use postgres://user:password@host:port/database or sqlite://file.db"
                .into(),
        ))
    }
}

/// The query parameters of a PostgreSQL URL, as sqlx reads them (libpq's names and sqlx's
/// spellings): anything else is refused rather than ignored.
const POSTGRES_PARAMETERS: &[&str] = &[
    "sslmode",
    "ssl-mode",
    "sslrootcert",
    "ssl-root-cert",
    "ssl-ca",
    "sslcert",
    "ssl-cert",
    "sslkey",
    "ssl-key",
    "statement-cache-capacity",
    "host",
    "hostaddr",
    "port",
    "dbname",
    "user",
    "password",
    "application_name",
    "options",
];

/// The query parameters of a SQLite URL.
const SQLITE_PARAMETERS: &[&str] = &["mode", "cache", "immutable", "vfs"];

/// Statements slower than this are logged by sqlx, at debug level only (the log line carries
/// the whole statement).
const SLOW_STATEMENT: Duration = Duration::from_secs(1);

/// Connection options for a PostgreSQL URL, its query parameters checked first.
pub fn postgres_options(url: &SecretString) -> Result<PgConnectOptions, StoreError> {
    let invalid = || {
        StoreError::Unavailable(
            "invalid PostgreSQL URL (expected postgres://user:password@host:port/database)".into(),
        )
    };
    let parsed = url::Url::parse(url.expose_secret()).map_err(|_| invalid())?;
    check_parameters(&parsed, POSTGRES_PARAMETERS, |key| {
        key.starts_with("options[")
    })?;
    for (key, value) in parsed.query_pairs() {
        let ok = match &*key {
            "sslmode" | "ssl-mode" => value.parse::<sqlx::postgres::PgSslMode>().is_ok(),
            "port" => value.parse::<u16>().is_ok(),
            "statement-cache-capacity" => value.parse::<usize>().is_ok(),
            "hostaddr" => value.parse::<std::net::IpAddr>().is_ok(),
            _ => true,
        };
        if !ok {
            return Err(StoreError::Unavailable(format!(
                "invalid value for the parameter {:?} of the database URL",
                crate::text::escape(&key)
            )));
        }
    }
    let options = PgConnectOptions::from_url(&parsed).map_err(|_| invalid())?;
    Ok(options
        .application_name("litellm-org-operator")
        .log_slow_statements(log::LevelFilter::Debug, SLOW_STATEMENT))
}

/// Connection options for a SQLite URL, its query parameters checked first.
pub fn sqlite_options(url: &SecretString) -> Result<SqliteConnectOptions, StoreError> {
    let invalid =
        || StoreError::Unavailable("invalid SQLite URL (expected sqlite://path/to/file.db)".into());
    let text = url.expose_secret();
    // `sqlite:file.db` and `sqlite://file.db` both name a file; only the query is checked here.
    if let Some((_, query)) = text.split_once('?') {
        let parsed = url::Url::parse(&format!("sqlite://x?{query}")).map_err(|_| invalid())?;
        check_parameters(&parsed, SQLITE_PARAMETERS, |_| false)?;
    }
    let options = text
        .parse::<SqliteConnectOptions>()
        .map_err(|_| invalid())?;
    Ok(options.log_slow_statements(log::LevelFilter::Debug, SLOW_STATEMENT))
}

/// Refuse a query parameter outside `known` (or `also`), naming its key only.
fn check_parameters(
    url: &url::Url,
    known: &[&str],
    also: impl Fn(&str) -> bool,
) -> Result<(), StoreError> {
    for (key, _) in url.query_pairs() {
        if !known.contains(&&*key) && !also(&key) {
            return Err(StoreError::Unavailable(format!(
                "unsupported parameter {:?} in the database URL (supported: {})",
                crate::text::escape(&key),
                known.join(", ")
            )));
        }
    }
    Ok(())
}

/// Open the store. SQLite databases that are still empty get their tables at once (the
/// embedded default is ready on first use); Postgres is never changed here.
pub async fn open(url: &SecretString) -> Result<AnyStore, StoreError> {
    let store = match backend_of(url)? {
        Backend::Postgres => {
            probe_postgres(url).await?;
            AnyStore::Postgres(PostgresStore::connect(url, 8).await?)
        }
        Backend::Sqlite => AnyStore::Sqlite(SqliteStore::connect(url).await?),
    };
    Ok(store)
}

/// Connect once, outside the pool, so a server that cannot be reached is reported at once
/// with its host and port ("connection refused"), not after the pool's acquire timeout as
/// "timed out waiting for a connection". The password is never part of the message.
async fn probe_postgres(url: &SecretString) -> Result<(), StoreError> {
    let options = postgres_options(url)?;
    match options.connect().await {
        Ok(connection) => {
            // Closing politely is a courtesy; the pool opens its own connections.
            let _ = sqlx::Connection::close(connection).await;
            Ok(())
        }
        Err(e) => {
            Err(StoreError::from_sqlx(e).at(&host_port(options.get_host(), options.get_port())))
        }
    }
}

/// Check that the schema is usable; create it first on an empty SQLite database.
pub async fn ensure_schema(store: &AnyStore) -> Result<(), StoreError> {
    match store.schema_state().await? {
        SchemaState::Ready => Ok(()),
        SchemaState::Empty if matches!(store, AnyStore::Sqlite(_)) => store.migrate().await,
        SchemaState::Empty => Err(StoreError::SchemaEmpty),
        SchemaState::Missing(missing) => Err(StoreError::SchemaMissing(missing)),
    }
}
