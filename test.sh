#!/usr/bin/env bash
# ferroplane's tests: installs what is missing, then runs every test of the workspace.
# Tests that build network namespaces must not run in parallel on 2 cores: one thread per binary.
set -euo pipefail
cd "$(dirname "$0")"
./scripts/install-deps.sh
cargo build -q --workspace --bins
cargo test --workspace "$@" -- --test-threads=1
