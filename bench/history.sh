#!/usr/bin/env bash
# history.sh - what history (state_dir/history.db) costs, on loopback:
#   1. writes: detour with N http checks, run with [history] enabled = false and = true in
#      interleaved pairs; CPU of the whole process (utime+stime) and of its "history"
#      thread, and the database's size per check per day;
#   2. page: the status page of S services with 90 days of bars (seeded), under wrk, with
#      history off and on in interleaved pairs (and once on without gzip).
#
# usage: bench/history.sh [options]
#   --checks N          part 1: services s00001.., one http check each, default 5000
#   --interval D        their interval, default 5s (timeout 2s)
#   --duration S        part 1: seconds sampled per run, default 60
#   --warmup S          seconds between "ready" and the samples, default 15
#   --pairs N           off/on pairs of each part, default 2
#   --services N        part 2: services with seeded bars, default 50
#   --page-duration S   part 2: wrk seconds per run, default 10
#   --connections N     wrk connections, default 64
#   --skip-writes | --skip-page
#   --bin PATH          detour binary (no build); its examples/history_seed beside it
#                       (default: cargo build --release --bin detour --example history_seed)
#   --keep              keep the temp dir and print its path
#   -h, --help          this text
#
# detour is pinned to CPU 0 and the backend (helper.py httpd) and wrk to CPU 1 when taskset
# and two CPUs are there. Every request goes to 127.0.0.1; every loop is bounded by
# --duration / --page-duration and --pairs; detour is stopped by its PID (SIGTERM, SIGKILL
# after 15 s) however the script exits. Figures are medians over the pairs and the on/off
# ratio; on a shared machine, compare runs of the same command only.
#
# Needs: python3, curl, wrk (Debian packages python3, curl, wrk).
set -euo pipefail

B="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$B/.." && pwd)"
HELPER="$B/helper.py"

CHECKS=5000
INTERVAL=5s
DURATION=60
WARMUP=15
PAIRS=2
SERVICES=50
PAGE_DURATION=10
CONNECTIONS=64
SKIP_WRITES=0
SKIP_PAGE=0
BIN=""
KEEP=0
READY_TIMEOUT=120
STOP_TIMEOUT=15
BACKEND_ADDR=127.0.0.10:18082

. "$B/lib.sh"

while [[ $# -gt 0 ]]; do
  case "$1" in
    --checks)        need_arg "$@"; CHECKS="$2"; shift 2 ;;
    --interval)      need_arg "$@"; INTERVAL="$2"; shift 2 ;;
    --duration)      need_arg "$@"; DURATION="$2"; shift 2 ;;
    --warmup)        need_arg "$@"; WARMUP="$2"; shift 2 ;;
    --pairs)         need_arg "$@"; PAIRS="$2"; shift 2 ;;
    --services)      need_arg "$@"; SERVICES="$2"; shift 2 ;;
    --page-duration) need_arg "$@"; PAGE_DURATION="$2"; shift 2 ;;
    --connections)   need_arg "$@"; CONNECTIONS="$2"; shift 2 ;;
    --skip-writes)   SKIP_WRITES=1; shift ;;
    --skip-page)     SKIP_PAGE=1; shift ;;
    --bin)           need_arg "$@"; BIN="$2"; shift 2 ;;
    --keep)          KEEP=1; shift ;;
    -h|--help)       usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done
in_range "$CHECKS" 1 20000 || die "--checks: 1..20000"
in_range "$DURATION" 5 3600 || die "--duration: 5..3600 seconds"
in_range "$WARMUP" 0 600 || die "--warmup: 0..600 seconds"
in_range "$PAIRS" 1 20 || die "--pairs: 1..20"
in_range "$SERVICES" 1 1000 || die "--services: 1..1000"
in_range "$PAGE_DURATION" 1 120 || die "--page-duration: 1..120 seconds"
in_range "$CONNECTIONS" 1 1000 || die "--connections: 1..1000"
dur_s "$INTERVAL" >/dev/null || die "--interval: a duration such as 5s"
need_cmds "python3 curl wrk" python3 curl
(( SKIP_PAGE )) || need_cmds "wrk" wrk

