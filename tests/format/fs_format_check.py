#!/usr/bin/python3
"""Decrypts a whole scratchcrypt backing tree with the independent reader
(verify_format.py, written from docs/FORMAT.md) and prints it, so that the
filesystem tests can compare it with what they wrote through the mount.

The 64-byte volume key comes on stdin as 128 hex digits (never a file).

    fs_format_check.py BACKING_ROOT < key.hex

One line per object, fields separated by tabs, bytes as lower-case hex:
    d <path>                      a directory
    f <path> <size> <sha256>      a regular file's decrypted contents
    l <path> <target>             a symlink's decrypted target
    n <path> <c|b> <major> <minor>  a device node (a backing FIFO with its record)
    p <path>                      a FIFO
    x <path> <name> <value>       a user xattr (name without "user.")
    ! <path> <reason>             an entry that does not decrypt
<path> is relative to the volume root, components joined with "/".
"""

import hashlib
import os
import stat
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import verify_format as vf  # noqa: E402


def hexs(data):
    return (data.encode("utf-8", "surrogateescape") if isinstance(data, str) else data).hex()


def xattrs(key, path, object_id, rel, out):
    for name in os.listxattr(path, follow_symlinks=False):
        if not name.startswith(vf.XATTR_PREFIX):
            continue
        try:
            plain_name = vf.decrypt_xattr_name(key, name)
            value = vf.decrypt_xattr_value(key, object_id, plain_name,
                                           os.getxattr(path, name, follow_symlinks=False))
            out.append("x\t%s\t%s\t%s" % (rel.hex(), hexs(plain_name), value.hex()))
        except Exception as e:  # noqa: BLE001
            out.append("!\t%s\txattr %s: %s" % (rel.hex(), name, e))


def walk(key, root, directory, rel, out):
    dir_id = os.getxattr(directory, vf.XATTR_ID)
    for entry in sorted(os.listdir(directory)):
        if entry == vf.HEADER or entry.startswith((".N", vf.LONG_TARGET)):
            continue
        full = os.path.join(directory, entry)
        text = entry
        if entry.startswith(".L"):
            with open(os.path.join(directory, ".N" + entry[2:])) as f:
                text = f.read()
        try:
            name = vf.decrypt_name(key, dir_id, text)
        except Exception as e:  # noqa: BLE001
            out.append("!\t%s\tname %s: %s" % ((rel + b"/" + entry.encode()).hex(), entry, e))
            continue
        name_bytes = name if isinstance(name, bytes) else name.encode("utf-8", "surrogateescape")
        child = name_bytes if not rel else rel + b"/" + name_bytes
        st = os.lstat(full)
        if stat.S_ISDIR(st.st_mode):
            out.append("d\t%s" % child.hex())
            xattrs(key, full, os.getxattr(full, vf.XATTR_ID), child, out)
            walk(key, root, full, child, out)
        elif stat.S_ISLNK(st.st_mode):
            try:
                target = vf.read_symlink(key, root, full)
                out.append("l\t%s\t%s" % (child.hex(), hexs(target)))
            except Exception as e:  # noqa: BLE001
                out.append("!\t%s\tsymlink: %s" % (child.hex(), e))
        elif stat.S_ISFIFO(st.st_mode):
            try:
                record = os.getxattr(full, vf.XATTR_DEVICE, follow_symlinks=False)
            except OSError:
                out.append("p\t%s" % child.hex())
                continue
            try:
                out.append("n\t%s\t%s\t%d\t%d" % (child.hex(), *vf.decrypt_device(key, record)))
            except Exception as e:  # noqa: BLE001
                out.append("!\t%s\tdevice: %s" % (child.hex(), e))
        elif stat.S_ISREG(st.st_mode):
            file_id = os.getxattr(full, vf.XATTR_ID)
            with open(full, "rb") as f:
                plain = vf.decrypt_file(key, file_id, f.read())
            out.append("f\t%s\t%d\t%s" % (child.hex(), len(plain), hashlib.sha256(plain).hexdigest()))
            xattrs(key, full, file_id, child, out)


def main(argv):
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    key = bytes.fromhex(sys.stdin.read().strip())
    if len(key) != 64:
        print("the key on stdin must be 128 hex digits", file=sys.stderr)
        return 2
    out = []
    walk(key, argv[0], argv[0], b"", out)
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
