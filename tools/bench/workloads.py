"""Workloads. A scenario starts on a fresh, empty volume and runs its steps in
order; a step marked cold is preceded by unmount, drop_caches and remount.
A step returns what it moved (bytes, files) and, if the tool measured it
itself, seconds or an explicit value (IOPS)."""

import json
import os
import subprocess
import sys
from dataclasses import dataclass

from systems import BenchError, run

HERE = os.path.dirname(os.path.abspath(__file__))
PY = sys.executable or "/usr/bin/python3"
MiB = 1 << 20

FULL = dict(seq_mib=2048, small4k_mib=64, small512_mib=16, tree_files=40000,
            rand_mib=256, rand_secs=10, meta_files=10000, par_mib=1024)
QUICK = dict(seq_mib=256, small4k_mib=8, small512_mib=2, tree_files=3000,
             rand_mib=32, rand_secs=3, meta_files=1000, par_mib=128)


@dataclass
class Step:
    key: str
    label: str
    unit: str           # MiB/s, IOPS, ops/s: higher is better; s: lower
    fn: object
    cold: bool = False
    prep: object = None     # untimed, after the cold remount if any

    @property
    def higher_is_better(self):
        return self.unit != "s"


class Ctx:
    """What a step sees: the mount point, the sizes, the tree tarball."""

    def __init__(self, mnt, backing, params, tree, log, scratch):
        self.mnt, self.P, self.tree, self.log = mnt, params, tree, log
        self.backing = backing
        self.scratch = scratch          # harness-private dir, not the volume

    def syncfs(self):
        """Flush the volume, then the backing file system: syncfs(2), not a
        global sync, so other file systems' dirty data does not count."""
        for path in dict.fromkeys([self.mnt, self.backing]):
            self.sh(["sync", "-f", path])

    def sh(self, argv, timeout=1800, **kw):
        run(argv, self.log, timeout=timeout, **kw)

    def fio(self, *args, timeout=1800):
        out = os.path.join(self.scratch, "fio.json")
        self.sh(["fio", "--output-format=json", f"--output={out}",
                 "--ioengine=psync", "--fallocate=none", *args],
                timeout=timeout)
        with open(out) as f:
            text = f.read()
        return json.loads(text[text.index("{"):])


def _fmt(mib):
    return f"{mib // 1024} GiB" if mib >= 1024 and mib % 1024 == 0 else f"{mib} MiB"


# -- steps -----------------------------------------------------------------

def seq_write(c):
    c.fio("--name=seqw", f"--filename={c.mnt}/big", "--rw=write", "--bs=1M",
          f"--size={c.P['seq_mib']}M", "--end_fsync=1")
    return {"bytes": c.P["seq_mib"] * MiB}


def seq_read(c):
    # invalidate=0: fio otherwise drops the file's page cache before reading
    # (posix_fadvise DONTNEED), which made the "warm" read a second cold one
    # (seen on the block layout: the daemon decrypted the whole file again).
    c.fio("--name=seqr", f"--filename={c.mnt}/big", "--rw=read", "--bs=1M",
          f"--size={c.P['seq_mib']}M", "--invalidate=0")
    return {"bytes": c.P["seq_mib"] * MiB}


def dd_small(bs, key):
    def step(c):
        count = c.P[key] * MiB // bs
        c.sh(["dd", "if=/dev/zero", f"of={c.mnt}/small{bs}", f"bs={bs}",
              f"count={count}", "conv=fsync", "status=none"])
        return {"bytes": count * bs}
    return step


def warm_tarball(c):
    """The tarball is the source, not the system under test: read it from
    the page cache for every system."""
    with open(c.tree["path"], "rb") as f:
        while f.read(8 << 20):
            pass


def untar(c):
    c.sh(["tar", "-xf", c.tree["path"], "-C", c.mnt, "--no-same-owner"])
    c.syncfs()
    return {"bytes": c.tree["bytes"], "files": c.tree["files"]}


