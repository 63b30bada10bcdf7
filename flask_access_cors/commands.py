"""The ``flask access-cors`` command group: ``events``, ``check`` and ``routes``.

Registered for the ``flask`` command through the ``flask.commands`` entry point
(and on each app's ``app.cli``, for ``app.test_cli_runner()``). It reads the
app's compiled state from ``app.extensions`` and imports nothing of the Flask
layer, so the module graph has no cycle.
"""

from __future__ import annotations

import json
import time
from collections.abc import Collection, Mapping
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import click
from flask import current_app, request
from flask.cli import with_appcontext
from werkzeug.exceptions import HTTPException, SecurityError
from werkzeug.routing import RequestRedirect

from .events import parse_duration

if TYPE_CHECKING:
    from .events import Event, WorkerStatus
    from .extension import _State
    from .policy import Policy
    from .settings import Rule

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
        f"count={event.count} request_id={event.request_id or '-'}\n    {event.message}"
    )


def _print_workers(found: list[WorkerStatus], as_json: bool) -> None:
    """One line per worker; one that never closed and had denials pending lost them."""
    for worker in found:
        if as_json:
            click.echo(json.dumps(worker.to_dict(), sort_keys=True))
            continue
        lost = not worker.closed and worker.pending > 0
        note = f"  LOST {worker.pending} if it no longer runs" if lost else ""
        click.echo(
            f"{worker.host} pid={worker.pid} started={worker.started:%Y-%m-%d %H:%M:%S} "
            f"last_flush={worker.last_flush:%Y-%m-%d %H:%M:%S} recorded={worker.recorded} "
            f"written={worker.written} dropped={worker.dropped} pending={worker.pending} "
            f"closed={'yes' if worker.closed else 'no'}{note}"
        )
    if not found and not as_json:
        click.echo("no worker heartbeats (nothing recorded yet, or a store without them)", err=True)


