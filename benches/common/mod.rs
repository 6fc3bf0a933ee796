//! Database helpers both benches share: a fresh clone of the LiteLLM template per run.
#![allow(dead_code)]

use std::str::FromStr;

use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection};

/// The admin connection URL (`DATABASE_TEST_URL`).
pub fn admin_url() -> String {
    std::env::var("DATABASE_TEST_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

/// A fresh database `name` cloned from the LiteLLM template (`LITELLM_TEMPLATE_DB`).
pub async fn fresh_database(name: &str) -> PgConnectOptions {
    let template =
        std::env::var("LITELLM_TEMPLATE_DB").unwrap_or_else(|_| "litellm_template_0_4_110".into());
    assert!(
        template
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_'),
        "LITELLM_TEMPLATE_DB must be a plain database name"
    );
    let admin = PgConnectOptions::from_str(&admin_url()).expect("DATABASE_TEST_URL");
    let mut conn = admin.connect().await.expect("connect to DATABASE_TEST_URL");
    for sql in [
        format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"),
        format!("CREATE DATABASE \"{name}\" TEMPLATE \"{template}\""),
    ] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut conn)
            .await
            .expect("create the bench database from the LiteLLM template (scripts/litellm-template-db.sh)");
    }
    conn.close().await.ok();
    admin.database(name)
}

/// Drop the database `name`, if it is there.
pub async fn drop_database(name: &str) {
    let admin = PgConnectOptions::from_str(&admin_url()).expect("url");
    if let Ok(mut conn) = admin.connect().await {
        let sql = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut conn)
            .await
            .ok();
    }
}
