#!/usr/bin/env bash
# rrl.sh - what response-rate limiting costs when it limits nothing: detour's UDP throughput
# with [server.rrl] off and on, back to back, on the anchors' zone and query mix
# (../shared/bench-anchors), loopback only.
#
# usage: bench/rrl.sh [--reps N] [-l SECS] [--rate R] [--workers N] [--wait-idle S]
#                     [--max-other P]
#   --reps N     pairs of runs (default 7); the order alternates (off,on then on,off)
#   -l SECS      dnsperf run length (default 10)
#   --rate R     [server.rrl] rate of the "on" runs (default 1000000, the most it takes)
#   --workers N  udp_workers (default 1: detour pinned to CPU 0 and dnsperf to CPU 1, as
#                anchors.sh does; with more, both run unpinned and share the CPUs)
#   --wait-idle S  before each run, wait up to S s for an idle machine (default 10)
#   --max-other P  the summary also gives the figures of the pairs in which other
#                processes used at most P % of a core during both runs (default 15)
#
# dnsperf sends everything from one address, so all its queries count against buckets of
# one prefix: at full speed about 10,000 identical answers a second per line of the mix,
# and 40,000 or more NXDOMAIN sharing the zone's bucket. Traffic without abuse is modelled
# by a rate no bucket reaches: every answer goes through the limiter (key, hash, bucket
# update) and none is limited, which the script checks in the server's
# detour_dns_rrl_*_total after each "on" run. That is the whole cost of RRL to legitimate
# traffic (a limited answer costs less than a sent one: it is not sent).
#
# Each run is the shared qps.sh (dnsperf -q 100); on a shared machine the other load moves
# the figures a lot (other_cpu%), which is why the runs are short, many, interleaved and
# compared in pairs. Prints every run, then the medians of QPS and of QPS per busy server
# core for off and on, the ratio of the medians and the median of the ratios of each pair:
# over all pairs, and over the quiet pairs (--max-other).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
. "$here/lib.sh"
reps=7 secs=10 rate=1000000 workers=1 idle=10 maxother=15
while [[ $# -gt 0 ]]; do
  case "$1" in
    --reps) need_arg "$@"; reps="$2"; shift 2;;
    -l) need_arg "$@"; secs="$2"; shift 2;;
    --rate) need_arg "$@"; rate="$2"; shift 2;;
    --workers) need_arg "$@"; workers="$2"; shift 2;;
    --wait-idle) need_arg "$@"; idle="$2"; shift 2;;
    --max-other) need_arg "$@"; maxother="$2"; shift 2;;
    -h|--help) usage; exit 0;;
    *) usage >&2; die "unknown option $1";;
  esac
