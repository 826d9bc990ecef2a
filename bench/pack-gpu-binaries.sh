#!/usr/bin/env bash
# Builds the release binaries and writes them xz-compressed to gpu-carry/ (listed in
# .git/info/exclude, so `run`'s carry can take it) for bench/gpu-device-run.sh.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=../bin/env.sh
source "$repo/bin/env.sh"
cargo build --release --locked --bins --manifest-path "$repo/Cargo.toml"
dest=$repo/gpu-carry
mkdir -p "$dest"
exclude=$(git -C "$repo" rev-parse --git-path info/exclude) # a worktree's .git is a file
case $exclude in /*) ;; *) exclude=$repo/$exclude ;; esac
grep -qx 'gpu-carry/' "$exclude" 2>/dev/null || { mkdir -p "$(dirname "$exclude")"; echo 'gpu-carry/' >>"$exclude"; }
for exe in pipeline pipeline-torch; do
  xz -T0 -6 -c "$CARGO_TARGET_DIR/release/$exe" >"$dest/$exe.xz"
done
# The GPU machine has no openslide-python and no internet: carry the two wheels (≈ 3 MB) so that
# the torchvision inference yardstick reads its tiles through OpenSlide, as DESIGN.md asks.
rm -rf "$dest/wheels"
"$PIPELINE_PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_5_x86_64 -d "$dest/wheels" openslide-bin openslide-python ||
  echo "warning: could not fetch the openslide wheels; torchvision inference will use its PIL reader" >&2
(cd "$repo" && git rev-parse HEAD && git status --short | head -20) >"$dest/COMMIT"
ls -l "$dest"
