#!/usr/bin/env bash
# GPU side-by-side checks for the performance yardsticks (DESIGN.md), in one go, in well under
# 8 minutes: training img/s (ResNet-18 FPN RetinaNet, batch 16, 512 px) ours vs torchvision, fp32 and
# bf16, ours also with the real patch loader; whole-image inference (7215 × 5412, 512 px tiles every
# 460 px) ours vs torchvision over OpenSlide tiles, fp32 and bf16.
#
#   OUT=/some/dir bench/gpu-checks.sh BIN_DIR
#
# BIN_DIR: prebuilt `pipeline` and `pipeline-torch` (release, linked against libtorch 2.11 with CUDA).
# Uses the system torch (TORCH_LIB, default /opt/torch/.venv/lib/python3.12/site-packages/torch/lib)
# and Python (PYTHON, default /opt/torch/.venv/bin/python: torch 2.11+cu130, torchvision 0.26; without
# openslide-python the torchvision inference script reads the image with Pillow instead).
#
# Writes three files under $OUT (default ./gpu-checks-out): results.jsonl (one JSON object per step:
# name, exit code, seconds, and the step's own JSON report), log.txt (every command and its output)
# and summary.txt (the ratios). Every step runs under `timeout`, bounded by an overall deadline
# (BUDGET_S, default 420 s), and a failed step does not stop the others.
set -uo pipefail

bin=$(cd "${1:?usage: OUT=DIR bench/gpu-checks.sh BIN_DIR}" && pwd)
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out=${OUT:-$PWD/gpu-checks-out}
py=${PYTHON:-/opt/torch/.venv/bin/python}
torch_lib=${TORCH_LIB:-/opt/torch/.venv/lib/python3.12/site-packages/torch/lib}
budget=${BUDGET_S:-420}
mkdir -p "$out"
out=$(cd "$out" && pwd)
work=$(mktemp -d /tmp/gpu-checks.XXXXXX)
export LD_LIBRARY_PATH="$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export PIPELINE_PYTHON=$py
log=$out/log.txt
jsonl=$out/results.jsonl
: >"$log"
: >"$jsonl"
deadline=$(($(date +%s) + budget))
workers=$(($(nproc) > 2 ? $(nproc) - 1 : 1)) # DataLoader workers: as many as our decode threads on CUDA

note() { echo "$*" | tee -a "$log"; }

# step NAME LIMIT_S CMD...: runs CMD under `timeout` (its limit, cut to the time left before the
# deadline) and appends {name, rc, seconds, report: <the last JSON line it printed, or a torchvision
# img/s line parsed>} to results.jsonl.
step() {
  local name=$1 limit=$2
  shift 2
  local left=$((deadline - $(date +%s) - 10))
  if ((left < 15)); then
    note "### $name: skipped, the overall budget of ${budget}s is spent"
    echo "{\"name\": \"$name\", \"rc\": null, \"skipped\": true}" >>"$jsonl"
    return
  fi
  ((limit > left)) && limit=$left
  note "### $name (limit ${limit}s) $(date -Is)"
  note "\$ $*"
  local start=$SECONDS
  local text
  text=$(timeout --kill-after=10 "$limit" "$@" 2>&1)
  local rc=$?
  local secs=$((SECONDS - start))
  echo "$text" >>"$log"
  note "(exit $rc after ${secs}s)"
  "$py" - "$name" "$rc" "$secs" "$text" >>"$jsonl" <<'EOF'
import json, re, sys
name, rc, secs, text = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
report = None
for line in text.splitlines():
    line = line.strip()
    if line.startswith("{"):
        try:
            report = json.loads(line)
        except ValueError:
            pass
    m = re.match(r"torchvision img/s: ([0-9.]+) \((.*)\)", line)
    if m:
        report = {"what": "train", "impl": "torchvision", "img_per_s": float(m.group(1)), "settings": m.group(2)}
print(json.dumps({"name": name, "rc": rc, "seconds": secs, "report": report, "tail": text[-600:] if rc else None}))
EOF
}

