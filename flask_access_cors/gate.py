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

from .jwks import JWKSClient
from .reasons import Denial, Reason, TokenError
from .settings import IssuerEntry, Problems, Rule
from .tokens import (
    Identity,
    IssuerRouter,
    ServiceTokens,
    TokenIssuer,
    TokenVerifier,
    identity_from_claims,
    load_private_key,
    locate_token,
)

__all__ = ["Gate", "audience_ok", "authorize", "build_gate"]

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
    # exactly one "@": "a@evil.org@example.com" belongs to no domain
    if email.count("@") == 1 and email.rpartition("@")[2] in rule.email_domains:
        return True
    return bool(rule.groups & identity.groups)


def audience_ok(accepted: frozenset[str] | None, identity: Identity) -> bool:
    """Is the token for this scope (its ``aud`` includes one of ``accepted``)? Service
    credentials checked by the app itself carry no audience and are app-wide."""
    return accepted is None or identity.source == "service_token" or not accepted.isdisjoint(
        identity.audiences)


class Gate:
    """How this app recognises callers: a token verifier and/or service tokens.

    Identities of verified tokens are kept (bounded, never past the token's
    ``exp``), so a caller sending the same token again costs a dict lookup and
    a clock comparison, not a signature check and a new :class:`Identity`.
    """

    #: Every audience some configured issuer can mint (the shorthand issuer's grow).
    audiences: set[str]
    #: The shorthand issuer, which accepts each audience a scope configures.
    grow: TokenVerifier | None = None

    def __init__(self, verifier: TokenVerifier | IssuerRouter | None,
                 service_tokens: ServiceTokens | None,
                 header_names: Sequence[str], cookie_name: str, *, cache_size: int = 4096,
                 clock: Callable[[], float] = time.time) -> None:
        self.verifier = verifier
        self.service_tokens = service_tokens
        #: Anyone can be recognised at all (so a public scope may still know its caller).
        self.optional = verifier is not None or service_tokens is not None
        self.audiences = set()
        self.header_names = tuple(header_names)
        self.cookie_name = cookie_name
        #: The WSGI environ keys of the token headers, computed once.
        self.environ_keys = tuple("HTTP_" + n.upper().replace("-", "_") for n in header_names)
        self._cache: dict[tuple[str, str], tuple[Identity, float]] = {}
        self._cache_size = cache_size
        self._lock = threading.Lock()
        self._clock = clock

    def admit_audience(self, audience: str) -> bool:
        """A scope accepts ``audience``: can any issuer mint it? (The shorthand issuer
        learns it: the app accepts the union of all audiences configured anywhere.)"""
        if self.grow is not None:
            self.grow.accept_audience(audience)
            self.audiences.add(audience)
        return audience in self.audiences

    def identify(self, environ: Mapping[str, Any]) -> Identity | Denial:
        """The caller's verified identity, or a denial (``401``, or ``503`` without keys)."""
        get = environ.get
        client_id = get(CLIENT_ID)
        if client_id is not None and self.service_tokens is not None:
            secret = get(CLIENT_SECRET)
            if not isinstance(secret, str):
                return Denial(Reason.SERVICE_TOKEN_INVALID, None, 401)
            try:
                return self.service_tokens.check(str(client_id), secret)
            except TokenError as exc:
                return Denial(exc.reason, str(client_id), 401)
        try:
            found = locate_token(get, get("HTTP_COOKIE"), self.environ_keys, self.cookie_name)
            if found is None:
                return Denial(Reason.TOKEN_MISSING, None, 401)
            cached = self._cache.get(found)
            if cached is not None and self._clock() < cached[1]:
                return cached[0]
            if self.verifier is None:
                return Denial(Reason.TOKEN_INVALID, "no token verifier is configured", 401)
            claims = self.verifier.verify(found[0])
            identity = identity_from_claims(claims, found[1])
        except TokenError as exc:
            status = 503 if exc.reason is Reason.KEY_UNAVAILABLE else 401
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


