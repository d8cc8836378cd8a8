#!/usr/bin/env bash
# Format check and clippy, as CI runs them. `bash hack/lint.sh --fix` formats
# the tree instead of only checking it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [ "${1:-}" = "--fix" ]; then
    cargo fmt --all
else
    cargo fmt --all --check
fi
cargo clippy --workspace --all-targets -- -D warnings
