#!/bin/bash
# Multi-node Slurm integration test for scratchcrypt: one slurmctld and three slurmd
# "nodes" on this one machine.
#
# Each node is a slurmd in its own UTS and mount namespace (unshare): its own host
# name (scn1..scn3), its own address (127.0.0.11..13, NodeAddr, with a port of its
# own), its own /etc/hosts, and its own "local disk": $T/node/<name> is bind-mounted
# at $T/local inside the node, so every node has the same paths with different
# contents: scratchcrypt config, registry (SCRATCHCRYPT_RUN_DIR), slurmd spool, log
# and mount_root ($T/local/scratch). backing_root and record_log are per-node paths.
# Mounts made in a node are private to it (mount propagation private). The controller
# runs as host name scctl on 127.0.0.10. Nothing leaves loopback. Every node start
# runs the boot sweep (`scratchcrypt sweep`, as scratchcrypt-sweep.service does)
# before slurmd. Prolog/Epilog/TaskProlog are packaging/slurm's scripts pointed at
# the binary under test. Why namespaces and not network namespaces or containers:
# docs/TESTING.md.
#
# Cases, each checked on every node involved:
#   a) a -N3 job gets its own freshly keyed volume on every node at the same
#      $SCRATCH, owned by the job user (distinct volume ids and keys), all wiped
#      afterwards with one record per node; again once per layout when the binary
#      knows `layout` (a-files, a-block)
#   b) two -N3 jobs of two users overlap on the same nodes, each isolated on each node
#   c) a node whose epilog fails is drained alone; the others keep taking jobs
#   d) a node killed mid-job (all its processes, slurmd and the volume daemon
#      included, SIGKILL) is swept at "reboot" and rejoins clean; the job's volumes
#      on the other nodes are wiped when Slurm ends the job
#   e) a job array of 50 short tasks spread over the nodes leaves no mount, key,
#      loop device, daemon, registry entry or backing file anywhere
#
# Usage (as root):  bash tests/slurm/run_multinode_test.sh   (or: make slurm-multinode-test)
# Environment: SCRATCHCRYPT_BIN, SCRATCHCRYPT_SLURM_TEST_KEEP=1,
# SCRATCHCRYPT_SLURM_TEST_NO_APT=1 as for run_slurm_test.sh.
# Prints PASS/FAIL per case and finally "N passed, M failed"; exits non-zero on any
# failure. Everything is cleaned up on any exit (trap): the nodes are "crashed"
# (their processes killed, which ends their namespaces and mounts) and "rebooted"
# into the boot sweep, which ends what they left (keys, backing files).
# Runtime: about 1.5 minutes.

set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/slurm/lib.sh
. "$HERE/lib.sh"
DIR_PREFIX=scratchcrypt-mn-test.
LOCK_FILE=$TMP_BASE/scratchcrypt-mn-test.lock
NODES=(scn1 scn2 scn3)
CTLD_ADDR=127.0.0.10
node_addr() { echo "127.0.0.$(( 10 + ${1#scn} ))"; }

SUBMIT_DEFAULTS=()
MARK_VAR=SCRATCHCRYPT_MN_TEST_DIR

[ "$(id -u)" -eq 0 ] || { echo "run_multinode_test.sh must run as root" >&2; exit 2; }
install_slurm_packages
command -v unshare >/dev/null && command -v nsenter >/dev/null || die "unshare/nsenter missing (util-linux)"
command -v keyctl >/dev/null || die "keyctl missing (keyutils)"
[ -x "$SC_SRC_BIN" ] || die "scratchcrypt binary not found: $SC_SRC_BIN (build it or set SCRATCHCRYPT_BIN)"

exec 9>"$LOCK_FILE"
flock -n 9 || die "another run_multinode_test.sh is running (lock $LOCK_FILE)"

# ---------------------------------------------------------------------------------------
# Nodes: start, inspect, crash, reboot
# ---------------------------------------------------------------------------------------
# start_node DIR NODE [sweep-only|rebooted]: boots NODE of the run in DIR: a new UTS +
# mount namespace, the boot sweep, then slurmd (unless sweep-only; rebooted: slurmd
# tells the controller the node rebooted, as a real reboot's new boot time does).
# Records slurmd's pid (= the namespace's first process) in DIR/node/NODE/ns.pid.
start_node() {
    local d=$1 n=$2 mode=${3:-}
    if [ "$mode" = sweep-only ]; then
        unshare -m -u --propagation private "$d/bin/node-boot" "$n" sweep-only
        # an explicit status: a bare `return` in the EXIT trap would give the
        # status the script exited with
        return $?
    fi
    ( exec 9>&-; exec unshare -m -u --propagation private "$d/bin/node-boot" "$n" "$mode" ) \
        >>"$d/node/$n/boot.out" 2>&1 &
    echo "$!" >"$d/node/$n/ns.pid"
    disown "$!"   # its SIGKILL (case d, cleanup) is no news
}

node_pid() { cat "$T/node/$1/ns.pid" 2>/dev/null || true; }

# pids_in_ns NSID: processes in mount namespace NSID (as readlink /proc/P/ns/mnt shows it)
pids_in_ns() {
    # shellcheck disable=SC2012  # one ls for all processes; the names are /proc/N/ns/mnt
    ls -l /proc/[0-9]*/ns/mnt 2>/dev/null | awk -v ns="$1" '$NF == ns { split($(NF-2), a, "/"); print a[3] }' || true
}

# crash_node DIR NODE: SIGKILL every process of the node (slurmd, slurmstepd, job,
# volume daemons): its mount namespace, and with it its mounts, goes away
crash_node() {
    local d=$1 n=$2 ns pids i
    ns=$(cat "$d/node/$n/ns.id" 2>/dev/null || true)
    [ -n "$ns" ] || return 0
    for i in 1 2 3 4 5; do
        pids=$(pids_in_ns "$ns")
        [ -n "$pids" ] || return 0
        # shellcheck disable=SC2086
        kill -KILL $pids 2>/dev/null || true
        sleep 0.2
    done
}

