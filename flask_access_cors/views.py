"""An optional HTTP view of the event log, mounted by the user: JSON and a dashboard.

It always sits behind the gate with a ``require`` rule: an event log names
origins, paths and identities, so it is never public by accident.

The dashboard (``GET <url_prefix>/``) is rendered on the server from the
package's Jinja templates (``templates/access_cors/``); it loads nothing from
elsewhere and runs no script, and its ``Content-Security-Policy`` says so, so a
value that escaped escaping still could not run. Everything it shows is
computed here from one search of the log: the chart's buckets, the top origins
and paths (weighted by ``Event.count``, so a summary of suppressed repeats
counts as what it stands for).
"""

from __future__ import annotations

import logging
import secrets
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from flask import Blueprint, jsonify, render_template, request, url_for
from flask.typing import ResponseReturnValue

from .events import REASONS, Event, parse_duration
from .reasons import Reason
from .settings import ConfigError

if TYPE_CHECKING:
    from .extension import AccessCors

__all__ = ["REASON_COLORS", "events_blueprint"]

logger = logging.getLogger("flask_access_cors")

_MAX_LIMIT = 1000
#: The query parameters both views understand (those of :meth:`EventLog.search`).
_FILTERS = ("reason", "status", "path", "origin", "since", "limit")
#: The dashboard's window when ``since`` is not given.
_DEFAULT_WINDOW = "24h"
#: How many events of the window the chart and the top lists are computed from.
_SAMPLE = 5000
_BUCKETS = 24
_TOP = 10

#: One colour per reason code: CORS denials warm, gate denials cool.
REASON_COLORS: Mapping[str, str] = {  # Reason members are their stable strings
    Reason.ORIGIN_NOT_ALLOWED: "#d62728",
    Reason.ORIGIN_MALFORMED: "#ff9896",
    Reason.METHOD_NOT_ALLOWED: "#ff7f0e",
    Reason.HEADER_NOT_ALLOWED: "#ffbb78",
    Reason.REQUEST_HEADERS_MALFORMED: "#8c564b",
    Reason.PRIVATE_NETWORK_NOT_ALLOWED: "#c49c94",
    Reason.CORS_DISABLED: "#7f7f7f",
    Reason.EXCLUDED_PATH: "#bcbd22",
    Reason.TOKEN_MISSING: "#1f77b4",
    Reason.TOKEN_MALFORMED: "#aec7e8",
    Reason.TOKEN_INVALID: "#17becf",
    Reason.TOKEN_EXPIRED: "#9edae5",
    Reason.TOKEN_NOT_YET_VALID: "#2ca02c",
    Reason.AUDIENCE_MISMATCH: "#98df8a",
    Reason.ISSUER_MISMATCH: "#9467bd",
    Reason.KEY_UNKNOWN: "#c5b0d5",
    Reason.KEY_UNAVAILABLE: "#e377c2",
    Reason.SERVICE_TOKEN_INVALID: "#f7b6d2",
    Reason.ACCESS_DENIED: "#393b79",
}
_OTHER_COLOR = "#c7c7c7"


# -- query parameters ---------------------------------------------------------------------


@dataclass(frozen=True)
class _Query:
    """Validated filters, ready for :meth:`EventLog.search`."""

    reason: str | None = None
    status: int | None = None
    path: str | None = None
    origin: str | None = None
    since: datetime | timedelta | None = None
    limit: int = 100

    def search_filters(self) -> dict[str, Any]:
        return {"reason": self.reason, "status": self.status, "path": self.path,
                "origin": self.origin}


def _since(value: str) -> datetime | timedelta:
    if value[-1:].isdigit():
        parsed = datetime.fromisoformat(value)
        if parsed.tzinfo is None:
            raise ValueError("since must carry a time zone, e.g. 2026-01-01T00:00:00+00:00")
        return parsed
    return parse_duration(value)


def _parse(args: Mapping[str, str]) -> _Query:
    """The filters of both views; :class:`ValueError` with a message for the caller."""
    status = int(args["status"]) if "status" in args else None
    if status is not None and not 100 <= status <= 599:
        raise ValueError("status must be an HTTP status code")
    limit = int(args.get("limit", "100"))
    if not 1 <= limit <= _MAX_LIMIT:
        raise ValueError(f"limit must be within 1..{_MAX_LIMIT}")
    reason = args.get("reason")
    if reason is not None and reason not in REASONS:
        raise ValueError(f"unknown reason code {reason!r}")
    since = _since(args["since"]) if "since" in args else None
    return _Query(reason=reason, status=status, path=args.get("path"),
                  origin=args.get("origin"), since=since, limit=limit)


