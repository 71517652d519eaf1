#!/usr/bin/env python3
"""The metrics lab's scenarios on a 3-member cluster: what its dashboards show, before and after each step.

    scripts/lab.sh [--etcd [--etcd-binary PATH]] [--only puts,ranges,fsync,quota,compaction,defrag] [--client PATH]

Each scenario starts a fresh 3-member cluster (`ferrokv cluster start 3 --failpoint-port …`, and with `--etcd` the
same for the etcd on PATH) with `--metrics extensive`, and reads every member's /metrics around each step, as the
lab's Prometheus does; the figures are the dashboards' (rates and p99s from counter and histogram deltas):

  puts        100 clients put 256 B values on 100,000 keys: puts/s and p99 (client), WAL fsync p99, backend
              commit p99 and proposals committed (leader's metrics).
  ranges      linearizable and serializable ranges of one key, 100 clients: ranges/s and p99.
  fsync       a steady load (500 puts/s, 20 clients); `walBeforeFdatasync=sleep(100)` through gofail's HTTP
              interface on every member, then cleared: puts/s, put p99, fsync p99 and leader changes in each
              window (needs failpoints: an etcd built without gofail shows n/a).
  quota       `--quota-backend-bytes 64 MiB`, 10 KB puts until the store is full: the alarm, the file size, puts
              acknowledged; then what an operator does (delete, compact, defragment, disarm) and how long it takes.
  compaction  30,000 puts of 1 KB on 1,000 keys, then `etcdctl compact` and `defrag`: the file size and the size
              in use before, after the compaction and after the defragmentation; how long each took.
  defrag      a 20,000-key store (10 KB values, half overwritten small, compacted) under a steady load; then
              `defrag` of a follower, of the leader, and of the leader with `defragBeforeCopy=sleep(3000)`:
              how long each took, puts/s, put p99 and the slowest put (its histogram bucket) from its start to 3 s
              after its end (so puts it held up are counted), against 5 s without it, and leader changes.

The load comes from `ferrokv bench` (etcd's benchmark's commands and flags) or `--client PATH` (etcd's own
`benchmark`). Prints a Markdown report (ferrokv and etcd side by side with --etcd) and writes it to --out.
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

from scenarios import parse  # the benchmark report's reader, beside this script

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FERROKV = os.path.join(ROOT, "target", "release", "ferrokv")
MIB = 1024 * 1024
NA = float("nan")


def run(cmd, check=True, timeout=600):
    return subprocess.run(cmd, check=check, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=timeout)


# ---------------------------------------------------------------- metrics, as Prometheus computes them

LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)')


def scrape(endpoint):
    """Every sample of `endpoint`'s /metrics: {(name, frozenset(labels)): value}."""
    with urllib.request.urlopen(f"http://{endpoint}/metrics", timeout=10) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        m = LINE.match(line)
        if not m or line.startswith("#"):
            continue
        labels = frozenset(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(3) or ""))
        try:
            out[(m.group(1), labels)] = float(m.group(4))
        except ValueError:
            pass
    return out


def total(samples, name, **want):
    """The sum of `name`'s samples whose labels include `want`."""
    return sum(v for (n, l), v in samples.items() if n == name and all((k, w) in l for k, w in want.items()))


def delta(before, after, name, **want):
    return sum(total(a, name, **want) - total(b, name, **want) for b, a in zip(before, after))


def growth(before, after, name, **want):
    """The histogram's bucket counts' growth between two scrapes of each member, summed: [(le, count)], sorted."""
    buckets = {}
    for b, a in zip(before, after):
        for (n, l), v in a.items():
            if n != name + "_bucket" or not all((k, w) in l for k, w in want.items()):
                continue
            le = dict(l)["le"]
            buckets[le] = buckets.get(le, 0.0) + v - b.get((n, l), 0.0)
    return sorted(((float(le), c) for le, c in buckets.items()), key=lambda x: x[0])


