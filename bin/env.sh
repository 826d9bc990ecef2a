# Sourced by bin/pipeline, bin/test and .ci/run. Provides libtorch and a machine-level build cache.
#
#   PIPELINE_HOME     machine-level cache (default ~/.cache/midog-pipeline)
#   LIBTORCH          your own libtorch 2.11: nothing is downloaded for the build
#   CARGO_TARGET_DIR  build directory (default $PIPELINE_HOME/target, shared by all clones)
# shellcheck shell=bash
_repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PIPELINE_HOME=${PIPELINE_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/midog-pipeline}
export PIPELINE_HOME
export PIPELINE_PYTHON=$PIPELINE_HOME/torch-2.11.0/bin/python

if ! command -v cargo >/dev/null 2>&1; then
  echo "[setup] cargo not found: install Rust from https://rustup.rs" >&2
  return 1
fi
if [ -n "${LIBTORCH:-}" ]; then
  if [ ! -d "$LIBTORCH/lib" ]; then
    echo "[setup] LIBTORCH=$LIBTORCH has no lib/ directory; point it at a libtorch 2.11 install" >&2
    return 1
  fi
  [ -n "${PIPELINE_PY_EXTRAS:-}" ] && { "$_repo/bin/install-python-env" --extras || return 1; }
else
  "$_repo/bin/install-python-env" ${PIPELINE_PY_EXTRAS:+--extras} || return 1
  # Locate torch without importing it: an import costs 2 s and, without numpy, prints torch's
  # "Failed to initialize NumPy" warning on every call of bin/pipeline.
  LIBTORCH=$("$PIPELINE_PYTHON" -c 'import importlib.util, os; print(os.path.dirname(importlib.util.find_spec("torch").origin))') || return 1
  export LIBTORCH
fi
export LD_LIBRARY_PATH="$LIBTORCH/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PIPELINE_HOME/target}
