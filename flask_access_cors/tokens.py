"""Access tokens: where a request carries one, how it is verified, and who it names.

This module is pure (no Flask). The gate hands it raw request facts (headers,
the ``Cookie`` header, service-token credentials) and gets back an
:class:`Identity` or a :class:`TokenError` whose ``reason`` is a stable code.

Read top to bottom, the journey of a token is:

1. :func:`locate_token` finds it (configured headers first, then the cookie).
2. :class:`TokenVerifier` checks it with PyJWT against a fixed algorithm
   allow-list and a key from a :class:`JWKSClient` (Cloudflare Access) or a
   static key (tokens the app issues itself), and caches the result.
3. :func:`identity_from_claims` turns the verified claims into an
   :class:`Identity`.

:class:`ServiceTokens` checks Cloudflare-style service credentials
(``CF-Access-Client-Id`` / ``CF-Access-Client-Secret``), and
:class:`TokenIssuer` / :func:`load_private_key` produce the app's own tokens.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import re
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import jwt
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import HMACAlgorithm
from jwt.types import Options

from .jwks import JWKSClient
from .reasons import Reason, TokenError

logger = logging.getLogger("flask_access_cors")

#: Every reason a token can be refused for: the gate's reasons but ``access_denied``,
#: which is a rule's verdict on a verified identity, not a token's.

# HS256 for the app's own tokens; RS256/ES256 for Cloudflare Access and the app's
# own asymmetric keys. A closed list: anything else (``none`` above all) is refused.
_SYMMETRIC = frozenset({"HS256"})
_ASYMMETRIC = frozenset({"RS256", "ES256"})
_SUPPORTED = _SYMMETRIC | _ASYMMETRIC

_MIN_RSA_BITS = 2048
_MIN_SECRET_BYTES = 32
_MAX_CREDENTIAL_BYTES = 512




# --------------------------------------------------------------------------- identity


@dataclass(frozen=True)
class Identity:
    """Who a verified request speaks for.

    ``claims`` is a read-only view of a private copy, so neither the caller
    nor the verifier's cache can change an identity after the fact.
    """

    subject: str
    email: str | None
    claims: Mapping[str, Any]
    source: str
    is_service: bool
    common_name: str | None
    #: The token's ``aud`` values (a string ``aud`` is one value), computed once: a
    #: scope's audience check on every request is then a set intersection.
    audiences: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "claims", MappingProxyType(dict(self.claims)))
        aud = self.claims.get("aud")
        values = [aud] if isinstance(aud, str) else aud if isinstance(aud, (list, tuple)) else []
        object.__setattr__(self, "audiences", frozenset(a for a in values if isinstance(a, str)))

    @property
    def groups(self) -> frozenset[str]:
        """Group names from the ``groups`` and ``roles`` claims, at the top level and under
        ``custom`` (a list or one string).

        Both claims are read because identity providers disagree on the name;
        values of any other shape are ignored rather than guessed at.
        """
        found: set[str] = set()
        custom = self.claims.get("custom")
        # Cloudflare Access puts identity-provider claims under "custom".
        sources = (self.claims, custom) if isinstance(custom, Mapping) else (self.claims,)
        for claims in sources:
            for name in ("groups", "roles"):
                value = claims.get(name)
                if isinstance(value, str):
                    value = [value]
                if isinstance(value, (list, tuple)):
                    found.update(item for item in value if isinstance(item, str) and item)
        return frozenset(found)


def identity_from_claims(claims: Mapping[str, Any], source: str) -> Identity:
    """Build the identity a verified token speaks for.

    Cloudflare signs service-token requests with a JWT whose ``sub`` is empty
    and whose ``common_name`` is the client id; that is a service identity.
    Only an *empty* ``sub`` makes one, so a user token cannot claim to be a
    service by adding ``common_name``. A token naming nobody is refused.
    """
    subject = claims.get("sub")
    common_name = claims.get("common_name")
    if not subject and isinstance(common_name, str) and common_name:
        return Identity(
            subject=common_name,
            email=None,
            claims=claims,
            source=source,
            is_service=True,
            common_name=common_name,
        )
    if not isinstance(subject, str) or not subject:
        raise TokenError(Reason.TOKEN_INVALID, "the token names no subject")
    email = claims.get("email")
    return Identity(
        subject=subject,
        email=email if isinstance(email, str) else None,
        claims=claims,
        source=source,
        is_service=False,
        common_name=None,
    )


# --------------------------------------------------------------------------- lookup


_HeaderSource = Mapping[str, str] | Callable[[str], str | None]


def locate_token(
    headers: _HeaderSource,
    cookie_header: str | None,
    header_names: Sequence[str],
    cookie_name: str,
) -> tuple[str, str] | None:
    """Find the request's access token: ``(token, "header" | "cookie")`` or ``None``.

    Headers are tried in the configured order, then the cookie. ``headers`` is
    a mapping (matched case-insensitively) or a callable such as
    ``lambda name: environ.get(...)`` that returns ``None`` when absent. Empty
    values count as absent, and a ``Bearer`` prefix is tolerated so that
    ``Authorization`` can be configured as a token header.

    Two non-empty cookies with the configured name are refused
    (``token_malformed``): a sibling subdomain can plant a second cookie, and
    picking either one silently would let it choose who the user is.
    """
    for name in header_names:
        value = _header_value(headers, name)
        if value:
            if value[:7].lower() == "bearer ":
                value = value[7:].strip()
            if value:
                return value, "header"
    if cookie_header:
        token = _cookie_value(cookie_header, cookie_name)
        if token:
            return token, "cookie"
    return None


def _header_value(headers: _HeaderSource, name: str) -> str | None:
    if callable(headers):
        value = headers(name)
    else:
        value = headers.get(name)
        if value is None:
            # Werkzeug's headers are case-insensitive already; a plain dict is not.
            lowered = name.lower()
            value = next((v for k, v in headers.items() if k.lower() == lowered), None)
    return value.strip() if value else None


def _cookie_value(cookie_header: str, cookie_name: str) -> str | None:
    """The value of ``cookie_name`` in a raw ``Cookie`` header, in one linear pass.

    Deliberately not ``http.cookies``: it is slow, gives up on the first
    oddity, and silently keeps the last duplicate.
    """
    if cookie_name not in cookie_header:
        return None
    found: str | None = None
    for part in cookie_header.split(";"):
        name, sep, value = part.partition("=")
        if not sep or name.strip() != cookie_name:
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1].strip()
        if not value:
            continue
        if found is not None:
            raise TokenError(Reason.TOKEN_MALFORMED, f"two {cookie_name} cookies")
        found = value
    return found


class TokenVerifier:
    """Verify access tokens with PyJWT and remember the ones that passed.

    ``algorithms`` is a fixed allow-list: the token's ``alg`` header only ever
    selects *within* it, and HS256 is never mixed with public-key algorithms
    (the classic confusion attack signs HS256 with the RSA public key).

    Time claims (``exp``, ``nbf``, ``iat``) are checked here with the
    verifier's own ``clock`` rather than by PyJWT, which reads the wall clock
    itself; that way the cache and the checks agree on what "now" is. The
    rules are PyJWT's: expired when ``exp <= now - leeway``; not yet valid when
    ``nbf`` or ``iat`` is after ``now + leeway``.

    Verified tokens are cached (oldest evicted first) until their ``exp`` —
    never into the leeway. A cache hit is one dict lookup and one comparison.
    A cached token stays accepted until it expires even if its key is rotated
    out of the JWKS meanwhile.
    """

    def __init__(
        self,
        *,
        algorithms: Sequence[str],
        audience: str | Sequence[str] | None,
        issuer: str | None,
        leeway: float = 60,
        jwks: JWKSClient | None = None,
        key: Any = None,
        cache_size: int = 4096,
        clock: Callable[[], float] = time.time,
        max_token_bytes: int = 8192,
    ) -> None:
        allowed = _check_algorithms(algorithms)
        if (jwks is None) == (key is None):
            raise ValueError("give exactly one of jwks= or key=")
        if jwks is not None and not allowed <= _ASYMMETRIC:
            raise ValueError("a JWKS verifies RS256/ES256 only")
        if isinstance(audience, str) or audience is None:
            self._audience: str | list[str] | None = audience
        else:
            self._audience = list(audience)
            if not self._audience or not all(isinstance(a, str) for a in self._audience):
                raise ValueError("audience must be a string or a non-empty list of strings")
        if cache_size < 0 or max_token_bytes <= 0 or leeway < 0:
            raise ValueError("cache_size and leeway must be >= 0, max_token_bytes > 0")

        self._allowed = allowed
        self._jwks = jwks
        self._key: Any = None
        self._decode_algorithms = sorted(allowed)
        if key is not None:
            self._key, key_algorithm = _static_key(key)
            if key_algorithm not in allowed:
                raise ValueError(f"the key is for {key_algorithm}, not one of {sorted(allowed)}")
            self._decode_algorithms = [key_algorithm]
        self._issuer = issuer
        self._leeway = float(leeway)
        self._clock = clock
        self._max_token_bytes = max_token_bytes
        self._cache_size = cache_size
        self._cache: OrderedDict[str, tuple[dict[str, Any], float]] = OrderedDict()
        self._cache_lock = threading.Lock()
        self._options: Options = {
            "require": ["exp", "iat"],
            "verify_signature": True,
            "verify_aud": audience is not None,
            "verify_iss": issuer is not None,
            "verify_exp": False,  # checked below with self._clock
            "verify_nbf": False,
            "verify_iat": False,
        }

    def accept_audience(self, audience: str) -> None:
        """Also accept tokens for ``audience`` (a scope configured it; SPEC 8.2: the app
        accepts the union of all audiences configured anywhere). Only ever grows, so
        cached verdicts stay right."""
        if self._audience is None:
            return  # this verifier checks no audience; the scope's own check does
        current = [self._audience] if isinstance(self._audience, str) else self._audience
        if audience not in current:
            self._audience = [*current, audience]  # one atomic swap: readers see old or new

    def verify(self, token: str) -> dict[str, Any]:
        """The verified claims (a fresh dict), or raise :class:`TokenError`."""
        entry = self._cache.get(token)
        if entry is not None and self._clock() < entry[1]:
            return dict(entry[0])

        if len(token) > self._max_token_bytes:
            raise TokenError(Reason.TOKEN_MALFORMED, f"token longer than {self._max_token_bytes} bytes")
        if not token.isascii():
            raise TokenError(Reason.TOKEN_MALFORMED, "token is not ASCII")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise TokenError(Reason.TOKEN_MALFORMED, _describe(exc)) from None
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self._allowed:
            raise TokenError(Reason.TOKEN_INVALID, f"alg {str(alg)[:16]!r} is not allowed")
        kid = header.get("kid")
        key = self._jwks.get_key(kid) if self._jwks is not None else self._key

        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=self._decode_algorithms,
                audience=self._audience,
                issuer=self._issuer,
                options=self._options,
            )
        except jwt.InvalidAudienceError as exc:
            raise TokenError(Reason.AUDIENCE_MISMATCH, _describe(exc)) from None
        except jwt.InvalidIssuerError as exc:
            raise TokenError(Reason.ISSUER_MISMATCH, _describe(exc)) from None
        except jwt.ExpiredSignatureError as exc:
            raise TokenError(Reason.TOKEN_EXPIRED, _describe(exc)) from None
        except jwt.ImmatureSignatureError as exc:
            raise TokenError(Reason.TOKEN_NOT_YET_VALID, _describe(exc)) from None
        except jwt.InvalidSignatureError as exc:  # a DecodeError subclass: test it first
            raise TokenError(Reason.TOKEN_INVALID, _describe(exc)) from None
        except jwt.DecodeError as exc:
            raise TokenError(Reason.TOKEN_MALFORMED, _describe(exc)) from None
        except (jwt.PyJWTError, TypeError, ValueError) as exc:
            # Other claim errors, a missing required claim, a key of the wrong type.
            raise TokenError(Reason.TOKEN_INVALID, _describe(exc)) from None

        exp = self._check_times(claims)
        self._remember(token, claims, exp)
        return dict(claims)

    def _check_times(self, claims: Mapping[str, Any]) -> float:
        """Apply PyJWT's time rules with our clock; return ``exp``."""
        now = self._clock()
        exp = _numeric_date(claims, "exp")
        iat = _numeric_date(claims, "iat")
        nbf = _numeric_date(claims, "nbf") if "nbf" in claims else None
        if exp <= now - self._leeway:
            raise TokenError(Reason.TOKEN_EXPIRED, "exp is in the past")
        if nbf is not None and nbf > now + self._leeway:
            raise TokenError(Reason.TOKEN_NOT_YET_VALID, "nbf is in the future")
        if iat > now + self._leeway:
            raise TokenError(Reason.TOKEN_NOT_YET_VALID, "iat is in the future")
        return exp

    def _remember(self, token: str, claims: dict[str, Any], exp: float) -> None:
        if self._cache_size == 0 or self._clock() >= exp:
            return
        with self._cache_lock:
            self._cache.pop(token, None)
            while len(self._cache) >= self._cache_size:
                self._cache.popitem(last=False)
            self._cache[token] = (claims, exp)


