#!/usr/bin/env bash
# qps.sh - load a detour DNS server on loopback with dnsperf, one bounded run.
#
# usage: bench/qps.sh [options]
#   --duration SECS   dnsperf run length (-l), default 10
#   --server ADDR     host:port of the DNS listener, default 127.0.0.1:5353
#                     (with --start: the config's first dns_listen, if found);
#                     [::1]:PORT for IPv6. Loopback only (127.0.0.0/8, ::1).
#   --queries FILE    dnsperf data file ("name TYPE" per line),
#                     default bench/queries.txt
#   --tcp             query over TCP (dnsperf -m tcp) instead of UDP
#   --clients N       dnsperf clients (-c: sockets / TCP connections), default 10
#   --start CONFIG    cargo build --release, then start target/release/detour
#                     run --config CONFIG (pinned to CPU 0), benchmark it, and
#                     stop it again (by PID) when the script exits
#   --pid PID         server already running: report this process's RSS and CPU
#   -h, --help        this text
#
# dnsperf runs pinned to CPU 1 (server on CPU 0) when taskset exists and the
# machine has more than one CPU, with -T 2 -q 1000.
# Prints a short report, then one tab-separated key=value line (same keys as
# ../shared/bench-anchors/qps.sh where they overlap): mode qps avg_ms min_ms
# max_ms sent lost srv_rss_kb srv_hwm_kb srv_cpu% qps_per_srv_core.
set -euo pipefail

B="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$B/.." && pwd)"

DURATION=10
SERVER=""
QUERIES="$B/queries.txt"
MODE=udp
CLIENTS=10
START=""
PID=""
BUILD_TIMEOUT=1800   # cargo build --release, from scratch, worst case
READY_TIMEOUT=20     # server start until it answers
STOP_TIMEOUT=15      # SIGTERM until SIGKILL (the unit's TimeoutStopSec)

. "$B/lib.sh"

while [[ $# -gt 0 ]]; do
  case "$1" in
    --duration) need_arg "$@"; DURATION="$2"; shift 2 ;;
    --server)   need_arg "$@"; SERVER="$2"; shift 2 ;;
    --queries)  need_arg "$@"; QUERIES="$2"; shift 2 ;;
    --tcp)      MODE=tcp; shift ;;
    --clients)  need_arg "$@"; CLIENTS="$2"; shift 2 ;;
    --start)    need_arg "$@"; START="$2"; shift 2 ;;
    --pid)      need_arg "$@"; PID="$2"; shift 2 ;;
    -h|--help)  usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done

[[ "$DURATION" =~ ^[1-9][0-9]*$ ]] || die "--duration must be a positive whole number of seconds"
(( DURATION <= 3600 )) || die "--duration is capped at 3600 s"
[[ "$CLIENTS" =~ ^[1-9][0-9]*$ ]] || die "--clients must be a positive integer"
[[ -r "$QUERIES" && -s "$QUERIES" ]] || die "cannot read query file $QUERIES"
[[ -z "$PID" || "$PID" =~ ^[1-9][0-9]*$ ]] || die "--pid must be a process id"
[[ -z "$START" || -z "$PID" ]] || die "--start and --pid exclude each other"
if [[ -n "$START" ]]; then
  [[ -r "$START" ]] || die "cannot read config $START"
  START="$(cd "$(dirname "$START")" && pwd)/$(basename "$START")"
fi

# ---- server address: parse, and refuse anything that is not loopback --------

# First address in the config's dns_listen (single- or multi-line array).
config_dns_listen() {
  awk '
    !found && /^[[:space:]]*dns_listen[[:space:]]*=/ { found = 1; sub(/^[^=]*=/, "") }
    found {
      sub(/#.*/, "")
      if (match($0, /"[^"]*"/)) { print substr($0, RSTART + 1, RLENGTH - 2); exit }
    }' "$1"
}
if [[ -z "$SERVER" ]]; then
  if [[ -n "$START" ]]; then
    SERVER="$(config_dns_listen "$START" || true)"
    # a wildcard listener answers on loopback too
    case "$SERVER" in
      0.0.0.0:*) SERVER="127.0.0.1:${SERVER##*:}" ;;
      "[::]:"*) SERVER="[::1]:${SERVER##*:}" ;;
    esac
  fi
  SERVER="${SERVER:-127.0.0.1:5353}"
