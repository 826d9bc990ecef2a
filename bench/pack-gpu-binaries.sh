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
(cd "$repo" && git rev-parse HEAD && git status --short | head -20) >"$dest/COMMIT"
ls -l "$dest"
