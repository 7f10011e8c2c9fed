# Shared by the Slurm integration tests (run_slurm_test.sh: one node;
# run_multinode_test.sh: a cluster of namespaced nodes). Sourced, not run.
#
# The caller sets HERE (its directory) before sourcing; MARK_VAR (the environment
# variable that marks every process a run starts) before using the process helpers;
# and, before using the job helpers: T (the run's directory), CONF (slurm.conf),
# J (the jobs directory), SUBMIT_DEFAULTS (an array of sbatch options every submit
# gets).
# shellcheck shell=bash
# shellcheck disable=SC2034  # the settings below are the callers'

REPO=$(cd "$HERE/../.." && pwd)
PKG=$REPO/packaging/slurm
SC_SRC_BIN=${SCRATCHCRYPT_BIN:-$REPO/build/scratchcrypt}
USER1=scjob1
USER2=scjob2
TMP_BASE=/tmp
JOB_TIMEOUT=90          # seconds for one job to finish (incl. epilog)
START_TIME=$(date +%s)
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export LC_ALL=C

log()  { printf '[%3ds] %s\n' "$(( $(date +%s) - START_TIME ))" "$*"; }
die()  { log "FATAL: $*"; echo "FAIL setup: $*"; echo "0 passed, 1 failed"; SETUP_FAILED=1; exit 1; }

PASSED=0
FAILED=0
SETUP_FAILED=0
REASONS=()
bad()     { REASONS+=("$*"); }
verdict() {   # verdict NAME DESCRIPTION
    if [ "${#REASONS[@]}" -eq 0 ]; then
        echo "PASS $1: $2"
        PASSED=$((PASSED + 1))
    else
        local r
        echo "FAIL $1: $2"
        for r in "${REASONS[@]}"; do echo "     - $r"; done
        FAILED=$((FAILED + 1))
    fi
    REASONS=()
}

NOTES=()
note() { NOTES+=("$*"); echo "NOTE $*"; }

# install_slurm_packages: apt-get what the Slurm tests need and is missing
# ensure_users USER...: the test users (no home, no password), made if missing.
ensure_users() {
    local u
    for u in "$@"; do
        id "$u" >/dev/null 2>&1 || useradd -M -s /bin/bash "$u" || die "useradd $u failed"
    done
}

# epilog_hook MARK LOG: prints the body of an epilog wrapper that runs the real
# epilog ($T/bin/epilog.sh), then fails on purpose when the file MARK exists.
# MARK is shell text expanded when the hook runs (it may name $SLURM_JOB_ID).
epilog_hook() {
    echo "'$T/bin/epilog.sh'; rc=\$?"
    echo "if [ -e $1 ]; then"
    echo "    echo \"test hook: failing epilog of job \$SLURM_JOB_ID on purpose\" >>'$2'"
    echo "    exit 1"
    echo "fi"
    echo "exit \$rc"
}

# write_hook_wrappers ENV LOG MARK: $T/bin/{prolog,epilog,task_prolog}-wrapper.
# Slurm gives its hooks no environment of ours, so each wrapper runs the shell
# lines ENV, sets SCRATCHCRYPT_SLURM_LOG=LOG (prolog and epilog), then the
# packaged script ($T/bin/HOOK.sh); the epilog's fails on purpose when MARK
# exists (epilog_hook).
write_hook_wrappers() {
    local env=$1 log=$2 mark=$3 hook
    for hook in prolog epilog task_prolog; do
        {
            echo '#!/bin/sh'
            echo "$env"
            if [ "$hook" != task_prolog ]; then echo "export SCRATCHCRYPT_SLURM_LOG='$log'"; fi
            if [ "$hook" = epilog ]; then
                epilog_hook "$mark" "$log"
            else
                echo "exec '$T/bin/$hook.sh'"
            fi
        } >"$T/bin/$hook-wrapper"
        chmod 0755 "$T/bin/$hook-wrapper"
    done
}

