#!/usr/bin/python3
"""Side-by-side file system benchmark: native, gocryptfs, securefs and
scratchcrypt on backing directories of one file system, interleaved
(for each repetition, for each scenario: A B C D), each scenario on a fresh
empty volume. Prints markdown tables, writes JSON.

    tools/bench/bench.py [--quick] [--runs N] [--workdir DIR] [--out FILE]
                         [--systems a,b] [--scenarios x,y] [--fs image|dir]
"""

import argparse
import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import benchfs                                   # noqa: E402
import gentree                                   # noqa: E402
import machine                                   # noqa: E402
import report                                    # noqa: E402
from procstat import cpu_seconds                 # noqa: E402
from systems import (REPO, SYSTEMS, BenchError, Volume, availability,  # noqa: E402
                     drop_page_cache, force_unmount, mounts_under, version_of)
from workloads import FULL, QUICK, Ctx, scenarios  # noqa: E402


def say(*a):
    print(*a, file=sys.stderr, flush=True)


def ensure_tools(systems, install):
    need = {"fio": ("fio",)}
    for s in systems:
        if s.binary and s.packages:
            need[s.binary] = s.packages
    missing = sorted({p for tool, pkgs in need.items()
                      if not shutil.which(tool) for p in pkgs})
    if not missing:
        return
    if not install or os.geteuid() != 0:
        say(f"warning: missing {' '.join(missing)} (not installing: "
            f"{'--no-install' if not install else 'not root'})")
        return
    say(f"installing {' '.join(missing)} with apt-get")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    cmd = ["apt-get", "install", "-y", "--no-install-recommends", *missing]
    if subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL).returncode:
        subprocess.run(["apt-get", "update"], env=env, stdout=subprocess.DEVNULL)
        subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL)


def tree_tarball(workdir, files):
    cache = os.path.join(workdir, "cache")
    os.makedirs(cache, exist_ok=True)
    path = os.path.join(cache, f"tree-{files}-seed1-v1.tar")
    meta = path + ".json"
    if not (os.path.exists(path) and os.path.exists(meta)):
        say(f"generating {files}-file source tree -> {path}")
        with open(meta + ".tmp", "w") as f:
            json.dump(gentree.generate(path, files, seed=1), f)
        os.replace(meta + ".tmp", meta)
    with open(meta) as f:
        info = json.load(f)
    info["path"] = path
    return info


def probe(system, workdir, passfile, log):
    """Mount a throw-away volume, round-trip a file, tear down."""
    why = availability(system, log)
    if why:
        return why
    vol = Volume(system, os.path.join(workdir, f"probe-{system.name}"), passfile, log)
    try:
        vol.create()
        data = secrets.token_bytes(100000)
        p = os.path.join(vol.mnt, "probe")
        with open(p, "wb") as f:
            f.write(data)
        vol.drop_caches()
        with open(p, "rb") as f:
            if f.read() != data:
                return "probe file did not round-trip"
        if vol.fuse and not vol.pid:
            return "mounted, but its daemon pid was not found"
        return None
    except (BenchError, OSError) as e:
        return str(e)[:300]
    finally:
        try:
            vol.destroy()
        except (BenchError, OSError) as e:
            say(f"warning: {system.name} probe cleanup: {e}")


