//! SQLite store: the same tables and columns as LiteLLM's, for the embedded default. Arrays
//! and JSON are JSON text; foreign keys are enforced. The SQL is shared with Postgres (see
//! `sql.rs`); this file holds the connection and the SQLite-only hooks.

use std::time::Duration;

use secrecy::SecretString;
use sqlx::sqlite::{SqliteJournalMode, SqlitePool, SqlitePoolOptions};

use super::ledger::LedgerSql;
use super::sql::sql_store;
use crate::error::StoreError;

/// A pool of connections to one SQLite database file.
#[derive(Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    /// The ledger's statements (see `store::ledger`).
    ledger: std::sync::Arc<LedgerSql>,
    /// Whether the ledger table is known to exist (reads of a missing ledger are empty).
    ledger_ready: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl SqliteStore {
    /// Open (creating if needed) a SQLite database file, or any `sqlite:` URL.
    pub async fn connect(url: &SecretString) -> Result<Self, StoreError> {
        let options = super::open::sqlite_options(url)?
            .create_if_missing(true)
            .foreign_keys(true)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(StoreError::from_sqlx)?;
        Ok(Self::from_pool(pool))
    }

    /// Wrap an existing pool (tests, benchmarks).
    pub fn from_pool(pool: SqlitePool) -> Self {
        Self {
            pool,
            ledger: std::sync::Arc::new(LedgerSql::sqlite()),
            ledger_ready: Default::default(),
        }
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

/// What only SQLite spells this way.
mod dialect {
    use sqlx::Row;
    use sqlx::sqlite::{SqlitePool, SqliteRow};
    use sqlx::types::Json;

    use crate::store::OWNER_KEY;

    /// Organizations carrying the ownership marker, with its owner.
    pub const OWNED_ORGANIZATIONS: &str = r#"SELECT "organization_id", json_extract("metadata", $1) AS "owner"
        FROM "LiteLLM_OrganizationTable" WHERE json_extract("metadata", $1) IS NOT NULL"#;

    /// The argument of [`OWNED_ORGANIZATIONS`]: the JSON path of the marker's owner.
    pub fn owner_argument() -> String {
        format!("$.\"{OWNER_KEY}\".owner")
    }

    /// SQLite serialises writers: a write transaction already excludes every other.
    pub const LOCK_ORGANIZATION: Option<&str> = None;

    /// The columns of one table (`$1`), in order, for a whole-row copy.
    pub const COLUMNS_OF: &str = r#"SELECT "name" FROM pragma_table_info($1) ORDER BY "cid""#;

    /// The column type of a budget limit of this kind.
    pub fn sql_type(kind: crate::store::Kind) -> &'static str {
        match kind {
            crate::store::Kind::Float => "REAL",
            crate::store::Kind::Int4 => "INTEGER",
            crate::store::Kind::Int8 => "INTEGER",
            crate::store::Kind::Text => "TEXT",
        }
    }

    /// Whether an error says the ledger table does not exist yet.
    pub fn is_missing_table(err: &sqlx::Error) -> bool {
        matches!(err, sqlx::Error::Database(db) if db.message().contains("no such table"))
    }

    /// `models` is a JSON array in text.
    pub fn models(row: &SqliteRow) -> Result<Vec<String>, sqlx::Error> {
        Ok(row
            .try_get::<Option<Json<Vec<String>>>, _>("models")?
            .map(|j| j.0)
            .unwrap_or_default())
    }

    pub fn models_argument(models: &[String]) -> Json<Vec<String>> {
        Json(models.to_vec())
    }

    /// `(table, column)` of every table in the database file.
    pub async fn existing_columns(pool: &SqlitePool) -> Result<Vec<(String, String)>, sqlx::Error> {
        sqlx::query(
            r#"SELECT m."name" AS t, p."name" AS c FROM sqlite_master m JOIN pragma_table_info(m."name") p
               WHERE m."type" = 'table'"#,
        )
        .fetch_all(pool)
        .await?
        .iter()
        .map(|r| Ok((r.try_get("t")?, r.try_get("c")?)))
        .collect()
    }
}

sql_store!(
    SqliteStore,
    sqlx::Sqlite,
    sqlx::sqlite::SqliteRow,
    SQLITE_DDL,
    dialect
);
