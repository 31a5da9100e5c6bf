#!/usr/bin/env bash
# checks-cost.sh - what N health checks cost detour: CPU, memory, start-up, on loopback.
#
# usage: bench/checks-cost.sh [options]
#   --checks N        services, one http check each, default 5000
#   --interval D      check interval, default 5s    (durations as in the config:
#   --timeout D       probe timeout, default 2s      "250ms", "5s", "2m")
#   --duration S      steady-state sampling window in seconds, default 60
#   --warmup S        seconds between "ready" and the window, default 10
#   --port PORT       DNS port on 127.0.0.1, default 5339
#   --bin PATH        detour binary to run (no build), default: cargo build
#                     --release, then target/release/detour
#   --scrape S        GET /metrics on the admin socket every S seconds during
#                     the window, as Prometheus would (default: never)
#   --no-pin          do not pin detour to CPU 0 and the backend to CPU 1
#   --keep            keep the temp dir (config, logs, samples) and print its path
#   -h, --help        this text
#
# Generates a config with N services s00001..sN, each with one http check of
# http://127.0.0.10:18081/sNNNNN (rise/fall 2), and a one-record zone. Starts
# one tiny HTTP backend (bench/helper.py httpd: asyncio, "200 OK", connection:
# close, counts requests) and detour, measures the time until "ready" (the
# first round of probes is run before it), waits --warmup seconds, then samples
# detour once a second for --duration seconds: CPU (utime+stime of all threads,
# /proc/PID/stat) in % of one core, VmRSS / VmHWM, threads, open fds, and the
# requests the backend answered (rate, and per second: min / max, which shows
# how evenly the probes are spread). Meanwhile a client next to the backend
# sends one DNS query every 10 ms and reports answer latency (p50/p99/max).
# Prints a report, then one tab-separated key=value line for scripts.
set -euo pipefail

B="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$B/.." && pwd)"
HELPER="$B/helper.py"

CHECKS=5000
INTERVAL=5s
TIMEOUT=2s
DURATION=60
WARMUP=10
PORT=5339
BIN=""
PIN=1
KEEP=0
SCRAPE=0
BACKEND_ADDR=127.0.0.10:18081
BUILD_TIMEOUT=1800   # cargo build --release, from scratch, worst case
STOP_TIMEOUT=15      # SIGTERM until SIGKILL

. "$B/lib.sh"

while [[ $# -gt 0 ]]; do
  case "$1" in
    --checks)   need_arg "$@"; CHECKS="$2"; shift 2 ;;
    --interval) need_arg "$@"; INTERVAL="$2"; shift 2 ;;
    --timeout)  need_arg "$@"; TIMEOUT="$2"; shift 2 ;;
    --duration) need_arg "$@"; DURATION="$2"; shift 2 ;;
    --warmup)   need_arg "$@"; WARMUP="$2"; shift 2 ;;
    --port)     need_arg "$@"; PORT="$2"; shift 2 ;;
    --bin)      need_arg "$@"; BIN="$2"; shift 2 ;;
    --scrape)   need_arg "$@"; SCRAPE="$2"; shift 2 ;;
    --no-pin)   PIN=0; shift ;;
    --keep)     KEEP=1; shift ;;
    -h|--help)  usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done

