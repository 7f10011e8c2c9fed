"""The file system every system's backing directory lives on.

By default a fresh ext4 file system with a journal, made for this run in an
image file in the work directory and attached through a loop device with
direct I/O (so its data is not cached twice), then removed at the end. Its blocks are
written once before mkfs. Why
not the work directory's own file system: on an ext4 without a journal (this
development VM's root is one) the inode allocator skips every inode deleted
in the last 60-360 seconds, one buffer lookup each, so after one system's
`rm -rf` of 40,000 files the next system's creates cost several times more
(measured: native untar of 5,000 files 0.32 s on a fresh journaled ext4,
3.3 s on the journal-less root right after other deletions). Whichever
system runs after a large delete would be penalized. A journal is also what
a node's local temporary disk normally has.

`--fs dir` keeps the old behaviour: backing directories on the work
directory's own file system (for measuring a node's real scratch disk).
"""

import os
import shutil
import subprocess

GiB = 1 << 30


class BenchFsError(Exception):
    pass


def _run(argv, log):
    with open(log, "ab") as out:
        out.write(("\n$ " + " ".join(argv) + "\n").encode())
        out.flush()
        p = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=out, timeout=300)
    if p.returncode != 0:
        raise BenchFsError(f"exit {p.returncode}: {' '.join(argv)} (see {log})")
    return p.stdout.decode().strip()


class ImageFs:
    """A journaled ext4 in WORKDIR/fs.img, mounted at WORKDIR/fs."""

    def __init__(self, workdir, size_gib, log):
        self.image = os.path.join(workdir, "fs.img")
        self.root = os.path.join(workdir, "fs")
        self.size_gib, self.log = size_gib, log
        self.loop = None

    def describe(self):
        return (f"ext4 with a journal, made fresh for this run in a "
                f"{self.size_gib} GiB image file in the work directory, on "
                f"{self.loop} (loop, direct I/O)")

    def __enter__(self):
        for tool in ("mkfs.ext4", "losetup", "mount"):
            if not shutil.which(tool):
                raise BenchFsError(f"{tool} not found (e2fsprogs, util-linux); "
                                   "or run with --fs dir")
        free = shutil.disk_usage(os.path.dirname(self.image)).free
        if free < (self.size_gib + 2) * GiB:
            raise BenchFsError(f"{free // GiB} GiB free in the work directory, "
                               f"the bench file system needs {self.size_gib + 2}; "
                               "free space, pass --fs-gib, or run with --fs dir")
        self.__exit__()                     # leftovers of a killed run
        try:
            return self._make()
        except BaseException:
            self.__exit__()                 # no image or loop device left behind
            raise

    def _make(self):
        # Every block of the image written once, so that no system pays for
        # the host file system allocating it (measured: a first 2 GiB write
        # into a sparse image at 468 MB/s, then 2.7 GB/s into the same blocks).
        _run(["dd", "if=/dev/zero", f"of={self.image}", "bs=16M",
              f"count={self.size_gib * 64}", "conv=fsync", "status=none"], self.log)
        # Inode tables and journal written now, not by a background thread
        # during the measurements.
        _run(["mkfs.ext4", "-q", "-F", "-E",
              "lazy_itable_init=0,lazy_journal_init=0,nodiscard", self.image], self.log)
        try:
            self.loop = _run(["losetup", "--find", "--show", "--direct-io=on",
                              self.image], self.log)
        except BenchFsError:
            self.loop = _run(["losetup", "--find", "--show", self.image], self.log)
        os.makedirs(self.root, exist_ok=True)
        _run(["mount", self.loop, self.root], self.log)
        return self.root

    def __exit__(self, *exc):
        if os.path.ismount(self.root):
            subprocess.run(["umount", self.root], stderr=subprocess.DEVNULL)
            if os.path.ismount(self.root):
                subprocess.run(["umount", "-l", self.root], stderr=subprocess.DEVNULL)
        # Detach every loop device still backed by our image.
        p = subprocess.run(["losetup", "-j", self.image], capture_output=True, text=True)
        for line in p.stdout.splitlines():
            subprocess.run(["losetup", "-d", line.split(":")[0]],
                           stderr=subprocess.DEVNULL)
        self.loop = None
        if os.path.exists(self.image):
            os.unlink(self.image)
        return False


class DirFs:
    """The work directory's own file system."""

    def __init__(self, workdir):
        self.root = workdir

    def describe(self):
        return "the work directory's own file system"

    def __enter__(self):
        return self.root

    def __exit__(self, *exc):
        return False
