#!/usr/bin/env bash
# Instructions per packet of the pipeline's stages, counted exactly by callgrind (this VM has no
# hardware counters): runs the tunnels bench's interleaved pass for one case at a time under
# `valgrind --tool=callgrind`, collecting only inside the stages, and prints the count per
# packet and per stage (each stage's burst loop is one `<S as Stage>::process` symbol).
#   scripts/instr-count.sh [CASE...]        e.g. scripts/instr-count.sh plain_64 vxlan4_64
# Needs valgrind (apt-get install valgrind). ROUNDS (default 1000) bursts of 64 per case.
# `scripts/instr-count.py FILE BIN PACKETS START END` then prints a stage's instructions with
# their counts (START/END: the symbol's address range from the per-stage list).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${ROUNDS:-1000}
bin=$(cargo bench -p ferroplane-benches --bench tunnels --no-run 2>&1 |
    grep -o "target/release/deps/tunnels-[0-9a-f]*" | head -1)
[ "$#" -gt 0 ] || set -- plain_64 vxlan4_64
for case in "$@"; do
    out=target/callgrind.$case
    TUNNELS_BENCH_ONLY=$case TUNNELS_BENCH_ROUNDS=$rounds valgrind --tool=callgrind \
        --dump-instr=yes --toggle-collect='*Stage>::process*' --callgrind-out-file="$out" \
        "$bin" --bench zzznomatch >/dev/null 2>&1
    # The bench checks every case once (17 bursts) before the pass.
    packets=$(( (rounds + 17) * 64 ))
    echo "== $case ($out)"
    python3 scripts/instr-count.py "$out" "$bin" "$packets"
done
