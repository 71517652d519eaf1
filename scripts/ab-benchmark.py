#!/usr/bin/env python3
"""A/B of servers under etcd's own `benchmark` tool (built by hand, never committed), one fresh single member
per run, alternating the order every round; medians of throughput, server CPU per request, p50/p99 and peak RSS.

    python3 scripts/ab-benchmark.py --bench /tmp/etcd-benchmark --rounds 3 \\
        before=/tmp/ferrokv-before after=target/release/ferrokv etcd=/usr/bin/etcd -- \\
        --conns=10 --clients=100 put --key-size=8 --sequential-keys --total=40000 --val-size=256

By default the server runs on CPU 0 and the client on CPU 1 (`taskset`), so the server's CPU per request (utime +
stime from /proc/PID/stat over the run, divided by --total) does not depend on what the client takes; `--no-pin`
runs both unpinned, as users run them. The CPU is also split into user and kernel time (utime, stime). A system
named `NAME+auth` gets `root` (password `rootpw`), authentication enabled, and the benchmark run with
`--user root:rootpw`. Context switches per request are summed over the server's threads
(/proc/PID/task/*/status): each is a thread going to sleep or being preempted, so thread hand-offs show there
repeatably. Peak RSS is the server's VmHWM after the run; its anonymous and file-backed RSS after the run are
reported apart (RssAnon, RssFile). Needs etcdctl on PATH. Uses ports 25791/25801 on 127.0.0.1.
"""

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

CLIENT, PEER = "http://127.0.0.1:25791", "http://127.0.0.1:25801"


def start(binary, data, pin):
    flags = ["--data-dir", data, "--listen-client-urls", CLIENT, "--advertise-client-urls", CLIENT,
             "--listen-peer-urls", PEER, "--initial-advertise-peer-urls", PEER, "--initial-cluster", "default=" + PEER]
    cmd = (["taskset", "-c", "0"] if pin else []) + [binary] + flags
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        ok = subprocess.run(["etcdctl", "--endpoints", CLIENT, "put", "warm", "x"], capture_output=True)
        if ok.returncode == 0:
            return proc
        time.sleep(0.1)
    proc.kill()
    raise SystemExit(f"{binary} did not start")


def cpu_seconds(pid):
    """The server's user and kernel CPU seconds so far (utime, stime)."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return int(fields[11]) / os.sysconf("SC_CLK_TCK"), int(fields[12]) / os.sysconf("SC_CLK_TCK")


def switches(pid):
    """Context switches of every thread of `pid` so far, voluntary and not: each sleep and wake-up of a
    thread, so the thread hand-offs a request makes show here, repeatably, whatever the disk's noise."""
    n = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            for l in open(f"/proc/{pid}/task/{task}/status"):
                if l.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                    n += int(l.split()[1])
        except FileNotFoundError:
            pass
    return n


def one_run(name, binary, bench, args, total, pin):
    data = tempfile.mkdtemp()
    proc = None
    try:
        proc = start(binary, os.path.join(data, "m"), pin)
        if name.endswith("+auth"):
            for a in (["role", "add", "root"], ["user", "add", "root:rootpw"],
                      ["user", "grant-role", "root", "root"], ["auth", "enable"]):
                subprocess.run(["etcdctl", "--endpoints", CLIENT] + a, capture_output=True, check=True)
            at = next((i for i, a in enumerate(args) if not a.startswith("-")), len(args))
            args = args[:at] + ["--user", "root:rootpw"] + args[at:]
        before, switched = cpu_seconds(proc.pid), switches(proc.pid)
        out = subprocess.run((["taskset", "-c", "1"] if pin else []) + [bench, "--endpoints", CLIENT[7:]] + args,
                             capture_output=True, text=True).stdout
        user, kernel = (after - b for after, b in zip(cpu_seconds(proc.pid), before))
        switched = switches(proc.pid) - switched
        status = {l.split(":")[0]: int(l.split()[1]) // 1024 for l in open(f"/proc/{proc.pid}/status")
                  if l.startswith(("VmHWM", "RssAnon", "RssFile"))}
        hwm = (status["VmHWM"], status["RssAnon"], status["RssFile"])
        grab = lambda pattern: float(m.group(1)) if (m := re.search(pattern, out)) else float("nan")
        return (grab(r"Requests/sec:\s+([\d.]+)"), (user + kernel) / total * 1e6, user / total * 1e6,
                kernel / total * 1e6, grab(r"50% in ([\d.]+) secs") * 1e3, grab(r"99% in ([\d.]+) secs") * 1e3,
                switched / total, hwm)
    finally:
        if proc:
            proc.kill()
            proc.wait()
        shutil.rmtree(data, ignore_errors=True)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bench", required=True, help="etcd's benchmark binary")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--no-pin", action="store_true")
    p.add_argument("systems", nargs="+", help="NAME=BINARY ..., then -- and the benchmark's arguments")
    argv = sys.argv[1:]
    cut = argv.index("--") if "--" in argv else len(argv)
    a = p.parse_args(argv[:cut])
    args = argv[cut + 1:]
    if not any(x.startswith("--total=") for x in args):
        p.error("the benchmark's arguments, with --total=N, follow --")
    total = int(next(x for x in args if x.startswith("--total=")).split("=", 1)[1])
    systems = [s.split("=", 1) for s in a.systems]
    results = {n: [] for n, _ in systems}
    line = "{} {}: {:.0f} req/s, {:.1f} us CPU/req ({:.1f} user, {:.1f} kernel), p50 {:.2f} ms, p99 {:.2f} ms, {:.2f} switches/req, peak RSS {} MB (after: {} MB anonymous, {} MB file-backed)"
    for r in range(a.rounds):
        for name, binary in (systems if r % 2 == 0 else systems[::-1]):
            x = one_run(name, binary, a.bench, args, total, not a.no_pin)
            results[name].append(x)
            print(line.format(f"round {r}", name, *x[:7], *x[7]), flush=True)
    for name, _ in systems:
        med = [statistics.median(x[i] for x in results[name]) for i in range(7)]
        mem = [int(statistics.median(x[7][i] for x in results[name])) for i in range(3)]
        print(line.format("median", name, *med, *mem))


if __name__ == "__main__":
    main()
