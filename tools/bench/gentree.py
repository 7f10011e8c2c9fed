"""Deterministic, seeded "source tree" tarball for the untar/ls/md5sum/rm
workloads: nested directories, mostly small text-like files (100 B - 20 KiB)
with a long tail of larger ones. Same seed and count -> same bytes.

    gentree.py OUT.tar [--files N] [--seed S]
"""

import argparse
import io
import math
import os
import random
import tarfile

EXTS = [".c", ".h", ".cc", ".py", ".go", ".rs", ".txt", ".md", ".json",
        ".yaml", ".js", ".html", ".sh", ".in", ".rst"]
MTIME = 1700000000


def _pool(rng, size=1 << 20):
    """About 1 MiB of text-like bytes: words, spaces, indented lines."""
    vocab = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz_")
                     for _ in range(rng.randint(2, 10))) for _ in range(3000)]
    vocab += ["{", "}", "(", ")", "=", ";", "return", "if", "for", "0", "1"]
    out, n = [], 0
    while n < size:
        line = " " * (4 * rng.randint(0, 3)) + " ".join(
            rng.choices(vocab, k=rng.randint(1, 12))) + "\n"
        out.append(line)
        n += len(line)
    return "".join(out).encode()[:size]


def _size(rng):
    u = rng.random()
    if u < 0.96:    # bulk: log-normal around 3 KiB, 100 B .. 20 KiB
        return int(min(20480, max(100, rng.lognormvariate(math.log(3000), 0.9))))
    if u < 0.997:   # tail: 20 KiB .. 128 KiB, log-uniform
        return int(math.exp(rng.uniform(math.log(20480), math.log(131072))))
    return int(math.exp(rng.uniform(math.log(131072), math.log(1 << 20))))


def _dirs(rng, count):
    """Nested directories: each new one goes under a random existing one,
    shallow ones more likely, depth at most 8."""
    dirs, seen = [("src", 0)], {"src"}
    while len(dirs) < count:
        parent, depth = rng.choice(dirs)
        if depth >= 8 or rng.random() < depth / 10:
            continue
        name = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz")
                       for _ in range(rng.randint(3, 10)))
        path = f"{parent}/{name}"
        if path not in seen:
            seen.add(path)
            dirs.append((path, depth + 1))
    return [d for d, _ in dirs]


def generate(out, files=40000, seed=1):
    rng = random.Random(seed)
    pool = _pool(rng)
    dirs = _dirs(rng, max(2, files // 15))
    tmp = out + ".tmp"
    total = 0
    with tarfile.open(tmp, "w", format=tarfile.GNU_FORMAT) as tar:
        for d in dirs:
            info = tarfile.TarInfo(d)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, MTIME
            tar.addfile(info)
        for i in range(files):
            d = rng.choice(dirs)
            name = f"{d}/f{i:05d}_{rng.randint(0, 99999)}{rng.choice(EXTS)}"
            size = _size(rng)
            off = rng.randrange(len(pool))
            head = f"/* {name} */\n".encode()
            n = max(0, size - len(head))
            body = pool[off:off + n]
            while len(body) < n:
                body += pool[: n - len(body)]
            data = (head + body)[:size]
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, MTIME
            tar.addfile(info, io.BytesIO(data))
            total += len(data)
    os.replace(tmp, out)
    return {"files": files, "dirs": len(dirs), "bytes": total}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--files", type=int, default=40000)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    print(generate(a.out, a.files, a.seed))


if __name__ == "__main__":
    main()
