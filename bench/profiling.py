"""``python -m bench --profile SCENARIO:VARIANT``: where one variant spends its time.

Runs the variant's requests under :mod:`cProfile` (after a warm-up) and prints
the top entries by own time, then the entries inside ``flask_access_cors`` by
cumulative time. Profiling slows Python code down unevenly: read the shares,
not the absolute times.
"""

from __future__ import annotations

import cProfile
import io
import pstats
import time

from .scenarios import BUILDERS, Context
from .wsgi import timed_batch

__all__ = ["profile"]


def profile(spec: str, seconds: float = 2.0, limit: int = 25, quick: bool = False) -> str:
    scenario_key, _, variant_key = spec.partition(":")
    if scenario_key not in BUILDERS:
        raise SystemExit(f"unknown scenario {scenario_key!r}; one of {', '.join(BUILDERS)}")
    ctx = Context(quick=quick, fresh_tokens=1_024 if quick else 6_144)
    try:
        scenario = BUILDERS[scenario_key](ctx)
        try:
            keys = [v.key for v in scenario.variants]
            if variant_key not in keys:
                raise SystemExit(f"unknown variant {variant_key!r}; one of {', '.join(keys)}")
            variant = next(v for v in scenario.variants if v.key == variant_key)
            start = 0
            t0 = time.perf_counter()
            warm = 0
            while time.perf_counter() - t0 < 0.3 or warm < 50:
                timed_batch(variant.app, variant.requests, start, 10)
                start += 10
                warm += 10
            per_request = (time.perf_counter() - t0) / warm
            n = max(20, int(seconds / per_request))
            profiler = cProfile.Profile()
            profiler.enable()
            timed_batch(variant.app, variant.requests, start, n)
            profiler.disable()
        finally:
            if scenario.cleanup is not None:
                scenario.cleanup()
    finally:
        ctx.close()
    out = io.StringIO()
    out.write(f"{scenario_key}:{variant_key} ({variant.label}): {n} requests under cProfile, "
              f"{per_request * 1e6:.1f} µs/request without it\n")
    stats = pstats.Stats(profiler, stream=out)
    out.write("\n== top entries by own time (tottime) ==\n")
    stats.sort_stats("tottime").print_stats(limit)
    out.write("\n== entries inside flask_access_cors, by cumulative time ==\n")
    stats.sort_stats("cumulative").print_stats("flask_access_cors", limit)
    return out.getvalue()
