#!/bin/bash
# Single-node Slurm integration test for scratchcrypt.
#
# Starts a private munged + slurmctld + slurmd (no systemd, nothing under /etc/slurm or
# /etc/munge is used or changed) from a temporary directory, wires the packaging/slurm
# Prolog / Epilog / TaskProlog scripts to the scratchcrypt binary under test, and runs
# jobs as two unprivileged test users:
#   a) a job gets $SCRATCH (= $TMPDIR), writes to it, in a block-layout volume where
#      loop devices work (layout = auto); afterwards the volume is wiped (mount gone,
#      backing files gone) and the wipe record log names the job
#   b) two jobs of two users at the same time each see only their own $SCRATCH
#   c) a job that leaves a setsid/nohup process holding a file in $SCRATCH is still wiped
#   d) a job that exceeds size_limit gets ENOSPC, and the node keeps serving jobs
#   e) an epilog failure drains the node; the node is resumed afterwards
#   f) scratchcrypt's own epilogue fails (backing file made immutable) -> node drains
#   g) a prologue that cannot mount keeps the job from running and drains the node
#   j) the HealthCheckProgram script (healthcheck.sh) drains the node while
#      `scratchcrypt health` finds a problem, resumes it once healthy, and never lifts
#      or rewrites a drain it did not set
#   h) the epilog of a job without a volume succeeds; the node still runs jobs at the end
#   i) every wipe finished: a record line per job, no ciphertext left in backing_root
#      (scratchcrypt deletes the ciphertext in the background after the key is gone)
#
# Usage (as root):  bash tests/slurm/run_slurm_test.sh
# Environment:
#   SCRATCHCRYPT_BIN               binary to test (default: <repo>/build/scratchcrypt)
#   SCRATCHCRYPT_SLURM_TEST_KEEP=1 keep the temporary directory even when all tests pass
#   SCRATCHCRYPT_SLURM_TEST_NO_APT=1 never run apt-get (fail if packages are missing)
# Prints PASS/FAIL per case (NOTE lines: behaviour worth knowing that is not a failure;
# SKIP f when the filesystem of /tmp has no chattr +i) and finally exactly
# "N passed, M failed"; exits non-zero on any failure. On failure the temporary
# directory (logs) is kept and its path printed; the next run removes it.
# Runtime: about 1-2 minutes.

set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/slurm/lib.sh
. "$HERE/lib.sh"
DIR_PREFIX=scratchcrypt-slurm-test.
LOCK_FILE=$TMP_BASE/scratchcrypt-slurm-test.lock

SUBMIT_DEFAULTS=(-n 1)

[ "$(id -u)" -eq 0 ] || { echo "run_slurm_test.sh must run as root" >&2; exit 2; }

# ---------------------------------------------------------------------------------------
# Packages
# ---------------------------------------------------------------------------------------
install_slurm_packages

[ -x "$SC_SRC_BIN" ] || die "scratchcrypt binary not found or not executable: $SC_SRC_BIN (build it or set SCRATCHCRYPT_BIN)"
for f in prolog.sh epilog.sh task_prolog.sh common.sh; do
    [ -f "$PKG/$f" ] || die "missing $PKG/$f"
done

# ---------------------------------------------------------------------------------------
# One run at a time; clean up what an earlier run left behind (killed with SIGKILL, ...)
# ---------------------------------------------------------------------------------------
exec 9>"$LOCK_FILE"
flock -n 9 || die "another run_slurm_test.sh is running (lock $LOCK_FILE)"

# Every process this test starts (daemons, hooks, jobs) carries this variable in its
# environment, so that exactly those processes can be found and stopped later.
MARK_VAR=SCRATCHCRYPT_SLURM_TEST_DIR


mounts_under() {  # mounts_under DIR: mount points below DIR, deepest first
    awk -v d="$1/" 'index($2, d) == 1 { print $2 }' /proc/mounts | sort -r
}

# volume_key_name MOUNTPOINT: the volume's name in the kernel keyring, "scratchcrypt:<id>":
# the mount source of a files-layout volume; for a block-layout volume (a file system on
# a loop device) taken from the loop device's image, <run dir>/images/<id>/image; empty
# when the mount is something else
volume_key_name() {
    local src
    src=$(awk -v m="$1" '$2 == m { print $1 }' /proc/mounts | head -1)
    case "$src" in
        scratchcrypt:*) echo "$src" ;;
        /dev/loop*) sed -n 's|.*/images/\([0-9a-f]\{32\}\)/image$|scratchcrypt:\1|p' \
            "/sys/block/${src#/dev/}/loop/backing_file" 2>/dev/null ;;
    esac
    return 0
}

# wipe_leftovers DIR: wipe (key included) the scratchcrypt volumes still mounted under
# the test directory DIR, with that run's own binary and config
wipe_leftovers() {
    local d=$1 m
    [ -x "$d/bin/scratchcrypt" ] && [ -f "$d/etc/scratchcrypt.conf" ] || return 0
    for m in $(mounts_under "$d"); do
        [ -n "$(volume_key_name "$m")" ] || continue
        log "wiping leftover volume $m"
        SCRATCHCRYPT_CONFIG=$d/etc/scratchcrypt.conf timeout 30 \
            "$d/bin/scratchcrypt" wipe --force "$m" >/dev/null 2>&1 || true
    done
}

unmount_under() {
    local d=$1 m
    for m in $(mounts_under "$d"); do
        fusermount3 -uz "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
    done
}

for old in "$TMP_BASE/$DIR_PREFIX"*; do
    [ -d "$old" ] && [ -f "$old/.scratchcrypt-slurm-test" ] || continue
    log "cleaning up an earlier run: $old"
    wipe_leftovers "$old"
    unmount_under "$old"
    kill_marked "$old"
    unmount_under "$old"
    chattr -R -i "$old" 2>/dev/null || true
    if [ -z "$(mounts_under "$old")" ]; then rm -rf "$old"; fi
done

