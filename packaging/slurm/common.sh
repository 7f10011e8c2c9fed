# scratchcrypt Slurm hooks: the part prolog.sh and epilog.sh share. Sourced, not
# run: each of them sets `hook` (prolog or epilog) and sources this file from its
# own directory (installed: /usr/lib/scratchcrypt/slurm/; tests/slurm/run_slurm_test.sh
# copies the three into a directory of its own).
#
# slurmd gives a Prolog/Epilog no PATH and only SLURM_* variables, so PATH is set
# here. SCRATCHCRYPT_BIN, SCRATCHCRYPT_CONFIG and SCRATCHCRYPT_SLURM_LOG: see
# prolog.sh.
# shellcheck shell=sh
# shellcheck disable=SC2034,SC2154  # hook is set by the sourcing script; cmdline, rc, out are for it

PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH
umask 022

bin=${SCRATCHCRYPT_BIN:-/usr/sbin/scratchcrypt}
tag=scratchcrypt-$hook

# log MESSAGE: to syslog (stderr without logger), and to SCRATCHCRYPT_SLURM_LOG when set.
log() {
    if [ -n "${SCRATCHCRYPT_SLURM_LOG:-}" ]; then
        printf '%s %s[%s]: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$tag" "${SLURM_JOB_ID:-?}" "$*" \
            >>"$SCRATCHCRYPT_SLURM_LOG" 2>/dev/null
    fi
    logger -t "$tag" -- "job ${SLURM_JOB_ID:-?}: $*" 2>/dev/null || printf '%s: %s\n' "$tag" "$*" >&2
}

if [ -z "${SLURM_JOB_ID:-}" ]; then
    log "SLURM_JOB_ID is not set; refusing to run outside a Slurm $hook"
    exit 1
fi

# run_scratchcrypt COMMAND: runs `$bin COMMAND --job $SLURM_JOB_ID`, with
# `--config $SCRATCHCRYPT_CONFIG` when that is set. Sets `cmdline` to what it ran,
# `rc` to its exit status and `out` to its output (stdout and stderr).
run_scratchcrypt() {
    set -- "$1" --job "$SLURM_JOB_ID"
    if [ -n "${SCRATCHCRYPT_CONFIG:-}" ]; then
        set -- "$@" --config "$SCRATCHCRYPT_CONFIG"
    fi
    cmdline="$bin $*"

    # Capture the output in a file, not a pipe: the mount daemon the binary starts must
    # not be able to keep this script (or slurmd, which waits for EOF on the hook's
    # output) hanging by holding an inherited pipe open.
    tmp=$(mktemp "${TMPDIR:-/tmp}/$tag.XXXXXX" 2>/dev/null) || tmp=
    if [ -n "$tmp" ]; then
        "$bin" "$@" </dev/null >"$tmp" 2>&1
        rc=$?
        out=$(cat "$tmp")
        rm -f "$tmp"
    else
        out=$("$bin" "$@" </dev/null 2>&1)
        rc=$?
    fi
}
