#!/usr/bin/env bash
# Starts a single-node Slurm cluster on this machine for the Slurm executor's tests: installs
# the Debian packages if missing, writes its configuration into a private directory, and starts
# munged, slurmctld and slurmd as root, on ports of their own (not Slurm's 6817/6818, so a real
# Slurm on the machine is not disturbed) and with a private munge socket. Idempotent: a cluster
# of this script that already answers is reused. bin/test stops it when the tests end.
#
#   tests/slurm/start.sh            # prints SLURM_CONF=<dir>/slurm.conf on its last line
#   export SLURM_CONF=/tmp/pipeline-slurm/slurm.conf; sinfo
#   tests/slurm/stop.sh             # stops the daemons
#
# PIPELINE_SLURM_DIR          where configuration, state and daemon logs go (default /tmp/pipeline-slurm)
# PIPELINE_SLURM_PORT         slurmctld's port; slurmd takes the next one (default 46817)
# PIPELINE_SLURM_UNAVAILABLE  pretend Slurm cannot start here, with this reason (to test how the
#                             tests react: they skip, or fail under CI=true)
#
# Exit codes: 0 running, 3 Slurm cannot be installed or started here (the reason is printed;
# the tests skip), anything else a bug in this script.
#
# Known constraints of a container without systemd or cgroups (Slurm 22.05): proctrack/linuxproc
# and task/none; fake GPUs are symlinks to /dev/null (a GRES without File= drains the node, and
# plain files leave CUDA_VISIBLE_DEVICES empty); without slurmdbd there is no sacct, so finished
# jobs stay visible to `scontrol show job` for MinJobAge seconds.
set -euo pipefail

dir=${PIPELINE_SLURM_DIR:-/tmp/pipeline-slurm}
conf=$dir/slurm.conf
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ctld_port=${PIPELINE_SLURM_PORT:-46817}
slurmd_port=$((ctld_port + 1))

unavailable() {
  echo "slurm-unavailable: $*" >&2
  exit 3
}

[ -z "${PIPELINE_SLURM_UNAVAILABLE:-}" ] || unavailable "$PIPELINE_SLURM_UNAVAILABLE"

[ "$(id -u)" = 0 ] || unavailable "the test cluster is started as root (running as $(id -un))"
mkdir -p "$dir"
# One starter at a time (several test processes may call this at once).
exec 9>"$dir/.start.lock"
flock 9

answers() {
  SLURM_CONF=$conf timeout 5 scontrol ping 2>/dev/null | grep -q 'is UP' &&
    SLURM_CONF=$conf timeout 5 sinfo -h -N -o '%T' 2>/dev/null | grep -Eq '^(idle|mixed|allocated)'
}

# Reused only if it is this script's cluster on these ports (not one of an older version).
if [ -f "$conf" ] && grep -qx "SlurmctldPort=$ctld_port" "$conf" && command -v scontrol >/dev/null && answers; then
  echo "SLURM_CONF=$conf"
  exit 0
fi

if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v sbatch >/dev/null ||
  ! command -v munged >/dev/null; then
  command -v apt-get >/dev/null || unavailable "Slurm is not installed and there is no apt-get to install it"
  echo "installing slurmctld slurmd slurm-client munge (apt-get)…" >&2
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q slurmctld slurmd slurm-client munge >"$dir/apt.log" 2>&1; then
    (apt-get update >>"$dir/apt.log" 2>&1 &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -q slurmctld slurmd slurm-client munge >>"$dir/apt.log" 2>&1) ||
      unavailable "apt-get install failed (see $dir/apt.log)"
  fi
fi

# Stop daemons of an earlier start that no longer answers.
"$here/stop.sh" >/dev/null 2>&1 || true

node=$(hostname -s)
mkdir -p "$dir/munge" "$dir/state" "$dir/spool" "$dir/log"
# munged wants its socket directory searchable by everyone, and its key private.
chmod 711 "$dir/munge"
if [ ! -s "$dir/munge/munge.key" ]; then
  head -c 1024 /dev/urandom >"$dir/munge/munge.key"
fi
chmod 600 "$dir/munge/munge.key"
for i in 0 1; do ln -sfn /dev/null "$dir/gpu$i"; done

cat >"$conf" <<CONF
# Single-node test cluster for the pipeline's Slurm executor (written by tests/slurm/start.sh).
ClusterName=pipeline-test
SlurmctldHost=$node(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge/munge.socket
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
# Not Slurm's default ports (6817/6818): a real Slurm on this machine keeps working.
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
GresTypes=gpu
MpiDefault=none
ReturnToService=2
# Finished jobs stay visible to scontrol/squeue this long (there is no accounting database).
MinJobAge=600
KillWait=2
InactiveLimit=0
SlurmdTimeout=60
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
# Dependants of a failed job are cancelled instead of pending forever.
DependencyParameters=kill_invalid_depend
# The node claims more CPUs than the machine has, so that sleeping test stages run side by side.
SlurmdParameters=config_overrides
NodeName=$node NodeAddr=127.0.0.1 CPUs=8 RealMemory=16384 Gres=gpu:2 State=UNKNOWN
PartitionName=debug Nodes=$node Default=YES MaxTime=INFINITE State=UP
CONF

cat >"$dir/gres.conf" <<CONF
AutoDetect=off
NodeName=$node Name=gpu File=$dir/gpu[0-1]
CONF

start() {
  local name=$1
  shift
  # 9>&-: the daemons must not inherit (and hold forever) the start lock.
  setsid "$@" </dev/null >"$dir/log/$name.out" 2>&1 9>&- &
}

start munged munged --foreground --force --key-file="$dir/munge/munge.key" --socket="$dir/munge/munge.socket" \
  --pid-file="$dir/munge/munged.pid" --log-file="$dir/log/munged.log" --seed-file="$dir/munge/munged.seed"
for _ in $(seq 50); do [ -S "$dir/munge/munge.socket" ] && break; sleep 0.1; done
[ -S "$dir/munge/munge.socket" ] || unavailable "munged did not start (see $dir/log/munged.out)"

export SLURM_CONF=$conf
start slurmctld slurmctld -D -i -f "$conf"
start slurmd slurmd -D -f "$conf"

for _ in $(seq 150); do
  answers && break
  sleep 0.1
done
if ! answers; then
  tail -5 "$dir/log/slurmctld.log" "$dir/log/slurmd.log" >&2 2>/dev/null || true
  unavailable "slurmctld/slurmd did not come up within 15 s (logs in $dir/log)"
fi
echo "SLURM_CONF=$conf"