# ---------------------------------------------------------------------------------------
# Temporary world
# ---------------------------------------------------------------------------------------
T=$(mktemp -d "$TMP_BASE/${DIR_PREFIX}XXXXXX")
touch "$T/.scratchcrypt-slurm-test"
chmod 0755 "$T"       # job users must reach the munge socket, the config and the hooks
export "$MARK_VAR=$T"
mkdir -p "$T/etc" "$T/bin" "$T/run" "$T/log" "$T/state/ctld" "$T/state/slurmd" "$T/munge"
mkdir -p "$T/jobs"
chmod 1777 "$T/jobs"
chmod 0755 "$T/munge" "$T/etc" "$T/bin"
chmod 0700 "$T/state/ctld" "$T/state/slurmd" "$T/run"

cleanup() {
    local rc=$?
    set +e
    trap - EXIT INT TERM
    if [ -n "${T:-}" ] && [ -d "$T" ]; then
        if [ -S "$T/munge/munge.socket.2" ] && [ -s "$T/run/slurmctld.pid" ]; then
            timeout 10 scancel --quiet --partition=sctest >/dev/null 2>&1
            sleep 1
        fi
        log "cleanup: stopping slurmd, slurmctld"
        stop_pidfile "$T/run/slurmd.pid"
        stop_pidfile "$T/run/slurmctld.pid"
        log "cleanup: unmounting, stopping munged and leftover processes"
        # volumes a failed run left mounted: wipe them properly first (key included)
        wipe_leftovers "$T"
        unmount_under "$T"
        kill_marked "$T"
        unmount_under "$T"
        chattr -R -i "$T/backing" 2>/dev/null
        if [ -n "$(mounts_under "$T")" ]; then
            echo "WARNING: still mounted under $T:" >&2
            mounts_under "$T" >&2
        fi
        if [ "$rc" -ne 0 ] || [ "$FAILED" -ne 0 ] || [ "${SCRATCHCRYPT_SLURM_TEST_KEEP:-0}" = 1 ]; then
            if [ "$SETUP_FAILED" = 1 ] || [ "$FAILED" -ne 0 ]; then
                for f in "$T"/log/slurmctld.log "$T"/log/slurmd.log "$T"/log/hooks.log "$T"/munge/munged.log; do
                    [ -s "$f" ] || continue
                    echo "---- last lines of $f"
                    tail -n 25 "$f"
                done
            fi
            echo "test directory kept: $T"
        elif [ -z "$(mounts_under "$T")" ]; then
            rm -rf "$T"
        fi
    fi
    log "total runtime $(( $(date +%s) - START_TIME ))s"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# The binary and the hook scripts are copied into the test directory so that the job
# users can execute them even when the repository lives under a private home directory.
cp "$SC_SRC_BIN" "$T/bin/scratchcrypt"
cp "$PKG/prolog.sh" "$PKG/epilog.sh" "$PKG/task_prolog.sh" "$PKG/healthcheck.sh" "$T/bin/"
chmod 0755 "$T/bin/"*
cp "$PKG/common.sh" "$T/bin/"  # sourced by prolog.sh and epilog.sh from their directory
chmod 0644 "$T/bin/common.sh"
SC=$T/bin/scratchcrypt
# The volume registry of this test's node, not the machine's /run/scratchcrypt.
export SCRATCHCRYPT_RUN_DIR=$T/run/volumes

BACKING=$T/backing
MNT=$T/mnt
RECORD=$T/record.log
cat >"$T/etc/scratchcrypt.conf" <<EOF
# scratchcrypt config for the Slurm integration test
backing_root = $BACKING
mount_root = $MNT
size_limit = 64M
record_log = $RECORD
mode = per-job
EOF
chmod 0644 "$T/etc/scratchcrypt.conf"

# Slurm gives Prolog/Epilog no environment of ours, so small wrappers export what the
# packaging scripts need. They set NO PATH: the packaging scripts must do that.
HOOKLOG=$T/log/hooks.log
touch "$HOOKLOG"
chmod 0644 "$HOOKLOG"
# Case e: the epilog fails on purpose when the harness asked for it for this job id.
write_hook_wrappers "export $MARK_VAR='$T'
export SCRATCHCRYPT_CONFIG='$T/etc/scratchcrypt.conf'
export SCRATCHCRYPT_BIN='$SC'
export SCRATCHCRYPT_RUN_DIR='$SCRATCHCRYPT_RUN_DIR'" "$HOOKLOG" "'$T/run/fail-epilog.'\"\$SLURM_JOB_ID\""

# ---------------------------------------------------------------------------------------
# Users
# ---------------------------------------------------------------------------------------
ensure_users "$USER1" "$USER2"

# ---------------------------------------------------------------------------------------
# munge
# ---------------------------------------------------------------------------------------
start_munge "$T/munge" "$USER1"
log "munged up"

# ---------------------------------------------------------------------------------------
# slurm.conf
# ---------------------------------------------------------------------------------------
CTLD_PORT=$(free_port) || die "no free TCP port"
SLURMD_PORT=$((CTLD_PORT + 1))

NODE=$(hostname -s)
HW=$(slurmd -C 2>/dev/null | head -1)
CPUS=$(sed -n 's/.* CPUs=\([0-9]*\).*/\1/p' <<<"$HW")
MEM=$(sed -n 's/.* RealMemory=\([0-9]*\).*/\1/p' <<<"$HW")
[ -n "$CPUS" ] && [ -n "$MEM" ] || die "cannot parse 'slurmd -C': $HW"

CONF=$T/etc/slurm.conf
{
slurm_conf_common
cat <<EOF
# generated by tests/slurm/run_slurm_test.sh
ClusterName=sctest
SlurmctldHost=$NODE(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
StateSaveLocation=$T/state/ctld
SlurmdSpoolDir=$T/state/slurmd
SlurmctldPidFile=$T/run/slurmctld.pid
SlurmdPidFile=$T/run/slurmd.pid
SlurmctldLogFile=$T/log/slurmctld.log
SlurmdLogFile=$T/log/slurmd.log
SlurmdTimeout=30
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM State=UNKNOWN
PartitionName=sctest Nodes=$NODE Default=YES MaxTime=10 State=UP OverSubscribe=FORCE:4
EOF
} >"$CONF"
chmod 0644 "$CONF"
export SLURM_CONF=$CONF

# ---------------------------------------------------------------------------------------
# slurmctld + slurmd
# ---------------------------------------------------------------------------------------
( exec 9>&-; exec slurmctld -D -c -f "$CONF" ) >"$T/log/slurmctld.out" 2>&1 &
CTLD_PID=$!
echo "$CTLD_PID" >"$T/run/slurmctld.pid"
for i in $(seq 1 100); do
    scontrol ping 2>/dev/null | grep -q 'is UP' && break
    kill -0 "$CTLD_PID" 2>/dev/null || break
    sleep 0.2
done
scontrol ping 2>/dev/null | grep -q 'is UP' \
    || die "slurmctld did not come up: $(tail -5 "$T/log/slurmctld.out" "$T/log/slurmctld.log" 2>/dev/null)"
log "slurmctld up (port $CTLD_PORT)"

( exec 9>&-; exec slurmd -D -f "$CONF" -N "$NODE" ) >"$T/log/slurmd.out" 2>&1 &
SLURMD_PID=$!
echo "$SLURMD_PID" >"$T/run/slurmd.pid"

node_state() { sinfo -h -n "$NODE" -o '%T' 2>/dev/null | head -1 || true; }
node_reason() { sinfo -h -n "$NODE" -o '%E' 2>/dev/null | head -1 || true; }
node_field() { scontrol show node "$NODE" 2>/dev/null | tr ' ' '\n' | sed -n "s/^$1=//p" | head -1 || true; }

wait_node_idle() {   # wait_node_idle TIMEOUT
    local end=$(( $(date +%s) + $1 )) s
    while [ "$(date +%s)" -lt "$end" ]; do
        s=$(node_state)
        [ "$s" = idle ] && return 0
        sleep 0.2
    done
    return 1
}
wait_node_idle 60 \
    || die "node $NODE did not become idle (state '$(node_state)', reason '$(node_reason)'): $(tail -5 "$T/log/slurmd.out" "$T/log/slurmd.log" 2>/dev/null)"
log "slurmd up, node $NODE idle (CPUs=$CPUS RealMemory=$MEM)"

# ---------------------------------------------------------------------------------------
# Job helpers
# ---------------------------------------------------------------------------------------
J=$T/jobs


is_mounted() { awk -v m="$1" '$2 == m { f = 1 } END { exit !f }' /proc/mounts; }

check_key_gone() {   # check_key_gone ID KEYNAME
    [ -n "$2" ] || return 0
    # Invalidation is immediate (a search fails at once); the kernel's key
    # garbage collector drops the entry from /proc/keys a moment later.
    if keyctl search @u user "$2" >/dev/null 2>&1; then
        bad "job $1: the volume key '$2' is still valid in the kernel keyring after the wipe"
        return
    fi
    local i
    for i in $(seq 1 50); do
        grep -q " $2: " /proc/keys 2>/dev/null || return 0
        sleep 0.1
    done
    bad "job $1: the volume key '$2' is still in the kernel keyring 5 s after the wipe"
}

# volume_leftovers VOLID ENTRIES: what is left in backing_root of one volume: its
# original ENTRIES and anything whose name carries its volume id (.wiped-<id>)
volume_leftovers() {
    local volid=$1 entries=$2 e
    for e in $entries; do [ -e "$BACKING/$e" ] && echo "$e"; done
    if [ -n "$volid" ]; then ls -A "$BACKING" 2>/dev/null | grep -F -- "$volid" || true; fi
}

backing_entries() { ls -A "$BACKING" 2>/dev/null | sort || true; }

record_line() { record_line_in "$RECORD" "$1"; }   # the last JSON line naming job $1
record_has_job() { [ -n "$(record_line "$1")" ]; }

# check_wiped ID ENTRIES [KEYNAME]: right after the epilog, the volume of job ID must
# be unmounted, its mount point and its backing ENTRIES gone from their places and its
# key out of the keyring. scratchcrypt deletes the renamed-aside ciphertext and writes
# the record line in the background, so those are checked for all jobs together at
# the end (case i); check_wiped queues the job for that.
DEFERRED=()          # "case:jobid:expected outcome" for the final check
check_wiped() {
    local id=$1 entries=$2 keyname=${3:-} e
    if is_mounted "$MNT/$id"; then bad "job $id: $MNT/$id is still mounted after the epilog"; fi
    if [ -e "$MNT/$id" ]; then bad "job $id: mount point $MNT/$id still exists after the epilog"; fi
    for e in $entries; do
        if [ -e "$BACKING/$e" ]; then bad "job $id: backing entry $BACKING/$e still exists after the epilog"; fi
    done
    check_key_gone "$id" "$keyname"
    DEFERRED+=("${CASE:-?}:$id:${EXPECT_OUTCOME:-complete}")
}

# The common job preamble: report what the job sees, then optionally wait for the
# harness (ready/go files) so it can look at the live volume.
JOB_PRE='#!/bin/bash
set -u
name=$SLURM_JOB_NAME
echo "SCRATCH=${SCRATCH:-<unset>}"
echo "TMPDIR=${TMPDIR:-<unset>}"
echo "WHOAMI=$(id -un)"
handshake() {
    touch "$TESTJOBS/$name.ready"
    for i in $(seq 1 300); do [ -e "$TESTJOBS/$name.go" ] && return 0; sleep 0.2; done
    echo "HANDSHAKE_TIMEOUT"
}
'

# ---------------------------------------------------------------------------------------
# a) write to $SCRATCH; wiped afterwards, record written
# ---------------------------------------------------------------------------------------
test_a() {
    local name=a-basic s id st out before new e marker keyname="" layout expected
    marker="SCMARKER$RANDOM$RANDOM$RANDOM"
    s=$J/$name.sh
    cat >"$s" <<EOF
$JOB_PRE
[ -n "\${SCRATCH:-}" ] || exit 11
stat -c 'STAT owner=%U mode=%a' "\$SCRATCH"
echo "$marker plaintext content" > "\$SCRATCH/$marker.txt" || exit 12
head -c 3000001 /dev/urandom > "\$TESTJOBS/$name.rand"
cp "\$TESTJOBS/$name.rand" "\$SCRATCH/rand.bin" || exit 13
cmp "\$TESTJOBS/$name.rand" "\$SCRATCH/rand.bin" && echo ROUNDTRIP_OK
mkdir -p "\$SCRATCH/d1/d2" && echo x > "\$SCRATCH/d1/d2/f" && echo MKDIR_OK
awk -v m="\$SCRATCH" '\$2 == m { print "MOUNTED fstype=" \$3 }' /proc/mounts
srun -n1 sh -c 'echo "STEP_SCRATCH=\$SCRATCH"; ls "\$SCRATCH"' 2>&1
sync
handshake
echo DONE
EOF
    chmod 0644 "$s"
    rm -f "$J/$name.ready" "$J/$name.go"
    before=$(backing_entries)
    id=$(submit "$USER1" "$name" "$s") || { bad "sbatch failed"; verdict a "basic job scratch + wipe"; return; }
    log "a: job $id submitted"
    if wait_file "$J/$name.ready" 60; then
        new=$(comm -13 <(echo "$before") <(backing_entries))
        [ -n "$new" ] || bad "no new entry appeared under backing_root $BACKING while the job ran"
        if grep -rqs "$marker" "$BACKING" 2>/dev/null; then
            bad "the plaintext marker $marker (in a file name and its content) is visible in $BACKING"
        fi
        is_mounted "$MNT/$id" || bad "$MNT/$id is not a mount point while the job runs"
        keyname=$(volume_key_name "$MNT/$id")
        [ -n "$keyname" ] || bad "the volume at $MNT/$id has no scratchcrypt key name"
        # layout = auto (the default): the block layout wherever loop devices work.
        layout=$(SCRATCHCRYPT_CONFIG=$T/etc/scratchcrypt.conf "$T/bin/scratchcrypt" status --json |
            python3 -c 'import json, sys
print(" ".join(v["layout"] for v in json.load(sys.stdin)["volumes"] if v["job"] == sys.argv[1]))' "$id")
        expected=files
        [ -e /dev/loop-control ] && expected=block
        [ "$layout" = "$expected" ] || bad "job $id's volume has layout '$layout' in status, expected $expected"
        log "a: job $id runs in a $layout-layout volume"
    else
        bad "job never reached the handshake (state $(job_field "$id" JobState))"
        new=""
    fi
    touch "$J/$name.go"
    st=$(wait_job_end "$id") || true
    out=$(job_out "$id" "$name")
    [ "$st" = COMPLETED ] || bad "job state $st, exit $(job_field "$id" ExitCode)"
    grep -qx "SCRATCH=$MNT/$id" <<<"$out" || bad "job saw $(grep '^SCRATCH=' <<<"$out"), expected SCRATCH=$MNT/$id"
    grep -qx "TMPDIR=$MNT/$id" <<<"$out" || bad "job saw $(grep '^TMPDIR=' <<<"$out"), expected TMPDIR=$MNT/$id"
    grep -qx "STAT owner=$USER1 mode=700" <<<"$out" || bad "scratch dir: $(grep '^STAT' <<<"$out"), expected owner=$USER1 mode=700"
    grep -q '^MOUNTED' <<<"$out" || bad "job: \$SCRATCH is not a mount point in the job"
    grep -qx ROUNDTRIP_OK <<<"$out" || bad "a 3000001-byte file did not round-trip"
    grep -qx MKDIR_OK <<<"$out" || bad "mkdir -p / nested write failed"
    grep -qx "STEP_SCRATCH=$MNT/$id" <<<"$out" || bad "srun step did not get SCRATCH ($(grep -i 'step_scratch\|srun' <<<"$out" | head -2 | tr '\n' ' '))"
    grep -qx DONE <<<"$out" || bad "job did not finish its script"
    check_wiped "$id" "$new" "$keyname"
    if [ "${#REASONS[@]}" -ne 0 ]; then REASONS+=("job output: $(tr '\n' '|' <<<"$out")"); fi
    verdict a "job writes to \$SCRATCH; after it ends the volume is wiped and recorded"
}

# ---------------------------------------------------------------------------------------
# b) two users at once, each sees only their own scratch
# ---------------------------------------------------------------------------------------
test_b() {
    local s id1 id2 st1 st2 o1 o2 o id pair
    s=$J/b-iso.sh
    cat >"$s" <<'EOF'
#!/bin/bash
set -u
me=$(id -un)
echo "SCRATCH=${SCRATCH:-<unset>}"
[ -n "${SCRATCH:-}" ] || exit 11
echo "secret of $me" > "$SCRATCH/secret" || exit 12
echo "$SCRATCH" > "$TESTJOBS/b.$me.path.tmp" && mv "$TESTJOBS/b.$me.path.tmp" "$TESTJOBS/b.$me.path"
other=$OTHER_USER
for i in $(seq 1 300); do [ -e "$TESTJOBS/b.$other.path" ] && break; sleep 0.2; done
[ -e "$TESTJOBS/b.$other.path" ] || { echo "NO_OVERLAP"; exit 13; }
op=$(cat "$TESTJOBS/b.$other.path")
echo "OTHER=$op"
[ "$op" != "$SCRATCH" ] && echo DISTINCT
if cat "$op/secret" >/dev/null 2>"$TESTJOBS/b.$me.err1"; then echo LEAK_READ; fi
grep -q 'Permission denied' "$TESTJOBS/b.$me.err1" && echo DENIED_READ
if ls "$op" >/dev/null 2>"$TESTJOBS/b.$me.err2"; then echo LEAK_LIST; fi
grep -q 'Permission denied' "$TESTJOBS/b.$me.err2" && echo DENIED_LIST
if (echo x > "$op/intruder") 2>/dev/null; then echo LEAK_WRITE; fi
[ "$(cat "$SCRATCH/secret")" = "secret of $me" ] && echo OWN_OK
[ "$(ls -A "$SCRATCH")" = secret ] && echo ONLY_OWN_FILES
# stay alive until the other job has looked too
touch "$TESTJOBS/b.$me.done"
for i in $(seq 1 300); do [ -e "$TESTJOBS/b.$other.done" ] && break; sleep 0.2; done
EOF
    chmod 0644 "$s"
    rm -f "$J"/b.*
    id1=$(submit "$USER1" b-iso "$s" --export=ALL,OTHER_USER=$USER2) || bad "sbatch 1 failed"
    id2=$(submit "$USER2" b-iso "$s" --export=ALL,OTHER_USER=$USER1) || bad "sbatch 2 failed"
    log "b: jobs $id1 ($USER1) and $id2 ($USER2) submitted"
    st1=$(wait_job_end "$id1") || true
    st2=$(wait_job_end "$id2") || true
    o1=$(job_out "$id1" b-iso)
    o2=$(job_out "$id2" b-iso)
    [ "$st1" = COMPLETED ] || bad "job $id1 state $st1 exit $(job_field "$id1" ExitCode)"
    [ "$st2" = COMPLETED ] || bad "job $id2 state $st2 exit $(job_field "$id2" ExitCode)"
    for pair in "$id1:$o1" "$id2:$o2"; do
        id=${pair%%:*}
        o=${pair#*:}
        grep -qx "SCRATCH=$MNT/$id" <<<"$o" || bad "job $id: $(grep '^SCRATCH=' <<<"$o"), expected $MNT/$id"
        grep -q NO_OVERLAP <<<"$o" && bad "job $id: the two jobs did not run at the same time"
        grep -qx DISTINCT <<<"$o" || bad "job $id: both jobs got the same \$SCRATCH"
        grep -q '^LEAK' <<<"$o" && bad "job $id: could access the other user's scratch: $(grep '^LEAK' <<<"$o" | tr '\n' ' ')"
        grep -qx DENIED_READ <<<"$o" || bad "job $id: reading the other's file did not fail with 'Permission denied'"
        grep -qx DENIED_LIST <<<"$o" || bad "job $id: listing the other's scratch did not fail with 'Permission denied'"
        grep -qx OWN_OK <<<"$o" || bad "job $id: could not read back its own file"
        grep -qx ONLY_OWN_FILES <<<"$o" || bad "job $id: its scratch holds more than its own file"
    done
    check_wiped "$id1" ""
    check_wiped "$id2" ""
    if [ "${#REASONS[@]}" -ne 0 ]; then
        REASONS+=("job $id1 output: $(tr '\n' '|' <<<"$o1")" "job $id2 output: $(tr '\n' '|' <<<"$o2")")
    fi
    verdict b "two users' jobs at the same time each see only their own \$SCRATCH"
}

# ---------------------------------------------------------------------------------------
# c) a leftover background process holding a file in $SCRATCH
# ---------------------------------------------------------------------------------------
test_c() {
    local name=c-holder s id st out before new bgpid keyname=""
    rm -f "$J/$name".*
    s=$J/$name.sh
    cat >"$s" <<EOF
$JOB_PRE
[ -n "\${SCRATCH:-}" ] || exit 11
cd "\$SCRATCH" || exit 12
setsid nohup bash -c 'exec 3>>"\$0/held.txt"; echo \$\$ > "\$1"; echo holding >&3; exec sleep 300' \\
    "\$SCRATCH" "\$TESTJOBS/$name.bgpid" </dev/null >/dev/null 2>&1 &
for i in \$(seq 1 50); do [ -s "\$TESTJOBS/$name.bgpid" ] && break; sleep 0.1; done
echo "BGPID=\$(cat "\$TESTJOBS/$name.bgpid")"
handshake
echo DONE
EOF
    chmod 0644 "$s"
    before=$(backing_entries)
    id=$(submit "$USER1" "$name" "$s") || { bad "sbatch failed"; verdict c "leftover process"; return; }
    log "c: job $id submitted"
    new=""
    if wait_file "$J/$name.ready" 60; then
        new=$(comm -13 <(echo "$before") <(backing_entries))
        keyname=$(volume_key_name "$MNT/$id")
    else
        bad "job never reached the handshake"
    fi
    bgpid=$(cat "$J/$name.bgpid" 2>/dev/null || true)
    [ -n "$bgpid" ] && alive "$bgpid" || bad "background holder process did not start"
    touch "$J/$name.go"
    st=$(wait_job_end "$id") || true
    out=$(job_out "$id" "$name")
    [ "$st" = COMPLETED ] || bad "job state $st, exit $(job_field "$id" ExitCode)"
    grep -qx DONE <<<"$out" || bad "job did not finish its script"
    sleep 0.5
    if [ -n "$bgpid" ] && alive "$bgpid"; then
        # The epilogue cuts holders off (their I/O fails) rather than killing them;
        # killing stray user processes is the job of Slurm's proctrack plugin.
        if ls -l "/proc/$bgpid/fd" 2>/dev/null | grep -q "$MNT/$id"; then
            if is_mounted "$MNT/$id"; then bad "the holder (pid $bgpid) still has a file open on the live volume"; fi
        fi
        note "c: the background holder (pid $bgpid) was cut off but not killed by the epilogue"
        kill -KILL "$bgpid" 2>/dev/null || true
    fi
    check_wiped "$id" "$new" "$keyname"
    if [ "${#REASONS[@]}" -ne 0 ]; then REASONS+=("job output: $(tr '\n' '|' <<<"$out")"); fi
    verdict c "a job that leaves a setsid/nohup process holding a file in \$SCRATCH is still wiped"
}

# ---------------------------------------------------------------------------------------
# d) size limit -> ENOSPC; node keeps serving
# ---------------------------------------------------------------------------------------
test_d() {
    local name=d-full s id st out id2 st2 ns
    s=$J/$name.sh
    cat >"$s" <<EOF
$JOB_PRE
[ -n "\${SCRATCH:-}" ] || exit 11
dd if=/dev/zero of="\$SCRATCH/big" bs=1M count=100 2>"\$TESTJOBS/$name.dderr"
echo "DD_RC=\$?"
sed 's/^/DDERR: /' "\$TESTJOBS/$name.dderr"
rm -f "\$SCRATCH/big"
echo small > "\$SCRATCH/after" && [ "\$(cat "\$SCRATCH/after")" = small ] && echo AFTER_OK
exit 0
EOF
    chmod 0644 "$s"
    id=$(submit "$USER2" "$name" "$s") || { bad "sbatch failed"; verdict d "size limit"; return; }
    log "d: job $id submitted"
    st=$(wait_job_end "$id") || true
    out=$(job_out "$id" "$name")
    [ "$st" = COMPLETED ] || bad "job state $st, exit $(job_field "$id" ExitCode)"
    if grep -qx 'DD_RC=0' <<<"$out"; then
        bad "dd of 100 MiB into a 64M-limited scratch succeeded"
    fi
    grep -q '^DDERR:.*No space left on device' <<<"$out" || bad "dd did not report 'No space left on device'"
    if grep -q '^DDERR:.*closing output file.*No space left' <<<"$out"; then
        note "d: ENOSPC was reported only at close(), not by write(): $(grep '^DDERR:' <<<"$out" | head -1)"
    fi
    grep -qx AFTER_OK <<<"$out" || bad "the volume was not usable after ENOSPC and rm"
    check_wiped "$id" ""
    ns=$(node_state)
    case "$ns" in idle|mixed|allocated) ;; *) bad "node state after the job: $ns ($(node_reason))" ;; esac
    # the node keeps serving
    cat >"$J/d-next.sh" <<'EOF'
#!/bin/bash
echo "SCRATCH=${SCRATCH:-<unset>}"
echo hi > "$SCRATCH/x" && echo NEXT_OK
EOF
    chmod 0644 "$J/d-next.sh"
    id2=$(submit "$USER1" d-next "$J/d-next.sh") || bad "sbatch of the next job failed"
    st2=$(wait_job_end "$id2") || true
    [ "$st2" = COMPLETED ] || bad "next job $id2: state $st2"
    grep -qx NEXT_OK <<<"$(job_out "$id2" d-next)" || bad "next job $id2 could not write its scratch: $(job_out "$id2" d-next | tr '\n' '|')"
    check_wiped "$id2" ""
    if [ "${#REASONS[@]}" -ne 0 ]; then REASONS+=("job output: $(tr '\n' '|' <<<"$out")"); fi
    verdict d "a job over size_limit gets ENOSPC and the node keeps serving"
}

# ---------------------------------------------------------------------------------------
# Drain helpers
# ---------------------------------------------------------------------------------------
wait_drain() {   # wait_drain TIMEOUT
    local end=$(( $(date +%s) + $1 ))
    while [ "$(date +%s)" -lt "$end" ]; do
        case "$(node_field State)" in *DRAIN*) return 0 ;; esac
        sleep 0.25
    done
    return 1
}
resume_node() {
    scontrol update nodename="$NODE" state=resume >/dev/null 2>&1 || return 1
    wait_node_idle 30
}

# ---------------------------------------------------------------------------------------
# e) an epilog failure drains the node (test hook), resume works
# ---------------------------------------------------------------------------------------
test_e() {
    local name=e-drain s id st reason
    s=$J/$name.sh
    printf '#!/bin/bash\necho "SCRATCH=${SCRATCH:-<unset>}"\necho data > "$SCRATCH/f"\n' >"$s"
    chmod 0644 "$s"
    id=$(submit "$USER1" "$name" "$s" --hold) || { bad "sbatch failed"; verdict e "drain"; return; }
    touch "$T/run/fail-epilog.$id"
    scontrol release "$id" >/dev/null 2>&1 || bad "scontrol release $id failed"
    log "e: job $id submitted (epilog made to fail)"
    st=$(wait_job_end "$id") || true
    if wait_drain 10; then
        reason=$(node_reason)
        log "e: node drained: State=$(node_field State) Reason=$reason"
        case "$reason" in *[Ee]pilog*) ;; *) bad "drain reason '$reason' does not mention the epilog" ;; esac
    else
        bad "node did not drain after a failed epilog (State=$(node_field State), job state $st)"
    fi
    sinfo -h -n "$NODE" -o '%T' | grep -q drain || bad "sinfo does not show the node as drained: $(sinfo -h -n "$NODE" -o '%T')"
    # the real epilog ran before the hook failed: the volume is wiped anyway
    check_wiped "$id" ""
    rm -f "$T/run/fail-epilog.$id"
    resume_node || bad "node did not return to idle after 'scontrol update state=resume' (State=$(node_field State))"
    verdict e "a failed epilog drains the node; 'scontrol update state=resume' brings it back"
}

