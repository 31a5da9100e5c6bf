#!/usr/bin/env bash
# cluster.sh - a detour cluster (3 etcd members, 3 instances) on loopback against a lone
# instance: failover to the outage answer on all three vs the lone one for the same kills,
# UDP qps of a cluster member vs the lone one, and etcd writes at 1,000 checks / 1 s.
# usage: bench/cluster.sh [bench/cluster.py options]   (see bench/cluster.py --help)
# Builds the release binary first unless --bin is given.
set -euo pipefail
B="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$B/.." && pwd)"
command -v etcd >/dev/null || { echo "etcd is needed: apt-get install -y etcd-server" >&2; exit 2; }
if [[ " $* " != *" --bin "* ]]; then
  (cd "$ROOT" && timeout 1800 cargo build --release --features cluster)
fi
exec timeout 3600 python3 "$B/cluster.py" "$@"
