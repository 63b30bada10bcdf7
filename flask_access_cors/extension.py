"""The Flask layer: Flask picks the route and its policy, :func:`.decision.decide`
decides, and this module turns the decision into a response.

The decision is taken in a ``before_request`` hook inserted ahead of the app's
own, so an app's authentication hook can never turn a preflight into a ``401``;
when the app has URL value preprocessors (which Flask runs before any hook), a
guard inserted ahead of them decides instead. The CORS headers of a request that
proceeds are added at the WSGI layer (:mod:`.wsgi`). Every denial is accounted
for in one place, :meth:`_State.deny`.
"""

from __future__ import annotations

import functools
import logging
import threading
import weakref
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from blinker import Namespace
from flask import Blueprint, Flask, Response, current_app, has_app_context, has_request_context, request
from flask.sansio.blueprints import BlueprintSetupState
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response as BaseResponse

from . import metrics
from .commands import cli
from .decision import Decision, decide
from .events import Event, EventLog, Store, open_store
from .gate import build_gate
from .login import LoginLinks
from .origins import is_loopback_host
from .responses import apply_later, respond
from .routing import MARKS, Router
from .scopes import Scopes, ViewMarks
from .settings import POLICY_SETTINGS, SETTINGS, Problems, config_settings, parse_settings
from .tokens import Identity
from .wsgi import BOX, HeaderMiddleware

__all__ = ["AccessCors", "request_denied"]

logger = logging.getLogger("flask_access_cors")

#: Sent for every denial, debug or not: ``request_denied.send(app, event=event)``.
request_denied = Namespace().signal("request-denied")

F = TypeVar("F", bound=Callable[..., Any])
R = TypeVar("R", bound=BaseResponse)

#: Set by the guard preprocessor: the answer it decided on (``None``: proceed).
_DECIDED = "flask_access_cors.decided"
_IDENTITY = "flask_access_cors.identity"


class _Answer(HTTPException):
    """The extension's own answer, raised past the app's URL value preprocessors."""

    def __init__(self, response: Response) -> None:
        super().__init__(response=response)


