#!/bin/sh
# scratchcrypt Slurm TaskProlog (slurm.conf: TaskProlog=/usr/lib/scratchcrypt/slurm/task_prolog.sh)
#
# Run by slurmstepd AS THE JOB'S USER before each task. Whatever it prints as
#   export NAME=value
# lands in the task's environment. It mounts nothing: it only computes the path
# the Prolog created, <mount_root>/<job id>, with mount_root read from the
# scratchcrypt config (`scratchcrypt config mount_root`, defaults applied), and
# exports it as SCRATCH and TMPDIR.
#
# If the volume is not there, it leaves SCRATCH/TMPDIR alone and prints a warning
# into the job's output instead of failing the task.
#
# Environment (optional): SCRATCHCRYPT_BIN, SCRATCHCRYPT_CONFIG (as for prolog.sh).

PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH

bin=${SCRATCHCRYPT_BIN:-/usr/sbin/scratchcrypt}

[ -n "${SLURM_JOB_ID:-}" ] || exit 0

# The binary reads SCRATCHCRYPT_CONFIG from the environment itself.
root=$("$bin" config mount_root 2>/dev/null)
if [ -z "$root" ]; then
    echo "print scratchcrypt: cannot read mount_root from the config; SCRATCH not set"
    exit 0
fi

dir=${root%/}/$SLURM_JOB_ID
if [ ! -d "$dir" ]; then
    echo "print scratchcrypt: no scratch volume at $dir; SCRATCH not set"
    exit 0
fi

# TaskProlog syntax: no quoting, the value is the rest of the line.
echo "export SCRATCH=$dir"
echo "export TMPDIR=$dir"
exit 0