class IssuerRouter:
    """Several issuers: a token is verified by the verifier of its ``iss``.

    The ``iss`` is read unverified only to choose the verifier, which then checks
    it again with the signature. One issuer's key server being down affects only
    that issuer's tokens.
    """

    def __init__(self, verifiers: Mapping[str, TokenVerifier], max_token_bytes: int = 8192) -> None:
        self.verifiers = dict(verifiers)
        self._max_token_bytes = max_token_bytes

    def verify(self, token: str) -> dict[str, Any]:
        if len(token) > self._max_token_bytes or not token.isascii():
            raise TokenError(Reason.TOKEN_MALFORMED, "token too long or not ASCII")
        try:
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError as exc:
            raise TokenError(Reason.TOKEN_MALFORMED, _describe(exc)) from None
        issuer = unverified.get("iss")
        verifier = self.verifiers.get(issuer) if isinstance(issuer, str) else None
        if verifier is None:
            raise TokenError(Reason.ISSUER_MISMATCH, f"no issuer configured for iss {str(issuer)[:80]!r}")
        return verifier.verify(token)


def _check_algorithms(algorithms: Sequence[str]) -> frozenset[str]:
    if isinstance(algorithms, str):
        raise ValueError("algorithms must be a list of names, not one string")
    allowed = frozenset(algorithms)
    if not allowed:
        raise ValueError("algorithms must not be empty")
    unknown = allowed - _SUPPORTED
    if unknown:
        raise ValueError(f"unsupported algorithms {sorted(unknown)}; use {sorted(_SUPPORTED)}")
    if allowed & _SYMMETRIC and allowed & _ASYMMETRIC:
        raise ValueError("HS256 cannot be mixed with public-key algorithms")
    return allowed


