#!/usr/bin/env bash
# Bring up a single-node SLURM cluster on localhost (munge + slurmctld + slurmd,
# no cgroups, no accounting) for the SLURM tests.  Debian/Ubuntu, run as root
# (or with sudo available).  Idempotent: a running cluster is left alone.
#
# Environment: SLURM_CI_DIR (state folder, default /tmp/slurmci),
# SLURM_CI_CPUS (CPUs the node declares, default 10 so small arrays run at
# once), SLURM_CI_MEM_MB (default 16000).
# Prints "export SLURM_CONF=..." last: clients need it in their environment.
set -euo pipefail
SL=${SLURM_CI_DIR:-/tmp/slurmci}
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  echo "==> installing slurm-wlm and munge" >&2
  $SUDO apt-get update -q >&2
  $SUDO apt-get install -y -q --no-install-recommends slurm-wlm munge >&2
fi
# ---------------------------------------------------------------- munge
[ -s /etc/munge/munge.key ] || { $SUDO mungekey --create --force 2>/dev/null \
  || $SUDO dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none; }
$SUDO chown munge:munge /etc/munge/munge.key
$SUDO chmod 400 /etc/munge/munge.key
$SUDO install -d -o munge -g munge -m 0755 /run/munge
$SUDO install -d -o munge -g munge -m 0700 /var/log/munge /var/lib/munge
if ! munge -n >/dev/null 2>&1; then
  $SUDO runuser -u munge -- /usr/sbin/munged
fi
munge -n | unmunge >/dev/null
# ---------------------------------------------------------------- slurm
export SLURM_CONF="$SL/slurm.conf"
if [ -s "$SL/slurmctld.pid" ] && kill -0 "$(cat "$SL/slurmctld.pid")" 2>/dev/null \
   && sinfo -h -o '%T' 2>/dev/null | grep -qE 'idle|mix|alloc'; then
  echo "export SLURM_CONF=$SLURM_CONF"
  exit 0
fi
mkdir -p "$SL"/state "$SL"/spool
NCPU=${SLURM_CI_CPUS:-10}
cat > "$SL/slurm.conf" <<CONF
ClusterName=ci
SlurmctldHost=localhost
SlurmUser=root
AuthType=auth/munge
CredType=cred/munge
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=$SL/state
SlurmdSpoolDir=$SL/spool
SlurmctldPidFile=$SL/slurmctld.pid
SlurmdPidFile=$SL/slurmd.pid
SlurmctldLogFile=$SL/slurmctld.log
SlurmdLogFile=$SL/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
ReturnToService=2
MpiDefault=none
MaxArraySize=10001
MinJobAge=300
KillWait=5
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0,bf_interval=1,default_queue_depth=1000
JobCompType=jobcomp/filetxt
JobCompLoc=$SL/jobcomp.log
SlurmdParameters=config_overrides
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$NCPU RealMemory=${SLURM_CI_MEM_MB:-16000} State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
CONF
$SUDO env SLURM_CONF="$SLURM_CONF" /usr/sbin/slurmctld -f "$SLURM_CONF"
$SUDO env SLURM_CONF="$SLURM_CONF" /usr/sbin/slurmd -f "$SLURM_CONF" -N localhost
for _ in $(seq 1 60); do
  st=$(sinfo -h -N -o '%T' 2>/dev/null | head -1 || true)
  case "$st" in idle*|mixed*|alloc*) break;; esac
  sleep 0.5
done
st=$(sinfo -h -N -o '%T' 2>/dev/null | head -1 || true)
case "$st" in
  idle*|mixed*|alloc*) ;;
  *) echo "slurm node did not come up (state: '$st'); see $SL/slurmctld.log and $SL/slurmd.log" >&2; exit 1;;
esac
echo "export SLURM_CONF=$SLURM_CONF"
