"""``python -m bench [--quick] [--only A,B] [--skip A,B]``: run the benchmarks, print the table.

Each scenario's variants are checked here first, then timed by ``python -m
bench.micro`` under pyperf. Ratios come from each pyperf value's per-variant
shares: per worker process, the median of its values' ratios; reported, the
median over the processes with their min-max. Memory runs in its own process
(``bench.memory``); HTTP is gunicorn driven by locust (``bench/locustfile.py``).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import defaultdict
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from statistics import median
from typing import Any

from .scenarios import BUILDERS, prepare

SECTIONS = [*BUILDERS, "memory", "http"]
HERE, BIN = Path(__file__).resolve().parent, Path(sys.executable).parent
HEADER = ["scenario", "variant", "CPU time per call (min-max)", "ratio (min-max)", "vs", "wall ratio",
          "target", ""]


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    """A markdown table, padded to be read in a terminal too."""
    rows = [r + [""] * (len(header) - len(r)) for r in rows]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    line = [" | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in [header, *rows]]
    return [f"| {line[0]} |", "|" + "|".join("-" * (w + 2) for w in widths) + "|",
            *(f"| {x} |" for x in line[1:])]


def _last_line(text: str) -> str:
    return (text.strip().splitlines() or ["?"])[-1]


def micro(key: str, data: Path, args: argparse.Namespace) -> tuple[list[list[str]], str]:
    """Check, time under pyperf, and tabulate one scenario: ``(rows, title)``."""
    try:
        scenario = BUILDERS[key](data)
        problems = scenario.problems()
        scenario.close()
    except Exception as exc:  # the package refused the set-up, or is broken: report, run the rest
        return [[key, f"ERROR {type(exc).__name__}: {_last_line(str(exc))}"]], key
    skipped = [["", v.label, v.note] for v in scenario.variants if v.call is None]
    if problems:
        return [[key, "ERROR wrong answer: " + "; ".join(problems)]], key
    if len(scenario.timed()) < 2:
        return [[key, *skipped[0][1:]], *skipped[1:]], f"{scenario.title}: not measured"
    done = subprocess.run([sys.executable, "-m", "bench.micro", "--scenario", key, "--data", str(data),
                           "-q", "-p", str(args.processes), "-n", str(args.values), "--min-time",
                           str(args.min_time)], capture_output=True, text=True, check=False)
    if done.returncode:  # the worker's message: a wrong answer after a timing, or its exception
        why = next((x for x in done.stderr.splitlines() if x.startswith(f"{key}/")
                    or re.match(r"[\w.]+(Error|Exception): ", x)), _last_line(done.stderr))
        return [[key, f"ERROR in pyperf run: {why}"]], key
    runs: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for line in (data / f"{key}.jsonl").read_text().splitlines():
        value = json.loads(line)
        runs[value["pid"]].append(value)
    rows, labels, first = [], {v.key: v.label for v in scenario.variants}, scenario.variants[0].key
    for v in scenario.timed():
        ref = v.baseline or first

        def per_run(clock: str, of: str, per: str | None) -> list[float]:
            return [median(x[clock][of] / (x[clock][per] if per else x["loops"] * 1e3) for x in run)
                    for run in runs.values()]

        cost, ratio = per_run("cpu", v.key, None), per_run("cpu", v.key, ref)
        wall = per_run("wall", v.key, ref)
        unit, div = ("ms", 1e3) if median(cost) >= 1e3 else ("µs", 1)
        verdict = ""
        if v.limit is not None:
            verdict = "met" if (median(cost) / 1e3 if v.absolute else median(ratio)) <= v.limit else "MISSED"
        rows.append(["" if rows else key, v.label,
                     f"{median(cost) / div:,.1f} {unit} ({min(cost) / div:,.1f}-{max(cost) / div:,.1f})",
                     *(["baseline", "", ""] if ref == v.key else [
                         f"{median(ratio):.2f} ({min(ratio):.2f}-{max(ratio):.2f})", labels[ref],
                         f"{median(wall):.2f}"]), v.target, verdict])
    return rows + skipped, f"{scenario.title} ({len(runs)} processes)"


def memory(requests: int) -> list[str]:
    done = subprocess.run([sys.executable, "-m", "bench.memory", str(requests)],
                          capture_output=True, text=True, check=False)
    if done.returncode:
        return [f"Memory: ERROR {_last_line(done.stderr)}"]
    m = json.loads(done.stdout)
    growth = m["growth_kib"]
    verdict = ("met" if growth <= 1024 else "MISSED") if requests >= 100_000 else "not judged, too short"
    return [f"Memory (tracemalloc): {requests:,} requests, each with a new token and origin "
            f"({m['seconds']:.0f} s; statuses {m['statuses']}; {m['events_dropped']} events dropped)", "",
            f"- traced: {m['start_kib'] / 1024:.1f} MiB after the warm-up, {m['half_kib'] / 1024:.1f} MiB "
            f"half-way, {(m['half_kib'] + growth) / 1024:.1f} MiB at the end",
            f"- second half: {growth:+,.0f} KiB (target <= +1 MiB: {verdict}); largest changes: "
            f"{'; '.join(m['top_growth'])}"]


def http(seconds: int, users: int, tmp: Path) -> list[str]:
    if not (BIN / "locust").exists():
        return ["HTTP: skipped, locust is not installed (pip install locust)."]
    servers, procs = {}, []
    try:
        for name in ("bare", "flask_cors", "access_cors"):
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                servers[name] = f"http://127.0.0.1:{s.getsockname()[1]}"
            procs.append(subprocess.Popen([BIN / "gunicorn", "-w", "2", "-k", "sync", "-b", servers[name][7:],
                                           "--log-level", "warning", f'bench.apps:build("{name}")']))
        for url in servers.values():
            for _ in range(100):
                try:
                    urllib.request.urlopen(url + "/api/items", timeout=2).read()
                    break
                except OSError:
                    time.sleep(0.2)
        env = {**os.environ, "BENCH_SERVERS": ",".join(f"{k}={u}" for k, u in servers.items())}
        done = subprocess.run([BIN / "locust", "-f", HERE / "locustfile.py", "--headless", "--only-summary",
                               "-u", str(users), "-r", str(users), "-t", f"{seconds}s", "--csv", tmp / "h"],
                              env=env, capture_output=True, text=True, timeout=seconds + 120, check=False)
    finally:
        for p in procs:
            p.terminate()
            p.wait(10)
    if not (tmp / "h_stats.csv").exists():
        return [f"HTTP: ERROR, no results from locust: {_last_line(done.stderr)}"]
    with open(tmp / "h_stats.csv") as f:
        stats = {r["Name"]: r for r in csv.DictReader(f) if r["Name"] != "Aggregated"}
    rows = []
    order = ["bare", "flask_cors", "access_cors"]
    for name, r in sorted(stats.items(), key=lambda x: (x[0].split()[0], order.index(x[0].split()[1]))):
        route, app = name.split()
        avg = float(r["Average Response Time"])
        bare = float(stats.get(f"{route} bare", {}).get("Average Response Time", "nan"))
        rows.append([route, app, r["Request Count"], r["Failure Count"], f"{avg:.2f}", r["50%"], r["99%"],
                     f"{avg / bare:.2f}" if bare else "-"])
    return [f"HTTP: gunicorn -w 2 (sync) per app on loopback; locust, {users} users for {seconds} s, "
            "each sending every route to every app in turn:", "", *table(
                ["route", "app", "requests", "failures", "avg ms", "p50 ms", "p99 ms", "avg x bare"], rows)]


def main(argv: list[str] | None = None) -> int:
    def sections(text: str) -> list[str]:
        if set(names := text.split(",")) - set(SECTIONS):
            raise argparse.ArgumentTypeError(f"known: {', '.join(SECTIONS)}")
        return names

    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="5 processes x 2 values, 20,000 requests for "
                   "memory, 5 s over HTTP; written to bench/results/quick.md")
    p.add_argument("--only", type=sections, default=SECTIONS, metavar="A,B", help=", ".join(SECTIONS))
    p.add_argument("--skip", type=sections, default=[], metavar="A,B")
    p.add_argument("--processes", type=int, help="pyperf worker processes per scenario (at least 5)")
    p.add_argument("--output", type=Path, help="where to write the results (markdown)")
    args = p.parse_args(argv)
    q = args.quick
    args.processes, args.values, args.min_time = max(args.processes or (5 if q else 10), 5), 2 + (not q), 0.1
    todo = [s for s in args.only if s not in args.skip]
    began, load = time.perf_counter(), os.getloadavg()[0]
    rows, titles, after = [], [], []
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        stop = prepare(Path(tmp)) if "gate" in todo else None  # the tokens and a JWKS server
        for key in (s for s in todo if s in BUILDERS):
            print(f"{key} ...", file=sys.stderr, flush=True)
            got, title = micro(key, Path(tmp), args)
            rows += got
            titles.append(f"- {key}: {title}")
        if stop:
            stop()
        if "memory" in todo:
            print("memory ...", file=sys.stderr, flush=True)
            after += ["", *memory(20_000 if q else 200_000)]
        if "http" in todo:
            print("http ...", file=sys.stderr, flush=True)
            after += ["", *http(5 if q else 20, 4, Path(tmp))]
    v = {d: metadata.version(d) for d in ("flask", "werkzeug", "flask-cors", "pyperf")}
    cpu = next((x.split(":")[1].strip() for x in open("/proc/cpuinfo") if x.startswith("model name")), "?")
    text = "\n".join([
        f"# flask-access-cors benchmarks: {'quick' if q else 'full'} run, "
        f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {time.perf_counter() - began:.0f} s", "",
        f"{cpu}, {os.cpu_count()} cores, load average {load:.2f} at the start and "
        f"{os.getloadavg()[0]:.2f} at the end; Python {platform.python_version()}, Flask {v['flask']}, "
        f"Werkzeug {v['werkzeug']}, flask-cors {v['flask-cors']}, pyperf {v['pyperf']} ({args.processes} "
        f"processes x {args.values} values per scenario, each value >= {args.min_time} s).", "",
        *table(HEADER, rows), "", *titles, *after])
    print(text)
    out = args.output or HERE / "results" / ("quick.md" if q else "latest.md")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text + "\n")
    print(f"\nwritten to {out}", file=sys.stderr)
    return 1 if "ERROR" in text else 0
