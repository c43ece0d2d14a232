#!/usr/bin/env bash
# Offline demo: the bundled capture (examples/capture/) through `ferroplane replay` with
# examples/router.toml, and what came out, decoded by tshark.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-target/release/ferroplane}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
"$bin" check -c examples/router.toml
"$bin" replay -c examples/router.toml \
  --in left=examples/capture/left.pcap --in right=examples/capture/right.pcap \
  --out left="$out/left.pcap" --out right="$out/right.pcap"
for p in left right; do
  echo
  echo "== sent on $p (tshark):"
  tshark -r "$out/$p.pcap" -t r 2>/dev/null || true
done
