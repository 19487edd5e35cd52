# Helpers shared by start.sh, stop.sh and node.sh (sourced; they set DIR and PIDS first).

log() { echo "[slurm-cluster] $*" >&2; }

# A process is alive when it exists and is not a zombie (an exited daemon that its new parent has not reaped).
alive() { kill -0 "$1" 2>/dev/null && [ "$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)" != Z ]; }

# Start one daemon in its own session (so the caller's process group can end without it) and record its PID.
start_daemon() {
    local name=$1
    shift
    setsid "$@" >>"$DIR/log/$name.out" 2>&1 </dev/null &
    echo "$name $!" >>"$PIDS"
    log "started $name (pid $!)"
}
