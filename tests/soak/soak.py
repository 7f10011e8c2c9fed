#!/usr/bin/env python3
"""Soak: many prologue / job / epilogue cycles through one node.

Drives `scratchcrypt prologue` and `scratchcrypt epilogue` directly (no Slurm) with a
configuration of its own: backing_root on a file system of its own (an ext4 image,
so that its usage is exact whatever else the machine does), its own mount root,
registry (SCRATCHCRYPT_RUN_DIR) and record log. The jobs run as an unprivileged user
and rotate through four kinds: many small files, a large file written and read back,
processes left behind holding the volume (killed after the epilogue, as Slurm's
process tracking would), and a job that fills its volume to ENOSPC.

After every cycle it checks that nothing was left: no mount, no key of the volume,
no loop device, no scratchcrypt process, no registry entry, an empty backing_root
at the file system usage of the start, and exactly one more line in the record log
(outcome complete). Over the run it checks that nothing grows: descriptors of the
volume daemons (per job kind; their threads stay within the daemon's bound) and of
this driver, kernel memory (the floor of unreclaimable slab); MemAvailable, which
other tenants of the machine move, is reported. It prints the per-cycle time (median, p99) and a
PASS/FAIL line per check.

Usage (root):  tests/soak/soak.py [--cycles N] [--layout files|block|auto]
               (make soak; SOAK_CYCLES=N)
"""

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

JOB_USER = "scjob1"
# A volume daemon runs its main thread and at most kWorkerThreads (fuse/daemon.cc)
# FUSE workers, which stay once started: how many depends on the load it saw.
DAEMON_MAX_THREADS = 16 + 1
SIZE_LIMIT_MIB = 32
KINDS = ("small", "large", "leftover", "fill")

# The jobs, run as JOB_USER with the volume's path as argv[1]; they print OK when
# they did what they meant to.
JOB_CODE = {
    "small": r"""
import os, sys
s = sys.argv[1]
for d in range(10):
    os.mkdir(f"{s}/d{d}")
    for f in range(30):
        with open(f"{s}/d{d}/f{f}", "wb") as fh:
            fh.write(os.urandom(1024 + 97 * f))
n = sum(len(fs) for _, _, fs in os.walk(s))
print("OK" if n == 300 else f"BAD {n}")
""",
    "large": r"""
import hashlib, os, sys
s = sys.argv[1]
block = os.urandom(1 << 20)
h = hashlib.sha256()
with open(f"{s}/large", "wb") as fh:
    for i in range(24):
        chunk = i.to_bytes(4, "little") + block[4:]
        fh.write(chunk)
        h.update(chunk)
    fh.flush()
    os.fsync(fh.fileno())
g = hashlib.sha256()
with open(f"{s}/large", "rb") as fh:
    while chunk := fh.read(1 << 20):
        g.update(chunk)
print("OK" if g.digest() == h.digest() else "BAD checksum")
""",
    "leftover": r"""
import os, subprocess, sys
s, pidfile = sys.argv[1], sys.argv[2]
held = open(f"{s}/held", "w")
held.write("held\n")
held.flush()
a = subprocess.Popen(["sleep", "3600"], stdin=held, stdout=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL, start_new_session=True)
b = subprocess.Popen(["sleep", "3600"], cwd=s, stdin=subprocess.DEVNULL,
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                     start_new_session=True)
with open(pidfile, "w") as fh:
    fh.write(f"{a.pid} {b.pid}\n")
print("OK")
""",
    "fill": r"""
import errno, os, sys
s = sys.argv[1]
block = os.urandom(1 << 20)
written = 0
try:
    with open(f"{s}/fill", "wb") as fh:
        while written < (1 << 30):
            written += os.write(fh.fileno(), block)
        os.fsync(fh.fileno())
    print(f"BAD no ENOSPC after {written}")
except OSError as e:
    print("OK" if e.errno == errno.ENOSPC and written >= (LIMIT >> 1) else f"BAD {e} after {written}")
""".replace("LIMIT", str(SIZE_LIMIT_MIB << 20)),
}


def run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


def meminfo():
    out = {}
    with open("/proc/meminfo") as fh:
        for line in fh:
            key, value = line.split(":", 1)
            out[key] = int(value.split()[0])  # KiB
    return out


