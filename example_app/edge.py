"""A Cloudflare Access stand-in: the edge the seed documents describe, on loopback.

DEMO AND TEST ONLY. It does what Cloudflare Access does *as far as the origin can
observe*, so the seed documents' situations can be reproduced in a real browser:

- a team domain (``team.cloudflareaccess.test``) with a login page and a session
  cookie, which mints an Access token (``FakeAccess``) with the AUD of the
  application the user was sent from;
- per application hostname: the login redirect for requests without a valid
  ``CF_Authorization`` cookie; ``/cdn-cgi/access/authorized``, which sets that
  cookie; the injection of ``Cf-Access-Jwt-Assertion`` and
  ``Cf-Access-Authenticated-User-Email`` (client-sent copies are dropped);
  service tokens (``CF-Access-Client-Id``/``Secret`` exchanged for a
  service-token JWT);
- the three preflight behaviours: ``block`` (Access's default: a cookie-less
  ``OPTIONS`` is refused), ``bypass`` ("Bypass OPTIONS requests to origin") and
  ``respond`` (answered from the application's edge CORS settings, which also
  go on the edge's own redirects: "Access honors all redirects").

It is built from existing pieces: Werkzeug parses requests and builds
responses, ``requests`` forwards them to the origin, PyJWT's ``PyJWKSet``
reads the keys. It serves HTTPS (a self-signed certificate), because real
Access does and ``Secure`` cookies need it.
"""

from __future__ import annotations

import hmac
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

import jwt
import requests
from markupsafe import escape
from werkzeug.serving import BaseWSGIServer, make_server
from werkzeug.wrappers import Request, Response

from flask_access_cors.testing import FakeAccess

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

__all__ = ["AccessEdge", "EdgeApp", "EdgeCors", "serve"]

TEAM_HOST = "team.cloudflareaccess.test"
_COOKIE = "CF_Authorization"
_SESSION = "CF_Session"
_TEAM_AUD = "team-session"
#: Headers only the edge may set on the way to the origin.
_EDGE_HEADERS = ("cf-access-jwt-assertion", "cf-access-authenticated-user-email",
                 "cf-access-client-id", "cf-access-client-secret", "x-forwarded-for",
                 "x-forwarded-proto", "x-forwarded-host")
_HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization",
                         "te", "trailer", "transfer-encoding", "upgrade", "content-length",
                         "content-encoding", "host"})


@dataclass(frozen=True)
class EdgeCors:
    """An Access application's own CORS settings (the dashboard's "Advanced settings")."""

    origins: frozenset[str]
    credentials: bool = True
    methods: frozenset[str] = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"})
    max_age: int = 600

    def allow(self, origin: str | None) -> list[tuple[str, str]]:
        if origin is None or origin not in self.origins:
            return []
        headers = [("Access-Control-Allow-Origin", origin), ("Vary", "Origin")]
        if self.credentials:
            headers.append(("Access-Control-Allow-Credentials", "true"))
        return headers


@dataclass
class EdgeApp:
    """One Access application: a hostname in front of an origin, with its own AUD tag."""

    origin: str  # e.g. http://127.0.0.1:5001
    aud: str
    preflight: str = "bypass"  # block | bypass | respond
    cors: EdgeCors | None = None
    #: client id -> secret of the service tokens this application accepts.
    service_tokens: Mapping[str, str] = field(default_factory=dict)


