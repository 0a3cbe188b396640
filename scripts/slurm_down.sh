#!/usr/bin/env bash
# Stop the cluster started by scripts/slurm_up.sh (by pid file; never by name).
SL=${SLURM_CI_DIR:-/tmp/slurmci}
export SLURM_CONF="$SL/slurm.conf"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
waitpid() {
  for _ in $(seq 1 200); do
    st=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)
    { [ -z "$st" ] || [ "$st" = Z ]; } && return 0
    sleep 0.05
  done
  $SUDO kill -9 "$1" 2>/dev/null
}
pids=""
for f in "$SL/slurmd.pid" "$SL/slurmctld.pid"; do [ -s "$f" ] && pids="$pids $(cat "$f")"; done
scontrol shutdown >/dev/null 2>&1 || { [ -n "$pids" ] && $SUDO kill $pids 2>/dev/null; }
for p in $pids; do waitpid "$p"; done
if [ "${SLURM_KEEP_MUNGE:-0}" != 1 ]; then
  p=$(cat /run/munge/munged.pid 2>/dev/null) && [ -n "$p" ] && $SUDO kill "$p" 2>/dev/null && waitpid "$p"
fi
true
