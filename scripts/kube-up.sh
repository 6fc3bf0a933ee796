#!/usr/bin/env bash
# Start a real, single-process Kubernetes control plane for tests:
# embedded etcd + kube-apiserver + kube-controller-manager (namespace,
# garbage-collector, serviceaccount, serviceaccount-token and
# root-ca-cert-publisher controllers), all on 127.0.0.1, from the Go
# program in tests/controlplane (Kubernetes version pinned in its go.mod).
# No scheduler, no kubelet: pods are stored but never run.
#
# Usage:
#   scripts/kube-up.sh DIR     # prints DIR/admin.kubeconfig (absolute) on stdout
#   scripts/kube-down.sh DIR   # stops it
#
# The binary is built on first use into .tools/controlplane/controlplane-<hash>
# (hash of go.mod, go.sum, *.go and the Go version), so a second run with the
# same sources does not rebuild; builds for concurrent runs are serialised by
# a flock. Several control planes (different DIRs) can run at once: all ports
# are chosen free at start.
#
# Files in DIR:
#   admin.kubeconfig   admin credentials (client cert, O=system:masters);
#                      appears only once the control plane is ready
#   ready              marker (contains the server URL), written after admin.kubeconfig
#   controlplane.pid   pid of the control-plane process
#   controlplane.log   its stdout+stderr (errors only by default)
#   pki/               ca.crt/key, apiserver.crt/key, admin.crt/key, sa.key/pub,
#                      controller-manager.kubeconfig (regenerated at each start)
#   etcd/              etcd data (wiped at each start: every start is a fresh cluster)
#
# Environment:
#   KUBE_UP_TIMEOUT   seconds to wait for readiness (default 180; the build is not counted)
#   KUBE_UP_ARGS      extra controlplane flags, e.g. "--v=2" (verbose logs),
#                     "--controllers=*" or "--port=6443"
#   GO                go command (default: go)
#
# If DIR already has a running, ready control plane, it is reused (exit 0).
# On failure prints the tail of DIR/controlplane.log to stderr, stops the
# process and exits non-zero.
set -euo pipefail

log() { echo "kube-up: $*" >&2; }
die() { echo "kube-up: ERROR: $*" >&2; exit 1; }

[ $# -eq 1 ] || die "usage: $0 DIR"
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SRC=$ROOT/tests/controlplane
CACHE=$ROOT/.tools/controlplane
GO=${GO:-go}
TIMEOUT=${KUBE_UP_TIMEOUT:-180}
mkdir -p "$1"
DIR=$(cd "$1" && pwd)

# --- build (cached) ---------------------------------------------------------
command -v "$GO" >/dev/null 2>&1 || die "$GO not found"
# The Kubernetes version comes from go.mod (the one place it is pinned) and is
# stamped into the binary as release builds do, so /version reports it.
KUBE_VERSION=$(cd "$SRC" && "$GO" list -m -f '{{.Version}}' k8s.io/kubernetes) || die "go list failed"
MAJOR=${KUBE_VERSION#v}; MINOR=${MAJOR#*.}; MAJOR=${MAJOR%%.*}; MINOR=${MINOR%%.*}
LDFLAGS="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  LDFLAGS+=" -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=$MAJOR -X $pkg.gitMinor=$MINOR"
  LDFLAGS+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done
KEY=$(
  cd "$SRC"
  { "$GO" env GOVERSION; echo "$LDFLAGS"; sha256sum go.mod go.sum $(ls *.go | LC_ALL=C sort); } | sha256sum | cut -c1-16
)
BIN=$CACHE/controlplane-$KEY
if [ ! -x "$BIN" ]; then
  mkdir -p "$CACHE"
  exec 9>"$CACHE/.build.lock"
  flock -w 1800 9 || die "timed out waiting for another build ($CACHE/.build.lock)"
  if [ ! -x "$BIN" ]; then
    log "building $BIN (first build takes minutes; the Go build cache makes later ones fast)"
    start=$(date +%s)
    (cd "$SRC" && "$GO" build -trimpath -ldflags="$LDFLAGS" -o "$BIN.tmp.$$" .) \
      || { rm -f "$BIN.tmp.$$"; die "go build failed"; }
    mv -f "$BIN.tmp.$$" "$BIN"
    log "built in $(( $(date +%s) - start ))s"
    # Old builds are no longer needed (a running one keeps its inode).
    find "$CACHE" -maxdepth 1 -name 'controlplane-*' ! -name "controlplane-$KEY" -delete 2>/dev/null || true
  fi
  exec 9>&-
fi

# --- already running? -------------------------------------------------------
# Running = exists and is not a zombie (an exited process stays a zombie
# until init reaps it).
alive() {
  local st
  [ -n "${1:-}" ] || return 1
  st=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null) || return 1
  [ -n "$st" ] && [ "${st%% *}" != Z ]
}
if [ -f "$DIR/controlplane.pid" ]; then
  old=$(cat "$DIR/controlplane.pid" 2>/dev/null || true)
  if alive "$old"; then
    if [ -f "$DIR/ready" ] && "$BIN" --dir "$DIR" --probe 2>/dev/null; then
      log "already running in $DIR (pid $old)"
      echo "$DIR/admin.kubeconfig"
      exit 0
    fi
    die "a control plane (pid $old) is already running in $DIR but is not ready; run scripts/kube-down.sh $DIR first"
  fi
fi

# --- start ------------------------------------------------------------------
rm -f "$DIR/ready" "$DIR/admin.kubeconfig"
# shellcheck disable=SC2086 # KUBE_UP_ARGS is a list of flags
setsid nohup "$BIN" --dir "$DIR" ${KUBE_UP_ARGS:-} >"$DIR/controlplane.log" 2>&1 </dev/null &
PID=$!
log "started pid $PID, waiting up to ${TIMEOUT}s for readiness"

fail() {
  echo "kube-up: ERROR: $*" >&2
  echo "----- last lines of $DIR/controlplane.log -----" >&2
  tail -n 60 "$DIR/controlplane.log" >&2 || true
  echo "-----------------------------------------------" >&2
  if alive "$PID"; then
    kill -TERM "$PID" 2>/dev/null || true
    for _ in $(seq 1 50); do alive "$PID" || break; sleep 0.2; done
    alive "$PID" && kill -KILL "$PID" 2>/dev/null || true
  fi
  exit 1
}

start=$(date +%s)
deadline=$(( start + TIMEOUT ))
while :; do
  if [ -f "$DIR/ready" ] && "$BIN" --dir "$DIR" --probe 2>/dev/null; then
    break
  fi
  if ! alive "$PID"; then
    rc=0; wait "$PID" 2>/dev/null || rc=$?
    fail "control plane exited (status $rc) before it was ready"
  fi
  [ "$(date +%s)" -lt "$deadline" ] || fail "not ready after ${TIMEOUT}s"
  sleep 0.5
done
log "ready in $(( $(date +%s) - start ))s: $(cat "$DIR/ready")"
echo "$DIR/admin.kubeconfig"