def _static_key(key: Any) -> tuple[Any, str]:
    """Normalise a verification key and name the one algorithm it is for."""
    if isinstance(key, str):
        key = key.encode()
    if isinstance(key, (bytes, bytearray)):
        secret = bytes(key)
        if len(secret) < _MIN_SECRET_BYTES:
            raise ValueError(f"an HS256 secret needs at least {_MIN_SECRET_BYTES} bytes")
        try:
            HMACAlgorithm(HMACAlgorithm.SHA256).prepare_key(secret)
        except jwt.PyJWTError:
            raise ValueError("the HS256 secret looks like a PEM/SSH/DER key") from None
        return secret, "HS256"
    if isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)):
        key = key.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < _MIN_RSA_BITS:
            raise ValueError(f"RSA keys need at least {_MIN_RSA_BITS} bits")
        return key, "RS256"
    if isinstance(key, ec.EllipticCurvePublicKey):
        if not isinstance(key.curve, ec.SECP256R1):
            raise ValueError("EC keys must be on curve P-256 (ES256)")
        return key, "ES256"
    raise ValueError(f"unsupported key type {type(key).__name__}")


def _numeric_date(claims: Mapping[str, Any], name: str) -> float:
    value = claims.get(name)
    try:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise TokenError(Reason.TOKEN_INVALID, f"{name} is not a NumericDate")
        return float(value)
    except OverflowError:  # an int too large for a float (exp = 10**400)
        raise TokenError(Reason.TOKEN_INVALID, f"{name} is out of range") from None