# our_loops DIR: loop devices whose backing file lies in the run's directory
our_loops() { losetup -l -n -O NAME,BACK-FILE 2>/dev/null | awk -v t="$1/" 'index($2, t) == 1 { print $1 }' || true; }

# our_daemons DIR [NSID]: live processes of the run's scratchcrypt binary (in NSID)
our_daemons() {
    local p
    # shellcheck disable=SC2012
    for p in $(ls -l /proc/[0-9]*/exe 2>/dev/null | awk -v b="$1/bin/scratchcrypt" '$NF == b { split($(NF-2), a, "/"); print a[3] }'); do
        alive "$p" || continue
        if [ -n "${2:-}" ] && [ "$(readlink "/proc/$p/ns/mnt" 2>/dev/null)" != "$2" ]; then continue; fi
        echo "$p"
    done
}

# reset_cluster DIR: crash every node and every process of the run, then boot each
# node into its sweep only; detach loop devices of the run that are left
reset_cluster() {
    local d=$1 n l
    for n in "${NODES[@]}"; do crash_node "$d" "$n"; done
    kill_marked "$d"
    for n in "${NODES[@]}"; do
        [ -x "$d/bin/node-boot" ] && [ -d "$d/node/$n" ] || continue
        start_node "$d" "$n" sweep-only >>"$d/node/$n/boot.out" 2>&1 || log "cleanup: boot sweep of $n failed (exit $?, see $d/node/$n/boot.out)"
    done
    for l in $(our_loops "$d"); do log "cleanup: detaching $l"; losetup -d "$l" 2>/dev/null || true; done
}

for old in "$TMP_BASE/$DIR_PREFIX"*; do
    [ -d "$old" ] && [ -f "$old/.scratchcrypt-mn-test" ] || continue
    log "cleaning up an earlier run: $old"
    reset_cluster "$old"
    rm -rf "$old"
done

# ---------------------------------------------------------------------------------------
# The run's directory
# ---------------------------------------------------------------------------------------
T=$(mktemp -d "$TMP_BASE/${DIR_PREFIX}XXXXXX")
touch "$T/.scratchcrypt-mn-test"
chmod 0755 "$T"
export "$MARK_VAR=$T"
mkdir -p "$T/etc" "$T/bin" "$T/ctld" "$T/munge" "$T/local" "$T/jobs" "$T/run"
chmod 1777 "$T/jobs"
chmod 0700 "$T/ctld" "$T/run"
chmod 0755 "$T/munge"
J=$T/jobs
SC=$T/bin/scratchcrypt
CONF=$T/etc/slurm.conf
export SLURM_CONF=$CONF

