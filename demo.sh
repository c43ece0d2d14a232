#!/usr/bin/env bash
# ferroplane's demo: installs what is missing, builds, and runs the main job.
set -euo pipefail
cd "$(dirname "$0")"
./scripts/install-deps.sh
cargo build --release -q -p ferroplane-dataplane
exec target/release/ferroplane demo
