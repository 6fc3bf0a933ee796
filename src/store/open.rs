//! Opening the store a `--database` URL names, and the start-up schema check.

use std::str::FromStr;

use secrecy::{ExposeSecret, SecretString};
use sqlx::ConnectOptions;
use sqlx::postgres::PgConnectOptions;

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
    // A URL that does not parse is reported by the pool with its own message.
    let Ok(options) = PgConnectOptions::from_str(url.expose_secret()) else {
        return Ok(());
    };
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