def run_scenario(system, scen, steps, rep, args, ctx_args):
    """One scenario on one fresh volume; returns (step records, rss record)."""
    workdir, passfile, log = ctx_args["workdir"], ctx_args["passfile"], ctx_args["log"]
    vol = Volume(system, os.path.join(workdir, f"vol-{system.name}"), passfile, log)
    ctx = Ctx(vol.mnt, vol.backing, ctx_args["params"], ctx_args["tree"], log, ctx_args["scratch"])
    records, failed = [], None
    try:
        vol.create()
        for st in steps:
            rec = {"rep": rep, "scenario": scen, "step": st.key,
                   "system": system.name, "ok": False}
            records.append(rec)
            if failed:
                rec["error"] = f"skipped: {failed} failed"
                continue
            try:
                if st.cold:
                    if not vol.drop_caches():
                        rec["warning"] = "page cache not dropped (not root?)"
                if st.prep:
                    st.prep(ctx)
                os.sync()
                pid = vol.pid
                cpu0 = cpu_seconds(pid) if pid else None
                t0 = time.monotonic()
                res = st.fn(ctx)
                wall = time.monotonic() - t0
                cpu1 = cpu_seconds(pid) if pid else None
                secs = res.get("seconds", wall)
                rec.update(ok=True, seconds=secs, wall=wall,
                           bytes=res.get("bytes"), files=res.get("files"),
                           daemon_pid=pid,
                           daemon_cpu_s=(cpu1 - cpu0) if cpu0 is not None
                           and cpu1 is not None else None)
                if "value" in res:
                    rec["value"] = res["value"]
                elif st.unit == "MiB/s":
                    rec["value"] = res["bytes"] / (1 << 20) / secs
                elif st.unit == "ops/s":
                    rec["value"] = res["files"] / secs
                else:
                    rec["value"] = secs
                say(f"  {system.name:>12} {st.key:<14} "
                    f"{report._num(rec['value'], st.unit):>10} {st.unit}")
            except (BenchError, OSError, ValueError, KeyError,
                    subprocess.TimeoutExpired) as e:
                failed = st.key
                rec["error"] = str(e)[:500]
                say(f"  {system.name:>12} {st.key:<14} FAILED: {rec['error'][:200]}")
    except (BenchError, OSError) as e:
        for st in steps[len(records):]:
            records.append({"rep": rep, "scenario": scen, "step": st.key,
                            "system": system.name, "ok": False,
                            "error": f"volume setup failed: {str(e)[:300]}"})
        say(f"  {system.name:>12} volume setup FAILED: {str(e)[:200]}")
    finally:
        try:
            vol.unmount()
        finally:
            vol.destroy()
            os.sync()       # leave nothing dirty for the next system
    return records, {"rep": rep, "scenario": scen, "system": system.name,
                     "peak_rss_kib": vol.peak_rss}


