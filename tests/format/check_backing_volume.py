#!/usr/bin/python3
"""End-to-end format check: a real volume, read back without scratchcrypt.

Mounts a volume with a known test key (handed over on a pipe, --key-fd),
writes files, a sparse file, a long name, a symlink and xattrs through the
mount, then decrypts the backing directory with the independent reader
(verify_format.py) and compares with what the mount shows. Also checks that
no plaintext appears on the backing store. Wipes the volume at the end.

    SCRATCHCRYPT_BIN=build/scratchcrypt tests/format/check_backing_volume.py
Needs root and /dev/fuse; exits 77 (skip) without them.
"""

import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import verify_format as vf  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
BIN = os.environ.get("SCRATCHCRYPT_BIN",
                     os.path.join(HERE, "..", "..", "build", "scratchcrypt"))
KEY = bytes((i * 7 + 3) & 0xff for i in range(64))  # a public test key
MARKER = b"PLAINTEXT-MARKER-6c1f"


def make_node(prefix):
    """A private node in a new temporary directory: backing_root, mount_root,
    a configuration and a volume registry of its own. Returns (base, backing,
    mountpoint, environment for scratchcrypt)."""
    base = tempfile.mkdtemp(prefix=prefix)
    backing_root, mount_root = os.path.join(base, "backing"), os.path.join(base, "mnt")
    backing, mnt = os.path.join(backing_root, "vol"), os.path.join(mount_root, "vol")
    os.makedirs(backing)
    os.makedirs(mnt)
    conf = os.path.join(base, "scratchcrypt.conf")
    with open(conf, "w") as f:
        f.write(f"backing_root = {backing_root}\nmount_root = {mount_root}\n"
                f"record_log = {base}/wipe.log\n")
    env = dict(os.environ, SCRATCHCRYPT_CONFIG=conf, SCRATCHCRYPT_RUN_DIR=os.path.join(base, "run"))
    return base, backing, mnt, env


def checker(failures):
    """check(what, ok): prints the outcome, collects failures."""
    def check(what, ok):
        print(("ok   " if ok else "FAIL ") + what)
        if not ok:
            failures.append(what)
    return check


def mount_with_key(binary, key, args, backing, mnt, env):
    """`scratchcrypt mount ARGS --key-fd N BACKING MNT`, the key on a pipe."""
    r, w = os.pipe()
    os.write(w, key)
    os.close(w)
    ok = subprocess.run([binary, "mount", *args, "--key-fd", str(r), backing, mnt],
                        pass_fds=(r,), env=env).returncode == 0
    os.close(r)
    return ok


