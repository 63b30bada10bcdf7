"""An optional HTTP view of the event log, mounted by the user.

It always sits behind the gate with a ``require`` rule: an event log names
origins, paths and identities, so it is never public by accident.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from flask import Blueprint, jsonify, request
from flask.typing import ResponseReturnValue

from .events import parse_duration
from .settings import ConfigError

if TYPE_CHECKING:
    from .extension import AccessCors

__all__ = ["events_blueprint"]

_MAX_LIMIT = 1000


def _since(value: str) -> datetime | timedelta:
    if value[-1:].isdigit():
        parsed = datetime.fromisoformat(value)
        if parsed.tzinfo is None:
            raise ValueError("since must carry a time zone, e.g. 2026-01-01T00:00:00+00:00")
        return parsed
    return parse_duration(value)


def events_blueprint(access: AccessCors, *, require: Any, name: str = "access_cors_events",
                     url_prefix: str = "/_access-cors", **settings: Any) -> Blueprint:
    """A blueprint serving ``GET <url_prefix>/events`` as JSON, behind ``require``.

    Query parameters are those of :meth:`EventLog.search`: ``reason``,
    ``status``, ``path`` (a glob), ``origin``, ``since`` (``10m`` or an ISO
    8601 time with its zone) and ``limit`` (1..1000).
    """
    if not require:
        raise ConfigError([(
            "invalid_value",
            "events_blueprint needs a require rule: the event log is never public",
        )])
    bp = Blueprint(name, __name__, url_prefix=url_prefix)
    access.blueprint(bp, require=require, **settings)

    @bp.get("/events")
    def events() -> ResponseReturnValue:
        args = request.args
        try:
            status = int(args["status"]) if "status" in args else None
            if status is not None and not 100 <= status <= 599:
                raise ValueError("status must be an HTTP status code")
            limit = int(args.get("limit", "100"))
            if not 1 <= limit <= _MAX_LIMIT:
                raise ValueError(f"limit must be within 1..{_MAX_LIMIT}")
            since = _since(args["since"]) if "since" in args else None
            found = access.events.search(
                reason=args.get("reason"), status=status, path=args.get("path"),
                origin=args.get("origin"), since=since, limit=limit,
            )
        except (ValueError, OverflowError) as exc:
            return jsonify(error="bad_request", message=str(exc)), 400
        return jsonify(events=[event.to_dict() for event in found], dropped=access.events.dropped)

    return bp
