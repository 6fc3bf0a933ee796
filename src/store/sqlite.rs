//! SQLite store: the same tables and columns as LiteLLM's, for the embedded default. Arrays
//! and JSON are JSON text; foreign keys are enforced. Its SQL is the generic store's
//! (`store::sql` and the table modules); this file holds the connection and what only SQLite
//! spells its way.

use std::time::Duration;

use secrecy::SecretString;
use sqlx::query::Query;
use sqlx::sqlite::{
    SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteQueryResult, SqliteRow,
};
use sqlx::types::Json;
use sqlx::{Row, Sqlite};

use super::dialect::{Dialect, Stmt};
use super::ledger::LedgerSql;
use super::schema::SQLITE_DDL;
use super::sql::SqlStore;
use super::{Kind, OWNER_KEY};
use crate::error::StoreError;

/// A pool of connections to one SQLite database file.
pub type SqliteStore = SqlStore<Sqlite>;

impl SqlStore<Sqlite> {
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
        Self::with_pool(pool, LedgerSql::sqlite(), "".into())
    }
}

impl Dialect for Sqlite {
    const DDL: &'static [&'static str] = SQLITE_DDL;

    const OWNED_ORGANIZATIONS: &'static str = r#"SELECT "organization_id", json_extract("metadata", $1) AS "owner"
        FROM "LiteLLM_OrganizationTable" WHERE json_extract("metadata", $1) IS NOT NULL"#;

    const ROW_LOCKS: bool = false;

    const COLUMNS_OF: &'static str = r#"SELECT "name" FROM pragma_table_info($1) ORDER BY "cid""#;

    /// The JSON path of the marker's owner.
    fn owner_argument() -> String {
        format!("$.\"{OWNER_KEY}\".owner")
    }

    fn sql_type(kind: Kind) -> &'static str {
        match kind {
            Kind::Float => "REAL",
            Kind::Int4 | Kind::Int8 => "INTEGER",
            Kind::Text => "TEXT",
        }
    }

    /// Every table in the database file.
    fn existing_columns() -> Stmt {
        Stmt::new(
            r#"SELECT m."name" AS t, p."name" AS c FROM sqlite_master m JOIN pragma_table_info(m."name") p
               WHERE m."type" = 'table'"#,
        )
    }

    fn is_missing_table(err: &sqlx::Error) -> bool {
        matches!(err, sqlx::Error::Database(db) if db.message().contains("no such table"))
    }

    /// A JSON array in text.
    fn bind_array(
        q: Query<'_, Self, Self::Arguments>,
        values: Vec<String>,
    ) -> Query<'_, Self, Self::Arguments> {
        q.bind(Json(values))
    }

    fn rows_affected(done: &SqliteQueryResult) -> u64 {
        done.rows_affected()
    }

    /// A JSON array in text (NULL reads as empty).
    fn read_array(row: &SqliteRow, column: &str) -> Result<Vec<String>, sqlx::Error> {
        Ok(row
            .try_get::<Option<Json<Vec<String>>>, _>(column)?
            .map(|j| j.0)
            .unwrap_or_default())
    }
}
