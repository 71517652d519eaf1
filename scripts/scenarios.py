#!/usr/bin/env python3
"""The seed lab's operational scenarios, ferrokv beside etcd 3.4.23, one member each, driven by etcd's `benchmark`.

    python3 scripts/scenarios.py --bench /tmp/etcd-benchmark [--rounds 3] [--only quota,compact,defrag]

Each round starts a fresh ferrokv and a fresh etcd (`ferrokv cluster start 1`, `--etcd` for the real etcd from
PATH), alternating which goes first, and runs every scenario on each:

  quota    puts of 10 KB values (100 clients, distinct keys) with `--quota-backend-bytes` (default 256 MiB) until
           the store is full and past it: how many puts were acknowledged before "database space exceeded", the
           rate and p99 on the way, the alarm raised, whether reads and deletes still work under the alarm, and
           how long recovery takes (compact, defragment, `alarm disarm`, then a put succeeds).
  compact  100,000 puts of 256 B (100 clients, distinct keys) with the client compacting as it goes
           (`--compact-interval 2s --compact-index-delta 1000`): rate, p50, p99 and the slowest put.
  defrag   fill 50,000 keys with 10 KB values, overwrite half with 100 B values, compact (physical), then
           defragment while 100 clients put (`--sample`): how long the defragmentation took, the file size before
           and after, and the writers' throughput and slowest put in the seconds the defragmentation ran against the
           run as a whole (etcd stops every write for the whole copy).

Prints a Markdown report and writes it to --out (default docs/perf/scenarios-1member.md); the raw figures go beside
it as JSON. Needs a release build of ferrokv (built if missing), etcd and etcdctl on PATH.
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FERROKV = os.path.join(ROOT, "target", "release", "ferrokv")
MIB = 1024 * 1024


def run(cmd, check=True, **kw):
    return subprocess.run(cmd, check=check, capture_output=True, text=True, stdin=subprocess.DEVNULL, **kw)


class Member:
    """One fresh member of `kind` ("ferrokv" or "etcd") in a temporary directory, stopped and removed by close()."""

    def __init__(self, kind, base_port, extra):
        self.kind = kind
        self.dir = tempfile.mkdtemp(prefix=f"scenario-{kind}-")
        cmd = [FERROKV, "cluster", "--dir", self.dir, "start", "1", "--base-port", str(base_port)]
        if kind == "etcd":
            cmd.append("--etcd")
        out = run(cmd + ["--", *extra]).stdout
        self.endpoint = [l.split("endpoints: ")[1] for l in out.splitlines() if l.startswith("endpoints: ")][0]

    def ctl(self, *args, check=True):
        return run(["etcdctl", f"--endpoints={self.endpoint}", "--command-timeout=120s", *args],
                   check=check, env={**os.environ, "ETCDCTL_API": "3"})

    def status(self):
        """(revision, dbSize) from `endpoint status`."""
        s = json.loads(self.ctl("endpoint", "status", "-w", "json").stdout)[0]["Status"]
        return s["header"]["revision"], s["dbSize"]

    def close(self):
        subprocess.run([FERROKV, "cluster", "--dir", self.dir, "clean"], capture_output=True)


def bench(bench_bin, m, args):
    """Runs etcd's benchmark against `m`; its figures parsed from the text report."""
    return parse(run([bench_bin, "--endpoints", m.endpoint, "--precise", *args]).stdout)


