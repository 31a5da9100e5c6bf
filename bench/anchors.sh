#!/usr/bin/env bash
# anchors.sh - detour side by side with gdnsd, NSD, Knot and PowerDNS, in one run of the
# shared harness (../shared/bench-anchors; read-only, so it is copied to a temp folder).
#
# usage: bench/anchors.sh [--reps N] [--anchors "gdnsd nsd knot pdns"]
#                         [--swap | --reload | --failover] [-- extra options]
#   --anchors   which anchors to load next to detour (default all four)
#   --swap      while detour is loaded, flip the `mls` record every 100 ms through the admin
#               API (an override set and cleared), to show a Snapshot swap costs readers nothing
#   --reload    while detour is loaded, send it SIGHUP (a full reload) every second
#   --failover  instead of the load runs: the shared failover.sh, N reps (default 10), on
#               detour (bench/anchors-failover: interval 1s, fall 2, rise 2, confirm 250ms)
#               next to gdnsd-failover and pdns-failover, on the same kill/restart events
#   --watch     with --failover: watch = true on detour's check (an idle connection whose
#               closing makes it probe at once)
#   --dnssec    the zone signed (detour: [dnssec], ECDSA P-256 and NSEC3; Knot: automatic
#               signing, same algorithm and NSEC3 without salt or iterations) and every query
#               with DO (dnsperf -D); only the anchor that signs (Knot) is loaded
#   --views     a second detour (port 5310, also pinned to CPU 0) with two [views.*] and a
#               drill in force in one of them, loaded in the same run as "detour-views":
#               every query from 127.0.0.1 (in no view) is matched against the views'
#               prefixes, the cost views add to everyone's answers
# Every server is on loopback; detour is pinned to CPU 0 like the anchors, dnsperf to CPU 1.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
. "$here/lib.sh"
reps="" anchors="gdnsd nsd knot pdns" swap=0 reload=0 failover=0 watch=0 dnssec=0 views=0 extra=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --reps) need_arg "$@"; reps="$2"; shift 2;;
    --anchors) [[ $# -ge 2 ]] || die "--anchors needs a value"; anchors="$2"; shift 2;;
    --swap) swap=1; shift;;
    --reload) reload=1; shift;;
    --failover) failover=1; shift;;
    --watch) watch=1; shift;;
    --dnssec) dnssec=1; anchors="knot"; shift;;
    --views) views=1; shift;;
    --) shift; extra=("$@"); break;;
    -h|--help) usage; exit 0;;
    *) usage >&2; die "unknown option $1";;
  esac
done
[[ -z "$reps" ]] || in_range "$reps" 1 100 || die "--reps must be 1..100"
(( swap + reload + failover <= 1 )) || die "--swap, --reload and --failover exclude each other"
(( watch == 0 || failover == 1 )) || die "--watch goes with --failover"
(( views == 0 || failover == 0 )) || die "--views does not go with --failover"
shared="$root/../shared/bench-anchors"
[[ -d "$shared" ]] || { echo "no $shared" >&2; exit 2; }
need_cmds "dnsperf gdnsd nsd knot pdns-server pdns-backend-bind bind9-dnsutils" \
  dnsperf gdnsd nsd knotd pdns_server dig
work="$(mktemp -d /tmp/detour-anchors.XXXXXX)"
cp -r "$shared" "$work/h" && chmod -R u+w "$work/h"
if [[ $failover -eq 1 ]]; then
  cp -r "$here/anchors-failover" "$work/detour"; port=5329
  if [[ $watch -eq 1 ]]; then
    sed -i 's/confirm_interval = "250ms" }/confirm_interval = "250ms", watch = true }/' "$work/detour/detour.toml"
    grep -q 'watch = true' "$work/detour/detour.toml" || { echo "could not set watch = true" >&2; exit 2; }
  fi
else
  cp -r "$here/anchors" "$work/detour"; port=5309
fi
(cd "$root" && cargo build --release --quiet)
(cd "$work/h" && anchors/gen-configs.sh >/dev/null)
if [[ $dnssec -eq 1 ]]; then
  (( failover == 0 )) || die "--dnssec goes with the load runs, not --failover"
  printf '\n[dnssec]\nalgorithm = "ecdsap256sha256"\ndenial = "nsec3"\n' >>"$work/detour/zones/example.test.toml"
  # Knot signs the same zone itself: ECDSA P-256, NSEC3 (RFC 9276: no salt, no iteration).
  # (A policy must come before the zone that names it.)
  knot="$work/h/anchors/knot/knot.conf"
  awk '/^zone:/ { print "policy:\n  - id: bench\n    algorithm: ecdsap256sha256\n    nsec3: on\n    nsec3-iterations: 0\n    nsec3-salt-length: 0" } { print }' \
    "$knot" >"$knot.new" && mv "$knot.new" "$knot"
  printf '    dnssec-signing: on\n    dnssec-policy: bench\n' >>"$knot"
  # Every query with DO: dnsperf -D.
  sed -i 's/dnsperf "\${args\[@\]}"/dnsperf -D "${args[@]}"/' "$work/h/qps.sh"
  grep -q 'dnsperf -D' "$work/h/qps.sh" || die "could not make the harness send DO"
