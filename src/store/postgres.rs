//! PostgreSQL store: works on LiteLLM's real schema (quoted table names, `text[]`, `jsonb`,
//! `timestamp(3)`), never altering it. The SQL is shared with SQLite (see `sql.rs`); this file
//! holds the connection and the Postgres-only hooks.

use std::time::Duration;

use secrecy::SecretString;
use sqlx::postgres::{PgPool, PgPoolOptions};

use super::ledger::{DEFAULT_LEDGER_SCHEMA, LedgerSql, ledger_schema};
use super::sql::sql_store;
use crate::error::{StoreError, host_port};

/// A pool of connections to one PostgreSQL database.
#[derive(Clone)]
pub struct PostgresStore {
    pool: PgPool,
    /// The ledger's statements (see `store::ledger`).
    ledger: std::sync::Arc<LedgerSql>,
    /// Whether the ledger table is known to exist (reads of a missing ledger are empty).
    ledger_ready: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// `HOST:PORT` of the server, for messages about its connections.
    address: std::sync::Arc<str>,
}

impl PostgresStore {
    /// Connect with a URL kept secret: it never reaches a log or an error message.
    pub async fn connect(url: &SecretString, max_connections: u32) -> Result<Self, StoreError> {
        let options = super::open::postgres_options(url)?;
        let address = host_port(options.get_host(), options.get_port());
        // No liveness ping before each checkout: it is a round trip on every transaction and
        // every object's reads. The pool still pings each connection as it is returned and
        // drops it if it fails, so a connection that died idle (a server restart) fails one
        // statement, whose reconcile backs off, and is then replaced.
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(10))
            .test_before_acquire(false)
            .connect_with(options)
            .await
            .map_err(|e| StoreError::from_sqlx(e).at(&address))?;
        Ok(Self::from_pool(pool))
    }

    /// Wrap an existing pool (tests, benchmarks).
    pub fn from_pool(pool: PgPool) -> Self {
        let options = pool.connect_options();
        let address = host_port(options.get_host(), options.get_port()).into();
        Self {
            address,
            pool,
            ledger: std::sync::Arc::new(LedgerSql::postgres(DEFAULT_LEDGER_SCHEMA)),
            ledger_ready: Default::default(),
        }
    }

    /// Keep the ledger in schema `schema` instead of the default `litellm_org_operator`.
    pub fn with_ledger_schema(mut self, schema: &str) -> Result<Self, StoreError> {
        self.ledger = std::sync::Arc::new(LedgerSql::postgres(&ledger_schema(schema)?));
        Ok(self)
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// `HOST:PORT` of the server (from the parsed URL: never its user, password or options).
    pub fn address(&self) -> &str {
        &self.address
    }
}

/// What only Postgres spells this way.
mod dialect {
    use sqlx::Row;
    use sqlx::postgres::{PgPool, PgRow};

    use crate::store::OWNER_KEY;
    use crate::store::schema::REQUIRED_COLUMNS;

    /// Organizations carrying the ownership marker, with its owner.
    pub const OWNED_ORGANIZATIONS: &str = r#"SELECT "organization_id", "metadata" -> $1 ->> 'owner' AS "owner"
        FROM "LiteLLM_OrganizationTable" WHERE jsonb_exists("metadata", $1)"#;

    /// The argument of [`OWNED_ORGANIZATIONS`]: the marker's key.
    pub fn owner_argument() -> String {
        OWNER_KEY.to_string()
    }

    /// Lock an organization row for the rest of the transaction, so memberships (whose
    /// inserts take a key-share lock on it) cannot be added while its cascade runs.
    pub const LOCK_ORGANIZATION: Option<&str> = Some(
        r#"SELECT 1 FROM "LiteLLM_OrganizationTable" WHERE "organization_id" = $1 FOR UPDATE"#,
    );

    /// The columns of one table (`$1`) of the current schema, in order, for a whole-row
    /// copy.
    pub const COLUMNS_OF: &str = r#"SELECT column_name::text FROM information_schema.columns
        WHERE table_schema = current_schema() AND table_name = $1 AND is_generated = 'NEVER' ORDER BY ordinal_position"#;

    /// The column type of a budget limit of this kind.
    pub fn sql_type(kind: crate::store::Kind) -> &'static str {
        match kind {
            crate::store::Kind::Float => "DOUBLE PRECISION",
            crate::store::Kind::Int4 => "INTEGER",
            crate::store::Kind::Int8 => "BIGINT",
            crate::store::Kind::Text => "TEXT",
        }
    }

    /// Whether an error says the ledger table does not exist yet.
    pub fn is_missing_table(err: &sqlx::Error) -> bool {
        matches!(err, sqlx::Error::Database(db) if db.code().as_deref() == Some("42P01") || db.code().as_deref() == Some("3F000"))
    }

    /// `models` is `text[]` (nullable in LiteLLM's schema).
    pub fn models(row: &PgRow) -> Result<Vec<String>, sqlx::Error> {
        Ok(row
            .try_get::<Option<Vec<String>>, _>("models")?
            .unwrap_or_default())
    }

    pub fn models_argument(models: &[String]) -> Vec<String> {
        models.to_vec()
    }

    /// `(table, column)` of the required tables that exist in the current schema.
    pub async fn existing_columns(pool: &PgPool) -> Result<Vec<(String, String)>, sqlx::Error> {
        let tables: Vec<String> = REQUIRED_COLUMNS
            .iter()
            .map(|(t, _)| t.to_string())
            .collect();
        sqlx::query(
            r#"SELECT table_name::text AS t, column_name::text AS c FROM information_schema.columns
               WHERE table_schema = current_schema() AND table_name = ANY($1)"#,
        )
        .bind(&tables)
        .fetch_all(pool)
        .await?
        .iter()
        .map(|r| Ok((r.try_get("t")?, r.try_get("c")?)))
        .collect()
    }
}

sql_store!(
    PostgresStore,
    sqlx::Postgres,
    sqlx::postgres::PgRow,
    POSTGRES_DDL,
    dialect
);
