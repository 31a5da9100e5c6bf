#!/usr/bin/env bash
# fuzz.sh - coverage-guided fuzzing of detour with libFuzzer on the stable toolchain (the
# sancov instrumentation cargo-fuzz uses, without its nightly-only sanitizers), each target
# for a bounded time; corpora are kept in fuzz/corpus/TARGET and crashes in fuzz/artifacts/.
#
# usage: bench/fuzz.sh [--seconds N] [TARGET...]   (targets: query config operator admin;
#        default all)
# Prints, per target, libFuzzer's last line: executions, coverage (cov: edges, ft: features),
# corpus size, executions per second. Exit 1 if any target found a crash.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
seconds=60 targets=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --seconds) seconds="$2"; shift 2;;
    -h|--help) sed -n '/^set /q; 2,$p' "$0"; exit 0;;
    *) targets+=("$1"); shift;;
  esac
done
[[ "$seconds" =~ ^[0-9]+$ ]] && (( seconds >= 1 && seconds <= 86400 )) || { echo "--seconds 1..86400" >&2; exit 2; }
[[ ${#targets[@]} -gt 0 ]] || targets=(query config operator admin)
triple="$(rustc -vV | sed -n 's/^host: //p')"
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
  -Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
  -Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks"
# --target keeps the flags off build scripts (they cannot link the instrumentation).
(cd "$root/fuzz" && cargo build --release --target "$triple" --bins)
failed=0
for t in "${targets[@]}"; do
  mkdir -p "$root/fuzz/corpus/$t" "$root/fuzz/artifacts/$t"
  log="$(mktemp /tmp/detour-fuzz-$t.XXXXXX)"
  if (cd "$root/fuzz" && "target/$triple/release/$t" -max_total_time="$seconds" -rss_limit_mb=4096 \
        -artifact_prefix="artifacts/$t/" "corpus/$t") >"$log" 2>&1; then
    echo "$t: $(grep -E '^#[0-9]+' "$log" | tail -n 1)"
  else
    failed=1
    echo "$t: CRASH, see $log and fuzz/artifacts/$t/"; tail -n 20 "$log"
  fi
done
exit "$failed"