class _State:
    """One app's compiled configuration (``app.extensions["access_cors"]``)."""

    def __init__(self, app: Flask, raw: Mapping[str, Any], problems: Problems,
                 decorated: weakref.WeakKeyDictionary[Callable[..., Any], Callable[..., Any]]) -> None:
        self.app = app
        parsed = parse_settings(raw, "init_app", problems, scope="app")
        defaults = {n: s.default for n, s in SETTINGS.items()}
        values = {**parse_settings(defaults, "defaults", Problems(), scope="app"), **parsed}
        before = len(problems.items)
        self.gate, self.issuer = build_gate(values, problems)
        # Audiences are checked against the issuers only when those are right: one mistake,
        # one report.
        gate_ok = len(problems.items) == before
        admit = self.gate.admit_audience if gate_ok else _any_audience
        self.login: LoginLinks | None = None
        if values["login_url"] is not None:
            if not app.secret_key:
                problems.add("missing_secret_key",
                             "login_url needs app.secret_key, which signs the return link")
            else:
                self.login = LoginLinks(values["login_url"], app.secret_key)
        self.retry_after = str(max(int(values["jwks_cooldown"]), 1))
        store = values["event_store"] or f"sqlite:///{app.instance_path}/access_cors_events.sqlite3"
        self.event_store: str = store
        self._store: Store | None = None
        try:  # opening is lazy for sqlite and redis: this checks the URL, connects nothing
            self._store = open_store(store, retention=values["event_retention"])
        except (ValueError, ImportError) as exc:
            problems.add("invalid_value", f"event_store: {exc}")
        self._events: EventLog | None = None
        self._lock = threading.Lock()
        self.metrics = metrics.denials() if values["metrics"] else None
        self.trap = bool(app.config.get("TRAP_HTTP_EXCEPTIONS"))
        self.guarded = False
        scopes = Scopes(
            {n: v for n, v in parsed.items() if n in POLICY_SETTINGS},
            has_verifier=self.gate.optional or not gate_ok, admit_audience=admit,
            development=app.debug or app.testing,
            problems=problems,
        )
        self.router = Router(app, scopes, decorated, login=self.login is not None)
        problems.raise_if_any()

    def add_blueprint(self, name: str, layer: Mapping[str, Any], url_prefix: str | None) -> None:
        problems = Problems()
        self.router.scopes.add_blueprint(name, layer, url_prefix, problems)
        self.router.compile_views(problems)

    @property
    def events(self) -> EventLog:
        if self._events is None:
            with self._lock:
                if self._events is None:
                    assert self._store is not None  # else init_app raised ConfigError
                    self._events = EventLog(self._store)
        return self._events

    def decision(self, req: Any) -> Decision | None:
        """The decision for this request, without side effects (``None``: left alone)."""
        facts = self.router.facts(req)
        return None if facts is None else decide(facts, self.gate)

    def before_request(self) -> Response | None:
        """The first ``before_request`` hook (the guard has decided already, if installed)."""
        req = request._get_current_object()  # type: ignore[attr-defined]
        if _DECIDED in req.environ:
            decided: Response | None = req.environ.pop(_DECIDED)
            return decided
        return self.answer(req)

    def install_guard(self) -> None:
        """Decide ahead of the app's URL value preprocessors from now on."""
        with self._lock:
            if not self.guarded:
                self.app.url_value_preprocessors.setdefault(None, []).insert(0, self.guard)
                self.guarded = True

    def guard(self, endpoint: str | None, values: dict[str, Any] | None) -> None:
        """Decide ahead of the app's URL value preprocessors (a lookup of ``<org>``, say), so
        none of the app's code runs for a refused request. The answer is raised as a
        code-less ``HTTPException``, which Flask returns as is; under
        ``TRAP_HTTP_EXCEPTIONS`` that would become a 500, so the hook answers instead."""
        req = request._get_current_object()  # type: ignore[attr-defined]
        response = self.answer(req)
        if response is not None and not self.trap:
            raise _Answer(response)
        req.environ[_DECIDED] = response

    def answer(self, req: Any) -> Response | None:
        """Decide, account for a denial, and build the answer (``None``: on to the view)."""
        facts = self.router.facts(req)
        if facts is None:
            return None
        decision = decide(facts, self.gate)
        environ = req.environ
        box = (decision.headers, decision.private) if decision.headers or decision.private else None
        if BOX not in environ and box is not None:  # a WSGI stack built around Flask's wsgi_app
            apply_later(*box)
        environ[BOX] = box
        if decision.status == 0:
            if decision.identity is not None:
                environ[_IDENTITY] = decision.identity
            return None
        if decision.reason is not None:
            self.deny(req, decision)
        return respond(self.app, req, decision, self.login, self.retry_after)

    def deny(self, req: Any, decision: Decision) -> Event | None:
        """The one place a denial is accounted for: event, log line, signal.

        The event is built only when something reads it (``debug``, a signal
        receiver, or the logger at INFO), so a flood of denials costs little.
        """
        assert decision.reason is not None
        if self.metrics is not None:
            self.metrics.labels(decision.reason.value, decision.policy.name,
                                str(decision.status)).inc()
        debug = decision.policy.debug
        if not (debug or request_denied.receivers or logger.isEnabledFor(logging.INFO)):
            return None
        event = Event.create(
            status=decision.status,
            reason=decision.reason,
            request_type=decision.request_type,
            policy=decision.policy.name,
            method=req.environ.get("REQUEST_METHOD", ""),
            path=req.path,
            origin=req.environ.get("HTTP_ORIGIN"),
            remote_addr=req.remote_addr,
            identity=decision.identity.subject if decision.identity is not None else None,
            detail=decision.detail,
            # CF-Ray first: Cloudflare sets it, while any client can send an X-Request-ID
            request_id=req.environ.get("HTTP_CF_RAY") or req.environ.get("HTTP_X_REQUEST_ID"),
        )
        if debug:
            try:
                self.events.record(event)
            except Exception:  # the log counts its own failures; this is a bug guard
                logger.exception("flask-access-cors: the event log failed to record a denial")
        logger.info("%s %s %s: %s", event.status, event.method, event.path, event.message)
        request_denied.send(self.app, event=event)
        return event

def _any_audience(audience: str) -> bool:
    return True


