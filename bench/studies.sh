#!/usr/bin/env bash
# Runs the study experiments behind docs/results.md against one shared cache, then compares and
# exports each. Stages shared between files (dataset, split, the study's three trainings) are
# computed once. Each file runs at `nice` 10 so that a shared machine stays usable. About 8 to
# 10 hours on 2 idle cores (some 70 trainings of quickstart cost or less, and their inference of
# 129 images each); well under an hour on a GPU.
#
#   bench/studies.sh CACHE_DIR OUT_DIR [EXPERIMENT...]
#
# Default experiments: quickstart study ensemble overlap sampling detectors domain-shift
# cross-validation hyperparams domain-generalization. Writes
# OUT_DIR/<exp>.log (the run's table and its wall time), OUT_DIR/compare-<exp>/ (PNG charts and
# the comparison table) and OUT_DIR/results.parquet (every variant of every file, one row per
# scanner and split).
set -uo pipefail

cache=${1:?usage: studies.sh CACHE_DIR OUT_DIR [EXPERIMENT...]}
out=${2:?usage: studies.sh CACHE_DIR OUT_DIR [EXPERIMENT...]}
shift 2
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=../bin/env.sh
source "$repo/bin/env.sh"
exps=("$@")
[ ${#exps[@]} -eq 0 ] && exps=(quickstart study ensemble overlap sampling detectors domain-shift cross-validation hyperparams domain-generalization)
(cd "$repo" && cargo build --release --locked --bins) || exit 1
bin=$CARGO_TARGET_DIR/release/pipeline
mkdir -p "$out"
{
    echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
    echo "commit: $(git -C "$repo" rev-parse --short HEAD)"
    echo "started: $(date -u +%FT%TZ)"
} > "$out/machine.txt"
status=0
files=()
for e in "${exps[@]}"; do
    f=$repo/experiments/$e.toml
    files+=("$f")
    start=$(date +%s)
    nice -n 10 "$bin" run "$f" --cache-dir "$cache" -q > "$out/$e.log" 2>&1 || status=1
    echo "wall: $(( $(date +%s) - start )) s" >> "$out/$e.log"
    case $e in
        quickstart) ;;
        *) "$bin" compare "$f" --cache-dir "$cache" -o "$out/compare-$e" > "$out/compare-$e.txt" 2>&1 || status=1 ;;
    esac
done
"$bin" export "${files[@]}" --cache-dir "$cache" -o "$out/results.parquet" || status=1
echo "finished: $(date -u +%FT%TZ)" >> "$out/machine.txt"
exit $status
