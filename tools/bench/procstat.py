"""Per-process figures from /proc: FUSE daemon lookup, CPU time, peak RSS."""

import os

_CLK_TCK = os.sysconf("SC_CLK_TCK")


def _cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return []


def _holds_dev_fuse(pid):
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == "/dev/fuse":
                    return True
            except OSError:
                pass
    except OSError:
        pass
    return False


def find_daemon(mountpoint, name):
    """Pid of the FUSE daemon serving `mountpoint`: a process whose argv names
    the mount point (absolute path) and whose executable is called `name`.
    Processes holding /dev/fuse are preferred (gocryptfs' parent, loggers...)."""
    mountpoint = os.path.abspath(mountpoint)
    candidates = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        argv = _cmdline(entry)
        if not argv or mountpoint not in argv:
            continue
        if os.path.basename(argv[0]) != name:
            continue
        candidates.append(int(entry))
    fuse_holders = [p for p in candidates if _holds_dev_fuse(p)]
    pool = fuse_holders or candidates
    return min(pool) if pool else None


def cpu_seconds(pid):
    """utime + stime of `pid` in seconds (None if the process is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
    except OSError:
        return None
    # Field 2 (comm) may contain spaces; split after the closing parenthesis.
    fields = data[data.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def peak_rss_kib(pid):
    """VmHWM (peak resident set) of `pid` in KiB (None if unavailable)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None
