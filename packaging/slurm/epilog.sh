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

PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH
umask 022

bin=${SCRATCHCRYPT_BIN:-/usr/sbin/scratchcrypt}
tag=scratchcrypt-epilog

log() {
    if [ -n "${SCRATCHCRYPT_SLURM_LOG:-}" ]; then
        printf '%s %s[%s]: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$tag" "${SLURM_JOB_ID:-?}" "$*" \
            >>"$SCRATCHCRYPT_SLURM_LOG" 2>/dev/null
    fi
    logger -t "$tag" -- "job ${SLURM_JOB_ID:-?}: $*" 2>/dev/null || printf '%s: %s\n' "$tag" "$*" >&2
}

if [ -z "${SLURM_JOB_ID:-}" ]; then
    log "SLURM_JOB_ID is not set; refusing to run outside a Slurm epilog"
    exit 1
fi

set -- epilogue --job "$SLURM_JOB_ID"
if [ -n "${SCRATCHCRYPT_CONFIG:-}" ]; then
    set -- "$@" --config "$SCRATCHCRYPT_CONFIG"
fi

# Capture the output in a file, not a pipe: the mount daemon the binary starts must
# not be able to keep this script (or slurmd, which waits for EOF on the hook's
# output) hanging by holding an inherited pipe open.
tmp=$(mktemp "${TMPDIR:-/tmp}/scratchcrypt-epilog.XXXXXX" 2>/dev/null) || tmp=
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
    log "'$bin $*' failed (exit $rc), node will be drained: $out"
    exit "$rc"
fi
log "ok${out:+: $(printf '%s' "$out" | tr '\n' ' ')}"
exit 0
