//go:build tools

// Package tools records promtool as a dependency of this module so that
// `go mod tidy` keeps its requirements; scripts/go-tools.sh builds it with
// `go build github.com/prometheus/prometheus/cmd/promtool` inside this directory.
package tools

import _ "github.com/prometheus/prometheus/cmd/promtool"
