#!/usr/bin/env bash
# Runs the test suite exactly as CI does. Extra arguments go to nextest,
# e.g. `bash hack/test.sh -p vcsync` or `bash hack/test.sh replay`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
command -v cargo-nextest >/dev/null 2>&1 || {
    echo "error: cargo-nextest not found; install it with: cargo install --locked cargo-nextest" >&2
    exit 1
}
exec cargo nextest run --workspace --profile ci "$@"