fi

if [[ "$SERVER" =~ ^\[([^]]+)\]:([0-9]+)$ ]]; then HOST="${BASH_REMATCH[1]}" PORT="${BASH_REMATCH[2]}"
elif [[ "$SERVER" =~ ^\[([^]]+)\]$ ]]; then HOST="${BASH_REMATCH[1]}" PORT=53
elif [[ "$SERVER" == *:*:* ]]; then HOST="$SERVER" PORT=53    # bare IPv6
elif [[ "$SERVER" == *:* ]]; then HOST="${SERVER%:*}" PORT="${SERVER##*:}"
else HOST="$SERVER" PORT=53; fi
if ! [[ "$PORT" =~ ^[0-9]{1,5}$ ]] || (( 10#$PORT < 1 || 10#$PORT > 65535 )); then
  die "bad port in --server $SERVER"
fi
PORT=$((10#$PORT))

# Literal addresses only (a name could resolve anywhere): 127.0.0.0/8, or ::1
# in any spelling whose groups are all zero but a last group of 1.
is_loopback() {
  local h="${1,,}" o
  if [[ "$h" =~ ^127\.([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})$ ]]; then
    for o in "${BASH_REMATCH[@]:1}"; do (( 10#$o <= 255 )) || return 1; done
    return 0
  fi
  [[ "$h" =~ ^[0:]*:0{0,3}1$ ]]
}
is_loopback "$HOST" || die "refusing non-loopback server '$HOST' (only 127.0.0.0/8 and ::1; IPv6 with a port as [::1]:PORT)"

# ---- tools ------------------------------------------------------------------

missing=()
command -v dnsperf >/dev/null || missing+=(dnsperf)
if [[ -n "$START" ]]; then command -v dig >/dev/null || missing+=(bind9-dnsutils); fi
if [[ ${#missing[@]} -gt 0 ]]; then
  if [[ $EUID -eq 0 ]] && command -v apt-get >/dev/null; then
    echo "installing ${missing[*]}" >&2
    timeout 300 apt-get update -qq
    DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "qps.sh: missing ${missing[*]}; install with:" >&2
    echo "  sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
    exit 2
  fi
fi

SERVER_PIN=() PERF_PIN=()
if command -v taskset >/dev/null && (( $(nproc) > 1 )); then
  SERVER_PIN=(taskset -c 0) PERF_PIN=(taskset -c 1)
else
  echo "note: not pinning (taskset missing or one CPU): server and dnsperf share CPUs" >&2
fi

TMP="$(mktemp -d "${TMPDIR:-/tmp}/detour-qps.XXXXXX")"
STARTED_PID="" PERF_PID="" SLEEPER=""
cleanup() {
  local rc=$? p
  # dnsperf (through its timeout wrapper, which passes the signal on) and the
  # sampling sleep, if a signal cut the run short
  for p in "$PERF_PID" "$SLEEPER"; do
    if [[ -n "$p" ]]; then kill -TERM "$p" 2>/dev/null || true; fi
  done
  stop_pid "$STARTED_PID"
  rm -rf "$TMP"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# First query of the data file: the probe that says the server is answering.
PROBE_NAME="" PROBE_TYPE=""
read -r PROBE_NAME PROBE_TYPE _ < <(grep -v -e '^[[:space:]]*$' -e '^;' "$QUERIES" | head -n 1) || true
[[ -n "$PROBE_NAME" ]] || die "no query in $QUERIES"
PROBE_TYPE="${PROBE_TYPE:-A}"
# Exit 0 once any DNS response (even REFUSED) comes back.
answers() {
  timeout 5 dig +time=1 +tries=1 +short -p "$PORT" "@$HOST" "$PROBE_NAME" "$PROBE_TYPE" >/dev/null 2>&1
}

# ---- optionally build and start the server -----------------------------------

if [[ -n "$START" ]]; then
  if answers; then
    die "something already answers on $HOST port $PORT; stop it or pick another --server"
  fi
  echo "building: cargo build --release (in $ROOT)" >&2
  (cd "$ROOT" && timeout "$BUILD_TIMEOUT" cargo build --release) || die "cargo build failed"
  BIN="$ROOT/target/release/detour"
  [[ -x "$BIN" ]] || die "no binary at $BIN"
  echo "starting: ${SERVER_PIN[*]} $BIN run --config $START" >&2
  "${SERVER_PIN[@]}" "$BIN" run --config "$START" </dev/null >"$TMP/server.log" 2>&1 &
  STARTED_PID=$!     # taskset execs the server: same PID
  PID="$STARTED_PID"
  deadline=$((SECONDS + READY_TIMEOUT))
  until answers; do
    if ! kill -0 "$STARTED_PID" 2>/dev/null; then
      echo "qps.sh: server exited during start-up; its log:" >&2
      tail -n 40 "$TMP/server.log" >&2
      exit 1
    fi
    if (( SECONDS >= deadline )); then
      echo "qps.sh: no answer from $HOST port $PORT within ${READY_TIMEOUT}s; server log:" >&2
      tail -n 40 "$TMP/server.log" >&2
      exit 1
    fi
    sleep 0.2
  done
  probe="$(timeout 5 dig +time=1 +tries=1 +short -p "$PORT" "@$HOST" "$PROBE_NAME" "$PROBE_TYPE" 2>/dev/null || true)"
  echo "server $PID answers: $PROBE_NAME $PROBE_TYPE -> ${probe:-(empty answer)}" >&2
fi

if [[ -n "$PID" ]]; then
  [[ -r "/proc/$PID/stat" ]] || die "no process $PID"
fi

# ---- run ----------------------------------------------------------------------

# utime+stime of the whole process (all threads), in clock ticks.
cpu_ticks() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }
status_kb() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }
HZ="$(getconf CLK_TCK)"

args=(-s "$HOST" -p "$PORT" -d "$QUERIES" -l "$DURATION" -c "$CLIENTS" -T 2 -q 1000)
[[ "$MODE" == tcp ]] && args+=(-m tcp)
echo "running: ${PERF_PIN[*]} dnsperf ${args[*]}" >&2

# Server CPU and memory are sampled over the sending window only (-l
# seconds): after it dnsperf waits up to its 5 s query timeout for lost
# queries, an idle tail that would dilute the CPU share.
sample() { # -> "time ticks rss_kb", or nothing if the process is gone
  local c r
  c="$(cpu_ticks "$PID" 2>/dev/null)" && r="$(status_kb "$PID" VmRSS 2>/dev/null)" \
    && echo "$(now) $c $r"
}
[[ -z "$PID" ]] || sample >"$TMP/s0" || true
# Bound the whole run (sending, drain, start-up) well above -l. dnsperf and
# the sleep run in the background and are waited for, so that a signal to
# this script is handled at once (cleanup stops them) rather than after.
rc=0
timeout --kill-after=5 $((DURATION + 30)) "${PERF_PIN[@]}" dnsperf "${args[@]}" \
  >"$TMP/dnsperf.out" 2>"$TMP/dnsperf.err" </dev/null &
PERF_PID=$!
if [[ -n "$PID" ]]; then
  sleep "$DURATION" &
  SLEEPER=$!
  wait "$SLEEPER" || true
  SLEEPER=""
  sample >"$TMP/s1" || true
fi
wait "$PERF_PID" || rc=$?
PERF_PID=""
if (( rc != 0 )); then
  echo "qps.sh: dnsperf failed (exit $rc):" >&2
  cat "$TMP/dnsperf.err" "$TMP/dnsperf.out" >&2
  exit 1
fi

srv_cpu=NA rss=NA hwm=NA
if [[ -n "$PID" ]]; then
  if [[ -s "$TMP/s0" && -s "$TMP/s1" ]]; then
    read -r t0 c0 _ <"$TMP/s0"
    read -r t1 c1 rss <"$TMP/s1"
    srv_cpu="$(awk -v d=$((c1 - c0)) -v hz="$HZ" -v a="$t0" -v b="$t1" \
      'BEGIN { printf "%.0f", d / hz / (b - a) * 100 }')"
    # VmHWM is updated lazily by the kernel: never report it below an RSS seen
    hwm="$(status_kb "$PID" VmHWM 2>/dev/null || echo 0)"
    (( ${hwm:-0} >= rss )) || hwm="$rss"
  else
    echo "qps.sh: server $PID went away during the run" >&2
  fi
fi

# ---- report -----------------------------------------------------------------

O="$TMP/dnsperf.out"
field() { awk -v k="$1" 'index($0, k) { sub(/^.*: */, ""); print $1; exit }' "$O"; }
sent="$(field 'Queries sent:')"
completed="$(field 'Queries completed:')"
lost="$(field 'Queries lost:')"
qps="$(field 'Queries per second:')"
rcodes="$(awk -F': *' '/Response codes:/ { print $2; exit }' "$O")"
read -r avg mn mx < <(awk '/Average Latency/ { gsub(/[(),]/, "");
  printf "%.3f %.3f %.3f\n", $4 * 1000, $6 * 1000, $8 * 1000; exit }' "$O")
[[ -n "$qps" && -n "$sent" ]] || { echo "qps.sh: could not read dnsperf's output:" >&2; cat "$O" >&2; exit 1; }
if [[ "$completed" == 0 ]]; then
  echo "qps.sh: no query was answered by $HOST port $PORT: is the server running?" >&2
  exit 1
fi
lost_pct="$(awk -v l="$lost" -v s="$sent" 'BEGIN { printf "%.2f", s ? l * 100 / s : 0 }')"
qpc=NA
if [[ "$srv_cpu" != NA ]] && (( srv_cpu > 0 )); then
  qpc="$(awk -v q="$qps" -v c="$srv_cpu" 'BEGIN { printf "%.0f", q * 100 / c }')"
fi

printf '\ndetour qps  %s  %s port %s  %ss  %s clients  %s\n' \
  "$(date -Is)" "$HOST" "$PORT" "$DURATION" "$CLIENTS" "$MODE"
printf '  queries/s        %.0f\n' "$qps"
printf '  latency avg      %s ms (min %s, max %s)\n' "$avg" "$mn" "$mx"
printf '  sent/completed   %s / %s, lost %s (%s%%)\n' "$sent" "$completed" "$lost" "$lost_pct"
printf '  response codes   %s\n' "${rcodes:-?}"
if [[ -n "$PID" ]]; then
  printf '  server pid %s    RSS %s kB (peak %s kB), CPU %s%% of one core' "$PID" "$rss" "$hwm" "$srv_cpu"
  [[ "$qpc" != NA ]] && printf ', %s qps per busy core' "$qpc"
  printf '\n'
else
  printf '  server           (no --pid or --start: RSS and CPU not measured)\n'
fi
if [[ "$rcodes" =~ REFUSED|SERVFAIL|FORMERR|NOTIMP ]]; then
  echo "warning: some answers were errors ($rcodes): is the queried zone loaded?" >&2
fi
printf 'mode=%s\tqps=%.0f\tavg_ms=%s\tmin_ms=%s\tmax_ms=%s\tsent=%s\tlost=%s\tsrv_rss_kb=%s\tsrv_hwm_kb=%s\tsrv_cpu%%=%s\tqps_per_srv_core=%s\n' \
  "$MODE" "$qps" "$avg" "$mn" "$mx" "$sent" "$lost" "$rss" "$hwm" "$srv_cpu" "$qpc"
