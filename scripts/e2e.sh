#!/usr/bin/env bash
# etcd 3.4.23's own end-to-end suite (tests/e2e, Go source shipped by Debian's golang-etcd-server-dev) against
# ferrokv: the suite starts "etcd" from a bin directory where etcd is ferrokv and etcdctl is Debian's etcdctl 3.4.
#
# Usage: scripts/e2e.sh [--all | TEST_REGEX]
#   (no argument)  runs the tests listed in scripts/e2e-expected-pass.txt; fails if any of them fails
#   --all          runs every test of the suite and reports each (the list is not checked)
#   TEST_REGEX     runs the matching tests and reports each
# Prints one line per test ("PASS name (seconds)" / "FAIL name (seconds)") and a closing "N passed, N failed".
#
# Needs golang-go and golang-etcd-server-dev (installed here if absent), etcd-client (etcdctl) and curl. The suite
# is compiled in GOPATH mode from Debian's sources with GOPROXY=off: nothing is downloaded. It listens on fixed
# ports 20000-20100 of localhost (the suite's own choice), so two runs must not overlap.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
exec </dev/null

missing=()
command -v go >/dev/null 2>&1 || missing+=(golang-go)
[ -d /usr/share/gocode/src/go.etcd.io/etcd/tests/e2e ] || missing+=(golang-etcd-server-dev)
command -v etcdctl >/dev/null 2>&1 || missing+=(etcd-client)
command -v curl >/dev/null 2>&1 || missing+=(curl)
if ((${#missing[@]})); then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "scripts/e2e.sh: installing ${missing[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The suite, compiled from Debian's source tree (read-only) with Debian's Go packages.
src=/usr/share/gocode/src/go.etcd.io/etcd
GOPATH=/usr/share/gocode GO111MODULE=off GOPROXY=off GOFLAGS=-mod=mod GOCACHE="${GOCACHE:-$HOME/.cache/go-build}" \
  go test -c -o "$work/e2e.test" go.etcd.io/etcd/tests/e2e

# ferrokv as etcd; Debian's etcdctl 3.4 as etcdctl.
cargo build -q --locked -p server --bin ferrokv
mkdir -p "$work/bin"
ln -s "$root/target/debug/ferrokv" "$work/bin/etcd"
ln -s "$(command -v etcdctl)" "$work/bin/etcdctl"

mode=${1:-}
list="$root/scripts/e2e-expected-pass.txt"
if [ -z "$mode" ]; then
  expected=$(grep -v '^#' "$list" | grep -v '^[[:space:]]*$' | awk '{print $1}')
  regex="^($(echo "$expected" | paste -sd'|'))\$"
elif [ "$mode" = --all ]; then
  regex='.'
else
  regex=$mode
fi

# The suite runs from its package directory (some tests read files relative to it).
log="$work/e2e.log"
set +e
(cd "$src/tests/e2e" && timeout --kill-after=30s 25m "$work/e2e.test" -test.v -test.timeout 24m -test.run "$regex" \
  -bin-dir "$work/bin" -cert-dir "$src/integration/fixtures") >"$log" 2>&1
status=$?
set -e
# Leftovers of a test that timed out would hold the suite's fixed ports.
pkill -f "$work/bin/etcd" 2>/dev/null || true

awk '/^--- (PASS|FAIL|SKIP): / { sub(/[()]/, "", $4); sub(/s\)?$/, "", $4); print $2, $3, $4 }' "$log" \
  | sed 's/://' | awk '{ printf "%s %s (%ss)\n", $1, $2, $3 }' >"$work/results"
cat "$work/results"
passed=$(grep -c '^PASS ' "$work/results" || true)
failed=$(grep -c '^FAIL ' "$work/results" || true)
echo "e2e: $passed passed, $failed failed"

if [ -z "$mode" ]; then
  bad=0
  for t in $expected; do
    if ! grep -q "^PASS $t " "$work/results"; then
      echo "scripts/e2e.sh: expected to pass, did not: $t" >&2
      grep -n -A30 "^=== RUN   $t\$" "$log" | head -60 >&2 || true
      bad=1
    fi
  done
  exit $bad
fi
[ "$status" -eq 0 ] || { tail -n 50 "$log" >&2; exit "$status"; }