# ---------------------------------------------------------------------------------------
# f) scratchcrypt's own epilogue cannot wipe (backing made immutable) -> drain
# ---------------------------------------------------------------------------------------
test_f() {
    local name=f-cannot-wipe s id st before new target ok=1 out rc left e keyname="" volid=""
    if ! lsattr -d "$T" >/dev/null 2>&1; then
        echo "SKIP f: the filesystem of $T does not support chattr +i"
        return
    fi
    rm -f "$J/$name".*
    s=$J/$name.sh
    cat >"$s" <<EOF
$JOB_PRE
[ -n "\${SCRATCH:-}" ] || exit 11
mkdir "\$SCRATCH/sub" && echo data > "\$SCRATCH/sub/file" && echo data2 > "\$SCRATCH/file2"
sync
handshake
EOF
    chmod 0644 "$s"
    before=$(backing_entries)
    id=$(submit "$USER2" "$name" "$s") || { bad "sbatch failed"; verdict f "epilogue failure"; return; }
    log "f: job $id submitted (backing will be made immutable)"
    new=""
    if wait_file "$J/$name.ready" 60; then
        new=$(comm -13 <(echo "$before") <(backing_entries))
        keyname=$(volume_key_name "$MNT/$id")
        volid=${keyname#scratchcrypt:}
    else
        bad "job never reached the handshake"
    fi
    # make one regular backing file of this volume (or, failing that, its top entry)
    # undeletable, even for root
    target=""
    for e in $new; do
        target=$(find "$BACKING/$e" -type f ! -name '.scratchcrypt*' 2>/dev/null | head -1 || true)
        [ -n "$target" ] || target=$(find "$BACKING/$e" -type f 2>/dev/null | head -1 || true)
        [ -n "$target" ] || target=$BACKING/$e
        break
    done
    if [ -n "$target" ] && chattr +i "$target" 2>/dev/null; then
        log "f: made $target immutable"
    else
        bad "could not make a backing file of job $id immutable (new entries: '$new')"
        ok=0
    fi
    touch "$J/$name.go"
    st=$(wait_job_end "$id") || true
    if [ "$ok" = 1 ]; then
        if wait_drain 10; then
            log "f: node drained: State=$(node_field State) Reason=$(node_reason)"
        else
            bad "scratchcrypt epilogue did not fail although $target could not be deleted (node State=$(node_field State)); hooks log: $(grep "\[$id\]" "$HOOKLOG" | tail -2 | tr '\n' ' ')"
        fi
        # let the (background) deletion run into the immutable file first
        for _ in $(seq 1 20); do record_has_job "$id" && break; sleep 0.25; done
        chattr -R -i "$BACKING" 2>/dev/null || true
        # The operator's repair (README): run the epilogue again; it must finish the
        # deletion. ('scratchcrypt sweep' is not used: it acts node-wide, on keys of
        # volumes outside this test too.)
        out=$(SCRATCHCRYPT_CONFIG=$T/etc/scratchcrypt.conf "$SC" epilogue --job "$id" 2>&1) && rc=0 || rc=$?
        [ "$rc" = 0 ] || bad "re-running 'scratchcrypt epilogue --job $id' after chattr -i failed (exit $rc): $out"
        for _ in $(seq 1 40); do
            left=$(volume_leftovers "$volid" "$new")
            [ -z "$left" ] && break
            sleep 0.25
        done
        if [ -n "$left" ]; then
            bad "after chattr -i, 'scratchcrypt epilogue --job $id' (exit $rc: $out) did not finish deleting '$left'"
            for e in $left; do rm -rf "${BACKING:?}/$e"; done
        fi
        EXPECT_OUTCOME=any check_wiped "$id" "$new" "$keyname"
    fi
    case "$(node_field State)" in *DRAIN*) resume_node || bad "node did not resume" ;; esac
    verdict f "scratchcrypt epilogue that cannot delete the backing files exits non-zero and drains the node"
}

