#!/usr/bin/env bash
# No-op rerun benchmark (BENCHMARKS.md): an experiment whose dataset stage depends on 150 files
# of 100 MB each, fully cached; how long does `pipeline run` take to find out nothing changed,
# against `dvc status` on the same files?
#
#   bench/noop_rerun.sh [WORKDIR]      (default /tmp/noop-bench; needs ~16 GB of disk)
#
# Uses bin/env.sh's Python for tifffile and installs DVC into its own venv under WORKDIR.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
work=${1:-/tmp/noop-bench}
runs=${RUNS:-10}
source "$repo/bin/env.sh"
cargo build --release --locked -p stages --bin pipeline --manifest-path "$repo/Cargo.toml" --quiet
pipeline="$CARGO_TARGET_DIR/release/pipeline"
mkdir -p "$work/data"
cd "$work"

if [ ! -f data/MIDOG.json ]; then
  echo "creating 150 uncompressed 100 MB TIFFs in $work/data …"
  PIPELINE_PYTHON=${PIPELINE_PYTHON:-$PIPELINE_HOME/torch-2.11.0/bin/python}
  "$PIPELINE_PYTHON" - <<'PY'
import json, os, shutil
import numpy as np, tifffile
side = 5776  # 5776² × 3 bytes ≈ 100 MB
rng = np.random.default_rng(0)
img = rng.integers(0, 256, size=(side, side, 3), dtype=np.uint8)
tifffile.imwrite("data/001.tiff", img, tile=(256, 256), photometric="rgb", compression=None,
                 resolution=(1e4 / 0.25, 1e4 / 0.25), resolutionunit="CENTIMETER")
images, anns = [], []
for i in range(1, 151):
    name = f"{i:03d}.tiff"
    if i > 1:
        shutil.copyfile("data/001.tiff", f"data/{name}")
        with open(f"data/{name}", "r+b") as f:  # make every file's content distinct
            f.seek(os.path.getsize(f"data/{name}") - 16)
            f.write(i.to_bytes(16, "little"))
    images.append({"id": i, "file_name": name, "width": side, "height": side})
    anns.append({"id": i, "image_id": i, "category_id": 1, "bbox": [100, 100, 150, 150]})
json.dump({"images": images, "annotations": anns, "categories": [{"id": 1, "name": "mitotic figure"}, {"id": 2, "name": "hard negative"}]}, open("data/MIDOG.json", "w"))
PY
fi
cat > noop.toml <<'TOML'
[experiment]
name = "noop-bench"
[stages.dataset]
root = "data"
[stages.split]
preset = "stratified"
TOML
echo "first run (hashes 15 GB once):"
/usr/bin/time -f "  %e s" "$pipeline" run noop.toml -q >/dev/null
echo "no-op reruns:"
times=()
for _ in $(seq "$runs"); do
  s=$(date +%s.%N); "$pipeline" run noop.toml -q >/dev/null; e=$(date +%s.%N)
  times+=("$(python3 -c "print($e - $s)")")
done
ours=$(printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
echo "  pipeline run (no-op), median of $runs: ${ours} s"

if [ ! -x dvc-venv/bin/dvc ]; then
  python3 -m venv dvc-venv && dvc-venv/bin/pip install --quiet dvc
fi
if [ ! -d .dvc ]; then
  dvc-venv/bin/dvc init --no-scm -q
  dvc-venv/bin/dvc add data -q
fi
dvc-venv/bin/dvc status >/dev/null
times=()
for _ in $(seq "$runs"); do
  s=$(date +%s.%N); dvc-venv/bin/dvc status >/dev/null; e=$(date +%s.%N)
  times+=("$(python3 -c "print($e - $s)")")
done
theirs=$(printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
echo "  dvc status, median of $runs: ${theirs} s"
echo "ratio: pipeline is $(python3 -c "print(round($theirs / $ours, 1))")× faster ($(nproc) cores, $(uname -m))"
