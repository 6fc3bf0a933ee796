#!/usr/bin/env bash
# Make sure a PostgreSQL server the tests can use answers on 127.0.0.1:5432.
#
#   scripts/ensure-postgres.sh
#
# - Something already answers there: nothing is changed (whoever runs it keeps
#   their own server); we only check that the tests can log in as `postgres`
#   without a password, and say how to fix it when they cannot.
# - Nothing answers: install Debian's `postgresql` package when its server
#   binaries are missing (apt-get update first; without letting Debian create
#   and start its own `main` cluster), then create — once — a cluster of the
#   test suite's own in $LORG_PGDATA (default
#   /var/lib/postgresql/litellm-org-operator-test) and start it. That cluster
#   listens on 127.0.0.1:5432 only, trusts local TCP logins (no password: it is
#   a throw-away test server, never reachable from another machine) and runs
#   with autovacuum off, as the hot-statement tests and benchmarks assume (a
#   freshly loaded LiteLLM database has no statistics).
#
# Debian's own clusters and their configuration under /etc/postgresql are left
# alone. Safe to run concurrently (a lock serialises starters). Stop the test
# server with:
#   runuser -u postgres -- /usr/lib/postgresql/*/bin/pg_ctl -D "$LORG_PGDATA" stop
set -euo pipefail

HOST=127.0.0.1
PORT=5432
WAIT_SECONDS=${ENSURE_POSTGRES_WAIT_SECONDS:-60}
PGDATA_DIR=${LORG_PGDATA:-/var/lib/postgresql/litellm-org-operator-test}

log() { echo "ensure-postgres: $*" >&2; }
die() { echo "ensure-postgres: ERROR: $*" >&2; exit 1; }

answers() { command -v pg_isready >/dev/null 2>&1 && pg_isready -q -h "$HOST" -p "$PORT"; }

# The server answers: check that the tests' login works, change nothing.
check_login() {
    if ! PGCONNECT_TIMEOUT=10 psql -X -w -q -At -h "$HOST" -p "$PORT" -U postgres -d postgres \
        -c 'SELECT 1' >/dev/null 2>&1; then
        die "a server answers on $HOST:$PORT but refuses a passwordless login as user postgres over TCP;" \
            "the tests need one: allow it in that server's pg_hba.conf (\"host all all 127.0.0.1/32 trust\")," \
            "or stop that server so this script starts the test suite's own"
    fi
    local av
    av=$(psql -X -w -q -At -h "$HOST" -p "$PORT" -U postgres -d postgres -c 'SHOW autovacuum')
    [[ $av == off ]] || log "note: autovacuum is $av on this server; the suite's own server runs with it off"
}

if answers; then
    log "PostgreSQL already accepting connections on $HOST:$PORT"
    check_login
    exit 0
fi

# Serialise concurrent starters on this machine, then look again: another
# process may have installed or started the server while we waited.
exec 9>"${TMPDIR:-/tmp}/ensure-postgres-$PORT.lock"
flock -w 900 9 || die "could not take the start lock ${TMPDIR:-/tmp}/ensure-postgres-$PORT.lock within 900s"
if answers; then
    log "PostgreSQL accepting connections on $HOST:$PORT (started by another process)"
    check_login
    exit 0
fi

# --- install ------------------------------------------------------------------
bindir() { find /usr/lib/postgresql -mindepth 2 -maxdepth 3 -type f -name initdb -printf '%h\n' 2>/dev/null | sort -V | tail -n 1; }
BIN=$(bindir || true)
if [[ -z $BIN ]] || ! command -v pg_isready >/dev/null 2>&1 || ! command -v psql >/dev/null 2>&1; then
    [[ $(id -u) == 0 ]] || die "PostgreSQL is not installed and this is not root: install Debian's postgresql package"
    command -v apt-get >/dev/null 2>&1 || die "PostgreSQL is not installed and there is no apt-get: install a PostgreSQL server"
    # Debian would create and start a cluster "main" on 5432 with password
    # authentication; the suite runs its own instead.
    mkdir -p /etc/postgresql-common
    if [[ ! -e /etc/postgresql-common/createcluster.conf ]]; then
        echo "create_main_cluster = false" >/etc/postgresql-common/createcluster.conf
    fi
    log "installing Debian's postgresql (apt-get update, apt-get install postgresql)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2 || die "apt-get update failed"
    apt-get install -y -qq --no-install-recommends postgresql postgresql-client >&2 \
        || die "apt-get install postgresql failed"
    BIN=$(bindir || true)
    [[ -n $BIN ]] || die "postgresql installed but no initdb under /usr/lib/postgresql/*/bin"
    # The package may have started a cluster of its own after all.
    if answers; then
        log "the package started a server on $HOST:$PORT"
        check_login
        exit 0
    fi
fi
log "server binaries: $BIN"

# --- the suite's own cluster -------------------------------------------------
as_postgres() {
    if [[ $(id -un) == postgres ]]; then "$@"; else runuser -u postgres -- "$@"; fi
}
id postgres >/dev/null 2>&1 || die "no user postgres (the postgresql package creates it)"

if [[ ! -f $PGDATA_DIR/PG_VERSION ]]; then
    log "creating the test cluster in $PGDATA_DIR"
    mkdir -p "$PGDATA_DIR"
    chown postgres:postgres "$PGDATA_DIR"
    chmod 700 "$PGDATA_DIR"
    as_postgres "$BIN/initdb" -D "$PGDATA_DIR" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null \
        || die "initdb $PGDATA_DIR failed"
    cat >>"$PGDATA_DIR/postgresql.conf" <<EOF

# scripts/ensure-postgres.sh: the test suite's own server.
listen_addresses = '$HOST'
port = $PORT
unix_socket_directories = '$PGDATA_DIR'
autovacuum = off
max_connections = 200
EOF
fi

log "starting the test cluster $PGDATA_DIR on $HOST:$PORT"
# 9>&-: the server must not inherit the lock's descriptor, or it would hold the
# lock for as long as it runs.
as_postgres "$BIN/pg_ctl" -D "$PGDATA_DIR" -l "$PGDATA_DIR/server.log" -w -t "$WAIT_SECONDS" start >/dev/null 9>&- \
    || { tail -n 20 "$PGDATA_DIR/server.log" >&2 || true; die "the test cluster did not start"; }

deadline=$((SECONDS + WAIT_SECONDS))
until answers; do
    ((SECONDS < deadline)) || die "PostgreSQL still not accepting connections on $HOST:$PORT after ${WAIT_SECONDS}s"
    sleep 0.5
done
check_login
log "PostgreSQL accepting connections on $HOST:$PORT"