# ---------------------------------------------------------------------------------------
# g) a prologue that cannot mount: the job does not run, the node drains
# ---------------------------------------------------------------------------------------
test_g() {
    local name=h-prolog-fail s id st reason i e
    s=$J/$name.sh
    printf '#!/bin/bash\necho "RAN SCRATCH=${SCRATCH:-<unset>}"\n' >"$s"
    chmod 0644 "$s"
    id=$(submit "$USER1" "$name" "$s" --hold) || { bad "sbatch failed"; verdict g "prologue failure"; return; }
    # a plain file where the job's mount point has to go makes the prologue fail
    mkdir -p "$MNT"
    : >"$MNT/$id"
    scontrol release "$id" >/dev/null 2>&1 || bad "scontrol release $id failed"
    log "g: job $id submitted (its mount point is blocked by a file)"
    if wait_drain 30; then
        reason=$(node_reason)
        log "g: node drained: State=$(node_field State) Reason=$reason"
        case "$reason" in *[Pp]rolog*) ;; *) bad "drain reason '$reason' does not mention the prolog" ;; esac
    else
        bad "node did not drain after a failed prologue (State=$(node_field State), job $(job_field "$id" JobState))"
    fi
    for i in $(seq 1 20); do
        st=$(job_field "$id" JobState)
        [ "$st" != RUNNING ] && [ "$st" != CONFIGURING ] && break
        sleep 0.25
    done
    log "g: job $id: State=$st Reason=$(job_field "$id" Reason)"
    if [ -s "$J/$name.$id.out" ] && grep -q '^RAN' "$J/$name.$id.out"; then
        bad "the job script ran although its prologue failed: $(cat "$J/$name.$id.out")"
    fi
    grep -q "\[$id\]: '.*' failed" "$HOOKLOG" || bad "prolog.sh did not log the failure of job $id"
    scancel "$id" >/dev/null 2>&1 || true
    wait_job_end "$id" 30 >/dev/null || true
    rm -f "$MNT/$id"
    case "$(node_field State)" in *DRAIN*) resume_node || bad "node did not resume" ;; esac
    if is_mounted "$MNT/$id"; then bad "the failed prologue left $MNT/$id mounted"; fi
    for e in $(backing_entries | grep -x -- "$id" || true); do
        if [ -n "$(find "$BACKING/$e" -mindepth 1 -print -quit 2>/dev/null)" ]; then
            bad "the failed prologue left backing files in $BACKING/$e: $(ls -A "$BACKING/$e" | tr '\n' ' ')"
        else
            note "g: the failed prologue left an empty directory $BACKING/$e behind (removed by the test)"
        fi
        rm -rf "${BACKING:?}/$e"
    done
    verdict g "a prologue that cannot mount keeps the job from running and drains the node"
}

