#!/usr/bin/env bash
# The whole test suite, as README gives it:
#   scripts/test.sh [extra args for cargo test]
#
# Starts PostgreSQL if needed, installs the pinned tools into .tools/, starts
# one Kubernetes control plane for the run (scripts/kube-up.sh; stopped on
# exit), builds the LiteLLM schema template database, then runs rustfmt, clippy
# and every test target. Tests create their own databases from
# DATABASE_TEST_URL, cloned from $LITELLM_TEMPLATE_DB, and their own namespaces
# on the control plane of $LORG_TEST_KUBECONFIG.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

step_started=$SECONDS
step() {
    echo
    echo "==> [test.sh] $*"
    step_started=$SECONDS
}
done_step() { echo "==> [test.sh] ok ($((SECONDS - step_started))s)"; }

# The template and the tests must use the same server.
export PGHOST=127.0.0.1 PGPORT=5432 PGUSER=postgres
export DATABASE_TEST_URL=postgres://postgres@127.0.0.1:5432/postgres
export LITELLM_TEMPLATE_DB=litellm_template_0_4_110

step "ensure-postgres"
bash scripts/ensure-postgres.sh 2>&1
done_step

step "install-tools"
bash scripts/install-tools.sh 2>&1
# shellcheck source=/dev/null
source .tools/env.sh
done_step

step "helm and promtool (scripts/go-tools.sh helm promtool)"
# The real helm and promtool CLIs, built from their Go modules (cached in
# .tools/gotools/); the chart tests and the operator tests render the chart with
# helm, tests/monitoring.rs checks and unit-tests the chart's alert rules with
# promtool.
bash scripts/go-tools.sh helm promtool 2>&1
done_step

step "control plane (scripts/kube-up.sh)"
# One kube-apiserver + etcd + kube-controller-manager for every test binary of
# the run (each test works in namespaces of its own); a fresh one each run.
KUBE_DIR=$ROOT/target/kube-test
bash scripts/kube-down.sh "$KUBE_DIR" >/dev/null 2>&1 || true
stop_control_plane() {
    local pid rss
    pid=$(cat "$KUBE_DIR/controlplane.pid" 2>/dev/null || true)
    rss=$(ps -o rss= -p "$pid" 2>/dev/null | tr -d ' ' || true)
    if [ -n "$rss" ]; then
        echo "==> [test.sh] control plane RSS at the end: $((rss / 1024)) MiB (pid $pid)"
    fi
    bash scripts/kube-down.sh "$KUBE_DIR" >/dev/null 2>&1 || true
}
trap stop_control_plane EXIT
bash scripts/kube-up.sh "$KUBE_DIR" 2>&1
export LORG_TEST_KUBECONFIG=$KUBE_DIR/admin.kubeconfig
done_step

step "litellm-template-db ($LITELLM_TEMPLATE_DB)"
bash scripts/litellm-template-db.sh 2>&1
done_step

step "drop databases left by interrupted test runs"
psql -v ON_ERROR_STOP=1 -qAt -d postgres -c "SELECT datname FROM pg_database WHERE datname LIKE 'lorgtest\_%'" |
    while read -r db; do psql -q -d postgres -c "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)"; done
done_step

echo
echo "==> [test.sh] environment:"
echo "    DATABASE_TEST_URL=$DATABASE_TEST_URL"
echo "    LITELLM_TEMPLATE_DB=$LITELLM_TEMPLATE_DB"
echo "    LITELLM_MIGRATIONS_DIR=$LITELLM_MIGRATIONS_DIR"
echo "    KUBECTL=$KUBECTL"
echo "    LORG_TEST_KUBECONFIG=$LORG_TEST_KUBECONFIG"

step "cargo fmt --check"
cargo fmt --check
done_step

step "cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings
done_step

step "cargo test --all-targets $*"
cargo test --all-targets "$@"
done_step
