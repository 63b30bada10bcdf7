"""The pure gate decision: who is calling, and may they pass.

Tokens are found and verified by :mod:`.tokens`; this module turns the result
into an identity or a denial with a stable reason and status, and applies a
:class:`~.settings.Rule`. Nothing here knows Flask.
"""

from __future__ import annotations

import hmac
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

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


class Gate:
    """How this app recognises callers: a token verifier and/or service tokens.

    Identities of verified tokens are kept (bounded, never past the token's
    ``exp``), so a caller sending the same token again costs a dict lookup and
    a clock comparison, not a signature check and a new :class:`Identity`.
    """

    def __init__(self, verifier: TokenVerifier | None, service_tokens: ServiceTokens | None,
                 header_names: Sequence[str], cookie_name: str, *, cache_size: int = 4096,
                 clock: Callable[[], float] = time.time) -> None:
        self.verifier = verifier
        self.service_tokens = service_tokens
        self.header_names = tuple(header_names)
        self.cookie_name = cookie_name
        #: The WSGI environ keys of the token headers, computed once.
        self.environ_keys = tuple("HTTP_" + n.upper().replace("-", "_") for n in header_names)
        self._cache: dict[tuple[str, str], tuple[Identity, float]] = {}
        self._cache_size = cache_size
        self._lock = threading.Lock()
        self._clock = clock

    def identify(self, environ: Mapping[str, Any]) -> Identity | Denial:
        """The caller's verified identity, or a denial (``401``, or ``503`` without keys)."""
        get = environ.get
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
            found = locate_token(get, get("HTTP_COOKIE"), self.environ_keys, self.cookie_name)
            if found is None:
                return Denial("token_missing", None, 401)
            cached = self._cache.get(found)
            if cached is not None and self._clock() < cached[1]:
                return cached[0]
            if self.verifier is None:
                return Denial("token_invalid", "no token verifier is configured", 401)
            claims = self.verifier.verify(found[0])
            identity = identity_from_claims(claims, found[1])
        except TokenError as exc:
            status = 503 if exc.reason == "key_unavailable" else 401
            return Denial(exc.reason, exc.detail or None, status)
        self._remember(found, identity, claims.get("exp"))
        return identity

    def _remember(self, key: tuple[str, str], identity: Identity, exp: object) -> None:
        if not isinstance(exp, (int, float)) or isinstance(exp, bool) or self._cache_size <= 0:
            return
        with self._lock:
            while len(self._cache) >= self._cache_size:
                self._cache.pop(next(iter(self._cache)))  # the oldest entry
            self._cache[key] = (identity, float(exp))
