"""The stable vocabulary of a decision: reason codes, request types, a denial.

The bottom of the package: it imports nothing of it, so every other module can
use these names. Each enum's values are the stable strings of SPEC section 6,
and members are ``str`` themselves, so events, JSON and comparisons with plain
strings keep working; a typo in a member name is an import-time error.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

__all__ = ["CORS_PHRASES", "GATE_PHRASES", "Denial", "Reason", "RequestType", "TokenError"]


class _Code(str, Enum):
    """A ``str`` whose ``str()`` and ``format()`` are its value on every Python >= 3.10."""

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return str(self.value).__format__(spec)


class Reason(_Code):
    """Why a request was refused (stable codes)."""

    ORIGIN_NOT_ALLOWED = "origin_not_allowed"
    ORIGIN_MALFORMED = "origin_malformed"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    HEADER_NOT_ALLOWED = "header_not_allowed"
    REQUEST_HEADERS_MALFORMED = "request_headers_malformed"
    PRIVATE_NETWORK_NOT_ALLOWED = "private_network_not_allowed"
    CORS_DISABLED = "cors_disabled"
    EXCLUDED_PATH = "excluded_path"
    TOKEN_MISSING = "token_missing"
    TOKEN_MALFORMED = "token_malformed"
    TOKEN_INVALID = "token_invalid"
    TOKEN_EXPIRED = "token_expired"
    TOKEN_NOT_YET_VALID = "token_not_yet_valid"
    AUDIENCE_MISMATCH = "audience_mismatch"
    ISSUER_MISMATCH = "issuer_mismatch"
    KEY_UNKNOWN = "key_unknown"
    KEY_UNAVAILABLE = "key_unavailable"
    SERVICE_TOKEN_INVALID = "service_token_invalid"
    ACCESS_DENIED = "access_denied"


class RequestType(_Code):
    """How a request was classified (Tomcat's ``CorsFilter`` classes)."""

    PREFLIGHT = "preflight"
    ACTUAL = "actual"
    NOT_CORS = "not_cors"
    SAME_ORIGIN = "same_origin"
    MALFORMED = "malformed"


#: Denials of the CORS layer, with their FusionAuth-style phrases.
CORS_PHRASES: dict[Reason, str] = {
    Reason.ORIGIN_NOT_ALLOWED: "Origin not allowed.",
    Reason.ORIGIN_MALFORMED: "Origin malformed.",
    Reason.METHOD_NOT_ALLOWED: "Method not allowed.",
    Reason.HEADER_NOT_ALLOWED: "Header not allowed.",
    Reason.REQUEST_HEADERS_MALFORMED: "Request headers malformed.",
    Reason.PRIVATE_NETWORK_NOT_ALLOWED: "Private network access not allowed.",
    Reason.CORS_DISABLED: "CORS disabled.",
    Reason.EXCLUDED_PATH: "Path excluded from CORS.",
}

#: Denials of the access gate: the caller is not (or not sufficiently) authenticated.
GATE_PHRASES: dict[Reason, str] = {
    Reason.TOKEN_MISSING: "Access token missing.",
    Reason.TOKEN_MALFORMED: "Access token malformed.",
    Reason.TOKEN_INVALID: "Access token invalid.",
    Reason.TOKEN_EXPIRED: "Access token expired.",
    Reason.TOKEN_NOT_YET_VALID: "Access token not yet valid.",
    Reason.AUDIENCE_MISMATCH: "Access token audience mismatch.",
    Reason.ISSUER_MISMATCH: "Access token issuer mismatch.",
    Reason.KEY_UNKNOWN: "Access token signing key unknown.",
    Reason.KEY_UNAVAILABLE: "Signing keys unavailable.",
    Reason.SERVICE_TOKEN_INVALID: "Service token invalid.",
    Reason.ACCESS_DENIED: "Identity not allowed by policy.",
}


@dataclass(frozen=True, slots=True)
class Denial:
    """Why a request is refused; ``detail`` is the offending (raw) value, escaped later."""

    reason: Reason
    detail: str | None = None
    status: int = 403


#: Every reason a token can be refused for: the gate's reasons but ``access_denied``,
#: which is a rule's verdict on a verified identity, not a token's.
_TOKEN_REASONS = frozenset(GATE_PHRASES) - {Reason.ACCESS_DENIED}


class TokenError(Exception):
    """A token could not be accepted. ``reason`` is a stable code.

    ``detail`` is short text for the server-side debug log. It never holds a
    secret or the raw token, so ``str(error)`` is safe to log; the client only
    ever sees the HTTP status.
    """

    reason: Reason
    detail: str

    def __init__(self, reason: str, detail: str = "") -> None:
        if reason not in _TOKEN_REASONS:
            raise ValueError(f"unknown token error reason {reason!r}")
        super().__init__(reason, detail)
        self.reason = Reason(reason)
        self.detail = detail

    def __str__(self) -> str:
        return f"{self.reason}: {self.detail}" if self.detail else self.reason
