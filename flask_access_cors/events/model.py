"""What a debug event is, and how attacker-controlled text becomes safe to show.

Every denial the extension makes can be recorded as an :class:`Event`.  Most of
an event's fields come straight from the request (method, path, ``Origin``,
client address, token subject), so they are attacker-controlled: they end up
in log lines, terminals (``flask access-cors events``) and JSON.  Everything
that crosses into an event therefore goes through :func:`escape` first, which
makes control characters visible and bounds the length.

This module is pure: no Flask, no I/O.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from types import MappingProxyType
from typing import Any

from ..reasons import CORS_PHRASES, GATE_PHRASES, RequestType

__all__ = [
    "CORS_REASONS",
    "FIELD_LIMITS",
    "GATE_REASONS",
    "REASONS",
    "REQUEST_TYPES",
    "Event",
    "describe",
    "escape",
    "parse_duration",
]

# -- reason codes -----------------------------------------------------------

#: Every stable reason code (SPEC section 6) mapped to its FusionAuth-style phrase.
REASONS: Mapping[str, str] = MappingProxyType({str(r): t for r, t in (CORS_PHRASES | GATE_PHRASES).items()})
CORS_REASONS: frozenset[str] = frozenset(CORS_PHRASES)
GATE_REASONS: frozenset[str] = frozenset(GATE_PHRASES)

#: How a request was classified (SPEC section 4) when it was denied.
REQUEST_TYPES = tuple(RequestType)

# -- escaping ---------------------------------------------------------------

#: Marks a value cut by :func:`escape`.  A literal U+2026 in the input is escaped
#: (``\u2026``), so a trailing marker always means "truncated".
TRUNCATION_MARK = "\u2026"

# Characters that are rewritten as visible escapes:
#   C0 controls and DEL (CR/LF/NUL/ESC/...), C1 controls (NEL, CSI, ...),
#   U+2028/U+2029 (line/paragraph separators: JavaScript and some viewers break lines there),
#   bidirectional formatting (U+061C, U+200E/F, U+202A-E, U+2066-9: "Trojan Source" reordering),
#   lone surrogates (cannot be encoded as UTF-8, so SQLite/Redis/JSON writers would fail),
#   the backslash (so every escape is unambiguous) and the truncation mark.
_SPECIAL = re.compile(
    "[\\x00-\\x1f\\x7f-\\x9f\\\\\u061c\u200e\u200f\u2026\u2028\u2029\u202a-\u202e"
    "\u2066-\u2069\ud800-\udfff]"
)


def _token(char: str) -> str:
    """The visible form of one character (itself unless it is special)."""
    if not _SPECIAL.match(char):
        return char
    if char == "\\":
        return "\\\\"
    code = ord(char)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}"  # every special character is in the BMP


def escape(value: str | None, limit: int = 200) -> str | None:
    """Return ``value`` made safe for one log line, or ``None`` for ``None``.

    Control characters (C0, DEL, C1), U+2028/U+2029, bidi formatting characters,
    lone surrogates, the backslash and U+2026 become ``\\xhh`` / ``\\uhhhh`` /
    ``\\\\`` escapes, so the result is unambiguous and can be decoded back.
    Other non-ASCII text is kept as is, to stay readable.

    At most ``limit`` characters of escaped text are kept; when something was
    cut, ``"…"`` is appended (so the result is at most ``limit + 1`` characters).
    An escape sequence is never cut in half.  Only the first ``limit``
    characters of the input are ever looked at, so huge hostile values cost
    nothing extra.
    """
    if value is None:
        return None
    if limit < 0:
        raise ValueError(f"limit must be >= 0, not {limit}")
    head = value[:limit]
    if not _SPECIAL.search(head):  # the common case: at most a cut, no escape
        return head if len(value) <= limit else head + TRUNCATION_MARK
    out: list[str] = []
    used = 0
    for char in head if len(value) <= limit else value[: limit + 1]:
        token = _token(char)
        if used + len(token) > limit:
            return "".join(out) + TRUNCATION_MARK
        out.append(token)
        used += len(token)
    return "".join(out)


def describe(reason: str, request_type: str, detail: str | None) -> str:
    """Build the FusionAuth-style message of a denial.

    The message starts with a prefix chosen by the kind of reason and request:

    - a CORS reason on a ``preflight``: ``Invalid CORS pre-flight request.``
    - a CORS reason on an ``actual`` or ``malformed`` request: ``Invalid CORS request.``
    - a CORS reason on a ``not_cors`` / ``same_origin`` request: ``Invalid request.``
    - a gate reason on a ``preflight``: ``Access denied to CORS pre-flight request.``
    - a gate reason on an ``actual`` / ``malformed`` request: ``Access denied to CORS request.``
    - a gate reason on a ``not_cors`` / ``same_origin`` request: ``Access denied.``

    followed by the reason's phrase (:data:`REASONS`) and, when ``detail`` is
    given, a space and ``[detail]``.  ``detail`` is raw text: this function escapes it
    (``escape(detail)``), so callers never pass attacker text unescaped by mistake
    and never escape it twice.

    Raises :class:`ValueError` for an unknown reason or request type: both are
    closed vocabularies, and a typo would otherwise produce unsearchable events.
    """
    phrase = REASONS.get(reason)
    if phrase is None:
        raise ValueError(f"unknown reason code {reason!r}")
    if request_type not in REQUEST_TYPES:
        raise ValueError(f"unknown request type {request_type!r}")
    cors = request_type in ("preflight", "actual", "malformed")
    if reason in CORS_REASONS:
        if request_type == "preflight":
            prefix = "Invalid CORS pre-flight request."
        else:
            prefix = "Invalid CORS request." if cors else "Invalid request."
    elif request_type == "preflight":
        prefix = "Access denied to CORS pre-flight request."
    else:
        prefix = "Access denied to CORS request." if cors else "Access denied."
    message = f"{prefix} {phrase}"
    if detail is not None:
        message += f" [{escape(detail, FIELD_LIMITS['detail'])}]"
    return message


# -- the event --------------------------------------------------------------

#: How many (escaped) characters of each attacker-controlled field an event keeps.
#: Origins get room for the longest valid one (SPEC: 326 bytes); paths more than
#: the default so that long API paths stay searchable.
FIELD_LIMITS: Mapping[str, int] = MappingProxyType(
    {
        "method": 32,
        "path": 512,
        "origin": 400,
        "remote_addr": 64,
        "identity": 256,
        "policy": 256,
        "detail": 200,
        "request_id": 64,
    }
)

_OPTIONAL_TEXT = ("origin", "remote_addr", "identity")
_REQUIRED_TEXT = ("id", "reason", "message", "method", "path", "request_type", "policy")


@dataclass(frozen=True, slots=True)
class Event:
    """One denial (``count == 1``) or a summary of ``count`` suppressed repeats.

    Instances are immutable so that the same object can sit in the write queue,
    in a :class:`~flask_access_cors.events.MemoryStore` and in a caller's hands
    without anyone changing it under the others.  Build them with
    :meth:`create`, which escapes the request's values; the constructor takes
    fields as they are (used when reading back from a store).
    """

    id: str
    time: datetime
    status: int
    reason: str
    message: str
    method: str
    path: str
    origin: str | None
    request_type: str
    policy: str
    remote_addr: str | None
    identity: str | None
    count: int = 1
    #: The request's ``X-Request-ID`` or ``CF-Ray``: ties the event to access logs.
    request_id: str | None = None

    def __post_init__(self) -> None:
        if self.time.tzinfo is None or self.time.utcoffset() is None:
            raise ValueError("Event.time must be an aware datetime")
        if self.count < 1:
            raise ValueError(f"Event.count must be >= 1, not {self.count}")

    @classmethod
    def create(
        cls,
        *,
        status: int,
        reason: str,
        request_type: str,
        policy: str,
        method: str,
        path: str,
        origin: str | None,
        remote_addr: str | None,
        identity: str | None = None,
        detail: str | None = None,
        request_id: str | None = None,
    ) -> Event:
        """A new event for a denial happening now.

        Every request-derived value is passed through :func:`escape` with its
        :data:`FIELD_LIMITS` entry; ``detail`` only appears inside ``message``
        (see :func:`describe`).
        """
        if isinstance(status, bool) or not isinstance(status, int):
            raise ValueError(f"status must be an int, not {status!r}")
        message = describe(reason, request_type, detail)
        return cls(
            id=uuid.uuid4().hex,
            time=datetime.now(timezone.utc),
            status=status,
            reason=str(reason),  # a plain str, whatever enum it came as
            message=message,
            method=_escaped(method, "method"),
            path=_escaped(path, "path"),
            origin=escape(origin, FIELD_LIMITS["origin"]),
            request_type=str(request_type),
            policy=_escaped(policy, "policy"),
            remote_addr=escape(remote_addr, FIELD_LIMITS["remote_addr"]),
            identity=escape(identity, FIELD_LIMITS["identity"]),
            request_id=escape(request_id, FIELD_LIMITS["request_id"]),
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields; ``time`` as ISO 8601 in UTC (``...+00:00``)."""
        return {
            "id": self.id,
            "time": self.time.astimezone(timezone.utc).isoformat(),
            "status": self.status,
            "reason": self.reason,
            "message": self.message,
            "method": self.method,
            "path": self.path,
            "origin": self.origin,
            "request_type": self.request_type,
            "policy": self.policy,
            "remote_addr": self.remote_addr,
            "identity": self.identity,
            "count": self.count,
            "request_id": self.request_id,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Event:
        """Rebuild an event from :meth:`to_dict` output (e.g. read from Redis).

        Raises :class:`ValueError` when a field is missing or has the wrong type,
        so a corrupt record is reported instead of half-loaded.
        """
        try:
            fields = {name: data[name] for name in (*_REQUIRED_TEXT, *_OPTIONAL_TEXT)}
            fields["request_id"] = data.get("request_id")  # absent in records of 0.1
            raw_time, status, count = data["time"], data["status"], data.get("count", 1)
        except KeyError as exc:
            raise ValueError(f"event record lacks field {exc.args[0]!r}") from None
        for name in _REQUIRED_TEXT:
            if not isinstance(fields[name], str):
                raise ValueError(f"event field {name!r} must be a string")
        for name in (*_OPTIONAL_TEXT, "request_id"):
            if fields[name] is not None and not isinstance(fields[name], str):
                raise ValueError(f"event field {name!r} must be a string or null")
        for name, number in (("status", status), ("count", count)):
            if isinstance(number, bool) or not isinstance(number, int):
                raise ValueError(f"event field {name!r} must be an integer")
        if isinstance(raw_time, datetime):
            when = raw_time
        elif isinstance(raw_time, str):
            when = datetime.fromisoformat(raw_time)  # ValueError when malformed
        else:
            raise ValueError("event field 'time' must be an ISO 8601 string")
        if when.tzinfo is None:
            raise ValueError("event field 'time' must carry a UTC offset")
        return cls(
            time=when.astimezone(timezone.utc), status=status, count=count, **fields
        )


def _escaped(value: str, field: str) -> str:
    """Escape a field that is never ``None``."""
    result = escape(value, FIELD_LIMITS[field])
    assert result is not None
    return result


_DURATION = re.compile(r"(\d+)([smhd])\Z")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_duration(value: str) -> timedelta:
    """``30s``, ``10m``, ``2h`` or ``7d``; :class:`ValueError` otherwise."""
    match = _DURATION.match(value.strip())
    if not match:
        raise ValueError(f"{value!r} is not a duration like 30s, 10m, 2h or 7d")
    try:
        return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    except OverflowError:
        raise ValueError(f"{value!r} is longer than any log can be") from None
