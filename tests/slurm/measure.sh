#!/usr/bin/env bash
# Measures the Slurm executor's overhead on the single-node test cluster (tests/slurm/start.sh):
#
#   - time from starting `pipeline run` to the first `sbatch` returning (its job record);
#   - sbatch's own time per job;
#   - per stage, wall time of a chain of N sleeping stages minus the stages' own run time,
#     for the local executor and for Slurm, and how much of Slurm's is its scheduler
#     (a dependant's StartTime minus its parent's EndTime, whole seconds);
#   - how late the run notices the last job's end, for two poll intervals.
#
#   tests/slurm/measure.sh [BIN] [N] [SLEEP_MS]    (default: the test bed, 5 stages of 2000 ms)
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
bin=${1:-${CARGO_TARGET_DIR:-$HOME/.cache/midog-pipeline/target}/release/pipeline-testbed}
n=${2:-5}
sleep_ms=${3:-2000}
conf=$("$here/start.sh" | sed -n 's/^SLURM_CONF=//p')
export SLURM_CONF=$conf
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
echo "hello" >input.txt

experiment() { # POLL_SECONDS
  printf '[experiment]\nname = "chain"\n\n[stages.source]\nfile = "input.txt"\n'
  prev=source
  for i in $(seq "$n"); do
    printf '\n[stages.s%d]\nkind = "transform"\nneeds = ["%s"]\nsleep_ms = %d\n' "$i" "$prev" "$sleep_ms"
    prev=s$i
  done
  printf '\n[slurm]\npoll_seconds = %s\n' "$1"
}

now_ms() { date +%s%3N; }

report() { # EXECUTOR POLL WALL_MS START_MS
  python3 - "$@" <<'PY'
import glob, json, os, subprocess, sys
executor, poll, wall_ms, start_ms = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
own = []
for rec in glob.glob("cache/objects/*/*/record.json"):
    r = json.load(open(rec))
    own.append((r["stage"], r["seconds"]))
stages = len(own)
own_s = sum(s for _, s in own)
line = f"{executor:<6} poll {poll:>4} s  {stages} stages  wall {wall_ms/1000:6.2f} s  own {own_s:6.2f} s  " \
       f"overhead/stage {(wall_ms/1000 - own_s)/stages:5.2f} s"
jobs = {os.path.basename(p).split(".")[0]: json.load(open(p)) for p in glob.glob("cache/jobs/*.slurm.json")}
if jobs:
    from datetime import datetime
    def stamp(key, word):
        # The worker's log: "<RFC 3339 time>  INFO running …" and "… INFO publishing …".
        for line in open(f"cache/logs/{key}.log"):
            if f"INFO {word}" in line:
                return datetime.fromisoformat(line.split()[0].replace("Z", "+00:00")).timestamp()
    key_of = {j["job_id"]: k for k, j in jobs.items()}
    first_submit = min(j["submitted_unix_ms"] for j in jobs.values())
    sbatch = sorted(j["sbatch_ms"] for j in jobs.values())
    # Slurm's part: a dependant's worker starts this long after its parent's worker published.
    gaps = [stamp(k, "running") - stamp(key_of[a], "publishing") for k, j in jobs.items() for a in j["after"]]
    first_start = min(stamp(k, "running") for k in jobs) - first_submit / 1000
    noticed = (start_ms + wall_ms) / 1000 - max(stamp(k, "publishing") for k in jobs)
    line += f"\n       first sbatch returned {first_submit - start_ms} ms after start; sbatch {sbatch[len(sbatch)//2]} ms " \
            f"(median of {len(sbatch)}); first stage started {first_start:.2f} s after its submission; " \
            f"parent published → dependant started {sum(gaps)/max(len(gaps),1):.2f} s (mean of {len(gaps)}); " \
            f"last stage's end noticed {noticed:.2f} s later"
print(line)
PY
}

run() { # EXECUTOR POLL
  rm -rf cache
  experiment "$2" >exp.toml
  start=$(now_ms)
  "$bin" run exp.toml --executor "$1" -q >/dev/null
  end=$(now_ms)
  report "$1" "$2" $((end - start)) "$start"
}

echo "chain of $n stages of $sleep_ms ms after a source stage; $(nproc) cores; $(sbatch --version)"
run local 0.2
run slurm 0.2
run slurm 5
