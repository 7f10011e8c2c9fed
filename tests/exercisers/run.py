#!/usr/bin/python3
"""Outside exercisers on real volumes: stress-ng's file-system stressors with
--verify, and fio jobs with data verification (tests/exercisers/verify.fio),
on a files-layout and a block-layout mount of the built binary.

Each layout gets a fresh volume in a temporary directory, with its own
configuration and volume registry; it is wiped (key destroyed, ciphertext
deleted) at the end whatever happens, also on SIGTERM or Ctrl-C.

The outcome is compared with tests/exercisers/expected-failures, the
recorded and documented differences: the run fails on any exerciser that
fails and is not listed (a regression), and on a listed one that now passes
(so that the list stays true).

    SCRATCHCRYPT_BIN=build/scratchcrypt tests/exercisers/run.py [--full]
        [--layout files,block] [--only NAME,...] [--list]

`make exercise` runs the short selection (part of `make test`), `make
exercise-full` every exerciser at greater length (part of `make test-full`).
Needs root, /dev/fuse, stress-ng and fio.
"""

import argparse
import concurrent.futures
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(REPO, "tools", "bench"))
from systems import (Volume, drop_page_cache, force_unmount, mounts_under,  # noqa: E402
                     scratchcrypt_system)

BIN = os.path.abspath(os.environ.get("SCRATCHCRYPT_BIN",
                                     os.path.join(REPO, "build", "scratchcrypt")))
EXPECTED = os.path.join(HERE, "expected-failures")
FIO_JOBS = os.path.join(HERE, "verify.fio")
LAYOUTS = ("files", "block")
# `mount` options per layout. A block volume has an exact size (the default
# would promise it all the free space of the backing file system).
LAYOUT_OPTIONS = {"files": [], "block": ["--layout", "block", "--size-limit", "6G"]}

# stress-ng stressors that work in --temp-path, with whether they are in the
# short selection. Every one runs with --verify (stressors that can check
# what they read back do so) and one instance. Left out: io-uring, whose
# IORING_OP_STATX check fails on a native ext4 as well with stress-ng 0.15
# on recent kernels.
STRESSORS = [
    ("hdd", True), ("iomix", True), ("rename", True), ("link", True),
    ("symlink", True), ("fallocate", True), ("fpunch", True), ("seek", True),
    ("mmap", True), ("lockf", True), ("xattr", True), ("dentry", True),
    ("fiemap", True), ("sync-file", True), ("mknod", True),
    ("dir", False), ("dirdeep", False), ("dirmany", False), ("readahead", False),
    ("fcntl", False), ("flock", False), ("locka", False), ("lockofd", False),
    ("chmod", False), ("chown", False), ("utime", False), ("filename", False),
    ("aio", False), ("aiol", False), ("open", False),
    ("touch", False), ("copy-file", False), ("fsize", False), ("msync", False),
    ("mmapmany", False), ("sendfile", False), ("splice", False), ("fstat", False),
]
# fio sections of verify.fio; all of them run in both selections.
FIO_SECTIONS = ["rand-unaligned", "bsrange-unaligned", "sparse-holes", "sparse-random",
                "shared-file", "several-jobs", "mmap", "direct-aio"]

SHORT = {"stress_seconds": 3, "fio_size": "8m", "fio_part": "1999999"}
FULL = {"stress_seconds": 15, "fio_size": "64m", "fio_part": "16777001"}

_children = set()           # process groups of running exercisers
_children_lock = threading.Lock()
_stopping = threading.Event()  # set once the harness is stopped: start nothing
_cleaning = threading.Event()  # a volume is being wiped: a signal must not cut it short


def say(text):
    print(text, flush=True)


def tail(text, lines=15):
    return "\n".join("    | " + line for line in text.strip().splitlines()[-lines:])


def run_exerciser(argv, cwd, timeout, env=None):
    """(exit status or None on timeout, output). The exerciser runs in its own
    process group, killed whole on timeout or when the harness is stopped."""
    with _children_lock:
        if _stopping.is_set():
            return None, "[not started: the harness is stopping]"
        p = subprocess.Popen(argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, start_new_session=True, env=env)
        _children.add(p.pid)
    try:
        out, _ = p.communicate(timeout=timeout)
        return p.returncode, out.decode(errors="replace")
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, _ = p.communicate()
        return None, out.decode(errors="replace") + f"\n[killed after {timeout} s]"
    finally:
        with _children_lock:
            _children.discard(p.pid)