def build_gate(values: Mapping[str, Any], problems: Problems) -> tuple[Gate, TokenIssuer | None]:
    """The app's gate (verifiers and service tokens) and issuer, from its parsed settings.

    JWKS issuers come from ``issuers=[...]`` or the top-level shorthand
    (``team_domain``/``jwks_url``/``issuer``/``audience``); tokens the app issues
    itself (``jwt_secret`` or ``signing_key``) may be accepted alongside ``issuers``,
    told apart by their own ``iss``.
    """
    entries: tuple[IssuerEntry, ...] = values["issuers"]
    team = values["team_domain"]
    jwks_url = values["jwks_url"] or (f"https://{team}/cdn-cgi/access/certs" if team else None)
    issuer = values["issuer"] or (f"https://{team}" if team and not entries else None)
    audience: tuple[str, ...] | None = values["audience"]
    secret, pem = values["jwt_secret"], values["signing_key"]
    if secret is not None and len(secret) < 32:
        secret = None  # reported as weak_secret by the setting's parser
    algorithms = values["algorithms"]
    leeway = values["leeway"]
    before = len(problems.items)
    growing = False  # the shorthand issuer accepts every audience configured anywhere
    if entries and jwks_url is not None:
        problems.add("conflicting_keys",
                     "give issuers=[...] or team_domain/jwks_url, not both (the top-level "
                     "settings are shorthand for a one-entry issuers list)")
    elif jwks_url is not None:
        if secret is not None or pem is not None:
            problems.add("conflicting_keys",
                         "team_domain/jwks_url with jwt_secret or signing_key: to accept both, "
                         "list the JWKS issuers in issuers=[...] and give the app's own tokens "
                         "an issuer of their own")
        if not audience:
            problems.add("missing_audience", "a JWKS verifier needs audience (the AUD tag)")
        if not issuer:
            problems.add("missing_issuer", "a JWKS verifier needs issuer")
        if algorithms and "HS256" in algorithms:
            problems.add("conflicting_keys", "HS256 cannot be used with a JWKS")
        if issuer and audience:
            entries = (IssuerEntry(issuer, jwks_url, audience, algorithms),)
            growing = True
    if secret is not None and pem is not None:
        problems.add("conflicting_keys", "give jwt_secret or signing_key, not both")
    verifiers: dict[str, TokenVerifier] = {}
    if len(problems.items) == before:
        for entry in entries:
            jwks = JWKSClient(entry.jwks_url, cooldown=values["jwks_cooldown"])
            verifiers[entry.issuer] = TokenVerifier(
                algorithms=entry.algorithms or ("RS256", "ES256"), audience=entry.audience,
                issuer=entry.issuer, leeway=leeway, jwks=jwks,
            )
    own, token_issuer = _own_tokens(secret, pem, algorithms, audience, issuer, leeway, problems)
    if own is not None and entries and not growing:
        if issuer is None:
            problems.add("missing_issuer", "with issuers=[...], the app's own tokens need an "
                         "issuer of their own (the issuer setting) to be told apart")
        elif issuer in verifiers:
            problems.add("conflicting_keys", f"issuer {issuer!r} is both a JWKS issuer and the "
                         "app's own: give the app's tokens an iss of their own")
        else:
            verifiers[issuer] = own
    verifier: TokenVerifier | IssuerRouter | None
    if len(verifiers) > 1:
        verifier = IssuerRouter(verifiers)
    else:
        verifier = next(iter(verifiers.values()), own)
    if algorithms and not entries and own is None and secret is None and pem is None:
        problems.add("invalid_value", "algorithms is set but no key or JWKS is configured")
    tokens = ServiceTokens(values["service_tokens"]) if values["service_tokens"] else None
    gate = Gate(verifier, tokens, values["token_headers"], values["cookie_name"])
    gate.audiences = set().union(*(e.audience for e in entries), audience if own and audience else ())
    if growing and entries[0].issuer in verifiers:
        gate.grow = verifiers[entries[0].issuer]
    return gate, token_issuer


def _own_tokens(secret: bytes | None, pem: str | None, algorithms: tuple[str, ...] | None,
                audience: tuple[str, ...] | None, issuer: str | None, leeway: float,
                problems: Problems) -> tuple[TokenVerifier | None, TokenIssuer | None]:
    """The verifier and issuer of the tokens the app issues itself, if it does."""
    first_audience = audience[0] if audience else None
    if secret is not None and pem is None:
        if algorithms and algorithms != ("HS256",):
            problems.add("conflicting_keys", "jwt_secret verifies HS256 tokens only")
            return None, None
        return (
            TokenVerifier(algorithms=("HS256",), audience=audience, issuer=issuer, leeway=leeway,
                          key=secret),
            TokenIssuer(algorithm="HS256", key=secret, issuer=issuer, audience=first_audience),
        )
    if pem is not None and secret is None:
        try:
            private, public, alg = load_private_key(pem)
        except ValueError as exc:
            problems.add("invalid_value", f"signing_key: {exc}")
            return None, None
        if algorithms and algorithms != (alg,):
            problems.add("conflicting_keys", f"signing_key is an {alg} key")
            return None, None
        return (
            TokenVerifier(algorithms=(alg,), audience=audience, issuer=issuer, leeway=leeway,
                          key=public),
            TokenIssuer(algorithm=alg, key=private, issuer=issuer, audience=first_audience),
        )
    return None, None
