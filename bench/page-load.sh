#!/usr/bin/env bash
# page-load.sh - load detour's outage page with wrk on loopback while DNS keeps answering.
#
# usage: bench/page-load.sh [options]
#   --duration SECS   wrk run length, default 10
#   --connections N   wrk connections (-c), default 64
#   --threads N       wrk threads (-t), default 2
#   --pin             pin detour to CPU 0 and wrk to CPU 1 (taskset); default: no pinning,
#                     both share the machine as they would in production
#   --binary PATH     detour binary to run, default target/release/detour (built with
#                     cargo build --release when missing or older than the sources)
#   -h, --help        this text
#
# It writes a config into a temporary folder: DNS, page and admin API on free loopback
# ports; the MLS is down (its check points at a closed port) so mls.example.test points at
# the outage page, with an incident posted through the admin API. Then it runs
#   wrk -H 'Host: mls.example.test' http://127.0.0.1:PAGE/
# and, during the run, one `dig` a second against detour's DNS, and prints requests/s, p99
# latency, how many responses were 503, and every dig answer with its time. detour is
# stopped by its PID when the script exits, however it exits.
#
# Needs: wrk and dig (Debian packages wrk, bind9-dnsutils), curl, python3.
set -euo pipefail

B="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$B/.." && pwd)"

DURATION=10
CONNECTIONS=64
THREADS=2
PIN=0
BIN="$ROOT/target/release/detour"
STOP_TIMEOUT=15

. "$B/lib.sh"

while [[ $# -gt 0 ]]; do
  case "$1" in
    --duration)    need_arg "$@"; DURATION="$2"; shift 2 ;;
    --connections) need_arg "$@"; CONNECTIONS="$2"; shift 2 ;;
    --threads)     need_arg "$@"; THREADS="$2"; shift 2 ;;
    --pin)         PIN=1; shift ;;
    --binary)      need_arg "$@"; BIN="$2"; shift 2 ;;
    -h|--help)     usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done
[[ "$DURATION" =~ ^[1-9][0-9]*$ ]] && (( DURATION <= 600 )) || die "--duration: 1..600 seconds"
[[ "$CONNECTIONS" =~ ^[1-9][0-9]*$ ]] || die "--connections must be a positive integer"
[[ "$THREADS" =~ ^[1-9][0-9]*$ ]] || die "--threads must be a positive integer"
need_cmds "wrk bind9-dnsutils curl python3" wrk dig curl python3
if (( PIN )); then
  command -v taskset >/dev/null || die "--pin needs taskset (util-linux)"
  (( $(nproc) >= 2 )) || die "--pin needs two CPUs"
fi

if [[ "$BIN" == "$ROOT/target/release/detour" ]]; then
  if [[ ! -x "$BIN" ]] || [[ -n "$(find "$ROOT/src" "$ROOT/templates" "$ROOT/Cargo.toml" -newer "$BIN" -print -quit)" ]]; then
    echo "building: cargo build --release"
    (cd "$ROOT" && cargo build --release --quiet)
  fi
fi
[[ -x "$BIN" ]] || die "no detour binary at $BIN"

# Three free loopback ports (bound, then released: good enough for a one-off run).
read -r DNS_PORT PAGE_PORT ADMIN_PORT < <(python3 - <<'EOF'
import socket
socks = [socket.socket() for _ in range(3)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in socks])
EOF
)

