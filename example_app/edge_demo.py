"""The seed documents' scenario end to end: the demo API behind the Access stand-in.

DEMO AND TEST ONLY. :class:`EdgeDemo` starts, on loopback:

- a :class:`~flask_access_cors.testing.FakeAccess` team (the signing keys);
- the origin API (plain HTTP, reached only through the edge, or around it by an
  attacker), which validates ``Cf-Access-Jwt-Assertion`` itself with
  flask-access-cors;
- ``app1``, the front end (a page whose scripts call the API);
- the edge (:mod:`example_app.edge`, HTTPS) in front of both, serving the
  hostnames below. A browser reaches them with Chromium's
  ``--host-resolver-rules`` (:attr:`EdgeDemo.chromium_args`).

The API is three Access applications on one origin, one per preflight behaviour,
each with its own AUD tag.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import requests
import urllib3
from flask import Flask, jsonify, render_template, request
from flask.typing import ResponseReturnValue
from werkzeug.middleware.proxy_fix import ProxyFix

from flask_access_cors import AccessCors
from flask_access_cors.settings import DEFAULT_ALLOW_HEADERS
from flask_access_cors.testing import FakeAccess

from .edge import TEAM_HOST, AccessEdge, EdgeApp, EdgeCors, serve

__all__ = ["HOSTS", "SERVICE_TOKEN", "EdgeDemo", "create_app1", "create_origin"]

APP1 = "app1.example.test"
#: API hostnames: the preflight behaviour of each Access application in front of the API.
HOSTS = {"bypass": "api.example.test", "block": "api-blocked.example.test",
         "respond": "api-edge.example.test"}
SERVICE_TOKEN = ("ci-bot.access", "s3rvice-token-secret-" + "x" * 24)


def create_origin(fake: FakeAccess, app1_origin: str, audiences: list[str]) -> Flask:
    """The API as it runs at the origin: it trusts nothing the edge did, and checks the
    assertion itself. ``ProxyFix`` makes it see the public scheme and host."""
    app = Flask(__name__)
    app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1, x_proto=1, x_host=1)  # type: ignore[method-assign]
    app.config["PROPAGATE_EXCEPTIONS"] = False
    access = AccessCors(
        app, origins=[app1_origin], credentials=True, gate=True, debug=True,
        allow_headers=[*DEFAULT_ALLOW_HEADERS, "X-Demo"], event_store="memory://",
        jwks_url=fake.jwks_url, issuer=fake.issuer, audience=audiences,
    )

    @app.get("/")
    def index() -> ResponseReturnValue:
        identity = access.identity
        return f"Logged in to the API as {identity.email if identity else '?'}. Go back to app1."

    @app.get("/api/me")
    def me() -> ResponseReturnValue:
        identity = access.identity
        assert identity is not None  # the gate let the request through
        return {"subject": identity.subject, "email": identity.email,
                "service": identity.is_service}

    @app.route("/api/items", methods=["PUT"])
    def put_item() -> ResponseReturnValue:
        return {"stored": request.get_json(silent=True)}

    @app.get("/api/events")
    def events() -> ResponseReturnValue:
        """The origin's own event log, newest first (behind the gate like the rest)."""
        found = access.events.search(limit=int(request.args.get("limit", "20")))
        return jsonify(events=[{k: e.to_dict()[k] for k in
                                ("time", "status", "reason", "method", "path", "origin")}
                               for e in found])

    return app


def create_app1(urls: dict[str, str]) -> Flask:
    """The front end: one page whose scenario functions call the API hostnames."""
    app = Flask(__name__)

    @app.get("/")
    def page() -> ResponseReturnValue:
        return render_template("edge.html", urls=urls)

    return app


@dataclass
class EdgeDemo:
    """Everything running; :meth:`start` is a context manager."""

    fake: FakeAccess
    edge: AccessEdge
    origin: Flask
    urls: dict[str, str]
    origin_port: int

    @property
    def chromium_args(self) -> list[str]:
        """Resolve the demo's hostnames to loopback, and accept its self-signed certificate."""
        return ["--host-resolver-rules=MAP *.example.test 127.0.0.1, "
                f"MAP {TEAM_HOST} 127.0.0.1", "--ignore-certificate-errors"]

    def request(self, method: str, host: str, path: str, **kwargs: Any) -> requests.Response:
        """A request to the edge as ``host`` (no DNS needed: the ``Host`` header says which
        application), without following redirects."""
        headers = {"Host": f"{host}:{self.edge.port}", **kwargs.pop("headers", {})}
        with warnings.catch_warnings():  # the stand-in's certificate is self-signed
            warnings.simplefilter("ignore", urllib3.exceptions.InsecureRequestWarning)
            return requests.request(method, f"https://127.0.0.1:{self.edge.port}{path}",
                                    headers=headers, verify=False, allow_redirects=False,
                                    timeout=10, **kwargs)

    def origin_events(self) -> list[dict[str, Any]]:
        """What the origin recorded, newest first (read in-process, not through the edge)."""
        with self.origin.app_context():
            log = self.origin.extensions["access_cors"].events
            log.flush()
            return [e.to_dict() for e in log.search(limit=1000)]

    @classmethod
    @contextlib.contextmanager
    def start(cls, port: int = 0) -> Iterator[EdgeDemo]:
        with contextlib.ExitStack() as stack:
            fake = stack.enter_context(FakeAccess(audience="aud-app1"))
            edge = AccessEdge(fake, {})
            edge_server = stack.enter_context(serve(edge, tls=True, port=port))
            edge.port = edge_server.server_port
            urls = {"app1": edge.url(APP1), "team": edge.url(TEAM_HOST)}
            urls.update({mode: edge.url(host) for mode, host in HOSTS.items()})
            auds = {mode: f"aud-api-{mode}" for mode in HOSTS}
            origin = create_origin(fake, urls["app1"].rstrip("/"), list(auds.values()))
            origin_server = stack.enter_context(serve(origin))
            app1_server = stack.enter_context(serve(create_app1(urls)))
            origin_url = f"http://127.0.0.1:{origin_server.server_port}"
            edge_cors = EdgeCors(origins=frozenset({urls["app1"].rstrip("/")}))
            edge.apps[APP1] = EdgeApp(f"http://127.0.0.1:{app1_server.server_port}", "aud-app1")
            for mode, host in HOSTS.items():
                edge.apps[host] = EdgeApp(
                    origin_url, auds[mode], preflight=mode,
                    cors=edge_cors if mode == "respond" else None,
                    service_tokens=dict([SERVICE_TOKEN]),
                )
            yield cls(fake, edge, origin, urls, origin_server.server_port)
