#!/usr/bin/env bash
# Stops the daemons started by tests/slurm/start.sh (by the pid files it wrote). Its directory
# is kept; remove it to start from scratch.
set -uo pipefail
dir=${PIPELINE_SLURM_DIR:-/tmp/pipeline-slurm}
for pidfile in "$dir/slurmd.pid" "$dir/slurmctld.pid" "$dir/munge/munged.pid"; do
  [ -s "$pidfile" ] || continue
  pid=$(cat "$pidfile")
  kill "$pid" 2>/dev/null || continue
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  rm -f "$pidfile"
done
