#!/usr/bin/env bash
# Stop a control plane started by scripts/kube-up.sh.
#
# Usage:
#   scripts/kube-down.sh DIR
#
# Sends SIGTERM to the pid in DIR/controlplane.pid (only if that process is
# the control plane for DIR), waits up to KUBE_DOWN_TIMEOUT seconds (default
# 30), then SIGKILLs it. Removes DIR/etcd, DIR/ready and DIR/controlplane.pid;
# keeps DIR/controlplane.log, DIR/pki and DIR/admin.kubeconfig (stale once
# stopped). Touches nothing outside DIR. Idempotent: exits 0 when nothing runs.
set -euo pipefail

log() { echo "kube-down: $*" >&2; }

[ $# -eq 1 ] || { echo "usage: $0 DIR" >&2; exit 2; }
[ -d "$1" ] || { log "$1: no such directory, nothing to stop"; exit 0; }
DIR=$(cd "$1" && pwd)
TIMEOUT=${KUBE_DOWN_TIMEOUT:-30}
PIDFILE=$DIR/controlplane.pid

# Running = exists and is not a zombie (an exited process stays a zombie
# until init reaps it).
alive() {
  local st
  [ -n "${1:-}" ] || return 1
  st=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null) || return 1
  [ -n "$st" ] && [ "${st%% *}" != Z ]
}

pid=$(cat "$PIDFILE" 2>/dev/null || true)
if [ -n "$pid" ] && alive "$pid"; then
  # Guard against a recycled pid: the process must be ours, for this DIR.
  cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null || true)
  case "$cmdline" in
    *controlplane*"--dir $DIR "*)
      kill -TERM "$pid" 2>/dev/null || true
      end=$(( $(date +%s) + TIMEOUT ))
      while alive "$pid" && [ "$(date +%s)" -lt "$end" ]; do sleep 0.2; done
      if alive "$pid"; then
        log "pid $pid still running after ${TIMEOUT}s, sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        for _ in $(seq 1 25); do alive "$pid" || break; sleep 0.2; done
      fi
      log "stopped pid $pid"
      ;;
    *)
      log "pid $pid in $PIDFILE is not this control plane ($cmdline); not signalling it"
      ;;
  esac
else
  log "not running in $DIR"
fi
rm -rf "$DIR/etcd"
rm -f "$DIR/ready" "$PIDFILE"
