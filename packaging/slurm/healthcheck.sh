#!/bin/sh
# scratchcrypt Slurm HealthCheckProgram
# (slurm.conf: HealthCheckProgram=/usr/lib/scratchcrypt/slurm/healthcheck.sh)
#
# Run by slurmd as root every HealthCheckInterval seconds and at its start.
# Slurm ignores the program's exit status: acting is the program's job. This one
# runs `scratchcrypt health` and
#   - on problems: drains the node with Reason="scratchcrypt health: <first line>"
#     (all lines go to syslog, tag scratchcrypt-health) and exits 1; a node that
#     is drained already for another reason keeps that reason;
#   - when healthy: resumes the node only if it was drained by this script (its
#     reason starts with "scratchcrypt health:"), never a drain with another
#     reason (an operator's, a failed Epilog's), and exits 0.
# The node name is SLURMD_NODENAME (set by slurmd), else the short host name.
#
# Environment (all optional): SCRATCHCRYPT_BIN, SCRATCHCRYPT_CONFIG,
# SCRATCHCRYPT_SLURM_LOG, as for prolog.sh.

PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH
bin=${SCRATCHCRYPT_BIN:-/usr/sbin/scratchcrypt}
node=${SLURMD_NODENAME:-$(hostname -s)}
prefix="scratchcrypt health:"

log() {
    if [ -n "${SCRATCHCRYPT_SLURM_LOG:-}" ]; then
        printf '%s scratchcrypt-health[%s]: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$node" "$*" \
            >>"$SCRATCHCRYPT_SLURM_LOG" 2>/dev/null
    fi
    logger -t scratchcrypt-health -- "$*" 2>/dev/null || printf 'scratchcrypt-health: %s\n' "$*" >&2
}

if [ -n "${SCRATCHCRYPT_CONFIG:-}" ]; then
    out=$("$bin" health --config "$SCRATCHCRYPT_CONFIG" 2>&1 </dev/null)
else
    out=$("$bin" health 2>&1 </dev/null)
fi
rc=$?

reason=$(scontrol show node "$node" 2>/dev/null | sed -n 's/^ *Reason=//p')
case $reason in "$prefix"* | "") ours=yes ;; *) ours=no ;; esac

if [ "$rc" -ne 0 ]; then
    count=$(printf '%s\n' "$out" | grep -c .)
    first=$(printf '%s\n' "$out" | head -n 1 | cut -c 1-180)
    [ "$count" -gt 1 ] && first="$first (+$((count - 1)) more)"
    printf '%s\n' "$out" | while IFS= read -r line; do log "$line"; done
    if [ "$ours" = no ]; then
        # Drained already for another reason (a failed Epilog, an operator): keep
        # that reason, which is the one a human must read; we would resume it later.
        log "$node is already drained ($reason); not changing it"
    elif ! scontrol update nodename="$node" state=drain reason="$prefix $first"; then
        log "cannot drain $node with scontrol"
    fi
    exit 1
fi

# Healthy: lift only our own drain.
if [ "$ours" = yes ] && [ -n "$reason" ]; then
    log "healthy again: resuming $node (was: $reason)"
    scontrol update nodename="$node" state=resume || log "cannot resume $node with scontrol"
fi
exit 0
