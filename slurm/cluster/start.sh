#!/usr/bin/env bash
# Start a local Slurm cluster whose every file lives under DIR: one node on localhost, or N nodes on this machine.
#
# Usage: start.sh [--nodes N] DIR
#
# Daemons (no systemd here, so each is started by hand, in its own session, in the foreground mode of the
# daemon so that the PID recorded in DIR/run/pids is the daemon itself): munged, a private MariaDB on
# 127.0.0.1 (data, socket and pid under DIR), slurmdbd (accounting: submitit polls sacct), slurmctld, slurmd.
# Installs the Debian packages when they are missing. Idempotent: a running cluster is left alone.
# Prints on stdout only the line to use the cluster:  export SLURM_CONF=DIR/etc/slurm.conf
# Stop it with stop.sh DIR (it stops exactly the recorded PIDs).
#
# --nodes N (N > 1; default 1: the node "localhost"): N hosts sharing this machine's filesystem, as cluster
# nodes share NFS, each a network namespace (network.sh: a veth to a bridge, an address in a small test
# subnet of 198.18.0.0/15, no default route, /etc/hosts entries) with its own host name (a UTS namespace) and
# its own slurmd (-N mixmim-nodeI, spool, pid and log per node). slurmctld listens on the bridge's address.
# Needs root; where namespaces are not allowed it says why and exits 3 (the multi-node tests then skip).
#
# Environment (optional): MIXMIM_SLURM_CPUS (CPUs each node advertises, default 8), MIXMIM_SLURM_MEM_MB
# (default 16000), MIXMIM_SLURM_PORT (slurmctld port; slurmd +1, slurmdbd +2; default 6817),
# MIXMIM_SLURM_DB_PORT (MariaDB, default 3307), MIXMIM_SLURM_WAIT_S (readiness timeout, default 60),
# MIXMIM_SLURM_FIRST_JOB_ID (default 1: give a second cluster other job ids, so that sacct never mixes them up).
set -euo pipefail

NODES=1
if [ "${1:-}" = --nodes ]; then
    NODES=${2:?usage: start.sh [--nodes N] DIR}
    shift 2
fi
DIR=$(realpath -m "${1:?usage: start.sh [--nodes N] DIR}")
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
[[ "$NODES" =~ ^[1-9][0-9]?$ ]] || { echo "[slurm-cluster] error: --nodes takes a number from 1 to 99, not '$NODES'" >&2; exit 2; }
FIRST_JOB_ID=${MIXMIM_SLURM_FIRST_JOB_ID:-1}
CPUS=${MIXMIM_SLURM_CPUS:-8}
MEM_MB=${MIXMIM_SLURM_MEM_MB:-16000}
CTLD_PORT=${MIXMIM_SLURM_PORT:-6817}
SLURMD_PORT=$((CTLD_PORT + 1))
DBD_PORT=$((CTLD_PORT + 2))
DB_PORT=${MIXMIM_SLURM_DB_PORT:-3307}
WAIT_S=${MIXMIM_SLURM_WAIT_S:-60}
PACKAGES=(slurmctld slurmd slurm-client munge slurmdbd mariadb-server)
PIDS=$DIR/run/pids
CONF=$DIR/etc/slurm.conf
MUNGE_SOCKET=$DIR/munge/munge.socket
DB_SOCKET=$DIR/db/mariadb.sock
export PATH=$PATH:/usr/sbin:/sbin
export SLURM_CONF=$CONF

# shellcheck source=common.sh
source "$HERE/common.sh"
# shellcheck source=network.sh
source "$HERE/network.sh"

