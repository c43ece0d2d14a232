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
build() { # dir -> path of the bench binary it builds (absolute, or relative to this tree)
    (cd "$1" && cargo bench -p ferroplane-benches --bench "$bench" --no-run 2>&1) |
        grep -o "([^()]*/deps/$bench-[0-9a-f]*)" | head -1 | tr -d '()' | sed "s|^\([^/]\)|$1/\1|"
}
rm -rf "$tree" "$newtree"
git worktree prune
git worktree add -q --detach "$tree" "$base"
trap 'git worktree remove --force "$tree"; [ -z "$newrev" ] || git worktree remove --force "$newtree"' EXIT
# Each worktree builds into a target dir of its own (kept between runs, so only our crates
# rebuild). Not this tree's: cargo names a workspace crate's outputs and fingerprints the same
# in every checkout and judges them fresh by mtime, so after a base build into the shared dir a
# working tree whose edits are older than that build was not rebuilt, and "new" was the base
# binary (and so was the next plain `cargo bench` here).
old=$(CARGO_TARGET_DIR="$PWD/target/bench-ab-target-base" build "$tree")
cp "$old" target/bench-ab-old
if [ -n "$newrev" ]; then
    git worktree add -q --detach "$newtree" "$newrev"
    new=$(CARGO_TARGET_DIR="$PWD/target/bench-ab-target-new" build "$newtree")
else
    new=$(build .)
fi
cp "$new" target/bench-ab-new
if cmp -s target/bench-ab-old target/bench-ab-new; then
    echo "bench-ab: the two binaries are identical (same code on both sides?)" >&2
fi
for i in $(seq "$rounds"); do
    for v in old new; do
        echo "== $v ($([ $v = old ] && echo "$base" || echo "${newrev:-working tree}")), run $i"
        "target/bench-ab-$v" --bench zzznomatch 2>/dev/null | sed -n '/^interleaved/,$p'
    done
done
