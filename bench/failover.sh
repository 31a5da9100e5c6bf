#!/usr/bin/env bash
# failover.sh - time detour's failover and recovery on loopback, N bounded reps.
#
# usage: bench/failover.sh [options]
#   --reps N          outage/recovery cycles, default 10
#   --mode kill|hang  how the backend fails: kill = SIGKILL it (connections are
#                     refused), restart it to recover; hang = it keeps accepting
#                     but stops answering (probes time out), answers again to
#                     recover. Default kill
#   --interval D      check interval, default 1s   (durations as in the config:
#   --fall N          failures to go down, default 2       "250ms", "1s", "2m")
#   --rise N          passes to come back up, default 2
#   --confirm D       confirm_interval, default 250ms
#   --timeout D       probe timeout, default 500ms
#   --poll S          seconds between DNS polls, default 0.05
#   --port PORT       DNS port on 127.0.0.1, default 5329
#   --bin PATH        detour binary to run (no build), default: cargo build
#                     --release, then target/release/detour
#   --guard           also run a canary (a second helper on 127.0.0.11:18080, never
#                     failed) as the config's [guard], probed at a 5 s pace: a
#                     service's down verdict then waits for a canary pass (the
#                     check asks the canary at once), which this measures
#   --watch           watch = true on the check: an idle connection to the
#                     backend whose closing makes detour probe at once
#   --keep            keep the temp dir (config, logs) and print its path
#   -h, --help        this text
#
# Generates a one-service config in a temp dir: service mls, one http check of
# http://127.0.0.10:18080/, a dynamic record mls.example.test A (TTL 1) that
# answers 127.0.0.10 while mls is up and 127.0.0.99 otherwise. Starts a tiny
# HTTP backend (bench/helper.py httpd) on 127.0.0.10:18080 and detour, then per
# rep: waits 1-3 s at random, fails the backend (--mode) and polls the record
# until it reads 127.0.0.99 (detection); waits 1-3 s, restores the backend and
# polls until it reads 127.0.0.10 again (recovery). Every wait gives up after
# 30 s.
# Prints one row per rep, then medians/maxima, the bounds, and one
# tab-separated key=value line for scripts.
set -euo pipefail

B="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$B/.." && pwd)"
HELPER="$B/helper.py"

REPS=10
MODE="kill"
INTERVAL=1s
FALL=2
RISE=2
CONFIRM=250ms
TIMEOUT=500ms
POLL=0.05
PORT=5329
BIN=""
KEEP=0
GUARD=0
WATCH=false
BACKEND_ADDR=127.0.0.10:18080
CANARY_ADDR=127.0.0.11:18080
UP_IP=127.0.0.10
DOWN_IP=127.0.0.99
NAME=mls.example.test
EVENT_TIMEOUT=30     # give up on one detection / recovery after this
READY_TIMEOUT=30     # detour start until "ready" (first round of probes included)
BUILD_TIMEOUT=1800   # cargo build --release, from scratch, worst case
STOP_TIMEOUT=15      # SIGTERM until SIGKILL

. "$B/lib.sh"

while [[ $# -gt 0 ]]; do
  case "$1" in
    --reps)     need_arg "$@"; REPS="$2"; shift 2 ;;
    --mode)     need_arg "$@"; MODE="$2"; shift 2 ;;
    --interval) need_arg "$@"; INTERVAL="$2"; shift 2 ;;
    --fall)     need_arg "$@"; FALL="$2"; shift 2 ;;
    --rise)     need_arg "$@"; RISE="$2"; shift 2 ;;
    --confirm)  need_arg "$@"; CONFIRM="$2"; shift 2 ;;
    --timeout)  need_arg "$@"; TIMEOUT="$2"; shift 2 ;;
    --poll)     need_arg "$@"; POLL="$2"; shift 2 ;;
    --port)     need_arg "$@"; PORT="$2"; shift 2 ;;
    --bin)      need_arg "$@"; BIN="$2"; shift 2 ;;
    --keep)     KEEP=1; shift ;;
    --guard)    GUARD=1; shift ;;
    --watch)    WATCH=true; shift ;;
    -h|--help)  usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done

