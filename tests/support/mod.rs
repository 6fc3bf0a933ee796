//! Test databases: a fresh PostgreSQL database per test (optionally cloned from the LiteLLM
//! template that `scripts/test.sh` builds) or a fresh SQLite file, so tests run in parallel.
#![allow(dead_code)]

pub mod cluster;
pub mod helm;
pub mod kube;
pub mod operator;

use std::path::PathBuf;
use std::str::FromStr;

use litellm_org_operator::engine::{DEFAULT_ACTOR, Engine};
use litellm_org_operator::store::{AnyStore, PostgresStore, SqliteStore, Store};
use secrecy::SecretString;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, Row};

/// The committed CRDs (`crds/`).
pub fn crds_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("crds")
}

/// Admin connection for creating test databases.
pub fn admin_url() -> String {
    std::env::var("DATABASE_TEST_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

/// A database for one test, Postgres or SQLite, with raw SQL access for setup and checks.
pub enum TestDb {
    Postgres {
        name: String,
        store: PostgresStore,
    },
    Sqlite {
        _dir: tempfile::TempDir,
        url: String,
        store: SqliteStore,
    },
}

fn safe_ident(s: &str) -> &str {
    assert!(
        s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
        "unexpected database name {s:?}"
    );
    s
}

/// `sql` as a prepared query with `binds` bound in order.
macro_rules! bound {
    ($sql:expr, $binds:expr) => {{
        let mut query = sqlx::query(sqlx::AssertSqlSafe($sql.to_string()));
        for b in $binds {
            query = query.bind(*b);
        }
        query
    }};
}

impl TestDb {
    /// An empty PostgreSQL database, or one cloned from `template`.
    pub async fn postgres(template: Option<&str>) -> Self {
        let name = format!("lorgtest_{}", uuid::Uuid::new_v4().simple());
        let admin = PgConnectOptions::from_str(&admin_url()).expect("DATABASE_TEST_URL");
        let mut conn = admin
            .connect()
            .await
            .expect("connect to the test Postgres server");
        let sql = match template {
            Some(t) => format!(
                "CREATE DATABASE \"{}\" TEMPLATE \"{}\"",
                safe_ident(&name),
                safe_ident(t)
            ),
            None => format!("CREATE DATABASE \"{}\"", safe_ident(&name)),
        };
        // A template can be busy for a moment while another test clones it.
        let mut attempt = 0;
        loop {
            match sqlx::raw_sql(sqlx::AssertSqlSafe(sql.clone()))
                .execute(&mut conn)
                .await
            {
                Ok(_) => break,
                Err(e) if attempt < 20 => {
                    attempt += 1;
                    eprintln!("create database retry {attempt}: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100 * attempt)).await;
                }
                Err(e) => panic!("create test database: {e}"),
            }
        }
        conn.close().await.ok();
        let options = admin.database(&name);
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .expect("connect to the test database");
        let store = PostgresStore::from_pool(pool);
        store.ensure_ledger().await.expect("create the ledger");
        Self::Postgres { name, store }
    }

    /// A clone of LiteLLM's own schema (all of its migrations applied).
    pub async fn litellm() -> Self {
        let template = std::env::var("LITELLM_TEMPLATE_DB").expect(
            "LITELLM_TEMPLATE_DB is not set: run the suite with scripts/test.sh, which builds the LiteLLM template database",
        );
        Self::postgres(Some(&template)).await
    }

    /// A migrated, empty Postgres database with the operator's own tables.
    pub async fn postgres_migrated() -> Self {
        let db = Self::postgres(None).await;
        db.store().migrate().await.expect("migrate");
        db
    }

    /// A fresh SQLite file with the operator's tables.
    pub async fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}", dir.path().join("test.db").display());
        let store = SqliteStore::connect(&SecretString::from(url.clone()))
            .await
            .expect("open sqlite");
        store.migrate().await.expect("migrate");
        store.ensure_ledger().await.expect("create the ledger");
        Self::Sqlite {
            _dir: dir,
            url,
            store,
        }
    }

    /// The connection URL (no password is involved in tests).
    pub fn url(&self) -> String {
        match self {
            Self::Postgres { name, .. } => {
                let mut u = url::Url::parse(&admin_url()).expect("admin url");
                u.set_path(&format!("/{name}"));
                u.to_string()
            }
            Self::Sqlite { url, .. } => url.clone(),
        }
    }

    /// The Postgres database's name (panics on SQLite).
    pub fn name(&self) -> &str {
        match self {
            Self::Postgres { name, .. } => name,
            Self::Sqlite { .. } => panic!("a SQLite test database has no server-side name"),
        }
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self, Self::Postgres { .. })
    }

    /// The store as the CLI would open it.
    pub fn store(&self) -> AnyStore {
        match self {
            Self::Postgres { store, .. } => AnyStore::Postgres(store.clone()),
            Self::Sqlite { store, .. } => AnyStore::Sqlite(store.clone()),
        }
    }

    pub fn engine(&self) -> Engine<AnyStore> {
        Engine::new(self.store(), DEFAULT_ACTOR)
    }

    /// Run raw SQL (test setup only; `$1`-style placeholders are not used here).
    pub async fn exec(&self, sql: &str) {
        let result = match self {
            Self::Postgres { store, .. } => sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
                .execute(store.pool())
                .await
                .map(|_| ()),
            Self::Sqlite { store, .. } => sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
                .execute(store.pool())
                .await
                .map(|_| ()),
        };
        result.unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// One text column of every row a query returns (NULL as "NULL").
    pub async fn strings(&self, sql: &str) -> Vec<String> {
        self.strings_with(sql, &[]).await
    }

    /// [`TestDb::strings`] with the query's `$n` (`?n` on SQLite) parameters bound to `binds`.
    pub async fn strings_with(&self, sql: &str, binds: &[&str]) -> Vec<String> {
        let rows =
            match self {
                Self::Postgres { store, .. } => bound!(sql, binds)
                    .fetch_all(store.pool())
                    .await
                    .map(|rows| {
                        rows.iter()
                            .map(|r| r.try_get::<Option<String>, _>(0))
                            .collect::<Vec<_>>()
                    }),
                Self::Sqlite { store, .. } => {
                    bound!(sql, binds)
                        .fetch_all(store.pool())
                        .await
                        .map(|rows| {
                            rows.iter()
                                .map(|r| r.try_get::<Option<String>, _>(0))
                                .collect::<Vec<_>>()
                        })
                }
            };
        rows.unwrap_or_else(|e| panic!("{sql}: {e}"))
            .into_iter()
            .map(|v| v.expect("text column").unwrap_or_else(|| "NULL".into()))
            .collect()
    }

    /// Run one statement with its parameters bound to `binds`.
    pub async fn exec_with(&self, sql: &str, binds: &[&str]) {
        let result = match self {
            Self::Postgres { store, .. } => {
                bound!(sql, binds).execute(store.pool()).await.map(|_| ())
            }
            Self::Sqlite { store, .. } => {
                bound!(sql, binds).execute(store.pool()).await.map(|_| ())
            }
        };
        result.unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// Number of rows in a table.
    pub async fn count(&self, table: &str) -> usize {
        self.strings(&format!("SELECT CAST(count(*) AS TEXT) FROM \"{table}\""))
            .await
            .first()
            .and_then(|s| s.parse().ok())
            .expect("count")
    }

    /// Every row of the managed tables with its `updated_at`: equal snapshots prove that
    /// nothing was inserted, updated or deleted in between.
    pub async fn snapshot(&self) -> Vec<String> {
        let mut out = Vec::new();
        for sql in [
            r#"SELECT budget_id || '|' || CAST(updated_at AS TEXT) || '|' || COALESCE(CAST(max_budget AS TEXT), '') FROM "LiteLLM_BudgetTable" ORDER BY 1"#,
            r#"SELECT organization_id || '|' || CAST(updated_at AS TEXT) FROM "LiteLLM_OrganizationTable" ORDER BY 1"#,
            r#"SELECT user_id || '|' || COALESCE(CAST(updated_at AS TEXT), '') FROM "LiteLLM_UserTable" ORDER BY 1"#,
            r#"SELECT user_id || '|' || organization_id || '|' || COALESCE(CAST(updated_at AS TEXT), '') FROM "LiteLLM_OrganizationMembership" ORDER BY 1"#,
        ] {
            out.extend(self.strings(sql).await);
        }
        out
    }

    /// Drop the Postgres database (SQLite files go with their temp folder).
    pub async fn cleanup(self) {
        if let Self::Postgres { name, store } = self {
            store.pool().close().await;
            if let Ok(mut conn) = PgConnectOptions::from_str(&admin_url())
                .expect("admin url")
                .connect()
                .await
            {
                let sql = format!(
                    "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                    safe_ident(&name)
                );
                sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                    .execute(&mut conn)
                    .await
                    .ok();
            }
        }
    }
}

/// Parse a YAML spec in tests.
pub fn spec<T: serde::de::DeserializeOwned>(yaml: &str) -> T {
    serde_yaml::from_str(yaml).unwrap_or_else(|e| panic!("test spec: {e}\n{yaml}"))
}
