#!/usr/bin/python3
"""Interleaved A/B comparison of block-layout variants (tuning levers).

    tools/bench/block_ab.py VARIANTS [--scenarios seq,tree] [--runs 5]
                            [--quick] [--param seq_mib=512 ...]

VARIANTS is JSON, one entry per volume, e.g.

    '{"native": {"native": true},
      "ext4": {},
      "xfs": {"opts": ["--fs", "xfs"]},
      "ra8m": {"queue": {"read_ahead_kb": "8192"}},
      "mbg16": {"fuse": {"max_background": "16"}},
      "new": {"bin": "/path/to/other/build/scratchcrypt"}}'

Unlike bench.py (a fresh volume per scenario, systems one after another),
every variant's volume is mounted at once on one fresh bench file system
(benchfs.py), and each step of workloads.py runs on each variant in turn,
the order reversed every repetition (A B C, C B A, ...), so that variants
are compared at the same moment on a machine whose load varies. Between
scenarios each volume is emptied. `queue` writes the loop device's
/sys/block/loopN/queue attributes and `fuse` the image connection's
/sys/fs/fuse/connections/N attributes after mounting (not write_cache: the
kernel keeps that setting on the loop device for its next user), and
`remount` remounts the volume's file system with those options, e.g.
"nodiscard". `env` is
added to the mount command's environment. Prints medians, every run, the
image daemon's CPU per step and its peak RSS, and the load average.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import benchfs                                   # noqa: E402
from bench import tree_tarball                   # noqa: E402
from procstat import cpu_seconds, find_daemon, peak_rss_kib  # noqa: E402
from systems import REPO, SCRATCHCRYPT_BIN, drop_page_cache, run  # noqa: E402
from workloads import FULL, QUICK, Ctx, scenarios  # noqa: E402


def loop_of(mnt):
    dev = subprocess.run(["findmnt", "-no", "SOURCE", mnt], capture_output=True,
                         text=True, check=True).stdout.strip()
    return os.path.basename(dev)


def fuse_connection_of(loop):
    with open(f"/sys/block/{loop}/loop/backing_file") as f:
        image_dir = os.path.dirname(f.read().strip())
    return os.minor(os.stat(image_dir).st_dev)


def write_attrs(directory, attrs):
    for name, value in attrs.items():
        with open(os.path.join(directory, name), "w") as f:
            f.write(str(value))


class Variant:
    def __init__(self, name, spec, root, log, conf):
        self.name, self.spec, self.log = name, spec, log
        self.native = spec.get("native", False)
        self.bin = spec.get("bin", SCRATCHCRYPT_BIN)
        self.backing = os.path.join(root, name, "backing")
        self.mnt = self.backing if self.native else os.path.join(root, name, "mnt")
        self.env = dict(os.environ, SCRATCHCRYPT_CONFIG=conf, **spec.get("env", {}))
        self.pid = None

    def mount(self, size):
        os.makedirs(self.backing)
        if self.native:
            return
        os.makedirs(self.mnt)
        run([self.bin, "mount", "--layout", "block", "--size-limit", size,
             *self.spec.get("opts", []), self.backing, self.mnt], self.log, env=self.env)
        loop = loop_of(self.mnt)
        write_attrs(f"/sys/block/{loop}/queue", self.spec.get("queue", {}))
        write_attrs(f"/sys/fs/fuse/connections/{fuse_connection_of(loop)}",
                    self.spec.get("fuse", {}))
        if self.spec.get("remount"):
            run(["mount", "-o", "remount," + self.spec["remount"], self.mnt], self.log)
        self.pid = find_daemon(self.mnt, "scratchcrypt")

    def empty(self):
        for entry in os.listdir(self.mnt):
            path = os.path.join(self.mnt, entry)
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            else:
                os.unlink(path)
        run(["sync", "-f", self.mnt], self.log)

    def destroy(self):
        if not self.native:
            run([self.bin, "wipe", "--force", "--wait", self.backing], self.log,
                env=self.env, check=False)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("variants", help="JSON: {name: spec} (see the module doc)")
    ap.add_argument("--scenarios", default="seq,small,tree,randrw,meta,parallel")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="bench.py's quick sizes")
    ap.add_argument("--param", action="append", default=[],
                    help="override a size, e.g. seq_mib=512 (see workloads.py)")
    ap.add_argument("--size", default="3G", help="each block volume's size")
    ap.add_argument("--fs-gib", type=int, default=16, help="bench file system size")
    ap.add_argument("--workdir", default=os.path.join(REPO, "build", "bench", "ab"))
    args = ap.parse_args()
    spec = json.loads(args.variants)
    params = dict(QUICK if args.quick else FULL)
    for p in args.param:
        key, value = p.split("=", 1)
        params[key] = int(value)
    wanted = args.scenarios.split(",")
    scens = [(n, st) for n, st in scenarios(params) if n in wanted]

    workdir = os.path.abspath(args.workdir)
    os.makedirs(workdir, exist_ok=True)
    log = os.path.join(workdir, "block_ab.log")
    open(log, "w").close()
    scratch = os.path.join(workdir, "tmp")
    os.makedirs(scratch, exist_ok=True)
    tree = tree_tarball(workdir, params["tree_files"]) if "tree" in wanted else None
    values, cpu, loads, variants = {}, {}, [], []
    with benchfs.ImageFs(workdir, args.fs_gib, log) as root:
        conf = os.path.join(root, "scratchcrypt.conf")
        with open(conf, "w") as f:
            f.write(f"backing_root = {root}\nrecord_log = {root}/wipe.jsonl\n")
        try:
            for name, s in spec.items():
                v = Variant(name, s, root, log, conf)
                variants.append(v)
                v.mount(args.size)
            for rep in range(args.runs):
                loads.append(os.getloadavg()[0])
                order = variants if rep % 2 == 0 else variants[::-1]
                for scen, steps in scens:
                    for st in steps:
                        # One drop for all: a drop before each variant's cold
                        # step would also empty the caches the variants
                        # before it keep for their next (warm) step.
                        if st.cold:
                            drop_page_cache()
                        for v in order:
                            ctx = Ctx(v.mnt, v.backing, params, tree, log, scratch)
                            if st.prep:
                                st.prep(ctx)
                            os.sync()
                            c0 = cpu_seconds(v.pid) if v.pid else None
                            t0 = time.monotonic()
                            res = st.fn(ctx)
                            secs = res.get("seconds", time.monotonic() - t0)
                            if v.pid:
                                cpu.setdefault((st.key, v.name), []).append(
                                    cpu_seconds(v.pid) - c0)
                            value = res.get("value") or (
                                res["bytes"] / (1 << 20) / secs if st.unit == "MiB/s"
                                else res["files"] / secs if st.unit == "ops/s" else secs)
                            values.setdefault((st.key, st.unit), {}).setdefault(
                                v.name, []).append(value)
                    for v in order:
                        v.empty()
                print(f"run {rep + 1}/{args.runs} done, load {loads[-1]:.1f}",
                      file=sys.stderr, flush=True)
            rss = {v.name: peak_rss_kib(v.pid) for v in variants if v.pid}
        finally:
            for v in variants:
                v.destroy()

    print(f"load average (1 min) at the start of each run: "
          f"{' '.join(f'{x:.1f}' for x in loads)}")
    for (key, unit), by in values.items():
        print(f"{key} ({unit}):")
        for name, xs in by.items():
            c = cpu.get((key, name))
            print(f"  {name:>12} median {statistics.median(xs):10.3g}   runs "
                  + " ".join(f"{x:.3g}" for x in xs)
                  + (f"   daemon cpu s {statistics.median(c):.2f} [" +
                     " ".join(f"{x:.2f}" for x in c) + "]" if c else ""))
    for name, kib in rss.items():
        print(f"{name}: image daemon peak RSS {kib // 1024} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