cleanup() {
    local rc=$? n f
    set +e
    trap - EXIT INT TERM
    if [ -n "${T:-}" ] && [ -d "$T" ]; then
        if [ -s "$T/ctld/slurmctld.pid" ]; then
            timeout 10 scancel --quiet --partition=mn >/dev/null 2>&1
        fi
        log "cleanup: crashing the nodes, then their boot sweep"
        reset_cluster "$T"
        if [ -n "$(our_loops "$T")" ] || [ -n "$(our_daemons "$T")" ]; then
            echo "WARNING: left after cleanup: loops '$(our_loops "$T")' daemons '$(our_daemons "$T")'" >&2
        fi
        if [ "$rc" -ne 0 ] || [ "$FAILED" -ne 0 ] || [ "${SCRATCHCRYPT_SLURM_TEST_KEEP:-0}" = 1 ]; then
            if [ "$SETUP_FAILED" = 1 ] || [ "$FAILED" -ne 0 ]; then
                for f in "$T"/ctld/slurmctld.log "$T"/node/*/slurmd.log "$T"/node/*/hooks.log "$T"/node/*/boot.out; do
                    [ -s "$f" ] || continue
                    echo "---- last lines of $f"
                    tail -n 15 "$f"
                done
            fi
            echo "test directory kept: $T"
        else
            rm -rf "$T"
        fi
    fi
    log "total runtime $(( $(date +%s) - START_TIME ))s"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

cp "$SC_SRC_BIN" "$SC"
cp "$PKG/prolog.sh" "$PKG/epilog.sh" "$PKG/task_prolog.sh" "$T/bin/"
cp "$PKG/common.sh" "$T/bin/"
chmod 0755 "$T/bin/"*
chmod 0644 "$T/bin/common.sh"

# Layouts: when the binary knows the setting, case a also runs once per layout.
LAYOUTS=()
if "$SC" config --config /dev/null layout >/dev/null 2>&1; then LAYOUTS=(files block); fi

# node_config NODE [LAYOUT]: the node's own scratchcrypt configuration
node_config() {
    local n=$1 layout=${2:-}
    {
        echo "# scratchcrypt config of node $n (tests/slurm/run_multinode_test.sh)"
        echo "backing_root = $T/node/$n/backing"
        echo "mount_root = $T/local/scratch"
        echo "size_limit = 64M"
        echo "record_log = $T/node/$n/wipe.jsonl"
        echo "mode = per-job"
        echo "trim = no"
        if [ -n "$layout" ]; then echo "layout = $layout"; fi
    } >"$T/node/$n/scratchcrypt.conf"
    chmod 0644 "$T/node/$n/scratchcrypt.conf"
}

HOSTS=$T/etc/hosts
{
    echo "127.0.0.1 localhost"
    echo "$CTLD_ADDR scctl"
    for n in "${NODES[@]}"; do echo "$(node_addr "$n") $n"; done
} >"$HOSTS"
chmod 0644 "$HOSTS"
for n in "${NODES[@]}"; do
    mkdir -p "$T/node/$n/spool" "$T/node/$n/run" "$T/node/$n/scratch"
    chmod 0755 "$T/node/$n" "$T/node/$n/scratch"
    chmod 0700 "$T/node/$n/spool" "$T/node/$n/run"
    touch "$T/node/$n/hooks.log"
    chmod 0644 "$T/node/$n/hooks.log"
    node_config "$n"
done

# What every node-local process needs; the hooks get it from their wrappers, since
# slurmd gives them only SLURM_* variables.
NODE_ENV="export $MARK_VAR='$T' SCRATCHCRYPT_CONFIG='$T/local/scratchcrypt.conf' SCRATCHCRYPT_BIN='$SC' SCRATCHCRYPT_RUN_DIR='$T/local/run' SLURM_CONF='$CONF'"

# node-boot NODE [sweep-only|rebooted]: runs as the first process of a fresh UTS + mount
# namespace: host name, the node's local disk at $T/local, its /etc/hosts, then the
# boot sweep and slurmd.
cat >"$T/bin/node-boot" <<EOF
#!/bin/bash
set -eu
n=\$1
$NODE_ENV
hostname "\$n"
mount --bind '$T/node'/"\$n" '$T/local'
mount --bind '$HOSTS' /etc/hosts
# FUSE and loop mounts other programs had when this namespace was copied are none of
# this node's business; detached here (only here) so this copy keeps none of them busy.
awk '\$3 ~ /^fuse/ || \$1 ~ /^\/dev\/loop/ { print \$2 }' /proc/self/mounts | sort -r | while read -r m; do
    umount -l "\$(printf '%b' "\$m")" 2>/dev/null || true
done
echo "\$(date -u +%FT%TZ) boot \$n: sweep"
'$SC' sweep
[ "\${2:-}" = sweep-only ] && exit 0
readlink /proc/self/ns/mnt > '$T/local/ns.id'
if [ "\${2:-}" = rebooted ]; then exec slurmd -D -b -N "\$n" -f '$CONF'; fi
exec slurmd -D -N "\$n" -f '$CONF'
EOF
chmod 0755 "$T/bin/node-boot"

# case c: the epilog fails on purpose on the node the harness named.
write_hook_wrappers "$NODE_ENV" "$T/local/hooks.log" "'$T/run/fail-epilog.'\"\$SLURM_JOB_ID.\$(hostname)\""

ensure_users "$USER1" "$USER2"

start_munge "$T/munge" "$USER1"
log "munged up"

# ---------------------------------------------------------------------------------------
# slurm.conf: one file for the controller and every node; the node-local paths are
# the same on every node and private to it ($T/local)
# ---------------------------------------------------------------------------------------
CTLD_PORT=$(free_port) || die "no free TCP port"
{
slurm_conf_common
cat <<EOF
# generated by tests/slurm/run_multinode_test.sh
ClusterName=scmn
SlurmctldHost=scctl($CTLD_ADDR)
SlurmctldPort=$CTLD_PORT
StateSaveLocation=$T/ctld
SlurmctldPidFile=$T/ctld/slurmctld.pid
SlurmctldLogFile=$T/ctld/slurmctld.log
SlurmdSpoolDir=$T/local/spool
SlurmdPidFile=$T/local/slurmd.pid
SlurmdLogFile=$T/local/slurmd.log
SlurmdParameters=config_overrides
SlurmdTimeout=10
MaxArraySize=1000
EOF
} >"$CONF"
PORT_BASE=$(( CTLD_PORT + 1 ))
i=0
for n in "${NODES[@]}"; do
    port=$(( PORT_BASE + i ))
    port_in_use "$port" && die "port $port is in use"
    echo "NodeName=$n NodeHostname=$n NodeAddr=$(node_addr "$n") Port=$port CPUs=4 RealMemory=1000 State=UNKNOWN" >>"$CONF"
    i=$(( i + 1 ))
done
echo "PartitionName=mn Nodes=$(IFS=,; echo "${NODES[*]}") Default=YES MaxTime=10 State=UP OverSubscribe=FORCE:4" >>"$CONF"
chmod 0644 "$CONF"

# ---------------------------------------------------------------------------------------
# slurmctld (host name scctl) and the nodes
# ---------------------------------------------------------------------------------------
( exec 9>&-; exec unshare -u sh -c "hostname scctl && exec slurmctld -D -c -f '$CONF'" ) >"$T/ctld/slurmctld.out" 2>&1 &
echo "$!" >"$T/ctld/slurmctld.pid"
for _ in $(seq 1 100); do
    scontrol ping 2>/dev/null | grep -q 'is UP' && break
    sleep 0.2
done
scontrol ping 2>/dev/null | grep -q 'is UP' \
    || die "slurmctld did not come up: $(tail -5 "$T/ctld/slurmctld.out" "$T/ctld/slurmctld.log" 2>/dev/null)"
log "slurmctld up (scctl, $CTLD_ADDR:$CTLD_PORT)"

node_state()  { sinfo -h -n "$1" -o '%T' 2>/dev/null | head -1 || true; }
node_field()  { scontrol show node "$1" 2>/dev/null | tr ' ' '\n' | sed -n "s/^$2=//p" | head -1 || true; }
wait_node_idle() {   # wait_node_idle NODE TIMEOUT
    local end=$(( $(date +%s) + $2 ))
    while [ "$(date +%s)" -lt "$end" ]; do
        [ "$(node_state "$1")" = idle ] && return 0
        sleep 0.2
    done
    return 1
}
wait_drain() {   # wait_drain NODE TIMEOUT
    local end=$(( $(date +%s) + $2 ))
    while [ "$(date +%s)" -lt "$end" ]; do
        case "$(node_field "$1" State)" in *DRAIN*) return 0 ;; esac
        sleep 0.25
    done
    return 1
}

boot_start=$(date +%s%N)
for n in "${NODES[@]}"; do start_node "$T" "$n"; done
for n in "${NODES[@]}"; do
    wait_node_idle "$n" 60 || die "node $n did not become idle (state '$(node_state "$n")'): $(tail -5 "$T/node/$n/boot.out" "$T/node/$n/slurmd.log" 2>/dev/null)"
done
log "nodes ${NODES[*]} idle, $(( ($(date +%s%N) - boot_start) / 1000000 )) ms after their start"
for n in "${NODES[@]}"; do
    [ -s "$T/node/$n/ns.id" ] || die "node $n did not record its mount namespace"
    [ "$(cat "$T/node/$n/ns.id")" != "$(readlink /proc/self/ns/mnt)" ] || die "node $n shares the host's mount namespace"
done

# ---------------------------------------------------------------------------------------
# Per-node checks
# ---------------------------------------------------------------------------------------
# node_mounted NODE PATH: something is mounted at PATH in NODE (the files layout's
# FUSE mount, or the block layout's kernel file system)
node_mounted() {
    awk -v m="$2" '$2 == m { f = 1 } END { exit !f }' "/proc/$(node_pid "$1")/mounts" 2>/dev/null
}
# node_volume NODE PATH: the id of the volume mounted at PATH in NODE, from the node's
# registry
node_volume() {
    local f
    node_mounted "$1" "$2" || return 0
    f=$(grep -lF "\"mountpoint\": \"$2\"" "$T/node/$1/run/"*.json 2>/dev/null | head -1 || true)
    [ -z "$f" ] || basename "$f" .json
}
node_scratch_mounts() {   # node_scratch_mounts NODE: volume mounts (job or image) in NODE
    awk -v s="$T/local/scratch/" -v r="$T/local/run/" \
        'index($2, s) == 1 || index($2, r) == 1 || $3 ~ /^fuse\.scratchcrypt/ { print $2 }' \
        "/proc/$(node_pid "$1")/mounts" 2>/dev/null || true
}
node_registry() {   # node_registry NODE: registry entries and image mount points left
    local f
    for f in "$T/node/$1/run/"*.json "$T/node/$1/run/images/"*; do
        [ -e "$f" ] && echo "${f#"$T/node/$1/run/"}"
    done
    return 0
}
key_serial() { keyctl search @u user "scratchcrypt:$1" 2>/dev/null || true; }
# key_digest VOLID: a digest of the volume's key (only compared, never shown)
key_digest() {
    local s
    s=$(key_serial "$1")
    [ -n "$s" ] && keyctl pipe "$s" 2>/dev/null | sha256sum | cut -c1-16
}
record_count() { grep -cE "\"job\"[[:space:]]*:[[:space:]]*\"$2\"" "$T/node/$1/wipe.jsonl" 2>/dev/null || true; }
JOB_OK_RE='^(COMPLETED)$'

# volume_left NODE VOLID: NODE's backing_root still holds an entry named after VOLID
# (e.g. the renamed-aside .wiped-VOLID being deleted)
volume_left() {
    [ -n "$2" ] && { compgen -G "$T/node/$1/backing/*$2*" || compgen -G "$T/node/$1/backing/.*$2*"; } >/dev/null
}

# job_processes NSID JOB: the run's scratchcrypt processes in NSID started for JOB
# (the volume daemon forks from `prologue --job JOB`, the deleter from `epilogue`)
job_processes() {
    local p
    for p in $(our_daemons "$T" "$1"); do
        tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | grep -q -- "--job $2 " && echo "$p"
    done
    return 0
}

# check_node_wiped NODE JOB VOLID: after the epilog of JOB, its volume VOLID on NODE
# is unmounted, its key gone, its mount point, backing files, registry entry and
# daemon gone, and NODE's record log has exactly one line for JOB (complete).
check_node_wiped() {
    local n=$1 id=$2 vol=$3 i c line ns
    if node_mounted "$n" "$T/local/scratch/$id"; then bad "$n: job $id still mounted after its epilog"; fi
    [ -e "$T/node/$n/scratch/$id" ] && bad "$n: mount point of job $id still exists"
    if [ -n "$vol" ] && [ -n "$(key_serial "$vol")" ]; then bad "$n: the key of volume $vol (job $id) is still valid"; fi
    for i in $(seq 1 60); do
        c=$(record_count "$n" "$id")
        [ "${c:-0}" -ge 1 ] && [ ! -e "$T/node/$n/backing/$id" ] && ! volume_left "$n" "$vol" && break
        sleep 0.25
    done
    [ "$c" = 1 ] || bad "$n: $c record lines for job $id, expected 1"
    line=$(record_line_in "$T/node/$n/wipe.jsonl" "$id")
    if [ -n "$line" ]; then
        grep -q '"outcome": *"complete"' <<<"$line" || bad "$n: job $id record is not complete: $line"
        [ -z "$vol" ] || grep -q "\"volume\": *\"$vol\"" <<<"$line" || bad "$n: job $id record names another volume: $line"
    fi
    [ -e "$T/node/$n/backing/$id" ] && bad "$n: backing of job $id left: $(ls -A "$T/node/$n/backing")"
    if [ -n "$vol" ]; then
        volume_left "$n" "$vol" && bad "$n: ciphertext of volume $vol left in backing_root"
        [ -e "$T/node/$n/run/$vol.json" ] && bad "$n: registry entry of volume $vol left"
        grep -q " scratchcrypt:$vol: " /proc/keys 2>/dev/null && { sleep 2; grep -q " scratchcrypt:$vol: " /proc/keys && bad "$n: key of volume $vol still in /proc/keys"; }
    fi
    ns=$(cat "$T/node/$n/ns.id")
    for i in $(seq 1 20); do
        [ -z "$(job_processes "$ns" "$id")" ] && break
        sleep 0.25
    done
    [ "$i" -lt 20 ] || bad "$n: a scratchcrypt process for job $id is still running"
    return 0
}

# check_node_clean NODE: nothing of any volume left on NODE
check_node_clean() {
    local n=$1 ns i left
    ns=$(cat "$T/node/$n/ns.id")
    for i in $(seq 1 40); do
        left="$(node_scratch_mounts "$n")$(ls -A "$T/node/$n/backing" 2>/dev/null)$(node_registry "$n")$(ls -A "$T/node/$n/scratch" 2>/dev/null)$(our_daemons "$T" "$ns")"
        [ -z "$left" ] && return 0
        sleep 0.25
    done
    [ -z "$(node_scratch_mounts "$n")" ] || bad "$n: volumes still mounted: $(node_scratch_mounts "$n" | tr '\n' ' ')"
    [ -z "$(ls -A "$T/node/$n/backing" 2>/dev/null)" ] || bad "$n: backing_root not empty: $(ls -A "$T/node/$n/backing" | tr '\n' ' ')"
    [ -z "$(node_registry "$n")" ] || bad "$n: registry not empty: $(node_registry "$n" | tr '\n' ' ')"
    [ -z "$(ls -A "$T/node/$n/scratch" 2>/dev/null)" ] || bad "$n: mount_root not empty: $(ls -A "$T/node/$n/scratch" | tr '\n' ' ')"
    [ -z "$(our_daemons "$T" "$ns")" ] || bad "$n: scratchcrypt processes left: $(our_daemons "$T" "$ns" | tr '\n' ' ')"
}

# The per-node probe a job runs on each of its nodes (srun, one task per node, as
# the job's user): what it sees, and whether it can write and read back. Its report
# goes to $TESTJOBS/<tag>.<job>.<host>; with a third argument it then waits for
# $TESTJOBS/<tag>.<job>.go (so that the harness can look at the live volumes).
cat >"$J/probe.sh" <<'EOF'
#!/bin/bash
tag=$1; h=$(hostname); out=$TESTJOBS/$tag.$SLURM_JOB_ID.$h
{
    echo "HOST=$h"
    echo "SCRATCH=${SCRATCH:-<unset>}"
    echo "TMPDIR=${TMPDIR:-<unset>}"
    stat -c 'STAT owner=%U mode=%a' "$SCRATCH"
    awk -v m="$SCRATCH" '$2 == m { print "MOUNT " $1 " " $3 }' /proc/self/mounts
    echo "$2 on $h" >"$SCRATCH/marker-$2.txt" && [ "$(cat "$SCRATCH/marker-$2.txt")" = "$2 on $h" ] && echo WRITE_OK
    head -c 1000001 /dev/urandom >"$SCRATCH/rand.bin" && [ "$(stat -c %s "$SCRATCH/rand.bin")" = 1000001 ] && echo BIG_OK
    [ "$(ls -A "$SCRATCH" | grep -vcx lost+found)" = 2 ] && echo ONLY_OWN_FILES
} >"$out.tmp" 2>&1
mv "$out.tmp" "$out"
if [ -n "${3:-}" ]; then
    for _ in $(seq 1 300); do [ -e "$TESTJOBS/$tag.$SLURM_JOB_ID.go" ] && break; sleep 0.2; done
fi
exit 0
EOF
chmod 0755 "$J/probe.sh"

# run_probe_job USER TAG NNODES [sbatch options]: a job whose batch script runs the
# probe on each of its nodes and waits for the harness; prints the job id
run_probe_job() {
    local u=$1 tag=$2 nn=$3
    shift 3
    printf '#!/bin/bash\nsrun -N%s --ntasks-per-node=1 "$TESTJOBS/probe.sh" %s %s wait\n' "$nn" "$tag" "$MARKER" >"$J/$tag.sh"
    chmod 0644 "$J/$tag.sh"
    submit "$u" "$tag" "$J/$tag.sh" -N "$nn" --ntasks-per-node=1 "$@"
}

# wait_probes TAG JOB NODES...: every node's probe report is there
wait_probes() {
    local tag=$1 id=$2 n
    shift 2
    for n in "$@"; do
        wait_file "$J/$tag.$id.$n" 60 || { bad "$n: the probe of job $id did not report (job state $(job_field "$id" JobState))"; return 1; }
    done
}

# check_probe TAG JOB NODE USER: the node's report shows a private writable volume
check_probe() {
    local tag=$1 id=$2 n=$3 u=$4 r
    r=$(cat "$J/$tag.$id.$n" 2>/dev/null || true)
    grep -qx "HOST=$n" <<<"$r" || bad "$n: probe ran on '$(grep '^HOST' <<<"$r")'"
    grep -qx "SCRATCH=$T/local/scratch/$id" <<<"$r" || bad "$n: job $id saw $(grep '^SCRATCH' <<<"$r")"
    grep -qx "TMPDIR=$T/local/scratch/$id" <<<"$r" || bad "$n: job $id saw $(grep '^TMPDIR' <<<"$r")"
    grep -qx "STAT owner=$u mode=700" <<<"$r" || bad "$n: job $id scratch: $(grep '^STAT' <<<"$r"), expected owner $u mode 700"
    grep -Eq '^MOUNT (scratchcrypt:[0-9a-f]+ fuse\.scratchcrypt|/dev/loop[0-9]+ (ext4|xfs))$' <<<"$r" || bad "$n: job $id: \$SCRATCH is not a volume mount in the job ($(grep '^MOUNT' <<<"$r"))"
    grep -qx WRITE_OK <<<"$r" || bad "$n: job $id could not write and read back"
    grep -qx BIG_OK <<<"$r" || bad "$n: job $id could not write 1 MB"
    grep -qx ONLY_OWN_FILES <<<"$r" || bad "$n: job $id's scratch holds more than its own files"
    return 0
}

MARKER="SCMN$RANDOM$RANDOM"

# ---------------------------------------------------------------------------------------
# a) -N3: a fresh volume per node at the same $SCRATCH; wiped, one record per node
# ---------------------------------------------------------------------------------------
test_a() {   # test_a CASE-NAME
    local c=$1 id st n vol vols=() keys=() k
    id=$(run_probe_job "$USER1" "$c" 3) || { bad "sbatch failed"; verdict "$c" "-N3 job"; return; }
    log "$c: job $id submitted"
    if wait_probes "$c" "$id" "${NODES[@]}"; then
        for n in "${NODES[@]}"; do
            check_probe "$c" "$id" "$n" "$USER1"
            vol=$(node_volume "$n" "$T/local/scratch/$id")
            if [ -z "$vol" ]; then bad "$n: no registered volume mounted for job $id in the node's namespace"; vols+=(""); continue; fi
            vols+=("$vol")
            [ -n "$(key_serial "$vol")" ] || bad "$n: no key in the keyring for volume $vol"
            k=$(key_digest "$vol" || true)
            keys+=("${k:-none-$n}")
            [ -d "$T/node/$n/backing/$id" ] || bad "$n: no backing directory for job $id"
            # every other node's namespace does not see this volume
            local m
            for m in "${NODES[@]}"; do
                [ "$m" = "$n" ] && continue
                [ "$(node_volume "$m" "$T/local/scratch/$id")" = "$vol" ] && bad "$n's volume $vol is mounted in $m's namespace too"
            done
            case "${LAYOUT_EXPECT:-}" in
                block) grep -q '"layout": *"block"' "$T/node/$n/run/$vol.json" || bad "$n: volume $vol is not a block-layout volume: $(cat "$T/node/$n/run/$vol.json")" ;;
                files) grep -q '"layout": *"block"' "$T/node/$n/run/$vol.json" && bad "$n: volume $vol is a block-layout volume, files asked for" ;;
            esac
        done
        if grep -rqs "$MARKER" "$T/node"/*/backing; then bad "the plaintext marker is visible in a backing_root"; fi
        [ "$(printf '%s\n' "${vols[@]}" | sort -u | grep -c .)" = 3 ] || bad "volume ids not distinct across the nodes: ${vols[*]}"
        [ "$(printf '%s\n' "${keys[@]}" | sort -u | grep -c .)" = 3 ] || bad "keys not distinct across the nodes (digests ${keys[*]})"
    fi
    touch "$J/$c.$id.go"
    st=$(wait_job_end "$id") || true
    [[ "$st" =~ $JOB_OK_RE ]] || bad "job $id state $st"
    local j=0
    for n in "${NODES[@]}"; do check_node_wiped "$n" "$id" "${vols[$j]:-}"; j=$((j + 1)); done
    verdict "$c" "a -N3 job gets its own freshly keyed volume on each node at the same \$SCRATCH (distinct ids: ${vols[*]:-none}); all wiped, one record per node"
}