def parse(out):
    """Requests/s, slowest, p50 and p99 (ms), the error distribution and, with `--sample`, the per-second series
    (the second a request started, the slowest of them, how many) of one report in etcd's benchmark layout."""
    num = lambda pat: float(re.search(pat, out).group(1)) if re.search(pat, out) else float("nan")
    pct = dict((k, float(v) * 1000) for k, v in re.findall(r"([0-9.]+)% in ([0-9.]+) secs", out))
    errors = {msg.strip(): int(n) for n, msg in re.findall(r"\[(\d+)\]\s+(.*)", out.split("Error distribution:")[1])} \
        if "Error distribution:" in out else {}
    samples = []
    if "UNIX-SECOND" in out:
        for line in out.split("UNIX-SECOND", 1)[1].splitlines()[1:]:
            f = line.split(",")
            if len(f) == 5 and f[0].isdigit():
                samples.append({"second": int(f[0]), "max_ms": duration_ms(f[3]), "count": int(f[4])})
    return {"rps": num(r"Requests/sec:\s*([0-9.]+)"), "slowest_ms": num(r"Slowest:\s*([0-9.]+) secs") * 1000,
            "p50_ms": pct.get("50", float("nan")), "p99_ms": pct.get("99", float("nan")), "errors": errors,
            "samples": samples}


def duration_ms(text):
    """A Go time.Duration's String() ("1.5s", "12.3ms", "850µs", "0s") in milliseconds."""
    total = 0.0
    for value, unit in re.findall(r"([0-9.]+)(h|ms|m|s|µs|us|ns)", text):
        total += float(value) * {"h": 3.6e6, "m": 6e4, "s": 1e3, "ms": 1.0, "µs": 1e-3, "us": 1e-3, "ns": 1e-6}[unit]
    return total


def put_args(clients, val, space, total, *more):
    return ["--clients", str(clients), "--conns", str(min(100, clients)), "put", "--key-size", "8", "--val-size",
            str(val), "--sequential-keys", "--key-space-size", str(space), "--total", str(total), *more]


def scenario_quota(bench_bin, kind, base, quota):
    m = Member(kind, base, ["--quota-backend-bytes", str(quota)])
    try:
        m.ctl("put", "scenario-probe", "v")  # deleted under the alarm below
        total = int(quota / 10240 * 1.5)
        r = bench(bench_bin, m, put_args(100, 10240, 1000000, total))
        rev, db = m.status()
        alarms = m.ctl("alarm", "list").stdout.strip()
        acked = total - sum(r["errors"].values())
        read = m.ctl("get", "scenario-probe", "--print-value-only", check=False)
        delete = m.ctl("del", "scenario-probe", check=False)
        put_refused = m.ctl("put", "after-alarm", "v", check=False)
        # what an operator does: free space (here: delete everything), compact, defragment, disarm
        t0 = time.time()
        m.ctl("del", "--prefix", "")
        m.ctl("compact", str(m.status()[0]), "--physical")
        m.ctl("defrag")
        m.ctl("alarm", "disarm")
        recovered = m.ctl("put", "after-recovery", "v", check=False).returncode == 0
        recovery_s = time.time() - t0
        return {"acked_puts": acked, "errors": r["errors"], "rps": r["rps"], "p99_ms": r["p99_ms"],
                "db_size_mib": db / MIB, "revision": rev, "alarm": alarms, "reads_under_alarm": read.returncode == 0 and read.stdout.strip() == "v",
                "delete_under_alarm": delete.returncode == 0 and delete.stdout.strip() == "1",
                "put_under_alarm": (put_refused.stdout + put_refused.stderr).strip().splitlines()[-1][-120:],
                "recovery_s": recovery_s, "recovered": recovered}
    finally:
        m.close()


def scenario_compact(bench_bin, kind, base):
    m = Member(kind, base, [])
    try:
        r = bench(bench_bin, m, put_args(100, 256, 100000, 100000, "--compact-interval", "2s",
                                          "--compact-index-delta", "1000"))
        rev, db = m.status()
        return {"rps": r["rps"], "p50_ms": r["p50_ms"], "p99_ms": r["p99_ms"], "slowest_ms": r["slowest_ms"],
                "errors": r["errors"], "db_size_mib": db / MIB}
    finally:
        m.close()