# ---------------------------------------------------------------------------------------
# j) the health check program drains an unfit node and resumes it once healthy; a
#    drain with another reason is left alone. Run as slurmd runs HealthCheckProgram:
#    as root, SLURMD_NODENAME set, no PATH (SLURM_CONF only because this cluster's
#    configuration is not in /etc/slurm).
# ---------------------------------------------------------------------------------------
run_healthcheck() {
    env -i "$MARK_VAR=$T" SLURMD_NODENAME="$NODE" SLURM_CONF="$CONF" SCRATCHCRYPT_BIN="$SC" \
        SCRATCHCRYPT_RUN_DIR="$SCRATCHCRYPT_RUN_DIR" \
        SCRATCHCRYPT_CONFIG="$T/etc/scratchcrypt.conf" SCRATCHCRYPT_SLURM_LOG="$HOOKLOG" \
        /bin/sh "$T/bin/healthcheck.sh" >/dev/null 2>&1
}
test_j() {
    local trash=$BACKING/.wiped-0123456789abcdef0123456789abcdef reason
    run_healthcheck || bad "healthcheck.sh failed on a healthy node: $(tail -3 "$HOOKLOG")"
    case "$(node_field State)" in *DRAIN*) bad "a healthy node was drained: $(node_reason)" ;; esac
    mkdir -p "$trash" && echo x >"$trash/f"
    run_healthcheck && bad "healthcheck.sh exited 0 with an unfinished deletion"
    if wait_drain 10; then
        reason=$(node_reason)
        log "j: node drained: Reason=$reason"
        case "$reason" in "scratchcrypt health: unfinished deletion: $trash"*) ;;
            *) bad "drain reason '$reason' is not health's line" ;; esac
    else
        bad "healthcheck.sh did not drain the node (State=$(node_field State))"
    fi
    rm -rf "$trash"
    run_healthcheck || bad "healthcheck.sh failed once the node was healthy again: $(tail -3 "$HOOKLOG")"
    wait_node_idle 30 || bad "healthcheck.sh did not resume the node it drained (State=$(node_field State))"
    # An operator's drain: neither rewritten by a problem nor lifted once healthy.
    scontrol update nodename="$NODE" state=drain reason="operator: disk swap" >/dev/null 2>&1 \
        || bad "scontrol drain failed"
    mkdir -p "$trash"
    run_healthcheck && bad "healthcheck.sh exited 0 with an unfinished deletion (operator's drain)"
    [ "$(node_reason)" = "operator: disk swap" ] || bad "healthcheck.sh rewrote an operator's drain reason: $(node_reason)"
    rm -rf "$trash"
    run_healthcheck || bad "healthcheck.sh failed on a healthy, operator-drained node"
    case "$(node_field State)" in *DRAIN*) ;; *) bad "healthcheck.sh lifted an operator's drain" ;; esac
    resume_node || bad "node did not return to idle after 'scontrol update state=resume' (State=$(node_field State))"
    verdict j "healthcheck.sh drains the node on a health problem, resumes it once healthy, leaves other drains alone"
}