def slowest(before, after, name, **want):
    """The bucket of the slowest observation between the scrapes, as text: "≤ 50 ms", "> 10000 ms"."""
    bounds = growth(before, after, name, **want)
    prev_b, prev_c, last = 0.0, 0.0, None
    for bound, count in bounds:
        if count > prev_c:
            last = (prev_b, bound)
        prev_b, prev_c = bound, count
    if last is None:
        return "n/a"
    lo, hi = last
    return f"> {lo * 1000:g} ms" if hi == float("inf") else f"≤ {hi * 1000:g} ms"


def p99_ms(before, after, name, **want):
    """histogram_quantile(0.99) of the histogram's growth between two scrapes of each member, in ms."""
    bounds = growth(before, after, name, **want)
    if not bounds or bounds[-1][1] <= 0:
        return NA
    rank, prev_b, prev_c = 0.99 * bounds[-1][1], 0.0, 0.0
    for bound, count in bounds:
        if count >= rank:
            if bound == float("inf"):
                return prev_b * 1000
            return (prev_b + (bound - prev_b) * (rank - prev_c) / max(count - prev_c, 1e-9)) * 1000
        prev_b, prev_c = bound, count
    return NA


# ---------------------------------------------------------------- the cluster

class Cluster:
    """A fresh 3-member cluster of `kind` ("ferrokv" or "etcd"), with failpoints on ports fp..fp+2."""

    def __init__(self, kind, base, fp, extra=()):
        self.kind, self.fp = kind, fp
        self.dir = tempfile.mkdtemp(prefix=f"lab-{kind}-")
        cmd = [FERROKV, "cluster", "--dir", self.dir, "start", "3", "--base-port", str(base),
               "--failpoint-port", str(fp)] + (["--etcd"] if kind == "etcd" else [])
        out = run(cmd + ["--", "--metrics", "extensive", *extra]).stdout
        self.endpoints = [l.split("endpoints: ")[1] for l in out.splitlines() if l.startswith("endpoints: ")][0]
        self.members = self.endpoints.split(",")

    def ctl(self, *args, endpoint=None, check=True):
        return run(["etcdctl", f"--endpoints={endpoint or self.endpoints}", "--command-timeout=300s", *args],
                   check=check)

    def status(self):
        """Per member: (is leader, dbSize, dbSizeInUse or None), in member order."""
        out = json.loads(self.ctl("endpoint", "status", "-w", "json").stdout)
        by = {s["Endpoint"].replace("http://", ""): s["Status"] for s in out}
        res = []
        for e in self.members:
            s = by[e]
            res.append((s["leader"] == s["header"]["member_id"], s["dbSize"], s.get("dbSizeInUse")))
        return res

    def leader(self):
        return [i for i, s in enumerate(self.status()) if s[0]][0]

    def scrape(self):
        return [scrape(e) for e in self.members]

    def failpoint_name(self, name):
        """The member's name for failpoint `name`, or None without it (or without failpoints at all). gofail
        before 0.1 (what etcd 3.4 was built with) names a failpoint after its package, `backend/defragBeforeCopy`;
        etcd 3.5+ and ferrokv name it alone. etcd 3.4 has no WAL failpoints."""
        try:
            listed = urllib.request.urlopen(f"http://127.0.0.1:{self.fp}/", timeout=2).read().decode()
        except OSError:
            return None
        names = [l.split("=", 1)[0] for l in listed.splitlines()]
        return next((n for n in names if n == name or n.endswith("/" + name)), None)

    def failpoint(self, i, name, term):
        url = f"http://127.0.0.1:{self.fp + i}/{self.failpoint_name(name)}"
        req = urllib.request.Request(url, data=term.encode(), method="PUT") if term else \
            urllib.request.Request(url, method="DELETE")
        urllib.request.urlopen(req, timeout=5).read()

    def close(self):
        run([FERROKV, "cluster", "--dir", self.dir, "clean"], check=False)
        shutil.rmtree(self.dir, ignore_errors=True)


# ---------------------------------------------------------------- the client

def bench_cmd(client, c, *args):
    return [*client, "--endpoints", c.endpoints, *args]


