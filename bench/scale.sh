#!/usr/bin/env bash
# scale.sh - memory and load time: idle RSS on the example config, then a generated zone
# of N A records (default 100,000): `detour check` time, start to first answer, RSS after
# load and its peak, bytes per record, and UDP QPS on it next to the anchors' small zone
# (the baseline, same command, same dnsperf options); then what a failover flip costs when
# the big zone holds a dynamic record (the zone's content and index are rebuilt, its answers
# compiled again where the change shows, and it is diffed for IXFR)
# next to a flip that touches only the small zone (the baseline, same server). Loopback
# only, every run bounded.
#
# usage: bench/scale.sh [--records N] [-l SECS] [--flips N] [--bin PATH] [--dnssec]
#   --bin     measure this detour binary instead of building the checkout (A/B of commits)
#   --dnssec  both zones signed ([dnssec], ECDSA P-256, NSEC3): what a flip costs when it
#             must pick signed answers (run once without and once with, same machine)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
. "$here/lib.sh"
records=100000 secs=8 flips=40 bin="" dnssec=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --records) need_arg "$@"; records="$2"; shift 2;;
    -l) need_arg "$@"; secs="$2"; shift 2;;
    --flips) need_arg "$@"; flips="$2"; shift 2;;
    --bin) need_arg "$@"; bin="$2"; shift 2;;
    --dnssec) dnssec=1; shift;;
    -h|--help) usage; exit 0;;
    *) usage >&2; die "unknown option $1";;
  esac
done
in_range "$records" 1 999999 || die "--records must be 1..999999"
in_range "$secs" 1 600 || die "-l must be 1..600 seconds"
in_range "$flips" 2 1000 || die "--flips must be 2..1000"
need_cmds "dnsperf bind9-dnsutils util-linux" dnsperf dig taskset
if [[ -z "$bin" ]]; then
  (cd "$root" && cargo build --release --quiet)
  bin="$root/target/release/detour"
fi
[[ -f "$bin" && -x "$bin" ]] || die "--bin $bin is not an executable file"
work="$(mktemp -d /tmp/detour-scale.XXXXXX)"
pid=""
stop() { if [[ -n "$pid" ]]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi; pid=""; }
trap stop EXIT
now() { date +%s.%N; }
kb() { awk -v k="$1" '$1 == k":" { print $2 }' "/proc/$pid/status"; }
# answers PORT NAME: polls every 10 ms (at most 30 s) until NAME answers
answers() {
  local i
  for ((i = 0; i < 3000; i++)); do
    dig +short +time=1 +tries=1 @127.0.0.1 -p "$1" "$2" 2>/dev/null | grep -q "^[0-9]" && return 0
    kill -0 "$pid" 2>/dev/null || { echo "detour exited" >&2; exit 1; }
    sleep 0.01
  done
  echo "no answer from $2 within 30 s" >&2; exit 1
}

# 1. Idle RSS, example config (ports moved to loopback test ports).
mkdir -p "$work/example"
cp -r "$root/config" "$root/zones" "$work/example/"
sed -i -e 's/127.0.0.1:5353/127.0.0.1:5339/' -e 's/127.0.0.1:8080/127.0.0.1:0/' \
  -e 's/^admin_listen.*/admin_listen = "unix:state\/admin.sock"/' "$work/example/config/detour.toml"
(cd "$work/example/config" && exec "$bin" run --config detour.toml 2>"$work/example.log") &
pid=$!
answers 5339 mls.example.test
sleep 2
idle_rss=$(kb VmRSS)
stop

# 2. A generated zone.
mkdir -p "$work/big/zones"
cp "$here/anchors/detour.toml" "$work/big/detour.toml"
sed -i 's/127.0.0.1:5309/127.0.0.1:5349/' "$work/big/detour.toml"
cp "$here/anchors/zones/example.test.toml" "$work/big/zones/"
# For the flips: `other` has a record in the small zone only; `mls` one in each zone.
printf '\n[services.other]\nname = "Other"\n' >>"$work/big/detour.toml"
printf '\n[[dynamic]]\nname = "other"\ntype = "A"\nanswers = [ { if_up = "other", values = ["127.0.0.30"] } ]\notherwise = ["127.0.0.81"]\n' \
  >>"$work/big/zones/example.test.toml"
