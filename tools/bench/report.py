"""Medians, ratios and the markdown tables, from the raw run records."""

import statistics

GiB = 1 << 30


def _median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def summarize(steps, systems, records, rss_records):
    """steps: [(scenario, Step)]; records: one dict per (rep, step, system)."""
    rows = []
    for scen, st in steps:
        row = {"scenario": scen, "step": st.key, "label": st.label,
               "unit": st.unit, "higher_is_better": st.higher_is_better,
               "systems": {}}
        for s in systems:
            recs = [r for r in records if r["step"] == st.key and r["system"] == s]
            ok = [r for r in recs if r["ok"]]
            cpu = []
            for r in ok:
                if r.get("daemon_cpu_s") is None:
                    continue
                if r.get("bytes"):
                    cpu.append(r["daemon_cpu_s"] / (r["bytes"] / GiB))
                elif r.get("files"):
                    cpu.append(r["daemon_cpu_s"] * 1e3 / (r["files"] / 1e3))
            rss = [r["peak_rss_kib"] for r in rss_records
                   if r["scenario"] == scen and r["system"] == s
                   and r.get("peak_rss_kib")]
            vals = [r["value"] for r in ok]
            row["systems"][s] = {
                "runs": len(ok), "errors": [r["error"] for r in recs if not r["ok"]],
                "values": vals, "median": _median(vals),
                "min": min(vals) if vals else None,
                "max": max(vals) if vals else None,
                "daemon_cpu": _median(cpu),
                "daemon_cpu_unit": ("s/GiB" if any(r.get("bytes") for r in ok)
                                    else "ms/1k files"),
                "peak_rss_mib": max(rss) / 1024 if rss else None,
            }
        for ref in ("native", "gocryptfs"):
            base = row["systems"].get(ref, {}).get("median")
            for s, d in row["systems"].items():
                d[f"speed_vs_{ref}"] = _speed(d["median"], base, st.higher_is_better)
        rows.append(row)
    return rows


def _speed(v, ref, higher_is_better):
    """Relative speed: > 1 means faster than the reference."""
    if not v or not ref:
        return None
    return v / ref if higher_is_better else ref / v


def _num(v, unit):
    if v is None:
        return "n/a"
    if unit == "s":
        return f"{v:.2f}" if v < 100 else f"{v:.0f}"
    return f"{v:,.0f}" if v >= 100 else f"{v:.1f}"


def _ratio(v):
    return "n/a" if v is None else f"{v:.2f}"


def markdown(rows, systems, unavailable, runs):
    fuse = [s for s in systems if s != "native"]
    out = [f"Median of {runs} run{'s' if runs != 1 else ''} per cell "
           "(MiB/s, IOPS, ops/s: higher is better; s: lower is better).", ""]
    out.append("| workload | unit | " + " | ".join(systems) + " |")
    out.append("|---|---|" + "---:|" * len(systems))
    for r in rows:
        cells = []
        for s in systems:
            d = r["systems"][s]
            c = _num(d["median"], r["unit"])
            if 0 < d["runs"] < runs:
                c += f" (n={d['runs']})"
            if d["errors"]:
                c += f" ({len(d['errors'])} failed)"
            cells.append(c)
        out.append(f"| {r['label']} | {r['unit']} | " + " | ".join(cells) + " |")

    out += ["", "Relative speed (> 1 faster, < 1 slower than the reference; "
            "from the medians above).", ""]
    cols = [(s, "native") for s in fuse if "native" in systems]
    if "gocryptfs" in systems:
        cols += [(s, "gocryptfs") for s in fuse if s != "gocryptfs"]
    if cols:
        out.append("| workload | " + " | ".join(f"{s} / {ref}" for s, ref in cols) + " |")
        out.append("|---|" + "---:|" * len(cols))
        for r in rows:
            out.append(f"| {r['label']} | " + " | ".join(
                _ratio(r["systems"][s].get(f"speed_vs_{ref}")) for s, ref in cols) + " |")

    if fuse:
        out += ["", "FUSE daemon CPU time (user + system, median) per GiB moved, "
                "or per 1,000 files for metadata steps; peak RSS (VmHWM, max "
                "over runs) per scenario.", ""]
        out.append("| workload | " + " | ".join(f"{s} CPU" for s in fuse) + " |")
        out.append("|---|" + "---:|" * len(fuse))
        for r in rows:
            cells = []
            for s in fuse:
                d = r["systems"][s]
                cells.append("n/a" if d["daemon_cpu"] is None else
                             f"{d['daemon_cpu']:.2f} {d['daemon_cpu_unit']}")
            out.append(f"| {r['label']} | " + " | ".join(cells) + " |")
        out += ["", "| scenario | " + " | ".join(f"{s} peak RSS" for s in fuse) + " |",
                "|---|" + "---:|" * len(fuse)]
        seen = []
        for r in rows:
            if r["scenario"] in seen:
                continue
            seen.append(r["scenario"])
            cells = []
            for s in fuse:
                v = r["systems"][s]["peak_rss_mib"]
                cells.append("n/a" if v is None else f"{v:.0f} MiB")
            out.append(f"| {r['scenario']} | " + " | ".join(cells) + " |")
    if unavailable:
        out += [""] + [f"- {s}: unavailable ({why})" for s, why in unavailable.items()]
    return "\n".join(out) + "\n"
