#!/usr/bin/python3
"""Checks a scratchcrypt metrics file against the Prometheus text exposition
format: parsed by prometheus_client's own parser, and checked line by line
against the grammar and conventions (HELP and TYPE before the samples of each
family, the scratchcrypt_ prefix, units in names, counters ending in _total,
histograms with increasing buckets ending in +Inf = _count, no duplicate
series). Prints "ok: ..." and exits 0, or one line per error and exits 1.

    check_metrics.py FILE
"""
import math
import re
import sys

from prometheus_client.parser import text_string_to_metric_families

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\\\|\\"|\\n)*"'
SAMPLE = re.compile(r"^(%s)(?:\{((?:%s)(?:,(?:%s))*)?\})? (\S+)(?: (-?\d+))?$" % (NAME, LABEL, LABEL))
TYPES = {"counter", "gauge", "histogram", "summary", "untyped"}


def value_of(text):
    if text in ("+Inf", "-Inf", "NaN"):
        return float(text.replace("Inf", "inf").replace("NaN", "nan"))
    if not re.match(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$", text):
        raise ValueError(text)
    return float(text)


def check(text):
    errors = []
    if not text.endswith("\n"):
        errors.append("the file does not end with a newline")
    families = {}  # name -> {"type", "help", "samples": [(name, labels, value)]}
    current = None
    seen = set()
    for number, line in enumerate(text.splitlines(), 1):
        where = "line %d" % number
        if line.startswith("# HELP ") or line.startswith("# TYPE "):
            parts = line.split(" ", 3)
            if len(parts) < 4 or not re.match("^%s$" % NAME, parts[2]):
                errors.append("%s: malformed %s line" % (where, parts[1]))
                continue
            kind, name, rest = parts[1], parts[2], parts[3]
            family = families.setdefault(name, {"type": None, "help": None, "samples": []})
            if family["samples"]:
                errors.append("%s: %s of %s after its samples" % (where, kind, name))
            if kind == "TYPE":
                if family["type"] is not None:
                    errors.append("%s: second TYPE for %s" % (where, name))
                if rest not in TYPES:
                    errors.append("%s: unknown type %r" % (where, rest))
                family["type"] = rest
            else:
                if family["help"] is not None:
                    errors.append("%s: second HELP for %s" % (where, name))
                family["help"] = rest
            current = name
            continue
        if line.startswith("#") or not line.strip():
            errors.append("%s: comment or blank line that is neither HELP nor TYPE" % where)
            continue
        match = SAMPLE.match(line)
        if not match:
            errors.append("%s: not a sample line: %r" % (where, line))
            continue
        name, labels_text, value_text = match.group(1), match.group(2) or "", match.group(3)
        try:
            value = value_of(value_text)
        except ValueError:
            errors.append("%s: bad value %r" % (where, value_text))
            continue
        labels = tuple(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', labels_text))
        if (name, labels) in seen:
            errors.append("%s: duplicate series %s%s" % (where, name, labels))
        seen.add((name, labels))
        family = families.get(current)
        base = current or ""
        allowed = {base}
        if family and family["type"] == "histogram":
            allowed = {base + "_bucket", base + "_sum", base + "_count"}
        if name not in allowed:
            errors.append("%s: sample %s outside its family (last TYPE: %s)" % (where, name, current))
            continue
        family["samples"].append((name, dict(labels), value))

    for name, family in families.items():
        if not name.startswith("scratchcrypt_"):
            errors.append("%s: no scratchcrypt_ prefix" % name)
        if family["type"] is None or family["help"] is None:
            errors.append("%s: needs both HELP and TYPE" % name)
        if not family["samples"]:
            errors.append("%s: no samples" % name)
        if family["type"] == "counter":
            if not name.endswith("_total"):
                errors.append("%s: a counter's name must end in _total" % name)
            if any(v < 0 or math.isnan(v) for _, _, v in family["samples"]):
                errors.append("%s: a counter below zero" % name)
        elif name.endswith("_total"):
            errors.append("%s: _total is for counters" % name)
        if ("duration" in name or "timestamp" in name) and not name.endswith("_seconds"):
            errors.append("%s: times are in seconds, named _seconds" % name)
        if "bytes" in name and not re.search(r"_bytes(_total)?$", name):
            errors.append("%s: a byte count must be named _bytes" % name)
        if family["type"] == "histogram":
            buckets = [(s[1].get("le"), s[2]) for s in family["samples"] if s[0] == name + "_bucket"]
            counts = [s[2] for s in family["samples"] if s[0] == name + "_count"]
            if not buckets or buckets[-1][0] != "+Inf":
                errors.append("%s: the last bucket must be le=\"+Inf\"" % name)
            bounds = [value_of(le) for le, _ in buckets]
            if bounds != sorted(bounds) or len(set(bounds)) != len(bounds):
                errors.append("%s: bucket bounds not increasing" % name)
            values = [v for _, v in buckets]
            if values != sorted(values):
                errors.append("%s: bucket counts not cumulative" % name)
            if len(counts) != 1 or (buckets and counts[0] != buckets[-1][1]):
                errors.append("%s: _count must equal the +Inf bucket" % name)
    # And the reference parser must read it all.
    try:
        parsed = list(text_string_to_metric_families(text))
        if len(parsed) != len(families):
            errors.append("prometheus_client read %d families, the file has %d" % (len(parsed), len(families)))
    except Exception as e:  # noqa: BLE001 - any parser error is a format error
        errors.append("prometheus_client cannot parse it: %s" % e)
    return errors, families


def main():
    if len(sys.argv) != 2:
        print(__doc__.strip().splitlines()[-1].strip())
        return 2
    with open(sys.argv[1]) as f:
        text = f.read()
    errors, families = check(text)
    for error in errors:
        print(error)
    if errors:
        return 1
    print("ok: %d families, %d samples" % (len(families), sum(len(f["samples"]) for f in families.values())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
