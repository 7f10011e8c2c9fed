#!/bin/bash
# scratchcrypt Azure Batch job release task. Run by `make batch-test` with the
# environment Batch sets (tests/azure-batch/run.sh); not yet run on an Azure pool.
#
# Job release task (runs on every node that ran the job preparation task, when the
# job is terminated or deleted), elevated:
#   commandLine:  /usr/lib/scratchcrypt/azure-batch/job-release.sh
#   userIdentity: autoUser, scope pool, elevationLevel admin
#
# Wipes the job's volume: cuts off processes still using it, destroys the key,
# deletes the ciphertext, appends a wipe record. Exits non-zero when the wipe could
# not complete. Azure Batch does not take a node out of service for a failed job
# release task: watch the job's jobReleaseTaskExecutionInfo (exit code), or the
# node's `scratchcrypt health` (the next job preparation task on the node fails
# while it does), and reboot, reimage or remove such a node (a reboot clears the
# keyring; the start task's sweep then deletes the ciphertext).
#
# Environment for tests: SCRATCHCRYPT_BIN (default /usr/sbin/scratchcrypt),
# SCRATCHCRYPT_CONFIG (read by the binary).
set -euo pipefail

bin=${SCRATCHCRYPT_BIN:-/usr/sbin/scratchcrypt}
job=${AZ_BATCH_JOB_ID:?AZ_BATCH_JOB_ID is not set: run this as a job release task}
exec "$bin" epilogue --job "$job" </dev/null
