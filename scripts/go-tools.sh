#!/usr/bin/env bash
# Build the real helm and promtool CLIs from their Go modules, at the versions
# pinned in tests/gotools/<tool>/go.mod (each a small module whose tools.go
# imports the CLI's main package, go.sum committed):
#
#   helm      helm.sh/helm/v4/cmd/helm                          (tests/gotools/helm)
#   promtool  github.com/prometheus/prometheus/cmd/promtool     (tests/gotools/promtool)
#
# Usage:
#   scripts/go-tools.sh                  # both
#   scripts/go-tools.sh helm|promtool    # one
#
# Results:
#   .tools/bin/helm, .tools/bin/promtool     symlinks to the cached builds
#   .tools/gotools/<tool>-<hash>             the binaries, keyed by a hash of the
#                                            module's go.mod, go.sum, tools.go,
#                                            the Go version and this recipe; an
#                                            unchanged key skips the build
# The first build takes minutes (the Go build cache ~/.cache/go-build makes a
# rebuild in a fresh clone fast). Builds are serialised by a flock, so
# concurrent runs are safe. Version information is stamped as the upstream
# release builds do (helm version / promtool --version report the pins).
#
# Environment:
#   GO   go command (default: go)
set -euo pipefail

log() { echo "go-tools: $*" >&2; }
die() { echo "go-tools: ERROR: $*" >&2; exit 1; }

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TOOLS=$ROOT/.tools
CACHE=$TOOLS/gotools
GO=${GO:-go}
RECIPE=1 # bump when the build commands below change
command -v "$GO" >/dev/null 2>&1 || die "$GO not found"
mkdir -p "$TOOLS/bin" "$CACHE"
GOVERSION=$("$GO" env GOVERSION)

# build_tool NAME MODULE PACKAGE
build_tool() {
  local name=$1 module=$2 pkg=$3
  local dir=$ROOT/tests/gotools/$name
  [ -f "$dir/go.mod" ] || die "$dir/go.mod missing"
  local key bin
  key=$(cd "$dir" && { echo "$GOVERSION $RECIPE"; sha256sum go.mod go.sum tools.go; } | sha256sum | cut -c1-16)
  bin=$CACHE/$name-$key
  if [ ! -x "$bin" ]; then
    exec 9>"$CACHE/.build.lock"
    flock -w 3600 9 || die "timed out waiting for another build ($CACHE/.build.lock)"
    if [ ! -x "$bin" ]; then
      local version ldflags="-s -w" start
      version=$(cd "$dir" && "$GO" list -m -f '{{.Version}}' "$module") || die "go list failed for $module"
      case $name in
        helm)
          ldflags+=" -X helm.sh/helm/v4/internal/version.version=$version"
          ldflags+=" -X helm.sh/helm/v4/internal/version.gitTreeState=clean"
          ;;
        promtool)
          # Module v0.3MM.P is Prometheus 3.MM.P; the module ships its VERSION file.
          local moddir
          moddir=$(cd "$dir" && "$GO" list -f '{{.Module.Dir}}' "$pkg") || die "go list failed for $pkg"
          ldflags+=" -X github.com/prometheus/common/version.Version=$(cat "$moddir/VERSION")"
          ldflags+=" -X github.com/prometheus/common/version.Revision=$version"
          ldflags+=" -X github.com/prometheus/common/version.Branch=HEAD"
          ;;
      esac
      log "building $name $version into $bin (first build takes minutes)"
      start=$(date +%s)
      (cd "$dir" && "$GO" build -trimpath -ldflags="$ldflags" -o "$bin.tmp.$$" "$pkg") \
        || { rm -f "$bin.tmp.$$"; die "go build $pkg failed"; }
      mv -f "$bin.tmp.$$" "$bin"
      log "built $name in $(( $(date +%s) - start ))s"
      find "$CACHE" -maxdepth 1 -name "$name-*" ! -name "$name-$key" -delete 2>/dev/null || true
    fi
    exec 9>&-
  fi
  ln -sfn "../gotools/$name-$key" "$TOOLS/bin/$name"
  log "$name: $TOOLS/bin/$name -> $bin"
}

[ $# -gt 0 ] || set -- helm promtool
for tool in "$@"; do
  case $tool in
    helm) build_tool helm helm.sh/helm/v4 helm.sh/helm/v4/cmd/helm ;;
    promtool) build_tool promtool github.com/prometheus/prometheus github.com/prometheus/prometheus/cmd/promtool ;;
    *) die "unknown tool: $tool (known: helm, promtool)" ;;
  esac
done
