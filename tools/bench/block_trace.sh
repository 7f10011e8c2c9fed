#!/bin/bash
# block_trace.sh MNT COMMAND...: what COMMAND sends through the block volume
# mounted at MNT, counted with perf tracepoints: the FUSE requests to its
# image (fuse:fuse_request_send, by opcode, with the average bytes sent in)
# and the requests issued to its loop device (block:block_rq_issue, by rwbs:
# W write, R read, D discard, F first = flush, S sync, M metadata, A ahead).
# Caches are dropped first. Needs root and perf (linux-perf).
set -euo pipefail
mnt=$1; shift
dev=$(basename "$(findmnt -no SOURCE "$mnt")")
image=$(cat "/sys/block/$dev/loop/backing_file")
conn=$(mountpoint -d "$(dirname "$image")" | cut -d: -f2)
devno=$(tr : , < "/sys/block/$dev/dev")
data=$(mktemp /tmp/block_trace.XXXXXX)
trap 'rm -f "$data" "$data.old"' EXIT
sync; echo 3 > /proc/sys/vm/drop_caches
perf record -q -a -e fuse:fuse_request_send -e block:block_rq_issue -o "$data" -- "$@" >/dev/null
perf script -i "$data" 2>/dev/null | python3 -c '
import collections, re, sys
conn, devno = sys.argv[1], sys.argv[2]
ops, op_bytes = collections.Counter(), collections.Counter()
rqs, rq_bytes = collections.Counter(), collections.Counter()
for line in sys.stdin:
    m = re.search(r"fuse_request_send: connection (\d+) req \d+ opcode \d+ \((\w+)\) len (\d+)", line)
    if m and m.group(1) == conn:
        ops[m.group(2)] += 1
        op_bytes[m.group(2)] += int(m.group(3))
        continue
    m = re.search(r"block_rq_issue: (\d+,\d+) (\w+) \d+ \(.*?\) \d+ \+ (\d+)", line)
    if m and m.group(1) == devno:
        rqs[m.group(2)] += 1
        rq_bytes[m.group(2)] += int(m.group(3)) * 512
print("FUSE:", ", ".join(f"{k} {n} (avg {op_bytes[k] / n / 1024:.0f} KiB in)"
                         for k, n in ops.most_common()) or "none")
print("loop:", ", ".join(f"{k} {n} (avg {rq_bytes[k] / n / 1024:.0f} KiB)"
                         for k, n in rqs.most_common()) or "none")
' "$conn" "$devno"