# ---------------------------------------------------------------------------------------
# b) two -N3 jobs of two users overlap on the same nodes, isolated on each node
# ---------------------------------------------------------------------------------------
test_b() {
    local id1 id2 st n u r
    cat >"$J/b-task.sh" <<'EOF'
#!/bin/bash
me=$(id -un); h=$(hostname); p=$TESTJOBS/b.$me.$h; o=$TESTJOBS/b.$OTHER_USER.$h
{
    echo "SCRATCH=${SCRATCH:-<unset>}"
    echo "secret of $me on $h" >"$SCRATCH/secret" || echo WRITE_FAILED
    echo "$SCRATCH" >"$p.path.tmp" && mv "$p.path.tmp" "$p.path"
    for _ in $(seq 1 300); do [ -e "$o.path" ] && break; sleep 0.2; done
    [ -e "$o.path" ] || echo NO_OVERLAP
    op=$(cat "$o.path" 2>/dev/null)
    [ -n "$op" ] && [ "$op" != "$SCRATCH" ] && echo DISTINCT
    [ -d "$op" ] && echo OTHER_EXISTS_HERE
    cat "$op/secret" >/dev/null 2>&1 && echo LEAK_READ
    ls "$op" >/dev/null 2>&1 && echo LEAK_LIST
    (echo x >"$op/intruder") 2>/dev/null && echo LEAK_WRITE
    [ "$(cat "$SCRATCH/secret")" = "secret of $me on $h" ] && echo OWN_OK
    [ "$(ls -A "$SCRATCH" | grep -vx lost+found)" = secret ] && echo ONLY_OWN_FILES
} >"$p.res.tmp" 2>&1
mv "$p.res.tmp" "$p.res"
touch "$p.done"
for _ in $(seq 1 300); do [ -e "$o.done" ] && [ -e "$TESTJOBS/b.go" ] && break; sleep 0.2; done
EOF
    chmod 0755 "$J/b-task.sh"
    printf '#!/bin/bash\nsrun -N3 --ntasks-per-node=1 "$TESTJOBS/b-task.sh"\n' >"$J/b.sh"
    chmod 0644 "$J/b.sh"
    id1=$(submit "$USER1" b "$J/b.sh" -N3 --ntasks-per-node=1 --export=ALL,OTHER_USER=$USER2) || bad "sbatch 1 failed"
    id2=$(submit "$USER2" b "$J/b.sh" -N3 --ntasks-per-node=1 --export=ALL,OTHER_USER=$USER1) || bad "sbatch 2 failed"
    log "b: jobs $id1 ($USER1) and $id2 ($USER2) submitted"
    # while both run: two distinct volumes on every node
    for n in "${NODES[@]}"; do wait_file "$J/b.$USER1.$n.path" 60; wait_file "$J/b.$USER2.$n.path" 60; done
    local v1=() v2=()
    for n in "${NODES[@]}"; do
        v1+=("$(node_volume "$n" "$T/local/scratch/$id1")")
        v2+=("$(node_volume "$n" "$T/local/scratch/$id2")")
    done
    touch "$J/b.go"   # the tasks stay until the volumes have been looked at
    st=$(wait_job_end "$id1") || true
    [[ "$st" =~ $JOB_OK_RE ]] || bad "job $id1 state $st"
    st=$(wait_job_end "$id2") || true
    [[ "$st" =~ $JOB_OK_RE ]] || bad "job $id2 state $st"
    local j=0
    for n in "${NODES[@]}"; do
        [ -n "${v1[$j]}" ] && [ -n "${v2[$j]}" ] && [ "${v1[$j]}" != "${v2[$j]}" ] \
            || bad "$n: the two jobs did not have two distinct volumes at once ('${v1[$j]}' '${v2[$j]}')"
        for u in "$USER1" "$USER2"; do
            r=$(cat "$J/b.$u.$n.res" 2>/dev/null || true)
            grep -q '^SCRATCH=' <<<"$r" || { bad "$n: no report from $u"; continue; }
            grep -q NO_OVERLAP <<<"$r" && bad "$n: $u's job did not overlap with the other"
            grep -qx DISTINCT <<<"$r" || bad "$n: $u: both jobs got the same \$SCRATCH"
            grep -qx OTHER_EXISTS_HERE <<<"$r" || bad "$n: $u: the other job's scratch is not on this node"
            grep -q '^LEAK' <<<"$r" && bad "$n: $u could access the other user's scratch: $(grep '^LEAK' <<<"$r" | tr '\n' ' ')"
            grep -qx OWN_OK <<<"$r" || bad "$n: $u could not read its own file"
            grep -qx ONLY_OWN_FILES <<<"$r" || bad "$n: $u's scratch holds more than its own file"
        done
        check_node_wiped "$n" "$id1" "${v1[$j]}"
        check_node_wiped "$n" "$id2" "${v2[$j]}"
        j=$((j + 1))
    done
    verdict b "two -N3 jobs of $USER1 and $USER2 overlap on the same nodes; on each node each sees only its own volume; all wiped"
}

