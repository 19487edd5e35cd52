# The hosts of a multi-node cluster on one machine (sourced by start.sh, stop.sh and node.sh; DIR, PIDS and
# CONF set first).
#
# Node I is "mixmim-nodeI": a network namespace of that name whose interface "mixmim0" (one end of a veth
# pair; the other, "mixmim-vI", is a port of the bridge "mixmim-br0") has the address SUBNET.(10+I)/24; the
# bridge has SUBNET.1, where slurmctld is reached. Only the subnet's own route exists in a namespace: no
# default route, no NAT, so nothing sent from a node can leave the machine. SUBNET is 198.18.0 (198.18.0.0/15
# is reserved for network tests, RFC 2544) unless MIXMIM_SLURM_SUBNET names another /24 in it.
# /etc/hosts gets one block (between two marker lines naming DIR) mapping each node's name to its address, so
# that the first host of a job's node list resolves on every node (torch's rendezvous) and each node's own
# name resolves to its address (gloo's default interface). Everything created is listed in DIR/run/net and
# remove_network removes exactly that.

SUBNET=${MIXMIM_SLURM_SUBNET:-198.18.0}
BRIDGE=mixmim-br0
HOST_ADDR=$SUBNET.1
NODE_IFNAME=mixmim0
NET=$DIR/run/net
HOSTS_FILE=/etc/hosts

node_name() { echo "mixmim-node$1"; }
node_addr() { echo "$SUBNET.$((10 + $1))"; }

# Exit 3 with the reason where this machine cannot host namespaced nodes.
check_namespaces() {
    local why=""
    [[ "$SUBNET" =~ ^198\.1[89]\.[0-9]{1,3}$ ]] || why="MIXMIM_SLURM_SUBNET=$SUBNET is not a /24 of 198.18.0.0/15"
    [ -z "$why" ] && [ "$(id -u)" -ne 0 ] && why="network namespaces need root (this is uid $(id -u))"
    local cmd
    for cmd in ip nsenter unshare hostname; do
        [ -z "$why" ] && ! command -v "$cmd" >/dev/null && why="'$cmd' is not installed (iproute2, util-linux)"
    done
    local probe=mixmim-probe-$$
    if [ -z "$why" ] && ! ip netns add "$probe" 2>/dev/null; then
        why="'ip netns add' is not allowed here (a container without CAP_SYS_ADMIN/CAP_NET_ADMIN?)"
    elif [ -z "$why" ]; then
        nsenter --net="/run/netns/$probe" unshare --uts true 2>/dev/null || why="'unshare --uts' is not allowed here"
        ip netns del "$probe"
    fi
    [ -z "$why" ] && ip link show "$BRIDGE" >/dev/null 2>&1 && why="a link $BRIDGE exists already (another cluster?)"
    [ -z "$why" ] && ip -o addr show | grep -q " $SUBNET\." && why="$SUBNET.0/24 is in use on this machine"
    if [ -n "$why" ]; then
        log "cannot start a multi-node cluster: $why"
        exit 3
    fi
}

# Record a created object ("netns NAME", "link NAME", "hosts DIR") before anything else can fail.
created() { echo "$*" >>"$NET"; }

create_network() {
    ip link add "$BRIDGE" type bridge && created link "$BRIDGE"
    ip addr add "$HOST_ADDR/24" dev "$BRIDGE"
    ip link set "$BRIDGE" up
    local i name veth
    for i in $(seq 1 "$NODES"); do
        name=$(node_name "$i") veth=mixmim-v$i
        ip netns add "$name" && created netns "$name"
        ip link add "$veth" type veth peer name "$NODE_IFNAME" netns "$name" && created link "$veth"
        ip link set "$veth" master "$BRIDGE" up
        ip -n "$name" addr add "$(node_addr "$i")/24" dev "$NODE_IFNAME"
        ip -n "$name" link set "$NODE_IFNAME" up
        ip -n "$name" link set lo up
    done
    add_hosts
    log "network: bridge $BRIDGE $HOST_ADDR/24, nodes $(node_name "[1-$NODES]") at $(node_addr 1)..$(node_addr "$NODES")"
}

hosts_marker() { echo "# mixmim-slurm $DIR $1"; }

add_hosts() {
    created hosts "$DIR"
    [ -z "$(tail -c 1 "$HOSTS_FILE")" ] || echo >>"$HOSTS_FILE"  # the file may lack its last newline
    {
        hosts_marker begin
        local i
        for i in $(seq 1 "$NODES"); do
            echo "$(node_addr "$i") $(node_name "$i")"
        done
        hosts_marker end
    } >>"$HOSTS_FILE"
}

# Remove the block; rewrite the file in place (it may be a bind mount, which a rename would not replace).
remove_hosts() {
    local kept
    kept=$(awk -v b="$(hosts_marker begin)" -v e="$(hosts_marker end)" \
        '$0 == b { skip = 1; next } $0 == e { skip = 0; next } !skip' "$HOSTS_FILE")
    printf '%s\n' "$kept" >"$HOSTS_FILE"
}

# SIGKILL every process in a node's namespace (its slurmd, step daemons and tasks): the node is lost.
kill_namespace() {
    local pids
    pids=$(ip netns pids "$1" 2>/dev/null | tr '\n' ' ')
    [ -n "${pids// /}" ] || return 0
    log "killing the processes of $1: $pids"
    # shellcheck disable=SC2086
    kill -KILL $pids 2>/dev/null || true
}

# Everything DIR/run/net lists, newest first: the hosts block, the links, the namespaces (their processes first).
remove_network() {
    [ -f "$NET" ] || return 0
    local kind name
    tac "$NET" | while read -r kind name; do
        case $kind in
            hosts) remove_hosts ;;
            link) ip link del "$name" 2>/dev/null || log "link $name already gone" ;;
            netns) kill_namespace "$name" && ip netns del "$name" ;;
        esac
    done
    rm -f "$NET"
    log "removed the network (bridge $BRIDGE, namespaces, /etc/hosts block)"
}

# Start node NAME's slurmd in its namespace, with NAME as its host name (a UTS namespace of its own).
start_node() {
    local name=$1
    mkdir -p "$DIR/state/slurmd-$name"
    # nsenter, not "ip netns exec", which would remount /sys for the namespace and hide the cgroup tree.
    start_daemon "slurmd-$name" nsenter --net="/run/netns/$name" unshare --uts \
        sh -c "hostname '$name' && exec slurmd -D -f '$CONF' -N '$name'"
}
