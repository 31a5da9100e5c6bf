#!/usr/bin/env bash
# multicore.sh - does detour's UDP throughput scale with cores? One bounded run per setup,
# N reps, on the anchors' zone and query mix (../shared/bench-anchors), loopback only.
#
# usage: bench/multicore.sh [--reps N] [-l SECS]
#
# Setups, each loaded by the same dnsperf (2 threads, 8 sockets, unpinned: it shares the
# cores with the server, as it must on a 2-core machine):
#   detour-1w   udp_workers = 1, pinned to CPU 0          (one socket, one thread)
#   detour-Nw   udp_workers = N (every CPU), unpinned      (N SO_REUSEPORT sockets, N threads)
#   gdnsd-1t    udp_threads => 1, pinned to CPU 0
#   gdnsd-Nt    udp_threads => N, unpinned
# Prints the shared qps.sh lines and a median table: QPS, server CPU%, QPS per busy core.
# Scaling shows as server CPU above 100 % at an unchanged QPS per busy core; total QPS is
# capped by dnsperf, which needs about a core of its own.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
. "$here/lib.sh"
reps=3 secs=10
while [[ $# -gt 0 ]]; do
  case "$1" in
    --reps) need_arg "$@"; reps="$2"; shift 2;;
    -l) need_arg "$@"; secs="$2"; shift 2;;
    -h|--help) usage; exit 0;;
    *) usage >&2; die "unknown option $1";;
  esac
done
in_range "$reps" 1 100 || die "--reps must be 1..100"
in_range "$secs" 1 600 || die "-l must be 1..600 seconds"
shared="$root/../shared/bench-anchors"
need_cmds "dnsperf gdnsd bind9-dnsutils util-linux" dnsperf gdnsd dig taskset
n="$(nproc)"
all="0-$((n - 1))"
work="$(mktemp -d /tmp/detour-multicore.XXXXXX)"
cp -r "$shared" "$work/h" && chmod -R u+w "$work/h"
(cd "$root" && cargo build --release --quiet)
(cd "$work/h" && anchors/gen-configs.sh >/dev/null)
pid=""
stop() { if [[ -n "$pid" ]]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi; pid=""; }
trap stop EXIT

# start SETUP: starts the server of one setup, sets pid and addr
start() {
  case "$1" in
    detour-*)
      rm -rf "$work/d" && cp -r "$here/anchors" "$work/d"
      local workers=1 cpus=0
      [[ "$1" == detour-Nw ]] && { workers="$n"; cpus="$all"; }
      sed -i "s/^udp_workers *=.*/udp_workers  = $workers/" "$work/d/detour.toml"
      (cd "$work/d" && exec taskset -c "$cpus" "$root/target/release/detour" run --config detour.toml 2>"$work/$1.log") &
      pid=$!; addr=127.0.0.1:5309;;
    gdnsd-*)
      local threads=1 cpus=0
      [[ "$1" == gdnsd-Nt ]] && { threads="$n"; cpus="$all"; }
      sed -i "s/udp_threads => [0-9]*/udp_threads => $threads/" "$work/h/anchors/gdnsd/config"
      (exec taskset -c "$cpus" gdnsd -c "$work/h/anchors/gdnsd" start >"$work/$1.log" 2>&1) &
      pid=$!; addr=127.0.0.1:5301;;
  esac
  for _ in $(seq 1 100); do
    dig +short +time=1 +tries=1 @"${addr%:*}" -p "${addr#*:}" mls.example.test >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "$1 did not answer" >&2; exit 1
}

setups=(detour-1w detour-Nw gdnsd-1t gdnsd-Nt)
out="$work/runs.tsv"
for ((r = 1; r <= reps; r++)); do
  for ((j = 0; j < ${#setups[@]}; j++)); do
    s="${setups[$(((j + r - 1) % ${#setups[@]}))]}"
    start "$s"
    line=$("$work/h/qps.sh" -l "$secs" -q 200 -c 8 -T 2 --cpu none --no-pct --wait-idle 60 \
      --pid "$pid" --label "$s" "$addr" "$work/h/queries/example.test.txt")
    stop
    printf 'rep=%s\t%s\n' "$r" "$line" | tee -a "$out" | cut -f1-4,13-16
  done
done
echo
echo "| setup | QPS (median) | server CPU% | QPS per busy server core | dnsperf CPU% |"
echo "|---|---|---|---|---|"
for s in "${setups[@]}"; do
  grep -P "label=$s\t" "$out" | python3 -c '
import sys, statistics
rows = [dict(f.split("=", 1) for f in l.rstrip("\n").split("\t")) for l in sys.stdin]
med = lambda k: statistics.median(float(r[k]) for r in rows)
q, c, k, d = (med(k) for k in ("qps", "srv_cpu%", "qps_per_srv_core", "dnsperf_cpu%"))
print(f"| {sys.argv[1]} | {q:,.0f} | {c:.0f} | {k:,.0f} | {d:.0f} |")
' "$s"
done
echo "runs: $out"
