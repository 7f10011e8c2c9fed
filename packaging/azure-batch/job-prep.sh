#!/bin/bash
# scratchcrypt Azure Batch job preparation task. Run by `make batch-test` with the
# environment Batch sets (tests/azure-batch/run.sh); not yet run on an Azure pool.
#
# Job preparation task (runs on a node before the job's first task there), elevated:
#   commandLine:  /usr/lib/scratchcrypt/azure-batch/job-prep.sh
#   userIdentity: autoUser, scope pool, elevationLevel admin
#   environmentSettings: SCRATCHCRYPT_JOB_USER = the user the job's tasks run as
#                        (SCRATCHCRYPT_JOB_GROUP: its group, default its primary one)
#   waitForSuccess: true (the default)
#
# Refuses (exit 1, the reasons on stdout) when `scratchcrypt health` finds the node
# unfit for jobs: a leftover volume, an unfinished deletion, a full disk. Otherwise
# mounts a freshly keyed volume at <mount_root>/$AZ_BATCH_JOB_ID owned by
# SCRATCHCRYPT_JOB_USER (mode 0700), and writes scratchcrypt.env into its working
# directory, which the job's tasks see as $AZ_BATCH_JOB_PREP_WORKING_DIR:
#   /bin/bash -c 'source "$AZ_BATCH_JOB_PREP_WORKING_DIR/scratchcrypt.env"; python train.py'
# sets SCRATCH and TMPDIR to the volume.
#
# The tasks' user must be one account for the whole job: a pool-scope auto-user or
# a named account from the pool's userAccounts. (A task-scope auto-user is a new
# account per task, which could not share one volume.)
#
# Environment for tests: SCRATCHCRYPT_BIN (default /usr/sbin/scratchcrypt),
# SCRATCHCRYPT_CONFIG (read by the binary).
set -euo pipefail

bin=${SCRATCHCRYPT_BIN:-/usr/sbin/scratchcrypt}
job=${AZ_BATCH_JOB_ID:?AZ_BATCH_JOB_ID is not set: run this as a job preparation task}
user=${SCRATCHCRYPT_JOB_USER:?set SCRATCHCRYPT_JOB_USER (the user the job tasks run as) in the job preparation task environment}
args=(prologue --job "$job" --uid "$user")
[ -n "${SCRATCHCRYPT_JOB_GROUP:-}" ] && args+=(--gid "$SCRATCHCRYPT_JOB_GROUP")

# Batch has no drain: a node that is not fit must fail the preparation task, so
# that the job's tasks run elsewhere. (The job's own volume, from an earlier try
# of this task, is not a problem: prologue is idempotent.)
if ! problems=$("$bin" health 2>&1); then
    echo "scratchcrypt: this node is not fit for jobs:"
    printf '%s\n' "$problems"
    exit 1
fi

# The volume daemon must outlive this task: where systemd runs, start it in a
# transient scope of its own, outside the Batch agent's process tree and cgroup.
# (The daemon also puts itself in a session of its own.)
# Its output goes through a file, not a pipe, which the daemon could hold open.
out=$(mktemp "${TMPDIR:-/tmp}/scratchcrypt-prep.XXXXXX")
trap 'rm -f "$out"' EXIT
if [ -d /run/systemd/system ] && command -v systemd-run >/dev/null; then
    systemd-run --quiet --scope --unit="scratchcrypt-batch-$job-$$" "$bin" "${args[@]}" </dev/null >"$out"
else
    "$bin" "${args[@]}" </dev/null >"$out"
fi
cat "$out"
scratch=$(sed -n 's/^SCRATCH=//p' "$out")
# For the job's tasks: they run after this one, as the job's user.
env_file=${AZ_BATCH_TASK_WORKING_DIR:-.}/scratchcrypt.env
printf 'export SCRATCH=%q\nexport TMPDIR=%q\n' "$scratch" "$scratch" >"$env_file.tmp"
chmod 0644 "$env_file.tmp"
mv -f "$env_file.tmp" "$env_file"
