"""The ``flask access-cors`` command group: ``events``, ``check`` and ``routes``.

Registered for the ``flask`` command through the ``flask.commands`` entry point
(and on each app's ``app.cli``, for ``app.test_cli_runner()``). It reads the
app's compiled state from ``app.extensions`` and imports nothing of the Flask
layer, so the module graph has no cycle.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import click
from flask import current_app, request
from flask.cli import with_appcontext

from .events import parse_duration

if TYPE_CHECKING:
    from .events import Event
    from .extension import _State
    from .policy import Policy

__all__ = ["cli"]

_FOLLOW_GRACE = timedelta(seconds=30)


def _state() -> _State:
    state: _State | None = current_app.extensions.get("access_cors")
    if state is None:
        raise click.UsageError("this app does not use flask-access-cors (init_app was not called)")
    return state


@click.group("access-cors")
def cli() -> None:
    """Inspect flask-access-cors: the event log, decisions and policies."""


def _print_event(event: Event, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(event.to_dict(), sort_keys=True))
        return
    origin = event.origin or "-"
    click.echo(
        f"{event.time:%Y-%m-%d %H:%M:%S} {event.status} {event.reason:<26} "
        f"{event.method} {event.path} origin={origin} policy={event.policy} "
        f"count={event.count}\n    {event.message}"
    )


@cli.command("events")
@click.option("--reason", help="Only this reason code.")
@click.option("--status", type=int, help="Only this status.")
@click.option("--path", help="Only paths matching this glob (/api/*).")
@click.option("--origin", help="Only this origin.")
@click.option("--since", "since_text", help="Only events newer than this (30s, 10m, 2h, 7d).")
@click.option("--limit", type=click.IntRange(1, 100_000), default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.option("--follow", is_flag=True, help="Keep printing new events (Ctrl-C to stop).")
@with_appcontext
def events_command(reason: str | None, status: int | None, path: str | None,
                   origin: str | None, since_text: str | None, limit: int, as_json: bool,
                   follow: bool) -> None:
    """Read the debug event log, newest first (oldest first with --follow)."""
    try:
        since: Any = parse_duration(since_text) if since_text else None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--since") from None
    log = _state().events
    filters: dict[str, Any] = {"reason": reason, "status": status, "path": path, "origin": origin}
    try:
        found = log.search(**filters, since=since, limit=limit)
    except (ValueError, OverflowError) as exc:
        raise click.UsageError(str(exc)) from None
    if follow:
        found.reverse()
    for event in found:
        _print_event(event, as_json)
    if not follow:
        if not found and not as_json:
            click.echo("no events", err=True)
        return
    # Events reach the store late and out of time order (other workers' writers, the
    # summaries of suppressed repeats): look back a grace period and skip what was shown.
    seen = {e.id: e.time for e in found}
    try:
        while True:
            time.sleep(1.0)
            window = datetime.now(timezone.utc) - _FOLLOW_GRACE
            if since_text is not None:
                window = max(window, datetime.now(timezone.utc) - since)
            fresh = log.search(**filters, since=window, limit=limit)
            for event in reversed(fresh):
                if event.id not in seen:
                    seen[event.id] = event.time
                    _print_event(event, as_json)
            seen = {i: t for i, t in seen.items() if t >= window - _FOLLOW_GRACE}
    except KeyboardInterrupt:
        return


@cli.command("check")
@click.argument("method")
@click.argument("path")
@click.option("--origin", required=True, help="The Origin header the request carries.")
@click.option("-H", "--header", "headers", multiple=True, help="'Name: value', repeatable.")
@click.option("--preflight", is_flag=True,
              help="Ask about the preflight for METHOD (with the -H names as requested headers).")
@with_appcontext
def check_command(method: str, path: str, origin: str, headers: tuple[str, ...],
                  preflight: bool) -> None:
    """What would happen to this request, and why. The view does not run; nothing is logged."""
    parsed: list[tuple[str, str]] = []
    for item in headers:
        name, sep, value = item.partition(":")
        if not sep or not name.strip():
            raise click.BadParameter(f"{item!r} is not 'Name: value'", param_hint="-H")
        parsed.append((name.strip(), value.strip()))
    environ_headers = [("Origin", origin)]
    if preflight:
        request_method = "OPTIONS"
        environ_headers.append(("Access-Control-Request-Method", method))
        names = ",".join(sorted({n.lower() for n, _ in parsed}))
        if names:
            environ_headers.append(("Access-Control-Request-Headers", names))
    else:
        request_method = method.upper()
        environ_headers += parsed
    state = _state()
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    with app.test_request_context(path, method=request_method, headers=environ_headers):
        outcome = state.decision(request._get_current_object())  # type: ignore[attr-defined]
        if outcome is None:
            click.echo("outcome: untouched (exempt view, or excluded path without CORS)")
            return
        routing = request.routing_exception
        if outcome.status == 0 and routing is not None:
            code = getattr(routing, "code", None)
            verdict = f"allowed by the policy; routing answers {code} (fallback policy)"
        elif outcome.status == 0:
            verdict = "allowed: the view runs"
        elif outcome.status == 204:
            verdict = "allowed: preflight answered 204"
        elif outcome.status == 302:
            verdict = "denied: 302 redirect to login"
        else:
            verdict = f"denied: {outcome.status}"
        click.echo(f"outcome: {verdict}")
        click.echo(f"request type: {outcome.request_type}")
        click.echo(f"policy: {outcome.policy.name}")
        click.echo(f"reason: {outcome.reason or '-'}")
        for name, value in outcome.headers:
            click.echo(f"  {name}: {value}")


def _describe(policy: Policy) -> dict[str, str]:
    s = policy.settings
    origins = s["origins"]
    if origins.any:
        text = "*"
    else:
        text = ", ".join(p.text for p in origins.patterns) or "-"
        if origins.callables:
            text += " +callable"
    return {
        "origins": text,
        "methods": ",".join(sorted(policy.methods)),
        "credentials": "yes" if policy.credentials else "no",
        "gate": "require" if policy.require else ("yes" if policy.gate else "no"),
        "debug": "yes" if policy.debug else "no",
        "preflight": policy.preflight,
    }


@cli.command("routes")
@with_appcontext
def routes_command() -> None:
    """Every route with its effective policy."""
    state = _state()
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        policy = state.policy_for(rule.endpoint)
        if policy is None:
            click.echo(f"{rule.rule}  endpoint={rule.endpoint}  exempt")
            continue
        excluded = "yes" if policy.is_excluded(rule.rule) else "no"
        info = _describe(policy)
        fields = "  ".join(f"{k}={v}" for k, v in info.items())
        click.echo(
            f"{rule.rule}  endpoint={rule.endpoint}  policy={policy.name}  {fields}  "
            f"excluded={excluded}"
        )
