#!/usr/bin/env bash
# Instructions per packet of the pipeline's stages, counted exactly by callgrind (this VM has no
# hardware counters): runs a bench's interleaved pass for one case at a time under
# `valgrind --tool=callgrind`, collecting only inside the stages, and prints the count per
# packet and per stage (each stage's burst loop is one `<S as Stage>::process` symbol).
#   scripts/instr-count.sh [CASE...]                e.g. scripts/instr-count.sh plain_64 vxlan4_64
#   BENCH=pipeline scripts/instr-count.sh [KEY...]   e.g. BENCH=pipeline scripts/instr-count.sh v6
# BENCH is `tunnels` (default; its case names) or `pipeline` (the keys of its CASES: full, hot,
# few, v6). Needs valgrind (apt-get install valgrind). ROUNDS (default 1000) bursts of 64 per
# case. `scripts/instr-count.py FILE BIN PACKETS START END` then prints a stage's instructions
# with their counts (START/END: the symbol's address range from the per-stage list).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${ROUNDS:-1000}
bench=${BENCH:-tunnels}
case $bench in
    tunnels) only=TUNNELS_BENCH_ONLY; nrounds=TUNNELS_BENCH_ROUNDS; defaults="plain_64 vxlan4_64"
        # The bench checks every case once (17 bursts) before the pass.
        extra=17 ;;
    pipeline) only=PIPELINE_BENCH_ONLY; nrounds=PIPELINE_BENCH_ROUNDS; defaults="full v6"
        # It checks one IPv4 and one IPv6 burst first: one of them counts (~0.1% off at 1000).
        extra=1 ;;
    *) echo "BENCH must be tunnels or pipeline" >&2; exit 2 ;;
esac
bin=$(cargo bench -p ferroplane-benches --bench "$bench" --no-run 2>&1 |
    grep -o "target/release/deps/$bench-[0-9a-f]*" | head -1)
# shellcheck disable=SC2086
[ "$#" -gt 0 ] || set -- $defaults
for case in "$@"; do
    out=target/callgrind.$bench.$case
    env "$only=$case" "$nrounds=$rounds" valgrind --tool=callgrind \
        --dump-instr=yes --toggle-collect='*Stage>::process*' --callgrind-out-file="$out" \
        "$bin" --bench zzznomatch >/dev/null 2>&1
    packets=$(( (rounds + extra) * 64 ))
    echo "== $bench $case ($out)"
    python3 scripts/instr-count.py "$out" "$bin" "$packets"
done