note "# gpu-checks $(date -Is) on $(hostname), $(nproc) CPUs; binaries $bin; python $py"
step nvidia-smi 20 nvidia-smi -L
step versions 60 "$py" -c 'import json, torch, torchvision; print(json.dumps({"torch": torch.__version__, "torchvision": torchvision.__version__, "cuda": torch.version.cuda, "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}))'

step libraries 20 bash -c "ldd '$bin/pipeline-torch' | grep -E 'torch|c10|not found'"
step cuda-seen 60 "$bin/pipeline" bench train --backbone resnet18 --batch 2 --size 256 --steps 1 --warmup 1 \
  --precision fp32 --device cuda --json

# data, generated on the spot: one full-size image per scanner (the XR one is the inference image)
step synth-dataset 90 "$bin/pipeline" synth "$work/train" --images-per-scanner 1 --scale 1
image=$work/train/001.tiff

# training: batch 16, 512 px, 20 timed steps after 3 warm-up steps
for p in fp32 bf16; do
  step "train-ours-$p" 90 "$bin/pipeline" bench train --backbone resnet18 --batch 16 --size 512 --steps 20 \
    --warmup 3 --precision "$p" --device cuda --breakdown --json
  step "train-ours-$p-no-autotune" 90 "$bin/pipeline" bench train --backbone resnet18 --batch 16 --size 512 --steps 20 \
    --warmup 3 --precision "$p" --device cuda --no-cudnn-benchmark --json
  step "train-ours-$p-loader" 90 "$bin/pipeline" bench train --backbone resnet18 --batch 16 --size 512 --steps 20 \
    --warmup 3 --precision "$p" --device cuda --dataset "$work/train" --loader-threads "$workers" --json
  [ "$p" = bf16 ] && step "train-ours-$p-loader4" 90 "$bin/pipeline" bench train --backbone resnet18 --batch 16 \
    --size 512 --steps 20 --warmup 3 --precision "$p" --device cuda --dataset "$work/train" --loader-threads 4 --json
  flag=()
  [ "$p" = bf16 ] && flag=(--bf16)
  step "train-torchvision-$p" 120 "$py" "$repo/stages/model/parity/bench_torchvision.py" --batch 16 --size 512 \
    --steps 20 --warmup 3 --device cuda --profile 5 "${flag[@]}"
done

# whole-image inference: 7215 × 5412, 192 tiles, batch 8, median of 3 images
for p in fp32 bf16; do
  step "infer-ours-$p" 90 "$bin/pipeline" bench infer --image "$image" --precision "$p" --device cuda --repeats 3 --json
  step "infer-ours-$p-no-autotune" 90 "$bin/pipeline" bench infer --image "$image" --precision "$p" --device cuda \
    --repeats 3 --no-cudnn-benchmark --json
  step "infer-ours-$p-batch32" 90 "$bin/pipeline" bench infer --image "$image" --precision "$p" --device cuda \
    --repeats 3 --batch-size 32 --json
  step "infer-torchvision-$p" 120 "$py" "$repo/stages/torch/bench/torchvision_infer.py" --image "$image" \
    --precision "$p" --device cuda --workers "$workers" --repeats 3
done

# the quickstart end to end with device = "cuda" (train and tile_infer on the GPU)
sed 's/^device = .*/device = "cuda"/' "$repo/experiments/quickstart.toml" >"$work/quickstart-cuda.toml"
step quickstart-cuda 150 "$bin/pipeline" run "$work/quickstart-cuda.toml" --cache-dir "$work/cache"
step quickstart-cuda-rerun 30 "$bin/pipeline" run "$work/quickstart-cuda.toml" --cache-dir "$work/cache"
mkdir -p "$out/quickstart-cuda"
find "$work/cache" -path '*/out/*' \( -name 'report.md' -o -name 'metrics.parquet' -o -name '*.log' \) \
  -exec sh -c 'cp "$1" "$2/$(basename "$(dirname "$(dirname "$1")")" | cut -c1-12)-$(basename "$1")"' _ {} "$out/quickstart-cuda" \; 2>/dev/null

