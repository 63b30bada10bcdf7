"""The results: a text table for the terminal, JSON, and the documentation page."""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Iterable, Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = [
    "machine",
    "memory_summary",
    "render_rst",
    "render_text",
    "table",
    "write_json",
]

HEADER = ["scenario", "variant", "median", "spread (min-max)", "ratio (min-max)", "vs",
          "wall ratio", "x bare", "target", "result"]


def machine() -> dict[str, Any]:
    """What ran the benchmark."""
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    versions = {}
    for dist in ("flask", "werkzeug", "flask-cors", "flask-access-cors", "pyjwt", "cryptography",
                 "gunicorn"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = "not installed"
    return {
        "cpu_model": model,
        "nproc": len(os.sched_getaffinity(0)),
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "versions": versions,
    }


# -- formatting ------------------------------------------------------------------


def _scale(us: float) -> tuple[float, str]:
    if us < 1_000:
        return 1.0, "µs"
    if us < 1_000_000:
        return 1e3, "ms"
    return 1e6, "s"


def fmt_time(us: float | None) -> str:
    if us is None:
        return "-"
    div, unit = _scale(us)
    return f"{us / div:,.1f} {unit}" if div == 1.0 or us / div < 100 else f"{us / div:,.0f} {unit}"


def fmt_spread(low: float | None, high: float | None, median: float | None) -> str:
    if low is None or high is None or median is None:
        return "-"
    div, _unit = _scale(median)
    digits = 1 if (high / div) < 1000 else 0
    return f"{low / div:,.{digits}f}-{high / div:,.{digits}f}"


def fmt_ratio(value: float | None, low: float | None = None, high: float | None = None) -> str:
    if value is None:
        return "-"
    digits = 2 if value < 100 else 0
    text = f"{value:,.{digits}f}"
    if low is not None and high is not None and (low, high) != (value, value):
        text += f" ({low:,.{digits}f}-{high:,.{digits}f})"
    return text


def fmt_met(met: bool | None, error: str | None = None) -> str:
    if error:
        return "ERROR"
    return {True: "met", False: "MISSED", None: "-"}[met]


def _mib(kib: float) -> str:
    return f"{kib / 1024:,.1f} MiB"


#: Shorter runs do not fill every bound (the event store keeps 10,000 events, and
#: only one request in eight is a new event), so they are not judged.
MEMORY_JUDGED_FROM = 100_000


def memory_summary(memory: Mapping[str, Any]) -> dict[str, Any]:
    """Did peak RSS plateau? Compares the second half of the run with the first."""
    samples = memory["samples"]
    half = next(s for s in samples if s["requests"] >= memory["requests"] / 2)
    end = samples[-1]
    growth = end["hwm_kib"] - half["hwm_kib"]
    allowed = max(1024.0, 0.02 * half["hwm_kib"])
    return {
        "start_rss_kib": samples[0]["rss_kib"],
        "half_hwm_kib": half["hwm_kib"],
        "end_hwm_kib": end["hwm_kib"],
        "end_rss_kib": end["rss_kib"],
        "second_half_growth_kib": growth,
        "allowed_growth_kib": allowed,
        "met": growth <= allowed if memory["requests"] >= MEMORY_JUDGED_FROM else None,
    }


def table(results: Mapping[str, Any]) -> list[list[str]]:
    """The main table's rows, as text cells."""
    rows: list[list[str]] = []
    for scenario in results.get("scenarios", []):
        if scenario.get("error"):
            rows.append([scenario["key"], "(could not run)", "-", "-", "-", "-", "-", "-", "-",
                         "ERROR"])
            continue
        for r in scenario["rows"]:
            is_base = r["baseline"] is None
            rows.append([
                r["scenario"], r["label"], fmt_time(r["median_us"]),
                fmt_spread(r["min_us"], r["max_us"], r["median_us"]),
                "baseline" if is_base else fmt_ratio(r["ratio"], r["ratio_min"], r["ratio_max"]),
                "-" if is_base else r["baseline"],
                "-" if is_base else fmt_ratio(r["other_ratio"]),
                fmt_ratio(r["ratio_bare"]),
                r["target"] or "-", fmt_met(r["met"], r.get("error")),
            ])
    startup = results.get("startup")
    if startup and startup.get("error"):
        rows.append(["startup", "(could not run)", "-", "-", "-", "-", "-", "-", "-", "ERROR"])
    elif startup:
        for r in startup["rows"]:
            rows.append([
                "startup", r["label"], fmt_time(r["median_us"]),
                fmt_spread(r["min_us"], r["max_us"], r["median_us"]),
                "-", "-", "-", "-", r["target"] or "-", fmt_met(r["met"]),
            ])
    memory = results.get("memory")
    if memory and "samples" in memory:
        s = memory["summary"]
        rows.append([
            "memory", f"{memory['requests']:,} requests, distinct tokens+origins",
            f"peak {_mib(s['end_hwm_kib'])}",
            f"RSS {_mib(s['start_rss_kib'])} at start",
            f"+{s['second_half_growth_kib'] / 1024:.1f} MiB in 2nd half", "-", "-", "-",
            f"plateau (<= +{s['allowed_growth_kib'] / 1024:.1f} MiB)"
            if s["met"] is not None else "too short to judge", fmt_met(s["met"]),
        ])
    elif memory:
        rows.append(["memory", memory.get("skipped") or memory.get("error", "?"), "-", "-", "-",
                     "-", "-", "-", "-", "ERROR" if memory.get("error") else "-"])
    return rows


def http_table(results: Mapping[str, Any]) -> list[list[str]]:
    rows = []
    for r in results.get("http", {}).get("results", []):
        odd = f"; unexpected statuses {r['unexpected']}" if r["unexpected"] else ""
        rows.append([
            r["route"], r["label"], f"{r['rps']:,.0f}", f"{r['p50_ms']:.2f}", f"{r['p99_ms']:.2f}",
            fmt_ratio(r["ratio"]), f"{r['requests']:,} ok, {r['errors']} errors{odd}",
        ])
    return rows


HTTP_HEADER = ["route", "server", "req/s", "p50 ms", "p99 ms", "x bare (time)", "requests"]


def _text_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(c)) for c in column) for column in zip(header, *rows, strict=False)]
    line = "  ".join("-" * w for w in widths)
    out = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)), line]
    previous = None
    for row in rows:
        if previous is not None and row[0] != previous:
            out.append("")
        previous = row[0]
        out.append("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return "\n".join(out)


def render_text(results: Mapping[str, Any]) -> str:
    parts = [_text_table(HEADER, table(results))]
    http = results.get("http", {})
    if http.get("results"):
        parts += ["", f"HTTP, one run: {http['description']}", _text_table(HTTP_HEADER, http_table(results))]
    elif http:
        parts += ["", f"HTTP: {http.get('description') or http.get('error')}"]
    errors = [s for s in results.get("scenarios", []) if s.get("error")]
    for s in errors:
        parts += ["", f"{s['key']}: {s['error']}"]
    return "\n".join(parts)


def write_json(path: Path, results: Mapping[str, Any]) -> None:
    """Write atomically (``*.tmp`` then rename), so a crashed run never leaves half a file."""
    import json

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n")
    tmp.replace(path)


# -- the documentation page --------------------------------------------------------


def _rst_escape(text: str) -> str:
    for char in ("\\", "*", "`", "|"):
        text = text.replace(char, "\\" + char)
    return text


def _list_table(header: Sequence[str], rows: Iterable[Sequence[str]], widths: str | None = None
                ) -> list[str]:
    out = [".. list-table::", "   :header-rows: 1"]
    if widths:
        out.append(f"   :widths: {widths}")
    out.append("")
    for row in [list(header), *rows]:
        for i, cell in enumerate(row):
            text = _rst_escape(str(cell))
            if text in ("", "-"):
                text = "\\-" if text else "\\ "  # a bare "-" would start a bullet list
            out.append(f"   {'* -' if i == 0 else '  -'} {text}")
    out.append("")
    return out


def _section(title: str, char: str) -> list[str]:
    return [title, char * len(title), ""]


def render_rst(results: Mapping[str, Any], prose: Mapping[str, str],
               causes: Mapping[str, str] | None = None) -> str:
    """The standalone page ``docs/performance.rst``; ``prose`` holds the hand-written parts.

    ``causes`` explains missed targets, by ``scenario:variant`` or ``scenario``.
    """
    causes = causes or {}
    meta = results["meta"]
    m = meta["machine"]
    v = m["versions"]
    out = _section("Performance", "=")
    out += [prose["intro"], ""]
    out += _section("Machine", "-")
    out += [
        f"- CPU: {_rst_escape(m['cpu_model'])}, ``nproc`` = {m['nproc']}",
        f"- {m['implementation']} {m['python']} on {_rst_escape(m['platform'])}",
        f"- Flask {v['flask']}, Werkzeug {v['werkzeug']}, flask-cors {v['flask-cors']}, "
        f"flask-access-cors {v['flask-access-cors']}, PyJWT {v['pyjwt']}, "
        f"cryptography {v['cryptography']}, gunicorn {v['gunicorn']}",
        f"- Run: {meta['started']} ({meta['mode']} mode, {meta['duration_s']:.0f} s); "
        f"load average {meta['loadavg_start']} at the start and {meta['loadavg_end']} at the end",
        "",
        prose["machine"],
        "",
    ]
    out += _section("Reproducing", "-")
    out += [prose["reproduce"], ""]
    out += _section("Method", "-")
    s = meta["settings"]
    out += [prose["method"].format(**s), ""]
    out += _section("Results", "-")
    out += [prose["results"], ""]
    rows = table(results)
    for scenario in results.get("scenarios", []):
        out += _section(scenario.get("title") or scenario["key"], "~")
        if scenario.get("description"):
            out += [_rst_escape(scenario["description"]), ""]
        if scenario.get("error"):
            out += [f"Could not run: ``{scenario['error']}``", ""]
            continue
        mine = [r[1:] for r in rows if r[0] == scenario["key"]]
        out += _list_table(HEADER[1:], mine, "24 10 12 16 18 7 7 12 7")
    startup = [r[1:] for r in rows if r[0] == "startup"]
    if startup:
        out += _section("Start-up validation", "~")
        out += [prose["startup"], ""]
        out += _list_table(["variant", "median", "spread (min-max)", "target", "result"],
                           [[r[0], r[1], r[2], r[7], r[8]] for r in startup], "40 15 20 15 10")
    memory = results.get("memory", {})
    if "samples" in memory:
        out += _section("Memory over a long run", "~")
        out += [prose["memory"].format(**memory), ""]
        summary = [r[1:] for r in rows if r[0] == "memory"]
        out += _list_table(["run", "peak RSS", "at start", "growth", "target", "result"],
                           [[r[0], r[1], r[2], r[3], r[7], r[8]] for r in summary])
        out += ["Samples:", ""]
        rows = [[f"{x['requests']:,}", _mib(x["rss_kib"]), _mib(x["hwm_kib"]), f"{x['seconds']:.0f}"]
                for x in memory["samples"]]
        out += _list_table(["requests", "RSS (VmRSS)", "peak RSS (VmHWM)", "seconds"], rows)
    http = results.get("http", {})
    out += _section("Over HTTP", "~")
    if http.get("results"):
        out += [prose["http"], "", f"Set-up: {_rst_escape(http['description'])}.", ""]
        out += _list_table(HTTP_HEADER, http_table(results))
    else:
        out += [f"Not measured in this run: {_rst_escape(str(http.get('description', 'skipped')))}.",
                ""]
    out += _section("Targets", "-")
    out += [prose["targets"], ""]
    for t in results.get("targets", []):
        status = {True: "met", False: "**missed**", None: "not measured"}[t["met"]]
        out.append(f"- {_rst_escape(t['scenario'])} / {_rst_escape(t['label'])}: "
                   f"{_rst_escape(t['value'])} (target {_rst_escape(t['target'])}): {status}")
    out.append("")
    missed = [t for t in results.get("targets", []) if t["met"] is False]
    if missed:
        out += _section("Findings", "-")
        out += [prose["findings"], ""]
        shown: set[str] = set()
        for t in missed:
            key = f"{t['scenario']}:{t.get('variant', '')}"
            cause_key = key if key in causes else t["scenario"]
            if cause_key in shown:
                continue
            shown.add(cause_key)
            out.append(f"**{_rst_escape(t['scenario'])}: {_rst_escape(t['label'])}** "
                       f"({_rst_escape(t['value'])}; target {_rst_escape(t['target'])}).")
            out.append(causes.get(cause_key, "Not analysed yet."))
            out.append("")
    return "\n".join(out).rstrip() + "\n"
