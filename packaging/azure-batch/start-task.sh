#!/bin/bash
# scratchcrypt Azure Batch start task. Run by `make batch-test` with the environment
# Batch sets (tests/azure-batch/run.sh); not yet run on an Azure pool.
#
# Pool start task (runs at every node start, reboot and reimage), elevated:
#   commandLine:   /bin/bash -c 'bash "$AZ_BATCH_NODE_STARTUP_DIR/wd/start-task.sh"'
#   resourceFiles: start-task.sh and scratchcrypt_0.1.0_amd64.deb
#   userIdentity:  autoUser, scope pool, elevationLevel admin
#   waitForSuccess: true   (a node whose start task failed gets no tasks)
#
# It installs the package, points backing_root at the VM's local temporary disk,
# ends whatever volumes an earlier boot left (`scratchcrypt sweep`), in node mode
# mounts the node's volume, and fails unless `scratchcrypt health` finds the node
# fit for jobs (with waitForSuccess, Batch then schedules no task on it). Settings,
# all optional, from the start task's environmentSettings:
#   SCRATCHCRYPT_DEB           the .deb (default: the one in $AZ_BATCH_NODE_STARTUP_DIR/wd;
#                              none there and scratchcrypt installed, e.g. in a custom
#                              image: nothing is installed)
#   SCRATCHCRYPT_BACKING_ROOT  default: scratchcrypt/backing on the temporary disk
#                              (/mnt/resource or /mnt, whichever is a mount point)
#   SCRATCHCRYPT_MOUNT_ROOT    default: /scratch
#   SCRATCHCRYPT_SIZE_LIMIT    default: 0 (no limit)
#   SCRATCHCRYPT_MODE          per-job (default) or node
#   SCRATCHCRYPT_NODE_USER     node mode: owner of the node volume (default: root)
#   SCRATCHCRYPT_NODE_GROUP    node mode: its group (default: the user's primary group)
#   SCRATCHCRYPT_METRICS_FILE  metrics_file (Prometheus text file; default: none)
#   SCRATCHCRYPT_CONFIG        the configuration file (default /etc/scratchcrypt/scratchcrypt.conf)
#   SCRATCHCRYPT_BIN           the binary (default /usr/sbin/scratchcrypt)
set -euo pipefail

log() { echo "scratchcrypt start task: $*"; }

bin=${SCRATCHCRYPT_BIN:-/usr/sbin/scratchcrypt}
conf=${SCRATCHCRYPT_CONFIG:-/etc/scratchcrypt/scratchcrypt.conf}
export SCRATCHCRYPT_CONFIG=$conf  # what the binary reads
scratchcrypt() { "$bin" "$@"; }

deb=${SCRATCHCRYPT_DEB:-}
if [ -z "$deb" ]; then
    for candidate in "${AZ_BATCH_NODE_STARTUP_DIR:-.}"/wd/scratchcrypt_*.deb; do
        [ -f "$candidate" ] && deb=$candidate  # the last in glob order
    done
fi
if [ -z "$deb" ] && [ -x "$bin" ] && [ -f "$conf" ]; then
    log "no .deb given; using the installed $("$bin" --version | head -n 1)"
elif [ -z "$deb" ] || [ ! -f "$deb" ]; then
    log "no scratchcrypt .deb found (set SCRATCHCRYPT_DEB, or put it beside this script)"
    exit 1
else
    # Install (apt-get pulls fuse3, libfuse3-3, libsodium23, libssl3). Another apt on
    # a fresh VM (unattended-upgrades, cloud-init) may hold the lock for a while.
    export DEBIAN_FRONTEND=noninteractive
    for attempt in 1 2 3 4 5 6 7 8 9 10; do
        if apt-get update -qq && apt-get install -y -qq -o DPkg::Lock::Timeout=120 "$(readlink -f "$deb")"; then
            break
        fi
        [ "$attempt" -eq 10 ] && { log "apt-get install failed"; exit 1; }
        sleep 30
    done
fi

# The configuration: the shipped file with the settings above filled in.
backing=${SCRATCHCRYPT_BACKING_ROOT:-}
if [ -z "$backing" ]; then
    for disk in /mnt/resource /mnt; do
        if mountpoint -q "$disk"; then backing=$disk/scratchcrypt/backing; break; fi
    done
fi
set_key() {  # set_key KEY VALUE: replace the `KEY = ...` line of the config
    sed -i "s|^[#[:space:]]*$1[[:space:]]*=.*|$1 = $2|" "$conf"
    grep -q "^$1 = " "$conf" || echo "$1 = $2" >>"$conf"
}
[ -n "$backing" ] && set_key backing_root "$backing"
[ -n "${SCRATCHCRYPT_MOUNT_ROOT:-}" ] && set_key mount_root "$SCRATCHCRYPT_MOUNT_ROOT"
[ -n "${SCRATCHCRYPT_SIZE_LIMIT:-}" ] && set_key size_limit "$SCRATCHCRYPT_SIZE_LIMIT"
[ -n "${SCRATCHCRYPT_MODE:-}" ] && set_key mode "$SCRATCHCRYPT_MODE"
[ -n "${SCRATCHCRYPT_METRICS_FILE:-}" ] && set_key metrics_file "$SCRATCHCRYPT_METRICS_FILE"
scratchcrypt config  # validates the file and shows it in the start task's stdout

# Mount root traversable by the job users; the per-job directories are 0700.
mount_root=$(scratchcrypt config mount_root)
mkdir -p "$mount_root"
chmod 0755 "$mount_root"

# End what an earlier boot left behind (a reimage starts with an empty disk; a
# reboot keeps the disk but not the keyring, so those volumes are unreadable).
scratchcrypt sweep

if [ "$(scratchcrypt config mode)" = node ]; then
    node_args=(--uid "${SCRATCHCRYPT_NODE_USER:-root}")
    [ -n "${SCRATCHCRYPT_NODE_GROUP:-}" ] && node_args+=(--gid "$SCRATCHCRYPT_NODE_GROUP")
    if [ -d /run/systemd/system ]; then
        echo "SCRATCHCRYPT_NODE_ARGS=\"${node_args[*]}\"" >/etc/default/scratchcrypt
        systemctl enable scratchcrypt-node.service
        systemctl restart scratchcrypt-node.service
    else
        # The daemon puts itself in a session of its own: it outlives this task.
        scratchcrypt prologue --job node "${node_args[@]}" </dev/null
    fi
fi
scratchcrypt status
# What sweep could not end (a deletion that keeps failing, a full disk) keeps the
# node from taking jobs: the start task fails, with the reasons in its stdout.
if ! scratchcrypt health; then
    log "the node is not fit for jobs (see the lines above)"
    exit 1
fi
log "ready"
