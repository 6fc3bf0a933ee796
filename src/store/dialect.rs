//! What differs between the two databases, behind one trait, so that the store's SQL is
//! ordinary code generic over `D: Dialect` (see `store::sql` and the table modules).
//!
//! [`Dialect`] is implemented for `sqlx::Postgres` and `sqlx::Sqlite` (in `store::postgres`
//! and `store::sqlite`): the DDL, a few statements each spells its own way, and how an array
//! of text is bound and read (`text[]` versus JSON text). [`Execute`] runs a [`Stmt`] and
//! reads typed columns; it is implemented once, for every sqlx driver that can, and is a
//! supertrait of [`Dialect`]. sqlx's higher-ranked bounds (`for<'c> &'c mut Connection:
//! Executor<'c>`, `for<'q> T: Encode<'q, DB>` per bound type, ...) are written in that one
//! impl; generic code names only `D: Dialect`.
//!
//! A statement is its SQL and its values ([`Arg`]), always bound, never spliced.

use chrono::NaiveDateTime;
use futures::future::BoxFuture;
use serde_json::Value;
use serde_json::value::RawValue;
use sqlx::query::Query;
use sqlx::types::Json;
use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Row, SqlSafeStr, Type};

use super::Kind;

/// One bound value (NULL as `None`).
#[derive(Debug)]
pub enum Arg {
    Bool(bool),
    Float(Option<f64>),
    Int4(Option<i32>),
    Int8(Option<i64>),
    Text(Option<String>),
    Time(Option<NaiveDateTime>),
    /// JSON as its text (`jsonb` in PostgreSQL, text in SQLite).
    Json(Option<Box<RawValue>>),
    /// A list of text (`text[]` in PostgreSQL, a JSON array in SQLite: [`Dialect::bind_array`]).
    Array(Vec<String>),
}

impl From<&str> for Arg {
    fn from(v: &str) -> Self {
        Arg::Text(Some(v.to_string()))
    }
}

impl From<&String> for Arg {
    fn from(v: &String) -> Self {
        Arg::Text(Some(v.clone()))
    }
}

impl From<Option<&str>> for Arg {
    fn from(v: Option<&str>) -> Self {
        Arg::Text(v.map(str::to_string))
    }
}

impl From<&Option<String>> for Arg {
    fn from(v: &Option<String>) -> Self {
        Arg::Text(v.clone())
    }
}

impl From<bool> for Arg {
    fn from(v: bool) -> Self {
        Arg::Bool(v)
    }
}

impl From<Option<f64>> for Arg {
    fn from(v: Option<f64>) -> Self {
        Arg::Float(v)
    }
}

impl From<NaiveDateTime> for Arg {
    fn from(v: NaiveDateTime) -> Self {
        Arg::Time(Some(v))
    }
}

impl From<&Value> for Arg {
    fn from(v: &Value) -> Self {
        Arg::Json(RawValue::from_string(v.to_string()).ok())
    }
}

/// A statement and its values, in placeholder order (`$1`, `$2`, ...; SQLite binds `$N` by
/// number too).
pub struct Stmt {
    sql: sqlx::SqlStr,
    args: Vec<Arg>,
}

impl Stmt {
    /// A statement of fixed text.
    pub fn new(sql: &'static str) -> Self {
        Self::safe(sql)
    }

    /// A statement whose text was built from identifiers of a fixed list or of the database's
    /// own catalog, quoted (the budget inventory, the ledger's checked schema name).
    pub fn built(sql: impl Into<String>) -> Self {
        Self::safe(sqlx::AssertSqlSafe(sql.into()))
    }

    /// A statement of text built once and shared (the ledger's, see `store::ledger`).
    pub fn shared(sql: std::sync::Arc<str>) -> Self {
        Self::safe(sqlx::AssertSqlSafe(sql))
    }

    fn safe(sql: impl SqlSafeStr) -> Self {
        Self {
            sql: sql.into_sql_str(),
            args: Vec::new(),
        }
    }

    /// The statement with one more value bound.
    pub fn bind(mut self, value: impl Into<Arg>) -> Self {
        self.args.push(value.into());
        self
    }

    /// The statement with these values bound, in order.
    pub fn bind_all(mut self, values: impl IntoIterator<Item = Arg>) -> Self {
        self.args.extend(values);
        self
    }
}

