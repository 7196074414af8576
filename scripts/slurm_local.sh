#!/usr/bin/env bash
# A single-node SLURM cluster on this machine, for tests and for trying the SLURM profile.
#
#   bash scripts/slurm_local.sh install          # apt-get the Debian packages if missing (root)
#   bash scripts/slurm_local.sh start DIR        # munged + slurmctld + slurmd, state under DIR
#   bash scripts/slurm_local.sh stop DIR         # cancel its jobs, stop the three daemons by PID
#   export PATH=DIR/bin:$PATH SLURM_CONF=DIR/slurm.conf   # then: sinfo, srun -N1 hostname, ...
#
# Everything the cluster writes stays under DIR (munge key and socket, slurm.conf, state,
# spool, logs, PID files): nothing in /etc is changed, so several clusters (one per test
# session) can run side by side. The daemons are started directly (no systemd) as root,
# bind to 127.0.0.1 only (CommunicationParameters=NoCtldInAddrAny,NoInAddrAny; the node
# and controller are "localhost") on two free ports, and need no accounting database:
# Snakemake's SLURM executor reads job states with squeue (--slurm-status-command squeue),
# which works because MinJobAge keeps finished jobs in the controller for an hour.
#
# DIR/bin holds one wrapper per SLURM client (srun, sbatch, squeue, ...) that sets
# SLURM_CONF and runs the real one: Snakemake's jobstep executor removes every SLURM_*
# variable before it calls srun inside a job, and a site's clients find /etc/slurm/slurm.conf
# anyway, which this cluster leaves alone.
#
# Settings (environment): SLURM_LOCAL_PARTITION (default "cpu"), SLURM_LOCAL_CPUS
# (default: all of this machine's), SLURM_LOCAL_MEM_MB (default: 90% of MemTotal).
#
# Exit status of start/install: 0 ok; 3 the packages are missing and cannot be installed
# here (not root, or no apt-get): the reason is printed on stderr; 1 anything else.
set -euo pipefail

PACKAGES="munge slurmctld slurmd slurm-client"
BINARIES="munged slurmctld slurmd sbatch srun squeue sinfo scancel scontrol"

missing_binaries() {
  local b out=""
  for b in $BINARIES; do
    command -v "$b" >/dev/null 2>&1 || [ -x "/usr/sbin/$b" ] || out="$out $b"
  done
  echo "$out"
}

cmd_install() {
  local missing
  missing=$(missing_binaries)
  [ -z "$missing" ] && return 0
  if [ "$(id -u)" != 0 ]; then
    echo "SLURM binaries missing ($missing) and not root: cannot apt-get install $PACKAGES" >&2
    exit 3
  fi
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "SLURM binaries missing ($missing) and no apt-get on this machine (packages: $PACKAGES)" >&2
    exit 3
  fi
  # Debian's maintainer scripts would start the daemons with the system's configuration;
  # a policy-rc.d that denies every start keeps them stopped (ours are started below).
  local policy=/usr/sbin/policy-rc.d added=""
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && added=1
  fi
  local rc=0
  { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $PACKAGES; } \
    >&2 || rc=$?
  [ -n "$added" ] && rm -f "$policy"
  if [ "$rc" != 0 ]; then
    echo "apt-get install $PACKAGES failed (exit $rc)" >&2
    exit 3
  fi
  missing=$(missing_binaries)
  if [ -n "$missing" ]; then
    echo "still missing after apt-get install:$missing" >&2
    exit 3
  fi
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
  local t=$1 what=$2
  shift 2
  local end=$((SECONDS + t))
  until "$@" >/dev/null 2>&1; do
    if [ $SECONDS -ge $end ]; then
      echo "timed out after ${t}s waiting for $what" >&2
      return 1
    fi
    sleep 0.5
  done
}

node_idle() {
  sinfo -h -N -o '%T' | grep -Eq '^(idle|mixed|allocated)'
}

