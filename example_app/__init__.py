"""A two-origin demo of flask-access-cors: an API and a single-page app on loopback.

DEMO ONLY. Anyone can "log in" with any user name; nothing here is meant to be
deployed. Run it with ``make demo`` (``python -m example_app``).

- :func:`create_api` builds the API (``http://localhost:5001`` by default): a
  cookie login page, ``/api/*`` behind the access gate, an excluded
  ``/internal/*`` path and an HTML view of the debug event log.
- :func:`create_spa` builds the single-page app (``http://localhost:5002``),
  a static page whose buttons call the API with ``fetch()``. The same page
  served as ``http://127.0.0.1:5002`` is a *different site* that the API does
  not allow, which shows what a blocked origin looks like.

The browser tests (``tests/test_browser.py``) reuse both factories.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import uuid
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from flask import Blueprint, Flask, abort, redirect, render_template, request
from flask.typing import ResponseReturnValue

from flask_access_cors import AccessCors
from flask_access_cors.settings import DEFAULT_ALLOW_HEADERS

__all__ = [
    "API_PORT",
    "SPA_PORT",
    "DemoState",
    "create_api",
    "create_spa",
    "demo_state",
]

#: Ports of the two origins (``DEMO_API_PORT`` / ``DEMO_SPA_PORT`` override them).
API_PORT = int(os.environ.get("DEMO_API_PORT", "5001"))
SPA_PORT = int(os.environ.get("DEMO_SPA_PORT", "5002"))

#: Request headers the single-page app may send: the extension's defaults plus ``X-Demo``.
ALLOW_HEADERS = (*DEFAULT_ALLOW_HEADERS, "X-Demo")

#: Why each denial happens, and what would change the outcome (shown on /debug/events).
EXPLANATIONS: Mapping[str, str] = {
    "origin_not_allowed": "The page's origin is not in the policy's origins. The view never ran. "
    "Add the origin to origins= if this front end should be allowed.",
    "origin_malformed": "The Origin header is not an origin a browser would send "
    "(duplicated header, path, whitespace, ...): refused outright.",
    "method_not_allowed": "The method is not in the policy's methods, or the route does not accept it.",
    "header_not_allowed": "The preflight asked for a request header that allow_headers does not list. "
    "The browser never sent the actual request.",
    "request_headers_malformed": "Access-Control-Request-Headers was too long or not a header list.",
    "private_network_not_allowed": "A Private Network Access preflight, and private_network is off.",
    "cors_disabled": "The policy governing this path has enabled=False.",
    "excluded_path": "The path is in excluded_paths: same-origin only, never cross-origin.",
    "token_missing": "No access cookie or token header: the caller has to log in first.",
    "token_malformed": "The access token could not be parsed (or two access cookies were sent).",
    "token_invalid": "The access token's signature or claims did not verify.",
    "token_expired": "The access token has expired: the session is over, log in again.",
    "token_not_yet_valid": "The access token's nbf/iat lies in the future (clock skew?).",
    "audience_mismatch": "The token was issued for another application (aud).",
    "issuer_mismatch": "The token was issued by another issuer (iss).",
    "key_unknown": "The token names a signing key (kid) the verifier does not know.",
    "key_unavailable": "The verifier's keys could not be fetched: 503 with Retry-After.",
    "service_token_invalid": "CF-Access-Client-Id/Secret did not match a configured service token.",
    "access_denied": "Authenticated, but the require rule does not include this identity.",
}


@dataclass
class DemoState:
    """What the demo keeps per API app (``app.extensions["example_app"]``)."""

    access: AccessCors
    api_origin: str
    spa_origin: str
    #: ``"METHOD endpoint"`` of every API view that ran, newest last (bounded).
    ran: deque[str] = field(default_factory=lambda: deque(maxlen=1000))


def demo_state(app: Flask) -> DemoState:
    """The :class:`DemoState` of an app made by :func:`create_api`."""
    state = app.extensions.get("example_app")
    if not isinstance(state, DemoState):
        raise RuntimeError("not an app made by example_app.create_api()")
    return state


def _is_loopback(addr: str | None) -> bool:
    try:
        return addr is not None and ipaddress.ip_address(addr).is_loopback
    except ValueError:
        return False


def create_api(
    *,
    api_origin: str | None = None,
    spa_origin: str | None = None,
    config: Mapping[str, Any] | None = None,
    instance_path: str | None = None,
    **overrides: Any,
) -> Flask:
    """The demo API.

    ``api_origin`` / ``spa_origin`` are how browsers reach the two apps
    (defaults: ``http://localhost:<API_PORT>`` and ``http://localhost:<SPA_PORT>``);
    ``config`` updates ``app.config`` before the extension reads it;
    ``overrides`` are AccessCors settings replacing the demo's (``max_age=600``,
    ``event_store="memory://"``, ``origins=[...]``, ...).
    """
    api_origin = api_origin or f"http://localhost:{API_PORT}"
    spa_origin = spa_origin or f"http://localhost:{SPA_PORT}"
    app = Flask(__name__, instance_path=instance_path)
    # A fresh secret per start: it signs the login page's return links. Restarting
    # the demo invalidates them (and, with jwt_secret below, every session).
    app.secret_key = secrets.token_urlsafe(32)
    app.config["PROPAGATE_EXCEPTIONS"] = False
    app.config.update(config or {})

    settings: dict[str, Any] = {
        "origins": [spa_origin],
        "credentials": True,
        "allow_headers": list(ALLOW_HEADERS),
        "expose_headers": ["X-Request-Id"],
        "excluded_paths": ["/internal*"],
        "debug": True,
        "login_url": f"{api_origin}/login",
        # Development only: a secret generated at start. Production reads it from
        # the environment or a secret store (at least 32 bytes).
        "jwt_secret": secrets.token_urlsafe(48),
    }
    settings.update(overrides)
    if "event_store" not in settings and "ACCESS_CORS_EVENT_STORE" not in app.config:
        os.makedirs(app.instance_path, exist_ok=True)
        settings["event_store"] = (
            f"sqlite:///{os.path.join(app.instance_path, 'access_cors_events.sqlite3')}"
        )
    access = AccessCors(app, **settings)
    state = DemoState(access=access, api_origin=api_origin, spa_origin=spa_origin)
    app.extensions["example_app"] = state

    def ran() -> None:
        state.ran.append(f"{request.method} {request.endpoint}")

    # -- pages on the API origin (same-origin; not in the gated blueprint) ---------

    @app.get("/")
    @access.cors(gate=True)
    def index() -> ResponseReturnValue:
        """Gated page: a browser without the access cookie is sent to the login page."""
        ran()
        return render_template("api_index.html", state=state, identity=access.identity)

    @app.route("/login", methods=["GET", "POST"])
    @access.public
    def login() -> ResponseReturnValue:
        """Demo login: any user name. A cross-origin POST here from an origin the
        policy does not allow is refused (403) before this view runs."""
        ran()
        redirect_url = request.args.get("redirect_url")
        error = None
        if request.method == "POST":
            user = request.form.get("user", "").strip()
            if 1 <= len(user) <= 64 and user.isprintable():
                token = access.issue_token(user, claims={"name": user})
                target = access.safe_return_path(redirect_url) or "/"
                # make_response: flask.redirect() is typed as Werkzeug's Response
                response = app.make_response(redirect(target, code=303))
                access.set_access_cookie(response, token)
                return response
            error = "Enter a user name (1 to 64 printable characters)."
        return render_template(
            "login.html", state=state, error=error, has_return=redirect_url is not None,
        ), (400 if error else 200)

    @app.post("/logout")
    @access.public
    def logout() -> ResponseReturnValue:
        ran()
        wants_html = request.accept_mimetypes.best_match(["application/json", "text/html"]) == "text/html"
        response = app.make_response(
            redirect("/", code=303) if wants_html else ({"logged_out": True}, 200)
        )
        access.clear_access_cookie(response)
        return response

    @app.get("/internal/status")
    def internal_status() -> ResponseReturnValue:
        """In excluded_paths: same-origin callers only, never cross-origin."""
        ran()
        return {"status": "ok", "note": "excluded from CORS"}

    @app.get("/debug/events")
    @access.public
    def debug_events() -> ResponseReturnValue:
        """DEMO ONLY: the debug event log as HTML, to loopback clients only.

        A real app mounts ``flask_access_cors.views.events_blueprint`` with a
        ``require`` rule instead: an event log names origins, paths and users.
        """
        if not _is_loopback(request.remote_addr):
            abort(404)
        reason = request.args.get("reason") or None
        try:
            events = access.events.search(reason=reason, limit=200)
        except ValueError:
            abort(400)
        return render_template(
            "events.html", state=state, events=events, reason=reason,
            explanations=EXPLANATIONS, dropped=access.events.dropped,
            ran=list(reversed(state.ran))[:50],
        )

    # -- the API: /api/* needs a logged-in user, except where marked public -----------

    api = Blueprint("api", __name__, url_prefix="/api")
    access.blueprint(api, gate=True)

    @api.route("/echo", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
    @access.public
    def echo() -> ResponseReturnValue:
        """Public: echoes the method and X-Demo; sets an exposed and an unexposed header.

        Public views are not authenticated, so ``access.identity`` is None here.
        """
        ran()
        body = {"method": request.method, "x_demo": request.headers.get("X-Demo")}
        return body, 200, {"X-Request-Id": uuid.uuid4().hex, "X-Internal-Trace": "not exposed"}

    @api.get("/me")
    def me() -> ResponseReturnValue:
        """Gated: who is logged in (the access cookie, sent with credentials: 'include')."""
        ran()
        identity = access.identity
        assert identity is not None  # the gate let the request through
        return {
            "user": identity.subject,
            "name": identity.claims.get("name"),
            "source": identity.source,
        }

    @api.get("/boom")
    @access.public
    def boom() -> ResponseReturnValue:
        """Public: an unhandled error; the 500 still carries the CORS headers."""
        ran()
        raise RuntimeError("demo: an unhandled error")

    app.register_blueprint(api)
    return app


def create_spa(api_origin: str, *, allowed_origin: str | None = None) -> Flask:
    """The single-page app: one static page calling ``api_origin``.

    With ``allowed_origin`` set, the page says so when it is served from any
    other origin (the "disallowed origin" mode, e.g. ``http://127.0.0.1:5002``).
    """
    app = Flask(__name__)

    @app.get("/")
    def page() -> ResponseReturnValue:
        origin = request.host_url.rstrip("/")
        return render_template(
            "spa.html", api_origin=api_origin, origin=origin, allowed_origin=allowed_origin,
            disallowed=allowed_origin is not None and origin != allowed_origin,
        )

    return app