@cli.command("events")
@click.option("--reason", help="Only this reason code.")
@click.option("--status", type=int, help="Only this status.")
@click.option("--path", help="Only paths matching this glob (/api/*).")
@click.option("--origin", help="Only this origin.")
@click.option("--since", "since_text", help="Only events newer than this (30s, 10m, 2h, 7d).")
@click.option("--limit", type=click.IntRange(1, 100_000), default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.option("--follow", is_flag=True, help="Keep printing new events (Ctrl-C to stop).")
@click.option("--workers", is_flag=True,
              help="Each worker process's last heartbeat instead: a gap in the accounting shows.")
@with_appcontext
def events_command(reason: str | None, status: int | None, path: str | None,
                   origin: str | None, since_text: str | None, limit: int, as_json: bool,
                   follow: bool, workers: bool) -> None:
    """Read the debug event log, newest first (oldest first with --follow)."""
    if workers:
        _print_workers(_state().events.workers(), as_json)
        return
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


def _default_host(config: Mapping[str, Any]) -> tuple[str, str]:
    """The host a request is built for when ``--host`` is not given, and where it came from."""
    server_name = config.get("SERVER_NAME")
    if server_name:
        return str(server_name), "SERVER_NAME"
    for entry in config.get("TRUSTED_HOSTS") or ():
        # Werkzeug's wildcard is a leading dot (".example.com": every subdomain)
        if isinstance(entry, str) and entry and not entry.startswith(".") and "*" not in entry:
            return entry, "the first TRUSTED_HOSTS entry"
    return "localhost", "the default; set SERVER_NAME or pass --host"


def _base_url(host: str, config: Mapping[str, Any]) -> str:
    """``SCHEME://HOST[:PORT]/APPLICATION_ROOT`` for ``HOST[:PORT]`` or ``SCHEME://HOST[:PORT]``."""
    scheme, sep, netloc = host.partition("://")
    if not sep:
        scheme, netloc = str(config.get("PREFERRED_URL_SCHEME") or "http"), host
    if scheme not in ("http", "https") or not netloc or any(
            c in netloc for c in "/?#@ \t\r\n"):
        raise click.BadParameter(
            f"{host!r} is not HOST[:PORT] or http(s)://HOST[:PORT]", param_hint="--host")
    root = str(config.get("APPLICATION_ROOT") or "/").lstrip("/")
    return f"{scheme}://{netloc}/{root}"


def _routing(exc: HTTPException) -> str:
    """Why routing failed, for the ``routing:`` line."""
    text = f"{exc.code} {exc.name}"
    if isinstance(exc, RequestRedirect):
        text += f" to {exc.new_url}"
    return f"{text} \N{EM DASH} the fallback policy decides"


@cli.command("check")
@click.argument("method")
@click.argument("path")
@click.option("--origin", required=True, help="The Origin header the request carries.")
@click.option("-H", "--header", "headers", multiple=True, help="'Name: value', repeatable.")
@click.option("--preflight", is_flag=True,
              help="Ask about the preflight for METHOD (with the -H names as requested headers).")
@click.option("--host", help="The host the request is for: HOST[:PORT] or https://HOST[:PORT] "
              "(default: SERVER_NAME, else the first TRUSTED_HOSTS entry that is not a "
              "wildcard, else localhost).")
@with_appcontext
def check_command(method: str, path: str, origin: str, headers: tuple[str, ...],
                  preflight: bool, host: str | None) -> None:
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
    source = "--host"
    if host is None:
        host, source = _default_host(app.config)
    base_url = _base_url(host, app.config)
    with app.test_request_context(path, base_url=base_url, method=request_method,
                                  headers=environ_headers):
        req = request._get_current_object()  # type: ignore[attr-defined]
        # not req.url: reading req.host raises for an untrusted host
        url = f"{req.scheme}://{req.environ.get('HTTP_HOST', '')}{req.root_path}{req.full_path}"
        click.echo(f"request: {request_method} {url.rstrip('?')} (host: {source})")
        routing = req.routing_exception
        if isinstance(routing, SecurityError):
            untrusted = req.environ.get("HTTP_HOST")
            click.echo(f"routing: {routing.code} {routing.name} \N{EM DASH} the host "
                       f"{untrusted!r} is not in TRUSTED_HOSTS")
            click.echo("outcome: denied by Flask: 400 before anything else runs (neither "
                       "flask-access-cors nor the view sees the request); check --host and "
                       "TRUSTED_HOSTS")
            return
        if routing is None:
            rule = req.url_rule
            click.echo(f"routing: endpoint {rule.endpoint} (rule {rule.rule})")
        else:
            click.echo(f"routing: {_routing(routing)}")
        outcome = state.decision(req)
        if outcome is None:
            click.echo("outcome: untouched (exempt view, or excluded path without CORS)")
            return
        if outcome.status == 0 and routing is not None:
            verdict = f"allowed by the policy; then Flask answers {routing.code} {routing.name}"
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


def _require_text(rule: Rule | None) -> str:
    """A short description of a ``require`` rule: who may pass."""
    if rule is None:
        return "-"
    if rule.check is not None:
        name = getattr(rule.check, "__qualname__", None) or type(rule.check).__name__
        return f"callable({name})"
    parts = [f"{label}({','.join(sorted(values))})" for label, values in (
        ("emails", rule.emails), ("domains", rule.email_domains), ("groups", rule.groups),
        ("service_tokens", rule.service_tokens)) if values]
    return " ".join(parts) or "-"


def _describe(policy: Policy, route_methods: Collection[str]) -> dict[str, str]:
    s = policy.settings
    origins = s["origins"]
    if origins.any:
        text = "*"
    else:
        text = ", ".join(p.text for p in origins.patterns) or "-"
        if origins.callables:
            text += " +callable"
    allowed = policy.methods
    cors_methods = [m for m in sorted(route_methods)
                    if m in allowed or (m == "HEAD" and "GET" in allowed)]
    headers = sorted(policy.allow_headers)
    if policy.allow_any_header:
        headers.insert(0, "*")
    return {
        "origins": text,
        "cors_methods": ",".join(cors_methods) or "-",
        "headers": ",".join(headers) or "-",
        "credentials": "yes" if policy.credentials else "no",
        "gate": "require" if policy.require else ("yes" if policy.gate else "no"),
        "require": _require_text(policy.require),
        "audience": ",".join(sorted(policy.audience)) if policy.audience is not None else "-",
        "debug": "yes" if policy.debug else "no",
        "preflight": policy.preflight,
    }


@cli.command("routes")
@with_appcontext
def routes_command() -> None:
    """Every route with its own methods and its effective policy."""
    state = _state()
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        methods = ",".join(sorted(rule.methods or ()))
        policy = state.router.policy_for(rule.endpoint)
        if policy is None:
            click.echo(f"{rule.rule}  endpoint={rule.endpoint}  methods={methods}  exempt")
            continue
        excluded = "yes" if policy.is_excluded(rule.rule) else "no"
        info = _describe(policy, rule.methods or ())
        fields = "  ".join(f"{k}={v}" for k, v in info.items())
        click.echo(
            f"{rule.rule}  endpoint={rule.endpoint}  methods={methods}  policy={policy.name}  "
            f"{fields}  excluded={excluded}"
        )