def scenario_defrag(bench_bin, kind, base):
    m = Member(kind, base, [])
    try:
        bench(bench_bin, m, put_args(100, 10240, 50000, 50000))
        bench(bench_bin, m, put_args(100, 100, 25000, 25000))
        m.ctl("compact", str(m.status()[0]), "--physical")
        before = m.status()[1]
        proc = subprocess.Popen([bench_bin, "--endpoints", m.endpoint, "--precise", "--sample",
                                 *put_args(100, 256, 100000, 150000)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
        time.sleep(3)
        d0 = time.time()
        m.ctl("defrag")
        d1 = time.time()
        out, err = proc.communicate(timeout=300)
        if proc.returncode != 0:
            raise RuntimeError(f"benchmark failed: {err[-300:]}")
        after = m.status()[1]
        r = parse(out)
        window = [s for s in r["samples"] if int(d0) <= s["second"] <= int(d1)]
        rest = [s for s in r["samples"] if s not in window and s["count"] > 0]
        span = max(1, len(window))
        return {"defrag_s": d1 - d0, "db_before_mib": before / MIB, "db_after_mib": after / MIB, "rps": r["rps"],
                "p99_ms": r["p99_ms"], "slowest_ms": r["slowest_ms"],
                "window_rps": sum(s["count"] for s in window) / span,
                "window_max_ms": max((s["max_ms"] for s in window), default=float("nan")),
                "outside_rps": statistics.median([s["count"] for s in rest]) if rest else float("nan"),
                "errors": r["errors"]}
    finally:
        m.close()


def med(rounds, kind, scen, field):
    vals = [r[kind][scen][field] for r in rounds if scen in r.get(kind, {}) and field in r[kind][scen]]
    vals = [v for v in vals if isinstance(v, (int, float)) and v == v]
    return statistics.median(vals) if vals else float("nan")


def each(rounds, kind, scen, field):
    return ", ".join(f"{r[kind][scen][field]:.2f}" for r in rounds if scen in r.get(kind, {}))


def report(rounds, a):
    lines = ["# Operational scenarios: ferrokv beside etcd 3.4.23, one member", "",
             f"Command: `python3 scripts/scenarios.py --bench PATH --rounds {a.rounds} --only {a.only} "
             f"--quota {a.quota}`; etcd's `benchmark` v3.4.23 as the client, unpinned; fresh member per scenario, "
             "alternating which system runs first; medians of the rounds, ratios ferrokv / etcd.", ""]
    row = lambda label, scen, field, fmt: (
        f"| {label} | {med(rounds, 'ferrokv', scen, field):{fmt}} | {med(rounds, 'etcd', scen, field):{fmt}} | "
        f"{med(rounds, 'ferrokv', scen, field) / med(rounds, 'etcd', scen, field):.2f}× |")
    head = ["| | ferrokv | etcd | ratio |", "|---|---|---|---|"]
    if "quota" in a.only:
        lines += [f"## 10 KB puts up to the quota ({a.quota // MIB} MiB), 100 clients", ""] + head + [
            row("puts acknowledged before the quota", "quota", "acked_puts", ".0f"),
            row("throughput on the way, req/s", "quota", "rps", ".0f"),
            row("p99 on the way, ms", "quota", "p99_ms", ".1f"),
            row("file size at the alarm, MiB", "quota", "db_size_mib", ".0f"),
            row("recovery (delete all, compact, defrag, disarm), s", "quota", "recovery_s", ".2f"), ""]
        for kind in ("ferrokv", "etcd"):
            r = rounds[0][kind]["quota"]
            lines.append(f"- {kind} (round 1): errors {r['errors']}; `alarm list`: {r['alarm'] or '(none)'}; reads "
                         f"under the alarm {'work' if r['reads_under_alarm'] else 'fail'}; a delete under the alarm "
                         f"{'works' if r['delete_under_alarm'] else 'fails'}; a put under the alarm answers "
                         f"\"{r['put_under_alarm']}\"; after recovery a put {'succeeds' if r['recovered'] else 'fails'}.")
        lines.append("")
    if "compact" in a.only:
        lines += ["## 100,000 puts of 256 B, 100 clients, compacting every 2 s to 1,000 revisions back", ""] + head + [
            row("throughput, req/s", "compact", "rps", ".0f"), row("p50, ms", "compact", "p50_ms", ".2f"),
            row("p99, ms", "compact", "p99_ms", ".2f"), row("slowest put, ms", "compact", "slowest_ms", ".1f"),
            row("file size after, MiB", "compact", "db_size_mib", ".1f"), ""]
    if "defrag" in a.only:
        lines += ["## Defragmentation during a 100-client put run", "",
                  "50,000 keys of 10 KB, half overwritten with 100 B, compacted; then `etcdctl defrag` 3 s into a "
                  "run of 150,000 puts of 256 B (100 clients). The window is the seconds (by the second a put "
                  "started) from the defragmentation's start to its end.", ""] + head + [
            row("defragmentation, s", "defrag", "defrag_s", ".2f"),
            row("file before, MiB", "defrag", "db_before_mib", ".0f"),
            row("file after, MiB", "defrag", "db_after_mib", ".0f"),
            row("puts/s in the window", "defrag", "window_rps", ".0f"),
            row("puts/s outside it (median second)", "defrag", "outside_rps", ".0f"),
            row("slowest put started in the window, ms", "defrag", "window_max_ms", ".1f"),
            row("whole run: throughput, req/s", "defrag", "rps", ".0f"),
            row("whole run: p99, ms", "defrag", "p99_ms", ".1f"),
            row("whole run: slowest put, ms", "defrag", "slowest_ms", ".1f"), "",
            f"Each round, defragmentation s: ferrokv {each(rounds, 'ferrokv', 'defrag', 'defrag_s')}; "
            f"etcd {each(rounds, 'etcd', 'defrag', 'defrag_s')}. Slowest put in the window, ms: ferrokv "
            f"{each(rounds, 'ferrokv', 'defrag', 'window_max_ms')}; etcd {each(rounds, 'etcd', 'defrag', 'window_max_ms')}.", ""]
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bench", required=True, help="etcd's benchmark tool (v3.4.23), built by hand")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--only", default="quota,compact,defrag")
    ap.add_argument("--quota", type=int, default=256 * MIB, help="--quota-backend-bytes of the quota scenario")
    ap.add_argument("--base-port", type=int, default=24790)
    ap.add_argument("--out", default=os.path.join(ROOT, "docs", "perf", "scenarios-1member.md"))
    a = ap.parse_args()
    if not os.path.exists(FERROKV):
        subprocess.run(["cargo", "build", "--release", "-p", "server", "--bin", "ferrokv"], cwd=ROOT, check=True)
    bench_bin = os.path.abspath(a.bench)
    scenarios = {"quota": lambda k: scenario_quota(bench_bin, k, a.base_port, a.quota),
                 "compact": lambda k: scenario_compact(bench_bin, k, a.base_port),
                 "defrag": lambda k: scenario_defrag(bench_bin, k, a.base_port)}
    rounds = []
    for i in range(a.rounds):
        res = {"ferrokv": {}, "etcd": {}}
        for name in a.only.split(","):
            for kind in (("ferrokv", "etcd") if i % 2 == 0 else ("etcd", "ferrokv")):
                print(f"round {i + 1}/{a.rounds}: {name} on {kind}", file=sys.stderr, flush=True)
                res[kind][name] = scenarios[name](kind)
                print(f"  {json.dumps(res[kind][name])[:400]}", file=sys.stderr, flush=True)
        rounds.append(res)
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(os.path.splitext(a.out)[0] + ".json", "w") as f:
        json.dump(rounds, f, indent=1)
    text = report(rounds, a)
    with open(a.out, "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
