#!/usr/bin/env python3
"""ferrokv against etcd, side by side, on this machine: one command, one report.

    python3 scripts/perf-report.py --size 1                      # ferrokv's own client (`ferrokv bench`)
    python3 scripts/perf-report.py --size 1 --client PATH        # any etcd-benchmark-compatible client, e.g. etcd's
                                                                 # own `benchmark` tool built by hand
    python3 scripts/perf-report.py --size 1 --client PATH --pin  # servers on CPU 0, the client on CPU 1

For each round, a fresh ferrokv cluster and a fresh etcd cluster of the same size (`ferrokv cluster start N`, with
`--etcd` for the real etcd from PATH), in alternating order (ferrokv first in odd rounds, etcd first in even
ones), each run through the same sweep with the same client and flags, etcd's documented benchmark commands:
  - put, 256-byte values, 8-byte sequential keys, with 1, 100 and 1,000 clients (connections: clients / 10, at
    least 1, at most 100), over a key space of 1 (the tool's default, so every put rewrites one hot key) and of
    100,000 (distinct keys);
  - range of one key, linearizable and serializable, with 1 and 100 clients;
  - a watch fan-out: 1,000 watchers on one key (10 streams × 100), 200 puts at 100/s, event latency.
The report is parsed from the client's text output (etcd's benchmark layout, which `ferrokv bench` prints too).
Figures are the median over the rounds. Also measured: each server's CPU time per request (utime + stime of
its processes, from /proc; with --pin, the servers are pinned to CPU 0 and the client to CPU 1, so the figure does
not depend on how much of the 2 cores the client takes), the client's own CPU time, and the servers' peak RSS
(VmHWM) after the put sweep.

Writes docs/perf/report-<N>member[-<client>][-pinned].md (the table, the commands, the machine) and PNG charts
beside it (throughput and p99 latency against clients, both systems on each chart). Needs: a release build of
ferrokv (built if missing), etcd and etcdctl on PATH, matplotlib (pip install matplotlib).
"""

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FERROKV = os.path.join(ROOT, "target", "release", "ferrokv")


