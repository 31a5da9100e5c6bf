#!/usr/bin/env bash
# anchors.sh - detour side by side with gdnsd, NSD, Knot and PowerDNS, in one run of the
# shared harness (../shared/bench-anchors; read-only, so it is copied to a temp folder).
#
# usage: bench/anchors.sh [--reps N] [--swap] [-- extra bench.sh options]
#   --swap   while detour is loaded, flip the `mls` record every 100 ms through the admin
#            API (an override set and cleared), to show a Snapshot swap costs readers nothing
# Every server is on loopback; detour is pinned to CPU 0 like the anchors, dnsperf to CPU 1.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
reps=3 swap=0 extra=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --reps) reps="$2"; shift 2;;
    --swap) swap=1; shift;;
    --) shift; extra=("$@"); break;;
    -h|--help) sed -n '2,9p' "$0"; exit 0;;
    *) echo "unknown option $1" >&2; exit 2;;
  esac
done
shared="$root/../shared/bench-anchors"
[[ -d "$shared" ]] || { echo "no $shared" >&2; exit 2; }
need=(dnsperf gdnsd nsd knotd pdns_server dig)
for c in "${need[@]}"; do
  command -v "$c" >/dev/null || { echo "missing $c: apt-get install -y dnsperf gdnsd nsd knot pdns-server pdns-backend-bind bind9-dnsutils" >&2; exit 2; }
done
work="$(mktemp -d /tmp/detour-anchors.XXXXXX)"
cp -r "$shared" "$work/h" && chmod -R u+w "$work/h"
cp -r "$here/anchors" "$work/detour"
(cd "$root" && cargo build --release --quiet)
(cd "$work/h" && anchors/gen-configs.sh >/dev/null)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
taskset -c 0 "$root/target/release/detour" run --config "$work/detour/detour.toml" 2>"$work/detour.log" &
dpid=$!; pids+=("$dpid")
for _ in $(seq 1 100); do dig +short +time=1 +tries=1 @127.0.0.1 -p 5309 mls.example.test >/dev/null 2>&1 && break; sleep 0.1; done
if [[ $swap -eq 1 ]]; then
  sock="$work/detour/state/admin.sock"
  ( end=$((SECONDS + 600)); s=down
    while [[ $SECONDS -lt $end ]] && kill -0 "$dpid" 2>/dev/null; do
      if [[ $s == down ]]; then
        curl -s --unix-socket "$sock" -X PUT -d '{"state":"down","by":"bench"}' http://d/api/v1/overrides/mls >/dev/null; s=up
      else
        curl -s --unix-socket "$sock" -X DELETE http://d/api/v1/overrides/mls >/dev/null; s=down
      fi
      sleep 0.1
    done ) &
  pids+=("$!")
fi
(cd "$work/h" && ./bench.sh --reps "$reps" "${extra[@]}" gdnsd nsd knot pdns "detour=127.0.0.1:5309@$dpid")
echo "detour log: $work/detour.log; results under $work/h/results"
