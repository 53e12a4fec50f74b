#!/usr/bin/env bash
# A private one-node SLURM cluster for the tests (make slurm-up / make slurm-down; tests/slurm_cluster.py).
#
#   scripts/slurm_test_cluster.sh up     install slurm-wlm + munge when missing (root, apt-get), write
#                                        $SLURM_TEST_DIR/slurm.conf, start munged, slurmctld, slurmd, wait
#                                        until the node is idle; prints `export SLURM_CONF=...`
#   scripts/slurm_test_cluster.sh down   stop exactly the daemons `up` started (the PIDs it wrote)
#
# Everything lives under SLURM_TEST_DIR (default /tmp/medvqa-slurm): config, munge key and socket, state,
# logs. /etc/slurm and /etc/munge are never written: the tools find this cluster through SLURM_CONF, and
# slurm.conf points slurm at its own munged through AuthInfo=socket=. Needs root (the daemons run as root,
# so jobs can run as any user, and apt-get). Accounting is off (no slurmdbd): finished jobs' states come from
# slurmctld itself (squeue/scontrol, kept MinJobAge seconds) and a job completion log (jobcomp/filetxt);
# medvqa's launcher reads states with squeue on such a cluster (medvqa/slurm.py, docs/scale.md).
set -euo pipefail

DIR=${SLURM_TEST_DIR:-/tmp/medvqa-slurm}
CPUS=${SLURM_TEST_CPUS:-8}          # slots the node advertises (tiny CPU jobs share the real cores)
MEM_MB=${SLURM_TEST_MEM_MB:-16000}  # memory it advertises
CTLD_PORT=${SLURM_TEST_CTLD_PORT:-6917}  # not the default 6817/6818: a real cluster's daemons may run here
SLURMD_PORT=${SLURM_TEST_SLURMD_PORT:-6918}
NODE=$(hostname -s)

die() { echo "slurm_test_cluster: $*" >&2; exit 1; }

install_packages() {
  command -v slurmctld >/dev/null && command -v munged >/dev/null && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge
  else
    die "needs slurm-wlm and munge (as root: apt-get install -y slurm-wlm munge)"
  fi
}

write_config() {
  mkdir -p "$DIR"/{state,spool,log,munge}
  chmod 700 "$DIR/munge"
  [ -f "$DIR/munge/munge.key" ] || { dd if=/dev/urandom of="$DIR/munge/munge.key" bs=1024 count=1 status=none; }
  chmod 600 "$DIR/munge/munge.key"
  cat >"$DIR/slurm.conf" <<EOF
# written by scripts/slurm_test_cluster.sh: one node, root daemons, no accounting database
ClusterName=medvqa-test
SlurmctldHost=$NODE
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$DIR/munge/munge.sock
CredType=cred/munge
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
# no cgroups in a container: processes tracked by parent pid, no task binding
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
MpiDefault=none
SchedulerType=sched/backfill
ReturnToService=2
# the node advertises what this file says, not what slurmd measures (tiny jobs share the cores)
SlurmdParameters=config_overrides
# no slurmdbd: job states from slurmctld (finished jobs kept an hour) and a completion log
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/filetxt
JobCompLoc=$DIR/log/jobcomp.txt
MinJobAge=3600
# requeued jobs (scontrol requeue, preemption) go back to pending, not held
JobRequeue=1
KillWait=10
SlurmctldTimeout=30
SlurmdTimeout=30
NodeName=$NODE CPUs=$CPUS RealMemory=$MEM_MB State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
}

start() {  # start NAME CMD...: run in the foreground of a background shell, remember its PID
  local name=$1; shift
  "$@" >>"$DIR/log/$name.out" 2>&1 &
  echo $! >"$DIR/$name.started.pid"
}

up() {
  install_packages
  [ "$(id -u)" = 0 ] || die "starting the daemons needs root"
  if [ -f "$DIR/slurmctld.started.pid" ] && kill -0 "$(cat "$DIR/slurmctld.started.pid")" 2>/dev/null; then
    echo "slurm_test_cluster: already up ($DIR)"; echo "export SLURM_CONF=$DIR/slurm.conf"; return 0
  fi
  write_config
  export SLURM_CONF=$DIR/slurm.conf
  start munged munged --foreground --force --key-file="$DIR/munge/munge.key" --socket="$DIR/munge/munge.sock" \
    --pid-file="$DIR/munge/munged.pid" --log-file="$DIR/log/munged.log" --seed-file="$DIR/munge/munge.seed"
  for _ in $(seq 50); do [ -S "$DIR/munge/munge.sock" ] && break; sleep 0.2; done
  [ -S "$DIR/munge/munge.sock" ] || { down; die "munged did not start: $DIR/log/munged.log"; }
  start slurmctld slurmctld -D -i -f "$SLURM_CONF"  # -i: ignore state left by an earlier run
  start slurmd slurmd -D -f "$SLURM_CONF" -N "$NODE"
  local state=""
  for _ in $(seq 120); do
    state=$(sinfo -h -n "$NODE" -o %t 2>/dev/null || true)
    [ "$state" = idle ] && break
    sleep 1
  done
  if [ "$state" != idle ]; then
    tail -5 "$DIR"/log/slurmctld.log "$DIR"/log/slurmd.log >&2 || true
    down; die "node $NODE not idle after 120 s (state '${state}'); logs in $DIR/log"
  fi
  echo "slurm_test_cluster: node $NODE idle ($CPUS CPUs); logs in $DIR/log"
  echo "export SLURM_CONF=$SLURM_CONF"
}

down() {  # cancel this cluster's jobs, then stop the daemons this script started, by the PIDs it wrote
  local name pid
  if [ -f "$DIR/slurmctld.started.pid" ] && kill -0 "$(cat "$DIR/slurmctld.started.pid")" 2>/dev/null; then
    export SLURM_CONF=$DIR/slurm.conf  # job steps outlive slurmd: let slurm end them while it still can
    scancel --quiet --full --state=RUNNING 2>/dev/null || true
    scancel --quiet --state=PENDING 2>/dev/null || true
    for _ in $(seq 30); do [ -z "$(squeue -h -t RUNNING,COMPLETING 2>/dev/null)" ] && break; sleep 1; done
  fi
  for name in slurmd slurmctld munged; do
    [ -f "$DIR/$name.started.pid" ] || continue
    pid=$(cat "$DIR/$name.started.pid")
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid"
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
      kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
    fi
    rm -f "$DIR/$name.started.pid"
  done
  echo "slurm_test_cluster: stopped ($DIR)"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  *) die "usage: $0 up|down  (SLURM_TEST_DIR=$DIR)" ;;
esac