def sweep(quick):
    """(name, clients, client arguments) of every workload."""
    scale = 0.2 if quick else 1.0
    n = lambda x: str(max(200, int(x * scale)))
    conns = lambda c: str(max(1, min(100, c // 10)))
    put = lambda c, space, total: (f"put-{c}" + ("-hot" if space == 1 else ""), c,
                                   ["--clients", str(c), "--conns", conns(c), "put", "--key-size", "8", "--val-size",
                                    "256", "--sequential-keys", "--key-space-size", str(space), "--total", n(total)])
    rng = lambda cons, c, total: (f"range-{cons}-{c}", c, ["--clients", str(c), "--conns", conns(c),
                                                           "range", "foo", "--consistency", cons, "--total", n(total)])
    return [put(1, 100000, 3000), put(100, 100000, 40000), put(1000, 100000, 100000),
            put(1, 1, 3000), put(100, 1, 40000), put(1000, 1, 100000),
            rng("l", 1, 4000), rng("l", 100, 40000), rng("s", 1, 6000), rng("s", 100, 60000),
            ("watch-1000", 1000, ["--clients", "10", "--conns", "1", "watch-latency", "--streams", "10",
                                   "--watchers-per-stream", "100", "--put-total", n(200), "--put-rate", "100"])]


def parse(text):
    """Requests/s and the latency percentiles (seconds) of one report in etcd's benchmark layout. watch-latency
    prints two reports (the puts', then the events'): both are returned, in order."""
    reports = []
    for part in text.split("Summary:")[1:]:
        rps = re.search(r"Requests/sec:\s*([0-9.]+)", part)
        pct = dict((k, float(v)) for k, v in re.findall(r"([0-9.]+)% in ([0-9.]+) secs", part))
        reports.append({"rps": float(rps.group(1)) if rps else 0.0, "pct": pct})
    return reports


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, stdin=subprocess.DEVNULL, **kw)


def pids(directory):
    with open(os.path.join(directory, "cluster.json")) as f:
        return [m["pid"] for m in json.load(f)["members"]]


def cpu_secs(pid_list):
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pid_list:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        except OSError:
            pass
    return total / tick


def peak_rss_kib(pid_list):
    peak = 0
    for pid in pid_list:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        peak = max(peak, int(line.split()[1]))
        except OSError:
            pass
    return peak


def pin(pid_list, cpu):
    for pid in pid_list:
        subprocess.run(["taskset", "-a", "-cp", str(cpu), str(pid)], check=True, capture_output=True)


def one_system(kind, size, base, quick, client, pinned):
    """Starts a fresh cluster of `kind`, runs the sweep with `client`, stops it; {workload: figures}."""
    d = tempfile.mkdtemp(prefix=f"perf-{kind}-")
    start = [FERROKV, "cluster", "--dir", d, "start", str(size), "--base-port", str(base)]
    if kind == "etcd":
        start.append("--etcd")
    out = run(start).stdout
    endpoints = [l.split("endpoints: ")[1] for l in out.splitlines() if l.startswith("endpoints: ")][0]
    servers = pids(d)
    if pinned:
        pin(servers, 0)
    run(["etcdctl", f"--endpoints={endpoints}", "put", "foo", "bar"], env={**os.environ, "ETCDCTL_API": "3"})
    prefix = (["taskset", "-c", "1"] if pinned else []) + client
    results = {}
    try:
        for name, clients, args in sweep(quick):
            cpu0, child0 = cpu_secs(servers), resource.getrusage(resource.RUSAGE_CHILDREN)
            target = ["--target-leader"] if name.startswith("put") or name.startswith("watch") else []
            try:
                out = run([*prefix, "--endpoints", endpoints, *target, *args]).stdout
            except subprocess.CalledProcessError as e:
                print(f"{kind} {name}: the client failed: {e.stderr.strip()[-300:]}", file=sys.stderr)
                continue
            child1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            reports = parse(out)
            if not reports:
                continue
            figures = reports[-1]  # watch-latency: the events' report
            total = int(args[args.index("--put-total") + 1]) * 1000 if name.startswith("watch") \
                else int(args[args.index("--total") + 1])
            requests = max(1, total)
            results[name] = {
                "rps": reports[0]["rps"],
                "p99_ms": figures["pct"].get("99", float("nan")) * 1000,
                "p50_ms": figures["pct"].get("50", float("nan")) * 1000,
                "server_cpu_us": (cpu_secs(servers) - cpu0) * 1e6 / requests,
                "bench_cpu_us": ((child1.ru_utime + child1.ru_stime) - (child0.ru_utime + child0.ru_stime)) * 1e6 / requests,
            }
            if name == "put-1000":
                results["rss_after_puts_mib"] = peak_rss_kib(servers) / 1024
    finally:
        subprocess.run([FERROKV, "cluster", "--dir", d, "clean"], capture_output=True)
    return results


def median(rounds, kind, name, field):
    vals = [r[kind][name][field] for r in rounds if name in r[kind]]
    return statistics.median(vals) if vals else float("nan")


def machine():
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    etcd = run(["etcd", "--version"]).stdout.splitlines()[0]
    return f"{os.cpu_count()} vCPU ({cpu}), kernel {os.uname().release}, {etcd}"


def charts(rounds, size, out_dir, tag):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    colors = {"ferrokv": "tab:orange", "etcd": "tab:blue"}
    groups = {"put": [("put-%d" % c, c) for c in (1, 100, 1000)],
              "put-hot": [("put-%d-hot" % c, c) for c in (1, 100, 1000)],
              "range": [("range-l-%d" % c, c) for c in (1, 100)] + [("range-s-%d" % c, c) for c in (1, 100)]}
    files = []
    for group, points in groups.items():
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
        series = {"put": [("", points)], "put-hot": [("", points)],
                  "range": [("linearizable", points[:2]), ("serializable", points[2:])]}[group]
        for kind in ("ferrokv", "etcd"):
            for label, pts in series:
                xs = [c for _, c in pts]
                style = "-" if label != "serializable" else "--"
                name = f"{kind} {label}".strip()
                ax1.plot(xs, [median(rounds, kind, n, "rps") for n, _ in pts], style, marker="o", color=colors[kind], label=name)
                ax2.plot(xs, [median(rounds, kind, n, "p99_ms") for n, _ in pts], style, marker="o", color=colors[kind], label=name)
        for ax, title in ((ax1, "throughput (requests/s)"), (ax2, "p99 latency (ms)")):
            ax.set_xscale("log")
            ax.set_xlabel("clients")
            ax.set_title(f"{group}, {size} member(s): {title}")
            ax.grid(True, alpha=0.3)
            ax.legend()
        fig.tight_layout()
        path = os.path.join(out_dir, f"{group}-{tag}.png")
        fig.savefig(path, dpi=100)
        plt.close(fig)
        files.append(path)
    return files


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--base-port", type=int, default=23790)
    ap.add_argument("--out", default=os.path.join(ROOT, "docs", "perf"))
    ap.add_argument("--quick", action="store_true", help="a fifth of the requests (a smoke run)")
    ap.add_argument("--client", help="an etcd-benchmark-compatible client binary (default: `ferrokv bench`)")
    ap.add_argument("--pin", action="store_true", help="servers on CPU 0, the client on CPU 1")
    a = ap.parse_args()
    client = [os.path.abspath(a.client)] if a.client else [FERROKV, "bench"]
    client_name = os.path.basename(a.client) if a.client else "ferrokv-bench"
    tag = f"{a.size}member" + (f"-{client_name}" if a.client else "") + ("-pinned" if a.pin else "")
    if not os.path.exists(FERROKV):
        subprocess.run(["cargo", "build", "--release", "-p", "server", "--bin", "ferrokv"], cwd=ROOT, check=True)
    os.makedirs(a.out, exist_ok=True)
    rounds = []
    for r in range(a.rounds):
        order = ("ferrokv", "etcd") if r % 2 == 0 else ("etcd", "ferrokv")
        res = {}
        for kind in order:
            print(f"round {r + 1}/{a.rounds}: {kind}", file=sys.stderr, flush=True)
            res[kind] = one_system(kind, a.size, a.base_port, a.quick, client, a.pin)
        rounds.append(res)
    with open(os.path.join(a.out, f"raw-{tag}.json"), "w") as f:
        json.dump(rounds, f, indent=1)
    names = [n for n, _, _ in sweep(a.quick)]
    lines = [f"# ferrokv vs etcd, {a.size} member(s)", "",
             f"Machine: {machine()}. Client: {client_name}{' (servers pinned to CPU 0, the client to CPU 1)' if a.pin else ''}. "
             f"Median of {a.rounds} rounds, alternating which system runs first; a fresh "
             f"cluster per round and system. Command: `python3 scripts/perf-report.py --size {a.size} --rounds {a.rounds}"
             f"{' --quick' if a.quick else ''}{' --client ' + client_name if a.client else ''}{' --pin' if a.pin else ''}`.",
             "", "`-hot` workloads use the client's default `--key-space-size` of 1 (etcd's documented commands: every put "
             "rewrites one key); the others 100,000 keys.", "",
             "| workload | ferrokv req/s | etcd req/s | ratio (each round) | ferrokv p99 ms | etcd p99 ms | server CPU µs/req (ferrokv / etcd) | client CPU µs/req |",
             "|---|---|---|---|---|---|---|---|"]
    for n in names:
        if not any(n in r["ferrokv"] and n in r["etcd"] for r in rounds):
            continue  # the client has no such workload (etcd 3.4's watch-latency takes other flags)
        f_rps, e_rps = median(rounds, "ferrokv", n, "rps"), median(rounds, "etcd", n, "rps")
        each = ", ".join(f"{r['ferrokv'][n]['rps'] / r['etcd'][n]['rps']:.2f}" for r in rounds
                         if n in r["ferrokv"] and n in r["etcd"])
        lines.append(f"| {n} | {f_rps:.0f} | {e_rps:.0f} | {f_rps / e_rps:.2f}× ({each}) | {median(rounds, 'ferrokv', n, 'p99_ms'):.2f} | "
                     f"{median(rounds, 'etcd', n, 'p99_ms'):.2f} | {median(rounds, 'ferrokv', n, 'server_cpu_us'):.0f} / "
                     f"{median(rounds, 'etcd', n, 'server_cpu_us'):.0f} | {median(rounds, 'ferrokv', n, 'bench_cpu_us'):.0f} |")
    rss = lambda k: statistics.median([r[k]["rss_after_puts_mib"] for r in rounds])
    lines += ["", f"Peak RSS of a server process after the put sweep: ferrokv {rss('ferrokv'):.0f} MiB, etcd {rss('etcd'):.0f} MiB "
              f"({rss('ferrokv') / rss('etcd'):.2f}×).", ""]
    if any("watch-1000" in r["ferrokv"] for r in rounds):
        lines += ["For `watch-1000` the req/s column is the puts' rate (fixed at 100/s) and p99 is the event latency "
                  "from a put's start to its arrival at each of the 1,000 watchers.", ""]
    for path in charts(rounds, a.size, a.out, tag):
        lines.append(f"![{os.path.basename(path)}]({os.path.basename(path)})")
    report = os.path.join(a.out, f"report-{tag}.md")
    with open(report, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"wrote {report}", file=sys.stderr)


if __name__ == "__main__":
    main()
