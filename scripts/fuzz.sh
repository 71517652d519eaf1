#!/usr/bin/env bash
# Coverage-guided fuzzing on the stable toolchain (issue 20, line 4): the fuzz/ crate's targets are built with
# libFuzzer (the libfuzzer-sys crate) and LLVM's sanitizer-coverage passes, the flags cargo-fuzz passes, which
# stable rustc takes; no nightly is needed (`cargo +nightly fuzz run <target>` in fuzz/ works as well). Each target
# runs for --seconds from its seed corpus (fuzz/corpus/<target>, written by `cargo run --bin make_seeds` in
# fuzz/) into a scratch corpus; two run at once. A crash, a timeout (10 s per input) or memory over 2 GiB fails
# the run, and the input is kept in fuzz/artifacts/<target>/ to reproduce with `<binary> <file>`.
#
# Usage: scripts/fuzz.sh [--seconds N] [--jobs J] [--build-only] [target...]   (default: 60 s each, every target)
# --build-only builds the targets and stops (scripts/test.sh builds them at low priority while other tests run).
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs=60
jobs=2
build_only=false
targets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) secs=$2; shift 2 ;;
    --jobs) jobs=$2; shift 2 ;;
    --build-only) build_only=true; shift ;;
    *) targets+=("$1"); shift ;;
  esac
done
[ ${#targets[@]} -gt 0 ] || targets=(wal_segment btree_page snapshot bbolt_reader peer_frame grpc_request)
host=$(rustc -vV | sed -n 's/^host: //p')
# An explicit --target keeps these flags off build scripts and proc macros, as cargo-fuzz does.
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks"
export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-$PWD/target}"
bins=()
for t in "${targets[@]}"; do bins+=(--bin "$t"); done
cargo build --release --locked --target "$host" "${bins[@]}"
! $build_only || exit 0
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
run() {
  local t=$1 bin="$CARGO_TARGET_DIR/$host/release/$1"
  mkdir -p "$work/$t" "$work/$t-crash"
  if "$bin" -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
      -artifact_prefix="$work/$t-crash/" "$work/$t" "corpus/$t" >"$work/$t.log" 2>&1; then
    echo "fuzz $t: ok, $(grep -E '^stat::number_of_executed_units' "$work/$t.log" | awk '{print $2}') inputs in ${secs} s, \
$(grep -E '#[0-9]+.*(DONE|pulse|NEW|REDUCE)' "$work/$t.log" | tail -1 | grep -oE 'cov: [0-9]+ ft: [0-9]+ corp: [0-9]+/[0-9]+[a-zA-Z]*')"
  else
    echo "fuzz $t: FAILED; the log's end:"
    tail -n 40 "$work/$t.log"
    mkdir -p "artifacts/$t"
    cp "$work/$t-crash/"* "artifacts/$t/" 2>/dev/null || true
    echo "fuzz $t: the input is kept in fuzz/artifacts/$t/"
    return 1
  fi
}
status=0
running=0
pids=()
for t in "${targets[@]}"; do
  run "$t" &
  pids+=($!)
  running=$((running + 1))
  if [ "$running" -ge "$jobs" ]; then
    wait -n || status=1
    running=$((running - 1))
  fi
done
while [ "$running" -gt 0 ]; do
  wait -n || status=1
  running=$((running - 1))
done
exit "$status"