fi
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
# Another server on the port would take the load (UDP sockets share it with SO_REUSEPORT)
# while the detour started here dies on the TCP bind: refuse instead of measuring it.
if dig +short +time=1 +tries=1 @127.0.0.1 -p "$port" mls.example.test >/dev/null 2>&1; then
  echo "something already answers on 127.0.0.1:$port; stop it first" >&2; exit 2
fi
(cd "$work/detour" && exec taskset -c 0 "$root/target/release/detour" run --config detour.toml 2>"$work/detour.log") &
dpid=$!; pids+=("$dpid")
for _ in $(seq 1 100); do dig +short +time=1 +tries=1 @127.0.0.1 -p "$port" mls.example.test >/dev/null 2>&1 && break; sleep 0.1; done
if ! kill -0 "$dpid" 2>/dev/null; then
  echo "detour did not start; its log:" >&2; tail -5 "$work/detour.log" >&2; exit 1
fi
if [[ $failover -eq 1 ]]; then
  (cd "$work/h" && ./failover.sh --reps "${reps:-10}" "${extra[@]}" gdnsd-failover pdns-failover "detour=127.0.0.1:$port")
  echo "detour log: $work/detour.log"
  exit 0
fi
targets=("detour=127.0.0.1:5309@$dpid")
if [[ $views -eq 1 ]]; then
  # The same zone and config, plus two views; a drill of mls in view staff (30 minutes,
  # ended with the process) so that the views' Snapshots are live during the load.
  cp -r "$here/anchors" "$work/detour-views"
  sed -i 's/127.0.0.1:5309/127.0.0.1:5310/' "$work/detour-views/detour.toml"
  cat >>"$work/detour-views/detour.toml" <<'TOML'

[views.staff]
sources = ["10.0.0.0/8", "2001:db8::/32"]

[views.lab]
sources = ["192.168.50.0/24", "172.16.0.0/12"]
TOML
  (cd "$work/detour-views" && exec taskset -c 0 "$root/target/release/detour" run --config detour.toml 2>"$work/detour-views.log") &
  vpid=$!; pids+=("$vpid")
  for _ in $(seq 1 100); do dig +short +time=1 +tries=1 @127.0.0.1 -p 5310 mls.example.test >/dev/null 2>&1 && break; sleep 0.1; done
  kill -0 "$vpid" 2>/dev/null || { echo "detour-views did not start:" >&2; tail -5 "$work/detour-views.log" >&2; exit 1; }
  python3 - "$work/detour-views/state/admin.sock" <<'PY'
import http.client, json, socket, sys
class Unix(http.client.HTTPConnection):
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX); self.sock.connect(sys.argv[1])
c = Unix("detour")
c.request("POST", "/api/v1/drills", body=json.dumps({"service": "mls", "view": "staff", "for": "30m", "by": "bench"}),
          headers={"content-type": "application/json"})
r = c.getresponse()
if r.status != 200: sys.exit(f"drill start answered HTTP {r.status}: {r.read()!r}")
PY
  targets+=("detour-views=127.0.0.1:5310@$vpid")
fi
if [[ $reload -eq 1 ]]; then
  ( end=$((SECONDS + 900))
    while [[ $SECONDS -lt $end ]] && kill -HUP "$dpid" 2>/dev/null; do sleep 1; done ) &
  pids+=("$!")
fi
if [[ $swap -eq 1 ]]; then
  # One process for the whole run (a curl per flip would show up as other CPU): set and
  # clear an override of mls every 100 ms over the admin socket, for at most 15 minutes.
  python3 - "$work/detour/state/admin.sock" "$dpid" <<'PY' &
import http.client, os, socket, sys, time
class Unix(http.client.HTTPConnection):
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX); self.sock.connect(sys.argv[1])
end, flips, down = time.monotonic() + 900, 0, True
while time.monotonic() < end and os.path.exists(f"/proc/{sys.argv[2]}"):
    c = Unix("detour")
    if down:
        c.request("PUT", "/api/v1/overrides/mls", body='{"state":"down","by":"bench"}',
                  headers={"content-type": "application/json"})
    else:
        c.request("DELETE", "/api/v1/overrides/mls")
    status = c.getresponse().status; c.close()
    if status >= 300: sys.exit(f"override flip answered HTTP {status}")
    flips += 1; down = not down
    time.sleep(0.1)
print(f"swapper: {flips} flips", file=sys.stderr)
PY
  pids+=("$!")
fi
(cd "$work/h" && ./bench.sh --reps "${reps:-3}" "${extra[@]}" $anchors "${targets[@]}")
[[ $swap -eq 1 ]] && echo "swaps detour logged: $(grep -c 'service state changed' "$work/detour.log" || true)"
[[ $reload -eq 1 ]] && echo "reloads detour logged: $(grep -c 'reload done' "$work/detour.log" || true)"
echo "detour log: $work/detour.log; results under $work/h/results"