class AccessEdge:
    """The stand-in: a WSGI app routing by ``Host`` to the team domain or an application."""

    def __init__(self, fake: FakeAccess, apps: Mapping[str, EdgeApp], port: int = 443) -> None:
        self.fake = fake
        self.apps = dict(apps)
        self.port = port
        self.session = requests.Session()
        #: Every request the edge saw: (host, method, path, status it answered).
        self.log: list[tuple[str, str, str, str]] = []
        #: Every request it forwarded to an origin: (host, method, path).
        self.forwarded: list[tuple[str, str, str]] = []

    def url(self, host: str, path: str = "/") -> str:
        port = "" if self.port == 443 else f":{self.port}"
        return f"https://{host}{port}{path}"

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        req = Request(environ)
        host = req.host.rsplit(":", 1)[0].lower()
        if host == TEAM_HOST:
            response = self.team(req)
        elif host in self.apps:
            response = self.application(req, host, self.apps[host])
        else:
            response = Response("no Access application here", 404)
        self.log.append((host, req.method, req.path, str(response.status_code)))
        return response(environ, start_response)

    # -- an application ----------------------------------------------------------------

    def application(self, req: Request, host: str, app: EdgeApp) -> Response:
        origin = req.headers.get("Origin")
        cors = app.cors.allow(origin) if app.cors is not None else []
        if req.path == "/cdn-cgi/access/authorized":
            return self.authorized(req, host, app, _honour(origin))
        if req.method == "OPTIONS" and origin and "Access-Control-Request-Method" in req.headers:
            if app.preflight == "block":  # browsers never send cookies on a preflight
                return Response("Forbidden: Access blocked a request without credentials", 403)
            if app.preflight == "respond":
                return self.edge_preflight(req, app)
        else:
            identity = self.identify(req, app)
            if identity is None:
                target = self.url(TEAM_HOST, f"/cdn-cgi/access/login/{host}")
                location = f"{target}?redirect_url={quote(req.url, safe='')}"
                return Response(status=302, headers=[("Location", location), *cors])
            return self.forward(req, app, identity)
        return self.forward(req, app, None)

    def identify(self, req: Request, app: EdgeApp) -> tuple[str, str | None] | None:
        """The token to assert to the origin (and the user's email), or ``None``."""
        client_id = req.headers.get("CF-Access-Client-Id")
        if client_id is not None:
            expected = app.service_tokens.get(client_id, "")
            given = req.headers.get("CF-Access-Client-Secret", "")
            if expected and hmac.compare_digest(expected.encode(), given.encode()):
                return self.fake.service_token(client_id, aud=[app.aud]), None
            return None
        token = req.cookies.get(_COOKIE)
        claims = self.verify(token, app.aud) if token else None
        if claims is None:
            return None
        assert token is not None
        return token, claims.get("email")

    def verify(self, token: str, audience: str) -> dict[str, Any] | None:
        keys = jwt.PyJWKSet.from_dict(self.fake.jwks())
        try:
            kid = jwt.get_unverified_header(token).get("kid")
            key = next(k for k in keys.keys if k.key_id == kid)
            claims: dict[str, Any] = jwt.decode(token, key.key, algorithms=["RS256"],
                                                audience=audience, issuer=self.fake.issuer)
        except (jwt.PyJWTError, StopIteration):
            return None
        return claims

    def authorized(self, req: Request, host: str, app: EdgeApp,
                   cors: list[tuple[str, str]]) -> Response:
        """The end of the login flow: set the application's cookie, go back."""
        token = req.args.get("token", "")
        target = req.args.get("redirect_url", "/")
        if self.verify(token, app.aud) is None or urlsplit(target).hostname != host:
            return Response("bad login callback", 400)
        response = Response(status=302, headers=[("Location", target), *cors])
        response.set_cookie(_COOKIE, token, secure=True, httponly=True, samesite="Lax")
        return response

    def edge_preflight(self, req: Request, app: EdgeApp) -> Response:
        method = req.headers.get("Access-Control-Request-Method", "")
        allowed = app.cors.allow(req.headers.get("Origin")) if app.cors is not None else []
        if not allowed or app.cors is None or method not in app.cors.methods:
            return Response("Forbidden", 403)
        headers = [*allowed, ("Access-Control-Allow-Methods", method),
                   ("Access-Control-Max-Age", str(app.cors.max_age))]
        if "Access-Control-Request-Headers" in req.headers:
            headers.append(("Access-Control-Allow-Headers",
                            req.headers["Access-Control-Request-Headers"]))
        return Response(status=204, headers=headers)

    def forward(self, req: Request, app: EdgeApp, identity: tuple[str, str | None] | None) -> Response:
        self.forwarded.append((req.host.rsplit(":", 1)[0], req.method, req.path))
        headers = {k: v for k, v in req.headers.items()
                   if k.lower() not in _HOP_BY_HOP and k.lower() not in _EDGE_HEADERS}
        headers.update({"X-Forwarded-Proto": "https", "X-Forwarded-Host": req.host,
                        "X-Forwarded-For": req.remote_addr or "", "Accept-Encoding": "identity"})
        if identity is not None:
            headers["Cf-Access-Jwt-Assertion"] = identity[0]
            if identity[1]:
                headers["Cf-Access-Authenticated-User-Email"] = identity[1]
        upstream = self.session.request(
            req.method, app.origin + req.full_path.rstrip("?"), headers=headers,
            data=req.get_data(), allow_redirects=False, timeout=10,
        )
        response = Response(upstream.content, upstream.status_code)
        response.headers.clear()  # the origin's headers only, not Werkzeug's defaults
        for name, value in upstream.raw.headers.items():  # repeated headers kept (Set-Cookie)
            if name.lower() not in _HOP_BY_HOP and name.lower() not in ("server", "date"):
                response.headers.add(name, value)
        return response

    # -- the team domain -------------------------------------------------------------------

    def team(self, req: Request) -> Response:
        prefix = "/cdn-cgi/access/login/"
        host = req.path[len(prefix):] if req.path.startswith(prefix) else ""
        app = self.apps.get(host)
        if app is None:
            return Response("unknown application", 404)
        cors = _honour(req.headers.get("Origin"))
        session = req.cookies.get(_SESSION)
        claims = self.verify(session, _TEAM_AUD) if session else None
        email = claims.get("email") if claims else None
        new_session = None
        if email is None and req.method == "POST":
            email = req.form.get("email", "").strip() or None
            new_session = self.fake.token(email=email or "", aud=[_TEAM_AUD]) if email else None
        if not isinstance(email, str) or not email:
            return Response(_LOGIN_PAGE.format(host=escape(host)), 200, mimetype="text/html")
        token = self.fake.token(email=email, aud=[app.aud])
        target = req.args.get("redirect_url", self.url(host))
        location = self.url(host, "/cdn-cgi/access/authorized") + (
            f"?token={token}&redirect_url={quote(target, safe='')}"
        )
        response = Response(status=302, headers=[("Location", location), *cors])
        if new_session is not None:
            response.set_cookie(_SESSION, new_session, secure=True, httponly=True, samesite="None")
        return response


def _honour(origin: str | None) -> list[tuple[str, str]]:
    """"Access honors all redirects": the login flow's own redirects answer a CORS fetch,
    even from the origin "null" that a cross-origin redirect leaves behind."""
    if origin is None:
        return []
    return [("Access-Control-Allow-Origin", origin), ("Access-Control-Allow-Credentials", "true")]


_LOGIN_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>Sign in</title></head>
<body><h1>Cloudflare Access (stand-in)</h1><p>Sign in to {host}</p>
<form method="post"><label>Email <input name="email" value="user@example.com"></label>
<button type="submit">Sign in</button></form></body></html>"""


@contextmanager
def serve(app: Any, *, tls: bool = False, port: int = 0) -> Iterator[BaseWSGIServer]:
    """``app`` on a loopback port in a background thread (HTTPS with a self-signed
    certificate when ``tls``), shut down on exit."""
    server = make_server("127.0.0.1", port, app, threaded=True,
                         ssl_context="adhoc" if tls else None)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
