#!/bin/bash
# Azure Batch test: the packaged start task, job preparation and job release
# scripts (packaging/azure-batch/) run as the Batch agent runs them, on this
# machine, with the environment Batch documents for compute nodes
# (AZ_BATCH_NODE_ROOT_DIR, AZ_BATCH_NODE_STARTUP_DIR, AZ_BATCH_NODE_SHARED_DIR,
# AZ_BATCH_TASK_WORKING_DIR, AZ_BATCH_TASK_DIR, AZ_BATCH_JOB_ID, AZ_BATCH_TASK_ID,
# AZ_BATCH_JOB_PREP_DIR, AZ_BATCH_JOB_PREP_WORKING_DIR, AZ_BATCH_TASK_USER,
# AZ_BATCH_TASK_USER_IDENTITY, AZ_BATCH_POOL_ID, AZ_BATCH_NODE_ID, ...): the
# commandLine without a shell, only the task's environment, in its working
# directory, as the task's user (admin tasks as root, the job's tasks as a test
# user), in a process group of its own that is killed when the task ends.
#
# Cases: a reboot's leftovers swept by the start task; job preparation mounts the
# job's volume owned by the task user, whose tasks find it through
# $AZ_BATCH_JOB_PREP_WORKING_DIR/scratchcrypt.env and write to it; another user
# cannot read it; job release wipes a volume a task still uses and records it;
# job preparation refuses a node with a leftover volume or an unfinished
# deletion; a release that cannot delete fails, and a start task (reboot) mends;
# node mode (the start task mounts the node's volume, each job re-keys it).
#
# Everything lives in a temporary directory (configuration, backing_root,
# mount_root, record log, volume registry, Batch's directories); cleaned up on
# every exit. Run as root: `make batch-test`. Ends with "N passed, M failed".
# shellcheck disable=SC2317  # cleanup and helpers are called from traps
# shellcheck disable=SC2016  # task command lines are expanded by the task's shell
set -u
export LC_ALL=C

top=$(cd "$(dirname "$0")/../.." && pwd)
bin=${SCRATCHCRYPT_BIN:-$top/build/scratchcrypt}
scripts=$top/packaging/azure-batch
user_a=60001
user_b=60002
# shellcheck source=tests/lib/results.sh
. "$top/tests/lib/results.sh"  # pass, fail, check, finish

if [ "$(id -u)" -ne 0 ]; then
    fail "the Batch test must run as root (Batch's admin tasks do)"
    finish
fi
if [ ! -x "$bin" ]; then
    fail "no scratchcrypt binary at $bin (make, or set SCRATCHCRYPT_BIN)"
    finish
fi

start=$(date +%s)
tmp=$(mktemp -d /tmp/scratchcrypt-batchtest.XXXXXX)
chmod 0755 "$tmp"  # the task user must reach its volume and the prep task's files
conf=$tmp/etc/scratchcrypt.conf
log=$tmp/log/wipe.jsonl
metrics=$tmp/textfile/scratchcrypt.prom
backing=$tmp/resource/scratchcrypt/backing
scratch=$tmp/scratch
nodedir=$tmp/batch/tasks
export SCRATCHCRYPT_RUN_DIR=$tmp/run SCRATCHCRYPT_CONFIG=$conf
leftover_pids=()

