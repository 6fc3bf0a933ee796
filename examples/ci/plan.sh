#!/bin/sh
# Plan the manifests under $1 against LiteLLM's database and write what a pull-request bot
# posts: $2/plan.md (the comment), $2/plan.json (schema litellm-org-operator/plan/v1) and
# $2/exit-code. Exit 0 when the plan ran (changes or not), 1 when it found errors; the
# comment is written either way, so the errors are posted too.
#
# Needs: litellm-org-operator on PATH, DATABASE_URL (a login that can read LiteLLM's tables)
# and LITELLM_ORG_OPERATOR_MANAGER (this repository's manager name; --prune needs it).
set -u
manifests=${1:?usage: plan.sh MANIFESTS OUTPUT_DIR}
out=${2:?usage: plan.sh MANIFESTS OUTPUT_DIR}
mkdir -p "$out"

# One run, two formats: the comment and the JSON describe the same plan.
litellm-org-operator plan -f "$manifests" --prune -o markdown \
  --output-file "json=$out/plan.json" >"$out/plan.md"
code=$?
echo "$code" >"$out/exit-code"
case "$code" in
  0) echo "no changes" ;;
  2) echo "changes pending: see $out/plan.md" ;;
  *) echo "the plan has errors (exit $code): see $out/plan.md" >&2; exit 1 ;;
esac
