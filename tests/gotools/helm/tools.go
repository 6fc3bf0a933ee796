//go:build tools

// Package tools records the helm CLI as a dependency of this module so that
// `go mod tidy` keeps its requirements; scripts/go-tools.sh builds it with
// `go build helm.sh/helm/v4/cmd/helm` inside this directory.
package tools

import _ "helm.sh/helm/v4/cmd/helm"