our_mounts() { awk -v d="$tmp/" 'index($2, d) == 1 { print $2 }' /proc/self/mounts | sort -r; }
our_ids() {
    grep -ho '"volume": "[0-9a-f]*"' "$log" 2>/dev/null | cut -d'"' -f4
    cat "$backing"/*/.scratchcrypt-volume 2>/dev/null | sed -n 's/^id //p'
}
cleanup() {
    local m id pid
    trap - EXIT INT TERM
    for pid in "${leftover_pids[@]}"; do kill -KILL "$pid" 2>/dev/null; done
    chattr -R -i "$backing" 2>/dev/null
    for m in $(our_mounts); do
        "$bin" wipe --force --wait "$m" >/dev/null 2>&1 || umount -l "$m" 2>/dev/null
    done
    for id in $(our_ids); do
        keyctl invalidate "$(keyctl search @u user "scratchcrypt:$id" 2>/dev/null)" 2>/dev/null
    done
    sleep 0.2  # background deletions append their record
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

# The node image: the shipped configuration, with the record log in our directory
# and without FITRIM (here it would scan the machine's whole root file system after
# every sweep: seconds each, and nothing this test looks at).
mkdir -p "$tmp/etc" "$nodedir/startup/wd" "$nodedir/shared" "$tmp/resource"
sed -e "s|^record_log = .*|record_log = $log|" -e "s|^trim = .*|trim = no|" \
    "$top/packaging/scratchcrypt.conf" >"$conf"
# resourceFiles: the start task script is uploaded into the startup directory.
cp "$scripts/start-task.sh" "$nodedir/startup/wd/"

# What every task's environment holds (Batch sets it), plus the settings a pool or
# job passes as environmentSettings (here also where the test's binary, config and
# registry are).
node_env=(
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
    AZ_BATCH_ACCOUNT_NAME=testaccount AZ_BATCH_POOL_ID=scratchpool
    AZ_BATCH_NODE_ID=tvm-0000000001_1-20261201t000000z AZ_BATCH_NODE_IS_DEDICATED=true
    AZ_BATCH_NODE_ROOT_DIR="$nodedir" AZ_BATCH_NODE_SHARED_DIR="$nodedir/shared"
    AZ_BATCH_NODE_STARTUP_DIR="$nodedir/startup"
    SCRATCHCRYPT_BIN="$bin" SCRATCHCRYPT_CONFIG="$conf" SCRATCHCRYPT_RUN_DIR="$tmp/run"
)

# run_task OUT UID DIR ENV... -- COMMAND...: runs COMMAND as the Batch agent runs a
# task's commandLine: no shell, only the given environment (and HOME, the working
# directory), in DIR/wd, as UID (0 for elevated tasks), in a session and process
# group of its own, which is killed when the task has ended. The task's stdout and
# stderr go to OUT; its exit status is returned.
run_task() {
    local out=$1 uid=$2 dir=$3 rc pid
    shift 3
    local env=()
    while [ "$1" != -- ]; do env+=("$1"); shift; done
    shift
    local as=()
    [ "$uid" != 0 ] && as=(setpriv "--reuid=$uid" "--regid=$uid" --clear-groups)
    mkdir -p "$dir/wd"
    chown -R "$uid:$uid" "$dir"
    chmod 0755 "$dir" "$dir/wd"
    (cd "$dir/wd" && exec setsid "${as[@]}" env -i "${node_env[@]}" HOME="$dir/wd" \
        AZ_BATCH_TASK_DIR="$dir" AZ_BATCH_TASK_WORKING_DIR="$dir/wd" "${env[@]}" "$@") \
        </dev/null >"$out" 2>&1 &
    pid=$!
    wait "$pid"
    rc=$?
    kill -KILL -- "-$pid" 2>/dev/null  # what the task left in its process group
    return "$rc"
}
start_task() {  # start_task OUT [ENV...]: the pool's start task (admin auto-user)
    local out=$1
    shift
    run_task "$out" 0 "$nodedir/startup" AZ_BATCH_TASK_ID=starttask "$@" \
        AZ_BATCH_TASK_USER=_azbatch AZ_BATCH_TASK_USER_IDENTITY=PoolAdmin \
        SCRATCHCRYPT_BACKING_ROOT="$backing" SCRATCHCRYPT_MOUNT_ROOT="$scratch" \
        SCRATCHCRYPT_SIZE_LIMIT=256M SCRATCHCRYPT_METRICS_FILE="$metrics" \
        -- /bin/bash -c 'bash "$AZ_BATCH_NODE_STARTUP_DIR/wd/start-task.sh"'
}
job_dir() { echo "$nodedir/workitems/$1/job-1"; }
job_prep() {  # job_prep OUT JOB: the job preparation task (admin), tasks of user_a
    local d
    d=$(job_dir "$2")
    run_task "$1" 0 "$d/jobpreparation" AZ_BATCH_JOB_ID="$2" AZ_BATCH_TASK_ID=jobpreparation \
        AZ_BATCH_JOB_PREP_DIR="$d/jobpreparation" AZ_BATCH_JOB_PREP_WORKING_DIR="$d/jobpreparation/wd" \
        AZ_BATCH_TASK_USER=_azbatch AZ_BATCH_TASK_USER_IDENTITY=PoolAdmin \
        SCRATCHCRYPT_JOB_USER=$user_a SCRATCHCRYPT_JOB_GROUP=$user_a -- "$scripts/job-prep.sh"
}
job_release() {  # job_release OUT JOB: the job release task (admin)
    local d
    d=$(job_dir "$2")
    run_task "$1" 0 "$d/jobrelease" AZ_BATCH_JOB_ID="$2" AZ_BATCH_TASK_ID=jobrelease \
        AZ_BATCH_JOB_PREP_DIR="$d/jobpreparation" AZ_BATCH_JOB_PREP_WORKING_DIR="$d/jobpreparation/wd" \
        AZ_BATCH_TASK_USER=_azbatch AZ_BATCH_TASK_USER_IDENTITY=PoolAdmin -- "$scripts/job-release.sh"
}
job_task() {  # job_task OUT JOB TASK UID COMMAND: one of the job's tasks (non-admin)
    local d
    d=$(job_dir "$2")
    run_task "$1" "$4" "$d/$3" AZ_BATCH_JOB_ID="$2" AZ_BATCH_TASK_ID="$3" \
        AZ_BATCH_JOB_PREP_DIR="$d/jobpreparation" AZ_BATCH_JOB_PREP_WORKING_DIR="$d/jobpreparation/wd" \
        AZ_BATCH_TASK_USER=_azbatch AZ_BATCH_TASK_USER_IDENTITY=PoolNonAdmin -- /bin/bash -c "$5"
}
volume_of() { sed -n 's/^id //p' "$backing/$1/.scratchcrypt-volume" 2>/dev/null; }
record_of() { grep "\"volume\": \"$1\"" "$log" 2>/dev/null | tail -n 1; }
wait_record() {  # wait_record ID: the volume's record, waiting up to 10 s for it
    for _ in $(seq 100); do
        record_of "$1" | grep -q . && { record_of "$1"; return 0; }
        sleep 0.1
    done
    return 1
}
processes_in() {  # processes_in DIR: pids whose working directory is DIR
    local p
    for p in /proc/[0-9]*; do
        [ "$(readlink "$p/cwd" 2>/dev/null)" = "$1" ] && printf '%s ' "${p#/proc/}"
    done
    return 0
}
has_key() { keyctl search @u user "scratchcrypt:$1" >/dev/null 2>&1; }
not() { ! "$@"; }
daemon_of() { "$bin" status --json | grep -o "\"id\": \"$1\"[^}]*" | sed -n 's/.*"pid": \([0-9]*\).*/\1/p'; }
out=$tmp/out

# --- 1. The first boot, then a reboot with leftovers of the boot before ---------
if start_task "$out"; then pass "start task on a fresh node"; else fail "start task on a fresh node: $(cat "$out")"; fi
check "start task: the configuration holds the pool's settings" \
    grep -qx "backing_root = $backing" "$conf"
check "start task: ends with ready" grep -q "scratchcrypt start task: ready" "$out"
check "start task: the mount root is traversable" test "$(stat -c %a "$scratch")" = 755

job_prep "$out" boot-1 || fail "job prep before the reboot: $(cat "$out")"
old=$(volume_of boot-1)
# The reboot: daemons and mounts gone, the keyring and /run emptied; the disk stays.
kill -KILL "$(daemon_of "$old")" 2>/dev/null
sleep 0.2
umount -l "$scratch/boot-1"
keyctl invalidate "$(keyctl search @u user "scratchcrypt:$old")"
# A block volume's private image mount lives under the run directory.
findmnt -rn -o TARGET | grep "^$tmp/run/" | xargs -r -n1 umount -l
rm -rf "${tmp:?}/run"
mkdir -p "$backing/.wiped-00aa00aa00aa00aa00aa00aa00aa00aa/d"
echo ciphertext >"$backing/.wiped-00aa00aa00aa00aa00aa00aa00aa00aa/d/f"

if start_task "$out"; then pass "start task after a reboot"; else fail "start task after a reboot: $(cat "$out")"; fi
check "start task: swept the volume and the unfinished deletion" \
    grep -q "swept 1 volume(s), 1 unfinished deletion(s)" "$out"
check "start task: the leftover volume is gone" test ! -e "$backing/boot-1"
check "start task: the unfinished deletion is gone" test ! -e "$backing/.wiped-00aa00aa00aa00aa00aa00aa00aa00aa"
check "start task: a sweep record for the leftover" grep -q "\"event\": \"sweep\", \"volume\": \"$old\"" "$log"
check "start task: health ok at the end" grep -qx ok "$out"

# --- 2. A job: preparation, tasks, release of a volume still in use -------------
if job_prep "$out" job-7; then pass "job prep"; else fail "job prep: $(cat "$out")"; fi
id=$(volume_of job-7)
prepwd=$(job_dir job-7)/jobpreparation/wd
check "job prep: the volume is mounted at mount_root/job id" mountpoint -q "$scratch/job-7"
check "job prep: owned by the tasks' user, mode 0700" \
    test "$(stat -c %u:%a "$scratch/job-7")" = "$user_a:700"
check "job prep: the daemon outlived the task's process group" test -n "$(daemon_of "$id")"
check "job prep: scratchcrypt.env for the tasks" grep -qx "export SCRATCH=$scratch/job-7" "$prepwd/scratchcrypt.env"

if job_task "$out" job-7 task1 $user_a \
    'source "$AZ_BATCH_JOB_PREP_WORKING_DIR/scratchcrypt.env" && [ "$TMPDIR" = "$SCRATCH" ] &&
     head -c 5000000 /dev/urandom >"$SCRATCH/data" && sha256sum "$SCRATCH/data" >"$SCRATCH/sum" &&
     mkdir -p "$SCRATCH/run/$AZ_BATCH_TASK_ID" && echo "$AZ_BATCH_TASK_USER_IDENTITY" >"$SCRATCH/run/$AZ_BATCH_TASK_ID/who"'; then
    pass "a task of the job writes to \$SCRATCH"
else
    fail "a task of the job writes to \$SCRATCH: $(cat "$out")"
fi
if job_task "$out" job-7 task2 $user_a 'source "$AZ_BATCH_JOB_PREP_WORKING_DIR/scratchcrypt.env" && cd "$SCRATCH" && sha256sum -c sum'; then
    pass "the next task of the job reads it back"
else
    fail "the next task of the job reads it back: $(cat "$out")"
fi
if job_task "$out" job-7 intruder $user_b 'cat "'"$scratch"'/job-7/data" >/dev/null'; then
    fail "another user read the job's scratch"
else
    check "another user cannot read the job's scratch" grep -q "Permission denied" "$out"
fi
check "no plaintext of the task's files in backing_root" \
    test -z "$(grep -rl "PoolNonAdmin" "$backing/job-7" 2>/dev/null)"
# A task leaves a process behind in its scratch (it escaped the process group).
job_task "$out" job-7 task3 $user_a \
    'source "$AZ_BATCH_JOB_PREP_WORKING_DIR/scratchcrypt.env" && cd "$SCRATCH" &&
     setsid -f sh -c "echo \$\$ >\"\$0\"; exec sleep 600" "$HOME/left" </dev/null >/dev/null 2>&1 &&
     until [ -s "$HOME/left" ]; do sleep 0.05; done'  # in its own session before the task ends
read -ra leftover_pids <<<"$(processes_in "$scratch/job-7")"
check "the task's leftover process outlived its task, in \$SCRATCH" test "${#leftover_pids[@]}" -eq 1
if job_release "$out" job-7; then pass "job release of a volume still in use"; else fail "job release of a busy volume: $(cat "$out")"; fi
rec=$(wait_record "$id")
check "job release: record of job-7, complete" grep -q "\"job\": \"job-7\".*\"outcome\": \"complete\"" <<<"$rec"
check "job release: the leftover process was cut off" grep -q '"forced": true, "holders_cut_off": [1-9]' <<<"$rec"
check "job release: no mount left" test -z "$(our_mounts)"
check "job release: the key is destroyed" not has_key "$id"
check "job release: no backing left" test -z "$(ls -A "$backing")"

# --- 3. Job preparation on a node with a leftover volume ------------------------
job_prep "$out" job-8 || fail "job prep job-8: $(cat "$out")"
dead=$(volume_of job-8)
kill -KILL "$(daemon_of "$dead")"
sleep 0.2
if job_prep "$out" job-9; then
    fail "job prep on a node with a dead volume succeeded"
else
    pass "job prep on a node with a dead volume fails"
fi
# A files-layout volume's mount is dead (ENOTCONN); a block volume's job file
# system still answers from its cache, and health names the dead daemon.
check "job prep: says why (health's line)" \
    grep -qE "^(dead mount: $scratch/job-8 \(volume $dead\)|dead daemon: volume $dead \(job job-8\))" "$out"
check "job prep: mounted nothing for the new job" test ! -e "$backing/job-9"
job_release "$out" job-8 || fail "release of the dead volume: $(cat "$out")"
check "release of the dead volume: a complete record" grep -q '"outcome": "complete"' <<<"$(wait_record "$dead")"
if job_prep "$out" job-9; then pass "job prep once the leftover is wiped"; else fail "job prep once the leftover is wiped: $(cat "$out")"; fi
job_release "$out" job-9 || fail "release job-9: $(cat "$out")"

# --- 4. A release that cannot delete; the next prep refuses; a reboot mends -----
job_prep "$out" job-10 || fail "job prep job-10: $(cat "$out")"
bad=$(volume_of job-10)
job_task "$out" job-10 task1 $user_a 'source "$AZ_BATCH_JOB_PREP_WORKING_DIR/scratchcrypt.env" && echo x >"$SCRATCH/f"'
pinned=$(find "$backing/job-10" -type f ! -name .scratchcrypt-volume | head -n 1)
if [ -n "$pinned" ] && chattr +i "$pinned" 2>/dev/null; then
    if job_release "$out" job-10; then fail "release with an undeletable file succeeded"; else pass "release with an undeletable file fails"; fi
    check "that release: the key is destroyed all the same" not has_key "$bad"
    check "that release: a failed record" grep -q '"outcome": "failed"' <<<"$(wait_record "$bad")"
    if job_prep "$out" job-11; then fail "job prep after a failed release succeeded"; else pass "job prep after a failed release fails"; fi
    check "job prep: says why" grep -q "^unfinished deletion: $backing/.wiped-$bad" "$out"
    chattr -R -i "$backing"
    if start_task "$out"; then pass "start task (reboot) after the failed release"; else fail "start task after the failed release: $(cat "$out")"; fi
    check "start task: the unfinished deletion is gone" test -z "$(ls -A "$backing")"
    if job_prep "$out" job-11; then pass "job prep after the reboot"; else fail "job prep after the reboot: $(cat "$out")"; fi
    job_release "$out" job-11 || fail "release job-11: $(cat "$out")"
else
    echo "SKIP: the file system of $tmp does not support chattr +i"
fi

# --- 5. Node mode: the start task mounts the node's volume, each job re-keys it --
sed -i "s|^node_mount = .*|node_mount = $scratch/node|" "$conf"
if start_task "$out" SCRATCHCRYPT_MODE=node SCRATCHCRYPT_NODE_USER=$user_a SCRATCHCRYPT_NODE_GROUP=$user_a; then
    pass "start task in node mode"
else
    fail "start task in node mode: $(cat "$out")"
fi
check "node mode: the node volume is mounted, owned by the node user" \
    test "$(stat -c %u:%a "$scratch/node" 2>/dev/null)" = "$user_a:700"
check "node mode: its daemon outlived the start task" mountpoint -q "$scratch/node"
first=$(volume_of node)
if job_prep "$out" job-30; then pass "job prep in node mode"; else fail "job prep in node mode: $(cat "$out")"; fi
check "node mode: the job's tasks are pointed at node_mount" \
    grep -qx "export SCRATCH=$scratch/node" "$(job_dir job-30)/jobpreparation/wd/scratchcrypt.env"
second=$(volume_of node)
check "node mode: the job got a freshly keyed volume" test -n "$second" -a "$second" != "$first"
check "node mode: the boot volume was wiped and recorded" grep -q '"outcome": "complete"' <<<"$(wait_record "$first")"
if job_task "$out" job-30 task1 $user_a 'source "$AZ_BATCH_JOB_PREP_WORKING_DIR/scratchcrypt.env" && echo node >"$SCRATCH/f"'; then
    pass "node mode: a task writes to \$SCRATCH"
else
    fail "node mode: a task writes to \$SCRATCH: $(cat "$out")"
fi
if job_release "$out" job-30; then pass "job release in node mode"; else fail "job release in node mode: $(cat "$out")"; fi
check "node mode: the job's volume was wiped and recorded" grep -q '"job": "job-30".*"outcome": "complete"' <<<"$(wait_record "$second")"

# --- 6. What monitoring sees -----------------------------------------------------
complete=$(grep -c '"outcome": "complete"' "$log")
failures=$(grep -c '"outcome": "failed"' "$log")
sleep 0.3  # the last background deletion rewrites the file after its record
check "metrics: completed wipes as in the record log ($complete)" \
    grep -qx "scratchcrypt_wipes_total{outcome=\"complete\"} $complete" "$metrics"
check "metrics: failed wipes as in the record log ($failures)" \
    grep -qx "scratchcrypt_wipes_total{outcome=\"failed\"} $failures" "$metrics"
check "metrics: valid exposition format" /usr/bin/python3 "$top/tests/lifecycle/check_metrics.py" "$metrics"
check "nothing left: mounts" test -z "$(our_mounts)"
no_keys_left() {
    local id
    for id in $(our_ids); do has_key "$id" && return 1; done
    return 0
}
check "nothing left: keys" no_keys_left
check "nothing left: backing files" test -z "$(ls -A "$backing")"
echo "batch test took $(($(date +%s) - start)) s"
finish
