#!/bin/bash
# scratchcrypt Azure Batch job preparation task. DOCUMENTED EXAMPLE, NOT TESTED ON AZURE.
#
# Job preparation task (runs on a node before the job's first task there), elevated:
#   commandLine:  /usr/lib/scratchcrypt/azure-batch/job-prep.sh
#   userIdentity: autoUser, scope pool, elevationLevel admin
#   environmentSettings: SCRATCHCRYPT_JOB_USER = the user the job's tasks run as
#   waitForSuccess: true (the default)
#
# Mounts a freshly keyed volume at <mount_root>/$AZ_BATCH_JOB_ID owned by
# SCRATCHCRYPT_JOB_USER (mode 0700). The job's tasks use that path, e.g.
#   /bin/bash -c 'export SCRATCH=/scratch/$AZ_BATCH_JOB_ID TMPDIR=/scratch/$AZ_BATCH_JOB_ID; ...'
#
# The tasks' user must be one account for the whole job: a pool-scope auto-user or
# a named account from the pool's userAccounts. (A task-scope auto-user is a new
# account per task, which could not share one volume.)
set -euo pipefail

job=${AZ_BATCH_JOB_ID:?AZ_BATCH_JOB_ID is not set: run this as a job preparation task}
user=${SCRATCHCRYPT_JOB_USER:?set SCRATCHCRYPT_JOB_USER (the user the job tasks run as) in the job preparation task environment}
args=(prologue --job "$job" --uid "$user")
[ -n "${SCRATCHCRYPT_JOB_GROUP:-}" ] && args+=(--gid "$SCRATCHCRYPT_JOB_GROUP")

# The volume daemon must outlive this task: where systemd runs, start it in a
# transient scope of its own, outside the Batch agent's process tree and cgroup.
if [ -d /run/systemd/system ] && command -v systemd-run >/dev/null; then
    exec systemd-run --quiet --scope --unit="scratchcrypt-batch-$job-$$" \
        /usr/sbin/scratchcrypt "${args[@]}" </dev/null
fi
exec /usr/sbin/scratchcrypt "${args[@]}" </dev/null