# ---------------------------------------------------------------------------------------
# c) one node's epilog fails: that node alone drains, the others keep taking jobs
# ---------------------------------------------------------------------------------------
test_c() {
    local bad_node=scn2 id id2 st n nodes vol=() reason
    id=$(run_probe_job "$USER1" c 3 --hold) || { bad "sbatch failed"; verdict c "drain one node"; return; }
    touch "$T/run/fail-epilog.$id.$bad_node"
    scontrol release "$id" >/dev/null 2>&1 || bad "scontrol release $id failed"
    log "c: job $id submitted (its epilog fails on $bad_node)"
    wait_probes c "$id" "${NODES[@]}" || true
    for n in "${NODES[@]}"; do vol+=("$(node_volume "$n" "$T/local/scratch/$id")"); done
    touch "$J/c.$id.go"
    st=$(wait_job_end "$id") || true
    if wait_drain "$bad_node" 15; then
        reason=$(node_field "$bad_node" Reason)
        case "$reason" in *[Ee]pilog*) ;; *) bad "$bad_node drain reason '$reason' does not name the epilog" ;; esac
    else
        bad "$bad_node did not drain after its epilog failed (State=$(node_field "$bad_node" State))"
    fi
    for n in scn1 scn3; do
        case "$(node_field "$n" State)" in *DRAIN*) bad "$n drained too (Reason=$(node_field "$n" Reason))" ;; esac
    done
    local j=0
    for n in "${NODES[@]}"; do check_node_wiped "$n" "$id" "${vol[$j]}"; j=$((j + 1)); done
    # the other two keep taking jobs: a -N2 job runs on exactly them
    id2=$(run_probe_job "$USER2" c2 2) || bad "sbatch of the next job failed"
    if wait_probes c2 "$id2" scn1 scn3; then
        check_probe c2 "$id2" scn1 "$USER2"
        check_probe c2 "$id2" scn3 "$USER2"
    fi
    touch "$J/c2.$id2.go"
    nodes=$(job_field "$id2" NodeList)
    st=$(wait_job_end "$id2") || true
    [[ "$st" =~ $JOB_OK_RE ]] || bad "next job $id2 state $st"
    [ "$nodes" = "scn[1,3]" ] || bad "next job $id2 ran on '$nodes', expected scn[1,3]"
    [ -e "$J/c2.$id2.$bad_node" ] && bad "next job $id2 ran on the drained $bad_node"
    check_node_wiped scn1 "$id2" ""
    check_node_wiped scn3 "$id2" ""
    rm -f "$T/run/fail-epilog.$id.$bad_node"
    scontrol update nodename="$bad_node" state=resume >/dev/null 2>&1
    wait_node_idle "$bad_node" 30 || bad "$bad_node did not return after resume (State=$(node_field "$bad_node" State))"
    verdict c "an epilog failing on $bad_node drains $bad_node alone (wiped anyway); scn1 and scn3 run the next job"
}

