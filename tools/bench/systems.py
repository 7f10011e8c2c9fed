"""The file systems under test, and the volume life cycle (create, mount,
remount, destroy) shared by all of them.

Adding a system is one entry in SYSTEMS: argv templates where {backing},
{mnt}, {root} (the volume's private directory), {passfile} and {repo} are
substituted. `daemon` is the executable name
of the FUSE daemon (used to find its pid); None means "no FUSE, run on the
backing directory itself".
"""

import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field

from procstat import find_daemon, peak_rss_kib

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


@dataclass
class System:
    name: str
    daemon: str = None                            # None: native, no mount
    binary: str = None                            # must exist to be available
    packages: tuple = ()                          # Debian packages to install
    version: list = None                          # argv printing a version
    setup: list = field(default_factory=list)     # argv list, before 1st mount
    mount: list = field(default_factory=list)     # first mount of a volume
    remount: list = None                          # later mounts (default: mount)
    cold_remount: bool = True                     # False: cold = drop caches only
    unmount: list = None                          # default: fusermount3 -u
    cleanup: list = field(default_factory=list)   # after unmount, before rm -rf
    files: dict = field(default_factory=dict)     # {root}/NAME: text, at setup
    env: dict = field(default_factory=dict)       # for all its commands


SCRATCHCRYPT_BIN = os.path.join(REPO, "build", "scratchcrypt")


def scratchcrypt_system(name, mount_options=(), block=False):
    return System(
        name, daemon="scratchcrypt", binary=SCRATCHCRYPT_BIN,
        version=[SCRATCHCRYPT_BIN, "--version"],
        mount=[[SCRATCHCRYPT_BIN, "mount", *mount_options, "{backing}", "{mnt}"]],
        remount=[[SCRATCHCRYPT_BIN, "mount", "--recover", *mount_options,
                  "{backing}", "{mnt}"]],
        # A block volume is a kernel file system on a loop device over the
        # daemon's one-file FUSE image: drop_caches empties all of its caches
        # (the image is direct I/O on both sides), and it cannot be remounted.
        cold_remount=not block,
        unmount=[[SCRATCHCRYPT_BIN, "umount", "{mnt}"]],
        # wipe destroys the key kept in the keyring for --recover; it only
        # touches volumes under backing_root, and logs to record_log.
        cleanup=[[SCRATCHCRYPT_BIN, "wipe", "--force", "--wait", "{backing}"]],
        files={"scratchcrypt.conf": "backing_root = {root}\n"
                                    "record_log = {root}/wipe.jsonl\n"},
        env={"SCRATCHCRYPT_CONFIG": "{root}/scratchcrypt.conf"},
    )


SYSTEMS = [
    System("native"),
    System(
        "gocryptfs", daemon="gocryptfs", binary="gocryptfs", packages=("gocryptfs",),
        version=["gocryptfs", "-version"],
        setup=[["gocryptfs", "-init", "-q", "-scryptn", "10", "-passfile",
                "{passfile}", "{backing}"]],
        mount=[["gocryptfs", "-q", "-passfile", "{passfile}", "{backing}", "{mnt}"]],
    ),
    System(
        "securefs", daemon="securefs", binary="securefs", packages=("securefs",),
        version=["securefs", "version"],
        # Cheap key derivation (only unlocking is affected, not the I/O path).
        setup=[["securefs", "create", "--keyfile", "{passfile}", "--pbkdf",
                "pkcs5-pbkdf2-hmac-sha256", "--rounds", "1", "{backing}"]],
        mount=[["securefs", "mount", "-b", "--keyfile", "{passfile}", "{backing}", "{mnt}"]],
    ),
    scratchcrypt_system("scratchcrypt"),
    # The same daemon with the kernel's write-back cache (an operator's
    # choice: faster small writes, ENOSPC reported at fsync/close).
    scratchcrypt_system("scratchcrypt-wb", ["--writeback-cache"]),
    # The block layout: ext4 on an encrypted image, default size (the free
    # space of the bench file system).
    scratchcrypt_system("scratchcrypt-block", ["--layout", "block"], block=True),
]


class BenchError(Exception):
    pass


def run(argv, log, timeout=120, check=True, **kw):
    """Run argv with output appended to the file `log` (never a pipe: FUSE
    daemons that fork would keep a pipe open). Returns the exit status."""
    with open(log, "ab") as out:
        out.write(("\n$ " + " ".join(argv) + "\n").encode())
        out.flush()
        start = out.tell()
        try:
            p = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=out,
                               stderr=out, timeout=timeout, **kw)
        except subprocess.TimeoutExpired:
            raise BenchError(f"timeout after {timeout}s: {' '.join(argv)}")
        except OSError as e:
            raise BenchError(f"{argv[0]}: {e}")
    if check and p.returncode != 0:
        raise BenchError(f"exit {p.returncode}: {' '.join(argv)}: "
                         f"{tail(log, start)}")
    return p.returncode


def tail(path, start=0, n=300):
    """The last n bytes of `path` written after offset `start`."""
    try:
        with open(path, "rb") as f:
            f.seek(start)
            data = f.read()[-n:]
        return data.decode(errors="replace").strip().replace("\n", " | ")
    except OSError:
        return ""


