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

PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH
umask 022

bin=${SCRATCHCRYPT_BIN:-/usr/sbin/scratchcrypt}
tag=scratchcrypt-prolog

log() {
    if [ -n "${SCRATCHCRYPT_SLURM_LOG:-}" ]; then
        printf '%s %s[%s]: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$tag" "${SLURM_JOB_ID:-?}" "$*" \
            >>"$SCRATCHCRYPT_SLURM_LOG" 2>/dev/null
    fi
    logger -t "$tag" -- "job ${SLURM_JOB_ID:-?}: $*" 2>/dev/null || printf '%s: %s\n' "$tag" "$*" >&2
}

if [ -z "${SLURM_JOB_ID:-}" ]; then
    log "SLURM_JOB_ID is not set; refusing to run outside a Slurm prolog"
    exit 1
fi

set -- prologue --job "$SLURM_JOB_ID"
if [ -n "${SCRATCHCRYPT_CONFIG:-}" ]; then
    set -- "$@" --config "$SCRATCHCRYPT_CONFIG"
fi

# Capture the output in a file, not a pipe: the mount daemon the binary starts must
# not be able to keep this script (or slurmd, which waits for EOF on the hook's
# output) hanging by holding an inherited pipe open.
tmp=$(mktemp "${TMPDIR:-/tmp}/scratchcrypt-prolog.XXXXXX" 2>/dev/null) || tmp=
if [ -n "$tmp" ]; then
    "$bin" "$@" </dev/null >"$tmp" 2>&1
    rc=$?
    out=$(cat "$tmp")
    rm -f "$tmp"
else
    out=$("$bin" "$@" </dev/null 2>&1)
    rc=$?
fi
if [ "$rc" -ne 0 ]; then
    log "'$bin $*' failed (exit $rc): $out"
    exit "$rc"
fi
log "ok: $(printf '%s' "$out" | tr '\n' ' ')"
exit 0
