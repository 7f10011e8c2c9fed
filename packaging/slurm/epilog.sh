#!/bin/sh
# scratchcrypt Slurm Epilog (slurm.conf: Epilog=/usr/lib/scratchcrypt/slurm/epilog.sh)
#
# Run by slurmd as root on the compute node after the job ends. Wipes the job's
# scratch volume: kills processes still holding it, unmounts it, destroys its key,
# deletes the backing files and appends a record to the wipe log.
#
# A job that never got a volume (e.g. its prolog failed) is not an error.
# A non-zero exit means the volume could NOT be wiped: Slurm then sets the node to
# DRAIN (reason "Epilog error"), so no other job lands on a node holding a
# leftover volume. An operator investigates and runs
#   scontrol update nodename=<node> state=resume
#
# Environment (all optional): SCRATCHCRYPT_BIN, SCRATCHCRYPT_CONFIG,
# SCRATCHCRYPT_SLURM_LOG, as for prolog.sh.

hook=epilog
# common.sh lies beside this script (beside its target, if run through a symlink).
case $0 in */*) self=$0 ;; *) self=./$0 ;; esac
[ -L "$self" ] && self=$(readlink -f -- "$self")
# shellcheck source-path=SCRIPTDIR source=common.sh
. "${self%/*}/common.sh" || exit 1

run_scratchcrypt epilogue
if [ "$rc" -ne 0 ]; then
    log "'$cmdline' failed (exit $rc), node will be drained: $out"
    exit "$rc"
fi
log "ok${out:+: $(printf '%s' "$out" | tr '\n' ' ')}"
exit 0
