#!/usr/bin/env bash
# Stop the local Slurm cluster that start.sh started under DIR.
#
# Usage: stop.sh DIR
#
# Cancels the cluster's jobs (so no job step outlives it), then stops exactly the PIDs recorded in
# DIR/run/pids, newest first, never by process name. A recorded PID that now belongs to another program
# (the daemon died and the PID was reused) is left alone. A multi-node cluster's network (namespaces, links,
# bridge, /etc/hosts block: DIR/run/net) is removed last. DIR itself (logs, database, state) is kept.
set -euo pipefail

DIR=$(realpath -m "${1:?usage: stop.sh DIR}")
PIDS=$DIR/run/pids
export PATH=$PATH:/usr/sbin:/sbin
CONF=$DIR/etc/slurm.conf
export SLURM_CONF=$CONF
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=common.sh
source "$HERE/common.sh"
# shellcheck source=network.sh
source "$HERE/network.sh"

recorded_pid() { awk -v n="$1" '$1 == n { print $2 }' "$PIDS"; }

# The program a recorded name must still be running, to tell our daemon from a reused PID.
program_of() {
    case $1 in
        mariadb) echo mariadbd ;;
        slurmd-*) echo slurmd ;;
        *) echo "$1" ;;
    esac
}

cancel_jobs() {
    local ctld
    ctld=$(recorded_pid slurmctld)
    { [ -n "$ctld" ] && alive "$ctld"; } || return 0
    command -v squeue >/dev/null || { log "squeue not found: jobs not cancelled"; return 0; }
    local jobs
    jobs=$(squeue -h -o %A 2>/dev/null | sort -u | tr '\n' ' ') || jobs=""
    [ -n "${jobs// /}" ] || return 0
    log "cancelling jobs $jobs"
    # shellcheck disable=SC2086
    scancel $jobs || true
    local deadline=$((SECONDS + 30))
    while [ -n "$(squeue -h -o %A 2>/dev/null)" ] && [ $SECONDS -lt $deadline ]; do
        sleep 0.5
    done
}

stop_pid() {
    local name=$1 pid=$2
    alive "$pid" || { log "$name (pid $pid) already gone"; return 0; }
    local comm
    comm=$(cat "/proc/$pid/comm" 2>/dev/null || true)
    if [ "$comm" != "$(program_of "$name")" ]; then
        log "pid $pid is now '$comm', not $name: left alone"
        return 0
    fi
    kill -TERM "$pid"
    local started=$SECONDS deadline=$((SECONDS + 20))
    while alive "$pid" && [ $SECONDS -lt $deadline ]; do
        sleep 0.2
    done
    if alive "$pid"; then
        log "$name (pid $pid) ignored SIGTERM for 20s: SIGKILL"
        kill -KILL "$pid" || true
    fi
    log "stopped $name (pid $pid) in $((SECONDS - started))s"
}

main() {
    if [ ! -f "$PIDS" ] && [ ! -f "$NET" ]; then
        log "no cluster recorded in $PIDS: nothing to stop"
        return 0
    fi
    if [ -f "$PIDS" ]; then
        cancel_jobs
        local name pid
        tac "$PIDS" | while read -r name pid; do
            stop_pid "$name" "$pid"
        done
        rm -f "$PIDS"
    fi
    remove_network
}

main