class AccessCors:
    """Zero-Trust-style access control for a Flask app.

    ``AccessCors(app, **settings)`` or ``AccessCors()`` then
    ``init_app(app, **settings)``. Keyword settings override the app's
    ``ACCESS_CORS_*`` config.
    """

    def __init__(self, app: Flask | None = None, **settings: Any) -> None:
        self._settings = settings
        self._states: list[_State] = []
        #: Each function given to a decorator, and the wrapper it returned.
        self._decorated: weakref.WeakKeyDictionary[Callable[..., Any], Callable[..., Any]] = (
            weakref.WeakKeyDictionary()
        )
        if app is not None:
            self.init_app(app)
        else:
            problems = Problems()
            parse_settings(settings, "AccessCors", problems, scope="app")
            problems.raise_if_any()

    def init_app(self, app: Flask, **settings: Any) -> None:
        """Validate the settings (raising :class:`ConfigError` with every problem) and install
        the hook, the WSGI header wrapper and the ``flask access-cors`` commands."""
        if "access_cors" in app.extensions:
            raise RuntimeError("flask-access-cors is already initialised for this app")
        problems = Problems()
        raw = {**config_settings(app.config, problems), **self._settings, **settings}
        state = _State(app, raw, problems, self._decorated)
        for name, (layer, url_prefix) in app.extensions.get("access_cors_pending", {}).items():
            state.add_blueprint(name, layer, url_prefix)
        state.router.compile_views(Problems())
        # Everything compiled: only now does the app count as protected.
        app.extensions.pop("access_cors_pending", None)
        app.extensions["access_cors"] = state
        self._states.append(state)
        app.before_request_funcs.setdefault(None, []).insert(0, state.before_request)
        app.wsgi_app = HeaderMiddleware(  # type: ignore[method-assign]
            app.wsgi_app, app.url_value_preprocessors, state.install_guard)
        # Also on app.cli (the `flask.commands` entry point registers it for `flask`), so
        # app.test_cli_runner() finds it.
        app.cli.add_command(cli)

    # -- scopes ------------------------------------------------------------------

    def blueprint(self, bp: Blueprint, **settings: Any) -> Blueprint:
        """Give every view of ``bp`` a policy layered on the app's; returns ``bp``."""
        problems = Problems()
        layer = parse_settings(settings, f"blueprint {bp.name!r}", problems)
        problems.raise_if_any()

        def register(setup: BlueprintSetupState) -> None:
            name = f"{setup.name_prefix}.{setup.name}".lstrip(".")
            state = setup.app.extensions.get("access_cors")
            if isinstance(state, _State):
                state.add_blueprint(name, layer, setup.url_prefix)
            else:
                pending = setup.app.extensions.setdefault("access_cors_pending", {})
                pending[name] = (layer, setup.url_prefix)

        bp.record(register)
        return bp

    def cors(self, **settings: Any) -> Callable[[F], F]:
        """A policy for the routes of one view, layered on its blueprint's and the app's."""
        problems = Problems()
        layer = parse_settings(settings, "view", problems)
        problems.raise_if_any()

        def decorate(view: F) -> F:
            problems = Problems()
            for state in self._states:  # check the combination with each app's layer now
                state.router.scopes.compile((), f"view:{view.__name__}", problems, layer)
            problems.raise_if_any()
            return self._mark(view, settings=layer)

        return decorate

    def public(self, view: F) -> F:
        """The routes of this view need no authentication (CORS still applies)."""
        return self._mark(view, public=True)

    def exempt(self, view: F) -> F:
        """The extension leaves the routes of this view entirely alone."""
        return self._mark(view, exempt=True)

    def _mark(self, view: F, **marks: Any) -> F:
        """A wrapper carrying the marks: the function given is never changed, so a
        function shared by several routes keeps each route's own policy. A wrapper that
        is never registered while its function is (the decorator was put above
        ``@app.route``) is refused when the route's policy is compiled (:meth:`.routing.Router.marks`)."""
        before: ViewMarks = getattr(view, MARKS, ViewMarks())
        settings = marks.pop("settings", before.settings)
        if settings is not None and before.settings is not None:
            settings = {**before.settings, **settings}

        @functools.wraps(view)
        def marked(*args: Any, **kwargs: Any) -> Any:
            return view(*args, **kwargs)

        setattr(marked, MARKS, ViewMarks(
            settings=settings, public=marks.get("public", before.public),
            exempt=marks.get("exempt", before.exempt),
        ))
        self._decorated[view] = marked
        return marked  # type: ignore[return-value]

    # -- per request and per app ---------------------------------------------------

    def _state(self) -> _State:
        if has_app_context():
            app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
        elif len(self._states) == 1:
            app = self._states[0].app
        elif self._states:
            raise RuntimeError(
                f"this AccessCors serves {len(self._states)} apps: use it inside an app "
                "context (with app.app_context():) so it knows which one"
            )
        else:
            raise RuntimeError("AccessCors.init_app(app) has not been called")
        state = app.extensions.get("access_cors")
        if not isinstance(state, _State):
            raise RuntimeError("AccessCors.init_app(app) has not been called for this app")
        return state

    @property
    def events(self) -> EventLog:
        """The debug event log of the current app."""
        return self._state().events

    @property
    def identity(self) -> Identity | None:
        """The verified identity of the current request, or ``None``."""
        if not has_request_context():
            return None
        found = request.environ.get(_IDENTITY)
        return found if isinstance(found, Identity) else None

    def issue_token(self, subject: str, claims: Mapping[str, Any] | None = None,
                    ttl: int = 3600) -> str:
        """A signed access token for ``subject`` (needs ``jwt_secret`` or ``signing_key``)."""
        issuer = self._state().issuer
        if issuer is None:
            raise RuntimeError("issue_token needs jwt_secret or signing_key to be configured")
        return issuer.issue(subject, claims, ttl)

    def set_access_cookie(self, response: R, token: str) -> R:
        """Set the access cookie: ``HttpOnly``, ``Secure``, ``SameSite=Lax``, ``Path=/``."""
        response.set_cookie(self._state().gate.cookie_name, token, httponly=True,
                            secure=_secure_cookie(), samesite="Lax", path="/")
        return response

    def clear_access_cookie(self, response: R) -> R:
        """Expire the access cookie (log out), with the attributes it was set with."""
        response.delete_cookie(self._state().gate.cookie_name, path="/", secure=_secure_cookie(),
                               httponly=True, samesite="Lax")
        return response

    def safe_return_path(self, value: str | None) -> str | None:
        """The verified target of a signed ``redirect_url``: a local path or an allowed origin."""
        state = self._state()
        if state.login is None:
            return None
        return state.login.safe_return_path(value, state.router.scopes.is_exact_origin)


def _secure_cookie() -> bool:
    """Secure, except on a plain-http request to a loopback host (local development)."""
    if not has_request_context():
        return True
    host = request.host.rsplit(":", 1)[0] if not request.host.endswith("]") else request.host
    return not (request.scheme == "http" and is_loopback_host(host))
