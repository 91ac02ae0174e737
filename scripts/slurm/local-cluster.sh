#!/usr/bin/env bash
# A one-node Slurm cluster on this machine, in a folder of its own (for the Slurm test,
# and for trying scripts/slurm/tandem.sbatch without a cluster). Needs root.
#
#   scripts/slurm/local-cluster.sh install      Debian's slurm-wlm and munge, when missing
#   scripts/slurm/local-cluster.sh up DIR       munged, slurmctld and slurmd, configured in DIR
#   scripts/slurm/local-cluster.sh down DIR     stops them (DIR stays)
#
# After `up`, use the cluster with SLURM_CONF=DIR/slurm.conf (sbatch, squeue, scontrol).
# Ports 16817/16818 and a munge socket in DIR keep it apart from any other Slurm here.
set -euo pipefail
cmd="${1:-}"; dir="${2:-}"

# Starts a daemon holding none of our descriptors: a caller that waits for our output, or
# for a descriptor it gave us to close (Foundation's Process does), must not wait for it.
detach() {
  (
    self=$BASHPID
    for fd in $(ls /proc/$self/fd); do [ "$fd" -gt 2 ] && eval "exec $fd>&-" 2>/dev/null; done
    exec "$@"
  ) </dev/null >/dev/null 2>&1
}

case "$cmd" in
  install)
    need=()
    command -v slurmctld >/dev/null 2>&1 || need+=(slurm-wlm)
    command -v munged >/dev/null 2>&1 || need+=(munge)
    [ ${#need[@]} -eq 0 ] && { echo "local-cluster: slurm-wlm and munge are present"; exit 0; }
    echo "local-cluster: installing ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
    ;;
  up)
    [ -n "$dir" ] || { echo "usage: $0 up DIR" >&2; exit 2; }
    mkdir -p "$dir"/{state,spool,log,munge}
    dir="$(cd "$dir" && pwd)"
    host="$(hostname -s)"; cpus="$(nproc)"
    mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 512 ))
    # munge: a key and a socket of its own.
    dd if=/dev/urandom of="$dir/munge/munge.key" bs=1024 count=1 status=none
    chmod 400 "$dir/munge/munge.key"
    chmod 700 "$dir/munge"
    detach munged --force --key-file="$dir/munge/munge.key" --socket="$dir/munge/munge.socket" \
      --pid-file="$dir/munge/munged.pid" --log-file="$dir/log/munged.log" --seed-file="$dir/munge/munge.seed"
    cat > "$dir/slurm.conf" <<CONF
ClusterName=tandemtest
SlurmctldHost=$host
SlurmctldPort=16817
SlurmdPort=16818
AuthType=auth/munge
# cred_expire is also how long Slurm holds a requeued job (120 s by default): the old
# credential stays revoked that long, and a job started sooner is killed ("credential
# revoked"). Ten seconds, and a 2 s scheduling pass (60 s by default) that then starts it,
# keep the preemption test short without cutting that corner.
AuthInfo=socket=$dir/munge/munge.socket,cred_expire=10
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
ReturnToService=2
JobRequeue=1
SchedulerType=sched/backfill
SchedulerParameters=bf_interval=1,sched_interval=2
MessageTimeout=10
KillWait=5
MinJobAge=600
NodeName=$host CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=main Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
CONF
    SLURM_CONF="$dir/slurm.conf" detach slurmctld -f "$dir/slurm.conf" -i
    SLURM_CONF="$dir/slurm.conf" detach slurmd -f "$dir/slurm.conf"
    for _ in $(seq 1 60); do
      if SLURM_CONF="$dir/slurm.conf" sinfo -h -o '%T' 2>/dev/null | grep -q -E '^(idle|mixed)'; then
        echo "local-cluster: up (node $host, $cpus CPUs); SLURM_CONF=$dir/slurm.conf"
        exit 0
      fi
      sleep 0.5
    done
    echo "local-cluster: the node did not come up; logs in $dir/log" >&2
    tail -n 20 "$dir/log/slurmctld.log" "$dir/log/slurmd.log" >&2 || true
    exit 1
    ;;
  down)
    [ -n "$dir" ] || { echo "usage: $0 down DIR" >&2; exit 2; }
    for pidfile in "$dir/slurmd.pid" "$dir/slurmctld.pid" "$dir/munge/munged.pid"; do
      if [ -f "$pidfile" ]; then
        pid="$(cat "$pidfile")"
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
        kill -9 "$pid" 2>/dev/null || true
      fi
    done
    echo "local-cluster: down"
    ;;
  *)
    echo "usage: $0 install | up DIR | down DIR" >&2; exit 2 ;;
esac