install_slurm_packages() {
    local need_pkgs=() added_policy apt_rc
    command -v slurmctld  >/dev/null 2>&1 || need_pkgs+=(slurmctld)
    command -v slurmd     >/dev/null 2>&1 || need_pkgs+=(slurmd)
    command -v sbatch     >/dev/null 2>&1 || need_pkgs+=(slurm-client)
    command -v munged     >/dev/null 2>&1 || need_pkgs+=(munge)
    command -v fusermount3 >/dev/null 2>&1 || need_pkgs+=(fuse3)
    command -v fuser      >/dev/null 2>&1 || need_pkgs+=(psmisc)
    command -v chattr     >/dev/null 2>&1 || need_pkgs+=(e2fsprogs)
    command -v runuser    >/dev/null 2>&1 || need_pkgs+=(util-linux)
    command -v flock      >/dev/null 2>&1 || need_pkgs+=(util-linux)
    if [ "${#need_pkgs[@]}" -gt 0 ]; then
        [ "${SCRATCHCRYPT_SLURM_TEST_NO_APT:-0}" = 1 ] && die "missing packages: ${need_pkgs[*]}"
        log "installing ${need_pkgs[*]}"
        # Keep the packages' maintainer scripts from starting system daemons (they would
        # use /etc/munge and /etc/slurm); only add a policy-rc.d if there is none.
        added_policy=0
        if [ ! -e /usr/sbin/policy-rc.d ]; then
            printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
            chmod 755 /usr/sbin/policy-rc.d
            added_policy=1
        fi
        apt_rc=0
        {
            DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 -q update &&
            DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 -q install -y \
                --no-install-recommends "${need_pkgs[@]}"
        } >"$TMP_BASE/scratchcrypt-slurm-test-apt.log" 2>&1 || apt_rc=$?
        [ "$added_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d
        if [ "$apt_rc" -ne 0 ]; then
            tail -20 "$TMP_BASE/scratchcrypt-slurm-test-apt.log"
            die "apt-get install ${need_pkgs[*]} failed"
        fi
    fi
}

pids_marked() {   # pids_marked DIR: live processes whose environment holds MARK_VAR=DIR
    local d=$1 f p k v st
    # one grep over all environ files (forks are slow on some VMs)
    for f in $(grep -lszxF "$MARK_VAR=$d" /proc/[0-9]*/environ 2>/dev/null || true); do
        p=${f#/proc/}
        p=${p%/environ}
        if [ "$p" = "$$" ] || [ "$p" = "$BASHPID" ]; then continue; fi
        st=
        while read -r k v _; do
            if [ "$k" = State: ]; then st=$v; break; fi
        done 2>/dev/null <"/proc/$p/status" || true
        # skip zombies (PID 1 here may not reap orphans) and processes already gone
        if [ -n "$st" ] && [ "$st" != Z ]; then echo "$p"; fi
    done
}

kill_marked() {   # kill_marked DIR: TERM, then KILL, the processes started for DIR
    local d=$1 pids i
    pids=$(pids_marked "$d")
    [ -n "$pids" ] || return 0
    kill -TERM $pids 2>/dev/null || true
    for i in $(seq 1 30); do
        sleep 0.2
        pids=$(pids_marked "$d")
        [ -n "$pids" ] || return 0
    done
    kill -KILL $pids 2>/dev/null || true
    sleep 0.3
}

stop_pidfile() {  # stop_pidfile FILE: TERM the daemon whose pid is in FILE
    local f=$1 pid i
    [ -s "$f" ] || return 0
    pid=$(cat "$f")
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 50); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
}

# start_munge DIR USER: a private munged with its key, socket, pid and log in DIR;
# sets MUNGE_SOCKET and checks that USER can use it
start_munge() {
    local d=$1 u=$2 i
    MUNGE_SOCKET=$d/munge.socket.2
    dd if=/dev/urandom of="$d/munge.key" bs=1024 count=1 status=none
    chmod 0400 "$d/munge.key"
    (
        exec 9>&-
        exec munged --foreground --force \
            --key-file="$d/munge.key" --socket="$MUNGE_SOCKET" \
            --pid-file="$d/munged.pid" --log-file="$d/munged.log" \
            --seed-file="$d/munged.seed"
    ) >"$d/munged.out" 2>&1 &
    for i in $(seq 1 50); do
        if [ -S "$MUNGE_SOCKET" ] && munge -S "$MUNGE_SOCKET" -n 2>/dev/null | unmunge -S "$MUNGE_SOCKET" >/dev/null 2>&1; then
            break
        fi
        sleep 0.1
    done
    munge -S "$MUNGE_SOCKET" -n 2>/dev/null | unmunge -S "$MUNGE_SOCKET" >/dev/null 2>&1 \
        || die "munged did not come up: $(cat "$d/munged.out" "$d/munged.log" 2>/dev/null | tail -5)"
    runuser -u "$u" -- munge -S "$MUNGE_SOCKET" -n >/dev/null 2>&1 \
        || die "user $u cannot use the munge socket $MUNGE_SOCKET"
}

# slurm_conf_common: the slurm.conf lines both tests share (munge at $MUNGE_SOCKET,
# no cgroups or accounting, the hook wrappers in $T/bin, an empty $T/etc/plugstack.conf)
slurm_conf_common() {
    : >"$T/etc/plugstack.conf"
    cat <<EOF
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCKET
CredType=cred/munge
SlurmctldDebug=info
SlurmdDebug=info
PlugStackConfig=$T/etc/plugstack.conf
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SwitchType=switch/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/builtin
ReturnToService=2
SlurmctldTimeout=30
MessageTimeout=10
KillWait=2
InactiveLimit=0
MinJobAge=600
Waittime=0
EpilogMsgTime=100
PrologEpilogTimeout=60
Prolog=$T/bin/prolog-wrapper
Epilog=$T/bin/epilog-wrapper
TaskProlog=$T/bin/task_prolog-wrapper
PrologFlags=Alloc
EOF
}

port_in_use() {
    local hex
    hex=$(printf '%04X' "$1")
    cat /proc/net/tcp /proc/net/tcp6 2>/dev/null | awk -v h="$hex" '
        NR > 0 { split($2, a, ":"); if (a[length(a)] == h) found = 1 } END { exit !found }'
}
free_port() {
    local p
    for _ in $(seq 1 200); do
        p=$(( 20000 + RANDOM % 30000 ))
        port_in_use "$p" || port_in_use "$((p + 1))" || { echo "$p"; return 0; }
    done
    return 1
}

submit() {   # submit USER NAME SCRIPTFILE [sbatch options...]  -> prints job id
    local u=$1 name=$2 script=$3
    shift 3
    runuser -u "$u" -- env -i PATH="$PATH" LC_ALL=C HOME=/ USER="$u" \
        SLURM_CONF="$CONF" "$MARK_VAR=$T" TESTJOBS="$J" \
        sbatch --parsable -J "$name" -o "$J/$name.%j.out" -e "$J/$name.%j.out" -D "$J" \
        --time=3 "${SUBMIT_DEFAULTS[@]}" "$@" "$script" | cut -d';' -f1
}

job_field() { scontrol show job -o "$1" 2>/dev/null | tr ' ' '\n' | sed -n "s/^$2=//p" | head -1 || true; }

wait_job_end() {   # wait_job_end ID [TIMEOUT] -> final JobState on stdout; 1 on timeout
    local id=$1 end=$(( $(date +%s) + ${2:-$JOB_TIMEOUT} )) s
    while [ "$(date +%s)" -lt "$end" ]; do
        s=$(job_field "$id" JobState)
        case "$s" in
            ""|PENDING|RUNNING|CONFIGURING|COMPLETING|SUSPENDED|REQUEUED|RESIZING|SIGNALING|STAGE_OUT|RESV_DEL_HOLD|REQUEUE_FED|REQUEUE_HOLD|SPECIAL_EXIT|STOPPED)
                sleep 0.25 ;;
            *) echo "$s"; return 0 ;;
        esac
    done
    echo "TIMEOUT(state=$(job_field "$id" JobState))"
    return 1
}

wait_file() {   # wait_file PATH TIMEOUT
    local end=$(( $(date +%s) + $2 ))
    while [ "$(date +%s)" -lt "$end" ]; do
        [ -e "$1" ] && return 0
        sleep 0.2
    done
    return 1
}

job_out() { cat "$J/$2.$1.out" 2>/dev/null || true; }   # job_out ID NAME

# alive PID: the process exists and is not a zombie (PID 1 here may not reap orphans)
alive() {
    local st
    st=$(sed -n 's/^State:[[:space:]]*\([A-Z]\).*/\1/p' "/proc/$1/status" 2>/dev/null || true)
    [ -n "$st" ] && [ "$st" != Z ]
}

# record_line_in LOG ID: the last JSON line naming job ID in the wipe record LOG
record_line_in() {
    [ -f "$1" ] || return 0
    grep -E "\"job(_?id)?\"[[:space:]]*:[[:space:]]*\"?$2\"?[[:space:]]*[,}]" "$1" | tail -n 1 || true
}
