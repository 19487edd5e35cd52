#!/usr/bin/env bash
# Lose or bring back one node of a multi-node cluster that start.sh --nodes N started under DIR.
#
# Usage: node.sh kill DIR NODE    # SIGKILL every process in NODE's namespace: slurmd, step daemons, tasks
#        node.sh start DIR NODE   # start NODE's slurmd again (slurmctld returns it to service: ReturnToService=2)
set -euo pipefail

ACTION=${1:?usage: node.sh kill|start DIR NODE}
DIR=$(realpath -m "${2:?usage: node.sh kill|start DIR NODE}")
NODE=${3:?usage: node.sh kill|start DIR NODE}
PIDS=$DIR/run/pids
CONF=$DIR/etc/slurm.conf
export PATH=$PATH:/usr/sbin:/sbin
export SLURM_CONF=$CONF
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=common.sh
source "$HERE/common.sh"
# shellcheck source=network.sh
source "$HERE/network.sh"

grep -qx "netns $NODE" "$NET" 2>/dev/null || { log "error: $NODE is not a node of the cluster in $DIR"; exit 2; }
case $ACTION in
    kill)
        kill_namespace "$NODE"
        # The record keeps the dead PID: stop.sh finds it gone. A restart appends a new line for the name.
        ;;
    start)
        pid=$(awk -v n="slurmd-$NODE" '$1 == n { p = $2 } END { print p }' "$PIDS")
        if [ -n "$pid" ] && alive "$pid"; then
            log "$NODE's slurmd is running (pid $pid)"
            exit 0
        fi
        start_node "$NODE"
        ;;
    *)
        log "error: unknown action '$ACTION' (kill or start)"
        exit 2
        ;;
esac
