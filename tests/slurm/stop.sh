#!/usr/bin/env bash
# Stops the daemons started by tests/slurm/start.sh, by the pid files it wrote (nothing else
# named munged or slurmd on the machine): SIGTERM, then SIGKILL after 5 s. Its directory is
# kept; remove it to start from scratch. Exit code 0 when none of them runs any more.
set -uo pipefail
dir=${PIPELINE_SLURM_DIR:-/tmp/pipeline-slurm}
status=0
for entry in slurmd:"$dir/slurmd.pid" slurmctld:"$dir/slurmctld.pid" munged:"$dir/munge/munged.pid"; do
  name=${entry%%:*}
  pidfile=${entry#*:}
  [ -s "$pidfile" ] || continue
  pid=$(cat "$pidfile")
  # A pid file can outlive its daemon, and the pid be reused: only stop the daemon it names.
  if [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$name" ]; then
    kill "$pid" 2>/dev/null
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      kill -9 "$pid" 2>/dev/null
      sleep 0.2
    fi
    if kill -0 "$pid" 2>/dev/null; then
      echo "could not stop $name (pid $pid)" >&2
      status=1
      continue
    fi
  fi
  rm -f "$pidfile"
done
exit $status
