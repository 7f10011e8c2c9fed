#!/usr/bin/python3
"""End-to-end format check of the block layout: a real block volume, read
back without scratchcrypt.

Mounts a block-layout volume with a known test key (--key-fd), writes files
and directories through it, unmounts it cleanly, then searches the backing
image for the contents and the file and directory names (none may appear),
decrypts it with the independent reader (verify_format.py decrypt-image)
and reads the files out of the plaintext image with e2fsprogs' debugfs, so
the whole chain (ext4, loop device, FUSE, sector encryption) is checked
against docs/FORMAT.md section 10. Wipes the volume at the end.

    SCRATCHCRYPT_BIN=build/scratchcrypt tests/format/check_block_volume.py
Needs root, /dev/fuse, loop devices and debugfs; exits 77 (skip) without them.
"""

import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import verify_format as vf  # noqa: E402
from check_backing_volume import checker, make_node, mount_with_key  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
BIN = os.environ.get("SCRATCHCRYPT_BIN",
                     os.path.join(HERE, "..", "..", "build", "scratchcrypt"))
KEY = bytes((i * 11 + 5) & 0xff for i in range(64))  # a public test key
TOKEN = os.urandom(6).hex()
CONTENT = b"BLOCK-CANARY-CONTENT-" + TOKEN.encode()
FILE_NAME = "canaryfile" + TOKEN
DIR_NAME = "canarydir" + TOKEN
DEBUGFS = shutil.which("debugfs") or "/sbin/debugfs"


def raw_search(path, needles):
    """The needles found anywhere in the stored data regions of `path`."""
    found = set()
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        pos, carry = 0, b""
        while pos < size:
            try:
                start = os.lseek(f.fileno(), pos, os.SEEK_DATA)
            except OSError:
                break
            end = os.lseek(f.fileno(), start, os.SEEK_HOLE)
            for at in range(start, end, 1 << 20):
                chunk = carry + os.pread(f.fileno(), min(1 << 20, end - at), at)
                found |= {n for n in needles if n in chunk}
                carry = chunk[-64:]
            pos = end
    return found


def main():
    if (os.geteuid() != 0 or not os.path.exists("/dev/fuse") or not os.path.exists(BIN)
            or not os.path.exists("/dev/loop-control") or not os.path.exists(DEBUGFS)):
        print("skip: needs root, /dev/fuse, /dev/loop-control, debugfs and " + BIN)
        return 77
    base, backing, mnt, env = make_node("sc-block-format-")
    failures = []
    check = checker(failures)
    mounted = mount_with_key(BIN, KEY, ["--layout", "block", "--size-limit", "64M"], backing, mnt, env)
    try:
        if not mounted:
            check("mount --layout block", False)
            return 1
        files = {
            f"{DIR_NAME}/{FILE_NAME}.txt": CONTENT * 300,
            "top.bin": os.urandom(1 << 20) + CONTENT,
            "small": CONTENT,
        }
        os.makedirs(os.path.join(mnt, DIR_NAME, "deeper"))
        for name, data in files.items():
            with open(os.path.join(mnt, name), "wb") as f:
                f.write(data)
        os.sync()
        check("unmounted cleanly",
              subprocess.run([BIN, "umount", mnt], env=env).returncode == 0)
        image = os.path.join(backing, "image")
        header = open(os.path.join(backing, vf.HEADER)).read()
        check("header names the layout and size", "\nlayout block\nsize 67108864\n" in header)
        check("backing holds the header and the image only",
              sorted(os.listdir(backing)) == sorted([vf.HEADER, "image"]))
        needles = {CONTENT, FILE_NAME.encode(), DIR_NAME.encode()}
        leaked = raw_search(image, needles)
        check("no contents, file name or directory name on the backing disk: " +
              (", ".join(sorted(n.decode() for n in leaked)) or "none"), not leaked)
        plain = os.path.join(base, "plain.img")
        key_file = os.path.join(base, "key")
        with open(key_file, "wb") as f:
            f.write(KEY)
        rc = subprocess.run([sys.executable, os.path.join(HERE, "verify_format.py"),
                             "--key-file", key_file, "decrypt-image", image, "-o", plain]).returncode
        check("the independent reader decrypts the image", rc == 0)
        found = raw_search(plain, needles)
        check("the decrypted image holds the contents and names", found == needles)

        def debugfs(request):
            return subprocess.run([DEBUGFS, "-R", request, plain], capture_output=True).stdout

        listing = debugfs(f"ls -p /{DIR_NAME}").decode(errors="replace")
        check("debugfs lists the directory", f"/{FILE_NAME}.txt/" in listing and "/deeper/" in listing)
        for name, data in files.items():
            check(f"debugfs reads {name.split('/')[-1][:24]} back byte for byte",
                  debugfs(f"cat /{name}") == data)
        fsck = subprocess.run(["/sbin/e2fsck", "-fn", plain], capture_output=True)
        check("the decrypted image is a clean ext4 (e2fsck -fn)", fsck.returncode == 0)
    finally:
        if mounted:
            wipe = subprocess.run([BIN, "wipe", "--force", "--wait", backing], env=env)
            check("wiped", wipe.returncode == 0)
        subprocess.run(["umount", "-l", mnt], stderr=subprocess.DEVNULL)
        shutil.rmtree(base, ignore_errors=True)
    print("block format check: " + ("FAILED: " + "; ".join(failures) if failures else "all passed"))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
