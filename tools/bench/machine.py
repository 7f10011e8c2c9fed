"""What the numbers were measured on: CPU, AES-relevant flags, kernel,
memory, and the disk and file system under the backing directories."""

import os
import platform
import subprocess

AES_FLAGS = ["aes", "vaes", "pclmulqdq", "vpclmulqdq", "avx2", "avx512f",
             "avx512vl", "gfni"]


def _out(argv):
    try:
        p = subprocess.run(argv, capture_output=True, timeout=10,
                           stdin=subprocess.DEVNULL)
        return p.stdout.decode(errors="replace").strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def collect(workdir):
    model, flags = "", set()
    with open("/proc/cpuinfo") as f:
        for line in f:
            k, _, v = line.partition(":")
            k = k.strip()
            if k == "model name" and not model:
                model = v.strip()
            elif k == "flags" and not flags:
                flags = set(v.split())
    mem_kib = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    src, fstype, opts = (_out(["findmnt", "-no", "SOURCE,FSTYPE,OPTIONS",
                               "--target", workdir]).split() + ["", "", ""])[:3]
    dev = os.path.basename(src)
    name, size, rota, *dmodel = (_out(["lsblk", "-ndo", "NAME,SIZE,ROTA,MODEL", src])
                                .split() if src else []) + ["", "", ""]
    vendor = _out(["cat", f"/sys/block/{dev}/device/vendor"])
    disk = (f"{name or dev}, {size}, reports "
            f"{'rotational' if rota == '1' else 'non-rotational'}"
            + (f", model {' '.join(m for m in dmodel if m)}" if any(dmodel) else "")
            + (" (virtio)" if vendor == "0x1af4" else ""))
    return {
        "cpu_model": model,
        "cores": os.cpu_count(),
        "aes_flags": {fl: fl in flags for fl in AES_FLAGS},
        "avx512_flags": sorted(fl for fl in flags if fl.startswith("avx512")),
        "kernel": platform.release(),
        "memory_gib": round(mem_kib / (1 << 20), 1),
        "os": _out(["sh", "-c", ". /etc/os-release && echo $PRETTY_NAME"]),
        "workdir_fs": {"device": src, "fstype": fstype, "options": opts,
                       "disk": disk},
        "fuse": _out(["fusermount3", "--version"]),
        "fio": _out(["fio", "--version"]),
    }


def markdown(m):
    present = [f for f, on in m["aes_flags"].items() if on]
    absent = [f for f, on in m["aes_flags"].items() if not on]
    fs = m["workdir_fs"]
    return "\n".join([
        f"- CPU: {m['cpu_model']}, {m['cores']} cores visible, "
        f"{m['memory_gib']} GiB RAM",
        f"- AES-relevant flags present: {', '.join(present) or 'none'}"
        + (f"; absent: {', '.join(absent)}" if absent else ""),
        f"- AVX-512 subsets: {', '.join(m['avx512_flags']) or 'none'}",
        f"- Kernel {m['kernel']}, {m['os']}, {m['fuse']}",
        f"- Backing directories on {fs['device']} ({fs['disk']}), {fs['fstype']} "
        f"mounted {fs['options']}"
        + (f"; {m['bench_fs']}" if m.get("bench_fs") else ""),
    ])
