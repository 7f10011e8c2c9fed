#!/usr/bin/python3
"""The cost of one FUSE round trip: statfs(2) in a loop on a path, which a
FUSE file system answers in its daemon every time (nothing caches it).
Run it on a mount point and on its backing directory, side by side.

    roundtrip.py PATH [PATH ...] [--calls N]
"""

import argparse
import os
import time


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("paths", nargs="+")
    ap.add_argument("--calls", type=int, default=20000)
    args = ap.parse_args()
    for path in args.paths:
        runs = []
        for _ in range(3):
            t0 = time.perf_counter()
            for _ in range(args.calls):
                os.statvfs(path)
            runs.append((time.perf_counter() - t0) / args.calls * 1e6)
        print(f"{path}: " + "  ".join(f"{r:.1f}" for r in runs) + " us per statfs")


if __name__ == "__main__":
    main()