def loadavg():
    with open("/proc/loadavg") as f:
        return [float(x) for x in f.read().split()[:3]]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="smaller sizes (about 3 minutes)")
    ap.add_argument("--runs", type=int, default=None,
                    help="repetitions (default 3; 1 with --quick)")
    ap.add_argument("--workdir", default=os.path.join(REPO, "build", "bench", "work"),
                    help="caches and the bench file system (one disk!)")
    ap.add_argument("--fs", choices=("image", "dir"), default="image",
                    help="image: a fresh journaled ext4 in an image file in the "
                    "work directory (default; see benchfs.py); dir: the work "
                    "directory's own file system")
    ap.add_argument("--fs-gib", type=int, default=None,
                    help="size of the image file system (default 8; 3 with --quick)")
    ap.add_argument("--out", default=os.path.join(REPO, "build", "bench", "results.json"))
    ap.add_argument("--systems", default=",".join(s.name for s in SYSTEMS))
    ap.add_argument("--scenarios", default=None,
                    help="comma list: seq,small,tree,randrw,meta,parallel")
    ap.add_argument("--tree-files", type=int, default=None,
                    help="files in the generated tree (full 40000, quick 3000)")
    ap.add_argument("--no-install", action="store_true",
                    help="do not apt-get install missing tools")
    args = ap.parse_args()
    if args.runs is None:
        args.runs = 1 if args.quick else 3

    # Turn SIGTERM/SIGHUP into an exception so `finally` unmounts everything.
    def stop(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGHUP, stop)

    wanted = args.systems.split(",")
    systems = [s for s in SYSTEMS if s.name in wanted]
    params = dict(QUICK if args.quick else FULL)
    if args.tree_files:
        params["tree_files"] = args.tree_files
    scens = scenarios(params)
    if args.scenarios:
        keep = args.scenarios.split(",")
        scens = [(n, st) for n, st in scens if n in keep]

    workdir = os.path.abspath(args.workdir)
    os.makedirs(workdir, exist_ok=True)
    log = os.path.join(workdir, "bench.log")
    open(log, "w").close()
    for mp in mounts_under(workdir):          # leftovers of a killed run
        say(f"unmounting stale {mp}")
        force_unmount(mp, log)
    scratch = os.path.join(workdir, "tmp")
    os.makedirs(scratch, exist_ok=True)
    passfile = os.path.join(workdir, "bench.pass")
    started = time.time()
    load_start = loadavg()
    if load_start[0] > 1.0:
        say(f"warning: load average {load_start[0]} at start: another job is "
            "running, figures will be noisy")
    records, rss_records, unavailable, versions = [], [], {}, {}
    interrupted = None
    fs = (benchfs.ImageFs(workdir, args.fs_gib or (3 if args.quick else 8), log)
          if args.fs == "image" else benchfs.DirFs(workdir))
    fsroot = workdir
    resources = contextlib.ExitStack()

    try:
        ensure_tools(systems, not args.no_install)
        fsroot = resources.enter_context(fs)
        say(f"bench file system: {fs.describe()}")
        if os.geteuid() != 0:
            say("warning: not root, page cache cannot be dropped; cold = warm")
        # Throw-away password for the peers' test volumes (not a scratchcrypt
        # key); removed at exit.
        fd = os.open(passfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.write(fd, secrets.token_hex(16).encode() + b"\n")
        os.close(fd)
        tree = tree_tarball(workdir, params["tree_files"]) \
            if any(n == "tree" for n, _ in scens) else None

        avail = []
        for s in systems:
            why = probe(s, fsroot, passfile, log)
            versions[s.name] = version_of(s, log)
            if why:
                unavailable[s.name] = why
                say(f"{s.name}: UNAVAILABLE: {why}")
            else:
                avail.append(s)
                say(f"{s.name}: ok ({versions[s.name] or 'kernel'})")

        ctx_args = dict(workdir=fsroot, passfile=passfile, log=log,
                        params=params, tree=tree, scratch=scratch)
        for rep in range(1, args.runs + 1):
            for scen, steps in scens:
                say(f"[run {rep}/{args.runs}] {scen}  "
                    f"({time.time() - started:.0f} s elapsed)")
                for s in avail:                 # interleaved: A B C D
                    recs, rss = run_scenario(s, scen, steps, rep, args, ctx_args)
                    records += recs
                    rss_records.append(rss)
    except KeyboardInterrupt as e:
        interrupted = str(e) or "interrupted"
        say(f"interrupted ({interrupted}); cleaning up, writing partial results")
    except benchfs.BenchFsError as e:
        interrupted = f"bench file system: {e}"
        say(f"error: {interrupted}")
    finally:
        for mp in list(Volume.active) + mounts_under(fsroot):
            force_unmount(mp, log)
        for d in os.listdir(fsroot):
            if d.startswith(("vol-", "probe-")):
                shutil.rmtree(os.path.join(fsroot, d), ignore_errors=True)
        if os.path.exists(passfile):
            os.unlink(passfile)
        fs_description = fs.describe()
        minfo = machine.collect(fsroot)
        resources.close()

    names = [s.name for s in systems if s.name not in unavailable]
    steps = [(n, st) for n, sts in scens for st in sts]
    rows = report.summarize(steps, names, records, rss_records)
    minfo["bench_fs"] = fs_description
    mode = "quick" if args.quick else "full"
    head = (f"scratchcrypt bench, {mode} mode"
            + (" (QUICK: reduced sizes and by default a single run, so no "
               "median; a smoke test, not comparable with full runs)"
               if args.quick else "")
            + f", {args.runs} run(s), {time.time() - started:.0f} s"
            + f", load average at start {load_start[0]:.2f}"
            + (f", INTERRUPTED: {interrupted}" if interrupted else ""))
    md = (f"{head}\n\n" + report.markdown(rows, names, unavailable, args.runs)
          + "\nMachine:\n" + machine.markdown(minfo) + "\n")
    print(md)
    result = {
        "mode": mode, "runs": args.runs, "params": params,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "duration_s": round(time.time() - started, 1),
        "interrupted": interrupted, "workdir": workdir, "fs": args.fs,
        "machine": minfo,
        "loadavg_start": load_start, "loadavg_end": loadavg(),
        "tree": {k: v for k, v in (tree or {}).items() if k != "path"},
        "systems": {s.name: {"available": s.name not in unavailable,
                             "reason": unavailable.get(s.name),
                             "version": versions.get(s.name)} for s in systems},
        "results": rows, "raw": records, "peak_rss": rss_records,
        "markdown": md,
    }
    out = os.path.abspath(args.out)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out + ".tmp", "w") as f:
        json.dump(result, f, indent=1)
    os.replace(out + ".tmp", out)
    with open(os.path.splitext(out)[0] + ".md", "w") as f:
        f.write(md)
    say(f"wrote {out} and {os.path.splitext(out)[0]}.md")
    return 130 if interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
