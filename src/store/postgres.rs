//! PostgreSQL store: works on LiteLLM's real schema (quoted table names, `text[]`, `jsonb`,
//! `timestamp(3)`), never altering it. Its SQL is the generic store's (`store::sql` and the
//! table modules); this file holds the connection and what only PostgreSQL spells its way.

use std::time::Duration;

use secrecy::SecretString;
use sqlx::postgres::{PgPool, PgPoolOptions, PgQueryResult, PgRow};
use sqlx::query::Query;
use sqlx::{Postgres, Row};

use super::dialect::{Dialect, Stmt};
use super::ledger::{DEFAULT_LEDGER_SCHEMA, LedgerSql, ledger_schema};
use super::schema::{POSTGRES_DDL, REQUIRED_COLUMNS};
use super::sql::SqlStore;
use super::{Kind, OWNER_KEY};
use crate::error::{StoreError, host_port};

/// A pool of connections to one PostgreSQL database.
pub type PostgresStore = SqlStore<Postgres>;

impl SqlStore<Postgres> {
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
        Self::with_pool(pool, LedgerSql::postgres(DEFAULT_LEDGER_SCHEMA), address)
    }

    /// Keep the ledger in schema `schema` instead of the default `litellm_org_operator`.
    pub fn with_ledger_schema(mut self, schema: &str) -> Result<Self, StoreError> {
        self.ledger = std::sync::Arc::new(LedgerSql::postgres(&ledger_schema(schema)?));
        Ok(self)
    }

    /// `HOST:PORT` of the server (from the parsed URL: never its user, password or options).
    pub fn address(&self) -> &str {
        &self.address
    }
}

impl Dialect for Postgres {
    const DDL: &'static [&'static str] = POSTGRES_DDL;

    const OWNED_ORGANIZATIONS: &'static str = r#"SELECT "organization_id", "metadata" -> $1 ->> 'owner' AS "owner"
        FROM "LiteLLM_OrganizationTable" WHERE jsonb_exists("metadata", $1)"#;

    const ROW_LOCKS: bool = true;

    const COLUMNS_OF: &'static str = r#"SELECT column_name::text AS "name" FROM information_schema.columns
        WHERE table_schema = current_schema() AND table_name = $1 AND is_generated = 'NEVER' ORDER BY ordinal_position"#;

    /// The marker's key.
    fn owner_argument() -> String {
        OWNER_KEY.to_string()
    }

    fn sql_type(kind: Kind) -> &'static str {
        match kind {
            Kind::Float => "DOUBLE PRECISION",
            Kind::Int4 => "INTEGER",
            Kind::Int8 => "BIGINT",
            Kind::Text => "TEXT",
        }
    }

    /// The required tables of the current schema.
    fn existing_columns() -> Stmt {
        let tables: Vec<String> = REQUIRED_COLUMNS
            .iter()
            .map(|(t, _)| t.to_string())
            .collect();
        Stmt::new(
            r#"SELECT table_name::text AS t, column_name::text AS c FROM information_schema.columns
               WHERE table_schema = current_schema() AND table_name = ANY($1)"#,
        )
        .bind(super::dialect::Arg::Array(tables))
    }

    /// Undefined table, or undefined schema (the ledger's).
    fn is_missing_table(err: &sqlx::Error) -> bool {
        matches!(err, sqlx::Error::Database(db) if matches!(db.code().as_deref(), Some("42P01" | "3F000")))
    }

    /// `text[]`.
    fn bind_array(
        q: Query<'_, Self, Self::Arguments>,
        values: Vec<String>,
    ) -> Query<'_, Self, Self::Arguments> {
        q.bind(values)
    }

    fn rows_affected(done: &PgQueryResult) -> u64 {
        done.rows_affected()
    }

    /// `text[]`, nullable in LiteLLM's schema.
    fn read_array(row: &PgRow, column: &str) -> Result<Vec<String>, sqlx::Error> {
        Ok(row
            .try_get::<Option<Vec<String>>, _>(column)?
            .unwrap_or_default())
    }
}
