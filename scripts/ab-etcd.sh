#!/usr/bin/env bash
# Side by side: a fresh single-member ferrokv and a fresh etcd 3.4.23, alternated ROUNDS times, each loaded by
# server/examples/putload.rs with the same arguments. Usage: scripts/ab-etcd.sh CLIENTS TOTAL [put|range] [ROUNDS]
# Needs `etcd` (apt-get install etcd-server) and `etcdctl`. Uses ports 25791/25801 on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
clients=$1 total=$2 mode=${3:-put} rounds=${4:-3}
cargo build --release -q -p server --bin ferrokv --example putload
data=$(mktemp -d)
pid=""
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$data"' EXIT
c=http://127.0.0.1:25791 p=http://127.0.0.1:25801
for round in $(seq "$rounds"); do
  for sys in ferrokv etcd; do
    rm -rf "$data/member"
    if [ "$sys" = ferrokv ]; then
      target/release/ferrokv --data-dir "$data/member" --listen-client-urls $c --advertise-client-urls $c \
        --listen-peer-urls $p --initial-advertise-peer-urls $p 2>/dev/null &
    else
      etcd --data-dir "$data/member" --listen-client-urls $c --advertise-client-urls $c \
        --listen-peer-urls $p --initial-advertise-peer-urls $p --initial-cluster default=$p >/dev/null 2>&1 &
    fi
    pid=$!
    for _ in $(seq 50); do ETCDCTL_API=3 etcdctl --endpoints $c put foo bar >/dev/null 2>&1 && break; sleep 0.1; done
    echo -n "round $round $sys $mode clients=$clients: "
    target/release/examples/putload 127.0.0.1:25791 "$clients" "$total" "$mode"
    kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""
  done
done
