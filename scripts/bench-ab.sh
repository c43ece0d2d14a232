#!/usr/bin/env bash
# A/B of one criterion bench between two git revisions, on this noisy VM: builds the bench at
# BASE (a worktree under target/) and at NEW (another worktree; default: the working tree itself),
# then runs the two binaries alternately,
# ROUNDS times each, printing the interleaved pass of each run (the bench's `--bench zzznomatch`
# skips criterion's own cases and runs only that pass). Compare the 10th percentiles and paired
# differences run by run: alternating makes both see the same load.
#   scripts/bench-ab.sh BASE [BENCH] [ROUNDS] [NEW]     e.g. scripts/bench-ab.sh HEAD~1 tunnels 3
set -euo pipefail
cd "$(dirname "$0")/.."
base=${1:?usage: bench-ab.sh BASE [BENCH] [ROUNDS]}
bench=${2:-tunnels}
rounds=${3:-3}
newrev=${4:-}
tree=target/bench-ab-base
newtree=target/bench-ab-new-tree
build() { # dir -> path of the bench binary it builds
    (cd "$1" && cargo bench -p ferroplane-benches --bench "$bench" --no-run 2>&1) |
        grep -o "target/release/deps/$bench-[0-9a-f]*" | head -1 | sed "s|^|$1/|"
}
rm -rf "$tree" "$newtree"
git worktree prune
git worktree add -q --detach "$tree" "$base"
trap 'git worktree remove --force "$tree"; [ -z "$newrev" ] || git worktree remove --force "$newtree"' EXIT
# The base builds into this tree's target dir: dependencies are shared, only ours rebuild.
old=$(CARGO_TARGET_DIR="$PWD/target" build "$tree" | sed "s|^$tree/||")
cp "$old" target/bench-ab-old
if [ -n "$newrev" ]; then
    git worktree add -q --detach "$newtree" "$newrev"
    new=$(CARGO_TARGET_DIR="$PWD/target" build "$newtree" | sed "s|^$newtree/||")
else
    new=$(build .)
fi
cp "$new" target/bench-ab-new
for i in $(seq "$rounds"); do
    for v in old new; do
        echo "== $v ($([ $v = old ] && echo "$base" || echo "${newrev:-working tree}")), run $i"
        "target/bench-ab-$v" --bench zzznomatch 2>/dev/null | sed -n '/^interleaved/,$p'
    done
done
