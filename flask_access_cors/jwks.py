"""The JWKS client: Cloudflare Access signing keys, fetched safely.

Keys are cached, refreshed on an unknown ``kid`` at most once per cooldown,
fetched with a short timeout and a size cap (no redirects), and the last good
key set keeps serving while the endpoint is down (stale-if-error). Key parsing
is PyJWT's; what PyJWT's ``PyJWKClient`` does not do is done here.

Pure: no Flask.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import re
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import jwt
import requests
import urllib3.exceptions
from cryptography.hazmat.primitives.asymmetric import rsa

from .reasons import Reason, TokenError

__all__ = ["JWKSClient"]

logger = logging.getLogger("flask_access_cors")

_MIN_RSA_BITS = 2048

@dataclass(frozen=True)
class _KeySet:
    """One fetched JWKS document, reduced to the keys we can verify with."""

    by_kid: Mapping[str, jwt.PyJWK]
    keys: tuple[jwt.PyJWK, ...]

    def find(self, kid: str | None) -> jwt.PyJWK | None:
        if kid is None:
            return self.keys[0] if len(self.keys) == 1 else None
        return self.by_kid.get(kid)


class _FetchError(Exception):
    """A JWKS fetch failed; the message is for the log."""


# Everything a GET can fail with; urllib3 errors escape requests on raw reads.
_NETWORK_ERRORS = (
    requests.RequestException,
    urllib3.exceptions.HTTPError,
    http.client.HTTPException,
    OSError,
    ValueError,
)


class _Flight:
    """One JWKS fetch in progress, run by its own thread.

    Every caller that needs its result waits on ``done``, but never past
    ``deadline`` (``time.monotonic()``), one timeout after the fetch started.
    """

    __slots__ = ("deadline", "done", "pid")

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.done = threading.Event()
        self.pid = os.getpid()  # a forked child has no thread running this fetch


# Live clients, so that a forked child gets fresh locks (see _after_fork_in_child).
_CLIENTS: weakref.WeakSet[JWKSClient] = weakref.WeakSet()


class JWKSClient:
    """Signing keys from a JWKS URL, cached, rate-limited and stale-if-error.

    PyJWT's ``PyJWKClient`` refetches on every unknown ``kid`` and drops its
    keys when the endpoint fails, which turns a flood of forged ``kid`` values
    into a flood of fetches and a key-server outage into an outage of ours.
    Here:

    * the key set is refetched after ``lifespan`` seconds, or for an unknown
      ``kid``, but never sooner than ``cooldown`` seconds after the last fetch
      *attempt* (successful or not);
    * a failed refetch keeps the last good key set serving (logged at WARNING);
    * single flight: at most one fetch runs at a time, in a thread of its own.
      A caller that needs it (a cold start, an unknown ``kid``, a refresh that
      is due) waits for *that* fetch and never starts another while it runs;
      a caller with a usable stale key does not wait at all;
    * no caller waits longer than ``timeout`` for keys, whatever ``cooldown``
      is: a wait ends when the fetch it waits for ends or one ``timeout``
      after that fetch started, whichever comes first.  A ``cooldown`` shorter
      than ``timeout`` (even ``0``) is therefore accepted; as a new fetch
      never starts while one runs, the time between two fetches of a hanging
      key server is in effect at least the fetch's own duration;
    * the fetch has a timeout for the whole body, a size cap, and does not
      follow redirects.

    ``get_key`` returns a :class:`jwt.PyJWK`, which binds the key to its one
    algorithm: PyJWT then refuses a token whose ``alg`` differs from the key's.
    """

    fetches: int

    def __init__(
        self,
        url: str,
        *,
        cooldown: float = 30.0,
        lifespan: float = 300.0,
        timeout: float = 3.0,
        max_bytes: int = 262144,
        clock: Callable[[], float] = time.monotonic,
        session: requests.Session | None = None,
    ) -> None:
        if not re.match(r"https?://", url):
            raise ValueError(f"JWKS URL must be http(s): {url!r}")
        if cooldown < 0 or lifespan <= 0 or timeout <= 0 or max_bytes <= 0:
            raise ValueError("cooldown must be >= 0; lifespan, timeout and max_bytes > 0")
        self.url = url
        self.cooldown = cooldown
        self.lifespan = lifespan
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.fetches = 0
        self._clock = clock
        self._session = session if session is not None else requests.Session()
        self._lock = threading.Lock()  # guards the fields below; held only briefly
        self._keyset: _KeySet | None = None
        self._loaded_at = 0.0
        self._last_attempt: float | None = None
        self._flight: _Flight | None = None
        _CLIENTS.add(self)

    def _after_fork_in_child(self) -> None:
        # The parent's lock may have been held by a thread the child does not have.
        self._lock = threading.Lock()

    def get_key(self, kid: str | None) -> Any:
        """The key for ``kid`` (a token without ``kid`` needs a one-key set).

        Raises ``TokenError(Reason.KEY_UNKNOWN)`` when the key set (refreshed if
        allowed) has no such key, and ``TokenError(Reason.KEY_UNAVAILABLE)`` when no
        key set was ever obtained.  Waits at most ``timeout`` seconds.
        """
        with self._lock:
            now = self._clock()
            keyset = self._keyset
            key = keyset.find(kid) if keyset is not None else None
            if key is not None and now - self._loaded_at < self.lifespan:
                return key
            flight = self._flight
            if flight is not None and flight.pid != os.getpid():
                flight = self._flight = None  # inherited from the parent: nobody runs it
            if flight is None:
                due = self._last_attempt is None or now - self._last_attempt >= self.cooldown
                if not due:
                    # Within the cooldown: the key we have (stale or not), or none.
                    return key if key is not None else self._found(keyset, None, kid)
                flight = self._start_flight_locked()
            elif key is not None:
                return key  # stale, and a refresh is already under way: no waiting
        if flight.deadline > time.monotonic():
            flight.done.wait(flight.deadline - time.monotonic())
        with self._lock:
            keyset = self._keyset
        return self._found(keyset, keyset.find(kid) if keyset else None, kid)

    def _start_flight_locked(self) -> _Flight:
        """Begin a fetch in its own thread.  Call with the lock held."""
        flight = _Flight(time.monotonic() + self.timeout)
        self._flight = flight
        self._last_attempt = self._clock()
        self.fetches += 1
        thread = threading.Thread(
            target=self._fly, args=(flight,), name="flask-access-cors-jwks", daemon=True
        )
        try:
            thread.start()
        except RuntimeError:
            # No new threads (interpreter shutting down): this caller fetches,
            # still bounded by the fetch's own timeouts.
            self._lock.release()
            try:
                self._fly(flight)
            finally:
                self._lock.acquire()
        return flight

    def _fly(self, flight: _Flight) -> None:
        """Run one fetch and publish its result (a failure keeps the old key set)."""
        fetched: _KeySet | None = None
        try:
            fetched = self._fetch()
        except _FetchError as exc:
            self._log_failure(str(exc))
        except Exception:
            # A bug, not an outage: keep serving what we have, and say so.
            logger.exception("JWKS fetch from %s failed unexpectedly", self.url)
        finally:
            with self._lock:
                if fetched is not None:
                    self._keyset = fetched
                    self._loaded_at = self._clock()
                if self._flight is flight:
                    self._flight = None
            flight.done.set()

    def _found(self, keyset: _KeySet | None, key: jwt.PyJWK | None, kid: str | None) -> Any:
        if keyset is None:
            raise TokenError(Reason.KEY_UNAVAILABLE, f"no key set could be fetched from {self.url}")
        if key is None:
            if kid is None:
                detail = f"token has no kid and the set has {len(keyset.keys)} keys"
                raise TokenError(Reason.KEY_UNKNOWN, detail)
            raise TokenError(Reason.KEY_UNKNOWN, f"kid {kid[:64]!r} is not in the key set")
        return key

    def _log_failure(self, why: str) -> None:
        if self._keyset is not None:
            logger.warning(
                "JWKS fetch from %s failed (%s); still serving the last good key set", self.url, why
            )
        else:
            logger.warning("JWKS fetch from %s failed (%s); no key set available", self.url, why)

    def _fetch(self) -> _KeySet:
        """GET the JWKS document, bounded in time and size, and parse it."""
        deadline = time.monotonic() + self.timeout
        body = bytearray()
        try:
            with self._session.get(
                self.url,
                timeout=self.timeout,
                allow_redirects=False,
                stream=True,
                headers={"Accept": "application/json"},
            ) as response:
                if response.status_code != 200:
                    raise _FetchError(f"HTTP status {response.status_code}")
                declared = response.headers.get("Content-Length", "")
                if declared.isascii() and declared.isdigit() and int(declared) > self.max_bytes:
                    raise _FetchError(f"body of {declared} bytes exceeds {self.max_bytes}")
                # read1 returns as soon as *some* bytes arrive, so a server that
                # drips its body cannot hold us past the deadline; read(n) would
                # wait for all n bytes. (urllib3 1.x has no read1.)
                read = getattr(response.raw, "read1", None) or response.raw.read
                while len(body) <= self.max_bytes:
                    chunk = read(min(16384, self.max_bytes + 1 - len(body)), decode_content=True)
                    if not chunk:
                        break
                    body += chunk
                    if time.monotonic() > deadline:
                        raise _FetchError(f"body not received within {self.timeout} s")
                if len(body) > self.max_bytes:
                    raise _FetchError(f"body exceeds {self.max_bytes} bytes")
        except _NETWORK_ERRORS as e:
            raise _FetchError(type(e).__name__) from None
        return self._parse(bytes(body))

    @staticmethod
    def _parse(body: bytes) -> _KeySet:
        """Keep the usable signing keys; a set without any counts as a failed fetch.

        Cloudflare's document also carries ``public_cert``/``public_certs``;
        only ``keys`` is read.
        """
        try:
            document = json.loads(body)
        except (ValueError, RecursionError):
            raise _FetchError("body is not JSON") from None
        members = document.get("keys") if isinstance(document, dict) else None
        if not isinstance(members, list):
            raise _FetchError('no "keys" list')
        by_kid: dict[str, jwt.PyJWK] = {}
        keys: list[jwt.PyJWK] = []
        for member in members:
            key = _usable_key(member)
            if key is None:
                continue
            kid = member.get("kid")
            if kid is not None:
                if kid in by_kid:
                    continue  # ambiguous duplicate: the first one wins
                by_kid[kid] = key
            keys.append(key)
        if not keys:
            raise _FetchError("no usable signing key in the set")
        return _KeySet(by_kid=by_kid, keys=tuple(keys))


def _after_fork_in_child() -> None:
    for client in list(_CLIENTS):
        client._after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _usable_key(member: Any) -> jwt.PyJWK | None:
    """A PyJWK for an RS256/ES256 public signing key, or ``None`` to skip it."""
    if not isinstance(member, dict):
        return None
    kty, alg, kid = member.get("kty"), member.get("alg"), member.get("kid")
    if member.get("use", "sig") != "sig" or "d" in member:
        return None  # an encryption key, or private material published by mistake
    key_ops = member.get("key_ops")
    if key_ops is not None and (not isinstance(key_ops, list) or "verify" not in key_ops):
        return None
    if kid is not None and not isinstance(kid, str):
        return None
    if kty == "RSA" and alg in (None, "RS256"):
        algorithm = "RS256"
    elif kty == "EC" and member.get("crv") == "P-256" and alg in (None, "ES256"):
        algorithm = "ES256"
    else:
        return None
    try:
        key = jwt.PyJWK(member, algorithm=algorithm)
    except (jwt.PyJWTError, ValueError, TypeError, KeyError):
        return None
    if isinstance(key.key, rsa.RSAPublicKey) and key.key.key_size < _MIN_RSA_BITS:
        return None
    return key


# --------------------------------------------------------------------------- verification


