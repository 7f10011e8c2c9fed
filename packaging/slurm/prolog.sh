#!/bin/sh
# scratchcrypt Slurm Prolog (slurm.conf: Prolog=/usr/lib/scratchcrypt/slurm/prolog.sh)
#
# Run by slurmd as root on the compute node before the job starts (at allocation
# time with PrologFlags=Alloc). Creates and mounts the job's freshly keyed scratch
# volume at <mount_root>/<job id>, owned by the job's user, mode 0700.
#
# slurmd gives a Prolog no PATH and only SLURM_* variables; the binary takes the
# job id, uid and gid from SLURM_JOB_ID / SLURM_JOB_UID / SLURM_JOB_GID itself.
#
# Environment (all optional):
#   SCRATCHCRYPT_BIN        the scratchcrypt binary   (default /usr/sbin/scratchcrypt)
#   SCRATCHCRYPT_CONFIG     config file, read by the binary (default /etc/scratchcrypt/scratchcrypt.conf)
#   SCRATCHCRYPT_SLURM_LOG  append this script's messages to this file (default: syslog via logger)
#
# A non-zero exit makes Slurm drain the node and requeue the job (held).

hook=prolog
# common.sh lies beside this script (beside its target, if run through a symlink).
case $0 in */*) self=$0 ;; *) self=./$0 ;; esac
[ -L "$self" ] && self=$(readlink -f -- "$self")
# shellcheck source-path=SCRIPTDIR source=common.sh
. "${self%/*}/common.sh" || exit 1

run_scratchcrypt prologue
if [ "$rc" -ne 0 ]; then
    log "'$cmdline' failed (exit $rc): $out"
    exit "$rc"
fi
log "ok: $(printf '%s' "$out" | tr '\n' ' ')"
exit 0