def ls_lr(c):
    c.sh(["sh", "-c", 'ls -lR "$1" >/dev/null', "sh", c.mnt])
    return {"files": c.tree["files"] + c.tree["dirs"]}


def md5_all(c):
    c.sh(["sh", "-c", 'cd "$1" && find . -type f -print0 | '
          'xargs -0 md5sum >/dev/null', "sh", c.mnt])
    return {"bytes": c.tree["bytes"], "files": c.tree["files"]}


def rm_tree(c):
    c.sh(["rm", "-rf", os.path.join(c.mnt, "src")])
    c.syncfs()
    return {"files": c.tree["files"] + c.tree["dirs"]}


def rand_rw(c):
    size = c.P["rand_mib"]
    r = c.fio("--name=randrw", f"--filename={c.mnt}/rand", "--rw=randrw",
              "--rwmixread=70", "--bs=4k", "--numjobs=2", "--group_reporting",
              f"--size={size}M", "--time_based", f"--runtime={c.P['rand_secs']}")
    job = r["jobs"][0]
    moved = job["read"]["io_bytes"] + job["write"]["io_bytes"] + size * MiB
    return {"value": job["read"]["iops"] + job["write"]["iops"], "bytes": moved}


def meta(op):
    def step(c):
        argv = [PY, os.path.join(HERE, "metaops.py"), op,
                os.path.join(c.mnt, "meta"), str(c.P["meta_files"])]
        p = subprocess.run(argv, capture_output=True, timeout=1800)
        if p.returncode:
            raise BenchError(f"metaops {op}: {p.stderr.decode()[-300:]}")
        return {"seconds": float(p.stdout), "files": c.P["meta_files"]}
    return step


def par_write(c):
    c.fio("--name=par", f"--directory={c.mnt}", "--rw=write", "--bs=1M",
          f"--size={c.P['par_mib']}M", "--numjobs=2", "--end_fsync=1")
    return {"bytes": 2 * c.P["par_mib"] * MiB}


# -- scenarios ---------------------------------------------------------------

def scenarios(P):
    seq, tf = _fmt(P["seq_mib"]), P["tree_files"]
    s4k, s512 = _fmt(P["small4k_mib"]), _fmt(P["small512_mib"])
    return [
        ("seq", [
            Step("seq_write", f"seq write {seq}, 1 MiB blocks + fsync", "MiB/s", seq_write),
            Step("seq_read_cold", f"seq read {seq}, cold", "MiB/s", seq_read, cold=True),
            Step("seq_read_warm", f"seq read {seq}, warm", "MiB/s", seq_read),
        ]),
        ("small", [
            Step("write_4k", f"write {s4k} in 4 KiB blocks + fsync", "MiB/s",
                 dd_small(4096, "small4k_mib")),
            Step("write_512", f"write {s512} in 512 B blocks + fsync", "MiB/s",
                 dd_small(512, "small512_mib")),
        ]),
        ("tree", [
            Step("untar", f"untar {tf} files + sync", "s", untar, prep=warm_tarball),
            Step("ls_lr", "ls -lR, cold", "s", ls_lr, cold=True),
            Step("md5sum", "md5sum of all files (find, xargs), cold", "s", md5_all, cold=True),
            Step("rm_rf", "rm -rf + sync", "s", rm_tree),
        ]),
        ("randrw", [
            Step("fio_randrw", f"fio 4 KiB rand 70/30 r/w, {_fmt(P['rand_mib'])}, "
                 f"2 jobs, {P['rand_secs']} s", "IOPS", rand_rw),
        ]),
        ("meta", [
            Step("create", f"create {P['meta_files']} empty files", "ops/s", meta("create")),
            Step("stat", f"stat {P['meta_files']} files", "ops/s", meta("stat")),
            Step("unlink", f"unlink {P['meta_files']} files", "ops/s", meta("unlink")),
        ]),
        ("parallel", [
            Step("par_write", f"2 parallel writers, 2 x {_fmt(P['par_mib'])} + fsync",
                 "MiB/s", par_write),
        ]),
    ]