/// What only one database spells its way. Implemented for `sqlx::Postgres` and
/// `sqlx::Sqlite`.
pub trait Dialect: Database + Execute {
    /// The DDL of the tables the operator uses, for an empty database (`store::schema`).
    const DDL: &'static [&'static str];
    /// Organizations carrying the ownership marker of an earlier version, with its owner
    /// (`organization_id`, `owner`); its one argument is [`Dialect::owner_argument`].
    const OWNED_ORGANIZATIONS: &'static str;
    /// Whether a row is locked with `SELECT … FOR UPDATE` (PostgreSQL); SQLite serialises
    /// writers, so its write transaction holds every row already.
    const ROW_LOCKS: bool;
    /// The columns (`name`) of one table (`$1`), in order, for a whole-row copy.
    const COLUMNS_OF: &'static str;

    /// The argument of [`Dialect::OWNED_ORGANIZATIONS`].
    fn owner_argument() -> String;
    /// The column type of a budget limit of this kind.
    fn sql_type(kind: Kind) -> &'static str;
    /// `(t, c)`: table and column of the tables that exist (every required one at least).
    fn existing_columns() -> Stmt;
    /// Whether an error says a table (the ledger's) does not exist yet.
    fn is_missing_table(err: &sqlx::Error) -> bool;
    /// Bind a list of text.
    fn bind_array(
        q: Query<'_, Self, Self::Arguments>,
        values: Vec<String>,
    ) -> Query<'_, Self, Self::Arguments>;
    /// How many rows a statement changed.
    fn rows_affected(done: &Self::QueryResult) -> u64;
    /// Read a list of text (NULL reads as empty).
    fn read_array(row: &Self::Row, column: &str) -> Result<Vec<String>, sqlx::Error>;
}

/// Running statements and reading columns, generic over the driver. Implemented once, below,
/// for every driver sqlx's bounds allow; reached through [`Dialect`].
pub trait Execute: Database {
    /// Run a statement; the number of rows it changed.
    fn execute(conn: &mut Self::Connection, stmt: Stmt) -> BoxFuture<'_, Result<u64, sqlx::Error>>;
    /// Every row a statement returns.
    fn fetch_all(
        conn: &mut Self::Connection,
        stmt: Stmt,
    ) -> BoxFuture<'_, Result<Vec<Self::Row>, sqlx::Error>>;
    /// The first row a statement returns, if any.
    fn fetch_optional(
        conn: &mut Self::Connection,
        stmt: Stmt,
    ) -> BoxFuture<'_, Result<Option<Self::Row>, sqlx::Error>>;

    fn text(row: &Self::Row, column: &str) -> Result<String, sqlx::Error>;
    fn opt_text(row: &Self::Row, column: &str) -> Result<Option<String>, sqlx::Error>;
    fn float(row: &Self::Row, column: &str) -> Result<f64, sqlx::Error>;
    fn opt_float(row: &Self::Row, column: &str) -> Result<Option<f64>, sqlx::Error>;
    fn int8(row: &Self::Row, column: &str) -> Result<i64, sqlx::Error>;
    fn opt_int8(row: &Self::Row, column: &str) -> Result<Option<i64>, sqlx::Error>;
    fn opt_int4(row: &Self::Row, column: &str) -> Result<Option<i32>, sqlx::Error>;
    fn boolean(row: &Self::Row, column: &str) -> Result<bool, sqlx::Error>;
    /// A timestamp column (`TIMESTAMP(3)` in PostgreSQL, text in SQLite), read as UTC.
    fn opt_time(row: &Self::Row, column: &str) -> Result<Option<NaiveDateTime>, sqlx::Error>;
    /// A JSON column, decoded.
    fn json(row: &Self::Row, column: &str) -> Result<Value, sqlx::Error>;
}

/// sqlx's `Query` of a statement, its values bound.
fn query<DB>(stmt: Stmt) -> Query<'static, DB, DB::Arguments>
where
    DB: Dialect,
    for<'q> bool: Encode<'q, DB> + Type<DB>,
    for<'q> Option<f64>: Encode<'q, DB> + Type<DB>,
    for<'q> Option<i32>: Encode<'q, DB> + Type<DB>,
    for<'q> Option<i64>: Encode<'q, DB> + Type<DB>,
    for<'q> Option<String>: Encode<'q, DB> + Type<DB>,
    for<'q> Option<NaiveDateTime>: Encode<'q, DB> + Type<DB>,
    for<'q> Option<Json<Box<RawValue>>>: Encode<'q, DB> + Type<DB>,
{
    let mut q = sqlx::query(stmt.sql);
    for arg in stmt.args {
        q = match arg {
            Arg::Bool(v) => q.bind(v),
            Arg::Float(v) => q.bind(v),
            Arg::Int4(v) => q.bind(v),
            Arg::Int8(v) => q.bind(v),
            Arg::Text(v) => q.bind(v),
            Arg::Time(v) => q.bind(v),
            Arg::Json(v) => q.bind(v.map(Json)),
            Arg::Array(v) => DB::bind_array(q, v),
        };
    }
    q
}