python3 - "$records" "$work/big/zones/big.test.toml" "$work/big/queries.txt" <<'PY'
import random, sys
n, zone, queries = int(sys.argv[1]), sys.argv[2], sys.argv[3]
with open(zone, "w") as z:
    z.write('origin = "big.test."\nsoa = { mname = "ns1.big.test.", rname = "h.big.test." }\n')
    z.write('ns = ["ns1.big.test."]\nrecords = [\n  { name = "ns1", type = "A", value = "127.0.0.1" },\n')
    for i in range(n):
        z.write(f'  {{ name = "h{i}", type = "A", value = "10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}" }},\n')
    z.write("]\n")
    z.write('[[dynamic]]\nname = "flip"\ntype = "A"\nanswers = [ { if_up = "mls", values = ["127.0.0.10"] } ]\notherwise = ["127.0.0.80"]\n')
rnd = random.Random(1)
with open(queries, "w") as q:
    for _ in range(100000):
        q.write(f"h{rnd.randrange(n)}.big.test A\n")
PY
if [[ $dnssec -eq 1 ]]; then
  for z in "$work/big/zones/big.test.toml" "$work/big/zones/example.test.toml"; do
    printf '\n[dnssec]\nalgorithm = "ecdsap256sha256"\ndenial = "nsec3"\n' >>"$z"
  done
fi
zone_mb=$(du -m "$work/big/zones/big.test.toml" | cut -f1)
t0=$(now)
"$bin" check --config "$work/big/detour.toml" >"$work/check.out" 2>&1 || { cat "$work/check.out" >&2; exit 1; }
t1=$(now)
check_s=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
t0=$(now)
(cd "$work/big" && exec taskset -c 0 "$bin" run --config detour.toml 2>"$work/big.log") &
pid=$!
answers 5349 h$((records - 1)).big.test
t1=$(now)
first_s=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
sleep 1
rss=$(kb VmRSS) hwm=$(kb VmHWM)
load() { # queries-file label
  taskset -c 1 dnsperf -s 127.0.0.1 -p 5349 -d "$1" -l "$secs" -q 100 -t 2 2>&1 \
    | awk -v l="$2" '/Queries lost/ { lost = $3 } /Queries per second/ { q = $4 } END { printf "%s qps=%d lost=%s\n", l, q, lost }'
}
q_small1=$(load "$root/../shared/bench-anchors/queries/example.test.txt" small)
q_big=$(load "$work/big/queries.txt" big)
q_small2=$(load "$root/../shared/bench-anchors/queries/example.test.txt" small)
flip() { # service name up down
  python3 "$here/helper.py" flips --admin-sock "$work/big/state/admin.sock" --pid "$pid" \
    --service "$1" --server 127.0.0.1:5349 --name "$2" --up "$3" --down "$4" --count "$flips"
}
f_small=$(flip other other.example.test 127.0.0.30 127.0.0.81)
f_big=$(flip mls flip.big.test 127.0.0.10 127.0.0.80)
rss_flips=$(kb VmRSS)
stop

[[ $dnssec -eq 1 ]] && echo "zones signed ([dnssec], ECDSA P-256, NSEC3)"
echo "idle RSS, example config:       $((idle_rss / 1024)).$(((idle_rss % 1024) * 10 / 1024)) MB"
echo "zone:                           $records A records, ${zone_mb} MB of TOML"
echo "detour check:                   ${check_s} s"
echo "start to first answer:          ${first_s} s"
echo "RSS after load / peak:          $((rss / 1024)) MB / $((hwm / 1024)) MB"
echo "bytes per record:               $(((rss - idle_rss) * 1024 / records))"
echo "UDP, same server, same run:     $q_small1 | $q_big | $q_small2"
echo "flip, small zone only:          $f_small"
echo "flip, small zone and big zone:  $f_big"
echo "RSS after the flips:            $((rss_flips / 1024)) MB"
echo "(work dir $work)"