in_range "$CHECKS" 1 99999 || die "--checks must be 1..99999"
in_range "$DURATION" 1 3600 || die "--duration must be 1..3600 s"
in_range "$WARMUP" 0 600 || die "--warmup must be 0..600 s"
in_range "$SCRAPE" 0 3600 || die "--scrape must be 0..3600 s"
(( SCRAPE == 0 )) || command -v curl >/dev/null || die "--scrape needs curl"
in_range "$PORT" 1 65535 || die "bad --port"
PORT=$((10#$PORT))
INTERVAL_S="$(dur_s "$INTERVAL")" || die "bad --interval $INTERVAL (e.g. 5s)"
TIMEOUT_S="$(dur_s "$TIMEOUT")" || die "bad --timeout $TIMEOUT (e.g. 2s)"
# detour waits at most the longest timeout + 1.5 s for the first round
READY_TIMEOUT="$(awk -v t="$TIMEOUT_S" 'BEGIN { printf "%d", t + 1.5 + 60 }')"

command -v python3 >/dev/null || die "python3 is needed (bench/helper.py)"
[[ -r "$HELPER" ]] || die "missing $HELPER"
DETOUR_PIN=() BACKEND_PIN=()
if (( PIN )); then
  if command -v taskset >/dev/null && (( $(nproc) > 1 )); then
    DETOUR_PIN=(taskset -c 0) BACKEND_PIN=(taskset -c 1)
  else
    echo "note: not pinning (taskset missing or one CPU): detour and the backend share CPUs" >&2
    PIN=0
  fi
fi

TMP="$(mktemp -d "${TMPDIR:-/tmp}/detour-checks.XXXXXX")"
BACKEND_PID="" DETOUR_PID="" SLEEPER="" DNS_PID=""
cleanup() {
  local rc=$? p
  for p in "$SLEEPER" "$DNS_PID"; do
    if [[ -n "$p" ]]; then kill -TERM "$p" 2>/dev/null || true; fi
  done
  stop_pid "$DETOUR_PID"
  stop_pid "$BACKEND_PID"
  if (( KEEP )); then echo "kept $TMP" >&2; else rm -rf "$TMP"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

show_log() { echo "--- detour log (last 40 lines) ---" >&2; tail -n 40 "$TMP/detour.log" >&2 || true; }
nap() { sleep "$1" & SLEEPER=$!; wait "$SLEEPER" || true; SLEEPER=""; }

accepts "$BACKEND_ADDR" && die "something already listens on $BACKEND_ADDR"
accepts "127.0.0.1:$PORT" && die "something already listens on 127.0.0.1:$PORT (use --port)"

# ---- binary -------------------------------------------------------------------

if [[ -z "$BIN" ]]; then
  echo "building: cargo build --release (in $ROOT)" >&2
  (cd "$ROOT" && timeout "$BUILD_TIMEOUT" cargo build --release) || die "cargo build failed"
  BIN="$ROOT/target/release/detour"
fi
[[ -x "$BIN" ]] || die "no binary at $BIN"
cp "$BIN" "$TMP/detour"   # a concurrent cargo build cannot swap it during the run
BIN_ID="$(sha256sum "$TMP/detour" | cut -c1-12)"
echo "binary: $BIN (sha256 $BIN_ID..., built $(date -r "$BIN" -Is))" >&2

# ---- config -------------------------------------------------------------------

mkdir -p "$TMP/zones" "$TMP/state"
{
  cat <<EOF
# generated by bench/checks-cost.sh: $CHECKS services, one http check each
[server]
dns_listen = ["127.0.0.1:$PORT"]
page_listen = ["127.0.0.1:0"]
# not the default 127.0.0.1:8053: a run must not take (or answer on) the port of
# another detour, e.g. one started by the test suite
admin_listen = "unix:state/admin.sock"
zones_dir = "zones"
state_dir = "state"

[check_defaults]
interval = "$INTERVAL"
timeout = "$TIMEOUT"
rise = 2
fall = 2
EOF
  for ((i = 1; i <= CHECKS; i++)); do
    printf '\n[services.s%05d]\ncheck = { type = "http", url = "http://%s/s%05d" }\n' "$i" "$BACKEND_ADDR" "$i"
  done
} >"$TMP/detour.toml"
cat >"$TMP/zones/bench.test.toml" <<EOF
# generated by bench/checks-cost.sh
origin = "example.test."
soa = { mname = "ns1.example.test.", rname = "h.example.test.", minimum = 30 }
ns = ["ns1.example.test."]
records = [ { name = "ns1", type = "A", value = "127.0.0.1" } ]
EOF
t="$(now)"
"$TMP/detour" check --config "$TMP/detour.toml" >"$TMP/check.out" 2>&1 \
  || { tail -n 20 "$TMP/check.out" >&2; die "detour check rejected the generated config"; }
check_s="$(awk -v a="$t" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }')"

# ---- backend and detour ---------------------------------------------------------

LIFETIME=$(( READY_TIMEOUT + WARMUP + DURATION + 120 ))
"${BACKEND_PIN[@]}" python3 "$HELPER" httpd --listen "$BACKEND_ADDR" --stats "$TMP/backend.stats" \
  --lifetime "$LIFETIME" </dev/null >"$TMP/backend.out" 2>&1 &
BACKEND_PID=$!     # taskset execs python: same PID
for ((i = 0; i < 100; i++)); do accepts "$BACKEND_ADDR" && break; sleep 0.1; done
accepts "$BACKEND_ADDR" || { cat "$TMP/backend.out" >&2; die "backend did not start"; }

uptime_before="$(uptime)"
echo "starting: ${DETOUR_PIN[*]} $BIN run --config $TMP/detour.toml ($CHECKS checks)" >&2
t_start="$(now)"
"${DETOUR_PIN[@]}" "$TMP/detour" run --config "$TMP/detour.toml" </dev/null >"$TMP/detour.log" 2>&1 &
DETOUR_PID=$!
deadline=$((SECONDS + READY_TIMEOUT))
until grep -qs ' ready$' "$TMP/detour.log"; do
  kill -0 "$DETOUR_PID" 2>/dev/null || { show_log; die "detour exited during start-up"; }
  (( SECONDS < deadline )) || { show_log; die "detour not ready within ${READY_TIMEOUT}s"; }
  sleep 0.02
done
t_ready="$(now)"
ready_s="$(awk -v a="$t_start" -v b="$t_ready" 'BEGIN { printf "%.2f", b - a }')"
log_ready="$(wc -l <"$TMP/detour.log")"
down_first="$(grep -c 'to=down' "$TMP/detour.log" || true)"
echo "detour $DETOUR_PID ready after $ready_s s; warm-up ${WARMUP}s, then ${DURATION}s of samples" >&2

# ---- samples ------------------------------------------------------------------

HZ="$(getconf CLK_TCK)"
cpu_ticks() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }
status_kb() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }
sample() { # -> "time detour_ticks rss_kb threads fds backend_ticks"
  local c r th fd bc
  c="$(cpu_ticks "$DETOUR_PID" 2>/dev/null)" && r="$(status_kb "$DETOUR_PID" VmRSS 2>/dev/null)" \
    && th="$(status_kb "$DETOUR_PID" Threads 2>/dev/null)" || return 1
  fd="$(find "/proc/$DETOUR_PID/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)"
  bc="$(cpu_ticks "$BACKEND_PID" 2>/dev/null || echo 0)"
  echo "$(now) $c $r $th $fd $bc"
}
log_ready_rss="$(status_kb "$DETOUR_PID" VmRSS)"
nap "$WARMUP"
: >"$TMP/samples"
# DNS answers while the checks run: one query every 10 ms, next to the backend
"${BACKEND_PIN[@]}" python3 "$HELPER" dns-latency --server "127.0.0.1:$PORT" --name ns1.example.test \
  --duration "$DURATION" --every 0.01 --log "$TMP/dns.log" </dev/null >"$TMP/dns.out" 2>&1 &