def _describe(exc: Exception) -> str:
    """Log text for a PyJWT error: its class and message, which never echo the token."""
    return f"{type(exc).__name__}: {exc}"[:200]


# --------------------------------------------------------------------------- service tokens


class ServiceTokens:
    """Check ``CF-Access-Client-Id`` / ``CF-Access-Client-Secret`` pairs.

    Secrets are compared as SHA-256 digests with :func:`hmac.compare_digest`,
    so neither their content nor their length leaks through timing, and an
    unknown client id costs the same hash and comparison as a known one.
    Client ids are not secret (Cloudflare sends them in the clear).
    """

    def __init__(self, tokens: Mapping[str, str]) -> None:
        self._digests: dict[str, bytes] = {}
        self._identities: dict[str, Identity] = {}
        for client_id, secret in tokens.items():
            if not _credential_ok(client_id):
                raise ValueError("a service token client id must be non-empty ASCII")
            if not isinstance(secret, str) or not secret:
                raise ValueError(f"service token {client_id!r}: the secret must be a string")
            if secret.startswith("sha256:"):
                if not re.fullmatch(r"[0-9a-fA-F]{64}", secret[7:]):
                    raise ValueError(
                        f"service token {client_id!r}: 'sha256:' must be followed by 64 hex digits"
                    )
                digest = bytes.fromhex(secret[7:])
            else:
                digest = hashlib.sha256(secret.encode()).digest()
            self._digests[client_id] = digest
            self._identities[client_id] = Identity(
                subject=client_id,
                email=None,
                claims={},
                source="service_token",
                is_service=True,
                common_name=client_id,
            )
        self._decoy = secrets.token_bytes(32)

    def check(self, client_id: str, client_secret: str) -> Identity:
        """The service identity for a valid pair, else ``TokenError`` (``service_token_invalid``)."""
        if not (_credential_ok(client_id) and _credential_ok(client_secret)):
            raise TokenError(Reason.SERVICE_TOKEN_INVALID, "client id or secret is not short ASCII")
        expected = self._digests.get(client_id)
        given = hashlib.sha256(client_secret.encode()).digest()
        matches = hmac.compare_digest(given, self._decoy if expected is None else expected)
        if expected is None or not matches:
            raise TokenError(Reason.SERVICE_TOKEN_INVALID, f"no match for client id {client_id[:64]!r}")
        return self._identities[client_id]


