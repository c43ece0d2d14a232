#!/usr/bin/env bash
# ferroplane's tests: installs what is missing, then runs every test of the workspace, and the DPDK
# tests with the `dpdk` feature.
# Tests that build network namespaces must not run in parallel on 2 cores: one thread per binary.
set -euo pipefail
cd "$(dirname "$0")"
./scripts/install-deps.sh
cargo build -q --workspace --bins
cargo test --workspace "$@" -- --test-threads=1
# DPDK ports (the `dpdk` feature): the port and fault tests of the dataplane, then the testbed's
# end-to-end tests against a `ferroplane` built with the feature. DPDK missing is a failure.
cargo build -q -p ferroplane-dataplane --features dpdk --bins
cargo test -p ferroplane-dataplane --features dpdk --lib -- --test-threads=1 port::dpdk
cargo test -p ferroplane-dataplane --features dpdk --test dpdk_ports --test dpdk_faults -- --test-threads=1
cargo test -p ferroplane-testbed --features dpdk --test dpdk -- --test-threads=1
