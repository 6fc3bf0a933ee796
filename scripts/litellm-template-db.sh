#!/usr/bin/env bash
# Build the Postgres database $LITELLM_TEMPLATE_DB (default
# litellm_template_0_4_110) holding LiteLLM's own schema, made by applying
# every migration.sql of litellm-proxy-extras in lexical (byte) order of its
# folder name, as Prisma does. Tests clone it with
#   CREATE DATABASE x TEMPLATE litellm_template_0_4_110
#
# - Idempotent: a template already marked complete (COMMENT ON DATABASE ...
#   IS 'complete') is left alone.
# - Safe to run concurrently: builders serialise on a Postgres advisory lock,
#   and the schema is built under a temporary name and only renamed to the
#   final name once complete and verified, so the final name never names a
#   half-built database (even if a run is killed).
# - Leaves no session connected to the template (required by CREATE DATABASE
#   ... TEMPLATE); fails with the list of sessions if someone else is.
#
# Connection: the usual libpq variables; defaults PGHOST=127.0.0.1
# PGPORT=5432 PGUSER=postgres, administrative database "postgres".
# Migrations: $LITELLM_MIGRATIONS_DIR (set by .tools/env.sh), default
# .tools/litellm-proxy-extras/litellm_proxy_extras/migrations.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TEMPLATE_DB=${LITELLM_TEMPLATE_DB:-litellm_template_0_4_110}
MIGRATIONS_DIR=${LITELLM_MIGRATIONS_DIR:-$ROOT/.tools/litellm-proxy-extras/litellm_proxy_extras/migrations}
ADMIN_DB=${LITELLM_TEMPLATE_ADMIN_DB:-postgres}
LOCK_TIMEOUT_SECONDS=${LITELLM_TEMPLATE_LOCK_TIMEOUT_SECONDS:-900}
MARKER=complete
REQUIRED_TABLES=(
    LiteLLM_OrganizationTable
    LiteLLM_BudgetTable
    LiteLLM_OrganizationMembership
    LiteLLM_UserTable
    LiteLLM_TeamTable
    LiteLLM_VerificationToken
)

export PGHOST=${PGHOST:-127.0.0.1} PGPORT=${PGPORT:-5432} PGUSER=${PGUSER:-postgres}
export PGAPPNAME=litellm-template-db
# Migrations use IF [NOT] EXISTS a lot; keep their NOTICEs out of the log.
export PGOPTIONS="${PGOPTIONS:+$PGOPTIONS }-c client_min_messages=warning"

log() { echo "litellm-template-db: $*" >&2; }
die() { echo "litellm-template-db: ERROR: $*" >&2; exit 1; }