fail() {
    log "error: $*"
    for f in "$DIR"/log/*; do
        [ -s "$f" ] && { log "--- tail of $f"; tail -n 15 "$f" >&2; }
    done
    { [ -f "$PIDS" ] || [ -f "$NET" ]; } && "$HERE/stop.sh" "$DIR" >&2 || true
    exit 1
}

# Poll a command until it succeeds or WAIT_S seconds pass.
wait_for() {
    local what=$1 deadline=$((SECONDS + WAIT_S))
    shift
    until "$@" >/dev/null 2>&1; do
        [ $SECONDS -ge $deadline ] && fail "timed out after ${WAIT_S}s waiting for $what"
        sleep 0.2
    done
}

already_running() {
    [ -f "$PIDS" ] || return 1
    local name pid total=0 up=0
    while read -r name pid; do
        total=$((total + 1))
        alive "$pid" && up=$((up + 1))
    done <"$PIDS"
    if [ "$up" -eq "$total" ] && [ "$total" -gt 0 ]; then
        return 0
    elif [ "$up" -gt 0 ]; then
        log "error: only $up of $total recorded daemons are alive ($PIDS); run stop.sh $DIR first"
        exit 1
    fi
    rm -f "$PIDS"  # a stale record of a cluster that is gone
    return 1
}

install_packages() {
    local missing=0 cmd
    for cmd in slurmctld slurmd slurmdbd sinfo sacct srun munged mungekey mariadbd mariadb-install-db; do
        command -v "$cmd" >/dev/null || missing=1
    done
    [ "$missing" -eq 0 ] && return 0
    [ "$(id -u)" -eq 0 ] || fail "Slurm packages missing and not root: apt-get install ${PACKAGES[*]}"
    log "installing ${PACKAGES[*]}"
    # Keep the packages' maintainer scripts from starting system-wide daemons (no systemd here).
    local policy=/usr/sbin/policy-rc.d added_policy=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && added_policy=1
    fi
    local apt=(apt-get -o DPkg::Lock::Timeout=300 -qq)
    local rc=0
    { "${apt[@]}" update && DEBIAN_FRONTEND=noninteractive "${apt[@]}" install -y "${PACKAGES[@]}"; } >&2 || rc=$?
    [ "$added_policy" -eq 1 ] && rm -f "$policy"
    [ "$rc" -eq 0 ] || fail "apt-get install failed (rc $rc)"
}

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# The controller's host and the node definitions of slurm.conf: "localhost", or the namespaces' nodes.
node_lines() {
    if [ "$NODES" -eq 1 ]; then
        echo "NodeName=localhost NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM_MB State=UNKNOWN"
        echo "PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP"
        return
    fi
    local i
    for i in $(seq 1 "$NODES"); do
        echo "NodeName=$(node_name "$i") NodeAddr=$(node_addr "$i") CPUs=$CPUS RealMemory=$MEM_MB State=UNKNOWN"
    done
    echo "PartitionName=debug Nodes=$(node_name "[1-$NODES]") Default=YES MaxTime=INFINITE State=UP"
}

render() {  # render TEMPLATE OUTPUT
    local ctld_host=localhost per_node=""
    if [ "$NODES" -gt 1 ]; then
        ctld_host="localhost($HOST_ADDR)" per_node="-%n"
    fi
    local nodes
    nodes=$(node_lines)
    sed -e "s|@DIR@|$DIR|g" -e "s|@CTLD_PORT@|$CTLD_PORT|g" -e "s|@SLURMD_PORT@|$SLURMD_PORT|g" \
        -e "s|@DBD_PORT@|$DBD_PORT|g" -e "s|@DB_PORT@|$DB_PORT|g" -e "s|@CPUS@|$CPUS|g" \
        -e "s|@MEM_MB@|$MEM_MB|g" -e "s|@DB_PASS@|$DB_PASS|g" -e "s|@CTLD_HOST@|$ctld_host|g" \
        -e "s|@PER_NODE@|$per_node|g" -e "s|@FIRST_JOB_ID@|$FIRST_JOB_ID|g" "$1" |
        awk -v nodes="$nodes" '$0 == "@NODE_LINES@" { print nodes; next } { print }' >"$2"
}

prepare_dir() {
    mkdir -p "$DIR"/{etc,run,log,munge,db,state/slurmctld,state/slurmd}
    chmod 755 "$DIR" "$DIR/munge"
    [ -f "$DIR/etc/db.pass" ] || (umask 077 && head -c 18 /dev/urandom | base64 | tr -d '/+=' >"$DIR/etc/db.pass")
    DB_PASS=$(cat "$DIR/etc/db.pass")
    render "$HERE/slurm.conf.in" "$CONF"
    (umask 077 && render "$HERE/slurmdbd.conf.in" "$DIR/etc/slurmdbd.conf")
    chmod 600 "$DIR/etc/slurmdbd.conf"
    [ -f "$DIR/munge/munge.key" ] || mungekey --create --keyfile="$DIR/munge/munge.key" >&2
    chmod 600 "$DIR/munge/munge.key"
}

start_munge() {
    start_daemon munged munged --foreground --force --socket="$MUNGE_SOCKET" --key-file="$DIR/munge/munge.key" \
        --pid-file="$DIR/run/munged.pid" --log-file="$DIR/log/munged.log" --seed-file="$DIR/munge/munged.seed"
    wait_for munge bash -c "munge -n -S '$MUNGE_SOCKET' | unmunge -S '$MUNGE_SOCKET'"
}

db_sql() { mariadb --no-defaults --socket="$DB_SOCKET" -u root -e "$1"; }

start_mariadb() {
    if [ ! -d "$DIR/db/data/mysql" ]; then
        mariadb-install-db --no-defaults --user=root --datadir="$DIR/db/data" --skip-test-db \
            --auth-root-authentication-method=socket >"$DIR/log/mariadb-install.log" 2>&1 ||
            fail "mariadb-install-db failed (see $DIR/log/mariadb-install.log)"
    fi
    start_daemon mariadb mariadbd --no-defaults --user=root --datadir="$DIR/db/data" --socket="$DB_SOCKET" \
        --pid-file="$DIR/run/mariadb.pid" --port="$DB_PORT" --bind-address=127.0.0.1 --skip-name-resolve \
        --log-error="$DIR/log/mariadb.log" --innodb-buffer-pool-size=32M
    wait_for MariaDB db_sql "SELECT 1"
    db_sql "CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
            ALTER USER 'slurm'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
            GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1'; FLUSH PRIVILEGES;"
}

start_slurm() {
    start_daemon slurmdbd slurmdbd -D
    wait_for slurmdbd sacctmgr -i show cluster
    start_daemon slurmctld slurmctld -D -i -f "$CONF"
    wait_for slurmctld scontrol ping
    if [ "$NODES" -eq 1 ]; then
        start_daemon slurmd slurmd -D -f "$CONF" -N localhost
        wait_for "node localhost to be idle" bash -c "sinfo -h -n localhost -o %t | grep -qx idle"
    else
        local i
        for i in $(seq 1 "$NODES"); do
            start_node "$(node_name "$i")"
        done
        wait_for "$NODES nodes to be idle" bash -c "[ \$(sinfo -h -N -o %t | grep -cx idle) -eq $NODES ]"
    fi
    wait_for sacct sacct -n -X
}

main() {
    if already_running; then
        log "already running (PIDs in $PIDS)"
        echo "export SLURM_CONF=$CONF"
        return 0
    fi
    local start=$SECONDS
    install_packages
    local port
    for port in "$CTLD_PORT" "$SLURMD_PORT" "$DBD_PORT" "$DB_PORT"; do
        port_in_use "$port" && fail "port $port is already in use (set MIXMIM_SLURM_PORT / MIXMIM_SLURM_DB_PORT)"
    done
    if [ "$NODES" -gt 1 ]; then
        check_namespaces
    fi
    prepare_dir
    if [ "$NODES" -gt 1 ]; then
        create_network
    fi
    start_munge
    start_mariadb
    start_slurm
    local names=localhost
    [ "$NODES" -gt 1 ] && names="$(node_name "[1-$NODES]") ($SUBNET.0/24, bridge $BRIDGE)"
    log "cluster up in $((SECONDS - start))s: $names, $CPUS CPUs each, logs in $DIR/log"
    echo "export SLURM_CONF=$CONF"
}

main
