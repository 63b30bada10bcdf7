"""The apps under test: bare Flask, flask-cors and flask-access-cors on the same routes.

Every variant is a fresh :class:`~flask.Flask` with the same trivial views,
so the only difference between them is the CORS layer. Views return a short
text body: the cheaper the view, the more visible the overhead.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from flask import Flask

__all__ = [
    "ALLOW_HEADERS",
    "DENIED_ORIGIN",
    "METHODS",
    "ORIGIN",
    "access_cors_app",
    "bare_app",
    "flask_cors_app",
    "many_exact_origins",
    "many_wildcard_origins",
    "wildcard_regexes",
]

#: The single-page app's origin: allowed by every policy here.
ORIGIN = "https://app.example.com"
#: An origin no policy allows.
DENIED_ORIGIN = "https://evil.example.org"
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
ALLOW_HEADERS = ("Accept", "Authorization", "Content-Type", "X-CSRF-Token", "X-Requested-With")


def bare_app() -> Flask:
    """The routes, no CORS at all (Flask still answers ``OPTIONS`` itself)."""
    app = Flask("bench")

    @app.route("/api/items", methods=["GET", "POST"])
    def items() -> str:
        return "ok"

    @app.route("/api/private")
    def private() -> str:
        return "ok"

    return app


def flask_cors_app(origins: Sequence[str | re.Pattern[str]] = (ORIGIN,), **options: Any) -> Flask:
    """flask-cors 6 on the same routes, configured as close to our policy as it allows."""
    from flask_cors import CORS  # type: ignore[import-untyped]

    app = bare_app()
    CORS(
        app,
        origins=list(origins),
        supports_credentials=True,
        methods=list(METHODS),
        allow_headers=list(ALLOW_HEADERS),
        max_age=1800,
        **options,
    )
    return app


def access_cors_app(origins: Sequence[str] = (ORIGIN,), **settings: Any) -> Flask:
    """flask-access-cors on the same routes; the extension object is ``app.extensions``."""
    from flask_access_cors import AccessCors

    app = bare_app()
    settings.setdefault("credentials", True)
    settings.setdefault("methods", list(METHODS))
    settings.setdefault("allow_headers", list(ALLOW_HEADERS))
    settings.setdefault("event_store", "memory://")
    app.extensions["bench.access"] = AccessCors(app, origins=list(origins), **settings)
    return app


def many_exact_origins(n: int) -> list[str]:
    """``n`` distinct, valid exact origins."""
    return [f"https://app{i}.customer{i % 997}.example.com" for i in range(n)]


def many_wildcard_origins(n: int) -> list[str]:
    """``n`` subdomain wildcards, ``https://*.tenantN.example.net``."""
    return [f"https://*.tenant{i}.example.net" for i in range(n)]


def wildcard_regexes(n: int) -> list[re.Pattern[str]]:
    """The same wildcards as flask-cors understands them: compiled regexes."""
    return [re.compile(rf"https://[a-z0-9.-]+\.tenant{i}\.example\.net\Z") for i in range(n)]