def proc_counts(pid):
    """(open descriptors, threads) of a process, or None when it is gone."""
    try:
        fds = len(os.listdir(f"/proc/{pid}/fd"))
        with open(f"/proc/{pid}/status") as fh:
            threads = int(re.search(r"^Threads:\s+(\d+)", fh.read(), re.M).group(1))
        return fds, threads
    except (OSError, AttributeError):
        return None


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def percentile(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


class Soak:
    def __init__(self, binary, cycles, layout):
        self.source_bin = binary
        self.cycles = cycles
        self.layout = layout
        self.failures = []
        self.t = tempfile.mkdtemp(prefix="scratchcrypt-soak.", dir="/tmp")
        os.chmod(self.t, 0o755)
        self.disk = f"{self.t}/disk"
        self.backing = f"{self.disk}/backing"
        self.mnt = f"{self.t}/mnt"
        self.run_dir = f"{self.t}/run"
        self.record = f"{self.t}/log/wipe.jsonl"
        self.jobs = f"{self.t}/jobs"
        self.loop = None
        self.holders = []
        # A copy of its own, so that its processes are told apart from other users'
        # of the same build.
        os.makedirs(f"{self.t}/bin", mode=0o755)
        self.bin = f"{self.t}/bin/scratchcrypt"
        shutil.copy2(binary, self.bin)

    # --- setup and teardown -------------------------------------------------------
    def setup(self):
        for d in (self.disk, self.mnt, self.run_dir, f"{self.t}/log", self.jobs):
            os.makedirs(d, exist_ok=True)
        os.chmod(self.run_dir, 0o700)
        os.chmod(self.jobs, 0o1777)
        image = f"{self.t}/disk.img"
        with open(image, "wb") as fh:
            fh.truncate(2 << 30)
        subprocess.run(["mkfs.ext4", "-q", "-F", "-E", "nodiscard", image], check=True)
        self.loop = run(["losetup", "--find", "--show", image], check=True).stdout.strip()
        subprocess.run(["mount", self.loop, self.disk], check=True)
        config = [
            f"backing_root = {self.backing}",
            f"mount_root = {self.mnt}",
            f"size_limit = {SIZE_LIMIT_MIB}M",
            f"record_log = {self.record}",
            "mode = per-job",
            "trim = no",
        ]
        if self.layout:
            config.append(f"layout = {self.layout}")
        self.config = f"{self.t}/scratchcrypt.conf"
        with open(self.config, "w") as fh:
            fh.write("# tests/soak/soak.py\n" + "\n".join(config) + "\n")
        os.chmod(self.config, 0o644)
        self.env = dict(os.environ, SCRATCHCRYPT_CONFIG=self.config, SCRATCHCRYPT_RUN_DIR=self.run_dir)
        if run(["id", JOB_USER]).returncode != 0:
            subprocess.run(["useradd", "-M", "-s", "/bin/bash", JOB_USER], check=True)

    def our_mounts(self):
        """Job mounts, and the block layout's image mounts below the registry."""
        with open("/proc/self/mounts") as fh:
            return [l.split()[1] for l in fh
                    if l.split()[1].startswith((self.mnt + "/", self.run_dir + "/"))]

    def registry_left(self):
        """Registry entries, and image mount points of the block layout, left."""
        images = f"{self.run_dir}/images"
        left = [f for f in os.listdir(self.run_dir) if f.endswith(".json")]
        return left + (os.listdir(images) if os.path.isdir(images) else [])

    def our_loops(self):
        """Loop devices backed by a file under the soak's directory, but its disk."""
        out = run(["losetup", "-l", "-n", "-O", "NAME,BACK-FILE"]).stdout
        return [l.split()[0] for l in out.splitlines()
                if len(l.split()) > 1 and l.split()[1].startswith(self.t + "/")
                and l.split()[0] != self.loop]

    def our_processes(self):
        """Live processes running the binary under test (volume daemons, deleters)."""
        real = os.path.realpath(self.bin)
        pids = []
        for p in os.listdir("/proc"):
            if not p.isdigit():
                continue
            try:
                if os.readlink(f"/proc/{p}/exe") == real and alive(int(p)):
                    pids.append(int(p))
            except OSError:
                pass
        return pids

    def cleanup(self):
        for pid in self.holders:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        for m in self.our_mounts():
            if m.startswith(self.mnt + "/"):
                run([self.bin, "wipe", "--force", "--wait", m], env=self.env, timeout=60)
        if os.path.isdir(self.backing):
            for e in os.listdir(self.backing):
                if not e.startswith("."):
                    run([self.bin, "wipe", "--force", "--wait", f"{self.backing}/{e}"], env=self.env, timeout=60)
        for l in self.our_loops():
            run(["losetup", "-d", l])
        if self.loop:
            run(["umount", self.disk])
            run(["losetup", "-d", self.loop])
        if not self.our_mounts():
            shutil.rmtree(self.t, ignore_errors=True)
        else:
            print(f"left {self.t}: still mounted {self.our_mounts()}", file=sys.stderr)

    # --- one cycle ----------------------------------------------------------------
    def backing_used_kib(self):
        subprocess.run(["sync", "-f", self.disk])
        st = os.statvfs(self.disk)
        return (st.f_blocks - st.f_bfree) * st.f_frsize // 1024

    def fail(self, cycle, what):
        self.failures.append(f"cycle {cycle}: {what}")
        if len(self.failures) <= 20:
            print(f"  cycle {cycle}: {what}", flush=True)

    def cycle(self, i, sample):
        job = f"soak{i}"
        kind = KINDS[i % len(KINDS)]
        t0 = time.monotonic()
        p = run([self.bin, "prologue", "--job", job, "--uid", JOB_USER], env=self.env)
        t1 = time.monotonic()
        if p.returncode != 0:
            self.fail(i, f"prologue exit {p.returncode}: {p.stderr.strip()}")
            return None
        path = f"{self.mnt}/{job}"
        regs = [f for f in os.listdir(self.run_dir) if f.endswith(".json")]
        daemon = json.load(open(f"{self.run_dir}/{regs[0]}"))["pid"] if len(regs) == 1 else None
        if daemon is None:
            self.fail(i, f"registry holds {regs}, expected one volume")
        pidfile = f"{self.jobs}/holders.{i}"
        j = run(["runuser", "-u", JOB_USER, "--", "python3", "-c", JOB_CODE[kind], path, pidfile],
                timeout=120)
        if j.stdout.strip() != "OK":
            self.fail(i, f"{kind} job: {j.stdout.strip()} {j.stderr.strip()[-300:]}")
        # The kernel sends FUSE RELEASE after the job's close() returns, so a file
        # handle may still be open for a moment: the fewest descriptors of a few
        # samples is the daemon's resting count.
        counts = None
        for _ in range(5) if daemon else ():
            c = proc_counts(daemon)
            if c:
                counts = (min(counts[0], c[0]), max(counts[1], c[1])) if counts else c
            time.sleep(0.01)
        holders = []
        if kind == "leftover" and os.path.exists(pidfile):
            holders = [int(x) for x in open(pidfile).read().split()]
            self.holders += holders
        t2 = time.monotonic()
        e = run([self.bin, "epilogue", "--job", job], env=self.env)
        t3 = time.monotonic()
        if e.returncode != 0:
            self.fail(i, f"epilogue exit {e.returncode}: {e.stderr.strip()}")
        # what Slurm's process tracking does at job end
        for pid in holders:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        # the background deletion ends with the record line
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            lines = open(self.record).read().splitlines() if os.path.exists(self.record) else []
            if len(lines) >= i + 1 and not os.listdir(self.backing) and not self.our_processes():
                break
            time.sleep(0.005)
        t4 = time.monotonic()
        if len(lines) != i + 1:
            self.fail(i, f"record log has {len(lines)} lines after {i + 1} jobs")
        volume = None
        if lines:
            rec = json.loads(lines[-1])
            volume = rec.get("volume")
            if rec.get("job") != job or rec.get("outcome") != "complete":
                self.fail(i, f"last record is not job {job} complete: {lines[-1]}")
            if kind == "leftover" and not rec.get("holders_cut_off"):
                self.fail(i, f"the leftover processes were not cut off: {lines[-1]}")
        if volume and run(["keyctl", "search", "@u", "user", f"scratchcrypt:{volume}"]).returncode == 0:
            self.fail(i, f"key of volume {volume} still valid")
        if self.our_mounts():
            self.fail(i, f"mounts left: {self.our_mounts()}")
        if os.path.exists(path):
            self.fail(i, f"mount point {path} left")
        if os.listdir(self.backing):
            self.fail(i, f"backing_root holds {os.listdir(self.backing)}")
        if self.registry_left():
            self.fail(i, f"registry holds {self.registry_left()}")
        if self.our_loops():
            self.fail(i, f"loop devices left: {self.our_loops()}")
        if self.our_processes():
            self.fail(i, f"scratchcrypt processes left: {self.our_processes()}")
        for pid in holders:
            for _ in range(200):
                if not alive(pid):
                    break
                time.sleep(0.01)
            if alive(pid):
                self.fail(i, f"leftover process {pid} survived SIGKILL")
        row = {"cycle": i, "kind": kind, "prologue": t1 - t0, "job": t2 - t1, "epilogue": t3 - t2,
               "deletion": t4 - t3, "total": t4 - t0,
               "daemon_fds": counts[0] if counts else None,
               "daemon_threads": counts[1] if counts else None,
               "record_bytes": os.path.getsize(self.record) if os.path.exists(self.record) else 0}
        if sample:
            mi = meminfo()
            own = proc_counts(os.getpid())
            keys = sum(1 for l in open("/proc/keys") if " scratchcrypt:" in l)
            row.update(backing_kib=self.backing_used_kib(), mem_available_kib=mi["MemAvailable"],
                       sunreclaim_kib=mi["SUnreclaim"], driver_fds=own[0], driver_threads=own[1],
                       keys_all=keys)
        return row

    # --- the run ------------------------------------------------------------------
    def check(self, ok, name, detail):
        print(f"{'PASS' if ok else 'FAIL'} {name}: {detail}", flush=True)
        if not ok:
            self.failures.append(f"{name}: {detail}")

    def run(self):
        self.setup()
        layout = self.layout or run([self.bin, "config", "layout"], env=self.env).stdout.strip() or "files"
        print(f"soak: {self.cycles} cycles, layout {layout}, size_limit {SIZE_LIMIT_MIB}M, "
              f"jobs {'/'.join(KINDS)}, in {self.t}", flush=True)
        base_used = self.backing_used_kib()
        rows = []
        start = time.monotonic()
        every = max(1, self.cycles // 100)
        for i in range(self.cycles):
            row = self.cycle(i, sample=(i % every == 0 or i == self.cycles - 1))
            if row is None:
                break
            rows.append(row)
            if i and i % max(1, self.cycles // 10) == 0:
                print(f"  {i} cycles, {time.monotonic() - start:.0f} s", flush=True)
        elapsed = time.monotonic() - start
        return self.report(layout, rows, base_used, elapsed)

    def report(self, layout, rows, base_used, elapsed):
        n = len(rows)
        self.check(n == self.cycles, "cycles", f"{n} of {self.cycles} ran")
        if n == 0:
            return False
        totals = [r["total"] * 1000 for r in rows]
        phases = {k: statistics.median(r[k] for r in rows) * 1000
                  for k in ("prologue", "job", "epilogue", "deletion")}
        print(f"time per cycle: median {statistics.median(totals):.0f} ms, p99 {percentile(totals, 99):.0f} ms, "
              f"max {max(totals):.0f} ms; median prologue {phases['prologue']:.0f} ms, job {phases['job']:.0f} ms, "
              f"epilogue {phases['epilogue']:.0f} ms, deletion after it {phases['deletion']:.0f} ms; "
              f"{n} cycles in {elapsed:.0f} s", flush=True)
        for kind in KINDS:
            ks = [r["total"] * 1000 for r in rows if r["kind"] == kind]
            if ks:
                print(f"  {kind:8s} median {statistics.median(ks):.0f} ms, p99 {percentile(ks, 99):.0f} ms")
        self.check(not [f for f in self.failures if f.startswith("cycle")], "every cycle left nothing",
                   f"{len(self.failures)} problems" if self.failures else
                   "no mount, key, loop device, process, registry entry or backing file after any wipe; "
                   "record log +1 line (complete) per job")
        # nothing grows: every job gets a fresh daemon, so what could grow is state
        # they share. Descriptors: per job kind, the median of the first tenth of the
        # run against the last tenth. Threads follow the load (workers start on
        # demand and stay), so they are held to the daemon's bound instead.
        for kind in KINDS:
            fds = [r["daemon_fds"] for r in rows if r["kind"] == kind and r["daemon_fds"] is not None]
            threads = [r["daemon_threads"] for r in rows if r["kind"] == kind and r["daemon_threads"] is not None]
            if len(fds) >= 2:
                k = max(1, len(fds) // 10)
                first, last = statistics.median(fds[:k]), statistics.median(fds[-k:])
                self.check(last <= first, f"daemon descriptors ({kind})",
                           f"median {first:g} in the first tenth, {last:g} in the last (max {max(fds)})")
            if threads:
                self.check(max(threads) <= DAEMON_MAX_THREADS, f"daemon threads ({kind})",
                           f"median {statistics.median(threads):g}, max {max(threads)} (bound {DAEMON_MAX_THREADS})")
        samples = [r for r in rows if "backing_kib" in r]
        first, last = samples[0], samples[-1]
        for key in ("driver_fds", "driver_threads"):
            self.check(last[key] <= first[key], key, f"{first[key]} -> {last[key]}")
        used = [r["backing_kib"] for r in samples]
        self.check(max(used) <= base_used + 64, "backing disk usage after each wipe",
                   f"{base_used} KiB before the first job, at most {max(used)} KiB after a wipe")
        rec = [r["record_bytes"] for r in rows]
        per_line = (rec[-1] - rec[0]) / max(1, n - 1)
        self.check(True, "record log", f"{n} lines, {rec[-1]} bytes ({per_line:.0f} bytes per job)")
        # No process of ours survives a cycle (checked above), so what a leak could hold
        # is kernel memory: mounts, keys, FUSE connections and loop devices live in
        # unreclaimable slab. Both figures are machine-wide and the machine is shared,
        # so the run's floor is compared, not single samples: a leak raises the lowest
        # slab (and lowers the highest MemAvailable) of the last tenth of the run above
        # the highest (below the lowest) of the first tenth; other tenants' passing
        # use does not.
        k = max(1, len(samples) // 10)
        head, tail = samples[:k], samples[-k:]
        slab_start = max(r["sunreclaim_kib"] for r in head) / 1024
        slab_end = min(r["sunreclaim_kib"] for r in tail) / 1024
        self.check(slab_end <= slab_start + 16, "unreclaimable slab",
                   f"highest in the first tenth {slab_start:.0f} MiB, lowest in the last tenth {slab_end:.0f} MiB "
                   f"(limit +16; single samples {first['sunreclaim_kib'] // 1024} -> {last['sunreclaim_kib'] // 1024} MiB)")
        # MemAvailable is reported, not asserted: on a shared machine it follows the
        # other tenants (a neighbour's test took 1 GiB within ten of our cycles);
        # user memory of ours cannot leak past a cycle, as no process of ours does.
        print(f"INFO MemAvailable: {first['mem_available_kib'] // 1024} -> {last['mem_available_kib'] // 1024} MiB "
              f"(lowest in the first tenth {min(r['mem_available_kib'] for r in head) // 1024}, highest in the "
              f"last {max(r['mem_available_kib'] for r in tail) // 1024}; load average {os.getloadavg()[0]:.1f})")
        print(f"INFO scratchcrypt keys in the kernel (all users of this machine): "
              f"{first['keys_all']} -> {last['keys_all']}")
        return not self.failures


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cycles", type=int, default=int(os.environ.get("SOAK_CYCLES", "1000")))
    ap.add_argument("--layout", default=os.environ.get("SOAK_LAYOUT", "auto"),
                    help="files, block, or auto (every layout the binary knows; default)")
    ap.add_argument("--bin", default=os.environ.get("SCRATCHCRYPT_BIN", "build/scratchcrypt"))
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("soak.py must run as root", file=sys.stderr)
        return 2
    binary = os.path.abspath(args.bin)
    # SIGTERM (timeout, make's Ctrl-C) unwinds through the cleanup below
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.layout == "auto":
        knows = run([binary, "config", "--config", "/dev/null", "layout"]).returncode == 0
        layouts = ["files", "block"] if knows else [""]
    else:
        layouts = [args.layout]
    ok = True
    for layout in layouts:
        soak = Soak(binary, args.cycles, layout)
        try:
            ok = soak.run() and ok
        except (Exception, KeyboardInterrupt) as e:  # report, clean up, fail
            print(f"FAIL soak: {e!r}")
            ok = False
        finally:
            soak.cleanup()
    print("soak: every check passed" if ok else "soak: FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