def kill_children():
    with _children_lock:
        for pgid in list(_children):
            try:
                os.killpg(pgid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def stress_ng_bogo_ops(yaml_path, stressor):
    """The stressor's bogo-ops from stress-ng's --yaml report, or None."""
    try:
        with open(yaml_path) as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    current = None
    for line in lines:
        line = line.strip()
        if line.startswith("- stressor:"):
            current = line.split(":", 1)[1].strip()
        elif line.startswith("bogo-ops:") and current == stressor:
            return int(line.split(":", 1)[1])
    return None


def stress_ng(stressor, workdir, params, seconds=None):
    """None if the stressor passed, else why it failed."""
    seconds = seconds or params["stress_seconds"]
    yaml_path = os.path.join(workdir, "..", f"stress-ng-{stressor}.yaml")
    rc, out = run_exerciser(
        ["stress-ng", f"--{stressor}", "1", "--timeout", str(seconds), "--verify",
         "--temp-path", workdir, "--yaml", yaml_path, "--metrics-brief"],
        cwd=workdir, timeout=seconds + 120)
    ops = stress_ng_bogo_ops(yaml_path, stressor)
    skipped = [line for line in out.splitlines() if "skipping stressor" in line]
    failed = [line for line in out.splitlines() if " fail: " in line]
    if rc is None:
        return "hung", out
    if rc != 0:
        return f"exit status {rc}", out
    if skipped:
        return "skipped: " + skipped[0].split("]", 1)[-1].strip(), out
    if failed:
        return "reported a failure", out
    if not ops and seconds == params["stress_seconds"]:
        # A loaded machine can keep a stressor with long rounds (xattr) from
        # finishing one in a short run: once more, for longer.
        return stress_ng(stressor, workdir, params, 3 * seconds)
    if not ops:
        return f"did no work (0 bogo ops in {seconds} s)", out
    return None, out


def fio(section, workdir, params):
    """Writes the section's files, drops the page cache, verifies them."""
    env = dict(os.environ, SC_FIO_SIZE=params["fio_size"], SC_FIO_PART=params["fio_part"])
    passes = {}
    for what, extra in (("write", ["--do_verify=0"]), ("verify", ["--verify_only"])):
        if what == "verify" and not drop_page_cache():
            return "cannot drop the page cache (/proc/sys/vm/drop_caches)", ""
        report = os.path.join(workdir, "..", f"fio-{section}-{what}.json")
        rc, out = run_exerciser(["fio", FIO_JOBS, f"--section={section}", *extra,
                                 "--output-format=json", f"--output={report}"],
                                cwd=workdir, timeout=600, env=env)
        if rc is None:
            return f"{what} pass hung", out
        if rc != 0:
            return f"{what} pass: exit status {rc}", out + _read(report)
        try:
            jobs = fio_report(report)["jobs"]
        except (OSError, ValueError, KeyError) as e:
            return f"{what} pass: no report ({e})", out
        errors = [j["error"] for j in jobs if j.get("error")]
        if errors:
            return f"{what} pass: error {errors[0]}", out
        passes[what] = sum(j[d]["io_bytes"] for j in jobs for d in ("read", "write"))
    written, verified = passes["write"], passes["verify"]
    if written == 0 or verified < written:
        # fio lays a file out anew (and then verifies nothing) when it finds
        # one shorter than the job wants.
        return f"verified {verified} of {written} bytes written", ""
    return None, ""


def fio_report(path):
    with open(path) as f:
        text = f.read()
    # A warning line may come before the JSON.
    return json.loads(text if text.startswith("{") else text[text.index("\n{") + 1:])


def _read(path):
    try:
        with open(path) as f:
            return f.read()[-2000:]
    except OSError:
        return ""


def load_expected():
    """{(layout, exerciser): reason} from the expected-failures file."""
    expected = {}
    with open(EXPECTED) as f:
        for number, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            parts = line.split(None, 2)
            if len(parts) < 3 or parts[0] not in LAYOUTS:
                raise SystemExit(f"{EXPECTED}:{number}: expected 'LAYOUT EXERCISER REASON'")
            expected[(parts[0], parts[1])] = parts[2]
    return expected


def exercisers(full, only):
    chosen = [(f"stress-ng:{s}", stress_ng, s) for s, short in STRESSORS if full or short]
    chosen += [(f"fio:{s}", fio, s) for s in FIO_SECTIONS]
    if only:
        chosen = [e for e in chosen if e[0] in only or e[0].split(":", 1)[1] in only]
    return chosen


def run_layout(layout, base, chosen, params, jobs, expected):
    """{exerciser: None or failure reason} for one fresh volume."""
    system = scratchcrypt_system(f"scratchcrypt-{layout}", LAYOUT_OPTIONS[layout])
    system.binary = BIN
    for argv in system.mount + system.remount + system.unmount + system.cleanup:
        argv[0] = BIN
    root = os.path.join(base, layout)
    log = os.path.join(base, f"{layout}.log")
    volume = Volume(system, root, None, log)
    results = {}
    try:
        try:
            volume.create()
        except Exception as e:  # noqa: BLE001 (any failure to mount is reported)
            say(f"FAIL {layout}: cannot mount a volume: {e}")
            return {name: "the volume did not mount" for name, _, _ in chosen}

        def one(entry):
            name, function, arg = entry
            workdir = os.path.join(volume.mnt, name.replace(":", "-"))
            os.makedirs(workdir)
            started = time.monotonic()
            why, out = function(arg, workdir, params)
            shutil.rmtree(workdir, ignore_errors=True)
            return name, why, out, time.monotonic() - started

        # stress-ng runs `jobs` stressors side by side; fio, which runs
        # several jobs itself and drops the page cache, one section at a time.
        stress = [e for e in chosen if e[1] is stress_ng]
        rest = [e for e in chosen if e[1] is not stress_ng]
        pool = concurrent.futures.ThreadPoolExecutor(max_workers=jobs)
        try:
            outcomes = list(pool.map(one, stress))
        except BaseException:
            kill_children()  # before waiting for the workers
            raise
        finally:
            pool.shutdown(cancel_futures=True)
        outcomes += [one(e) for e in rest]
        for name, why, out, seconds in outcomes:
            results[name] = why
            if why is None:
                say(f"  pass  {layout:5} {name} ({seconds:.1f} s)")
            elif (layout, name) in expected:
                say(f"  fail  {layout:5} {name} ({seconds:.1f} s): {why} "
                    f"[expected: {expected[(layout, name)]}]")
            else:
                say(f"  FAIL  {layout:5} {name} ({seconds:.1f} s): {why}")
                if out.strip():
                    say(tail(out))
    finally:
        _cleaning.set()
        try:
            kill_children()
            volume.destroy()
        finally:
            _cleaning.clear()
    return results


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--full", action="store_true", help="every exerciser, longer runs")
    ap.add_argument("--layout", default=",".join(LAYOUTS), help="files,block")
    ap.add_argument("--only", default="", help="comma list of exercisers (e.g. hdd,fio:mmap)")
    ap.add_argument("--jobs", type=int, default=2, help="stressors run side by side")
    ap.add_argument("--list", action="store_true", help="list the exercisers and exit")
    args = ap.parse_args(argv)
    only = set(filter(None, args.only.split(",")))
    chosen = exercisers(args.full, only)
    if args.list:
        for name, _, _ in chosen:
            print(name)
        return 0
    expected = load_expected()
    known = {name for name, _, _ in exercisers(True, set())}
    stale = [f"{layout} {name}" for layout, name in expected if name not in known]
    if stale:
        say(f"{EXPECTED} names exercisers that do not exist: {', '.join(stale)}")
        return 1
    if os.geteuid() != 0 or not os.path.exists("/dev/fuse"):
        say("exercisers: needs root and /dev/fuse")
        return 1
    missing = [t for t in ("stress-ng", "fio") if shutil.which(t) is None]
    if missing or not os.access(BIN, os.X_OK):
        say(f"exercisers: missing {', '.join(missing) or BIN} (make deps; make)")
        return 1

    # Stopped: start nothing more, and let `finally` wipe the volumes.
    def stop(signum, _frame):
        _stopping.set()
        if not _cleaning.is_set():
            raise KeyboardInterrupt(f"signal {signum}")
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, stop)

    params = FULL if args.full else SHORT
    base = tempfile.mkdtemp(prefix="sc-exercise-")
    os.chmod(base, 0o755)
    # A registry of our own: never the node's /run/scratchcrypt.
    os.environ["SCRATCHCRYPT_RUN_DIR"] = os.path.join(base, "run")
    mismatches, passed, failed, as_expected, counts = [], 0, 0, 0, []
    left_behind = []
    started = time.monotonic()
    try:
        for layout in args.layout.split(","):
            if layout not in LAYOUTS:
                say(f"unknown layout {layout}")
                return 2
            layout_start = time.monotonic()
            say(f"{layout} layout: {len(chosen)} exercisers "
                f"({'full' if args.full else 'short'} selection)")
            results = run_layout(layout, base, chosen, params, args.jobs, expected)
            if _stopping.is_set():
                raise KeyboardInterrupt("signal")
            ok = sum(1 for why in results.values() if why is None)
            passed += ok
            failed += len(results) - ok
            counts.append(f"{layout}: {ok} of {len(results)} passed")
            for name, why in results.items():
                reason = expected.get((layout, name))
                if why is not None and reason is None:
                    mismatches.append(f"REGRESSION {layout} {name}: {why}")
                elif why is not None:
                    as_expected += 1
                elif reason is not None:
                    mismatches.append(f"NOW PASSES {layout} {name}: remove it from "
                                      f"{os.path.relpath(EXPECTED, REPO)}")
            say(f"{layout} layout: {ok} of {len(results)} passed "
                f"({time.monotonic() - layout_start:.0f} s)")
    except KeyboardInterrupt as e:
        say(f"exercisers: stopped ({e}); the volumes are wiped")
        return 130
    finally:
        kill_children()
        for mountpoint in mounts_under(base):  # what a failed wipe left
            force_unmount(mountpoint, os.path.join(base, "cleanup.log"))
        left_behind = mounts_under(base)
        if not left_behind:
            shutil.rmtree(base, ignore_errors=True)
        else:
            say(f"exercisers: mounts that would not go: {', '.join(left_behind)}; "
                f"{base} is left for an operator")
    for line in mismatches:
        say(line)
    say(f"exercisers: {'; '.join(counts) or 'nothing ran'}; "
        f"{time.monotonic() - started:.0f} s; "
        + ("outcome differs from the expected failures" if mismatches
           else "failures as expected"))
    say(f"{passed} passed, {failed} failed"
        + (f" ({as_expected} of them expected)" if as_expected else ""))
    return 1 if mismatches or left_behind or not counts else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