def _credential_ok(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value) <= _MAX_CREDENTIAL_BYTES and value.isascii()


# --------------------------------------------------------------------------- issuing


_RESERVED_CLAIMS = frozenset({"sub", "iat", "nbf", "exp", "iss", "aud"})


class TokenIssuer:
    """Sign the app's own access tokens (HS256, or RS256/ES256 with a private key).

    The issuer owns the claims that decide validity — ``sub``, ``iat``,
    ``nbf``, ``exp``, ``iss``, ``aud`` — so a caller's extra claims cannot
    quietly extend a token's life or aim it at another audience.
    """

    def __init__(
        self,
        *,
        algorithm: str,
        key: Any,
        kid: str | None = None,
        issuer: str | None = None,
        audience: str | None = None,
    ) -> None:
        if algorithm not in _SUPPORTED:
            raise ValueError(f"unsupported algorithm {algorithm!r}; use {sorted(_SUPPORTED)}")
        if algorithm != "HS256" and isinstance(key, (str, bytes)):
            key, _, pem_algorithm = load_private_key(key)
            if pem_algorithm != algorithm:
                raise ValueError(f"the PEM key is for {pem_algorithm}, not {algorithm}")
        if algorithm == "HS256":
            key, _ = _static_key(key)
        else:
            if not isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)):
                raise ValueError(f"{algorithm} needs a private key")
            _, key_algorithm = _static_key(key)
            if key_algorithm != algorithm:
                raise ValueError(f"the key is for {key_algorithm}, not {algorithm}")
        self._algorithm = algorithm
        self._key = key
        self._headers = {"kid": kid} if kid else None
        self._fixed: dict[str, Any] = {}
        if issuer is not None:
            self._fixed["iss"] = issuer
        if audience is not None:
            self._fixed["aud"] = audience

    def issue(self, subject: str, claims: Mapping[str, Any] | None = None, ttl: int = 3600) -> str:
        """A signed token for ``subject``, valid from now for ``ttl`` seconds."""
        if not isinstance(subject, str) or not subject:
            raise ValueError("subject must be a non-empty string")
        if isinstance(ttl, bool) or not isinstance(ttl, int) or ttl <= 0:
            raise ValueError("ttl must be a positive number of seconds")
        extra = dict(claims or {})
        clash = _RESERVED_CLAIMS.intersection(extra)
        if clash:
            raise ValueError(f"claims may not set {sorted(clash)}; the issuer sets them")
        now = int(time.time())
        payload = {"jti": secrets.token_urlsafe(16), **extra, **self._fixed}
        payload.update(sub=subject, iat=now, nbf=now, exp=now + ttl)
        return jwt.encode(payload, self._key, algorithm=self._algorithm, headers=self._headers)


def load_private_key(pem: str | bytes) -> tuple[Any, Any, str]:
    """Load an unencrypted PEM private key: ``(private, public, "RS256" | "ES256")``.

    Only keys worth trusting are accepted: RSA of at least 2048 bits, or EC on
    P-256. The error never repeats the key material.
    """
    data = pem.encode() if isinstance(pem, str) else pem
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise ValueError("the PEM private key is encrypted; give an unencrypted key") from None
    except (ValueError, UnsupportedAlgorithm):
        raise ValueError("signing_key is not a PEM-encoded private key") from None
    if isinstance(key, rsa.RSAPrivateKey):
        if key.key_size < _MIN_RSA_BITS:
            raise ValueError(
                f"RSA signing keys need at least {_MIN_RSA_BITS} bits (this one has {key.key_size})"
            )
        return key, key.public_key(), "RS256"
    if isinstance(key, ec.EllipticCurvePrivateKey):
        if not isinstance(key.curve, ec.SECP256R1):
            raise ValueError(f"EC signing keys must use curve P-256, not {key.curve.name}")
        return key, key.public_key(), "ES256"
    raise ValueError(f"unsupported signing key type {type(key).__name__}; use RSA or EC P-256")