def report_of(out):
    """Requests/s, p99 (ms) and the number of errors of one report in etcd's benchmark layout."""
    r = parse(out)
    return {"rps": r["rps"], "p99_ms": r["p99_ms"], "errors": sum(r["errors"].values())}


def bench(client, c, *args):
    return report_of(run(bench_cmd(client, c, *args), check=False).stdout)


class Load:
    """A steady put load in the background (`rate` puts/s from `clients` clients) until stopped."""

    def __init__(self, client, c, rate, clients=20, val=256):
        args = ["--clients", str(clients), "--conns", str(min(clients, 10)), "put", "--key-size", "8",
                "--val-size", str(val), "--sequential-keys", "--key-space-size", "100000", "--rate", str(rate),
                "--total", str(rate * 3600)]
        self.proc = subprocess.Popen(bench_cmd(client, c, *args), stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)

    def stop(self):
        self.proc.kill()
        self.proc.wait()


def window(c, seconds=None, action=None, settle=0):
    """Scrapes every member, runs `action` (or sleeps `seconds`), waits `settle` seconds more (so that requests an
    action held up are answered, and counted, inside the window), scrapes again: the dashboards' figures for it."""
    before, t0 = c.scrape(), time.time()
    if action:
        action()
    else:
        time.sleep(seconds)
    time.sleep(settle)
    after, t1 = c.scrape(), time.time()
    dt = t1 - t0
    return {"seconds": dt,
            "puts_per_s": delta(before, after, "grpc_server_handled_total", grpc_method="Put") / dt,
            "put_p99_ms": p99_ms(before, after, "grpc_server_handling_seconds", grpc_method="Put"),
            "slowest_put": slowest(before, after, "grpc_server_handling_seconds", grpc_method="Put"),
            "fsync_p99_ms": p99_ms(before, after, "etcd_disk_wal_fsync_duration_seconds"),
            "commit_p99_ms": p99_ms(before, after, "etcd_disk_backend_commit_duration_seconds"),
            "leader_changes": delta(before, after, "etcd_server_leader_changes_seen_total") / 3,
            "proposals_committed": delta(before, after, "etcd_server_proposals_committed_total") / 3}


# ---------------------------------------------------------------- the scenarios

def scenario_puts(client, c):
    before = c.scrape()
    r = bench(client, c, "--clients", "100", "--conns", "100", "put", "--key-size", "8", "--val-size", "256",
              "--sequential-keys", "--key-space-size", "100000", "--total", "30000")
    after = c.scrape()
    return {"puts/s (client)": r["rps"], "put p99 ms (client)": r["p99_ms"],
            "WAL fsync p99 ms": p99_ms(before, after, "etcd_disk_wal_fsync_duration_seconds"),
            "backend commit p99 ms": p99_ms(before, after, "etcd_disk_backend_commit_duration_seconds"),
            "proposals committed (per member)": delta(before, after, "etcd_server_proposals_committed_total") / 3,
            "errors": r["errors"]}


def scenario_ranges(client, c):
    c.ctl("put", "lab-key", "v" * 256)
    res = {}
    for cons in ("l", "s"):
        r = bench(client, c, "--clients", "100", "--conns", "100", "range", "lab-key", "--consistency", cons,
                  "--total", "30000")
        res[f"ranges/s ({cons})"], res[f"range p99 ms ({cons})"] = r["rps"], r["p99_ms"]
    return res


def scenario_fsync(client, c):
    if not c.failpoint_name("walBeforeFdatasync"):
        return None
    load = Load(client, c, 500)
    try:
        time.sleep(2)
        a = window(c, 6)
        for i in range(3):
            c.failpoint(i, "walBeforeFdatasync", "sleep(100)")
        b = window(c, 6)
        for i in range(3):
            c.failpoint(i, "walBeforeFdatasync", None)
        time.sleep(1)
        d = window(c, 6)
    finally:
        load.stop()
    res = {}
    for label, w in (("before", a), ("sleep(100)", b), ("cleared", d)):
        for k in ("puts_per_s", "put_p99_ms", "slowest_put", "fsync_p99_ms", "leader_changes"):
            res[f"{label}: {k}"] = w[k]
    return res


