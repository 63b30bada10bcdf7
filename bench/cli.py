"""The command line: ``python -m bench [--quick] [--only ...] [--write-docs] [--profile ...]``."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import traceback
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .measure import Row, Settings, run_scenario
from .report import machine, memory_summary, render_rst, render_text, write_json
from .scenarios import BUILDERS, Context, measure_startup
from .wsgi import ROOT

__all__ = ["main"]

SECTIONS = [*BUILDERS, "startup", "memory", "http"]

FULL = Settings(runs=7, rounds=10, batch_seconds=0.010, warmup_seconds=0.2)
QUICK = Settings(runs=5, rounds=3, batch_seconds=0.002, warmup_seconds=0.05)


def _names(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in SECTIONS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown: {', '.join(unknown)} (known: {', '.join(SECTIONS)})")
    return names


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark flask-access-cors against bare Flask and flask-cors (direct WSGI "
        "calls, interleaved, medians of several runs as ratios to bare Flask).",
    )
    p.add_argument("--quick", action="store_true", help="a short smoke run (about a minute)")
    p.add_argument("--only", type=_names, metavar="A,B", help=f"sections: {', '.join(SECTIONS)}")
    p.add_argument("--skip", type=_names, default=[], metavar="A,B", help="sections to leave out")
    p.add_argument("--runs", type=int, help="runs per scenario (5 or more; default 7, quick 5)")
    p.add_argument("--clock", choices=["cpu", "wall"], default="cpu",
                   help="primary clock: process CPU time (default; robust on a shared machine) "
                   "or wall clock; the other one is reported too")
    p.add_argument("--rounds", type=int, help="rounds per run")
    p.add_argument("--json", type=Path, help="where to write the results "
                   "(default bench/results/latest.json; quick.json with --quick)")
    p.add_argument("--write-docs", action="store_true",
                   help="regenerate docs/performance.rst from this run")
    p.add_argument("--docs-from", type=Path, metavar="JSON",
                   help="only rewrite docs/performance.rst from an earlier run's results")
    p.add_argument("--http-seconds", type=float, help="seconds per app and route over HTTP")
    p.add_argument("--http-worker", default="sync", help="gunicorn worker class (default sync)")
    p.add_argument("--memory-requests", type=int, help="requests in the memory run")
    p.add_argument("--profile", metavar="SCENARIO:VARIANT",
                   help="profile one variant with cProfile instead of benchmarking")
    return p


def _loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _rows_json(rows: list[Row]) -> list[dict[str, Any]]:
    return [asdict(r) for r in rows]


def _run_memory(quick: bool, requests: int | None) -> dict[str, Any]:
    n = requests or (20_000 if quick else 200_000)
    cmd = [sys.executable, "-m", "bench.memory", "--requests", str(n),
           "--tokens", str(1_024 if quick else 8_192), "--every", str(max(n // 20, 1))]
    try:
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900, check=False)
    except subprocess.TimeoutExpired:
        return {"error": "the memory run timed out (900 s)"}
    if done.returncode != 0:
        return {"error": f"the memory run failed: {done.stderr.strip().splitlines()[-1:]}",
                "stderr": done.stderr[-4000:]}
    memory: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    memory["summary"] = memory_summary(memory)
    return memory


def _targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    from .report import fmt_ratio, fmt_time

    out = []
    for scenario in results["scenarios"]:
        for r in scenario.get("rows", []):
            if r["target"]:
                out.append({"scenario": scenario["key"], "variant": r["variant"],
                            "label": r["label"], "target": r["target"],
                            "value": fmt_ratio(r["ratio"], r["ratio_min"], r["ratio_max"]),
                            "met": r["met"]})
    for r in results.get("startup", {}).get("rows", []):
        if r["target"]:
            out.append({"scenario": "startup", "variant": r["variant"], "label": r["label"],
                        "target": r["target"],
                        "value": fmt_time(r["median_us"]), "met": r["met"]})
    memory = results.get("memory", {})
    if "summary" in memory:
        s = memory["summary"]
        out.append({"scenario": "memory", "variant": "long_run",
                    "label": f"{memory['requests']:,} requests",
                    "target": "peak RSS plateaus",
                    "value": f"+{s['second_half_growth_kib'] / 1024:.1f} MiB peak RSS in the 2nd half",
                    "met": s["met"]})
    return out


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.docs_from:
        _write_docs(json.loads(args.docs_from.read_text()))
        return 0
    if args.profile:
        from .profiling import profile

        print(profile(args.profile, quick=args.quick))
        return 0
    base = QUICK if args.quick else FULL
    settings = Settings(
        runs=max(args.runs or base.runs, 5), rounds=max(args.rounds or base.rounds, 1),
        batch_seconds=base.batch_seconds, warmup_seconds=base.warmup_seconds, clock=args.clock,
    )
    sections = [s for s in (args.only or SECTIONS) if s not in args.skip]
    mode = "quick" if args.quick else "full"
    started = time.perf_counter()
    results: dict[str, Any] = {
        "schema": 1,
        "meta": {
            "mode": mode,
            "started": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": machine(),
            "loadavg_start": _loadavg(),
            "settings": asdict(settings),
            "sections": sections,
        },
        "scenarios": [],
    }
    m = results["meta"]["machine"]
    print(f"flask-access-cors benchmark, {mode} mode: {m['cpu_model']}, {m['nproc']} cores, "
          f"Python {m['python']}, Flask {m['versions']['flask']}, "
          f"flask-cors {m['versions']['flask-cors']}; load average {_loadavg()}", flush=True)
    failed = 0
    ctx = Context(quick=args.quick, fresh_tokens=1_024 if args.quick else 6_144)
    try:
        for name in (s for s in sections if s in BUILDERS):
            print(f"  {name} ...", end=" ", flush=True, file=sys.stderr)
            t0 = time.perf_counter()
            entry: dict[str, Any] = {"key": name}
            scenario = None
            try:
                scenario = BUILDERS[name](ctx)
                entry.update(title=scenario.title, description=scenario.description)
                rows = run_scenario(scenario, settings)
                if scenario.cleanup is not None:
                    scenario.cleanup()
                    scenario.cleanup = None
                    notes = {v.key: v.note for v in scenario.variants}
                    for row in rows:
                        row.note = notes.get(row.variant, row.note)
                entry["rows"] = _rows_json(rows)
            except Exception as exc:
                failed += 1
                entry["error"] = f"{type(exc).__name__}: {exc}"
                entry["traceback"] = traceback.format_exc()
                print(f"\n{entry['traceback']}", file=sys.stderr)
            finally:
                if scenario is not None and scenario.cleanup is not None:
                    try:
                        scenario.cleanup()
                    except Exception:
                        traceback.print_exc()
            results["scenarios"].append(entry)
            print(f"{time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
    finally:
        ctx.close()
    if "startup" in sections:
        print("  startup ...", file=sys.stderr, flush=True)
        try:
            results["startup"] = {"rows": _rows_json(measure_startup(5, settings.clock))}
        except Exception as exc:
            failed += 1
            results["startup"] = {"error": f"{type(exc).__name__}: {exc}"}
            traceback.print_exc()
    if "memory" in sections:
        print("  memory (a separate process) ...", file=sys.stderr, flush=True)
        results["memory"] = _run_memory(args.quick, args.memory_requests)
        failed += "error" in results["memory"]
    if "http" in sections:
        print("  http (gunicorn) ...", file=sys.stderr, flush=True)
        from .loadgen import run_http

        try:
            http, description = run_http(args.http_seconds or (1.0 if args.quick else 5.0),
                                         worker_class=args.http_worker,
                                         slices=2 if args.quick else 5)
            results["http"] = {"description": description, "results": [asdict(h) for h in http]}
        except Exception as exc:
            failed += 1
            results["http"] = {"error": f"{type(exc).__name__}: {exc}"}
            traceback.print_exc()
    results["targets"] = _targets(results)
    results["meta"]["loadavg_end"] = _loadavg()
    results["meta"]["duration_s"] = round(time.perf_counter() - started, 1)
    print()
    print(render_text(results))
    path = args.json or ROOT / "bench" / "results" / ("quick.json" if args.quick else "latest.json")
    write_json(path, results)
    print(f"\nresults: {path}; {results['meta']['duration_s']:.0f} s; "
          f"load average {results['meta']['loadavg_end']}")
    if args.write_docs:
        _write_docs(results)
    return 1 if failed else 0


def _write_docs(results: dict[str, Any]) -> None:
    from .prose import CAUSES, PROSE

    docs = ROOT / "docs" / "performance.rst"
    docs.write_text(render_rst(results, PROSE, CAUSES))
    print(f"documentation: {docs}")
