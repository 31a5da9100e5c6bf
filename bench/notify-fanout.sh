#!/usr/bin/env bash
# notify-fanout.sh - one incident update told to many confirmed subscribers by email: the
# time until the local SMTP server (aiosmtpd, tests/support/smtp_server.py) has accepted the
# last message, at [subscribers] rate; DNS answering meanwhile (dnsperf UDP qps during the
# fan-out against the same length of idle run just before, same command); detour's peak RSS.
# Loopback only; every load bounded in count and time.
#
# usage: bench/notify-fanout.sh [--subscribers N] [--rate R] [-l SECS] [--max-wait S]
#   --subscribers N  confirmed email subscribers (default 10000)
#   --rate R         [subscribers] rate, messages a second (default 200)
#   -l SECS          each dnsperf run (default 10)
#   --max-wait S     give up on the fan-out after S seconds (default 300)
#
# The subscribers are written into subscribers.db (made by a first start of detour) with
# python3's sqlite3, as confirmed: the same rows the form and the confirm link make.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
STOP_TIMEOUT=10

N=10000 RATE=200 LEN=10 MAXWAIT=300
while [[ $# -gt 0 ]]; do
  case "$1" in
    --subscribers) need_arg "$@"; N=$2; shift 2 ;;
    --rate) need_arg "$@"; RATE=$2; shift 2 ;;
    -l) need_arg "$@"; LEN=$2; shift 2 ;;
    --max-wait) need_arg "$@"; MAXWAIT=$2; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
  esac
done
in_range "$N" 1 100000 || die "--subscribers: 1 to 100000"
in_range "$RATE" 1 10000 || die "--rate: 1 to 10000"
in_range "$LEN" 1 60 || die "-l: 1 to 60"
in_range "$MAXWAIT" 10 3600 || die "--max-wait: 10 to 3600"
need_cmds "dnsperf python3-aiosmtpd" dnsperf aiosmtpd

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cargo build --release --quiet --manifest-path "$root/Cargo.toml"
bin="$root/target/release/detour"
work="$(mktemp -d)"
pids=()
cleanup() { for p in "${pids[@]}"; do stop_pid "$p"; done; rm -rf "$work"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
dns=$(free_port) admin=$(free_port) page=$(free_port) smtp=$(free_port)
mkdir -p "$work/zones"
cat >"$work/zones/example.test.toml" <<EOF
origin = "example.test."
soa = { mname = "ns1.example.test.", rname = "h.example.test." }
ns = ["ns1.example.test."]
records = [ { name = "ns1", type = "A", value = "127.0.0.1" },
            { name = "www", type = "A", value = "192.0.2.1" } ]
EOF
cat >"$work/detour.toml" <<EOF
[server]
dns_listen = ["127.0.0.1:$dns"]
admin_listen = "127.0.0.1:$admin"
page_listen = ["127.0.0.1:$page"]
zones_dir = "zones"
state_dir = "state"
udp_workers = 1

[page]
title = "Bench Realty"
url = "http://127.0.0.1:$page/"

[services.mls]
name = "MLS"

[[notify]]
type = "email"
smtp = "smtp://127.0.0.1:$smtp"
from = "status@example.test"
to = ["ops@example.test"]
events = ["guard"]

[subscribers]
channels = ["email"]
rate = $RATE
EOF
start_detour() {
  "$bin" run --config "$work/detour.toml" 2>>"$work/detour.log" &
  pid=$!
  pids+=("$pid")
  for _ in $(seq 100); do grep -q ready "$work/detour.log" 2>/dev/null && return; sleep 0.1; done
  die "detour did not start: $(tail -3 "$work/detour.log")"
}

# 1. A first start makes subscribers.db; then the subscribers go in, confirmed.
start_detour
stop_pid "$pid"
python3 - "$work/state/subscribers.db" "$N" <<'EOF'
import sqlite3, sys, time
db, n = sys.argv[1], int(sys.argv[2])
c = sqlite3.connect(db)
now = int(time.time())
c.executemany(
    "INSERT INTO subscribers (channel, address, services, created_at, confirmed_at) VALUES ('email', ?, '', ?, ?)",
    [("agent%d@example.test" % i, now, now) for i in range(n)],
)
c.commit()
EOF

# 2. The SMTP server, detour, an idle DNS run.
mkfifo "$work/smtp.in"
# Debian's python3, which has python3-aiosmtpd (a pyenv python3 first on PATH may not).
/usr/bin/python3 "$root/tests/support/smtp_server.py" "$smtp" "$work/mail" <"$work/smtp.in" >"$work/smtp.out" 2>"$work/smtp.err" &
pids+=($!)
exec 7>"$work/smtp.in"
for _ in $(seq 50); do grep -q ready "$work/smtp.out" 2>/dev/null && break; sleep 0.1; done
grep -q ready "$work/smtp.out" || die "the SMTP server did not start: $(tail -3 "$work/smtp.err")"
: >"$work/detour.log"
start_detour
printf 'www.example.test A\n' >"$work/queries"
# One bounded dnsperf run; its QPS (its whole output kept in $work/dnsperf.N.log).
runs=0
dnsrun() {
  runs=$((runs + 1))
  dnsperf -s 127.0.0.1 -p "$dns" -d "$work/queries" -l "$LEN" -c 4 -q 100 >"$work/dnsperf.$runs.log" 2>&1 || true
  awk '/Queries per second/ { print $4 }' "$work/dnsperf.$runs.log"
}
idle=$(dnsrun)

# 3. The incident update, the fan-out, DNS under it, RSS sampled every 0.2 s.
t0=$(now)
"$bin" incident open --service mls --config "$work/detour.toml" "Sign-on fails for everyone; the vendor is on it" >/dev/null
(runs=1; dnsrun >"$work/busy.qps") &
dnsjob=$!
peak=0
while :; do
  # find may meet a file being renamed into place (and then exit 1): only the count matters.
  got=$( (find "$work/mail" -name '*.eml' 2>/dev/null || true) | wc -l)
  rss=$(ps -o rss= -p "$pid" 2>/dev/null | tr -d ' ' || echo 0)
  (( rss > peak )) && peak=$rss
  (( got >= N )) && break
  awk -v t0="$t0" -v t="$(now)" -v m="$MAXWAIT" 'BEGIN { exit !(t - t0 > m) }' && die "only $got of $N after ${MAXWAIT}s"
  sleep 0.2
done
last=$( (find "$work/mail" -name '*.eml' -printf '%T@\n' 2>/dev/null || true) | sort -n | tail -1)
wait "$dnsjob"
busy=$(cat "$work/busy.qps")
dup=$(find "$work/mail" -name '*.rcpt' -exec cat {} + | sort | uniq -d | wc -l)
awk -v n="$N" -v rate="$RATE" -v t0="$t0" -v last="$last" -v idle="$idle" -v busy="$busy" -v peak="$peak" -v dup="$dup" 'BEGIN {
  s = last - t0
  printf "subscribers %d, rate %d/s: last message accepted after %.1f s (%.0f msg/s; the rate alone needs %.1f s)\n", n, rate, s, n / s, n / rate
  printf "UDP qps: idle %.0f, during the fan-out %.0f: %.3fx\n", idle, busy, busy / idle
  printf "detour peak RSS during the fan-out: %.1f MB; addresses told twice: %d\n", peak / 1024, dup
}'