DNS_PID=$!
scrapes=0 scrape_fail=0
for ((i = 0; i <= DURATION; i++)); do
  sample >>"$TMP/samples" || { show_log; die "detour $DETOUR_PID went away during the run"; }
  if (( SCRAPE > 0 && i % SCRAPE == 0 )); then
    if timeout 5 curl -sf --unix-socket "$TMP/state/admin.sock" -o "$TMP/metrics.txt" http://detour/metrics; then
      scrapes=$((scrapes + 1))
    else
      scrape_fail=$((scrape_fail + 1))
    fi
  fi
  (( i < DURATION )) && nap 1
done
hwm="$(status_kb "$DETOUR_PID" VmHWM)"
wait "$DNS_PID" || true   # it stops by itself after --duration
DNS_PID=""
dns="$(cat "$TMP/dns.out")"
uptime_after="$(uptime)"
tw=NA
command -v ss >/dev/null && tw="$(ss -Htan state time-wait 2>/dev/null | wc -l)"

# ---- report -----------------------------------------------------------------------

read -r t0 c0 rss0 _ _ b0 < <(head -n 1 "$TMP/samples")
read -r t1 c1 rss1 th1 _ b1 < <(tail -n 1 "$TMP/samples")
cpu="$(awk -v d=$((c1 - c0)) -v hz="$HZ" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", d / hz / (b - a) * 100 }')"
bcpu="$(awk -v d=$((b1 - b0)) -v hz="$HZ" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", d / hz / (b - a) * 100 }')"
read -r rss_min rss_max fd_max < <(awk 'NR == 1 { mn = mx = $3; f = $5 }
  { if ($3 < mn) mn = $3; if ($3 > mx) mx = $3; if ($5 > f) f = $5 }
  END { print mn, mx, f }' "$TMP/samples")
(( hwm >= rss_max )) || hwm="$rss_max"
# backend: requests in the window, from its once-a-second counter. The rate is
# taken over a whole number of check intervals (probes are periodic: any such
# span holds the same number of them, whatever its phase); per-second counts
# over the whole window show how evenly they are spread.
read -r req_rate req_span per_s_min per_s_max per_s_n < <(awk -v a="$t0" -v b="$t1" -v iv="$INTERVAL_S" 'BEGIN { n = 0 }
  $1 >= a && $1 <= b { t[n] = $1; c[n] = $2
    if (n > 0) { d = $2 - c[n - 1]; if (n == 1 || d < mn) mn = d; if (n == 1 || d > mx) mx = d }
    n++ }
  END { if (n < 2) { print "NA NA NA NA 0"; exit }
        k = int((t[n - 1] - t[0]) / iv + 1e-6)
        j = n - 1
        if (k >= 1) {   # the sample nearest to one whole number of intervals
          for (i = 1; i < n; i++) if ((t[i] - t[0]) - k * iv > -0.5) { j = i; break } }
        printf "%.1f %.0f %d %d %d\n", (c[j] - c[0]) / (t[j] - t[0]), t[j] - t[0], mn, mx, n - 1 }' "$TMP/backend.stats")
expected="$(awk -v n="$CHECKS" -v i="$INTERVAL_S" 'BEGIN { printf "%.0f", n / i }')"
per_check_us="$(awk -v c="$cpu" -v r="$req_rate" 'BEGIN { if (r > 0) printf "%.0f", c / 100 * 1e6 / r; else print "NA" }')"
log_after=$(( $(wc -l <"$TMP/detour.log") - log_ready ))
downs="$(tail -n +"$((log_ready + 1))" "$TMP/detour.log" | grep -c 'to=down' || true)"
warns="$(tail -n +"$((log_ready + 1))" "$TMP/detour.log" | grep -cE ' (WARN|ERROR) ' || true)"
# DNS latency in the seconds the backend saw many probes (over 10 % of all
# checks) and in the others: "p99 max n" for each
dns_split() {
  awk -v busy="$1" -v lim="$(( CHECKS / 10 ))" '
    FNR == NR { s = int($1 + 0.5); if (s - 1 in c) per[s - 1] = $2 - c[s - 1]; c[s] = $2; next }
    $2 >= 0 { sec = int($1); if ((sec in per) && ((per[sec] > lim) == busy)) print $2 }' \
    "$TMP/backend.stats" "$TMP/dns.log" | sort -g | awk '{ v[NR] = $1 }
    END { if (NR == 0) { print "NA NA 0"; exit }
          i = int(0.99 * NR); if (i < 1) i = 1; printf "%.3f %.3f %d\n", v[i], v[NR], NR }'
}
read -r busy_p99 busy_max busy_n < <(dns_split 1)
read -r quiet_p99 quiet_max quiet_n < <(dns_split 0)
pin_note="unpinned"
(( PIN )) && pin_note="detour on CPU 0, backend on CPU 1"

printf '\ndetour checks-cost  %s  %s http checks every %s (timeout %s)  %ss window after %ss warm-up  %s\n' \
  "$(date -Is)" "$CHECKS" "$INTERVAL" "$TIMEOUT" "$DURATION" "$WARMUP" "$pin_note"
printf '  start-up         ready after %s s (first round of probes included); detour check took %s s\n' "$ready_s" "$check_s"
printf '  first round      %s service(s) down at start\n' "$down_first"
printf '  detour CPU       %s%% of one core (%s us per probe)\n' "$cpu" "$per_check_us"
printf '  detour memory    RSS %s kB at ready, %s kB at the window start, %s kB at its end (min %s, max %s), peak %s kB\n' \
  "$log_ready_rss" "$rss0" "$rss1" "$rss_min" "$rss_max" "$hwm"
printf '  detour threads   %s, open fds max %s\n' "$th1" "$fd_max"
printf '  backend          %s req/s over %s s (expected %s = checks / interval); per second min %s max %s over %s s; its CPU %s%%\n' \
  "$req_rate" "$req_span" "$expected" "$per_s_min" "$per_s_max" "$per_s_n" "$bcpu"
printf '  DNS answers      %s (ns1.example.test A every 10 ms, during the window)\n' "$dns"
printf '                   in seconds with > %s probes: p99 %s ms, max %s ms (%s queries); in the others: p99 %s ms, max %s ms (%s)\n' \
  "$(( CHECKS / 10 ))" "$busy_p99" "$busy_max" "$busy_n" "$quiet_p99" "$quiet_max" "$quiet_n"
printf '  detour log       %s lines after ready, %s to=down transitions, %s warnings/errors\n' "$log_after" "$downs" "$warns"
if (( SCRAPE > 0 )); then
  printf '  /metrics         scraped every %s s: %s ok, %s failed\n' "$SCRAPE" "$scrapes" "$scrape_fail"
fi
printf '  TIME_WAIT        %s TCP sockets at the end\n' "$tw"
printf '  load before: %s\n  load after:  %s\n' "${uptime_before#*load average: }" "${uptime_after#*load average: }"
printf 'checks=%s\tinterval=%s\tready_s=%s\tcpu%%=%s\tus_per_probe=%s\trss_kb=%s\thwm_kb=%s\treq_per_s=%s\texpected_req_per_s=%s\treq_per_s_min=%s\treq_per_s_max=%s\tdowns=%s\tlog_lines=%s\tdns_p99_ms=%s\tdns_max_ms=%s\n' \
  "$CHECKS" "$INTERVAL" "$ready_s" "$cpu" "$per_check_us" "$rss1" "$hwm" "$req_rate" "$expected" "$per_s_min" "$per_s_max" "$downs" "$log_after" \
  "$(sed -n 's/.*p99_ms=\([^ ]*\).*/\1/p' <<<"$dns")" "$(sed -n 's/.*max_ms=\([^ ]*\).*/\1/p' <<<"$dns")"