# ---------------------------------------------------------------------------------------
# d) a node killed mid-job is swept at reboot and rejoins clean
# ---------------------------------------------------------------------------------------
test_d() {
    local victim=scn3 id st n vol=() vvol line id2 daemons ns
    id=$(run_probe_job "$USER2" d 3 --no-requeue) || { bad "sbatch failed"; verdict d "node crash"; return; }
    log "d: job $id submitted"
    wait_probes d "$id" "${NODES[@]}" || true
    for n in "${NODES[@]}"; do vol+=("$(node_volume "$n" "$T/local/scratch/$id")"); done
    vvol=${vol[2]}
    ns=$(cat "$T/node/$victim/ns.id")
    daemons=$(our_daemons "$T" "$ns" | tr '\n' ' ')
    [ -n "$vvol" ] && [ -n "$daemons" ] || bad "$victim: no live volume/daemon for job $id before the crash"
    log "d: crashing $victim (volume $vvol, daemon $daemons)"
    crash_node "$T" "$victim"
    [ -z "$(pids_in_ns "$ns")" ] || bad "$victim: processes survived the crash: $(pids_in_ns "$ns" | tr '\n' ' ')"
    [ -d "$T/node/$victim/backing/$id" ] || bad "$victim: the crash left no backing behind (nothing to sweep)"
    [ -n "$(key_serial "$vvol")" ] || bad "$victim: the crash left no key behind (nothing to sweep)"
    # The controller notices the silent node (SlurmdTimeout), sets it DOWN and ends its
    # job; the other nodes' epilogs wipe their part.
    local end=$(( $(date +%s) + 60 ))
    while [ "$(date +%s)" -lt "$end" ]; do
        case "$(node_field "$victim" State)" in *DOWN*) break ;; esac
        sleep 0.5
    done
    log "d: $victim State=$(node_field "$victim" State) Reason=$(node_field "$victim" Reason)"
    case "$(node_field "$victim" State)" in *DOWN*) ;; *) bad "the controller did not set the crashed $victim DOWN within 60 s" ;; esac
    st=$(wait_job_end "$id" 60) || true
    log "d: job $id ended $st"
    case "$st" in NODE_FAIL|FAILED|CANCELLED*) ;; *) bad "job $id of the crashed node ended '$st', expected NODE_FAIL" ;; esac
    check_node_wiped scn1 "$id" "${vol[0]}"
    check_node_wiped scn2 "$id" "${vol[1]}"
    # "reboot": the boot sweep ends what the crash left, then slurmd rejoins
    start_node "$T" "$victim" rebooted
    wait_node_idle "$victim" 60 || bad "$victim did not rejoin idle after its reboot (State=$(node_field "$victim" State) Reason=$(node_field "$victim" Reason))"
    line=$(grep -F "\"volume\": \"$vvol\"" "$T/node/$victim/wipe.jsonl" 2>/dev/null | tail -1 || true)
    grep -q '"event": *"sweep"' <<<"$line" || bad "$victim: no sweep record for volume $vvol: '$line'"
    grep -q '"outcome": *"complete"' <<<"$line" || bad "$victim: sweep record not complete: '$line'"
    [ "$(grep -cF "\"volume\": \"$vvol\"" "$T/node/$victim/wipe.jsonl" 2>/dev/null)" = 1 ] || bad "$victim: not exactly one record for volume $vvol"
    [ -n "$(key_serial "$vvol")" ] && bad "$victim: key of $vvol survived the boot sweep"
    [ -e "$T/node/$victim/backing/$id" ] && bad "$victim: backing of job $id survived the boot sweep"
    [ -z "$(ls -A "$T/node/$victim/backing" 2>/dev/null)" ] || bad "$victim: backing_root not empty after the sweep: $(ls -A "$T/node/$victim/backing")"
    touch "$J/d.$id.go"
    # the victim takes the next job, with a fresh volume, and is clean after it
    id2=$(run_probe_job "$USER1" d2 1 -w "$victim") || bad "sbatch of the next job failed"
    if wait_probes d2 "$id2" "$victim"; then check_probe d2 "$id2" "$victim" "$USER1"; fi
    touch "$J/d2.$id2.go"
    st=$(wait_job_end "$id2") || true
    [[ "$st" =~ $JOB_OK_RE ]] || bad "next job $id2 on $victim: state $st"
    check_node_wiped "$victim" "$id2" ""
    check_node_clean "$victim"
    verdict d "$victim killed mid-job (slurmd, job, daemon: SIGKILL): set DOWN, its job ends and scn1, scn2 wipe their part; its boot sweep ends its volume (record event sweep), it rejoins and runs a job clean"
}