in_range "$REPS" 1 1000 || die "--reps must be 1..1000"
[[ "$MODE" == kill || "$MODE" == hang ]] || die "--mode must be kill or hang"
[[ "$FALL" =~ ^[1-9][0-9]*$ ]] || die "--fall must be a positive integer"
[[ "$RISE" =~ ^[1-9][0-9]*$ ]] || die "--rise must be a positive integer"
[[ "$POLL" =~ ^[0-9]*\.?[0-9]+$ ]] || die "--poll must be a number of seconds"
awk -v p="$POLL" 'BEGIN { exit !(p >= 0.005 && p <= 5) }' || die "--poll must be 0.005..5 s"
in_range "$PORT" 1 65535 || die "bad --port"
PORT=$((10#$PORT))
INTERVAL_S="$(dur_s "$INTERVAL")" || die "bad --interval $INTERVAL (e.g. 1s, 500ms)"
CONFIRM_S="$(dur_s "$CONFIRM")" || die "bad --confirm $CONFIRM"
TIMEOUT_S="$(dur_s "$TIMEOUT")" || die "bad --timeout $TIMEOUT"
awk -v i="$INTERVAL_S" -v f="$FALL" -v r="$RISE" -v c="$CONFIRM_S" -v e="$EVENT_TIMEOUT" \
  'BEGIN { exit !(i + (f > r ? f : r) * c + 1 < e) }' \
  || die "interval + fall/rise x confirm must stay well under the ${EVENT_TIMEOUT}s event limit"

command -v python3 >/dev/null || die "python3 is needed (bench/helper.py)"
[[ -r "$HELPER" ]] || die "missing $HELPER"

TMP="$(mktemp -d "${TMPDIR:-/tmp}/detour-failover.XXXXXX")"
BACKEND_PID="" CANARY_PID="" DETOUR_PID="" WAITER_PID=""
cleanup() {
  local rc=$?
  if [[ -n "$WAITER_PID" ]]; then kill -TERM "$WAITER_PID" 2>/dev/null || true; fi
  stop_pid "$DETOUR_PID"
  stop_pid "$BACKEND_PID"
  stop_pid "$CANARY_PID"
  if (( KEEP )); then echo "kept $TMP" >&2; else rm -rf "$TMP"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

rand_sleep() { # 1..3 s, uniform, ms resolution
  local ms=$((1000 + RANDOM % 2001))
  sleep "$((ms / 1000)).$(printf '%03d' $((ms % 1000)))"
}
show_log() { echo "--- detour log (last 40 lines) ---" >&2; tail -n 40 "$TMP/detour.log" >&2 || true; }

accepts "$BACKEND_ADDR" && die "something already listens on $BACKEND_ADDR"
(( GUARD )) && accepts "$CANARY_ADDR" && die "something already listens on $CANARY_ADDR"
accepts "127.0.0.1:$PORT" && die "something already listens on 127.0.0.1:$PORT (use --port)"

# ---- binary -------------------------------------------------------------------

if [[ -z "$BIN" ]]; then
  echo "building: cargo build --release (in $ROOT)" >&2
  (cd "$ROOT" && timeout "$BUILD_TIMEOUT" cargo build --release) || die "cargo build failed"
  BIN="$ROOT/target/release/detour"
fi
[[ -x "$BIN" ]] || die "no binary at $BIN"
# a copy: a concurrent cargo build cannot swap the binary during the run
cp "$BIN" "$TMP/detour"
BIN_ID="$(sha256sum "$TMP/detour" | cut -c1-12)"
echo "binary: $BIN (sha256 $BIN_ID..., built $(date -r "$BIN" -Is))" >&2

# ---- config -------------------------------------------------------------------

mkdir -p "$TMP/zones" "$TMP/state" "$TMP/www"
cat >"$TMP/detour.toml" <<EOF
# generated by bench/failover.sh
[server]
dns_listen = ["127.0.0.1:$PORT"]
page_listen = ["127.0.0.1:0"]
# not the default 127.0.0.1:8053: a run must not take (or answer on) the port of
# another detour, e.g. one started by the test suite
admin_listen = "unix:state/admin.sock"
zones_dir = "zones"
state_dir = "state"

[services.mls]
check = { type = "http", url = "http://$BACKEND_ADDR/", interval = "$INTERVAL", timeout = "$TIMEOUT", rise = $RISE, fall = $FALL, confirm_interval = "$CONFIRM", watch = $WATCH }
EOF
if (( GUARD )); then
  cat >>"$TMP/detour.toml" <<EOF

[guard]
canaries = [{ type = "tcp", address = "$CANARY_ADDR", interval = "5s", timeout = "$TIMEOUT" }]
EOF
fi
cat >"$TMP/zones/bench.test.toml" <<EOF
# generated by bench/failover.sh
origin = "example.test."
soa = { mname = "ns1.example.test.", rname = "h.example.test.", minimum = 30 }
ns = ["ns1.example.test."]
records = [ { name = "ns1", type = "A", value = "127.0.0.1" } ]

[[dynamic]]
name = "mls"
type = "A"
ttl = 1
answers = [ { if_up = "mls", values = ["$UP_IP"] } ]
otherwise = ["$DOWN_IP"]
EOF
"$TMP/detour" check --config "$TMP/detour.toml" >"$TMP/check.out" 2>&1 \
  || { cat "$TMP/check.out" >&2; die "detour check rejected the generated config"; }

# ---- backend and detour ---------------------------------------------------------

# The backend lives at most as long as the whole run could.
LIFETIME=$(( REPS * (2 * EVENT_TIMEOUT + 8) + READY_TIMEOUT + 120 ))
start_backend() {
  python3 "$HELPER" httpd --listen "$BACKEND_ADDR" --log "$TMP/backend.log" \
    --lifetime "$LIFETIME" </dev/null >>"$TMP/backend.out" 2>&1 &
  BACKEND_PID=$!
}
start_backend
for ((i = 0; i < 100; i++)); do accepts "$BACKEND_ADDR" && break; sleep 0.1; done
accepts "$BACKEND_ADDR" || { cat "$TMP/backend.out" >&2; die "backend did not start"; }
if (( GUARD )); then
  python3 "$HELPER" httpd --listen "$CANARY_ADDR" --log "$TMP/canary.log" \
    --lifetime "$LIFETIME" </dev/null >>"$TMP/canary.out" 2>&1 &
  CANARY_PID=$!
  for ((i = 0; i < 100; i++)); do accepts "$CANARY_ADDR" && break; sleep 0.1; done
  accepts "$CANARY_ADDR" || { cat "$TMP/canary.out" >&2; die "canary did not start"; }
fi

uptime_before="$(uptime)"
echo "starting: $BIN run --config $TMP/detour.toml" >&2
t_start="$(now)"
"$TMP/detour" run --config "$TMP/detour.toml" </dev/null >"$TMP/detour.log" 2>&1 &
DETOUR_PID=$!
deadline=$((SECONDS + READY_TIMEOUT))
until grep -qs ' ready$' "$TMP/detour.log"; do
  kill -0 "$DETOUR_PID" 2>/dev/null || { show_log; die "detour exited during start-up"; }
  (( SECONDS < deadline )) || { show_log; die "detour not ready within ${READY_TIMEOUT}s"; }
  sleep 0.02
done
t_ready="$(now)"
rss_start="$(awk '$1 == "VmRSS:" { print $2 }' "/proc/$DETOUR_PID/status")"
log_start="$(wc -l <"$TMP/detour.log")"

# wait-answer WANT T0 [extra args]: runs the poller in the background (so a
# signal to this script is handled at once) and prints its one line.
wait_answer() {
  local want="$1" t0="$2" rc=0
  shift 2
  python3 "$HELPER" wait-answer --server "127.0.0.1:$PORT" --name "$NAME" --want "$want" \
    --t0 "$t0" --poll "$POLL" --timeout "$EVENT_TIMEOUT" "$@" >"$TMP/wait.out" 2>&1 &
  WAITER_PID=$!
  wait "$WAITER_PID" || rc=$?
  WAITER_PID=""
  cat "$TMP/wait.out"
  return "$rc"
}
kv() { sed -n "s/.*\\b$1=\\([^ ]*\\).*/\\1/p" <<<"$2"; }

first="$(wait_answer "$UP_IP" "$(now)")" \
  || { show_log; die "mls.example.test never answered $UP_IP at start: $first"; }
echo "detour $DETOUR_PID ready after $(awk -v a="$t_start" -v b="$t_ready" 'BEGIN { printf "%.2f", b - a }') s; answers $UP_IP" >&2

# ---- reps -----------------------------------------------------------------------

# Backend request times bracket each event: the last probe answered before
# the failure, and the first answered after the backend is restored.
last_probe_before() { awk -v t="$1" '$1 < t { p = $1 } END { print (p == "" ? 0 : p) }' "$TMP/backend.log"; }
first_probe_after() { awk -v t="$1" '$1 >= t { print $1; exit }' "$TMP/backend.log"; }

# What one failing probe costs: nothing when the connect is refused, the whole
# timeout when the backend hangs. The next probe starts confirm_interval after
# the previous one started, or when it ended if that is later.
FAIL_S=0
[[ "$MODE" == hang ]] && FAIL_S="$TIMEOUT_S"
STEP_S="$(awk -v c="$CONFIRM_S" -v f="$FAIL_S" 'BEGIN { print (f > c ? f : c) }')"

printf '\ndetour failover%s  %s  mode %s  interval %s  fall %s  rise %s  confirm %s  timeout %s  poll %ss  %s reps\n' \
 "$( (( GUARD )) && echo ' (with a guard canary)')$( [[ $WATCH == true ]] && echo ' (watched)')" "$(date -Is)" "$MODE" "$INTERVAL" "$FALL" "$RISE" "$CONFIRM" "$TIMEOUT" "$POLL" "$REPS"
printf '  %-4s %9s %9s %10s %9s %10s %9s %9s  %s\n' rep detect_s det_xs_s recover_s ready_s rec-rdy_s probe1_s rec_xs_s polls/lost/odd
: >"$TMP/rows"
for ((rep = 1; rep <= REPS; rep++)); do
  rand_sleep
  t0="$(now)"
  if [[ "$MODE" == kill ]]; then
    kill -KILL "$BACKEND_PID"
    wait "$BACKEND_PID" 2>/dev/null || true
    BACKEND_PID=""
  else
    kill -USR1 "$BACKEND_PID"
  fi
  det_line="$(wait_answer "$DOWN_IP" "$t0")" || true
  det="$(kv answer_s "$det_line")"
  # excess over the schedule: the next probe was due one interval after the last
  # one that passed; it fails after FAIL_S, then (fall - 1) more, STEP_S apart
  lp="$(last_probe_before "$t0")"
  det_xs=NA
  if [[ "$det" != NA && "$lp" != 0 ]]; then
    det_xs="$(awk -v d="$det" -v lp="$lp" -v t0="$t0" -v i="$INTERVAL_S" -v f="$FALL" -v x="$FAIL_S" -v s="$STEP_S" \
      'BEGIN { printf "%.3f", d - (lp + i + x + (f - 1) * s - t0) }')"
  fi

  rand_sleep
  t1="$(now)"
  if [[ "$MODE" == kill ]]; then
    start_backend
    rec_line="$(wait_answer "$UP_IP" "$t1" --ready "$BACKEND_ADDR")" || true
    rdy="$(kv ready_s "$rec_line")"
  else
    kill -USR2 "$BACKEND_PID"
    rec_line="$(wait_answer "$UP_IP" "$t1")" || true
    rdy=0.000   # it never stopped accepting
  fi
  rec="$(kv answer_s "$rec_line")"
  net=NA p1=NA rec_xs=NA
  if [[ "$rec" != NA && "$rdy" != NA ]]; then
    net="$(awk -v a="$rec" -v r="$rdy" 'BEGIN { printf "%.3f", a - r }')"
  fi
  fp="$(first_probe_after "$t1")"
  if [[ -n "$fp" && "$rec" != NA ]]; then
    p1="$(awk -v p="$fp" -v t="$t1" 'BEGIN { printf "%.3f", p - t }')"
    rec_xs="$(awk -v a="$rec" -v p="$p1" -v r="$RISE" -v c="$CONFIRM_S" \
      'BEGIN { printf "%.3f", a - (p + (r - 1) * c) }')"
  fi
  pl="$(kv polls "$det_line")/$(kv lost "$det_line")/$(kv odd "$det_line") $(kv polls "$rec_line")/$(kv lost "$rec_line")/$(kv odd "$rec_line")"
  printf '  %-4s %9s %9s %10s %9s %10s %9s %9s  %s\n' "$rep" "$det" "$det_xs" "$rec" "$rdy" "$net" "$p1" "$rec_xs" "$pl"
  echo "$rep $det $det_xs $rec $rdy $net $p1 $rec_xs" >>"$TMP/rows"
  if [[ "$det" == NA ]]; then echo "  rep $rep: no switch to $DOWN_IP within ${EVENT_TIMEOUT}s ($det_line)" >&2; fi
  if [[ "$rec" == NA ]]; then echo "  rep $rep: no switch back to $UP_IP within ${EVENT_TIMEOUT}s ($rec_line)" >&2; fi
done
uptime_after="$(uptime)"

# ---- summary ----------------------------------------------------------------------

# column N of rows: "median max n" over numeric values
stat() {
  awk -v c="$1" '$c != "NA" { print $c }' "$TMP/rows" | sort -g | awk '
    { v[NR] = $1 } END {
      if (NR == 0) { print "NA NA 0"; exit }
      m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
      printf "%.3f %.3f %d\n", m, v[NR], NR }'
}
read -r det_med det_max det_n < <(stat 2)
read -r dxs_med dxs_max _ < <(stat 3)
read -r rec_med rec_max rec_n < <(stat 4)
read -r rdy_med rdy_max _ < <(stat 5)
read -r net_med net_max _ < <(stat 6)
read -r rxs_med rxs_max _ < <(stat 8)
# Bounds. Detection waits at most one interval for the next probe, which fails
# after FAIL_S (0 for a refused connect, the timeout for a hang), then (fall - 1)
# more failures STEP_S = max(confirm, FAIL_S) apart; the poller adds up to one
# poll. Recovery, counted from when the backend answers again: a down check is
# probed at the down pace (the generated config leaves down_interval at its
# default, the confirm pace), then (rise - 1) confirmations, plus one poll.
det_bound="$(awk -v i="$INTERVAL_S" -v f="$FALL" -v x="$FAIL_S" -v s="$STEP_S" -v p="$POLL" 'BEGIN { printf "%.3f", i + x + (f - 1) * s + p }')"
det_exp="$(awk -v i="$INTERVAL_S" -v f="$FALL" -v x="$FAIL_S" -v s="$STEP_S" -v p="$POLL" 'BEGIN { printf "%.3f", i / 2 + x + (f - 1) * s + p / 2 }')"
net_bound="$(awk -v r="$RISE" -v c="$CONFIRM_S" -v p="$POLL" 'BEGIN { printf "%.3f", c + (r - 1) * c + p }')"
# what `detour check` prints as the detection budget
budget="$(awk -v i="$INTERVAL_S" -v f="$FALL" -v c="$CONFIRM_S" -v t="$TIMEOUT_S" 'BEGIN { m = c > t ? c : t; printf "%.3f", i + (f - 1) * m + t }')"
over_budget="$(awk -v b="$budget" '$2 != "NA" && $2 > b' "$TMP/rows" | wc -l)"
over_det="$(awk -v b="$det_bound" '$2 != "NA" && $2 > b' "$TMP/rows" | wc -l)"
over_net="$(awk -v b="$net_bound" '$6 != "NA" && $6 > b' "$TMP/rows" | wc -l)"

# detour's side: log lines after "ready", transitions, warnings, memory
log_lines=$(( $(wc -l <"$TMP/detour.log") - log_start ))
changes="$(tail -n +"$((log_start + 1))" "$TMP/detour.log" | grep -c 'service state changed' || true)"
warns="$(tail -n +"$((log_start + 1))" "$TMP/detour.log" | grep -cE ' (WARN|ERROR) ' || true)"
rss_end="$(awk '$1 == "VmRSS:" { print $2 }' "/proc/$DETOUR_PID/status" 2>/dev/null || echo NA)"
hwm_end="$(awk '$1 == "VmHWM:" { print $2 }' "/proc/$DETOUR_PID/status" 2>/dev/null || echo NA)"

printf '\n  detection  median %s s  max %s s  (%s/%s reps; expected mean %s, bound %s; %s over bound)\n' \
  "$det_med" "$det_max" "$det_n" "$REPS" "$det_exp" "$det_bound" "$over_det"
printf '             excess over the probe schedule: median %s s  max %s s\n' "$dxs_med" "$dxs_max"
if [[ "$MODE" == kill ]]; then
  printf '  recovery   median %s s  max %s s  (%s/%s reps), from the restart\n' "$rec_med" "$rec_max" "$rec_n" "$REPS"
  printf '             backend accepting after median %s s  max %s s\n' "$rdy_med" "$rdy_max"
else
  printf '  recovery   median %s s  max %s s  (%s/%s reps), from when it answers again\n' "$rec_med" "$rec_max" "$rec_n" "$REPS"
fi
printf '             from then: median %s s  max %s s  (bound %s; %s over bound)\n' "$net_med" "$net_max" "$net_bound" "$over_net"
printf '             excess over the probe schedule: median %s s  max %s s\n' "$rxs_med" "$rxs_max"
printf '  detour check'"'"'s budget: detection within %s s (interval + (fall-1) x max(confirm, timeout) + timeout); %s reps over it\n' "$budget" "$over_budget"
printf '  detour pid %s: %s log lines after ready (%s state changes, %s warnings/errors), RSS %s -> %s kB (peak %s kB)\n' \
  "$DETOUR_PID" "$log_lines" "$changes" "$warns" "$rss_start" "$rss_end" "$hwm_end"
printf '  load before: %s\n  load after:  %s\n' "${uptime_before#*load average: }" "${uptime_after#*load average: }"
printf 'watch=%s\tguard=%s\tmode=%s\treps=%s\tinterval=%s\tfall=%s\trise=%s\tconfirm=%s\ttimeout=%s\tpoll=%s\tdetect_med=%s\tdetect_max=%s\tdetect_bound=%s\trecover_med=%s\trecover_max=%s\tready_med=%s\trecover_net_med=%s\trecover_net_max=%s\trecover_net_bound=%s\tlog_lines=%s\trss_kb=%s\n' \
  "$WATCH" "$GUARD" "$MODE" "$REPS" "$INTERVAL" "$FALL" "$RISE" "$CONFIRM" "$TIMEOUT" "$POLL" "$det_med" "$det_max" "$det_bound" \
  "$rec_med" "$rec_max" "$rdy_med" "$net_med" "$net_max" "$net_bound" "$log_lines" "$rss_end"
if (( det_n < REPS || rec_n < REPS )); then show_log; exit 1; fi
