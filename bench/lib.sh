# lib.sh - helpers the bench scripts share; sourced, not run:
#   . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# die and need_arg name the sourcing script; stop_pid reads STOP_TIMEOUT (seconds).

die() { echo "${0##*/}: $*" >&2; exit 2; }
# The sourcing script's header comment (from line 2 to the first line that is not one).
usage() { awk 'NR > 1 && !/^#/ { exit } NR > 1' "$0" | sed 's/^# \{0,1\}//'; }
need_arg() { [[ $# -ge 2 && -n "$2" ]] || die "$1 needs a value"; }

# "PACKAGES" CMD...: every CMD is on PATH, else stop naming the Debian packages to install
need_cmds() {
  local pkgs="$1" c
  shift
  for c in "$@"; do command -v "$c" >/dev/null || die "missing $c: apt-get install -y $pkgs"; done
}

# VALUE MIN MAX: a whole number in [MIN, MAX]
in_range() { [[ "$1" =~ ^[0-9]{1,6}$ ]] && (( 10#$1 >= $2 && 10#$1 <= $3 )); }

# A config duration ("250ms", "1s", "1.5s", "2m") in seconds.
dur_s() {
  awk -v d="$1" 'BEGIN {
    if (match(d, /^[0-9]+(\.[0-9]+)?ms$/)) { print substr(d, 1, length(d) - 2) / 1000; exit }
    if (match(d, /^[0-9]+(\.[0-9]+)?s$/))  { print substr(d, 1, length(d) - 1) + 0; exit }
    if (match(d, /^[0-9]+(\.[0-9]+)?m$/))  { print substr(d, 1, length(d) - 1) * 60; exit }
    exit 1 }'
}

# PID: SIGTERM, SIGKILL after STOP_TIMEOUT seconds, reap (a child of this shell)
stop_pid() {
  local p="$1" i
  [[ -n "$p" ]] && kill -0 "$p" 2>/dev/null || return 0
  kill -TERM "$p" 2>/dev/null || true
  for ((i = 0; i < STOP_TIMEOUT * 10; i++)); do
    kill -0 "$p" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$p" 2>/dev/null; then
    echo "process $p ignored SIGTERM for ${STOP_TIMEOUT}s: SIGKILL" >&2
    kill -KILL "$p" 2>/dev/null || true
  fi
  wait "$p" 2>/dev/null || true
}

# Seconds since the epoch, microseconds.
now() { echo "${EPOCHREALTIME/,/.}"; }

# ADDR:PORT accepts a TCP connection (bash's /dev/tcp, 1 s bound)
accepts() { timeout 1 bash -c "exec 3<>/dev/tcp/${1%:*}/${1##*:}" 2>/dev/null; }