def main():
    if os.geteuid() != 0 or not os.path.exists("/dev/fuse") or not os.path.exists(BIN):
        print("skip: needs root, /dev/fuse and " + BIN)
        return 77
    base, backing, mnt, env = make_node("sc-format-")
    failures = []
    check = checker(failures)
    mounted = mount_with_key(BIN, KEY, [], backing, mnt, env)
    try:
        if not mounted:
            check("mount", False)
            return 1
        files = {
            "hello.txt": MARKER + b" hello",
            "tiny": b"abc",
            "sixteen": MARKER[:16],
            "unit-and-tail": MARKER * 205 + b"xyz",         # 4099 bytes
            "sub/big.bin": os.urandom(3 * 4096 + 100) + MARKER,
            "sub/" + "L" * 200: MARKER + b" long name",
            "sub/\u00e9t\u00e9 \u65e5\u672c": MARKER + b" utf-8",
        }
        os.makedirs(os.path.join(mnt, "sub", "deeper"))
        for name, data in files.items():
            with open(os.path.join(mnt, name), "wb") as f:
                f.write(data)
        with open(os.path.join(mnt, "sub", "sparse"), "wb") as f:
            f.truncate(5 * 4096 + 7)
            f.seek(2 * 4096)
            f.write(MARKER)
        os.symlink("../hello.txt", os.path.join(mnt, "sub", "link"))
        long_target = "../" + "t/" * 1999 + "x"                   # 4001 bytes: long form
        os.symlink(long_target, os.path.join(mnt, "sub", "longlink"))
        os.setxattr(os.path.join(mnt, "hello.txt"), "user.comment", MARKER)
        os.setxattr(os.path.join(mnt, "sub"), "user.empty", b"")
        os.sync()

        # Walk the backing tree with the independent reader.
        with open(os.path.join(backing, vf.HEADER)) as f:
            header = f.read().splitlines()
        check("header", header[0] == "scratchcrypt-volume 2" and header[3] == "data-unit 4096"
              and header[2] == "key-check " + vf.derive(KEY, "key-check", 16).hex())
        seen = {}

        def walk(bdir, rel):
            dir_id = os.getxattr(bdir, vf.XATTR_ID)
            check(f"dir id of /{rel} is 16 bytes", len(dir_id) == 16)
            for entry in os.listdir(bdir):
                path = os.path.join(bdir, entry)
                if entry == vf.HEADER or entry.startswith((".N", vf.LONG_TARGET)):
                    continue
                text = entry
                if entry.startswith(".L"):
                    with open(os.path.join(bdir, ".N" + entry[2:])) as f:
                        text = f.read()
                name = vf.decrypt_name(KEY, dir_id, text)
                plain_rel = os.path.join(rel, name) if rel else name
                if os.path.islink(path):
                    seen[plain_rel] = ("link", vf.read_symlink(KEY, backing, path))
                elif os.path.isdir(path):
                    seen[plain_rel] = ("dir", None)
                    walk(path, plain_rel)
                else:
                    file_id = os.getxattr(path, vf.XATTR_ID)
                    check(f"file id of {plain_rel} is 16 bytes", len(file_id) == 16)
                    with open(path, "rb") as f:
                        seen[plain_rel] = ("file", vf.decrypt_file(KEY, file_id, f.read()))
                for x in os.listxattr(path, follow_symlinks=False):
                    if x.startswith(vf.XATTR_PREFIX):
                        xname = vf.decrypt_xattr_name(KEY, x)
                        value = vf.decrypt_xattr_value(KEY, os.getxattr(path, vf.XATTR_ID),
                                                       xname, os.getxattr(path, x))
                        seen[(plain_rel, xname)] = value

        walk(backing, "")
        for name in list(files) + ["sub/sparse"]:
            with open(os.path.join(mnt, name), "rb") as f:
                through_mount = f.read()
            check(f"{name}: decrypted backing file equals the mount",
                  seen.get(name) == ("file", through_mount))
        for name, data in files.items():
            check(f"{name}: and what was written", seen.get(name, (0, 0))[1] == data)
        check("sub/link target", seen.get("sub/link") == ("link", "../hello.txt"))
        check("sub/longlink target (long form, companion in the volume root)",
              seen.get("sub/longlink") == ("link", long_target)
              and os.readlink(os.path.join(mnt, "sub", "longlink")) == long_target)
        check("sub/deeper is a directory", seen.get("sub/deeper") == ("dir", None))
        check("xattr user.comment", seen.get(("hello.txt", "comment")) == MARKER)
        check("empty xattr user.empty", seen.get(("sub", "empty")) == b"")

        leaked = []
        for root, dirs, names in os.walk(backing):
            for n in names + dirs:
                if "hello" in n or "L" * 20 in n or "sub" == n:
                    leaked.append(n)
                p = os.path.join(root, n)
                if os.path.isfile(p) and not os.path.islink(p):
                    with open(p, "rb") as f:
                        if MARKER in f.read():
                            leaked.append(p)
        check("no plaintext name or content on the backing store", not leaked)
    finally:
        if mounted:
            subprocess.run([BIN, "wipe", "--force", mnt], env=env)
        subprocess.run(["umount", "-l", mnt], stderr=subprocess.DEVNULL)
        shutil.rmtree(base, ignore_errors=True)
    print("check_backing_volume: " + ("FAILED: " + "; ".join(failures) if failures
                                      else "all passed"))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
