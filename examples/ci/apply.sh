#!/bin/sh
# Apply the manifests under $1 on the default branch: one transaction per object, then the
# prune of what this repository's manager applied and no manifest declares any more (refused
# as a whole if anything failed). Exit 0 applied, 1 errors.
#
# Needs: litellm-org-operator on PATH, DATABASE_URL (a login that can write LiteLLM's tables
# and the ledger's schema) and LITELLM_ORG_OPERATOR_MANAGER.
set -eu
manifests=${1:?usage: apply.sh MANIFESTS}
litellm-org-operator apply -f "$manifests" --prune
