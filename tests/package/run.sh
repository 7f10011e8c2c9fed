#!/bin/bash
# Package test: build the .deb, install it, use it, remove and purge it, and check
# that nothing is left behind. Run as root (`make package-test`).
#
#   tests/package/run.sh            build with packaging/build-deb, then test
#   SCRATCHCRYPT_DEB=FILE.deb tests/package/run.sh   test this .deb instead of building
#
# The installed package puts /usr/sbin/scratchcrypt on this machine; the test purges
# it again on every exit path (trap), so that it never shadows the build tree's
# binary for other tests. It refuses to run if scratchcrypt is already installed.
# Volumes, config and record log live in a temporary directory; the volume registry
# too (SCRATCHCRYPT_RUN_DIR), so volumes of tests running in parallel are not seen.
#
# Prints PASS/FAIL lines and ends with "N passed, M failed"; exits 1 on a failure.
# shellcheck disable=SC2317  # cleanup and helpers are called from traps and loops
set -u
export LC_ALL=C
export DEBIAN_FRONTEND=noninteractive

top=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=tests/lib/results.sh
. "$top/tests/lib/results.sh"  # pass, fail, check, finish

if [ "$(id -u)" -ne 0 ]; then
    fail "the package test must run as root (it installs the package)"
    finish
fi
if dpkg-query -W -f='${Status}' scratchcrypt 2>/dev/null | grep -q 'installed\|config-files'; then
    fail "scratchcrypt is already installed here; refusing to install over it or purge it (dpkg --purge scratchcrypt first)"
    finish
fi
"$top/tools/install-deps" python3 groff-base man-db util-linux >/dev/null || {
    fail "cannot install the test's tools"
    finish
}

start=$(date +%s)
tmp=$(mktemp -d /tmp/scratchcrypt-pkgtest.XXXXXX)
chmod 0755 "$tmp"  # the job user must traverse it to reach its volume
installed_by_us=0
export SCRATCHCRYPT_RUN_DIR=$tmp/run
export SCRATCHCRYPT_CONFIG=$tmp/scratchcrypt.conf

# Volumes mounted under $tmp: files-layout FUSE mounts and block-layout file
# systems on loop devices.
our_mounts() {
    awk -v d="$tmp/" 'index($2, d) == 1 && ($3 == "fuse.scratchcrypt" || $1 ~ /^\/dev\/loop/) { print $2 }' /proc/mounts | sort -r
}
# The layout `status` shows for job $1's volume.
layout_of() {
    $sc status --json | python3 -c 'import json, sys
print(" ".join(v["layout"] for v in json.load(sys.stdin)["volumes"] if v["job"] == sys.argv[1]))' "$1"
}
# Processes of the installed binary (also after its file is deleted) or of any
# scratchcrypt serving a volume in $tmp.
our_processes() {
    local p exe
    for p in /proc/[0-9]*; do
        exe=$(readlink "$p/exe" 2>/dev/null) || continue
        case "$exe" in
            /usr/sbin/scratchcrypt | "/usr/sbin/scratchcrypt (deleted)") echo "${p#/proc/}" ;;
            *scratchcrypt*) tr '\0' ' ' <"$p/cmdline" 2>/dev/null | grep -qF "$tmp/" && echo "${p#/proc/}" ;;
        esac
    done
    return 0
}