impl<DB> Execute for DB
where
    DB: Dialect,
    DB::Arguments: IntoArguments<DB>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'a> &'a str: ColumnIndex<DB::Row>,
    for<'q> bool: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> Option<f64>: Encode<'q, DB> + Type<DB>,
    for<'q> f64: Decode<'q, DB> + Type<DB>,
    for<'q> Option<i32>: Encode<'q, DB> + Type<DB>,
    for<'q> i32: Decode<'q, DB> + Type<DB>,
    for<'q> Option<i64>: Encode<'q, DB> + Type<DB>,
    for<'q> i64: Decode<'q, DB> + Type<DB>,
    for<'q> Option<String>: Encode<'q, DB> + Type<DB>,
    for<'q> String: Decode<'q, DB> + Type<DB>,
    for<'q> Option<NaiveDateTime>: Encode<'q, DB> + Type<DB>,
    for<'q> NaiveDateTime: Decode<'q, DB> + Type<DB>,
    for<'q> Option<Json<Box<RawValue>>>: Encode<'q, DB> + Type<DB>,
    for<'q> Json<Value>: Decode<'q, DB> + Type<DB>,
{
    fn execute(conn: &mut Self::Connection, stmt: Stmt) -> BoxFuture<'_, Result<u64, sqlx::Error>> {
        let q = query::<DB>(stmt);
        Box::pin(async move { Ok(DB::rows_affected(&q.execute(conn).await?)) })
    }

    fn fetch_all(
        conn: &mut Self::Connection,
        stmt: Stmt,
    ) -> BoxFuture<'_, Result<Vec<Self::Row>, sqlx::Error>> {
        let q = query::<DB>(stmt);
        Box::pin(async move { q.fetch_all(conn).await })
    }

    fn fetch_optional(
        conn: &mut Self::Connection,
        stmt: Stmt,
    ) -> BoxFuture<'_, Result<Option<Self::Row>, sqlx::Error>> {
        let q = query::<DB>(stmt);
        Box::pin(async move { q.fetch_optional(conn).await })
    }

    fn text(row: &Self::Row, column: &str) -> Result<String, sqlx::Error> {
        row.try_get(column)
    }
    fn opt_text(row: &Self::Row, column: &str) -> Result<Option<String>, sqlx::Error> {
        row.try_get(column)
    }
    fn float(row: &Self::Row, column: &str) -> Result<f64, sqlx::Error> {
        row.try_get(column)
    }
    fn opt_float(row: &Self::Row, column: &str) -> Result<Option<f64>, sqlx::Error> {
        row.try_get(column)
    }
    fn int8(row: &Self::Row, column: &str) -> Result<i64, sqlx::Error> {
        row.try_get(column)
    }
    fn opt_int8(row: &Self::Row, column: &str) -> Result<Option<i64>, sqlx::Error> {
        row.try_get(column)
    }
    fn opt_int4(row: &Self::Row, column: &str) -> Result<Option<i32>, sqlx::Error> {
        row.try_get(column)
    }
    fn boolean(row: &Self::Row, column: &str) -> Result<bool, sqlx::Error> {
        row.try_get(column)
    }
    fn opt_time(row: &Self::Row, column: &str) -> Result<Option<NaiveDateTime>, sqlx::Error> {
        row.try_get(column)
    }
    fn json(row: &Self::Row, column: &str) -> Result<Value, sqlx::Error> {
        row.try_get::<Json<Value>, _>(column).map(|j| j.0)
    }
}

/// The first row a statement returns, read with `read`.
pub async fn fetch_one_as<D: Dialect, T>(
    conn: &mut D::Connection,
    stmt: Stmt,
    read: impl Fn(&D::Row) -> Result<T, sqlx::Error>,
) -> Result<Option<T>, sqlx::Error> {
    D::fetch_optional(conn, stmt)
        .await?
        .map(|r| read(&r))
        .transpose()
}

/// Every row a statement returns, each read with `read`.
pub async fn fetch_all_as<D: Dialect, T>(
    conn: &mut D::Connection,
    stmt: Stmt,
    read: impl Fn(&D::Row) -> Result<T, sqlx::Error>,
) -> Result<Vec<T>, sqlx::Error> {
    D::fetch_all(conn, stmt).await?.iter().map(read).collect()
}
