//! The tables and columns the operator needs, and the DDL that creates them on an empty
//! database. Table and column names are exactly LiteLLM's; this is the only source of
//! identifiers in SQL text.

/// Every `(table, column)` the operator reads or writes, besides the budget limits of the
/// inventory ([`super::BUDGET_LIMITS`], required as well). Checked at start against an
/// existing database, which is never altered.
pub const REQUIRED_COLUMNS: &[(&str, &[&str])] = &[
    (
        "LiteLLM_BudgetTable",
        &[
            "budget_id",
            "model_max_budget",
            "budget_reset_at",
            "created_at",
            "created_by",
            "updated_at",
            "updated_by",
        ],
    ),
    (
        "LiteLLM_OrganizationTable",
        &[
            "organization_id",
            "organization_alias",
            "budget_id",
            "metadata",
            "models",
            "spend",
            "created_at",
            "created_by",
            "updated_at",
            "updated_by",
        ],
    ),
    (
        "LiteLLM_UserTable",
        &[
            "user_id",
            "user_email",
            "user_role",
            "teams",
            "models",
            "metadata",
            "spend",
            "max_budget",
            "budget_duration",
            "organization_id",
            "created_at",
            "updated_at",
        ],
    ),
    (
        "LiteLLM_OrganizationMembership",
        &[
            "user_id",
            "organization_id",
            "user_role",
            "spend",
            "budget_id",
            "created_at",
            "updated_at",
        ],
    ),
    ("LiteLLM_TeamTable", &["team_id", "organization_id"]),
    ("LiteLLM_VerificationToken", &["token", "organization_id"]),
];

/// Result of the start-up schema check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SchemaState {
    /// Every table and column is there.
    Ready,
    /// None of the tables exists: `migrate` may create them.
    Empty,
    /// Some are missing, named as `"Table"` or `"Table"."column"`.
    Missing(Vec<String>),
}

/// Compare what exists against [`REQUIRED_COLUMNS`].
pub fn compare(existing: &[(String, String)]) -> SchemaState {
    let has_table = |t: &str| existing.iter().any(|(et, _)| et == t);
    if REQUIRED_COLUMNS.iter().all(|(t, _)| !has_table(t)) {
        return SchemaState::Empty;
    }
    let mut missing = Vec::new();
    let limits: Vec<&str> = super::BUDGET_LIMITS.iter().map(|l| l.column).collect();
    for (table, columns) in REQUIRED_COLUMNS {
        if !has_table(table) {
            missing.push(format!("table \"{table}\""));
            continue;
        }
        let inventory = if *table == "LiteLLM_BudgetTable" {
            &limits[..]
        } else {
            &[]
        };
        for column in columns.iter().chain(inventory) {
            if !existing.iter().any(|(t, c)| t == table && c == column) {
                missing.push(format!("column \"{table}\".\"{column}\""));
            }
        }
    }
    if missing.is_empty() {
        SchemaState::Ready
    } else {
        SchemaState::Missing(missing)
    }
}