# ---------------------------------------------------------------------------------------
# h) epilog of a job that never got a volume succeeds; a job still runs at the end
# ---------------------------------------------------------------------------------------
test_h() {
    local out rc id st
    out=$(env -i "$MARK_VAR=$T" SLURM_JOB_ID=987654 SCRATCHCRYPT_BIN="$SC" \
        SCRATCHCRYPT_RUN_DIR="$SCRATCHCRYPT_RUN_DIR" \
        SCRATCHCRYPT_CONFIG="$T/etc/scratchcrypt.conf" SCRATCHCRYPT_SLURM_LOG="$HOOKLOG" \
        /bin/sh "$T/bin/epilog.sh" 2>&1) && rc=0 || rc=$?
    [ "$rc" = 0 ] || bad "epilog.sh for a job without a volume exited $rc: $out $(tail -1 "$HOOKLOG")"
    printf '#!/bin/bash\necho "SCRATCH=${SCRATCH:-<unset>}"\ntouch "$SCRATCH/ok" && echo OK\n' >"$J/g-last.sh"
    chmod 0644 "$J/g-last.sh"
    id=$(submit "$USER2" g-last "$J/g-last.sh") || bad "sbatch failed"
    st=$(wait_job_end "$id") || true
    [ "$st" = COMPLETED ] && grep -qx OK <<<"$(job_out "$id" g-last)" \
        || bad "final job $id: state $st, output $(job_out "$id" g-last | tr '\n' '|')"
    check_wiped "$id" ""
    verdict h "epilog without a volume succeeds; the node still runs jobs at the end"
}

