#!/bin/sh
# Check the manifests under $1 without a database: schema, the CRDs' rules, rules across
# objects, duplicate names. For jobs that must not hold database credentials (forks).
set -eu
manifests=${1:?usage: validate.sh MANIFESTS}
litellm-org-operator validate -f "$manifests"