PIN_D=() PIN_B=()
if command -v taskset >/dev/null && (( $(nproc) > 1 )); then
  PIN_D=(taskset -c 0) PIN_B=(taskset -c 1)
else
  echo "note: not pinning (taskset missing or one CPU)" >&2
fi

TMP="$(mktemp -d)"
DETOUR_PID="" BACKEND_PID=""
cleanup() {
  stop_pid "$DETOUR_PID"
  stop_pid "$BACKEND_PID"
  if (( KEEP )); then echo "kept: $TMP" >&2; else rm -rf "$TMP"; fi
}
trap cleanup EXIT

if [[ -z "$BIN" ]]; then
  echo "building: cargo build --release --bin detour --example history_seed" >&2
  (cd "$ROOT" && cargo build --release --quiet --bin detour --example history_seed)
  BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/detour"
fi
SEED="$(dirname "$BIN")/examples/history_seed"
[[ -x "$BIN" ]] || die "no binary at $BIN"
(( SKIP_PAGE )) || [[ -x "$SEED" ]] || die "no $SEED (cargo build --release --example history_seed)"
cp "$BIN" "$TMP/detour"
echo "binary: $BIN (sha256 $(sha256sum "$TMP/detour" | cut -c1-12)..., built $(date -r "$BIN" -Is))" >&2
HZ="$(getconf CLK_TCK)"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ticks() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "$1"; }
# PID: ticks of its thread named "history" (0 when there is none)
history_ticks() {
  local t
  for t in /proc/"$1"/task/*; do
    [[ "$(cat "$t/comm" 2>/dev/null)" == history ]] && { ticks "$t/stat"; return; }
  done
  echo 0
}
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) { print "NA"; exit } if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# DIR ENABLED EXTRA_CONFIG: writes DIR/detour.toml and zones
write_config() {
  local dir="$1" enabled="$2" services="$3"
  mkdir -p "$dir/zones" "$dir/state"
  {
    cat <<EOF
# generated by bench/history.sh
[server]
dns_listen = ["127.0.0.1:$(free_port)"]
page_listen = ["127.0.0.1:$PAGE_PORT"]
admin_listen = "unix:state/admin.sock"
zones_dir = "zones"
state_dir = "state"

[check_defaults]
interval = "$INTERVAL"
timeout = "2s"

[page]
title = "bench"
timezone = "America/New_York"

[history]
enabled = $enabled
EOF
    cat "$services"
  } >"$dir/detour.toml"
  cat >"$dir/zones/bench.test.toml" <<EOF
origin = "example.test."
soa = { mname = "ns1.example.test.", rname = "h.example.test.", minimum = 30 }
ns = ["ns1.example.test."]
records = [ { name = "ns1", type = "A", value = "127.0.0.1" } ]
EOF
}

# DIR: starts detour on DIR/detour.toml, waits for ready
start_detour() {
  "${PIN_D[@]}" "$TMP/detour" run --config "$1/detour.toml" </dev/null >"$1/detour.log" 2>&1 &
  DETOUR_PID=$!
  local deadline=$((SECONDS + READY_TIMEOUT))
  until grep -qs ' ready$' "$1/detour.log"; do
    kill -0 "$DETOUR_PID" 2>/dev/null || { tail -n 20 "$1/detour.log" >&2; die "detour exited during start-up"; }
    (( SECONDS < deadline )) || { tail -n 20 "$1/detour.log" >&2; die "detour not ready within ${READY_TIMEOUT}s"; }
    sleep 0.05
  done
}

# ---- part 1: writes -----------------------------------------------------------------

if (( ! SKIP_WRITES )); then
  python3 - "$CHECKS" "$BACKEND_ADDR" >"$TMP/checks.toml" <<'EOF'
import sys
n, addr = int(sys.argv[1]), sys.argv[2]
for i in range(1, n + 1):
    print(f'\n[services.s{i:05d}]\ncheck = {{ type = "http", url = "http://{addr}/s{i:05d}" }}')
EOF
  LIFETIME=$(( PAIRS * 2 * (READY_TIMEOUT + WARMUP + DURATION + 30) ))
  "${PIN_B[@]}" python3 "$HELPER" httpd --listen "$BACKEND_ADDR" --stats "$TMP/backend.stats" \
    --lifetime "$LIFETIME" </dev/null >"$TMP/backend.out" 2>&1 &
  BACKEND_PID=$!
  for ((i = 0; i < 100; i++)); do accepts "$BACKEND_ADDR" && break; sleep 0.1; done
  accepts "$BACKEND_ADDR" || { cat "$TMP/backend.out" >&2; die "backend did not start"; }
  : >"$TMP/writes.tsv"
  for ((p = 1; p <= PAIRS; p++)); do
    for mode in false true; do
      d="$TMP/w$p-$mode"
      PAGE_PORT="$(free_port)"
      write_config "$d" "$mode" "$TMP/checks.toml"
      start_detour "$d"
      echo "pair $p, history $mode: ready; ${WARMUP}s warm-up, ${DURATION}s sampled" >&2
      sleep "$WARMUP"
      t0="$(now)"; c0="$(ticks "/proc/$DETOUR_PID/stat")"; h0="$(history_ticks "$DETOUR_PID")"
      sleep "$DURATION"
      t1="$(now)"; c1="$(ticks "/proc/$DETOUR_PID/stat")"; h1="$(history_ticks "$DETOUR_PID")"
      stop_pid "$DETOUR_PID"; DETOUR_PID=""
      read -r size rows bytes < <(python3 - "$d/state/history.db" <<'EOF'
import os, sqlite3, sys
p = sys.argv[1]
if not os.path.exists(p):
    print(0, 0, 0); sys.exit()
c = sqlite3.connect(p)
rows = c.execute("select count(*) from probe_minutes").fetchone()[0]
try:
    b = c.execute("select sum(pgsize) from dbstat where name = 'probe_minutes'").fetchone()[0] or 0
except sqlite3.Error:
    b = 0
print(os.path.getsize(p), rows, b)
EOF
)
      awk -v m="$mode" -v c=$((c1 - c0)) -v h=$((h1 - h0)) -v hz="$HZ" -v a="$t0" -v b="$t1" \
        -v s="$size" -v r="$rows" -v by="$bytes" \
        'BEGIN { printf "%s\t%.2f\t%.3f\t%d\t%d\t%d\n", m, c / hz / (b - a) * 100, h / hz / (b - a) * 100, s, r, by }' \
        >>"$TMP/writes.tsv"
      tail -n 1 "$TMP/writes.tsv" >&2
    done
  done
  stop_pid "$BACKEND_PID"; BACKEND_PID=""
fi

# ---- part 2: the page ------------------------------------------------------------------

if (( ! SKIP_PAGE )); then
  for ((i = 1; i <= SERVICES; i++)); do printf '\n[services.s%03d]\nname = "Service %d"\n' "$i" "$i"; done >"$TMP/page-services.toml"
  : >"$TMP/page.tsv"
  # MODE DIR GZIP: one wrk run against DIR's running detour
  load() {
    local enc=()
    [[ "$3" == gzip ]] && enc=(-H 'Accept-Encoding: gzip')
    "${PIN_B[@]}" wrk -t 2 -c "$CONNECTIONS" -d "${PAGE_DURATION}s" --timeout 5s \
      -H 'Host: status.example.test' "${enc[@]}" "http://127.0.0.1:$PAGE_PORT/" >"$2/wrk-$3.out" 2>&1
    awk -v m="$1" -v z="$3" '/^Requests\/sec:/ { r = $2 } / requests in / { n = $1 }
      /Non-2xx/ { bad = $NF } END { printf "%s\t%s\t%s\t%s\t%s\n", m, z, r, n, bad + 0 }' "$2/wrk-$3.out" >>"$TMP/page.tsv"
    tail -n 1 "$TMP/page.tsv" >&2
  }
  for ((p = 1; p <= PAIRS; p++)); do
    for mode in false true; do
      d="$TMP/p$p-$mode"
      PAGE_PORT="$(free_port)"
      write_config "$d" "$mode" "$TMP/page-services.toml"
      [[ "$mode" == true ]] && "$SEED" "$d/state" "$SERVICES" 90 >&2
      start_detour "$d"
      sleep 2
      plain="$(curl -s -o /dev/null -w '%{size_download}' -H 'Host: status.example.test' "http://127.0.0.1:$PAGE_PORT/")"
      gz="$(curl -s -o /dev/null -w '%{size_download}' -H 'Accept-Encoding: gzip' -H 'Host: status.example.test' "http://127.0.0.1:$PAGE_PORT/")"
      bars="$(curl -s -H 'Host: status.example.test' "http://127.0.0.1:$PAGE_PORT/" | { grep -o '<rect ' || true; } | wc -l)"
      echo "pair $p, history $mode: page $plain bytes, $gz gzipped, $bars day marks" >&2
      echo "$mode $plain $gz $bars" >>"$TMP/page-sizes"
      load "$mode" "$d" gzip
      (( p == 1 )) && [[ "$mode" == true ]] && load "$mode" "$d" plain
      stop_pid "$DETOUR_PID"; DETOUR_PID=""
    done
  done
fi

# ---- report ---------------------------------------------------------------------------

echo
echo "bench/history.sh: $(date -Is), $(nproc) CPUs, load before report: $(cut -d' ' -f1-3 /proc/loadavg)"
if (( ! SKIP_WRITES )); then
  sec_per_min=60
  off_cpu="$(awk '$1 == "false" { print $2 }' "$TMP/writes.tsv" | median)"
  on_cpu="$(awk '$1 == "true" { print $2 }' "$TMP/writes.tsv" | median)"
  hist="$(awk '$1 == "true" { print $3 }' "$TMP/writes.tsv" | median)"
  echo "writes: $CHECKS http checks every $INTERVAL, ${DURATION}s sampled after ${WARMUP}s, $PAIRS off/on pairs (median)"
  echo "  detour CPU, history off:        $off_cpu % of a core"
  echo "  detour CPU, history on:         $on_cpu % of a core (ratio $(awk -v a="$on_cpu" -v b="$off_cpu" 'BEGIN { printf "%.3f", a / b }'))"
  echo "  the history thread alone:       $hist % of a core"
  awk '$1 == "true" && $5 > 0 { printf "  database: %d bytes on disk, %d probe minutes, %d bytes of probe_minutes pages (%.1f bytes a row)\n", $4, $5, $6, ($6 > 0 ? $6 / $5 : $4 / $5) }' "$TMP/writes.tsv" | tail -n 1
  awk -v i="$(dur_s "$INTERVAL")" '$1 == "true" && $5 > 0 { b = ($6 > 0 ? $6 / $5 : $4 / $5) }
    END { if (b) {
      day = 1440 * b
      printf "  per check per day: %.0f KB of minutes (kept [history] detail, default 2d), %.0f bytes of daily roll-up (kept [history] keep)\n", day / 1024, b
      printf "  100 checks, keep 400d, detail 2d: %.1f MB (minutes) + %.1f MB (days) = %.1f MB, plus transitions and actions\n", 100 * 2 * day / 1e6, 100 * 400 * b / 1e6, (100 * 2 * day + 100 * 400 * b) / 1e6
    } }' "$TMP/writes.tsv"
fi
if (( ! SKIP_PAGE )); then
  off="$(awk '$1 == "false" && $2 == "gzip" { print $3 }' "$TMP/page.tsv" | median)"
  on="$(awk '$1 == "true" && $2 == "gzip" { print $3 }' "$TMP/page.tsv" | median)"
  plain="$(awk '$1 == "true" && $2 == "plain" { print $3 }' "$TMP/page.tsv" | median)"
  bad="$(awk '{ s += $5 } END { print s + 0 }' "$TMP/page.tsv")"
  echo "page: $SERVICES services, wrk -t2 -c$CONNECTIONS ${PAGE_DURATION}s, $PAIRS off/on pairs (median)"
  awk '{ printf "  history %-5s: %d bytes, %d gzipped, %d day marks\n", $1, $2, $3, $4 }' "$TMP/page-sizes" | sort -u
  echo "  history off (no bars), gzip:    $off req/s"
  echo "  history on (90-day bars), gzip: $on req/s (ratio $(awk -v a="$on" -v b="$off" 'BEGIN { printf "%.3f", a / b }'))"
  echo "  history on, no gzip (1 run):    $plain req/s"
  echo "  non-2xx responses:              $bad"
fi