WORK="$(mktemp -d)"
PID=""
cleanup() {
  if [[ -n "$PID" ]] && kill -0 "$PID" 2>/dev/null; then
    kill -TERM "$PID" 2>/dev/null || true
    for _ in $(seq $((STOP_TIMEOUT * 10))); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

CLOSED=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$WORK/zones"
cat >"$WORK/detour.toml" <<EOF
[server]
dns_listen   = ["127.0.0.1:$DNS_PORT"]
page_listen  = ["127.0.0.1:$PAGE_PORT"]
admin_listen = "127.0.0.1:$ADMIN_PORT"
state_dir    = "state"
zones_dir    = "zones"

[page]
title   = "Example Realty — system status"
contact = "Help desk: 555-0100 (24/7)"
links   = [{ label = "Agent handbook", url = "https://handbook.example.test/" }]

[services.sso]
name = "MLS Sign-On"
url  = "https://sso.example.test/"
description = "Single sign-on portal"
check = { type = "tcp", address = "127.0.0.1:$CLOSED", interval = "5s" }

[services.mls]
name = "MLS"
url  = "https://mls.example.test/"
description = "Listings, search and showings"
depends_on = ["sso"]
check = { type = "tcp", address = "127.0.0.1:$CLOSED", interval = "5s" }

[services.forms]
name = "Forms"
url  = "https://forms.example.net/login"
description = "Transaction forms: log in directly at this address"
depends_on = ["sso"]

[services.tax]
name = "Tax records"
url  = "https://tax.example.net/"
description = "County tax data"
EOF
cat >"$WORK/zones/example.test.toml" <<'EOF'
origin = "example.test."
soa = { mname = "ns1.example.test.", rname = "hostmaster.example.test.", minimum = 60 }
ns  = ["ns1.example.test."]
records = [ { name = "ns1", type = "A", value = "127.0.0.1" } ]

[[dynamic]]
name = "mls"
type = "A"
ttl  = 30
answers = [ { if_up = "mls", values = ["127.0.0.10"] } ]
otherwise = ["127.0.0.1"]
EOF

SERVER_CMD=("$BIN" run --config "$WORK/detour.toml")
WRK_CMD=(wrk)
if (( PIN )); then
  SERVER_CMD=(taskset -c 0 "${SERVER_CMD[@]}")
  WRK_CMD=(taskset -c 1 wrk)
fi
RUST_LOG=warn "${SERVER_CMD[@]}" >"$WORK/detour.log" 2>&1 &
PID=$!

page_status() {
  curl -s -o /dev/null -w '%{http_code}' -H 'Host: mls.example.test' "http://127.0.0.1:$PAGE_PORT/" || true
}
for _ in $(seq 200); do
  [[ "$(page_status)" == 503 ]] && break
  kill -0 "$PID" 2>/dev/null || { cat "$WORK/detour.log" >&2; die "detour exited"; }
  sleep 0.1
done
[[ "$(page_status)" == 503 ]] || { cat "$WORK/detour.log" >&2; die "the outage page never answered 503"; }

TOKEN="$(cat "$WORK/state/admin.token")"
curl -sf -o /dev/null -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
  -d '{"services":["mls"],"message":"The MLS is down; the vendor is restoring it. Forms and tax records work."}' \
  "http://127.0.0.1:$ADMIN_PORT/api/v1/incidents"

BYTES=$(curl -s -H 'Host: mls.example.test' "http://127.0.0.1:$PAGE_PORT/" | wc -c)
echo "detour pid $PID: DNS 127.0.0.1:$DNS_PORT, page 127.0.0.1:$PAGE_PORT ($BYTES-byte outage page)"
echo "wrk: $THREADS threads, $CONNECTIONS connections, ${DURATION}s, Host: mls.example.test$( (( PIN )) && echo ', detour on CPU 0, wrk on CPU 1')"

# One dig a second during the run: DNS must keep answering while the page is hammered.
(
  for i in $(seq "$DURATION"); do
    sleep 1
    out=$(dig +tries=1 +time=2 -p "$DNS_PORT" @127.0.0.1 mls.example.test A 2>&1) || true
    ans=$(awk '/^mls\.example\.test\..*IN[[:space:]]+A/ {print $NF}' <<<"$out" | paste -sd, -)
    ms=$(awk '/Query time:/ {print $4}' <<<"$out")
    echo "dig $i: ${ans:-NO ANSWER} in ${ms:-?} ms"
  done
) >"$WORK/dig.txt" &
DIG_PID=$!

"${WRK_CMD[@]}" -t "$THREADS" -c "$CONNECTIONS" -d "${DURATION}s" --latency \
  -H 'Host: mls.example.test' "http://127.0.0.1:$PAGE_PORT/" >"$WORK/wrk.txt" 2>&1 || {
  cat "$WORK/wrk.txt" >&2
  die "wrk failed"
}
wait "$DIG_PID" || true

cat "$WORK/wrk.txt"
echo
cat "$WORK/dig.txt"
RPS=$(awk '/^Requests\/sec:/ {print $2}' "$WORK/wrk.txt")
P99=$(awk '$1 == "99%" {print $2}' "$WORK/wrk.txt")
TOTAL=$(awk '/requests in/ {print $1}' "$WORK/wrk.txt")
NON2XX=$(awk '/Non-2xx or 3xx responses:/ {print $5}' "$WORK/wrk.txt")
ERRORS=$(awk '/Socket errors:/ {print}' "$WORK/wrk.txt")
DIG_OK=$(grep -c '127\.0\.0\.1 in' "$WORK/dig.txt" || true)
echo
echo "requests/s: $RPS   p99: $P99   responses: $TOTAL (503: ${NON2XX:-0})   DNS answered: $DIG_OK/$DURATION digs${ERRORS:+   $ERRORS}"
printf 'rps=%s\tp99=%s\trequests=%s\tnon2xx=%s\tdns_ok=%s\tdigs=%s\n' \
  "$RPS" "$P99" "$TOTAL" "${NON2XX:-0}" "$DIG_OK" "$DURATION"
[[ "$DIG_OK" == "$DURATION" ]] || die "DNS did not answer every dig during the load"