done
in_range "$reps" 1 100 || die "--reps must be 1..100"
in_range "$secs" 1 600 || die "-l must be 1..600 seconds"
[[ "$rate" =~ ^[0-9]{1,7}$ ]] && (( 10#$rate >= 1 && 10#$rate <= 1000000 )) || die "--rate must be 1..1000000"
in_range "$workers" 1 64 || die "--workers must be 1..64"
in_range "$idle" 0 600 || die "--wait-idle must be 0..600 seconds"
in_range "$maxother" 0 200 || die "--max-other must be 0..200"
shared="$root/../shared/bench-anchors"
[[ -d "$shared" ]] || die "no $shared"
need_cmds "dnsperf bind9-dnsutils util-linux curl" dnsperf dig taskset curl
STOP_TIMEOUT=15
port=5319
work="$(mktemp -d /tmp/detour-rrl.XXXXXX)"
cp -r "$shared" "$work/h" && chmod -R u+w "$work/h"
(cd "$root" && timeout 1800 cargo build --release --quiet)
bin="${CARGO_TARGET_DIR:-$root/target}/release/detour"
[[ -x "$bin" ]] || die "no $bin after the build"
# Another server on the port would take the load (SO_REUSEPORT): refuse instead.
if dig +short +time=1 +tries=1 @127.0.0.1 -p "$port" mls.example.test >/dev/null 2>&1; then
  die "something already answers on 127.0.0.1:$port; stop it first"
fi
cpus=0 pin=()
if (( workers > 1 )); then cpus="0-$(($(nproc) - 1))"; pin=(--cpu none); fi
pid=""
stop() { stop_pid "$pid"; pid=""; }
trap stop EXIT

# start off|on: detour on 127.0.0.1:$port, the anchors' config with RRL off or on.
start() {
  rm -rf "$work/d" && cp -r "$here/anchors" "$work/d"
  sed -i -e "s/^dns_listen .*/dns_listen   = [\"127.0.0.1:$port\"]/" \
    -e "s/^udp_workers .*/udp_workers  = $workers/" "$work/d/detour.toml"
  [[ "$1" == on ]] && printf '\n[server.rrl]\nrate = %s\n' "$rate" >>"$work/d/detour.toml"
  (cd "$work/d" && exec taskset -c "$cpus" "$bin" run --config detour.toml 2>"$work/$1.log") &
  pid=$!
  for _ in $(seq 1 100); do
    dig +short +time=1 +tries=1 @127.0.0.1 -p "$port" mls.example.test >/dev/null 2>&1 && return 0
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  echo "detour ($1) did not answer; its log:" >&2; tail -5 "$work/$1.log" >&2; exit 1
}

# limited: answers the server dropped or truncated, from its /metrics (0 when none).
limited() {
  curl -s --max-time 5 --unix-socket "$work/d/state/admin.sock" http://detour/metrics |
    awk '/^detour_dns_rrl_(dropped|slipped)_total/ { n += $2 } END { print n + 0 }'
}

out="$work/runs.tsv"
echo "# $(date -Is) bench/rrl.sh --reps $reps -l $secs --rate $rate --workers $workers --wait-idle $idle --max-other $maxother; detour $(git -C "$root" rev-parse --short HEAD)" | tee "$out"
for ((r = 1; r <= reps; r++)); do
  order=(off on)
  (( r % 2 == 0 )) && order=(on off)
  for s in "${order[@]}"; do
    start "$s"
    line=$("$work/h/qps.sh" -l "$secs" -q 100 --no-pct --wait-idle "$idle" "${pin[@]}" \
      --pid "$pid" --label "$s" "127.0.0.1:$port" "$work/h/queries/example.test.txt")
    n=NA
    [[ "$s" == on ]] && n=$(limited)
    printf 'rep=%s\t%s\tlimited=%s\n' "$r" "$line" "$n" | tee -a "$out" | cut -f1-4,13-
    [[ "$n" == NA || "$n" == 0 ]] || echo "  warning: $n answers were limited: --rate is below what one bucket gets" >&2
    stop
  done
done
python3 - "$out" "$maxother" <<'PY'
import statistics, sys
rows = [dict(f.split("=", 1) for f in l.rstrip("\n").split("\t"))
        for l in open(sys.argv[1]) if not l.startswith("#")]
quiet = int(sys.argv[2])
pairs = {}
for r in rows:
    pairs.setdefault(r["rep"], {})[r["label"]] = r
pairs = [p for p in pairs.values() if "on" in p and "off" in p]

def summary(title, pairs):
    print(f"\n{title}: {len(pairs)} pairs")
    if not pairs:
        return
    med = lambda s, k: statistics.median(float(p[s][k]) for p in pairs)
    print("| RRL | QPS (median) | server CPU% | QPS per busy server core (median) |")
    print("|---|---|---|---|")
    for s in ("off", "on"):
        print(f"| {s} | {med(s, 'qps'):,.0f} | {med(s, 'srv_cpu%'):.0f} | {med(s, 'qps_per_srv_core'):,.0f} |")
    paired = sorted(float(p["on"]["qps_per_srv_core"]) / float(p["off"]["qps_per_srv_core"]) for p in pairs)
    print(f"on/off, QPS per busy server core: ratio of medians "
          f"{med('on', 'qps_per_srv_core') / med('off', 'qps_per_srv_core'):.3f}, "
          f"median of paired ratios {statistics.median(paired):.3f} "
          f"(from {paired[0]:.3f} to {paired[-1]:.3f})")
    print(f"on/off, QPS: ratio of medians {med('on', 'qps') / med('off', 'qps'):.3f}")

summary("all pairs", pairs)
summary(f"pairs with other_cpu% <= {quiet} in both runs",
        [p for p in pairs if all(int(p[s]["other_cpu%"]) <= quiet for s in ("on", "off"))])
PY
echo "runs: $out"
