#!/usr/bin/env bash
# A single-node SLURM cluster on this machine (slurmctld + slurmd on localhost, munge authentication), to
# try `modicl sweep --executor slurm` and to run the SLURM tests. Debian/Ubuntu, as root.
#
#   scripts/slurm-single-node.sh install        # apt-get install slurm-wlm munge (once)
#   scripts/slurm-single-node.sh start [DIR]    # write DIR/slurm.conf, start munged, slurmctld, slurmd
#   export SLURM_CONF=DIR/slurm.conf            # what `start` prints: sbatch/squeue/submitit read it
#   scripts/slurm-single-node.sh stop [DIR]     # stop the three daemons started from DIR (by pid)
#
# DIR defaults to /tmp/modicl-slurm. The daemons listen on ports 6817 (slurmctld) and 6818 (slurmd); set
# SLURMCTLD_PORT and SLURMD_PORT to run a second cluster beside the first. Nothing outside DIR is written: its own munge key and socket, its own
# spool and state directories, so a system munge or slurm configuration is left alone. The node takes all
# of this machine's CPUs; one partition, "debug", is the default. Two settings are shortened for tests:
# KillWait=3 so that scancel ends a job within seconds (submitit ignores the first SIGTERM), and
# cred_expire=10 because a requeued job waits that long before it may start again (default 120 s).
set -euo pipefail

cmd=${1:-}
dir=${2:-/tmp/modicl-slurm}

die() { echo "slurm-single-node: $*" >&2; exit 1; }

stop_pidfile() {
    local f=$1
    [[ -f $f ]] || return 0
    local pid
    pid=$(cat "$f")
    if kill "$pid" 2>/dev/null; then
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$f"
}

case $cmd in
install)
    [[ $(id -u) == 0 ]] || die "install needs root (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq slurm-wlm munge >/dev/null
    ;;
start)
    [[ $(id -u) == 0 ]] || die "start needs root (munged --force, SlurmUser=root)"
    for prog in munged slurmctld slurmd sbatch; do
        command -v "$prog" >/dev/null || die "$prog not found; run: $0 install"
    done
    if [[ -f $dir/slurmctld.pid ]] && kill -0 "$(cat "$dir/slurmctld.pid")" 2>/dev/null; then
        die "a cluster from $dir is already running; stop it first: $0 stop $dir"
    fi
    host=$(hostname -s)
    ctld_port=${SLURMCTLD_PORT:-6817}
    slurmd_port=${SLURMD_PORT:-6818}
    cpus=$(nproc)
    mem_mb=$(awk '/^MemTotal:/ {printf "%d", $2 * 0.9 / 1024}' /proc/meminfo)
    mkdir -p "$dir"/{munge,spool,state,log}
    chmod 700 "$dir" "$dir/munge"
    # A fresh key per cluster: 1 KiB of random bytes, readable by root only.
    head -c 1024 /dev/urandom > "$dir/munge/munge.key"
    chmod 400 "$dir/munge/munge.key"
    munged --force --key-file="$dir/munge/munge.key" --socket="$dir/munge/munge.socket" \
        --pid-file="$dir/munged.pid" --log-file="$dir/log/munged.log" --seed-file="$dir/munge/seed"
    cat > "$dir/slurm.conf" <<EOF
ClusterName=modicl
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
AuthType=auth/munge
AuthInfo=socket=$dir/munge/munge.socket,cred_expire=10
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
KillWait=3
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmdSpoolDir=$dir/spool
StateSaveLocation=$dir/state
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
    export SLURM_CONF=$dir/slurm.conf
    slurmctld -f "$SLURM_CONF" -c   # -c: a new cluster, no saved state
    slurmd -f "$SLURM_CONF"
    for _ in $(seq 100); do
        if sinfo -h -o %T 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then
            echo "single-node SLURM cluster up: node $host, $cpus CPUs, partition debug"
            echo "export SLURM_CONF=$SLURM_CONF"
            exit 0
        fi
        sleep 0.2
    done
    die "the node did not come up within 20 s; see $dir/log/"
    ;;
stop)
    stop_pidfile "$dir/slurmd.pid"
    stop_pidfile "$dir/slurmctld.pid"
    stop_pidfile "$dir/munged.pid"
    echo "stopped the cluster of $dir"
    ;;
*)
    die "usage: $0 install | start [DIR] | stop [DIR]"
    ;;
esac
