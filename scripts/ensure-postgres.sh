#!/usr/bin/env bash
# Make sure the local PostgreSQL server answers on 127.0.0.1:5432.
#
# Idempotent: does nothing when the server already answers. Otherwise starts
# the Debian cluster "main" (whatever major version is installed under
# /etc/postgresql) and waits, bounded, until it accepts connections.
set -euo pipefail

HOST=127.0.0.1
PORT=5432
WAIT_SECONDS=${ENSURE_POSTGRES_WAIT_SECONDS:-30}

log() { echo "ensure-postgres: $*" >&2; }

if ! command -v pg_isready >/dev/null 2>&1; then
    log "ERROR: pg_isready not found; install the PostgreSQL client (apt-get install postgresql-client)"
    exit 1
fi

if pg_isready -q -h "$HOST" -p "$PORT"; then
    log "PostgreSQL already accepting connections on $HOST:$PORT"
    exit 0
fi

if [[ ! -d /etc/postgresql ]] || [[ -z "$(ls -A /etc/postgresql)" ]]; then
    log "ERROR: PostgreSQL is not answering on $HOST:$PORT and no cluster is configured under /etc/postgresql"
    exit 1
fi

# Pick the cluster version: the one whose config listens on $PORT, or, failing
# that, the highest installed version.
version=""
versions=$(find /etc/postgresql -mindepth 1 -maxdepth 1 -type d -printf '%f\n' | sort -V)
for v in $versions; do
    conf=/etc/postgresql/$v/main/postgresql.conf
    [[ -f $conf ]] || continue
    if grep -Eq "^[[:space:]]*port[[:space:]]*=[[:space:]]*$PORT\b" "$conf"; then
        version=$v
    fi
done
if [[ -z $version ]]; then
    version=$(tail -n 1 <<<"$versions")
fi

# Serialise concurrent starters on this machine, then look again: another
# process may have started the server while we waited for the lock.
exec 9>"${TMPDIR:-/tmp}/ensure-postgres-$PORT.lock"
flock -w "$WAIT_SECONDS" 9 || log "could not take the start lock within ${WAIT_SECONDS}s; going on without it"
if pg_isready -q -h "$HOST" -p "$PORT"; then
    log "PostgreSQL accepting connections on $HOST:$PORT (started by another process)"
    exit 0
fi

log "PostgreSQL not answering on $HOST:$PORT; starting cluster $version/main"
# Another process may be starting it at the same moment ("already running"):
# tolerate a failed start here and judge by readiness below.
# 9>&-: the server must not inherit the lock's file descriptor, or it would
# hold the lock for as long as it runs.
if ! pg_ctlcluster --skip-systemctl-redirect "$version" main start 9>&-; then
    log "pg_ctlcluster start returned non-zero (may already be starting); waiting for readiness anyway"
fi

deadline=$((SECONDS + WAIT_SECONDS))
until pg_isready -q -h "$HOST" -p "$PORT"; do
    if ((SECONDS >= deadline)); then
        log "ERROR: PostgreSQL still not accepting connections on $HOST:$PORT after ${WAIT_SECONDS}s"
        log "cluster status:"
        pg_lsclusters >&2 || true
        exit 1
    fi
    sleep 0.5
done
log "PostgreSQL accepting connections on $HOST:$PORT"