# ---------------------------------------------------------------------------------------
# e) a job array of 50 short tasks leaves nothing anywhere
# ---------------------------------------------------------------------------------------
test_e() {
    local id st n t count used=0 vols miss
    cat >"$J/e.sh" <<'EOF'
#!/bin/bash
echo "TASK=$SLURM_ARRAY_TASK_ID JOB=$SLURM_JOB_ID HOST=$(hostname) SCRATCH=${SCRATCH:-<unset>}"
[ "$(stat -c %U "$SCRATCH")" = "$(id -un)" ] || exit 3
mkdir "$SCRATCH/d" && for i in 1 2 3 4 5; do echo "$i" >"$SCRATCH/d/f$i"; done
head -c 300000 /dev/urandom >"$SCRATCH/r" && cat "$SCRATCH"/d/* >/dev/null && echo TASK_OK
EOF
    chmod 0644 "$J/e.sh"
    id=$(submit "$USER2" e "$J/e.sh" -n1 --array=1-50 -o "$J/e.%A_%a.out" -e "$J/e.%A_%a.out") || { bad "sbatch failed"; verdict e "array"; return; }
    log "e: array job $id (50 tasks) submitted"
    local end=$(( $(date +%s) + 120 ))
    while [ "$(date +%s)" -lt "$end" ]; do
        [ -z "$(squeue -h -j "$id" -o %i 2>/dev/null)" ] && break
        sleep 0.5
    done
    [ -z "$(squeue -h -j "$id" -o %i 2>/dev/null)" ] || bad "array $id not done within 120 s: $(squeue -h -j "$id" -o '%i %T' | head -3 | tr '\n' ' ')"
    count=0
    miss=""
    for t in $(seq 1 50); do
        if grep -qx TASK_OK "$J/e.${id}_$t.out" 2>/dev/null; then count=$((count + 1)); else miss="$miss $t"; fi
    done
    [ "$count" = 50 ] || bad "only $count of 50 tasks succeeded (missing:$miss)"
    log "e: $count tasks ok; per node: $(for n in "${NODES[@]}"; do printf '%s=%s ' "$n" "$(cat "$J"/e."${id}"_*.out 2>/dev/null | grep -c "HOST=$n ")"; done)"
    for n in "${NODES[@]}"; do
        [ "$(cat "$J"/e."${id}"_*.out 2>/dev/null | grep -c "HOST=$n ")" -gt 0 ] && used=$((used + 1))
    done
    [ "$used" -ge 2 ] || bad "the array ran on $used node(s) only"
    # one complete record per task, on the node that ran it
    local jid host
    while read -r _ jid host _; do
        jid=${jid#JOB=}
        host=${host#HOST=}
        check_node_wiped "$host" "$jid" ""
    done < <(cat "$J"/e."${id}"_*.out 2>/dev/null | grep '^TASK=')
    # no key of any volume of the run is left, no loop device, nothing on any node
    vols=$(cat "$T"/node/*/wipe.jsonl | grep -o '"volume": *"[0-9a-f]*"' | grep -o '[0-9a-f]\{16,\}' | sort -u)
    for v in $vols; do [ -n "$(key_serial "$v")" ] && bad "key of volume $v is still valid"; done
    [ -z "$(our_loops "$T")" ] || bad "loop devices left: $(our_loops "$T" | tr '\n' ' ')"
    for n in "${NODES[@]}"; do check_node_clean "$n"; done
    verdict e "an array of 50 tasks over the nodes: one record each, then no mount, key, loop device, daemon, registry entry or backing file on any node"
}

CASE_START=$(date +%s)
test_a a
if [ "${#LAYOUTS[@]}" -gt 0 ]; then
    for L in "${LAYOUTS[@]}"; do
        for n in "${NODES[@]}"; do node_config "$n" "$L"; done
        LAYOUT_EXPECT=$L test_a "a-$L"
    done
    for n in "${NODES[@]}"; do node_config "$n"; done
else
    log "the binary has no 'layout' setting: case a ran on its only layout"
fi
test_b
test_c
test_d
test_e
log "cases took $(( $(date +%s) - CASE_START )) s"

echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