def is_mounted(path):
    path = os.path.abspath(path)
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mp = line.split()[4].replace("\\040", " ")
            if mp == path:
                return True
    return False


def mounts_under(root):
    root = os.path.abspath(root) + "/"
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mp = line.split()[4].replace("\\040", " ")
            if mp.startswith(root):
                found.append(mp)
    return sorted(found, key=len, reverse=True)


def force_unmount(mnt, log):
    """fusermount3 -u, then lazy -uz if still busy."""
    for args in (["-u"], ["-uz"]):
        if not is_mounted(mnt):
            return
        run(["fusermount3", *args, mnt], log, timeout=30, check=False)
        for _ in range(50):
            if not is_mounted(mnt):
                return
            time.sleep(0.1)
    if is_mounted(mnt):
        run(["umount", "-l", mnt], log, timeout=30, check=False)


def drop_page_cache():
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return True
    except OSError:
        return False


class Volume:
    """One fresh, empty volume of `system` under directory `root`."""

    active = set()      # mount points to tear down on exit

    def __init__(self, system, root, passfile, log):
        self.system, self.root, self.log = system, root, log
        self.backing = os.path.join(root, "backing")
        self.fuse = system.daemon is not None
        self.mnt = os.path.join(root, "mnt") if self.fuse else self.backing
        self.subst = {"backing": self.backing, "mnt": self.mnt, "root": root,
                      "passfile": passfile, "repo": REPO}
        self.env = dict(os.environ, **{k: v.format(**self.subst)
                                       for k, v in system.env.items()})
        self.pid = None
        self.peak_rss = None

    def _cmds(self, templates, check=True):
        for argv in templates or []:
            run([a.format(**self.subst) for a in argv], self.log,
                check=check, env=self.env)

    def create(self):
        if os.path.exists(self.root):
            shutil.rmtree(self.root)
        os.makedirs(self.backing)
        if self.fuse:
            os.makedirs(self.mnt)
        for name, text in self.system.files.items():
            with open(os.path.join(self.root, name), "w") as f:
                f.write(text.format(**self.subst))
        self._cmds(self.system.setup)
        self._mount(self.system.mount)

    def _mount(self, templates):
        if not self.fuse:
            return
        Volume.active.add(self.mnt)
        self._cmds(templates)
        deadline = time.monotonic() + 30
        while not is_mounted(self.mnt):
            if time.monotonic() > deadline:
                raise BenchError(f"{self.system.name}: {self.mnt} not mounted "
                                 "after 30 s")
            time.sleep(0.05)
        self.pid = find_daemon(self.mnt, self.system.daemon)
        for _ in range(20):          # a forking daemon may need a moment
            if self.pid:
                break
            time.sleep(0.05)
            self.pid = find_daemon(self.mnt, self.system.daemon)

    def _note_rss(self):
        if self.pid:
            rss = peak_rss_kib(self.pid)
            if rss is not None:
                self.peak_rss = max(self.peak_rss or 0, rss)

    def unmount(self):
        if not self.fuse or not is_mounted(self.mnt):
            return
        self._note_rss()
        try:
            self._cmds(self.system.unmount or [["fusermount3", "-u", "{mnt}"]])
        except BenchError:
            pass
        force_unmount(self.mnt, self.log)
        pid, self.pid = self.pid, None
        for _ in range(100):        # let the daemon exit and release files
            if not pid or not os.path.exists(f"/proc/{pid}"):
                break
            time.sleep(0.05)
        Volume.active.discard(self.mnt)

    def drop_caches(self):
        """Cold cache: unmount (drops FUSE caches), drop the kernel page
        cache, mount again; or only drop the caches (native, block layout)."""
        if not self.system.cold_remount:
            return drop_page_cache()
        self.unmount()
        ok = drop_page_cache()
        self._mount(self.system.remount or self.system.mount)
        return ok

    def destroy(self):
        try:
            self.unmount()
            self._cmds(self.system.cleanup, check=False)
        finally:
            if self.fuse:
                force_unmount(self.mnt, self.log)
                Volume.active.discard(self.mnt)
            shutil.rmtree(self.root, ignore_errors=True)


def availability(system, log):
    """None if the system can be benchmarked, else the reason it cannot."""
    if system.binary and not (shutil.which(system.binary)
                              or os.access(system.binary, os.X_OK)):
        return f"{system.binary} not found"
    if system.daemon and not os.path.exists("/dev/fuse"):
        return "/dev/fuse missing"
    return None


def version_of(system, log):
    if system.packages:          # the Debian version says more than --version
        p = subprocess.run(["dpkg-query", "-W", "-f", "${Version}",
                            system.packages[0]], capture_output=True)
        if p.returncode == 0 and p.stdout:
            return f"{system.packages[0]} {p.stdout.decode().strip()} (Debian)"
    if not system.version:
        return None
    try:
        p = subprocess.run(system.version, capture_output=True, timeout=10,
                           stdin=subprocess.DEVNULL)
        out = (p.stdout or p.stderr).decode(errors="replace").strip()
        return out.splitlines()[0] if out else None
    except (OSError, subprocess.TimeoutExpired):
        return None
