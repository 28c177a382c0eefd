#!/bin/bash
# How busy each core is while one request runs: serves a build on a data
# directory, asks one warm-up query, then samples the server (`perf record
# -F 1999`, with call stacks) while the query asked is answered, and
# prints the samples per 20 ms bin (80 = both cores of a 2-core machine
# busy) with, for a bin where a core waited, what the busy threads ran
# (docs/benchmarks.md, twenty-second session; decision 208).
#
#   docs/bench-timeline.sh BIN DIR QUERY [WARMUP]
#
# QUERY and WARMUP: an API path and query after /v1/ (e.g.
# `ptl?as_of=2026-11-05&limit=50`). Needs perf and python3. The server's
# debug log of past views is left in /tmp/timeline-serve.log.
set -u
BIN=$1; DIR=$2; Q=$3; WARMUP=${4:-ptl?limit=50}
T=timeline-0123456789abcdef0123
OPENPTL_BOOTSTRAP_ADMIN_TOKEN=$T OPENPTL_LOG="openptl_app::past=debug,openptl_app::views=debug,info" \
  "$BIN" serve --data-dir "$DIR" --listen 127.0.0.1:18082 --grpc-listen off > /tmp/timeline-serve.log 2>&1 &
PID=$!
for _ in $(seq 1 600); do curl -sf http://127.0.0.1:18082/readyz > /dev/null && break; sleep 1; done
sleep 60
ask() { curl -s -o /dev/null -w "%{time_total} s\n" -H "authorization: Bearer $T" "http://127.0.0.1:18082/v1/$1"; }
ask "$WARMUP" > /dev/null
perf record -F 1999 -g -p "$PID" -o /tmp/timeline.data > /dev/null 2>&1 &
PERF=$!
sleep 1
ask "$Q"
sleep 0.5
kill -INT "$PERF"; wait "$PERF"
kill "$PID"
perf script -i /tmp/timeline.data -F tid,time,ip,sym 2> /dev/null | python3 -c '
import collections, re, sys
header = re.compile(r"^\s*(\d+)\s+(\d+\.\d+):")
samples, current = [], None
for line in sys.stdin:
    m = header.match(line)
    if m:
        if current:
            samples.append(current)
        current = (float(m.group(2)), m.group(1), [])
        continue
    frame = line.strip().split(None, 1)
    if current and len(frame) > 1:
        current[2].append(re.sub(r"\+0x[0-9a-f]+$", "", frame[1]))
if current:
    samples.append(current)
bins = collections.defaultdict(list)
for t, tid, stack in samples:
    bins[int(t * 50)].append((tid, stack))
busy = [k for k in sorted(bins) if len(bins[k]) > 10]
if not busy:
    sys.exit("no busy bin sampled")
for k in range(busy[0], busy[-1] + 1):
    b = bins.get(k, [])
    threads = len({tid for tid, _ in b})
    line = f"{(k - busy[0]) * 20:5d} ms {len(b):3d} samples, {threads} threads"
    if 0 < len(b) < 65:
        what = collections.Counter()
        for _, stack in b:
            ours = [f for f in stack if "openptl" in f and "fold::" not in f]
            what[(ours[0] if ours else stack[0])[:70]] += 1
        line += "  " + "; ".join(f"{n} {f}" for f, n in what.most_common(3))
    print(line)
'
