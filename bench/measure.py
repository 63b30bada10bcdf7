"""Interleaved timing: runs of rounds of batches, round-robin over the variants.

One *run* is ``rounds`` rounds; in each round every variant of the scenario
serves one batch of requests, in an order that alternates (forwards, then
backwards) from round to round, so slow drifts of the machine (other
processes, frequency changes, a growing heap) hit every variant alike. A
variant's time in a run is the median of its batch means; its ratio in a run
is that time over its baseline's time *in the same run*. Reported: the median
over runs, and the min-max spread.

Two clocks are read around every batch: the wall clock and the process's CPU
time. The machine this runs on is shared (other jobs compete for its two
cores), so the CPU time is the primary measure by default; the wall-clock
ratio is reported next to it.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from .wsgi import Requests, WSGIApp, call, timed_batch

__all__ = ["BenchError", "Row", "Scenario", "Settings", "Target", "Variant", "run_scenario", "stats"]


class BenchError(Exception):
    """A scenario could not be measured (the app answered wrongly, or failed to build)."""


@dataclass(frozen=True)
class Target:
    """``ratio <= limit`` (or, with ``absolute_us``, ``median <= limit`` microseconds)."""

    limit: float
    text: str
    absolute_us: bool = False

    def met(self, ratio: float | None, median_us: float) -> bool | None:
        value = median_us if self.absolute_us else ratio
        return None if value is None else value <= self.limit


@dataclass
class Variant:
    """One app answering one kind of request."""

    key: str
    label: str
    library: str  # "bare", "flask-cors", "access-cors" or "harness"
    app: WSGIApp
    requests: Requests
    status: int
    #: Response headers that must be present / absent (checked before and after timing).
    present: tuple[str, ...] = ()
    absent: tuple[str, ...] = ()
    #: Key of the variant the ratio (and the target) is against; ``None``: the scenario's bare.
    baseline: str | None = None
    target: Target | None = None
    note: str = ""
    #: How many requests are distinct before the varying values repeat (``None``: no matter).
    distinct: int | None = None
    _next: int = field(default=0, repr=False)


@dataclass
class Scenario:
    key: str
    title: str
    description: str
    variants: list[Variant]
    bare: str  # key of the bare-Flask variant
    cleanup: Callable[[], None] | None = None


@dataclass(frozen=True)
class Settings:
    runs: int
    rounds: int
    batch_seconds: float
    warmup_seconds: float
    clock: str = "cpu"  # or "wall": which clock the medians and targets use


@dataclass
class Row:
    """One line of the results table."""

    scenario: str
    variant: str
    label: str
    library: str
    median_us: float | None
    min_us: float | None
    max_us: float | None
    ratio: float | None = None
    ratio_min: float | None = None
    ratio_max: float | None = None
    baseline: str | None = None
    ratio_bare: float | None = None
    target: str | None = None
    met: bool | None = None
    unit: str = "us"
    note: str = ""
    error: str | None = None
    #: The ratio by the other clock (wall when the primary is CPU time, and the reverse).
    other_ratio: float | None = None
    per_run_us: list[float] = field(default_factory=list)
    per_run_other_us: list[float] = field(default_factory=list)
    batch_size: int = 0


def stats(values: Sequence[float]) -> tuple[float, float, float]:
    """``(median, min, max)``."""
    return statistics.median(values), min(values), max(values)


def _check(variant: Variant) -> None:
    status, headers, body = call(variant.app, variant.requests(variant._next))
    variant._next += 1
    names = {name.lower() for name, _ in headers}
    problems = []
    if status != variant.status:
        problems.append(f"status {status}, expected {variant.status} (body {body[:120]!r})")
    problems += [f"missing header {h}" for h in variant.present if h.lower() not in names]
    problems += [f"unexpected header {h}" for h in variant.absent if h.lower() in names]
    if problems:
        raise BenchError(f"{variant.label}: " + "; ".join(problems))


def _calibrate(variant: Variant, settings: Settings) -> int:
    """Warm the variant up and choose a batch size worth ``batch_seconds``."""
    n, spent, per_request = 1, 0.0, 0.0
    deadline = time.perf_counter() + settings.warmup_seconds
    while True:
        wall, cpu = timed_batch(variant.app, variant.requests, variant._next, n)
        variant._next += n
        spent += wall / 1e9
        per_request = max(wall, cpu) / 1e9 / n
        if time.perf_counter() >= deadline or n >= 1 << 16:
            break
        n *= 2
    return max(1, min(1 << 16, round(settings.batch_seconds / per_request)))


def _ratios(values: Sequence[float], base: Sequence[float]) -> list[float]:
    return [a / b for a, b in zip(values, base, strict=True)]


def run_scenario(scenario: Scenario, settings: Settings) -> list[Row]:
    """Measure every variant; rows in the scenario's variant order."""
    variants = scenario.variants
    by_key = {v.key: v for v in variants}
    for v in variants:
        _check(v)
    sizes = {v.key: _calibrate(v, settings) for v in variants}
    primary_first = settings.clock == "cpu"
    per_run: dict[str, list[float]] = {v.key: [] for v in variants}
    per_run_other: dict[str, list[float]] = {v.key: [] for v in variants}
    flip = False
    for _run in range(settings.runs):
        gc.collect()
        batches: dict[str, list[tuple[float, float]]] = {v.key: [] for v in variants}
        for _round in range(settings.rounds):
            order = reversed(variants) if flip else iter(variants)
            flip = not flip
            for v in order:
                n = sizes[v.key]
                wall, cpu = timed_batch(v.app, v.requests, v._next, n)
                v._next += n
                primary, other = (cpu, wall) if primary_first else (wall, cpu)
                batches[v.key].append((primary / 1e3 / n, other / 1e3 / n))
        for key, means in batches.items():
            per_run[key].append(statistics.median(m[0] for m in means))
            per_run_other[key].append(statistics.median(m[1] for m in means))
    for v in variants:
        _check(v)

    rows = []
    for v in variants:
        if v.distinct is not None and v._next > v.distinct:
            v.note = (v.note + "; " if v.note else "") + (
                f"values repeated: {v._next:,} requests over {v.distinct:,} distinct values")
        median, low, high = stats(per_run[v.key])
        base_key = v.baseline or scenario.bare
        r_med, r_min, r_max = stats(_ratios(per_run[v.key], per_run[base_key]))
        by_other = statistics.median(_ratios(per_run_other[v.key], per_run_other[base_key]))
        ratio_bare = statistics.median(_ratios(per_run[v.key], per_run[scenario.bare]))
        rows.append(
            Row(
                scenario=scenario.key,
                variant=v.key,
                label=v.label,
                library=v.library,
                median_us=median,
                min_us=low,
                max_us=high,
                ratio=r_med,
                ratio_min=r_min,
                ratio_max=r_max,
                baseline=by_key[base_key].label if base_key != v.key else None,
                ratio_bare=ratio_bare,
                target=v.target.text if v.target else None,
                met=v.target.met(r_med, median) if v.target else None,
                note=v.note,
                other_ratio=by_other,
                per_run_us=[round(x, 3) for x in per_run[v.key]],
                per_run_other_us=[round(x, 3) for x in per_run_other[v.key]],
                batch_size=sizes[v.key],
            )
        )
    return rows