# -- the chart ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bar:
    """One reason's part of one bucket: an SVG ``rect``."""

    bucket: int
    reason: str
    count: int
    x: str
    y: str
    width: str
    height: str
    color: str
    title: str


@dataclass(frozen=True)
class Tick:
    """An axis label: where, and what it says."""

    x: str
    y: str
    text: str
    anchor: str = "end"


@dataclass(frozen=True)
class LegendItem:
    reason: str
    color: str
    total: int


@dataclass(frozen=True)
class Chart:
    """Denials over a window, stacked by reason, laid out for an inline SVG."""

    width: int
    height: int
    left: int
    top: int
    plot_width: int
    plot_height: int
    bars: list[Bar]
    y_ticks: list[Tick]
    x_ticks: list[Tick]
    legend: list[LegendItem]
    total: int
    bucket_label: str
    gridlines: list[str] = field(default_factory=list)


def _nice_ceiling(value: int) -> int:
    """The smallest of 1, 2, 5, 10, 20, 50, ... at least ``value``."""
    scale = 1
    while True:
        for step in (1, 2, 5):
            if step * scale >= value:
                return step * scale
        scale *= 10


def _duration_text(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            amount = seconds / size
            return f"{amount:.0f} {unit}" if amount == int(amount) else f"{amount:.1f} {unit}"
    return f"{seconds:.0f} s"


def _time_text(when: datetime, span: float) -> str:
    return f"{when:%H:%M}" if span <= 86400 * 2 else f"{when:%m-%d %H:%M}"


def build_chart(events: Iterable[Event], start: datetime, end: datetime,
                buckets: int = _BUCKETS) -> Chart:
    """``buckets`` equal slices of ``start``..``end``, each stacked by reason.

    Counts are weighted by ``Event.count``. Events before ``start`` are left out;
    events stamped after ``end`` (another host's clock) go into the last bucket.
    The tallest reason overall is drawn at the bottom of every stack.
    """
    width, height, left, right, top, bottom = 1000, 240, 44, 12, 12, 34
    plot_w, plot_h = width - left - right, height - top - bottom
    span = max((end - start).total_seconds(), float(buckets))
    step = span / buckets
    counts: dict[str, list[int]] = {}
    for event in events:
        offset = (event.time - start).total_seconds()
        if offset < 0:
            continue
        index = min(int(offset // step), buckets - 1)
        counts.setdefault(event.reason, [0] * buckets)[index] += event.count
    totals = {reason: sum(row) for reason, row in counts.items()}
    order = sorted(counts, key=lambda r: (-totals[r], r))
    peak = max((sum(counts[r][i] for r in order) for i in range(buckets)), default=0)
    ceiling = _nice_ceiling(max(peak, 1))
    slot = plot_w / buckets
    bars: list[Bar] = []
    for index in range(buckets):
        base = 0
        bucket_start = start + timedelta(seconds=step * index)
        bucket_end = start + timedelta(seconds=step * (index + 1))
        for reason in order:
            count = counts[reason][index]
            if not count:
                continue
            y0 = top + plot_h - base * plot_h / ceiling
            y1 = top + plot_h - (base + count) * plot_h / ceiling
            base += count
            bars.append(Bar(
                bucket=index, reason=reason, count=count,
                x=f"{left + index * slot + 1:.1f}", y=f"{y1:.1f}",
                width=f"{max(slot - 2, 1):.1f}", height=f"{y0 - y1:.1f}",
                color=REASON_COLORS.get(reason, _OTHER_COLOR),
                title=(f"{reason}: {count} between {bucket_start:%Y-%m-%d %H:%M:%S} and "
                       f"{bucket_end:%H:%M:%S} UTC"),
            ))
    values = [0, ceiling] if ceiling % 2 else [0, ceiling // 2, ceiling]
    y_ticks = [Tick(x=str(left - 6), y=f"{top + plot_h - v * plot_h / ceiling + 4:.1f}", text=str(v))
               for v in values]
    gridlines = [f"{top + plot_h - v * plot_h / ceiling:.1f}" for v in values]
    x_ticks = [
        Tick(x=f"{left + plot_w * fraction:.1f}", y=str(height - 12),
             text=_time_text(start + timedelta(seconds=span * fraction), span), anchor=anchor)
        for fraction, anchor in ((0.0, "start"), (0.5, "middle"), (1.0, "end"))
    ]
    legend = [LegendItem(r, REASON_COLORS.get(r, _OTHER_COLOR), totals[r]) for r in order]
    return Chart(width=width, height=height, left=left, top=top, plot_width=plot_w,
                 plot_height=plot_h, bars=bars, y_ticks=y_ticks, x_ticks=x_ticks,
                 legend=legend, total=sum(totals.values()),
                 bucket_label=_duration_text(step), gridlines=gridlines)


def _top(events: Sequence[Event], key: str) -> list[tuple[str | None, int]]:
    """The ``_TOP`` most frequent values of ``key``, weighted by ``count``."""
    counter: Counter[str | None] = Counter()
    for event in events:
        counter[getattr(event, key)] += event.count
    return sorted(counter.items(), key=lambda item: (-item[1], item[0] or ""))[:_TOP]


# -- the blueprint --------------------------------------------------------------------------


def _page_headers(nonce: str) -> dict[str, str]:
    """Nothing but the page itself: its own nonce'd ``<style>``, forms back to itself."""
    return {
        "Content-Security-Policy": (
            f"default-src 'none'; style-src 'nonce-{nonce}'; img-src data:; "
            "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
        ),
        "Cache-Control": "no-store",
        "Referrer-Policy": "no-referrer",
        "X-Content-Type-Options": "nosniff",
    }


def events_blueprint(access: AccessCors, *, require: Any, name: str = "access_cors_events",
                     url_prefix: str = "/_access-cors", **settings: Any) -> Blueprint:
    """A blueprint serving the event log behind ``require``: ``GET <url_prefix>/events``
    as JSON, and ``GET <url_prefix>/`` as an HTML dashboard.

    Query parameters (both views) are those of :meth:`EventLog.search`:
    ``reason``, ``status``, ``path`` (a glob), ``origin``, ``since`` (``10m``
    or an ISO 8601 time with its zone) and ``limit`` (1..1000). The dashboard
    shows the last 24 hours when ``since`` is not given, and ignores empty
    parameters (its form sends every field).
    """
    if not require:
        raise ConfigError([(
            "invalid_value",
            "events_blueprint needs a require rule: the event log is never public",
        )])
    bp = Blueprint(name, __name__, url_prefix=url_prefix, template_folder="templates")
    access.blueprint(bp, require=require, **settings)

    @bp.get("/events")
    def events() -> ResponseReturnValue:
        try:
            query = _parse(request.args)
            found = access.events.search(**query.search_filters(), since=query.since,
                                         limit=query.limit)
        except (ValueError, OverflowError) as exc:
            return jsonify(error="bad_request", message=str(exc)), 400
        return jsonify(events=[event.to_dict() for event in found], dropped=access.events.dropped)

    @bp.get("/")
    def dashboard() -> ResponseReturnValue:
        given: dict[str, Any] = {k: v for k, v in request.args.items() if k in _FILTERS and v != ""}
        nonce = secrets.token_urlsafe(18)
        shown = {"since": _DEFAULT_WINDOW, **given}
        context: dict[str, Any] = {
            "nonce": nonce, "form": shown, "reasons": sorted(REASONS), "error": None, "status": 400,
            "json_url": url_for(".events", **given),
        }
        try:
            query = _parse(shown)
            end = datetime.now(timezone.utc)
            since = query.since or parse_duration(_DEFAULT_WINDOW)
            start = (end - since if isinstance(since, timedelta) else since).astimezone(timezone.utc)
            sample = access.events.search(**query.search_filters(), since=start, limit=_SAMPLE)
        except (ValueError, OverflowError) as exc:
            context.update(error=str(exc), dropped=access.events.dropped)
            html = render_template("access_cors/dashboard.html", **context)
            return html, 400, _page_headers(nonce)
        except Exception as exc:  # the store is down: say so on the page, details in the log
            logger.exception("flask-access-cors: the dashboard could not read the event store")
            context.update(error=f"the event store could not be read ({type(exc).__name__}); "
                                 "see the server log", dropped=access.events.dropped, status=503)
            html = render_template("access_cors/dashboard.html", **context)
            return html, 503, _page_headers(nonce)

        def link(**change: str) -> str:
            return url_for(".dashboard", **{**given, **change})

        context.update(
            dropped=access.events.dropped,
            start=start, end=end, events=sample[:query.limit], sampled=len(sample),
            capped=len(sample) >= _SAMPLE, sample_size=_SAMPLE,
            chart=build_chart(sample, start, end),
            top_origins=[(o, n, link(origin=o) if o is not None else None)
                         for o, n in _top(sample, "origin")],
            top_paths=[(p, n, link(path=p) if p is not None else None)
                       for p, n in _top(sample, "path")],
            reason_link={r: link(reason=r) for r in REASONS},
        )
        return render_template("access_cors/dashboard.html", **context), 200, _page_headers(nonce)

    return bp
