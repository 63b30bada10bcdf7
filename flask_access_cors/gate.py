"""The pure gate decision: who is calling, and may they pass.

Tokens are found and verified by :mod:`.tokens`; this module turns the result
into an identity or a denial with a stable reason and status, and applies a
:class:`~.settings.Rule`. Nothing here knows Flask.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from .cors import Denial
from .settings import Rule
from .tokens import (
    Identity,
    ServiceTokens,
    TokenError,
    TokenVerifier,
    identity_from_claims,
    locate_token,
)

__all__ = ["Gate", "authorize"]

logger = logging.getLogger("flask_access_cors")

CLIENT_ID = "HTTP_CF_ACCESS_CLIENT_ID"
CLIENT_SECRET = "HTTP_CF_ACCESS_CLIENT_SECRET"  # noqa: S105 - a header name, not a secret


def authorize(rule: Rule | None, identity: Identity) -> bool:
    """Does ``identity`` match any value of ``rule`` (a Cloudflare "Include" rule)?"""
    if rule is None:
        return True
    if rule.check is not None:
        try:
            return rule.check(identity) is True
        except Exception:
            logger.exception("flask-access-cors: the require callable raised; access refused")
            return False
    if identity.is_service:
        return identity.common_name is not None and any(
            hmac.compare_digest(identity.common_name, allowed) for allowed in rule.service_tokens
        )
    email = (identity.email or "").lower()
    if email and email in rule.emails:
        return True
    if email and email.rpartition("@")[2] in rule.email_domains:
        return True
    return bool(rule.groups & identity.groups)


@dataclass(frozen=True)
class Gate:
    """How this app recognises callers: a token verifier and/or service tokens."""

    verifier: TokenVerifier | None
    service_tokens: ServiceTokens | None
    header_names: Sequence[str]
    cookie_name: str

    def identify(self, environ: Mapping[str, object]) -> Identity | Denial:
        """The caller's verified identity, or a denial (``401``, or ``503`` without keys)."""
        get: Callable[[str], object] = environ.get
        client_id = get(CLIENT_ID)
        if client_id is not None and self.service_tokens is not None:
            secret = get(CLIENT_SECRET)
            if not isinstance(secret, str):
                return Denial("service_token_invalid", None, 401)
            try:
                return self.service_tokens.check(str(client_id), secret)
            except TokenError as exc:
                return Denial(exc.reason, str(client_id), 401)
        try:
            found = locate_token(
                lambda name: _header(environ, name),
                _as_str(get("HTTP_COOKIE")),
                self.header_names,
                self.cookie_name,
            )
            if found is None:
                return Denial("token_missing", None, 401)
            token, source = found
            if self.verifier is None:
                return Denial("token_invalid", "no token verifier is configured", 401)
            return identity_from_claims(self.verifier.verify(token), source)
        except TokenError as exc:
            status = 503 if exc.reason == "key_unavailable" else 401
            return Denial(exc.reason, exc.detail or None, status)


def _as_str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _header(environ: Mapping[str, object], name: str) -> str | None:
    return _as_str(environ.get("HTTP_" + name.upper().replace("-", "_")))
