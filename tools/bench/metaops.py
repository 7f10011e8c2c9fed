"""Metadata loop for the benchmark: create, stat or unlink N empty files in
DIR, and print the loop's elapsed seconds.

    metaops.py create|stat|unlink DIR N
"""

import os
import sys
import time


def main():
    op, d, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    names = [os.path.join(d, f"e{i:06d}") for i in range(n)]
    if op == "create":
        os.makedirs(d, exist_ok=True)
    t0 = time.monotonic()
    if op == "create":
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
        for p in names:
            os.close(os.open(p, flags, 0o644))
    elif op == "stat":
        for p in names:
            os.stat(p)
    elif op == "unlink":
        for p in names:
            os.unlink(p)
    else:
        sys.exit(f"unknown op {op}")
    print(f"{time.monotonic() - t0:.6f}")


if __name__ == "__main__":
    main()