def scenario_quota(client, c):
    r = bench(client, c, "--clients", "100", "--conns", "100", "put", "--key-size", "8", "--val-size", "10240",
              "--sequential-keys", "--key-space-size", "1000000", "--total", str(int(64 * MIB / 10240 * 1.5)))
    st = c.status()
    alarm = c.ctl("alarm", "list").stdout.strip()
    refused = c.ctl("put", "after-alarm", "v", check=False)
    t0 = time.time()
    c.ctl("del", "--prefix", "")
    rev = json.loads(c.ctl("endpoint", "status", "-w", "json").stdout)[0]["Status"]["header"]["revision"]
    c.ctl("compact", str(rev), "--physical")
    c.ctl("defrag", "--cluster")
    c.ctl("alarm", "disarm")
    ok = c.ctl("put", "after-recovery", "v", check=False).returncode == 0
    return {"puts acknowledged": int(64 * MIB / 10240 * 1.5) - r["errors"],
            "puts refused": r["errors"], "file MiB at the alarm (leader)": st[c.leader()][1] / MIB,
            "alarm": alarm.replace("\n", "; ") or "(none)",
            "a put under the alarm": (refused.stdout + refused.stderr).strip().splitlines()[-1][-60:],
            "recovery s (delete, compact, defrag, disarm)": time.time() - t0, "put after recovery": ok}


def scenario_compaction(client, c):
    bench(client, c, "--clients", "50", "--conns", "50", "put", "--key-size", "8", "--val-size", "1024",
          "--sequential-keys", "--key-space-size", "1000", "--total", "30000")
    li = c.leader()
    s0 = c.status()[li]
    rev = json.loads(c.ctl("endpoint", "status", "-w", "json").stdout)[0]["Status"]["header"]["revision"]
    t0 = time.time()
    c.ctl("compact", str(rev), "--physical")
    t1 = time.time()
    s1 = c.status()[li]
    c.ctl("defrag", endpoint=c.members[li])
    t2 = time.time()
    s2 = c.status()[li]
    mib = lambda v: v / MIB if v is not None else NA
    return {"file MiB before": mib(s0[1]), "in use MiB before": mib(s0[2]), "compaction s": t1 - t0,
            "file MiB after compaction": mib(s1[1]), "in use MiB after compaction": mib(s1[2]),
            "defrag s": t2 - t1, "file MiB after defrag": mib(s2[1])}


def scenario_defrag(client, c):
    bench(client, c, "--clients", "100", "--conns", "100", "put", "--key-size", "8", "--val-size", "10240",
          "--sequential-keys", "--key-space-size", "20000", "--total", "20000")
    bench(client, c, "--clients", "100", "--conns", "100", "put", "--key-size", "8", "--val-size", "100",
          "--sequential-keys", "--key-space-size", "10000", "--total", "10000")
    rev = json.loads(c.ctl("endpoint", "status", "-w", "json").stdout)[0]["Status"]["header"]["revision"]
    c.ctl("compact", str(rev), "--physical")
    fps = c.failpoint_name("defragBeforeCopy") is not None
    load = Load(client, c, 500)
    res = {}
    try:
        time.sleep(2)
        base = window(c, 5)
        res["no defrag: puts/s"], res["no defrag: put p99 ms"] = base["puts_per_s"], base["put_p99_ms"]
        res["no defrag: slowest put"] = base["slowest_put"]
        steps = [("follower", False), ("leader", False)] + ([("leader, defragBeforeCopy=sleep(3000)", True)]
                                                            if fps else [])
        for label, slow in steps:
            li = c.leader()
            target = (li + 1) % 3 if label == "follower" else li
            if slow:
                c.failpoint(target, "defragBeforeCopy", "sleep(3000)")
            took = {}

            def defrag():
                t0 = time.time()
                c.ctl("defrag", endpoint=c.members[target])
                took["s"] = time.time() - t0
            w = window(c, action=defrag, settle=3)
            if slow:
                c.failpoint(target, "defragBeforeCopy", None)
            res[f"{label}: defrag s"] = took["s"]
            res[f"{label}: puts/s"], res[f"{label}: put p99 ms"] = w["puts_per_s"], w["put_p99_ms"]
            res[f"{label}: slowest put"] = w["slowest_put"]
            res[f"{label}: leader changes"] = w["leader_changes"]
            time.sleep(2)
    finally:
        load.stop()
    return res


