"""Test helpers for apps behind Cloudflare Access (a stable, documented API).

:class:`FakeAccess` stands in for a Cloudflare Access team: it serves an RS256
JWKS on a loopback port and mints Access-shaped tokens for it, so an app's own
test suite logs in the way production does (a real signature, a real key fetch)
instead of patching the verifier or turning the gate off::

    from flask_access_cors.testing import FakeAccess

    with FakeAccess(audience="my-aud") as fake:
        app = create_app()
        AccessCors(app, gate=True, **fake.settings)
        client = app.test_client()
        client.get("/api/me", headers=fake.headers(email="alice@example.com"))

With pytest, the ``fake_access`` fixture (registered through the ``pytest11``
entry point) yields one. Pure: no Flask.
"""

from __future__ import annotations

import importlib.util
import json
import secrets
import threading
import time
import uuid
from collections.abc import Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm
from werkzeug.serving import BaseWSGIServer, make_server

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

__all__ = ["FakeAccess", "fake_access", "log_in"]

_CERTS = "/cdn-cgi/access/certs"
_HEADER = "Cf-Access-Jwt-Assertion"


class _Key:
    def __init__(self) -> None:
        self.private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = secrets.token_hex(16)

    def jwk(self) -> dict[str, Any]:
        found: dict[str, Any] = RSAAlgorithm.to_jwk(self.private.public_key(), as_dict=True)
        return {**found, "kid": self.kid, "alg": "RS256", "use": "sig"}


class FakeAccess:
    """A Cloudflare Access team on loopback: a JWKS server and a token minter.

    ``fake.settings`` configures :class:`~flask_access_cors.AccessCors` for it
    (``jwks_url`` on the loopback port, ``issuer``, ``audience``, and a zero
    ``jwks_cooldown`` so a rotated key is fetched at once). The key set keeps the
    previous key after :meth:`rotate`, as Cloudflare's does.
    """

    def __init__(self, audience: str = "test-aud",
                 team_domain: str = "test.cloudflareaccess.com") -> None:
        self.audience = audience
        self.team_domain = team_domain
        self.issuer = f"https://{team_domain}"
        self._keys = [_Key()]
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        #: How many times the key set was fetched (a test can check caching).
        self.fetches = 0

    # -- the server ---------------------------------------------------------------

    def __enter__(self) -> FakeAccess:
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def start(self) -> None:
        """Serve the key set on a free loopback port (what ``with FakeAccess()`` does)."""
        if self._server is not None:
            return
        self._server = make_server("127.0.0.1", 0, self._wsgi, threaded=True)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        name="FakeAccess JWKS")
        self._thread.start()

    def stop(self) -> None:
        """Stop serving the key set."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def _wsgi(self, environ: WSGIEnvironment, start_response: StartResponse) -> list[bytes]:
        if environ.get("PATH_INFO") != _CERTS:
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found"]
        self.fetches += 1
        body = json.dumps(self.jwks()).encode()
        start_response("200 OK", [("Content-Type", "application/json"),
                                  ("Content-Length", str(len(body)))])
        return [body]

    @property
    def jwks_url(self) -> str:
        """``http://127.0.0.1:<port>/cdn-cgi/access/certs`` (once started)."""
        if self._server is None:
            raise RuntimeError("FakeAccess is not started: use it as a context manager")
        return f"http://127.0.0.1:{self._server.server_port}{_CERTS}"

    @property
    def settings(self) -> dict[str, Any]:
        """Keyword settings for ``AccessCors(app, **fake.settings)``."""
        return {"jwks_url": self.jwks_url, "issuer": self.issuer, "audience": self.audience,
                "jwks_cooldown": 0}

    @property
    def issuer_entry(self) -> dict[str, Any]:
        """One entry of ``issuers=[...]``, for apps with several issuers."""
        return {"jwks_url": self.jwks_url, "issuer": self.issuer, "audience": self.audience}

    def jwks(self) -> dict[str, Any]:
        """The published key set: the signing key and, after :meth:`rotate`, the previous one."""
        return {"keys": [k.jwk() for k in reversed(self._keys[-2:])]}

    def rotate(self) -> None:
        """Sign with a new key and ``kid`` from now on (the old key stays published)."""
        self._keys.append(_Key())

    # -- tokens -------------------------------------------------------------------

    def token(self, email: str = "user@example.com", groups: list[str] | None = None,
              **claims: Any) -> str:
        """A Cloudflare-style Access token; ``claims`` override the defaults (``aud``,
        ``iss``, ``sub``, ``exp``...). Groups go where Cloudflare puts identity-provider
        claims: under ``custom``."""
        now = int(time.time())
        payload: dict[str, Any] = {
            "aud": [self.audience],
            "email": email,
            "exp": now + 3600,
            "iat": now,
            "nbf": now,
            "iss": self.issuer,
            "type": "app",
            "identity_nonce": secrets.token_urlsafe(12),
            "sub": str(uuid.uuid5(uuid.NAMESPACE_URL, email)),
            "country": "US",
        }
        if groups is not None:
            payload["custom"] = {"groups": list(groups)}
        payload.update(claims)
        return self._sign(payload)

    def service_token(self, common_name: str, **claims: Any) -> str:
        """A Cloudflare service-token JWT: an empty ``sub`` and the client id as ``common_name``."""
        now = int(time.time())
        payload: dict[str, Any] = {
            "aud": [self.audience], "exp": now + 3600, "iat": now, "nbf": now,
            "iss": self.issuer, "type": "app", "common_name": common_name, "sub": "",
        }
        payload.update(claims)
        return self._sign(payload)

    def headers(self, email: str = "user@example.com", groups: list[str] | None = None,
                **claims: Any) -> dict[str, str]:
        """``{"Cf-Access-Jwt-Assertion": token}``, as Cloudflare adds it at the edge."""
        return {_HEADER: self.token(email, groups, **claims)}

    def log_in(self, client: Any, email: str = "user@example.com",
               groups: list[str] | None = None, **claims: Any) -> str:
        """Give a Flask test client the ``CF_Authorization`` cookie; returns the token."""
        token = self.token(email, groups, **claims)
        log_in(client, token)
        return token

    def _sign(self, payload: dict[str, Any]) -> str:
        key = self._keys[-1]
        return jwt.encode(payload, key.private, algorithm="RS256", headers={"kid": key.kid})


def log_in(client: Any, token: str, *, cookie_name: str = "CF_Authorization",
           domain: str = "localhost") -> None:
    """Log a Flask test client in: every later request carries ``token`` as the access cookie."""
    client.set_cookie(cookie_name, token, domain=domain)


if importlib.util.find_spec("pytest") is not None:  # the helpers work without pytest
    import pytest

    @pytest.fixture
    def fake_access() -> Iterator[FakeAccess]:
        """A started :class:`FakeAccess` (``audience="test-aud"``), stopped afterwards."""
        with FakeAccess() as fake:
            yield fake