# where the time goes: one Nsight Systems profile of our bf16 training step and of inference
nsys=$(command -v nsys || timeout 20 find /usr /opt -name nsys -type f -perm -u+x 2>/dev/null | head -1)
if [ -n "$nsys" ]; then
  step nsys-train-bf16 90 "$nsys" profile -t cuda,osrt -o "$work/train-bf16" --force-overwrite true \
    "$bin/pipeline" bench train --backbone resnet18 --batch 16 --size 512 --steps 10 --warmup 3 --precision bf16 --device cuda --json
  "$nsys" stats -r cuda_gpu_kern_sum,cuda_api_sum,cuda_gpu_mem_time_sum -f csv "$work/train-bf16.nsys-rep" 2>&1 \
    | head -150 >"$out/nsys-train-bf16.csv"
  step nsys-infer-bf16 90 "$nsys" profile -t cuda,osrt -o "$work/infer-bf16" --force-overwrite true \
    "$bin/pipeline" bench infer --image "$image" --precision bf16 --device cuda --repeats 1 --json
  "$nsys" stats -r cuda_gpu_kern_sum,cuda_api_sum,cuda_gpu_mem_time_sum -f csv "$work/infer-bf16.nsys-rep" 2>&1 \
    | head -150 >"$out/nsys-infer-bf16.csv"
else
  note "### nsys not found: no profile"
fi

"$py" - "$jsonl" >"$out/summary.txt" <<'EOF'
import json, sys
rows = {}
for line in open(sys.argv[1]):
    r = json.loads(line)
    rows[r["name"]] = r.get("report") or {}
def get(name, key):
    v = rows.get(name, {}).get(key)
    return v if isinstance(v, (int, float)) else None
gpu = rows.get("versions", {}).get("gpu")
print(f"GPU: {gpu}")
print("training img/s (ResNet-18 FPN RetinaNet, batch 16, 512 px)")
for p in ("fp32", "bf16"):
    ours, loader, tv = get(f"train-ours-{p}", "img_per_s"), get(f"train-ours-{p}-loader", "img_per_s"), get(f"train-torchvision-{p}", "img_per_s")
    wait = get(f"train-ours-{p}-loader", "loader_wait_fraction")
    util = get(f"train-ours-{p}-loader", "gpu_utilisation_percent")
    ratio = f"{ours / tv:.2f}x" if ours and tv else "n/a"
    ratio_l = f"{loader / tv:.2f}x" if loader and tv else "n/a"
    print(f"  {p}: ours {ours} (real loader {loader}, waiting {wait}, GPU util {util} %), torchvision {tv}; ratio {ratio} (loader {ratio_l})")
    print(f"      without the cuDNN autotuner {get(f'train-ours-{p}-no-autotune', 'img_per_s')}; phases (ms) {rows.get(f'train-ours-{p}', {}).get('phases_ms')}")
    if p == "bf16":
        print(f"      real loader with 4 threads: {get('train-ours-bf16-loader4', 'img_per_s')} img/s, waiting {get('train-ours-bf16-loader4', 'loader_wait_fraction')}")
print("whole-image inference s/image (7215 x 5412, 192 tiles)")
for p in ("fp32", "bf16"):
    ours, tv = get(f"infer-ours-{p}", "seconds_per_image"), get(f"infer-torchvision-{p}", "seconds_per_image")
    reader = rows.get(f"infer-torchvision-{p}", {}).get("reader")
    ratio = f"{tv / ours:.2f}x" if ours and tv else "n/a"
    print(f"  {p}: ours {ours}, torchvision ({reader}) {tv}; ours faster by {ratio}")
    print(f"      decode wait {get(f'infer-ours-{p}', 'decode_wait_fraction')}; without the autotuner {get(f'infer-ours-{p}-no-autotune', 'seconds_per_image')}; batch 32 {get(f'infer-ours-{p}-batch32', 'seconds_per_image')}")
EOF
cat "$out/summary.txt" | tee -a "$log"
rm -rf "$work"
note "# done $(date -Is)"