/// PostgreSQL DDL for an empty database: the subset of LiteLLM's baseline migration the
/// operator uses, with LiteLLM's types, defaults and foreign keys (the budget limits are
/// added after it, one column per entry of the inventory: `store::budget::add_limit_columns`). LiteLLM's own migrations
/// remain the way to create a full proxy database.
pub const POSTGRES_DDL: &[&str] = &[
    r#"CREATE TABLE IF NOT EXISTS "LiteLLM_BudgetTable" (
        "budget_id" TEXT NOT NULL PRIMARY KEY,
        "model_max_budget" JSONB,
        "budget_reset_at" TIMESTAMP(3),
        "created_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
        "created_by" TEXT NOT NULL,
        "updated_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
        "updated_by" TEXT NOT NULL)"#,
    r#"CREATE TABLE IF NOT EXISTS "LiteLLM_OrganizationTable" (
        "organization_id" TEXT NOT NULL PRIMARY KEY,
        "organization_alias" TEXT NOT NULL,
        "budget_id" TEXT NOT NULL REFERENCES "LiteLLM_BudgetTable"("budget_id") ON DELETE RESTRICT ON UPDATE CASCADE,
        "metadata" JSONB NOT NULL DEFAULT '{}',
        "models" TEXT[],
        "spend" DOUBLE PRECISION NOT NULL DEFAULT 0.0,
        "model_spend" JSONB NOT NULL DEFAULT '{}',
        "created_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
        "created_by" TEXT NOT NULL,
        "updated_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
        "updated_by" TEXT NOT NULL)"#,
    r#"CREATE TABLE IF NOT EXISTS "LiteLLM_UserTable" (
        "user_id" TEXT NOT NULL PRIMARY KEY,
        "user_alias" TEXT,
        "organization_id" TEXT REFERENCES "LiteLLM_OrganizationTable"("organization_id") ON DELETE SET NULL ON UPDATE CASCADE,
        "teams" TEXT[] DEFAULT ARRAY[]::TEXT[],
        "user_role" TEXT,
        "max_budget" DOUBLE PRECISION,
        "spend" DOUBLE PRECISION NOT NULL DEFAULT 0.0,
        "user_email" TEXT,
        "models" TEXT[],
        "metadata" JSONB NOT NULL DEFAULT '{}',
        "budget_duration" TEXT,
        "budget_reset_at" TIMESTAMP(3),
        "created_at" TIMESTAMP(3) DEFAULT CURRENT_TIMESTAMP,
        "updated_at" TIMESTAMP(3) DEFAULT CURRENT_TIMESTAMP)"#,
    r#"CREATE TABLE IF NOT EXISTS "LiteLLM_TeamTable" (
        "team_id" TEXT NOT NULL PRIMARY KEY,
        "team_alias" TEXT,
        "organization_id" TEXT REFERENCES "LiteLLM_OrganizationTable"("organization_id") ON DELETE SET NULL ON UPDATE CASCADE,
        "created_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
        "updated_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP)"#,
    r#"CREATE TABLE IF NOT EXISTS "LiteLLM_VerificationToken" (
        "token" TEXT NOT NULL PRIMARY KEY,
        "key_alias" TEXT,
        "user_id" TEXT,
        "team_id" TEXT,
        "organization_id" TEXT REFERENCES "LiteLLM_OrganizationTable"("organization_id") ON DELETE SET NULL ON UPDATE CASCADE,
        "budget_id" TEXT REFERENCES "LiteLLM_BudgetTable"("budget_id") ON DELETE SET NULL ON UPDATE CASCADE,
        "created_at" TIMESTAMP(3) DEFAULT CURRENT_TIMESTAMP,
        "updated_at" TIMESTAMP(3) DEFAULT CURRENT_TIMESTAMP)"#,
    r#"CREATE TABLE IF NOT EXISTS "LiteLLM_OrganizationMembership" (
        "user_id" TEXT NOT NULL REFERENCES "LiteLLM_UserTable"("user_id") ON DELETE RESTRICT ON UPDATE CASCADE,
        "organization_id" TEXT NOT NULL REFERENCES "LiteLLM_OrganizationTable"("organization_id") ON DELETE RESTRICT ON UPDATE CASCADE,
        "user_role" TEXT,
        "spend" DOUBLE PRECISION DEFAULT 0.0,
        "budget_id" TEXT REFERENCES "LiteLLM_BudgetTable"("budget_id") ON DELETE SET NULL ON UPDATE CASCADE,
        "created_at" TIMESTAMP(3) DEFAULT CURRENT_TIMESTAMP,
        "updated_at" TIMESTAMP(3) DEFAULT CURRENT_TIMESTAMP,
        PRIMARY KEY ("user_id", "organization_id"))"#,
    r#"CREATE INDEX IF NOT EXISTS "LiteLLM_OrganizationMembership_budget_id_idx" ON "LiteLLM_OrganizationMembership"("budget_id")"#,
];

