#!/usr/bin/env bash
# The whole test suite, runnable on a fresh Debian machine that has only the Rust toolchain.
# Installs what the tests need (fio; etcdctl 3.4 from etcd-client; etcd 3.4.23 from etcd-server, the behaviour
# reference some tests run side by side with ferrokv; protoc from protobuf-compiler, which the etcd-client crate's
# build needs; iproute2 and e2fsprogs for the partition and disk-stall tests; dnsmasq-base and etcd-discovery for
# the discovery tests), then runs the format check, clippy
# and every test, then etcd's own e2e suite (scripts/e2e.sh) on its expected-to-pass list, then a minute of
# coverage-guided fuzzing per fuzz target (scripts/fuzz.sh, on the stable toolchain).
# Tests that mount a tmpfs, or the FUSE file system of the power-loss tests (crashfs, through /dev/fuse), need root,
# as CI has; elsewhere they skip with a message (under CI=true they fail instead).
set -euo pipefail
cd "$(dirname "$0")/.."
# Nothing in the suite reads standard input; CI may hand us one that never closes.
exec </dev/null

missing=()
command -v fio >/dev/null 2>&1 || missing+=(fio)
command -v etcdctl >/dev/null 2>&1 || missing+=(etcd-client)
command -v protoc >/dev/null 2>&1 || missing+=(protobuf-compiler)
command -v etcd >/dev/null 2>&1 || missing+=(etcd-server)
# The partition test needs ip and tc; the disk-stall test mkfs.ext4 (mount, fsfreeze and setsid are util-linux's).
command -v ip >/dev/null 2>&1 && command -v tc >/dev/null 2>&1 || missing+=(iproute2)
command -v mkfs.ext4 >/dev/null 2>&1 || missing+=(e2fsprogs)
command -v fsfreeze >/dev/null 2>&1 || missing+=(util-linux)
# The discovery tests: a real DNS server for SRV records, and the discovery.etcd.io service.
command -v dnsmasq >/dev/null 2>&1 || missing+=(dnsmasq-base)
command -v discovery.etcd.io >/dev/null 2>&1 || missing+=(etcd-discovery)
# The JWT interoperability test makes its keys as etcd's docs do.
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
# The dashboard test scrapes a cluster with a real Prometheus.
command -v prometheus >/dev/null 2>&1 || missing+=(prometheus)
# The fuzz targets link libFuzzer, which the libfuzzer-sys crate compiles from C++.
command -v c++ >/dev/null 2>&1 || missing+=(g++)
bash scripts/apt-install.sh ${missing[@]+"${missing[@]}"}

# The build needs about 3 GB in target/ and the e2e suite's Go build a few hundred MB in /tmp; say so up front
# when the disk is short, rather than dying half-way with a linker's bus error.
free_kb=$(df -Pk . | awk 'NR == 2 { print $4 }')
if [ "${free_kb:-0}" -lt $((4 * 1024 * 1024)) ]; then
  echo "scripts/test.sh: only $((free_kb / 1024)) MB free on $(df -P . | awk 'NR == 2 { print $6 }'); the build needs about 4 GB" >&2
fi
# CI builds once from a clean clone: incremental compilation's caches would only cost disk there.
[ "${CI:-}" != true ] || export CARGO_INCREMENTAL=0

rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt clippy
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
log=$(mktemp)
fuzz_build_log=$(mktemp)
trap 'rm -f "$log" "$fuzz_build_log"' EXIT
# The fuzz targets' release build (about 3 minutes of CPU) runs meanwhile at the lowest CPU and I/O priority, so it
# takes only what the tests leave idle; the fuzzing itself runs at the end, alone.
nice -n 19 ionice -c 3 bash scripts/fuzz.sh --build-only >"$fuzz_build_log" 2>&1 &
fuzz_build=$!
set +e
# Every test bounds its own time; this bound is the backstop that turns a hang anywhere into a failure with
# output, well inside CI's 90 minutes (the whole suite takes about 10 minutes on a 2-core VM).
# The output goes to a file that `tail` follows until the run ends: a child left behind (even one stuck in the
# kernel) can keep a pipe open forever, but not a file, so this script ends when the run does.
timeout --kill-after=30s 45m cargo test --workspace --locked --no-fail-fast >"$log" 2>&1 &
run=$!
tail -n +1 -f --pid="$run" "$log"
wait "$run"
status=$?
if [ "$status" -eq 124 ] || [ "$status" -eq 137 ]; then
  echo "scripts/test.sh: the test run exceeded 45 minutes and was stopped" >&2
fi
set -e
# One closing line with the totals over every test binary (cargo's own last lines are the empty doc-test runs).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
# etcd 3.4.23's own e2e suite against ferrokv: every test of scripts/e2e-expected-pass.txt must pass (the script
# installs Go and Debian's etcd sources if absent, and prints its own "e2e: N passed, N failed").
set +e
timeout --kill-after=30s 20m bash scripts/e2e.sh
e2e=$?
set -e
[ "$e2e" -eq 0 ] || echo "scripts/test.sh: etcd's e2e suite: a listed test failed (status $e2e)" >&2
[ "$status" -ne 0 ] || status=$e2e
# A minute of fuzzing per target, all at once (issue 20): a crash, a hang or runaway memory fails the run. The
# build started above is waited for (and its output shown); a build that failed there is retried here.
set +e
wait "$fuzz_build" || echo "scripts/test.sh: the background fuzz build failed; building again" >&2
cat "$fuzz_build_log"
timeout --kill-after=30s 15m bash scripts/fuzz.sh --seconds 60 --jobs 6
fuzz=$?
set -e
[ "$fuzz" -eq 0 ] || echo "scripts/test.sh: fuzzing failed (status $fuzz); inputs are in fuzz/artifacts/" >&2
[ "$status" -ne 0 ] || status=$fuzz
exit "$status"