SCENARIOS = {"puts": (scenario_puts, ()), "ranges": (scenario_ranges, ()), "fsync": (scenario_fsync, ()),
             "quota": (scenario_quota, ("--quota-backend-bytes", str(64 * MIB))),
             "compaction": (scenario_compaction, ()), "defrag": (scenario_defrag, ())}


def fmt(v):
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return "n/a" if v != v else (f"{v:.0f}" if abs(v) >= 100 else f"{v:.2f}")
    return str(v)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--etcd", action="store_true", help="also run every scenario on etcd (from PATH)")
    ap.add_argument("--etcd-only", action="store_true", help="only on etcd")
    ap.add_argument("--only", default=",".join(SCENARIOS))
    ap.add_argument("--client", help="etcd's benchmark tool; default: ferrokv bench")
    ap.add_argument("--etcd-binary", help="the etcd to run (default: etcd on PATH), e.g. one built with gofail")
    ap.add_argument("--base-port", type=int, default=25379)
    ap.add_argument("--failpoint-port", type=int, default=25480)
    ap.add_argument("--out", default=os.path.join(ROOT, "docs", "perf", "lab.md"))
    a = ap.parse_args()
    if not os.path.exists(FERROKV):
        subprocess.run(["cargo", "build", "--release", "-p", "server", "--bin", "ferrokv"], cwd=ROOT, check=True)
    client = [os.path.abspath(a.client)] if a.client else [FERROKV, "bench"]
    if a.etcd_binary:
        # `ferrokv cluster --etcd` runs the etcd on PATH.
        bindir = tempfile.mkdtemp(prefix="lab-etcd-bin-")
        os.symlink(os.path.abspath(a.etcd_binary), os.path.join(bindir, "etcd"))
        os.environ["PATH"] = bindir + os.pathsep + os.environ["PATH"]
    kinds = ["etcd"] if a.etcd_only else (["ferrokv", "etcd"] if a.etcd else ["ferrokv"])
    results = {}
    for name in a.only.split(","):
        fn, extra = SCENARIOS[name]
        for kind in kinds:
            print(f"{name} on {kind}", file=sys.stderr, flush=True)
            c = Cluster(kind, a.base_port, a.failpoint_port, extra)
            try:
                results.setdefault(name, {})[kind] = fn(client, c)
            finally:
                c.close()
            print(f"  {json.dumps(results[name][kind])[:300]}", file=sys.stderr, flush=True)
    lines = [f"# The metrics lab's scenarios, 3 members ({time.strftime('%Y-%m-%d')})", "",
             f"`scripts/lab.sh {' '.join(sys.argv[1:])}`; client: {'etcd benchmark' if a.client else 'ferrokv bench'}."
             " Figures from every member's /metrics around each step (rates and p99 from counter and histogram "
             "deltas, as the lab's dashboards compute them) unless marked (client).", ""]
    for name, by in results.items():
        lines += [f"## {name}", "", "| | " + " | ".join(kinds) + " |", "|---" * (len(kinds) + 1) + "|"]
        keys = next((list(v.keys()) for v in by.values() if v), [])
        for k in keys:
            lines.append(f"| {k} | " + " | ".join(fmt(by[kind].get(k, NA)) if by.get(kind) else "n/a"
                                                   for kind in kinds) + " |")
        for kind in kinds:
            if not by.get(kind):
                lines.append(f"- {kind}: n/a, no such failpoint (etcd 3.4 has none in its WAL; Debian's etcd has no "
                             "failpoints at all)")
        lines.append("")
    text = "\n".join(lines) + "\n"
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        f.write(text)
    with open(os.path.splitext(a.out)[0] + ".json", "w") as f:
        json.dump(results, f, indent=1)
    print(text)


if __name__ == "__main__":
    main()
