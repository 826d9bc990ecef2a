#!/usr/bin/env bash
# CPU side-by-side measurements behind BENCHMARKS.md: ours and the Python baselines run
# alternately, ROUNDS times each, so that background load hits both sides alike.
#
#   [PHASES="infer train loader"] bench/cpu_side_by_side.sh BIN_DIR OUT_DIR [ROUNDS]
#
# BIN_DIR holds `pipeline` and `pipeline-torch` (e.g. ~/.cache/midog-pipeline/target/release, or a
# copy of the two, so that a concurrent rebuild cannot swap them mid-run). Needs LD_LIBRARY_PATH
# with libtorch (source bin/env.sh) and PIPELINE_PYTHON. Writes OUT_DIR/log.txt (every command, its
# output and the load average around it), OUT_DIR/results.jsonl (one JSON object per measurement)
# and the synthetic data under OUT_DIR/data. Run time on 2 otherwise idle cores: about 45 minutes (infer
# dominates: ours runs a warm-up image plus one timed image, torchvision one image).
set -uo pipefail

bin=${1:?usage: cpu_side_by_side.sh BIN_DIR OUT_DIR [ROUNDS]}
out=${2:?usage: cpu_side_by_side.sh BIN_DIR OUT_DIR [ROUNDS]}
rounds=${3:-3}
phases=${PHASES:-infer train loader}
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
py=${PIPELINE_PYTHON:?source bin/env.sh first}
mkdir -p "$out/data"
log=$out/log.txt
jsonl=$out/results.jsonl

note() { echo "$*" | tee -a "$log"; }

# run NAME ROUND CMD...: runs CMD, logs it with the load average before and after, and appends one
# JSON line {name, round, load_before, load_after, wall_s, cpu_s (user + system, children included,
# from GNU time), json: <the command's last JSON line or null>, text}. CPU seconds are less sensitive
# to other processes' load than wall-clock time.
run() {
  local name=$1 round=$2
  shift 2
  local before after start end output rc
  before=$(cut -d' ' -f1-3 /proc/loadavg)
  note "### $name (round $round) $(date -Is) load $before"
  note "\$ $*"
  start=$(date +%s.%N)
  output=$(/usr/bin/time -f 'rusage: user %U sys %S maxrss_kb %M' "$@" 2>&1)
  rc=$?
  end=$(date +%s.%N)
  after=$(cut -d' ' -f1-3 /proc/loadavg)
  echo "$output" >>"$log"
  note "(exit $rc, $(echo "$end - $start" | bc) s, load after $after)"
  "$py" - "$name" "$round" "$before" "$after" "$rc" "$(echo "$end - $start" | bc)" "$output" >>"$jsonl" <<'EOF'
import json, re, sys
name, rnd, before, after, rc, wall, text = sys.argv[1:8]
last, cpu, rss = None, None, None
m = re.search(r"rusage: user ([0-9.]+) sys ([0-9.]+) maxrss_kb ([0-9]+)", text)
if m:
    cpu, rss = float(m.group(1)) + float(m.group(2)), int(m.group(3))
for line in text.splitlines():
    line = line.strip()
    if line.startswith("{"):
        try:
            last = json.loads(line)
        except ValueError:
            pass
print(json.dumps({"name": name, "round": int(rnd), "load_before": before, "load_after": after, "rc": int(rc),
                  "wall_s": float(wall), "cpu_s": cpu, "max_rss_kb": rss, "json": last, "text": text[-2000:]}))
EOF
}

note "# $(date -Is) $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(free -g | awk '/Mem:/ {print $2}') GB"
note "# $("$py" -c 'import torch, torchvision; print("torch", torch.__version__, "torchvision", torchvision.__version__, "threads", torch.get_num_threads())')"

# data: one full-size XR image for inference; 4 full-size images (one per scanner) as JPEG and as deflate
[ -f "$out/data/xr1/001.tiff" ] || "$bin/pipeline" synth "$out/data/xr1" --images-per-scanner 1 --scale 1 --scanners XR >>"$log" 2>&1
[ -f "$out/data/jpeg4/001.tiff" ] || "$bin/pipeline" synth "$out/data/jpeg4" --images-per-scanner 1 --scale 1 >>"$log" 2>&1
[ -f "$out/data/deflate4/001.tiff" ] || "$bin/pipeline" synth "$out/data/deflate4" --images-per-scanner 1 --scale 1 --compression deflate >>"$log" 2>&1
img=$out/data/xr1/001.tiff

has() { [[ " $phases " == *" $1 "* ]]; }

for r in $(seq "$rounds"); do
  has infer || break
  # whole-image inference, fp32, one DataLoader worker (ours: one decode thread on 2 cores)
  run infer-ours "$r" "$bin/pipeline" bench infer --image "$img" --device cpu --precision fp32 --repeats 1 --json
  run infer-torchvision "$r" "$py" "$repo/stages/torch/bench/torchvision_infer.py" --image "$img" --device cpu \
    --precision fp32 --workers 1 --repeats 1
done

for r in $(seq "$rounds"); do
  has train || break
  run train-ours "$r" "$bin/pipeline" bench train --backbone resnet18 --batch 4 --size 256 --device cpu --json
  run train-torchvision "$r" "$py" "$repo/stages/model/parity/bench_torchvision.py" --batch 4 --size 256 \
    --steps 20 --warmup 3 --device cpu
  run train-ours-loader "$r" "$bin/pipeline" bench train --backbone resnet18 --batch 4 --size 256 --device cpu \
    --dataset "$out/data/jpeg4" --loader-threads 1 --json
done

for r in $(seq "$rounds"); do
  has loader || break
  run loader-jpeg "$r" "$bin/pipeline" bench loader "$out/data/jpeg4" --threads 1,2 --batches 20 --python "$py"
  run loader-deflate "$r" "$bin/pipeline" bench loader "$out/data/deflate4" --threads 1,2 --batches 20 --python "$py"
done
note "# done $(date -Is)"
