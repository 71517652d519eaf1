#!/usr/bin/env python3
"""Snapshot save and restore of a ~1 GiB store, ferrokv against etcd 3.4.23 in one run.

For each server (a fresh single member on 127.0.0.1): fill it with `ferrokv bench put` (N distinct keys of
VAL bytes), then time `etcdctl snapshot save` against it (wall time, the file's size, the server's peak RSS
during the save from /proc/PID/status VmHWM after resetting it through /proc/PID/clear_refs, and etcdctl's own
peak RSS), stop the server, and time the restore of that file into a new data directory (`ferrokv snapshot
restore` for ferrokv's file, `etcdctl snapshot restore` for etcd's, each tool's peak RSS from getrusage), then
start the server on the restored directory and check that it serves N keys. Rounds alternate the two servers;
medians are printed with every round's figures.

Usage: python3 scripts/snapshot-bench.py [--keys N] [--val-size BYTES] [--rounds R] [--ferrokv PATH]
Needs etcd and etcdctl (Debian's etcd-server, etcd-client) and a release build of ferrokv.
"""

import argparse
import json
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(endpoint, deadline=120):
    end = time.time() + deadline
    while time.time() < end:
        r = subprocess.run(["etcdctl", "--endpoints", endpoint, "endpoint", "health"], capture_output=True,
                           env=dict(os.environ, ETCDCTL_API="3"))
        if r.returncode == 0:
            return
        time.sleep(0.3)
    raise SystemExit(f"{endpoint} did not become healthy")


def start(kind, binary, data, client, peer):
    c, p = f"http://127.0.0.1:{client}", f"http://127.0.0.1:{peer}"
    args = [binary if kind == "ferrokv" else "etcd", "--data-dir", data, "--listen-client-urls", c,
            "--advertise-client-urls", c, "--listen-peer-urls", p, "--initial-advertise-peer-urls", p,
            "--initial-cluster", f"default={p}", "--quota-backend-bytes", str(8 << 30)]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_ready(f"127.0.0.1:{client}")
    return proc


def stop(proc):
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def vm_hwm_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def rss_of(cmd, env=None):
    """Runs cmd in a fresh child that reports its child's wall time and peak RSS (KiB)."""
    probe = ("import resource,subprocess,sys,time,json;t=time.time();"
             "r=subprocess.run(sys.argv[1:],capture_output=True);"
             "print(json.dumps([r.returncode,time.time()-t,"
             "resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,r.stderr.decode()[-2000:]]))")
    out = subprocess.run([sys.executable, "-c", probe, *cmd], capture_output=True, env=env, text=True)
    code, took, rss, err = json.loads(out.stdout)
    if code != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {err}")
    return took, rss


def one_round(kind, binary, work, keys, val_size):
    env = dict(os.environ, ETCDCTL_API="3")
    data = os.path.join(work, f"{kind}-data")
    client, peer = free_port(), free_port()
    proc = start(kind, binary, data, client, peer)
    ep = f"127.0.0.1:{client}"
    fill = [binary, "bench", "--endpoints", ep, "--conns", "10", "--clients", "50", "put", "--total", str(keys),
            "--key-space-size", str(keys), "--sequential-keys", "--val-size", str(val_size), "--key-size", "16"]
    subprocess.run(fill, check=True, capture_output=True)
    status = json.loads(subprocess.run(["etcdctl", "--endpoints", ep, "endpoint", "status", "-w", "json"],
                                       capture_output=True, env=env, check=True).stdout)
    db_size = status[0]["Status"]["dbSize"]
    snap = os.path.join(work, f"{kind}.snapshot")
    with open(f"/proc/{proc.pid}/clear_refs", "w") as f:
        f.write("5")
    rss_before = vm_hwm_kib(proc.pid)
    save_s, save_client_rss = rss_of(["etcdctl", "--endpoints", ep, "snapshot", "save", snap], env)
    server_rss = vm_hwm_kib(proc.pid)
    stop(proc)
    restored = os.path.join(work, f"{kind}-restored")
    p = f"http://127.0.0.1:{peer}"
    flags = ["--data-dir", restored, "--name", "default", "--initial-cluster", f"default={p}",
             "--initial-advertise-peer-urls", p]
    if kind == "ferrokv":
        restore_s, restore_rss = rss_of([binary, "snapshot", "restore", snap, *flags], env)
    else:
        restore_s, restore_rss = rss_of(["etcdctl", "snapshot", "restore", snap, *flags], env)
    proc = start(kind, binary, restored, client, peer)
    count = json.loads(subprocess.run(["etcdctl", "--endpoints", ep, "get", "", "--from-key", "--limit=1",
                                       "-w", "json"], capture_output=True, env=env, check=True).stdout)["count"]
    stop(proc)
    if count != keys:
        raise SystemExit(f"{kind}: the restored member serves {count} keys, not {keys}")
    size = os.path.getsize(snap)
    for d in (data, restored):
        shutil.rmtree(d, ignore_errors=True)
    os.remove(snap)
    return {"db_size": db_size, "snapshot_bytes": size, "save_s": save_s, "save_server_peak_rss_mib":
            server_rss / 1024, "server_rss_before_mib": rss_before / 1024, "save_etcdctl_peak_rss_mib":
            save_client_rss / 1024, "restore_s": restore_s, "restore_peak_rss_mib": restore_rss / 1024}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--keys", type=int, default=104_858)
    ap.add_argument("--val-size", type=int, default=10_240)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--ferrokv", default=os.path.join(os.path.dirname(__file__), "..", "target", "release",
                                                      "ferrokv"))
    a = ap.parse_args()
    rounds = {"ferrokv": [], "etcd": []}
    with tempfile.TemporaryDirectory(prefix="snapshot-bench-") as work:
        for r in range(a.rounds):
            order = ["ferrokv", "etcd"] if r % 2 == 0 else ["etcd", "ferrokv"]
            for kind in order:
                res = one_round(kind, a.ferrokv, work, a.keys, a.val_size)
                rounds[kind].append(res)
                print(json.dumps({"round": r, "kind": kind, **res}), flush=True)
    print("median over rounds:")
    for field in rounds["ferrokv"][0]:
        f = statistics.median(x[field] for x in rounds["ferrokv"])
        e = statistics.median(x[field] for x in rounds["etcd"])
        print(f"  {field:28} ferrokv {f:14.2f}  etcd {e:14.2f}  ratio {f / e if e else float('nan'):.2f}")


if __name__ == "__main__":
    main()
