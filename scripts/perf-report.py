#!/usr/bin/env python3
"""ferrokv against etcd, side by side, on this machine: one command, one report.

    python3 scripts/perf-report.py --size 1 --client ferrokv                    # ferrokv's own client (`ferrokv bench`)
    python3 scripts/perf-report.py --size 1 --client etcd-benchmark PATH        # etcd's own `benchmark` tool (v3.4.23,
                                                                                # built by hand), or any compatible one
    python3 scripts/perf-report.py --size 1 --client etcd-benchmark PATH --pin  # servers on CPU 0, the client on CPU 1
    python3 scripts/perf-report.py ... --from-raw  # the same report again from its raw JSON, measuring nothing

For each round, a fresh ferrokv cluster and a fresh etcd cluster of the same size (`ferrokv cluster start N`, with
`--etcd` for the real etcd from PATH), in alternating order (ferrokv first in odd rounds, etcd first in even
ones), each run through the same sweep with the same client and flags, etcd's documented benchmark commands:
  - put, 256-byte values, 8-byte sequential keys, with 1, 100 and 1,000 clients (connections: clients / 10, at
    least 1, at most 100), over a key space of 1 (the tool's default, so every put rewrites one hot key) and of
    100,000 (distinct keys);
  - range of one key, linearizable and serializable, with 1 and 100 clients;
  - a watch fan-out: 1,000 watchers on one key (10 streams × 100; with etcd 3.4's tool, which takes other flags,
    1,000 clients on 100 connections, a stream each), 200 puts at 100/s, event latency;
  - txn-put (one put per transaction, distinct keys) with 100 and 1,000 clients;
  - puts at a fixed offered rate (`--rate`, default 16,000/s for one member and 9,000/s for three: about 70% of
    etcd's peak on this machine kind) with 100 and 1,000 clients, for latency at a load both systems carry.
The report is parsed from the client's text output (etcd's benchmark layout, which `ferrokv bench` prints too).
Figures are the median over the rounds. Also measured: each server's CPU time per request (utime + stime of
its processes, from /proc, and the kernel's part of it, stime; with --pin, the servers are pinned to CPU 0 and the
client to CPU 1, so the figure does not depend on how much of the 2 cores the client takes), the client's own
CPU time, and each server process's memory: resident when idle (after start and one put) and the peak (VmHWM)
after the put sweep, with the resident set split into anonymous memory (RssAnon: heap, stacks) and file-backed
pages (RssFile: the store's and WAL's maps, the binary), the largest member's figures.

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


def sweep(quick, rate, etcd_34=False):
    """(name, clients, client arguments) of every workload. `etcd_34`: the client is etcd 3.4's `benchmark`, whose
    watch-latency gives each client one watcher on a stream of its own and counts puts with `--total`."""
    scale = 0.2 if quick else 1.0
    n = lambda x: str(max(200, int(x * scale)))
    conns = lambda c: str(max(1, min(100, c // 10)))
    put = lambda c, space, total: (f"put-{c}" + ("-hot" if space == 1 else ""), c,
                                   ["--clients", str(c), "--conns", conns(c), "put", "--key-size", "8", "--val-size",
                                    "256", "--sequential-keys", "--key-space-size", str(space), "--total", n(total)])
    rng = lambda cons, c, total: (f"range-{cons}-{c}", c, ["--clients", str(c), "--conns", conns(c),
                                                           "range", "foo", "--consistency", cons, "--total", n(total)])
    txn = lambda c, total: (f"txn-put-{c}", c, ["--clients", str(c), "--conns", conns(c), "txn-put", "--key-size", "8",
                                                 "--val-size", "256", "--key-space-size", "100000", "--total", n(total)])
    fixed = lambda c, total: (f"put-{c}-rate", c, put(c, 100000, total)[2] + ["--rate", str(rate)])
    return [put(1, 100000, 3000), put(100, 100000, 40000), put(1000, 100000, 100000),
            put(1, 1, 3000), put(100, 1, 40000), put(1000, 1, 100000),
            rng("l", 1, 4000), rng("l", 100, 40000), rng("s", 1, 6000), rng("s", 100, 60000),
            txn(100, 40000), txn(1000, 100000), fixed(100, 5 * rate), fixed(1000, 5 * rate),
            ("watch-1000", 1000, ["--clients", "1000", "--conns", "100", "watch-latency", "--total", n(200),
                                   "--put-rate", "100"] if etcd_34 else
             ["--clients", "10", "--conns", "1", "watch-latency", "--streams", "10",
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
    """CPU seconds of the processes so far: (user + kernel, kernel), from utime and stime."""
    tick = os.sysconf("SC_CLK_TCK")
    total = kernel = 0
    for pid in pid_list:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
            kernel += int(fields[12])
        except OSError:
            pass
    return total / tick, kernel / tick


def memory_mib(pid_list):
    """{VmRSS, VmHWM, RssAnon, RssFile} in MiB of the member with the largest resident set."""
    best = {}
    for pid in pid_list:
        try:
            with open(f"/proc/{pid}/status") as f:
                fields = dict(l.split(":", 1) for l in f if l.startswith(("VmRSS:", "VmHWM:", "RssAnon:", "RssFile:")))
        except OSError:
            continue
        mem = {k: int(v.split()[0]) / 1024 for k, v in fields.items()}
        if mem.get("VmRSS", 0) >= best.get("VmRSS", -1):
            best = mem
    return best


def pin(pid_list, cpu):
    for pid in pid_list:
        subprocess.run(["taskset", "-a", "-cp", str(cpu), str(pid)], check=True, capture_output=True)


def one_system(kind, size, base, quick, client, pinned, rate):
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
    time.sleep(2)  # let start-up settle before the idle figure
    results = {"idle": memory_mib(servers)}
    try:
        for name, clients, args in sweep(quick, rate, client[0] != FERROKV):
            cpu0, child0 = cpu_secs(servers), resource.getrusage(resource.RUSAGE_CHILDREN)
            target = ["--target-leader"] if name.startswith(("put", "watch", "txn")) else []
            try:
                out = run([*prefix, "--endpoints", endpoints, *target, *args]).stdout
            except subprocess.CalledProcessError as e:
                print(f"{kind} {name}: the client failed: {e.stderr.strip()[-300:]}", file=sys.stderr)
                continue
            cpu1, child1 = cpu_secs(servers), resource.getrusage(resource.RUSAGE_CHILDREN)
            reports = parse(out)
            if not reports:
                continue
            figures = reports[-1]  # watch-latency: the events' report
            # watch-latency: each put reaches all 1,000 watchers (its puts are `--put-total` with `ferrokv bench`).
            puts = "--put-total" if "--put-total" in args else "--total"
            requests = max(1, int(args[args.index(puts) + 1]) * (1000 if name.startswith("watch") else 1))
            results[name] = {
                "rps": reports[0]["rps"],
                "p99_ms": figures["pct"].get("99", float("nan")) * 1000,
                "p50_ms": figures["pct"].get("50", float("nan")) * 1000,
                "server_cpu_us": (cpu1[0] - cpu0[0]) * 1e6 / requests,
                "server_kernel_us": (cpu1[1] - cpu0[1]) * 1e6 / requests,
                "bench_cpu_us": ((child1.ru_utime + child1.ru_stime) - (child0.ru_utime + child0.ru_stime)) * 1e6 / requests,
            }
            if name == "put-1000-hot":
                results["after_puts"] = memory_mib(servers)
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
              "range": [("range-l-%d" % c, c) for c in (1, 100)] + [("range-s-%d" % c, c) for c in (1, 100)],
              "txn-put": [("txn-put-%d" % c, c) for c in (100, 1000)],
              "put-rate": [("put-%d-rate" % c, c) for c in (100, 1000)]}
    # what each group's two panels show: throughput and p99, except at a fixed offered rate, where the
    # throughput is the rate itself and the latency is the point: p50 and p99
    panels = {"put-rate": (("p50_ms", "p50 latency at a fixed rate (ms)"), ("p99_ms", "p99 latency at a fixed rate (ms)"))}
    files = []
    for group, points in groups.items():
        if not any(n in r["ferrokv"] for n, _ in points for r in rounds):
            continue
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
        (f1, t1), (f2, t2) = panels.get(group, (("rps", "throughput (requests/s)"), ("p99_ms", "p99 latency (ms)")))
        series = {"range": [("linearizable", points[:2]), ("serializable", points[2:])]}.get(group, [("", points)])
        for kind in ("ferrokv", "etcd"):
            for label, pts in series:
                xs = [c for _, c in pts]
                style = "-" if label != "serializable" else "--"
                name = f"{kind} {label}".strip()
                ax1.plot(xs, [median(rounds, kind, n, f1) for n, _ in pts], style, marker="o", color=colors[kind], label=name)
                ax2.plot(xs, [median(rounds, kind, n, f2) for n, _ in pts], style, marker="o", color=colors[kind], label=name)
        for ax, title in ((ax1, t1), (ax2, t2)):
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
    ap.add_argument("--client", nargs="+", default=["ferrokv"], metavar="KIND [PATH]",
                    help="`ferrokv` (ferrokv's own `ferrokv bench`, the default) or `etcd-benchmark PATH` (etcd's "
                         "`benchmark` tool, or any client that takes its flags and prints its layout)")
    ap.add_argument("--pin", action="store_true", help="servers on CPU 0, the client on CPU 1")
    ap.add_argument("--rate", type=int, help="offered puts/s of the fixed-rate workloads (default: 16000 for one "
                                             "member, 9000 for more)")
    ap.add_argument("--from-raw", action="store_true",
                    help="write the report and charts again from the raw JSON of an earlier run, measuring nothing")
    a = ap.parse_args()
    try:
        import matplotlib  # noqa: F401 -- the charts need it; fail before the sweep, not after
    except ImportError:
        ap.error("the charts need matplotlib (pip install matplotlib)")
    if a.client == ["ferrokv"]:
        client, client_name = [FERROKV, "bench"], "ferrokv-bench"
    elif len(a.client) == 2 and a.client[0] == "etcd-benchmark":
        client, client_name = [os.path.abspath(a.client[1])], "etcd-benchmark"
    else:
        ap.error("--client takes `ferrokv` or `etcd-benchmark PATH`")
    rate = a.rate or (16000 if a.size == 1 else 9000)
    tag = f"{a.size}member" + (f"-{client_name}" if client_name != "ferrokv-bench" else "") + ("-pinned" if a.pin else "")
    if not a.from_raw and not os.path.exists(FERROKV):
        subprocess.run(["cargo", "build", "--release", "-p", "server", "--bin", "ferrokv"], cwd=ROOT, check=True)
    os.makedirs(a.out, exist_ok=True)
    raw = os.path.join(a.out, f"raw-{tag}.json")
    if a.from_raw:
        with open(raw) as f:
            rounds = json.load(f)
        a.rounds = len(rounds)
    else:
        rounds = []
        for r in range(a.rounds):
            order = ("ferrokv", "etcd") if r % 2 == 0 else ("etcd", "ferrokv")
            res = {}
            for kind in order:
                print(f"round {r + 1}/{a.rounds}: {kind}", file=sys.stderr, flush=True)
                res[kind] = one_system(kind, a.size, a.base_port, a.quick, client, a.pin, rate)
            rounds.append(res)
        with open(raw, "w") as f:
            json.dump(rounds, f, indent=1)
    names = [n for n, _, _ in sweep(a.quick, rate, client[0] != FERROKV)]
    lines = [f"# ferrokv vs etcd, {a.size} member(s)", "",
             f"Machine: {machine()}. Client: {client_name}{' (servers pinned to CPU 0, the client to CPU 1)' if a.pin else ''}. "
             f"Median of {a.rounds} rounds, alternating which system runs first; a fresh "
             f"cluster per round and system. Command: `python3 scripts/perf-report.py --size {a.size} --rounds {a.rounds}"
             f"{' --quick' if a.quick else ''} --client {' '.join(a.client)}{' --pin' if a.pin else ''}"
             f"{' --rate ' + str(a.rate) if a.rate else ''}`.",
             "", "`-hot` workloads use the client's default `--key-space-size` of 1 (etcd's documented commands: every put "
             f"rewrites one key); the others 100,000 keys. `-rate` workloads offer {rate} puts/s (`--rate`): compare their "
             "latency, not their throughput. Ratios are ferrokv / etcd.", "",
             "| workload | ferrokv req/s | etcd req/s | ratio (each round) | p50 ms ferrokv / etcd (ratio) | p99 ms ferrokv / etcd (ratio) | server CPU µs/req ferrokv / etcd (ratio) | of it kernel, µs/req ferrokv / etcd | client CPU µs/req |",
             "|---|---|---|---|---|---|---|---|---|"]
    for n in names:
        if not any(n in r["ferrokv"] and n in r["etcd"] for r in rounds):
            continue  # a workload the client could not run
        f_rps, e_rps = median(rounds, "ferrokv", n, "rps"), median(rounds, "etcd", n, "rps")
        each = ", ".join(f"{r['ferrokv'][n]['rps'] / r['etcd'][n]['rps']:.2f}" for r in rounds
                         if n in r["ferrokv"] and n in r["etcd"])
        pair = lambda field, fmt: (f"{median(rounds, 'ferrokv', n, field):{fmt}} / {median(rounds, 'etcd', n, field):{fmt}} "
                                   f"({median(rounds, 'ferrokv', n, field) / median(rounds, 'etcd', n, field):.2f}×)")
        lines.append(f"| {n} | {f_rps:.0f} | {e_rps:.0f} | {f_rps / e_rps:.2f}× ({each}) | {pair('p50_ms', '.2f')} | "
                     f"{pair('p99_ms', '.2f')} | {pair('server_cpu_us', '.0f')} | "
                     f"{median(rounds, 'ferrokv', n, 'server_kernel_us'):.0f} / {median(rounds, 'etcd', n, 'server_kernel_us'):.0f} | "
                     f"{median(rounds, 'ferrokv', n, 'bench_cpu_us'):.0f} |")
    mem = lambda k, when, field: statistics.median([r[k][when].get(field, float("nan")) for r in rounds if when in r[k]])
    lines += ["", "Memory of the largest server process, MiB (median of the rounds): idle is after start and one put; "
              "the peak (VmHWM) and the split of the resident set into anonymous and file-backed pages are taken after "
              "the put sweep.", "",
              "| | ferrokv | etcd | ratio |", "|---|---|---|---|"]
    for when, field, label in (("idle", "VmRSS", "idle RSS"), ("idle", "RssAnon", "idle RssAnon"),
                               ("idle", "RssFile", "idle RssFile"), ("after_puts", "VmHWM", "peak RSS (VmHWM) after the puts"),
                               ("after_puts", "RssAnon", "RssAnon after the puts"),
                               ("after_puts", "RssFile", "RssFile after the puts")):
        f_m, e_m = mem("ferrokv", when, field), mem("etcd", when, field)
        lines.append(f"| {label} | {f_m:.1f} | {e_m:.1f} | {f_m / e_m:.2f}× |")
    lines.append("")
    if any("watch-1000" in r["ferrokv"] for r in rounds):
        lines += ["For `watch-1000` the req/s column is the puts' rate (fixed at 100/s; with etcd 3.4's tool, which "
                  "prints only the events' report, the events' rate) and p99 is the event latency "
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
