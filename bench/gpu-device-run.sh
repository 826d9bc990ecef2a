#!/usr/bin/env bash
# The whole GPU-machine call in one script: unpacks the xz-compressed release binaries that were
# carried with the working tree (the uncompressed pair is over the 64 MiB one transfer may hold),
# then runs bench/gpu-checks.sh with its results under $OUT.
#
#   here:    bench/pack-gpu-binaries.sh            # builds (release) and writes gpu-carry/*.xz
#   device:  bash bench/gpu-device-run.sh gpu-carry   (run with carry = ["gpu-carry"], timeout ≥ BUDGET_S + 60)
set -uo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
carry=$(cd "${1:?usage: bench/gpu-device-run.sh CARRY_DIR}" && pwd)
py=${PYTHON:-/opt/torch/.venv/bin/python}
bin=$(mktemp -d /tmp/gpu-bin.XXXXXX)
for exe in pipeline pipeline-torch; do
  if command -v xz >/dev/null; then
    xz -dc "$carry/$exe.xz" >"$bin/$exe"
  else # the device's Python has lzma when the system has no xz
    "$py" -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' \
      "$carry/$exe.xz" "$bin/$exe"
  fi || { echo "cannot unpack $carry/$exe.xz" >&2; exit 1; }
  chmod +x "$bin/$exe"
done
if compgen -G "$carry/wheels/*.whl" >/dev/null; then
  # openslide for the torchvision baseline's tile reader, next to (not into) the system venv
  "$py" -m pip install -q --no-index --no-deps --target /tmp/gpu-pyextra "$carry"/wheels/*.whl &&
    export PYTHONPATH=/tmp/gpu-pyextra${PYTHONPATH:+:$PYTHONPATH}
fi
(cd "$carry" && sha256sum -c --quiet SHA256SUMS 2>/dev/null) || true
export OUT=${OUT:-$PWD/gpu-checks-out}
mkdir -p "$OUT"
cp "$carry/COMMIT" "$OUT/COMMIT" 2>/dev/null
exec "$repo/bench/gpu-checks.sh" "$bin"