# ---------------------------------------------------------------------------------------
# i) every wipe finished: a record line per job, no ciphertext left
# ---------------------------------------------------------------------------------------
WIPE_TIMEOUT=90
test_i() {
    local end entry c id exp line missing left maxms
    end=$(( $(date +%s) + WIPE_TIMEOUT ))
    while :; do
        missing=""
        for entry in "${DEFERRED[@]}"; do
            id=${entry#*:}
            id=${id%%:*}
            record_has_job "$id" || missing="$missing $id"
        done
        left=$(backing_entries | tr '\n' ' ')
        if [ -z "$missing" ] && [ -z "${left// /}" ]; then break; fi
        if [ "$(date +%s)" -ge "$end" ]; then break; fi
        sleep 0.5
    done
    for entry in "${DEFERRED[@]}"; do
        c=${entry%%:*}
        id=${entry#*:}
        id=${id%%:*}
        exp=${entry##*:}
        line=$(record_line "$id")
        if [ -z "$line" ]; then
            bad "case $c, job $id: no record line in $RECORD within ${WIPE_TIMEOUT}s of the last job"
        elif [ "$exp" = complete ] && grep -q '"outcome"' <<<"$line" &&
             ! grep -Eq '"outcome"[[:space:]]*:[[:space:]]*"complete"' <<<"$line"; then
            bad "case $c, job $id: record outcome is not complete: $line"
        fi
    done
    if [ -n "${left// /}" ]; then
        bad "backing_root still holds '$left' ${WIPE_TIMEOUT}s after the last job"
        chattr -R -i "$BACKING" 2>/dev/null || true
    fi
    maxms=$(grep -o '"duration_ms"[[:space:]]*:[[:space:]]*[0-9]*' "$RECORD" 2>/dev/null | grep -o '[0-9]*$' | sort -n | tail -1 || true)
    if [ -n "$maxms" ] && [ "$maxms" -ge 3000 ]; then
        note "i: the slowest wipe took ${maxms} ms (duration_ms, mostly background deletion)"
    fi
    verdict i "every wipe finished: a record line per job (outcome complete) and no ciphertext left in backing_root"
}

CASE=a test_a
CASE=b test_b
CASE=c test_c
CASE=d test_d
CASE=e test_e
CASE=f test_f
CASE=g test_g
CASE=j test_j
CASE=h test_h
CASE=i test_i

echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