cleanup() {
    local m bin pid
    trap - EXIT INT TERM
    bin=/usr/sbin/scratchcrypt
    [ -x "$bin" ] || bin=$top/build/scratchcrypt
    for m in $(our_mounts); do
        # wipe destroys the key in the keyring too; the lazy unmount is the fallback.
        "$bin" wipe --force --wait "$m" >/dev/null 2>&1 || umount -l "$m" 2>/dev/null || true
    done
    for pid in $(our_processes); do kill -KILL "$pid" 2>/dev/null || true; done
    if [ "$installed_by_us" = 1 ] && dpkg-query -W -f='${Status}' scratchcrypt 2>/dev/null | grep -q 'installed\|config-files'; then
        dpkg --purge scratchcrypt >/dev/null 2>&1 || echo "package test: could not purge scratchcrypt; run dpkg --purge scratchcrypt" >&2
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'fail "interrupted"; finish' INT TERM

# --- build -----------------------------------------------------------------------
version=$(dpkg-parsechangelog -l "$top/packaging/debian/changelog" -SVersion)
deb=${SCRATCHCRYPT_DEB:-}
if [ -z "$deb" ]; then
    if "$top/packaging/build-deb" --no-lintian "$tmp/out" >"$tmp/build.log" 2>&1; then
        deb=$tmp/out/scratchcrypt_${version}_$(dpkg --print-architecture).deb
        pass "packaging/build-deb built $(basename "$deb") ($(($(date +%s) - start))s)"
    else
        tail -n 30 "$tmp/build.log"
        fail "packaging/build-deb failed (log above)"
        finish
    fi
fi
deb=$(readlink -f "$deb")
check "the .deb is scratchcrypt $version" sh -c "dpkg-deb -f '$deb' Package Version | tr '\n' ' ' | grep -qx 'Package: scratchcrypt Version: $version '"
check "Depends names fuse3, libfuse3-3, libssl3, libsodium23" sh -c "dpkg-deb -f '$deb' Depends | tr ',' '\n' | sed 's/ (.*//; s/^ *//' | sort | tr '\n' ' ' | grep -q 'fuse3 libc6 libfuse3-3 libgcc-s1 libsodium23 libssl3 libstdc++6'"

# --- install ---------------------------------------------------------------------
installed_by_us=1
if apt-get install -y -q --no-install-recommends "$deb" >"$tmp/apt.log" 2>&1 ||
    { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -q --no-install-recommends "$deb" >"$tmp/apt.log" 2>&1; }; then
    pass "apt-get install ./$(basename "$deb")"
else
    tail -n 20 "$tmp/apt.log"
    fail "apt-get install ./$(basename "$deb")"
    finish
fi
dpkg -L scratchcrypt | sort >"$tmp/files"
dpkg-query -W -f='${Conffiles}\n' scratchcrypt | awk 'NF { print $1 }' >"$tmp/conffiles"

sc=/usr/sbin/scratchcrypt
check "installed $sc --version prints scratchcrypt $version" sh -c "$sc --version | head -n 1 | grep -qx 'scratchcrypt $version'"
check "$sc is the dynamically linked binary, hardened (BIND_NOW)" sh -c "readelf -d $sc | grep -q BIND_NOW"
check "man -w scratchcrypt finds the man page" sh -c "[ \"\$(man -w scratchcrypt 2>/dev/null)\" = /usr/share/man/man8/scratchcrypt.8.gz ]"
check "the man page renders without groff warnings" sh -c "zcat /usr/share/man/man8/scratchcrypt.8.gz | groff -man -Tascii -ww -z 2>&1 | grep -q . && exit 1 || exit 0"
# Every command, option and setting of the installed binary is in the installed man page.
if SCRATCHCRYPT_CONFIG='' python3 "$top/tests/package/check_manpage.py" "$sc" /usr/share/man/man8/scratchcrypt.8.gz \
    /etc/scratchcrypt/scratchcrypt.conf >"$tmp/man.txt" 2>&1; then
    pass "man page matches the help of every command ($(grep -c '^PASS' "$tmp/man.txt") checks)"
else
    grep -v '^PASS' "$tmp/man.txt"
    fail "man page does not match the binary's help (lines above)"
fi
check "conffile /etc/scratchcrypt/scratchcrypt.conf" grep -qx /etc/scratchcrypt/scratchcrypt.conf "$tmp/conffiles"
check "conffile /etc/default/scratchcrypt" grep -qx /etc/default/scratchcrypt "$tmp/conffiles"
check "the shipped configuration is the built-in defaults" sh -c \
    "[ \"\$(SCRATCHCRYPT_CONFIG= $sc config)\" = \"\$(SCRATCHCRYPT_CONFIG=/dev/null $sc config)\" ] && SCRATCHCRYPT_CONFIG= $sc config | grep -q 'mode = per-job'"
check "systemd units installed and valid" sh -c "systemd-analyze verify /lib/systemd/system/scratchcrypt-sweep.service /lib/systemd/system/scratchcrypt-node.service 2>&1 | grep -v 'man scratchcrypt' | grep -q . && exit 1 || exit 0"
check "scratchcrypt-sweep.service enabled, scratchcrypt-node.service not" sh -c \
    "[ -L /etc/systemd/system/multi-user.target.wants/scratchcrypt-sweep.service ] && [ ! -e /etc/systemd/system/multi-user.target.wants/scratchcrypt-node.service ]"
check "Slurm, PBS and Azure Batch scripts installed executable" sh -c \
    "for f in slurm/prolog.sh slurm/epilog.sh slurm/task_prolog.sh slurm/healthcheck.sh pbs/prologue pbs/epilogue azure-batch/start-task.sh azure-batch/job-prep.sh azure-batch/job-release.sh; do f=/usr/lib/scratchcrypt/\$f; [ -x \$f ] && \$(head -n 1 \$f | sed 's/^#!//') -n \$f || exit 1; done"
check "Slurm common.sh installed beside prolog.sh and epilog.sh (0644)" sh -c \
    "f=/usr/lib/scratchcrypt/slurm/common.sh; [ \"\$(stat -c %a \$f)\" = 644 ] && sh -n \$f"
check "docs in /usr/share/doc/scratchcrypt" sh -c \
    "d=/usr/share/doc/scratchcrypt; ls \$d/PACKAGING.md* \$d/FORMAT.md* \$d/slurm/slurm.conf.snippet* \$d/azure-batch/README.md* && [ -f \$d/copyright ]"

# --- use it: mount, write, wipe with the installed binary ------------------------
cat >"$SCRATCHCRYPT_CONFIG" <<EOF
backing_root = $tmp/backing
mount_root = $tmp/mnt
record_log = $tmp/log/wipe.jsonl
size_limit = 64M
EOF
chmod 0644 "$SCRATCHCRYPT_CONFIG"
mkdir -p "$tmp/backing/vol" "$tmp/mnt/vol"
marker="scratchcrypt-package-test-plaintext-$$"
check_shown "scratchcrypt mount (installed binary)" $sc mount --job pkgtest "$tmp/backing/vol" "$tmp/mnt/vol"
check "mounted as fuse.scratchcrypt" sh -c "awk -v m='$tmp/mnt/vol' '\$2 == m && \$3 == \"fuse.scratchcrypt\"' /proc/mounts | grep -q ."
key=$(awk -v m="$tmp/mnt/vol" '$2 == m { print $1 }' /proc/mounts | head -n 1)
check "write and read back a file" sh -c \
    "for i in \$(seq 1 200); do echo '$marker'; done >'$tmp/mnt/vol/data.txt' && sync '$tmp/mnt/vol/data.txt' && [ \$(grep -c '$marker' '$tmp/mnt/vol/data.txt') = 200 ]"
check "no plaintext on the backing disk" sh -c "! grep -rqF '$marker' '$tmp/backing' && ! grep -rqF data.txt '$tmp/backing'"
check "status lists the volume" sh -c "$sc status | grep -q pkgtest"
check_shown "scratchcrypt wipe --wait" $sc wipe --wait "$tmp/mnt/vol"
check "volume unmounted and its ciphertext deleted" sh -c \
    "! grep -qF ' $tmp/mnt/vol ' /proc/mounts && [ -z \"\$(ls -A '$tmp/backing')\" ]"
# Invalidation is immediate (a search fails at once); the kernel's key
# garbage collector drops the entry from /proc/keys a moment later.
check "the volume key is invalidated in the kernel keyring" sh -c \
    "[ -n '$key' ] && ! keyctl search @u user '$key'"
check "the volume key left the kernel keyring" sh -c \
    "for i in \$(seq 1 50); do grep -qF ' $key: ' /proc/keys || exit 0; sleep 0.1; done; exit 1"
check "wipe record: job pkgtest, key destroyed, complete" sh -c \
    "grep '\"job\": \"pkgtest\"' '$tmp/log/wipe.jsonl' | grep '\"key_destroyed\": true' | grep -q '\"outcome\": \"complete\"'"

# The block layout: a kernel file system on a loop device over one encrypted image.
if [ -e /dev/loop-control ]; then
    mkdir -p "$tmp/backing/blk" "$tmp/mnt/blk"
    check_shown "scratchcrypt mount --layout block (installed binary)" $sc mount --layout block --size-limit 128M --job pkgblock "$tmp/backing/blk" "$tmp/mnt/blk"
    blk_id=$(sed -n 's/^id //p' "$tmp/backing/blk/.scratchcrypt-volume" 2>/dev/null)
    check "block volume: ext4 on a loop device at the mount point" sh -c \
        "awk -v m='$tmp/mnt/blk' '\$2 == m && \$1 ~ /^\/dev\/loop/ && \$3 == \"ext4\"' /proc/mounts | grep -q ."
    if [ "$(layout_of pkgblock)" = block ]; then pass "block volume: status shows layout block"; else fail "block volume: status shows layout '$(layout_of pkgblock)'"; fi
    check "block volume: write and read back a file" sh -c \
        "for i in \$(seq 1 200); do echo '$marker'; done >'$tmp/mnt/blk/data.txt' && sync '$tmp/mnt/blk/data.txt' && [ \$(grep -c '$marker' '$tmp/mnt/blk/data.txt') = 200 ]"
    check "block volume: the disk holds the header and one image file, no plaintext, no name" sh -c \
        "[ \"\$(ls -A '$tmp/backing/blk' | tr '\n' ' ')\" = '.scratchcrypt-volume image ' ] && ! grep -rqaF '$marker' '$tmp/backing/blk' && ! grep -rqaF data.txt '$tmp/backing/blk'"
    check_shown "block volume: scratchcrypt wipe --wait" $sc wipe --wait "$tmp/mnt/blk"
    check "block volume: unmounted, image deleted, loop device detached, key gone" sh -c \
        "! grep -qF ' $tmp/mnt/blk ' /proc/mounts && [ ! -e '$tmp/backing/blk' ] && [ -n '$blk_id' ] && [ -z \"\$(grep -lF '$blk_id' /sys/block/loop*/loop/backing_file 2>/dev/null)\" ] && ! keyctl search @u user 'scratchcrypt:$blk_id' >/dev/null 2>&1"
    check "wipe record: job pkgblock, complete" sh -c \
        "grep '\"job\": \"pkgblock\"' '$tmp/log/wipe.jsonl' | grep -q '\"outcome\": \"complete\"'"
else
    echo "SKIP: no /dev/loop-control here: the block layout is not tested"
fi

# The installed Slurm scripts drive prologue/epilogue for a job of user nobody.
jobenv=(env SLURM_JOB_ID=pkgjob SLURM_JOB_UID=65534 SLURM_JOB_GID=65534 SCRATCHCRYPT_CONFIG="$SCRATCHCRYPT_CONFIG"
    SCRATCHCRYPT_RUN_DIR="$SCRATCHCRYPT_RUN_DIR" SCRATCHCRYPT_SLURM_LOG="$tmp/slurm.log")
check "Slurm prolog.sh mounts the job's volume" "${jobenv[@]}" /usr/lib/scratchcrypt/slurm/prolog.sh
check "job volume owned by the job user, mode 0700" sh -c "[ \"\$(stat -c '%u %a' '$tmp/mnt/pkgjob')\" = '65534 700' ]"
if [ -e /dev/loop-control ]; then
    if [ "$(layout_of pkgjob)" = block ]; then
        pass "the prolog's volume has the block layout (layout = auto, loop devices here)"
    else
        fail "the prolog's volume has layout '$(layout_of pkgjob)', not block (layout = auto, loop devices here)"
    fi
fi
check "task_prolog.sh exports SCRATCH (as the job user)" sh -c \
    "${jobenv[*]} setpriv --reuid=65534 --regid=65534 --clear-groups /usr/lib/scratchcrypt/slurm/task_prolog.sh | grep -qx 'export SCRATCH=$tmp/mnt/pkgjob'"
check "the job user writes to its volume" setpriv --reuid=65534 --regid=65534 --clear-groups \
    sh -c "echo '$marker' >'$tmp/mnt/pkgjob/out' && grep -q '$marker' '$tmp/mnt/pkgjob/out'"
check "Slurm epilog.sh wipes it" "${jobenv[@]}" /usr/lib/scratchcrypt/slurm/epilog.sh
# epilogue deletes the ciphertext in the background and writes the record when done.
check "job volume gone, record written (within 20s)" sh -c \
    "! grep -qF ' $tmp/mnt/pkgjob ' /proc/mounts && for i in \$(seq 1 100); do grep -q '\"job\": \"pkgjob\"' '$tmp/log/wipe.jsonl' 2>/dev/null && exit 0; sleep 0.2; done; exit 1"
check "scratchcrypt health: ok on the test node" sh -c "$sc health | grep -qx ok"
check "Slurm healthcheck.sh is executable by root" test -x /usr/lib/scratchcrypt/slurm/healthcheck.sh
if [ "$failed" -ne 0 ] && [ -f "$tmp/slurm.log" ]; then cat "$tmp/slurm.log"; fi

# --- remove, purge, nothing left -------------------------------------------------
check "apt-get remove scratchcrypt" apt-get remove -y -q scratchcrypt
check "after remove: package files gone, conffiles kept" sh -c \
    "while read -r f; do [ -d \"\$f\" ] && continue; grep -qx \"\$f\" '$tmp/conffiles' && continue; [ -e \"\$f\" ] && { echo \"\$f\"; exit 1; }; done <'$tmp/files'; [ -f /etc/scratchcrypt/scratchcrypt.conf ]"
check "apt-get purge scratchcrypt" apt-get purge -y -q scratchcrypt
check "after purge: dpkg knows no scratchcrypt" sh -c "! dpkg-query -W -f='\${Status}' scratchcrypt 2>/dev/null | grep -q 'installed\|config-files'"
leftover=$(while read -r f; do case "$f" in *scratchcrypt*) [ -e "$f" ] && echo "$f" ;; esac; done <"$tmp/files")
if [ -z "$leftover" ]; then pass "after purge: every scratchcrypt path of dpkg -L is gone"; else fail "left behind: $leftover"; fi
check "after purge: /etc/scratchcrypt and /etc/default/scratchcrypt gone" sh -c "[ ! -e /etc/scratchcrypt ] && [ ! -e /etc/default/scratchcrypt ]"
check "after purge: no systemd enablement left" sh -c \
    "! ls /etc/systemd/system/*/scratchcrypt* /var/lib/systemd/deb-systemd-helper-enabled/scratchcrypt* /var/lib/systemd/deb-systemd-helper-enabled/*/scratchcrypt* 2>/dev/null | grep -q ."
if [ -z "$(our_mounts)" ]; then pass "no volume mounts of the test left"; else fail "mounts left: $(our_mounts)"; fi
procs=$(our_processes)
if [ -z "$procs" ]; then pass "no scratchcrypt processes of the package left"; else fail "scratchcrypt processes left: $procs"; fi
installed_by_us=0

echo "package test took $(($(date +%s) - start))s"
finish