[[ $TEMPLATE_DB =~ ^[a-z_][a-z0-9_]*$ ]] || die "template name '$TEMPLATE_DB' must match [a-z_][a-z0-9_]*"
((${#TEMPLATE_DB} <= 40)) || die "template name '$TEMPLATE_DB' is too long (max 40 characters)"
command -v psql >/dev/null 2>&1 || die "psql not found"
[[ -d $MIGRATIONS_DIR ]] || die "migrations folder $MIGRATIONS_DIR not found (run scripts/install-tools.sh first)"

# psql on the administrative database; names used in SQL below are validated
# identifiers, so plain interpolation is safe.
psql_admin() { psql -X -q -A -t -v ON_ERROR_STOP=1 -d "$ADMIN_DB" "$@"; }

db_exists() { [[ $(psql_admin -c "SELECT 1 FROM pg_database WHERE datname = '$1'") == 1 ]]; }
db_complete() {
    [[ $(psql_admin -c "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = '$1'") == "$MARKER" ]]
}

# Wait (bounded) until no backend is connected to the template: a psql that
# just exited may leave its backend alive for a few milliseconds.
ensure_no_sessions() {
    local db=$1 deadline=$((SECONDS + 10)) n
    while :; do
        n=$(psql_admin -c "SELECT count(*) FROM pg_stat_activity WHERE datname = '$db' AND pid <> pg_backend_pid()")
        ((n == 0)) && return 0
        if ((SECONDS >= deadline)); then
            log "sessions still connected to $db:"
            psql_admin -F ' | ' -c "SELECT pid, usename, application_name, client_addr, state, backend_start FROM pg_stat_activity WHERE datname = '$db'" >&2 || true
            die "$n session(s) connected to template $db; CREATE DATABASE ... TEMPLATE $db would fail. Close them (or: SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '$db')"
        fi
        sleep 0.2
    done
}

report_ready() {
    ensure_no_sessions "$TEMPLATE_DB"
    log "template database $TEMPLATE_DB is ready ($*)"
}

# --- fast path ---------------------------------------------------------------
if db_complete "$TEMPLATE_DB"; then
    report_ready "already complete"
    exit 0
fi

# --- take the advisory lock ----------------------------------------------------
# A psql coprocess on the admin database holds a session-level advisory lock
# for as long as this script runs; when the script exits (however it exits),
# the coprocess sees EOF on its stdin, its session ends and the lock is freed.
coproc LOCKER { exec psql -X -q -A -t -v ON_ERROR_STOP=1 -d "$ADMIN_DB" 2>&1; }
LOCKER_IN=${LOCKER[1]}
LOCKER_OUT=${LOCKER[0]}
printf '%s\n' \
    "SELECT pg_advisory_lock(hashtext('litellm-template-db'), hashtext('$TEMPLATE_DB'));" \
    '\echo LOCKED' >&"$LOCKER_IN"
log "waiting for the build lock for $TEMPLATE_DB"
lock_deadline=$((SECONDS + LOCK_TIMEOUT_SECONDS))
locked=0
while ((SECONDS < lock_deadline)); do
    if read -r -t 5 line <&"$LOCKER_OUT"; then
        [[ $line == LOCKED ]] && { locked=1; break; }
        [[ -n $line ]] && log "lock session: $line"
    else
        # Timed out (try again) or EOF (psql died).
        # shellcheck disable=SC2153 # LOCKER_PID is set by coproc
        kill -0 "$LOCKER_PID" 2>/dev/null || die "the lock session (psql) exited before taking the lock"
    fi
done
((locked)) || die "could not take the advisory lock for $TEMPLATE_DB within ${LOCK_TIMEOUT_SECONDS}s (another build hung?)"

release_lock() {
    if [[ -n ${LOCKER_IN:-} ]]; then
        exec {LOCKER_IN}>&- || true
        LOCKER_IN=
        wait "$LOCKER_PID" 2>/dev/null || true
    fi
}

# Someone else may have finished the template while we waited.
if db_complete "$TEMPLATE_DB"; then
    release_lock
    report_ready "built by a concurrent run"
    exit 0
fi

# --- build under a temporary name ------------------------------------------------
# Leftovers of killed runs: nobody else builds while we hold the lock.
for stale in $(psql_admin -c "SELECT datname FROM pg_database WHERE datname LIKE '${TEMPLATE_DB}\_\_build\_%'"); do
    log "dropping leftover build database $stale"
    psql_admin -c "DROP DATABASE IF EXISTS \"$stale\" WITH (FORCE)"
done
if db_exists "$TEMPLATE_DB"; then
    log "dropping incomplete database $TEMPLATE_DB (not marked '$MARKER')"
    psql_admin -c "DROP DATABASE \"$TEMPLATE_DB\" WITH (FORCE)"
fi

BUILD_DB=${TEMPLATE_DB}__build_$$
script=
cleanup() {
    local rc=$?
    [[ -n $script ]] && rm -f "$script"
    if ((rc != 0)) && [[ -n ${BUILD_DB:-} ]]; then
        psql_admin -c "DROP DATABASE IF EXISTS \"$BUILD_DB\" WITH (FORCE)" >/dev/null 2>&1 || true
    fi
    release_lock
    exit "$rc"
}
trap cleanup EXIT

t0=$(date +%s.%N)
# Migration folders in byte order of their names (LC_ALL=C), as Prisma orders
# them. Folder names may contain spaces.
mapfile -d '' folders < <(find "$MIGRATIONS_DIR" -mindepth 1 -maxdepth 1 -type d -printf '%f\0' | LC_ALL=C sort -z)
((${#folders[@]} > 0)) || die "no migration folders under $MIGRATIONS_DIR"
script=$(mktemp "${TMPDIR:-/tmp}/litellm-template-db.XXXXXX.sql")
# Each migration runs in its own transaction, as under Prisma (which sends a
# migration as one multi-statement query, i.e. one implicit transaction; some
# migrations rely on it with SET LOCAL). A migration using CREATE INDEX
# CONCURRENTLY (a single statement, which cannot run in a transaction) runs
# bare.
declare -A bare=()
while IFS= read -r path; do
    bare[$path]=1
done < <(cd "$MIGRATIONS_DIR" && awk '!/^[[:space:]]*--/ && tolower($0) ~ /concurrently/ { print FILENAME; nextfile }' ./*/migration.sql)
for f in "${folders[@]}"; do
    sql=$MIGRATIONS_DIR/$f/migration.sql
    [[ -f $sql ]] || die "migration folder '$f' has no migration.sql"
    # psql meta-command argument in single quotes; a quote inside is doubled.
    printf -v include "\\\\i '%s'" "${sql//\'/\'\'}"
    if [[ -n ${bare[./$f/migration.sql]:-} ]]; then
        printf '%s\n' "$include" >>"$script"
    else
        printf 'BEGIN;\n%s\nCOMMIT;\n' "$include" >>"$script"
    fi
done

log "building $TEMPLATE_DB from ${#folders[@]} migrations in $MIGRATIONS_DIR"
psql_admin -c "CREATE DATABASE \"$BUILD_DB\" TEMPLATE template0"
# One session applies all migrations; ON_ERROR_STOP makes the first error
# fatal and psql names the failing migration file and line. Query results (a
# few migrations are a bare SELECT 1) go to /dev/null.
psql -X -q -v ON_ERROR_STOP=1 -d "$BUILD_DB" -f "$script" >/dev/null \
    || die "applying migrations to $BUILD_DB failed (see the psql error above for the migration file)"

printf -v required_sql "'%s'," "${REQUIRED_TABLES[@]}"
missing=$(psql -X -q -A -t -v ON_ERROR_STOP=1 -d "$BUILD_DB" -c "
    SELECT string_agg(t, ', ') FROM unnest(ARRAY[${required_sql%,}]) AS t
    WHERE to_regclass(format('public.%I', t)) IS NULL")
[[ -z $missing ]] || die "after all migrations these tables are missing: $missing"
n_tables=$(psql -X -q -A -t -v ON_ERROR_STOP=1 -d "$BUILD_DB" -c \
    "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")

psql_admin -c "COMMENT ON DATABASE \"$BUILD_DB\" IS '$MARKER'"
psql_admin -c "ALTER DATABASE \"$BUILD_DB\" RENAME TO \"$TEMPLATE_DB\""
BUILD_DB=
t1=$(date +%s.%N)
elapsed=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')

release_lock
report_ready "built in ${elapsed}s: ${#folders[@]} migrations, $n_tables tables in schema public"
