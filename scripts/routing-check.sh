#!/usr/bin/env bash
# The whole test suite, with the API tests' PostgreSQL logging every statement, then the check
# that each statement the service ran on a distributed table is routed by its provider
# (tests/routing.rs, deploy/citus.md). CI runs this instead of a plain `cargo test`: the suite
# runs once. Arguments go to that `cargo test` (e.g. `-- tenancy::` to record a part only; the
# check then judges what that part ran).
#
# NUMBERING_STATEMENT_LOG=dir keeps the log there (else a temporary directory, removed after).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [ -n "${NUMBERING_STATEMENT_LOG:-}" ]; then
  dir=$NUMBERING_STATEMENT_LOG
  mkdir -p "$dir"
  rm -f "$dir"/statements-*
else
  dir=$(mktemp -d "${TMPDIR:-/tmp}/numbering-statements.XXXXXX")
  trap 'rm -rf "$dir"' EXIT
fi
export NUMBERING_STATEMENT_LOG=$dir

echo "recording every statement of the suite in $dir"
cargo test "$@"

echo "checking that each statement on a distributed table is routed by its provider"
cargo test --test routing -- --ignored --nocapture