/// SQLite DDL: the same tables and columns. Arrays and JSON are stored as JSON text,
/// timestamps as ISO-8601 text; foreign keys are enforced (`PRAGMA foreign_keys = ON`).
pub const SQLITE_DDL: &[&str] = &[
    r#"CREATE TABLE IF NOT EXISTS "LiteLLM_BudgetTable" (
        "budget_id" TEXT NOT NULL PRIMARY KEY,
        "model_max_budget" TEXT,
        "budget_reset_at" TEXT,
        "created_at" TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP,
        "created_by" TEXT NOT NULL,
        "updated_at" TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP,
        "updated_by" TEXT NOT NULL)"#,
    r#"CREATE TABLE IF NOT EXISTS "LiteLLM_OrganizationTable" (
        "organization_id" TEXT NOT NULL PRIMARY KEY,
        "organization_alias" TEXT NOT NULL,
        "budget_id" TEXT NOT NULL REFERENCES "LiteLLM_BudgetTable"("budget_id") ON DELETE RESTRICT ON UPDATE CASCADE,
        "metadata" TEXT NOT NULL DEFAULT '{}',
        "models" TEXT NOT NULL DEFAULT '[]',
        "spend" REAL NOT NULL DEFAULT 0.0,
        "model_spend" TEXT NOT NULL DEFAULT '{}',
        "created_at" TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP,
        "created_by" TEXT NOT NULL,
        "updated_at" TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP,
        "updated_by" TEXT NOT NULL)"#,
    r#"CREATE TABLE IF NOT EXISTS "LiteLLM_UserTable" (
        "user_id" TEXT NOT NULL PRIMARY KEY,
        "user_alias" TEXT,
        "organization_id" TEXT REFERENCES "LiteLLM_OrganizationTable"("organization_id") ON DELETE SET NULL ON UPDATE CASCADE,
        "teams" TEXT NOT NULL DEFAULT '[]',
        "user_role" TEXT,
        "max_budget" REAL,
        "spend" REAL NOT NULL DEFAULT 0.0,
        "user_email" TEXT,
        "models" TEXT NOT NULL DEFAULT '[]',
        "metadata" TEXT NOT NULL DEFAULT '{}',
        "budget_duration" TEXT,
        "budget_reset_at" TEXT,
        "created_at" TEXT DEFAULT CURRENT_TIMESTAMP,
        "updated_at" TEXT DEFAULT CURRENT_TIMESTAMP)"#,
    r#"CREATE TABLE IF NOT EXISTS "LiteLLM_TeamTable" (
        "team_id" TEXT NOT NULL PRIMARY KEY,
        "team_alias" TEXT,
        "organization_id" TEXT REFERENCES "LiteLLM_OrganizationTable"("organization_id") ON DELETE SET NULL ON UPDATE CASCADE,
        "created_at" TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP,
        "updated_at" TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP)"#,
    r#"CREATE TABLE IF NOT EXISTS "LiteLLM_VerificationToken" (
        "token" TEXT NOT NULL PRIMARY KEY,
        "key_alias" TEXT,
        "user_id" TEXT,
        "team_id" TEXT,
        "organization_id" TEXT REFERENCES "LiteLLM_OrganizationTable"("organization_id") ON DELETE SET NULL ON UPDATE CASCADE,
        "budget_id" TEXT REFERENCES "LiteLLM_BudgetTable"("budget_id") ON DELETE SET NULL ON UPDATE CASCADE,
        "created_at" TEXT DEFAULT CURRENT_TIMESTAMP,
        "updated_at" TEXT DEFAULT CURRENT_TIMESTAMP)"#,
    r#"CREATE TABLE IF NOT EXISTS "LiteLLM_OrganizationMembership" (
        "user_id" TEXT NOT NULL REFERENCES "LiteLLM_UserTable"("user_id") ON DELETE RESTRICT ON UPDATE CASCADE,
        "organization_id" TEXT NOT NULL REFERENCES "LiteLLM_OrganizationTable"("organization_id") ON DELETE RESTRICT ON UPDATE CASCADE,
        "user_role" TEXT,
        "spend" REAL DEFAULT 0.0,
        "budget_id" TEXT REFERENCES "LiteLLM_BudgetTable"("budget_id") ON DELETE SET NULL ON UPDATE CASCADE,
        "created_at" TEXT DEFAULT CURRENT_TIMESTAMP,
        "updated_at" TEXT DEFAULT CURRENT_TIMESTAMP,
        PRIMARY KEY ("user_id", "organization_id"))"#,
    r#"CREATE INDEX IF NOT EXISTS "LiteLLM_OrganizationMembership_budget_id_idx" ON "LiteLLM_OrganizationMembership"("budget_id")"#,
    r#"CREATE INDEX IF NOT EXISTS "LiteLLM_UserTable_email_idx" ON "LiteLLM_UserTable"(lower("user_email"))"#,
];

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> Vec<(String, String)> {
        let limits = crate::store::BUDGET_LIMITS
            .iter()
            .map(|l| ("LiteLLM_BudgetTable".to_string(), l.column.to_string()));
        REQUIRED_COLUMNS
            .iter()
            .flat_map(|(t, cs)| cs.iter().map(move |c| (t.to_string(), c.to_string())))
            .chain(limits)
            .collect()
    }

    #[test]
    fn compare_names_what_is_missing() {
        assert_eq!(compare(&[]), SchemaState::Empty);
        assert_eq!(compare(&all()), SchemaState::Ready);
        let mut partial = all();
        partial.retain(|(t, c)| !(t == "LiteLLM_UserTable" && c == "user_email"));
        partial.retain(|(t, _)| t != "LiteLLM_TeamTable");
        assert_eq!(
            compare(&partial),
            SchemaState::Missing(vec![
                "column \"LiteLLM_UserTable\".\"user_email\"".into(),
                "table \"LiteLLM_TeamTable\"".into(),
            ])
        );
    }
}