write_conf() {
  local dir=$1 part=${SLURM_LOCAL_PARTITION:-cpu}
  local cpus=${SLURM_LOCAL_CPUS:-$(nproc)}
  local mem=${SLURM_LOCAL_MEM_MB:-$(awk '/^MemTotal:/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)}
  local ctld_port slurmd_port
  ctld_port=$(free_port)
  slurmd_port=$(free_port)
  while [ "$slurmd_port" = "$ctld_port" ]; do slurmd_port=$(free_port); done
  cat >"$dir/slurm.conf" <<EOF
# Written by scripts/slurm_local.sh: a one-node cluster on 127.0.0.1, state under $dir.
ClusterName=local
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
CommunicationParameters=NoCtldInAddrAny,NoInAddrAny
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge/munge.socket
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/run/slurmctld.pid
SlurmdPidFile=$dir/run/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
# No cgroups (containers often have none to give): processes are tracked by parent id.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
# No accounting database: sacct cannot report job states, squeue can for MinJobAge seconds.
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MinJobAge=3600
SchedulerType=sched/backfill
# CPUs are the consumable resource (memory is checked against RealMemory, not reserved),
# so two 1-CPU jobs run side by side on a 2-core machine.
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SlurmdParameters=config_overrides
ReturnToService=2
MpiDefault=none
SwitchType=switch/none
SlurmctldTimeout=30
SlurmdTimeout=60
KillWait=5
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=$part Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
}

CLIENTS="srun sbatch squeue scancel sinfo scontrol sacct sacctmgr sshare sstat"

write_wrappers() {
  local dir=$1 c real
  mkdir -p "$dir/bin"
  for c in $CLIENTS; do
    real=$(command -v "$c" 2>/dev/null) || continue
    case "$real" in "$dir/bin/"*) continue ;; esac
    printf '#!/bin/sh\n# scripts/slurm_local.sh: the cluster under %s\nexport SLURM_CONF=%s/slurm.conf\nexec %s "$@"\n' \
      "$dir" "$dir" "$real" >"$dir/bin/$c"
    chmod +x "$dir/bin/$c"
  done
}

cmd_start() {
  local dir=$1
  cmd_install
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  if [ -f "$dir/run/slurmctld.pid" ] && kill -0 "$(cat "$dir/run/slurmctld.pid")" 2>/dev/null; then
    echo "a cluster is already running from $dir (stop it first)" >&2
    exit 1
  fi
  mkdir -p "$dir/munge" "$dir/state" "$dir/spool" "$dir/run" "$dir/log"
  chmod 700 "$dir/munge"
  # A throw-away munge key, readable by root only (munged refuses looser permissions).
  head -c 1024 /dev/urandom >"$dir/munge/munge.key"
  chmod 400 "$dir/munge/munge.key"
  write_conf "$dir"
  write_wrappers "$dir"
  export SLURM_CONF=$dir/slurm.conf
  munged --force --key-file="$dir/munge/munge.key" --socket="$dir/munge/munge.socket" \
    --pid-file="$dir/run/munged.pid" --log-file="$dir/log/munged.log" --seed-file="$dir/munge/seed"
  wait_for 20 "munged" test -S "$dir/munge/munge.socket"
  # -i: ignore state left by an earlier cluster in DIR; -c: clear it.
  slurmctld -i -c
  wait_for 30 "slurmctld to answer" scontrol ping
  slurmd -N localhost
  if ! wait_for 60 "the node to come up" node_idle; then
    sinfo -N -l >&2 || true
    tail -20 "$dir/log/slurmctld.log" "$dir/log/slurmd.log" >&2 || true
    exit 1
  fi
  echo "export PATH=$dir/bin:\$PATH SLURM_CONF=$SLURM_CONF"
}

stop_pidfile() {  # stop_pidfile FILE NAME: SIGTERM the PID in FILE, wait, then SIGKILL
  local f=$1 name=$2 pid i
  [ -f "$f" ] || return 0
  pid=$(cat "$f")
  # Only a process of the expected program (a PID file can outlive its process).
  if [ -n "$pid" ] && [ -r "/proc/$pid/comm" ] && [ "$(cat "/proc/$pid/comm")" = "$name" ]; then
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 40); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.25
    done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$f"
}

cmd_stop() {
  local dir
  dir=$(cd "$1" && pwd)
  export SLURM_CONF=$dir/slurm.conf
  if [ -f "$SLURM_CONF" ] && [ -f "$dir/run/slurmctld.pid" ]; then
    # Cancel this cluster's jobs and give their steps a moment to end.
    scancel --full "$(squeue -h -o %i | tr '\n' ' ')" >/dev/null 2>&1 || true
    for _ in $(seq 1 20); do
      [ -z "$(squeue -h -o %i -t running,completing 2>/dev/null)" ] && break
      sleep 0.5
    done
  fi
  stop_pidfile "$dir/run/slurmd.pid" slurmd
  stop_pidfile "$dir/run/slurmctld.pid" slurmctld
  stop_pidfile "$dir/run/munged.pid" munged
}

case "${1:-}" in
  install) cmd_install ;;
  start) [ $# -eq 2 ] || { echo "usage: $0 start DIR" >&2; exit 2; }; cmd_start "$2" ;;
  stop) [ $# -eq 2 ] || { echo "usage: $0 stop DIR" >&2; exit 2; }; cmd_stop "$2" ;;
  *) echo "usage: $0 install | start DIR | stop DIR" >&2; exit 2 ;;
esac
