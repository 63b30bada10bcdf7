"""The apps under test: bare Flask, flask-cors and flask-access-cors on the same routes.

The same trivial views (a two-byte body), so the only difference is the CORS layer.
``build(name)`` is gunicorn's entry point: ``gunicorn 'bench.apps:build("bare")'``.
"""

from __future__ import annotations

import re
from typing import Any

from flask import Flask

ORIGIN = "https://app.example.com"  # allowed by every policy here
DENIED_ORIGIN = "https://evil.example.org"  # allowed by none
METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]
ALLOW_HEADERS = ["Accept", "Authorization", "Content-Type", "X-CSRF-Token", "X-Requested-With"]
KEY = "bench.access"  # where access_cors_app() keeps its AccessCors in app.extensions


def bare_app() -> Flask:
    """The routes, no CORS at all (Flask still answers ``OPTIONS`` itself)."""
    app = Flask("bench")
    app.add_url_rule("/api/items", "items", lambda: "ok", methods=["GET", "POST"])
    app.add_url_rule("/api/private", "private", lambda: "ok")
    return app


def flask_cors_app(origins: list[Any] | None = None, **options: Any) -> Flask:
    """flask-cors 6 on the same routes, configured as close to our policy as it allows."""
    from flask_cors import CORS  # type: ignore[import-untyped]

    app = bare_app()
    CORS(app, origins=origins or [ORIGIN], supports_credentials=True, methods=METHODS,
         allow_headers=ALLOW_HEADERS, max_age=1800, **options)
    return app


def access_cors_app(origins: list[str] | None = None, **settings: Any) -> Flask:
    """flask-access-cors on the same routes, through its public API only."""
    from flask_access_cors import AccessCors

    app = bare_app()
    settings = {"credentials": True, "methods": METHODS, "allow_headers": ALLOW_HEADERS,
                "event_store": "memory://", **settings}
    app.extensions[KEY] = AccessCors(app, origins=origins or [ORIGIN], **settings)
    return app


def build(name: str) -> Flask:
    """``bare``, ``flask_cors`` or ``access_cors`` with the default policy (for gunicorn)."""
    return {"bare": bare_app, "flask_cors": flask_cors_app, "access_cors": access_cors_app}[name]()


def exact_origins(n: int) -> list[str]:
    return [f"https://app{i}.customer{i % 997}.example.com" for i in range(n)]


def wildcard_origins(n: int) -> list[str]:
    return [f"https://*.tenant{i}.example.net" for i in range(n)]


def wildcard_regexes(n: int) -> list[re.Pattern[str]]:
    """The same wildcards as flask-cors understands them: compiled regexes."""
    return [re.compile(rf"https://[a-z0-9.-]+\.tenant{i}\.example\.net\Z") for i in range(n)]
