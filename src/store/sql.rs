//! The SQL both stores share, written once: LiteLLM's tables and columns, `$N` placeholders
//! (SQLite binds `$N` by number too), and a few dialect hooks (`text[]` versus JSON text for
//! arrays, the schema query, the JSON path query). Each store expands [`sql_store`] with its
//! driver types and its hooks module.

/// Generates the row mapping, the reads, the one-transaction apply and `impl Store` for a
/// store type `$store` over driver `$db` with row type `$row`, DDL `$ddl` (a constant of
/// `store::schema`) and hooks module `$dialect` (a sibling of `$store`).
///
/// Why a macro and not functions generic over `sqlx::Database`: every generic statement needs
/// the same wall of higher-ranked bounds (`for<'q> T: Encode<'q, DB> + Type<DB>` per bound type,
/// `for<'c> &'c mut DB::Connection: Executor<'c>`, `usize: ColumnIndex<DB::Row>`, ...), which
/// hides the SQL behind trait plumbing and turns a typo into pages of errors. The macro keeps one
/// body of SQL over concrete driver types. It expands into a child module `shared_sql` with its
/// own imports, so it depends on nothing its caller imports; the cost is that rustfmt does not
/// format the body, so keep it formatted by hand.
macro_rules! sql_store {
    ($store:ident, $db:ty, $row:ty, $ddl:ident, $dialect:ident) => {
    mod shared_sql {
        use chrono::{NaiveDateTime, Utc};
        use serde_json::{Map, Value};
        use sqlx::types::Json;
        use sqlx::{Row, Transaction};

        use super::$dialect;
        use super::$store;
        use $crate::duration::budget_reset_at;
        use $crate::error::StoreError;
        use $crate::store::schema::{self, $ddl, SchemaState};
        use $crate::store::ledger::LedgerSql;
        use $crate::store::{
            Applied, BudgetRow, Change, Dependents, LedgerEntry, Listing, MemberLookup, MemberSummary, MembershipRow, ObservedMember,
            ObservedOrganization, OrganizationRow, OrganizationSummary, OrganizationUsage, OwnedMembership,
            Store, UnreadableRow, UserRow, budget_key, held_user_id, membership_key, metadata_owner, organization_key,
        };
        use $crate::store::budget::{self as budget_sql, Bind};

        /// A connection of the store's driver.
        type Conn = <$db as sqlx::Database>::Connection;

        fn now() -> NaiveDateTime {
            Utc::now().naive_utc()
        }

        /// A budget row read with [`budget_sql::select`]: every limit of the inventory.
        fn budget_from_row(row: &$row) -> Result<BudgetRow, sqlx::Error> {
            let mut budget = BudgetRow::new(
                row.try_get::<String, _>("budget_id")?,
                row.try_get::<String, _>("created_by")?,
            );
            for limit in $crate::store::BUDGET_LIMITS {
                let value = match limit.kind {
                    $crate::store::Kind::Float => row.try_get::<Option<f64>, _>(limit.column)?.map($crate::store::Scalar::Float),
                    $crate::store::Kind::Int4 => row.try_get::<Option<i32>, _>(limit.column)?.map($crate::store::Scalar::from),
                    $crate::store::Kind::Int8 => row.try_get::<Option<i64>, _>(limit.column)?.map($crate::store::Scalar::Int),
                    $crate::store::Kind::Text => row.try_get::<Option<String>, _>(limit.column)?.map($crate::store::Scalar::Text),
                };
                budget.set(limit.column, value);
            }
            budget.model_max_budget = row.try_get("model_max_budget")?;
            Ok(budget)
        }

        /// Bind one value of a statement [`budget_sql`] built.
        fn bind<'q>(
            q: sqlx::query::Query<'q, $db, <$db as sqlx::Database>::Arguments>,
            value: Bind,
        ) -> sqlx::query::Query<'q, $db, <$db as sqlx::Database>::Arguments> {
            match value {
                Bind::Float(v) => q.bind(v),
                Bind::Int4(v) => q.bind(v),
                Bind::Int8(v) => q.bind(v),
                Bind::Text(v) => q.bind(v),
                Bind::Time(v) => q.bind(v),
                Bind::Json(v) => q.bind(v.map(Json)),
            }
        }

        fn metadata_map(value: Value) -> Map<String, Value> {
            match value {
                Value::Object(m) => m,
                _ => Map::new(),
            }
        }

        /// A listing read row by row: a row that does not decode is reported by the name
        /// `read` gives it, and the others are still read.
        fn read_rows<T>(
            rows: &[$row],
            read: impl Fn(&$row) -> (String, Result<T, sqlx::Error>),
        ) -> Listing<T> {
            let mut listing = Listing { rows: Vec::with_capacity(rows.len()), unreadable: Vec::new() };
            for r in rows {
                match read(r) {
                    (_, Ok(row)) => listing.rows.push(row),
                    (row, Err(e)) => listing.unreadable.push(UnreadableRow { row, reason: e.to_string() }),
                }
            }
            listing
        }


        const SELECT_MEMBERSHIP: &str = r#"SELECT "user_id", "organization_id", "user_role", "budget_id" FROM "LiteLLM_OrganizationMembership" WHERE "user_id" = $1 AND "organization_id" = $2"#;

        const SELECT_ORGANIZATION: &str = r#"SELECT "organization_id", "organization_alias", "budget_id", "models", CAST("metadata" AS TEXT) AS "metadata", "spend" FROM "LiteLLM_OrganizationTable" WHERE "organization_id" = $1"#;

        /// Memberships on one budget row: a scan in LiteLLM's schema (no index on
        /// `budget_id`), only off the steady-state path.
        const MEMBERSHIPS_ON_BUDGET: &str = r#"SELECT "user_id", "organization_id", "user_role", "budget_id" FROM "LiteLLM_OrganizationMembership" WHERE "budget_id" = $1"#;

        const ORGANIZATION_EXISTS: &str = r#"SELECT 1 FROM "LiteLLM_OrganizationTable" WHERE "organization_id" = $1"#;

        const SELECT_USER_BY_ID: &str = r#"SELECT "user_id", "user_email" FROM "LiteLLM_UserTable" WHERE "user_id" = $1"#;

        // The match is materialised before it is ordered: with `ORDER BY "user_id" LIMIT 10`
        // on the bare table, a planner without statistics may walk the primary key in order and
        // filter every row (a full walk when the email is new), instead of using LiteLLM's index
        // on lower("user_email"). The fence leaves it only the index or a scan of the table.
        const SELECT_USERS_BY_EMAIL: &str = r#"WITH "matches" AS MATERIALIZED (SELECT "user_id", "user_email" FROM "LiteLLM_UserTable" WHERE lower("user_email") = lower($1)) SELECT "user_id", "user_email" FROM "matches" ORDER BY "user_id" LIMIT 10"#;

        fn membership_from_row(row: &$row) -> Result<MembershipRow, sqlx::Error> {
            Ok(MembershipRow {
                user_id: row.try_get("user_id")?,
                organization_id: row.try_get("organization_id")?,
                user_role: row.try_get("user_role")?,
                budget_id: row.try_get("budget_id")?,
            })
        }

        fn user_from_row(row: &$row) -> Result<UserRow, sqlx::Error> {
            Ok(UserRow {
                user_id: row.try_get("user_id")?,
                user_email: row.try_get("user_email")?,
            })
        }

        fn ledger_from_row(row: &$row) -> Result<LedgerEntry, sqlx::Error> {
            Ok(LedgerEntry {
                row_key: row.try_get("row_key")?,
                manager: row.try_get("manager")?,
                resource: row.try_get("resource")?,
                organization_id: row.try_get("organization_id")?,
                created: row.try_get("created")?,
                deletion_policy: row.try_get("deletion_policy")?,
                managed: row.try_get::<Json<Value>, _>("managed")?.0,
            })
        }

        /// A statement of the ledger (its table name is configurable, so its text is built once
        /// per store from a checked identifier; values are always bound).
        fn ledger_sql(sql: &str) -> sqlx::AssertSqlSafe<&str> {
            sqlx::AssertSqlSafe(sql)
        }

        impl $store {
            /// Whether the ledger table exists; a missing ledger reads as empty (a `plan` or
            /// `get` before the first `apply` creates nothing).
            async fn ledger_known(&self, conn: &mut Conn) -> Result<bool, sqlx::Error> {
                use std::sync::atomic::Ordering;
                if self.ledger_ready.load(Ordering::Relaxed) {
                    return Ok(true);
                }
                match sqlx::query(ledger_sql(&self.ledger.exists)).fetch_optional(&mut *conn).await {
                    Ok(_) => {
                        self.ledger_ready.store(true, Ordering::Relaxed);
                        Ok(true)
                    }
                    Err(e) if $dialect::is_missing_table(&e) => Ok(false),
                    Err(e) => Err(e),
                }
            }

            /// `Kind/namespace/name (manager)` of every organization and membership row the
            /// ledger holds, by row key (for listings).
            async fn ledger_owners(&self) -> Result<std::collections::HashMap<String, String>, StoreError> {
                let mut owners = std::collections::HashMap::new();
                let mut conn = self.pool.acquire().await.map_err(StoreError::from_sqlx)?;
                if self.ledger_known(&mut conn).await.map_err(StoreError::from_sqlx)? {
                    for r in sqlx::query(ledger_sql(&self.ledger.owners))
                        .fetch_all(&mut *conn)
                        .await
                        .map_err(StoreError::from_sqlx)?
                    {
                        let key: String = r.try_get("row_key").map_err(StoreError::from_sqlx)?;
                        let resource: String = r.try_get("resource").map_err(StoreError::from_sqlx)?;
                        let manager: String = r.try_get("manager").map_err(StoreError::from_sqlx)?;
                        owners.insert(key, format!("{resource} ({manager})"));
                    }
                }
                Ok(owners)
            }

            /// The entry of one row, if any manager holds it.
            async fn ledger_by_key(&self, conn: &mut Conn, key: &str) -> Result<Option<LedgerEntry>, sqlx::Error> {
                if !self.ledger_known(conn).await? {
                    return Ok(None);
                }
                sqlx::query(ledger_sql(&self.ledger.select_key))
                    .bind(key)
                    .fetch_optional(&mut *conn)
                    .await?
                    .map(|r| ledger_from_row(&r))
                    .transpose()
            }

            async fn ledger_of_resource_inner(&self, conn: &mut Conn, resource: &str, manager: &str) -> Result<Vec<LedgerEntry>, sqlx::Error> {
                if !self.ledger_known(conn).await? {
                    return Ok(Vec::new());
                }
                sqlx::query(ledger_sql(&self.ledger.select_resource))
                    .bind(resource)
                    .bind(manager)
                    .fetch_all(&mut *conn)
                    .await?
                    .iter()
                    .map(ledger_from_row)
                    .collect()
            }

            async fn budget(conn: &mut Conn, budget_id: &str) -> Result<Option<BudgetRow>, sqlx::Error> {
                sqlx::query(sqlx::AssertSqlSafe(budget_sql::select()))
                    .bind(budget_id)
                    .fetch_optional(&mut *conn)
                    .await?
                    .map(|r| budget_from_row(&r))
                    .transpose()
            }

            async fn observe_organization_inner(
                &self,
                organization_id: &str,
                desired_budget_id: &str,
                owned_budget_id: &str,
            ) -> Result<ObservedOrganization, sqlx::Error> {
                // One connection for every read: each checkout from the pool has round trips of
                // its own (the pool checks the connection when it is returned, and PostgreSQL's
                // used to before handing it out), each as costly as a short statement.
                let conn = &mut *self.pool.acquire().await?;
                let row = sqlx::query(SELECT_ORGANIZATION)
                .bind(organization_id)
                .fetch_optional(&mut *conn)
                .await?;
                let mut observed = ObservedOrganization::default();
                if let Some(row) = row {
                    let org = OrganizationRow {
                        organization_id: row.try_get("organization_id")?,
                        organization_alias: row.try_get("organization_alias")?,
                        budget_id: row.try_get("budget_id")?,
                        models: $dialect::models(&row)?,
                        metadata: row.try_get("metadata")?,
                        spend: row.try_get("spend")?,
                    };
                    observed.current_budget = Self::budget(conn, &org.budget_id).await?;
                    observed.organization = Some(org);
                }
                observed.desired_budget = match &observed.current_budget {
                    Some(b) if b.budget_id == desired_budget_id => Some(b.clone()),
                    _ => Self::budget(conn, desired_budget_id).await?,
                };
                let org_key = organization_key(organization_id);
                let own_budget_key = budget_key(owned_budget_id);
                observed.ledger = self.ledger_by_key(conn, &org_key).await?;
                observed.budget_ledger = self.ledger_by_key(conn, &own_budget_key).await?;
                Ok(observed)
            }

            /// The candidates a member's user is resolved from (the planner and the store
            /// resolve with `ObservedMember::resolved_user`): by id, by email, and the user the
            /// resource's ledger entries hold.
            async fn read_users(
                conn: &mut Conn,
                observed: &mut ObservedMember,
                target: &MemberLookup<'_>,
            ) -> Result<(), sqlx::Error> {
                let MemberLookup { organization_id, user_id, email, .. } = *target;
                if let Some(id) = user_id {
                    observed.user_by_id = sqlx::query(SELECT_USER_BY_ID)
                    .bind(id)
                    .fetch_optional(&mut *conn)
                    .await?
                    .map(|r| user_from_row(&r))
                    .transpose()?;
                }
                if observed.user_by_id.is_none()
                    && let Some(email) = email
                {
                    observed.users_by_email = sqlx::query(SELECT_USERS_BY_EMAIL)
                    .bind(email)
                    .fetch_all(&mut *conn)
                    .await?
                    .iter()
                    .map(user_from_row)
                    .collect::<Result<_, _>>()?;
                }
                if observed.user_by_id.is_none()
                    && let Some(held) = held_user_id(&observed.own_entries, organization_id, user_id, email)
                {
                    observed.held_user = match observed.users_by_email.iter().find(|u| u.user_id == held) {
                        Some(u) => Some(u.clone()),
                        None => sqlx::query(SELECT_USER_BY_ID)
                            .bind(held)
                            .fetch_optional(&mut *conn)
                            .await?
                            .map(|r| user_from_row(&r))
                            .transpose()?,
                    };
                }
                Ok(())
            }

            async fn observe_member_inner(
                &self,
                target: &MemberLookup<'_>,
            ) -> Result<ObservedMember, sqlx::Error> {
                let MemberLookup { organization_id, own_budget_id, resource, manager, .. } = *target;
                // One connection for every read (see `observe_organization_inner`).
                let conn = &mut *self.pool.acquire().await?;
                let mut observed = ObservedMember {
                    organization_exists: sqlx::query(ORGANIZATION_EXISTS)
                    .bind(organization_id)
                    .fetch_optional(&mut *conn)
                    .await?
                    .is_some(),
                    ..Default::default()
                };
                if !resource.is_empty() {
                    observed.own_entries = self.ledger_of_resource_inner(conn, resource, manager).await?;
                }
                Self::read_users(conn, &mut observed, target).await?;
                let resolved = observed.resolved_user().map(|u| u.user_id.clone());
                if let Some(uid) = &resolved {
                    let key = membership_key(organization_id, uid);
                    observed.ledger = self.ledger_by_key(conn, &key).await?;
                }
                if let Some(uid) = resolved {
                    observed.membership = sqlx::query(SELECT_MEMBERSHIP)
                        .bind(&uid)
                        .bind(organization_id)
                        .fetch_optional(&mut *conn)
                        .await?
                        .map(|r| membership_from_row(&r))
                        .transpose()?;
                }
                if let Some(bid) = observed
                    .membership
                    .as_ref()
                    .and_then(|m| m.budget_id.clone())
                {
                    observed.membership_budget = Self::budget(conn, &bid).await?;
                }
                observed.own_budget = match &observed.membership_budget {
                    Some(b) if b.budget_id == own_budget_id => Some(b.clone()),
                    _ => Self::budget(conn, own_budget_id).await?,
                };
                // Every transaction keeps at most one membership on a member's own budget, so when
                // the current membership holds it there is nothing else to find; otherwise (the
                // member moved, or is being deleted) look the budget up, which is a scan in
                // LiteLLM's schema (no index on budget_id).
                let current_holds_own = observed
                    .membership
                    .as_ref()
                    .and_then(|m| m.budget_id.as_deref())
                    == Some(own_budget_id);
                if current_holds_own {
                    observed.memberships_with_own_budget = observed.membership.iter().cloned().collect();
                } else if observed.own_budget.is_some() {
                    observed.memberships_with_own_budget = sqlx::query(MEMBERSHIPS_ON_BUDGET)
                        .bind(own_budget_id)
                        .fetch_all(&mut *conn)
                        .await?
                        .iter()
                        .map(membership_from_row)
                        .collect::<Result<_, _>>()?;
                }
                Ok(observed)
            }

            async fn apply_inner(&self, changes: &[Change], actor: &str) -> Result<Applied, StoreError> {
                let db = StoreError::from_sqlx;
                let mut tx = self.pool.begin().await.map_err(db)?;
                let mut applied = Applied::default();
                for (index, change) in changes.iter().enumerate() {
                    match change {
                        Change::Claim { entry, replaces } => {
                            let done = sqlx::query(ledger_sql(&self.ledger.claim))
                                .bind(&entry.row_key)
                                .bind(&entry.manager)
                                .bind(&entry.resource)
                                .bind(&entry.organization_id)
                                .bind(entry.created)
                                .bind(&entry.deletion_policy)
                                .bind(Json(&entry.managed))
                                .bind(now())
                                .bind(replaces.as_deref().unwrap_or(&entry.resource))
                                .execute(&mut *tx)
                                .await
                                .map_err(db)?;
                            if done.rows_affected() == 0 {
                                let holder = sqlx::query(ledger_sql(&self.ledger.owner_of))
                                    .bind(&entry.row_key)
                                    .fetch_optional(&mut *tx)
                                    .await
                                    .map_err(db)?;
                                let (manager, resource) = match holder {
                                    Some(r) => (
                                        r.try_get::<String, _>("manager").map_err(db)?,
                                        r.try_get::<String, _>("resource").map_err(db)?,
                                    ),
                                    None => (String::new(), String::new()),
                                };
                                return Err(StoreError::Claimed {
                                    row: entry.row_key.clone(),
                                    manager,
                                    resource,
                                });
                            }
                        }
                        Change::Release { row_key } => {
                            sqlx::query(ledger_sql(&self.ledger.release))
                                .bind(row_key)
                                .execute(&mut *tx)
                                .await
                                .map_err(db)?;
                        }
                        other => match apply_change(&mut tx, other, actor, &self.ledger).await {
                            Ok(Done::Written) => {}
                            Ok(Done::AlreadyThere) => applied.unchanged.push(index),
                            Err(Failure::Sql(e)) => return Err(db(e)),
                            Err(Failure::Stale(row)) => return Err(StoreError::Stale(row)),
                            Err(Failure::Changed(what)) => return Err(StoreError::Changed(what)),
                        },
                    }
                }
                tx.commit().await.map_err(db)?;
                Ok(applied)
            }
        }

        /// What one change did.
        enum Done {
            Written,
            /// A user to create was already there (another writer created it since the plan
            /// read): the plan's intent holds, nothing was written.
            AlreadyThere,
        }

        /// Why one change failed.
        enum Failure {
            Sql(sqlx::Error),
            /// A row to create exists: another writer created it since the plan read.
            Stale(String),
            /// What a delete removes grew since the plan read it.
            Changed(String),
        }

        impl From<sqlx::Error> for Failure {
            fn from(e: sqlx::Error) -> Self {
                Self::Sql(e)
            }
        }

        /// A create inserts only: a row that is there already was created by another writer
        /// since the plan read the database, and writing the plan over it would overwrite that
        /// writer's values with ones read before they existed.
        fn created(done: <$db as sqlx::Database>::QueryResult, row: impl FnOnce() -> String) -> Result<Done, Failure> {
            if done.rows_affected() == 0 {
                Err(Failure::Stale(row()))
            } else {
                Ok(Done::Written)
            }
        }

        /// A new budget row with the limits of `b`, inserted only (see `created`).
        async fn create_budget(
            tx: &mut Transaction<'static, $db>,
            b: &BudgetRow,
            actor: &str,
        ) -> Result<Done, Failure> {
            let (sql, values) = budget_sql::insert(b, actor, now());
            let done = execute_built(tx, sql, values).await?;
            created(done, || format!("budget {}", b.budget_id))
        }

        /// Run a statement `store::budget` built, with its values.
        async fn execute_built(
            tx: &mut Transaction<'static, $db>,
            sql: String,
            values: Vec<Bind>,
        ) -> Result<<$db as sqlx::Database>::QueryResult, sqlx::Error> {
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for v in values {
                q = bind(q, v);
            }
            q.execute(&mut **tx).await
        }

        /// Write the managed columns where `after` differs from `before`, onto the row as
        /// it is now (see `store::budget` for the update strategy).
        async fn update_budget(
            tx: &mut Transaction<'static, $db>,
            before: &BudgetRow,
            after: &BudgetRow,
            actor: &str,
        ) -> Result<(), sqlx::Error> {
            match budget_sql::update(before, after, actor, now()) {
                Some((sql, values)) => execute_built(tx, sql, values).await.map(drop),
                None => Ok(()),
            }
        }

        /// A whole copy of the budget row `source` as `after.budget_id`: every column the
        /// table has (read from the catalog, so columns of later LiteLLM versions are copied
        /// too) and its reset window, then the managed columns `after` changes. Like every
        /// create it inserts only (see `created`).
        async fn copy_budget(
            tx: &mut Transaction<'static, $db>,
            source: &BudgetRow,
            after: &BudgetRow,
            actor: &str,
        ) -> Result<Done, Failure> {
            let columns: Vec<String> = sqlx::query_scalar($dialect::COLUMNS_OF)
                .bind("LiteLLM_BudgetTable")
                .fetch_all(&mut **tx)
                .await?;
            let sql = budget_sql::copy(&columns);
            let done = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(&source.budget_id)
                .bind(&after.budget_id)
                .bind(now())
                .bind(actor)
                .execute(&mut **tx)
                .await?;
            created(done, || format!("budget {}", after.budget_id))?;
            let copied = BudgetRow { budget_id: after.budget_id.clone(), ..source.clone() };
            update_budget(tx, &copied, after, actor).await?;
            Ok(Done::Written)
        }

        async fn delete_budget(
            tx: &mut Transaction<'static, $db>,
            budget_id: &str,
        ) -> Result<(), sqlx::Error> {
            sqlx::query(r#"DELETE FROM "LiteLLM_BudgetTable" WHERE "budget_id" = $1"#)
                .bind(budget_id)
                .execute(&mut **tx)
                .await?;
            Ok(())
        }

        macro_rules! insert_organization {
            () => {
                r#"INSERT INTO "LiteLLM_OrganizationTable"
                     ("organization_id", "organization_alias", "budget_id", "metadata", "models", "created_at", "created_by", "updated_at", "updated_by")
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $6, $7)"#
            };
        }

        fn organization_query<'q>(sql: &'static str, o: &'q OrganizationRow, actor: &'q str) -> sqlx::query::Query<'q, $db, <$db as sqlx::Database>::Arguments> {
            sqlx::query(sql)
                .bind(&o.organization_id)
                .bind(&o.organization_alias)
                .bind(&o.budget_id)
                .bind(Json(budget_sql::raw_json(&o.metadata)))
                .bind($dialect::models_argument(&o.models))
                .bind(now())
                .bind(actor)
        }

        async fn create_organization(
            tx: &mut Transaction<'static, $db>,
            o: &OrganizationRow,
            actor: &str,
        ) -> Result<Done, Failure> {
            let done = organization_query(concat!(insert_organization!(), r#" ON CONFLICT ("organization_id") DO NOTHING"#), o, actor)
                .execute(&mut **tx)
                .await?;
            created(done, || format!("organization {}", o.organization_id))
        }

        async fn upsert_organization(
            tx: &mut Transaction<'static, $db>,
            o: &OrganizationRow,
            actor: &str,
        ) -> Result<(), sqlx::Error> {
            organization_query(
                concat!(insert_organization!(), r#"
                   ON CONFLICT ("organization_id") DO UPDATE SET
                      "organization_alias" = EXCLUDED."organization_alias", "budget_id" = EXCLUDED."budget_id",
                      "metadata" = EXCLUDED."metadata", "models" = EXCLUDED."models",
                      "updated_at" = EXCLUDED."updated_at", "updated_by" = EXCLUDED."updated_by""#),
                o,
                actor,
            )
            .execute(&mut **tx)
            .await?;
            Ok(())
        }

        /// An update planned against the row as it was read (`before`): only what the plan
        /// changes is written, onto the row as it is now (held for the rest of the
        /// transaction), so a write LiteLLM committed in between (a metadata key, a column the
        /// resource does not declare) is kept, never overwritten with what was read before it.
        async fn update_organization(
            tx: &mut Transaction<'static, $db>,
            before: &OrganizationRow,
            after: &OrganizationRow,
            actor: &str,
        ) -> Result<(), sqlx::Error> {
            if let Some(lock) = $dialect::LOCK_ORGANIZATION {
                sqlx::query(lock).bind(&after.organization_id).execute(&mut **tx).await?;
            }
            let row = sqlx::query(
                r#"SELECT CAST("metadata" AS TEXT) AS "metadata" FROM "LiteLLM_OrganizationTable" WHERE "organization_id" = $1"#,
            )
            .bind(&after.organization_id)
            .fetch_optional(&mut **tx)
            .await?;
            // Deleted in between: written as planned.
            let Some(row) = row else {
                return upsert_organization(tx, after, actor).await;
            };
            let metadata = $crate::store::organization::merge_metadata(
                &row.try_get::<String, _>("metadata")?,
                &before.metadata,
                &after.metadata,
            );
            let changed = $crate::store::organization::changed_columns(before, after);
            if changed.is_empty() {
                return Ok(());
            }
            let mut sets = Vec::new();
            for (i, column) in changed.iter().enumerate() {
                sets.push(format!(r#""{column}" = ${}"#, i + 2));
            }
            let n = changed.len() + 2;
            let sql = format!(
                r#"UPDATE "LiteLLM_OrganizationTable" SET {}, "updated_at" = ${n}, "updated_by" = ${} WHERE "organization_id" = $1"#,
                sets.join(", "),
                n + 1
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(&after.organization_id);
            for column in &changed {
                q = match *column {
                    "organization_alias" => q.bind(&after.organization_alias),
                    "budget_id" => q.bind(&after.budget_id),
                    "models" => q.bind($dialect::models_argument(&after.models)),
                    _ => q.bind(Json(budget_sql::raw_json(&metadata))),
                };
            }
            q.bind(now()).bind(actor).execute(&mut **tx).await?;
            Ok(())
        }

        macro_rules! insert_membership {
            () => {
                r#"INSERT INTO "LiteLLM_OrganizationMembership"
                     ("user_id", "organization_id", "user_role", "spend", "budget_id", "created_at", "updated_at")
                   VALUES ($1, $2, $3, 0.0, $4, $5, $5)"#
            };
        }

        fn membership_query<'q>(sql: &'static str, m: &'q MembershipRow) -> sqlx::query::Query<'q, $db, <$db as sqlx::Database>::Arguments> {
            sqlx::query(sql)
                .bind(&m.user_id)
                .bind(&m.organization_id)
                .bind(&m.user_role)
                .bind(&m.budget_id)
                .bind(now())
        }

        async fn create_membership(
            tx: &mut Transaction<'static, $db>,
            m: &MembershipRow,
        ) -> Result<Done, Failure> {
            let done = membership_query(concat!(insert_membership!(), r#" ON CONFLICT ("user_id", "organization_id") DO NOTHING"#), m)
                .execute(&mut **tx)
                .await?;
            created(done, || format!("membership of user {} in organization {}", m.user_id, m.organization_id))
        }

        async fn upsert_membership(
            tx: &mut Transaction<'static, $db>,
            m: &MembershipRow,
        ) -> Result<(), sqlx::Error> {
            membership_query(
                concat!(insert_membership!(), r#"
                   ON CONFLICT ("user_id", "organization_id") DO UPDATE SET
                      "user_role" = EXCLUDED."user_role", "budget_id" = EXCLUDED."budget_id", "updated_at" = EXCLUDED."updated_at""#),
                m,
            )
            .execute(&mut **tx)
            .await?;
            Ok(())
        }

        /// An organization's cascade, in foreign-key order, with the member budgets the
        /// operator created for its memberships and every ledger entry of its rows.
        async fn delete_organization(
            tx: &mut Transaction<'static, $db>,
            organization_id: &str,
            owned_budget_id: Option<&str>,
            planned: &Dependents,
            ledger: &LedgerSql,
        ) -> Result<Done, Failure> {
            // Hold the organization row first: a membership, team or key committed while the
            // cascade runs would be removed unnamed (or lose its budget row to nobody). Rows
            // that point at it wait for the lock (their foreign keys), so what is counted
            // now is what the cascade removes.
            if let Some(lock) = $dialect::LOCK_ORGANIZATION {
                sqlx::query(lock).bind(organization_id).execute(&mut **tx).await?;
            }
            let now = count_dependents(&mut **tx, organization_id).await?;
            if now.exceeds(planned) {
                return Err(Failure::Changed(format!(
                    "organization {organization_id} has {now} now, more than the {planned} its delete named"
                )));
            }
            // Member budgets the operator created for this organization's memberships.
            let member_budgets: Vec<String> = sqlx::query_scalar(ledger_sql(&ledger.created_member_budgets))
                .bind(organization_id)
                .fetch_all(&mut **tx)
                .await?;
            // Foreign-key order: teams, memberships and keys point at the organization.
            for sql in [
                r#"DELETE FROM "LiteLLM_TeamTable" WHERE "organization_id" = $1"#,
                r#"DELETE FROM "LiteLLM_OrganizationMembership" WHERE "organization_id" = $1"#,
                r#"DELETE FROM "LiteLLM_VerificationToken" WHERE "organization_id" = $1"#,
                r#"DELETE FROM "LiteLLM_OrganizationTable" WHERE "organization_id" = $1"#,
            ] {
                sqlx::query(sql)
                    .bind(organization_id)
                    .execute(&mut **tx)
                    .await?;
            }
            if let Some(b) = owned_budget_id {
                delete_budget(tx, b).await?;
            }
            for b in &member_budgets {
                delete_budget(tx, b).await?;
            }
            // Every ledger entry of the organization's rows goes with them.
            sqlx::query(ledger_sql(&ledger.release_organization))
                .bind(organization_id)
                .execute(&mut **tx)
                .await?;
            Ok(Done::Written)
        }

        /// The teams, keys and memberships of an organization (three index or table scans;
        /// read only when an organization is about to be deleted).
        async fn count_dependents<'c, E>(executor: E, organization_id: &str) -> Result<Dependents, sqlx::Error>
        where
            E: sqlx::Executor<'c, Database = $db>,
        {
            let row = sqlx::query(
                r#"SELECT
                     (SELECT count(*) FROM "LiteLLM_TeamTable" WHERE "organization_id" = $1) AS "teams",
                     (SELECT count(*) FROM "LiteLLM_VerificationToken" WHERE "organization_id" = $1) AS "keys",
                     (SELECT count(*) FROM "LiteLLM_OrganizationMembership" WHERE "organization_id" = $1) AS "memberships""#,
            )
            .bind(organization_id)
            .fetch_one(executor)
            .await?;
            Ok(Dependents {
                teams: row.try_get("teams")?,
                keys: row.try_get("keys")?,
                memberships: row.try_get("memberships")?,
            })
        }

        /// A user with LiteLLM's new-internal-user defaults; one already there (another
        /// writer created it since the plan read) is left as it is.
        async fn create_user(
            tx: &mut Transaction<'static, $db>,
            user_id: &str,
            email: Option<&str>,
            defaults: &$crate::store::NewUserDefaults,
        ) -> Result<Done, sqlx::Error> {
            // LiteLLM's new-internal-user defaults: role internal_user; models, max_budget
            // and budget_duration as the proxy is configured (none by default). A budget
            // with a duration gets budget_reset_at, which LiteLLM's reset job selects on.
            let now = now();
            let reset_at = defaults
                .budget_duration
                .as_deref()
                .and_then(|d| budget_reset_at(d, now));
            let sql = if reset_at.is_some() {
                r#"INSERT INTO "LiteLLM_UserTable"
                     ("user_id", "user_email", "user_role", "models", "teams", "metadata", "spend", "max_budget", "budget_duration", "created_at", "updated_at", "budget_reset_at")
                   VALUES ($1, $2, 'internal_user', $3, $4, $5, 0.0, $6, $7, $8, $8, $9)
                   ON CONFLICT ("user_id") DO NOTHING"#
            } else {
                r#"INSERT INTO "LiteLLM_UserTable"
                     ("user_id", "user_email", "user_role", "models", "teams", "metadata", "spend", "max_budget", "budget_duration", "created_at", "updated_at")
                   VALUES ($1, $2, 'internal_user', $3, $4, $5, 0.0, $6, $7, $8, $8)
                   ON CONFLICT ("user_id") DO NOTHING"#
            };
            let mut q = sqlx::query(sql)
                .bind(user_id)
                .bind(email)
                .bind($dialect::models_argument(&defaults.models))
                .bind($dialect::models_argument(&[]))
                .bind(Json(Value::Object(Map::new())))
                .bind(defaults.max_budget)
                .bind(&defaults.budget_duration)
                .bind(now);
            if let Some(at) = reset_at {
                q = q.bind(at);
            }
            if q.execute(&mut **tx).await?.rows_affected() == 0 {
                Ok(Done::AlreadyThere)
            } else {
                Ok(Done::Written)
            }
        }

        async fn apply_change(
            tx: &mut Transaction<'static, $db>,
            change: &Change,
            actor: &str,
            ledger: &LedgerSql,
        ) -> Result<Done, Failure> {
            match change {
                Change::CreateBudget(b) => create_budget(tx, b, actor).await,
                Change::CopyBudget { source, after } => copy_budget(tx, source, after, actor).await,
                Change::CreateOrganization(o) => create_organization(tx, o, actor).await,
                Change::CreateMembership(m) => create_membership(tx, m).await,
                Change::DeleteOrganization {
                    organization_id,
                    owned_budget_id,
                    dependents,
                } => delete_organization(tx, organization_id, owned_budget_id.as_deref(), dependents, ledger).await,
                other => Ok(write_change(tx, other, actor).await?),
            }
        }

        /// The changes that write over what is there (updates, deletes, users).
        async fn write_change(
            tx: &mut Transaction<'static, $db>,
            change: &Change,
            actor: &str,
        ) -> Result<Done, sqlx::Error> {
            match change {
                Change::UpdateBudget { before, after } => update_budget(tx, before, after, actor).await.map(|()| Done::Written),
                Change::DeleteBudget { budget_id } => delete_budget(tx, budget_id).await.map(|()| Done::Written),
                Change::UpdateOrganization { before, after } => {
                    update_organization(tx, before, after, actor).await.map(|()| Done::Written)
                }
                // Checked by `apply_change`, which deletes it.
                Change::DeleteOrganization { .. } => Ok(Done::Written),
                Change::CreateUser { user_id, email, defaults } => {
                    create_user(tx, user_id, email.as_deref(), defaults).await
                }
                Change::UpdateMembership { after, .. } => upsert_membership(tx, after).await.map(|()| Done::Written),
                // Creates are `apply_change`'s; claims and releases are the ledger's.
                Change::CreateBudget(_)
                | Change::CreateOrganization(_)
                | Change::CreateMembership(_)
                | Change::CopyBudget { .. }
                | Change::Claim { .. }
                | Change::Release { .. } => Ok(Done::Written),
                Change::DeleteMembership {
                    user_id,
                    organization_id,
                } => {
                    sqlx::query(
                        r#"DELETE FROM "LiteLLM_OrganizationMembership" WHERE "user_id" = $1 AND "organization_id" = $2"#,
                    )
                    .bind(user_id)
                    .bind(organization_id)
                    .execute(&mut **tx)
                    .await?;
                    Ok(Done::Written)
                }
            }
        }

        impl Store for $store {
            async fn schema_state(&self) -> Result<SchemaState, StoreError> {
                let existing = $dialect::existing_columns(&self.pool)
                    .await
                    .map_err(StoreError::from_sqlx)?;
                Ok(schema::compare(&existing))
            }

            async fn migrate(&self) -> Result<(), StoreError> {
                match self.schema_state().await? {
                    SchemaState::Ready => return Ok(()),
                    SchemaState::Missing(m) => return Err(StoreError::SchemaMissing(m)),
                    SchemaState::Empty => {}
                }
                let mut tx = self.pool.begin().await.map_err(StoreError::from_sqlx)?;
                for ddl in $ddl {
                    sqlx::query(*ddl)
                        .execute(&mut *tx)
                        .await
                        .map_err(StoreError::from_sqlx)?;
                }
                // The budget limits are the inventory's: one column each.
                for sql in budget_sql::add_limit_columns($dialect::sql_type) {
                    sqlx::query(sqlx::AssertSqlSafe(sql))
                        .execute(&mut *tx)
                        .await
                        .map_err(StoreError::from_sqlx)?;
                }
                tx.commit().await.map_err(StoreError::from_sqlx)
            }

            async fn observe_organization(
                &self,
                organization_id: &str,
                desired_budget_id: &str,
                owned_budget_id: &str,
            ) -> Result<ObservedOrganization, StoreError> {
                self.observe_organization_inner(organization_id, desired_budget_id, owned_budget_id)
                    .await
                    .map_err(StoreError::from_sqlx)
            }

            async fn observe_member(&self, target: &MemberLookup<'_>) -> Result<ObservedMember, StoreError> {
                self.observe_member_inner(target)
                    .await
                    .map_err(StoreError::from_sqlx)
            }

            async fn organization_dependents(
                &self,
                organization_id: &str,
            ) -> Result<Dependents, StoreError> {
                count_dependents(&self.pool, organization_id)
                    .await
                    .map_err(StoreError::from_sqlx)
            }

            async fn organization_usage(
                &self,
                organization_id: &str,
            ) -> Result<Option<OrganizationUsage>, StoreError> {
                let row = sqlx::query(
                    r#"SELECT o."spend", b."max_budget"
                       FROM "LiteLLM_OrganizationTable" o LEFT JOIN "LiteLLM_BudgetTable" b ON b."budget_id" = o."budget_id"
                       WHERE o."organization_id" = $1"#,
                )
                .bind(organization_id)
                .fetch_optional(&self.pool)
                .await
                .map_err(StoreError::from_sqlx)?;
                row.map(|r| {
                    Ok(OrganizationUsage {
                        spend: r.try_get("spend")?,
                        max_budget: r.try_get("max_budget")?,
                        member_count: 0,
                    })
                })
                .transpose()
                .map_err(StoreError::from_sqlx)
            }

            async fn member_counts(&self) -> Result<std::collections::HashMap<String, i64>, StoreError> {
                // One scan for every organization (LiteLLM has no index on organization_id
                // alone, so a count per organization would scan once each).
                sqlx::query(
                    r#"SELECT "organization_id", count(*) AS "members" FROM "LiteLLM_OrganizationMembership" GROUP BY "organization_id""#,
                )
                .fetch_all(&self.pool)
                .await
                .map_err(StoreError::from_sqlx)?
                .iter()
                .map(|r| Ok((r.try_get("organization_id")?, r.try_get("members")?)))
                .collect::<Result<_, sqlx::Error>>()
                .map_err(StoreError::from_sqlx)
            }

            async fn owned_organizations(&self) -> Result<Vec<(String, String)>, StoreError> {
                let rows = sqlx::query($dialect::OWNED_ORGANIZATIONS)
                    .bind($dialect::owner_argument())
                .fetch_all(&self.pool)
                .await
                .map_err(StoreError::from_sqlx)?;
                rows.iter()
                    .filter_map(|r| {
                        let id: Result<String, _> = r.try_get("organization_id");
                        let owner: Result<Option<String>, _> = r.try_get("owner");
                        match (id, owner) {
                            (Ok(id), Ok(Some(owner))) => Some(Ok((id, owner))),
                            (Ok(_), Ok(None)) => None,
                            (Err(e), _) | (_, Err(e)) => Some(Err(StoreError::from_sqlx(e))),
                        }
                    })
                    .collect()
            }

            async fn owned_memberships(&self, actor: &str) -> Result<Vec<OwnedMembership>, StoreError> {
                let rows = sqlx::query(
                    r#"SELECT m."user_id", m."organization_id", m."budget_id" FROM "LiteLLM_OrganizationMembership" m
                       JOIN "LiteLLM_BudgetTable" b ON b."budget_id" = m."budget_id" WHERE b."created_by" = $1"#,
                )
                .bind(actor)
                .fetch_all(&self.pool)
                .await
                .map_err(StoreError::from_sqlx)?;
                rows.iter()
                    .map(|r| {
                        Ok(OwnedMembership {
                            user_id: r.try_get("user_id")?,
                            organization_id: r.try_get("organization_id")?,
                            budget_id: r.try_get("budget_id")?,
                        })
                    })
                    .collect::<Result<_, sqlx::Error>>()
                    .map_err(StoreError::from_sqlx)
            }

            async fn apply(&self, changes: &[Change], actor: &str) -> Result<Applied, StoreError> {
                self.apply_inner(changes, actor).await
            }

            async fn ensure_ledger(&self) -> Result<bool, StoreError> {
                let mut conn = self.pool.acquire().await.map_err(StoreError::from_sqlx)?;
                if self.ledger_known(&mut conn).await.map_err(StoreError::from_sqlx)? {
                    return Ok(false);
                }
                let mut tx = sqlx::Connection::begin(&mut *conn).await.map_err(StoreError::from_sqlx)?;
                for ddl in &self.ledger.ddl {
                    sqlx::query(ledger_sql(ddl))
                        .execute(&mut *tx)
                        .await
                        .map_err(StoreError::from_ledger_ddl)?;
                }
                tx.commit().await.map_err(StoreError::from_ledger_ddl)?;
                self.ledger_ready.store(true, std::sync::atomic::Ordering::Relaxed);
                Ok(true)
            }

            async fn ledger_of_resource(&self, resource: &str, manager: &str) -> Result<Vec<LedgerEntry>, StoreError> {
                let mut conn = self.pool.acquire().await.map_err(StoreError::from_sqlx)?;
                self.ledger_of_resource_inner(&mut conn, resource, manager)
                    .await
                    .map_err(StoreError::from_sqlx)
            }

            async fn ledger_of_manager(&self, manager: &str) -> Result<Vec<LedgerEntry>, StoreError> {
                let mut conn = self.pool.acquire().await.map_err(StoreError::from_sqlx)?;
                if !self.ledger_known(&mut conn).await.map_err(StoreError::from_sqlx)? {
                    return Ok(Vec::new());
                }
                sqlx::query(ledger_sql(&self.ledger.select_manager))
                    .bind(manager)
                    .fetch_all(&mut *conn)
                    .await
                    .map_err(StoreError::from_sqlx)?
                    .iter()
                    .map(ledger_from_row)
                    .collect::<Result<_, _>>()
                    .map_err(StoreError::from_sqlx)
            }

            async fn list_organizations(&self) -> Result<Listing<OrganizationSummary>, StoreError> {
                let rows = sqlx::query(
                    r#"SELECT o."organization_id", o."organization_alias", o."budget_id", b."max_budget", o."spend", o."models", o."metadata",
                              (SELECT count(*) FROM "LiteLLM_OrganizationMembership" m WHERE m."organization_id" = o."organization_id") AS "members"
                       FROM "LiteLLM_OrganizationTable" o LEFT JOIN "LiteLLM_BudgetTable" b ON b."budget_id" = o."budget_id"
                       ORDER BY o."organization_alias", o."organization_id""#,
                )
                .fetch_all(&self.pool)
                .await
                .map_err(StoreError::from_sqlx)?;
                let owners = self.ledger_owners().await?;
                Ok(read_rows(&rows, |r| {
                    let id: String = r.try_get("organization_id").unwrap_or_else(|_| "<unreadable id>".into());
                    let summary = (|| {
                        let metadata = metadata_map(r.try_get::<Json<Value>, _>("metadata")?.0);
                        let owner = owners
                            .get(&organization_key(&id))
                            .cloned()
                            .or_else(|| metadata_owner(&metadata).map(|o| format!("{o} (marker of an earlier version)")));
                        Ok(OrganizationSummary {
                            organization_id: id.clone(),
                            alias: r.try_get("organization_alias")?,
                            budget_id: r.try_get("budget_id")?,
                            max_budget: r.try_get("max_budget")?,
                            spend: r.try_get("spend")?,
                            members: r.try_get("members")?,
                            models: $dialect::models(r)?,
                            owner,
                        })
                    })();
                    (format!("organization {id}"), summary)
                }))
            }

            async fn list_members(&self) -> Result<Listing<MemberSummary>, StoreError> {
                let rows = sqlx::query(
                    r#"SELECT m."organization_id", o."organization_alias", m."user_id", u."user_email", m."user_role", m."budget_id",
                              b."max_budget", COALESCE(m."spend", 0.0) AS "spend"
                       FROM "LiteLLM_OrganizationMembership" m
                       JOIN "LiteLLM_OrganizationTable" o ON o."organization_id" = m."organization_id"
                       LEFT JOIN "LiteLLM_UserTable" u ON u."user_id" = m."user_id"
                       LEFT JOIN "LiteLLM_BudgetTable" b ON b."budget_id" = m."budget_id"
                       ORDER BY o."organization_alias", u."user_email", m."user_id""#,
                )
                .fetch_all(&self.pool)
                .await
                .map_err(StoreError::from_sqlx)?;
                let owners = self.ledger_owners().await?;
                Ok(read_rows(&rows, |r| {
                    let organization_id: String = r.try_get("organization_id").unwrap_or_else(|_| "<unreadable id>".into());
                    let user_id: String = r.try_get("user_id").unwrap_or_else(|_| "<unreadable id>".into());
                    let summary = (|| {
                        Ok(MemberSummary {
                            owner: owners.get(&membership_key(&organization_id, &user_id)).cloned(),
                            organization_id: organization_id.clone(),
                            organization_alias: r.try_get("organization_alias")?,
                            user_id: user_id.clone(),
                            user_email: r.try_get("user_email")?,
                            role: r.try_get("user_role")?,
                            budget_id: r.try_get("budget_id")?,
                            max_budget_in_organization: r.try_get("max_budget")?,
                            spend: r.try_get("spend")?,
                        })
                    })();
                    (format!("membership of user {user_id} in organization {organization_id}"), summary)
                }))
            }

            async fn ledger_resources(&self) -> Result<Vec<String>, StoreError> {
                let mut conn = self.pool.acquire().await.map_err(StoreError::from_sqlx)?;
                if !self.ledger_known(&mut conn).await.map_err(StoreError::from_sqlx)? {
                    return Ok(Vec::new());
                }
                sqlx::query_scalar(ledger_sql(&self.ledger.resources))
                    .fetch_all(&mut *conn)
                    .await
                    .map_err(StoreError::from_sqlx)
            }
        }
    }
    };
}

pub(crate) use sql_store;
