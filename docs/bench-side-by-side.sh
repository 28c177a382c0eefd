#!/bin/bash
# Two builds served side by side, each from its own copy of one data
# directory, and each query's first answer asked of one and then the other
# (the order alternating), a minute after both are ready: on a machine
# whose speed drifts within minutes, this compares builds where serving
# one after the other cannot (docs/benchmarks.md, nineteenth session).
#
#   docs/bench-side-by-side.sh BIN_A DIR_A BIN_B DIR_B QUERIES [PATH]
#
# QUERIES: a file of query strings, one per line (e.g.
# `as_of=2026-11-23&limit=50`); PATH: the API path after /v1/ (default
# `ptl`). Prints, per query, each build's wall seconds (curl), processor
# seconds (the server's, from /proc) and the answer's MD5.
set -u
A=$1; DA=$2; B=$3; DB=$4; QUERIES=$5; QPATH=${6:-ptl}
T=side-by-side-0123456789abcdef
start() { # bin dir port log
  env OPENPTL_BOOTSTRAP_ADMIN_TOKEN=$T OPENPTL_LOG="${OPENPTL_LOG:-info}" "$1" serve --data-dir "$2" \
    --listen "127.0.0.1:$3" --grpc-listen off > "$4" 2>&1 &
  echo $!
}
ready() { for _ in $(seq 1 600); do curl -sf "http://127.0.0.1:$1/readyz" > /dev/null && return; sleep 1; done; }
PA=$(start "$A" "$DA" 18080 /tmp/side-a.log); ready 18080
PB=$(start "$B" "$DB" 18081 /tmp/side-b.log); ready 18081
sleep 60
cpu() { awk '{print $14+$15}' "/proc/$1/stat"; }
ask() { # pid port query
  local c0 c1 t
  c0=$(cpu "$1")
  t=$( { /usr/bin/time -f "%e" curl -s -o "/tmp/side-$2.out" -H "authorization: Bearer $T" \
    "http://127.0.0.1:$2/v1/$QPATH?$3"; } 2>&1 )
  c1=$(cpu "$1")
  echo "$t $(echo "scale=2; ($c1-$c0)/100" | bc) $(md5sum < "/tmp/side-$2.out" | cut -c1-8)"
}
n=0
while read -r q; do
  [ -z "$q" ] && continue
  if [ $((n % 2)) = 0 ]; then ra=$(ask "$PA" 18080 "$q"); rb=$(ask "$PB" 18081 "$q");
  else rb=$(ask "$PB" 18081 "$q"); ra=$(ask "$PA" 18080 "$q"); fi
  echo "$q | A $ra | B $rb"
  n=$((n + 1))
done < "$QUERIES"
kill "$PA" "$PB"
