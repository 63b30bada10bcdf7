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
import json
import logging
import threading
import weakref
from collections.abc import Callable, Collection, Mapping
from typing import Any, NamedTuple, TypeVar
from urllib.parse import unquote, urljoin, urlsplit

from blinker import Namespace
from flask import Blueprint, Flask, Response, current_app, has_app_context, has_request_context, request
from flask.globals import request_ctx
from flask.sansio.blueprints import BlueprintSetupState
from werkzeug.exceptions import HTTPException, MethodNotAllowed, SecurityError
from werkzeug.routing import RequestRedirect
from werkzeug.wrappers import Response as BaseResponse

from . import metrics
from .commands import cli
from .decision import Decision, Facts, decide
from .events import Event, EventLog, Store, open_store
from .gate import build_gate
from .login import LoginLinks
from .origins import is_loopback_host
from .policy import Header, Policy
from .scopes import Scopes, ViewMarks
from .settings import POLICY_SETTINGS, SETTINGS, Problems, config_settings, parse_settings
from .tokens import Identity
from .wsgi import BOX, HeaderMiddleware, merge_headers

__all__ = ["AccessCors", "request_denied"]

logger = logging.getLogger("flask_access_cors")

#: Sent for every denial, debug or not: ``request_denied.send(app, event=event)``.
request_denied = Namespace().signal("request-denied")

F = TypeVar("F", bound=Callable[..., Any])
R = TypeVar("R", bound=BaseResponse)

#: Set by the guard preprocessor: the answer it decided on (``None``: proceed).
_DECIDED = "flask_access_cors.decided"
_IDENTITY = "flask_access_cors.identity"
#: The attribute of a decorated view's wrapper holding its :class:`ViewMarks`.
_MARKS = "_access_cors_marks"
_BODY_FORBIDDEN = b'{"error": "forbidden"}'
_BODY_UNAVAILABLE = b'{"error": "unavailable"}'



class Route(NamedTuple):
    """What Flask's routing says about a request, for :class:`.decision.Facts`."""

    policy: Policy
    methods: Collection[str] | None
    options_view: Policy | None = None
    routed: bool = True


class _Answer(HTTPException):
    """The extension's own answer, raised past the app's URL value preprocessors."""

    def __init__(self, response: Response) -> None:
        super().__init__(response=response)


class _State:
    """One app's compiled configuration (``app.extensions["access_cors"]``)."""

    def __init__(self, app: Flask, raw: Mapping[str, Any], problems: Problems,
                 decorated: weakref.WeakKeyDictionary[Callable[..., Any], Callable[..., Any]]) -> None:
        self.app = app
        self.decorated = decorated
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
        self.scopes = Scopes(
            {n: v for n, v in parsed.items() if n in POLICY_SETTINGS},
            has_verifier=self.gate.optional or not gate_ok, admit_audience=admit,
            development=app.debug or app.testing,
            problems=problems,
        )
        problems.raise_if_any()

    @property
    def events(self) -> EventLog:
        if self._events is None:
            with self._lock:
                if self._events is None:
                    assert self._store is not None  # else init_app raised ConfigError
                    self._events = EventLog(self._store)
        return self._events

    # -- scopes ------------------------------------------------------------------

    def add_blueprint(self, name: str, layer: Mapping[str, Any], url_prefix: str | None) -> None:
        problems = Problems()
        self.scopes.add_blueprint(name, layer, url_prefix, problems)
        self.compile_views(problems)

    def compile_views(self, problems: Problems) -> None:
        for endpoint in list(self.app.view_functions):
            self.scopes.endpoint(endpoint, self.marks(endpoint, problems), problems)
        problems.raise_if_any()

    def marks(self, endpoint: str, problems: Problems) -> ViewMarks | None:
        """The decorators' settings for the view registered on ``endpoint``."""
        view = self.app.view_functions.get(endpoint)
        marks: ViewMarks | None = getattr(view, _MARKS, None)
        wrapper = self.decorated.get(view) if marks is None and view is not None else None
        if wrapper is not None and wrapper not in self.app.view_functions.values():
            problems.add("invalid_value", (
                f"view {endpoint!r}: an @access decorator was applied above the route "
                "decorator, so the route was registered without it; put @access.cors, "
                "@access.public and @access.exempt below @app.route"
            ))
        return marks

    def compile_pending(self) -> None:
        """Compile views added since start (a view whose settings are wrong is left out:
        it fails closed on its own requests)."""
        if len(self.scopes.by_endpoint) < len(self.app.view_functions):
            for endpoint in list(self.app.view_functions):
                if endpoint not in self.scopes.by_endpoint:
                    problems = Problems()
                    self.scopes.endpoint(endpoint, self.marks(endpoint, problems), problems)

    def policy_for(self, endpoint: str) -> Policy | None:
        """The policy of ``endpoint`` (``None``: exempt). A view added after start is compiled
        on first use; one whose settings are wrong fails closed: every request to it raises
        :class:`ConfigError` (a 500, logged by Flask), and it is never served open."""
        try:
            return self.scopes.by_endpoint[endpoint]
        except KeyError:
            problems = Problems()
            policy = self.scopes.endpoint(endpoint, self.marks(endpoint, problems), problems)
            problems.raise_if_any()
            return policy

    # -- the request -------------------------------------------------------------

    def route(self, req: Any) -> Route | None:
        """The request's policy and route facts (``None``: an exempt view, left alone).

        A preflight asks about another method: its policy is that of the rule the
        actual request will reach (one URL, one view per method: ``@app.get`` +
        ``@app.post``), unless the ``OPTIONS`` request itself will run a view that
        answers ``OPTIONS`` (the target is exempt, or in ``bypass`` mode): then that
        view's policy governs, exclusions and gate included.
        """
        environ = req.environ
        wanted = environ.get("HTTP_ACCESS_CONTROL_REQUEST_METHOD")
        preflight = wanted is not None and req.method == "OPTIONS" and "HTTP_ORIGIN" in environ
        method = wanted.upper() if preflight else req.method
        rule = req.url_rule
        if rule is None:
            exc = req.routing_exception
            if isinstance(exc, RequestRedirect):  # merged slashes, strict slashes: its target
                target, accepted = self.match(req, urlsplit(exc.new_url).path, method)
                if target is not None:
                    policy = self.policy_for(target.endpoint)
                    return None if policy is None else Route(policy, accepted, routed=False)
            valid = frozenset(exc.valid_methods or ()) if isinstance(exc, MethodNotAllowed) else None
            self.compile_pending()  # every view's excluded_paths count for an unrouted path
            return Route(self.scopes.fallback(req.path), valid, routed=False)
        policy = self.policy_for(rule.endpoint)
        if not preflight:
            return None if policy is None else Route(policy, rule.methods)
        handles_options = not getattr(rule, "provide_automatic_options", True)
        options_view = policy if handles_options else None
        methods: Collection[str] | None = rule.methods
        if methods is not None and method not in methods:
            other, other_methods = self.match(req, None, method)
            if other is not None and method in other_methods:
                policy, methods = self.policy_for(other.endpoint), other_methods
        if options_view is not None and (policy is None or policy.preflight == "bypass"):
            policy, methods = options_view, rule.methods
        return None if policy is None else Route(policy, methods, options_view)

    @staticmethod
    def match(req: Any, path: str | None, method: str) -> tuple[Any, Collection[str]]:
        """The rule ``method`` reaches at ``path`` (a URL path; ``None``: this request's)
        and the methods it accepts. When the URL does not accept ``method``, the rule of a
        method it does accept (its policy still governs) and the URL's methods."""
        adapter = request_ctx.url_adapter
        if adapter is None:
            return None, ()
        if path is not None:
            root = req.script_root
            path = unquote(path[len(root):] if root and path.startswith(root) else path)
        try:
            rule, _ = adapter.match(path_info=path, method=method, return_rule=True)
            return rule, rule.methods or ()
        except MethodNotAllowed as exc:
            valid = frozenset(exc.valid_methods or ())
        except HTTPException:
            return None, ()
        try:
            rule, _ = adapter.match(path_info=path, method=min(valid), return_rule=True)
        except (HTTPException, ValueError):  # ValueError: no valid method at all
            return None, ()
        return rule, valid

    def decision(self, req: Any) -> Decision | None:
        """The decision for this request, without side effects (``None``: left alone)."""
        if isinstance(req.routing_exception, SecurityError):
            raise req.routing_exception  # TRUSTED_HOSTS first: Flask's 400, never our answer
        route = self.route(req)
        if route is None:
            return None
        environ = req.environ
        facts = Facts(environ, environ.get("REQUEST_METHOD", req.method), req.path,
                      req.script_root, route.policy, route.methods, route.options_view,
                      route.routed, login=self.login is not None)
        return decide(facts, self.gate)

    def before_request(self) -> Response | None:
        """The first ``before_request`` hook (the guard has decided already, if installed)."""
        req = request._get_current_object()  # type: ignore[attr-defined]
        if _DECIDED in req.environ:
            decided: Response | None = req.environ.pop(_DECIDED)
            return decided
        return self.answer(req)

    def before_wsgi(self) -> None:
        if not self.guarded and any(self.app.url_value_preprocessors.values()):
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
        decision = self.decision(req)
        if decision is None:
            return None
        environ = req.environ
        box = (decision.headers, decision.private) if decision.headers or decision.private else None
        if BOX not in environ and box is not None:  # a WSGI stack built around Flask's wsgi_app
            _apply_later(*box)
        environ[BOX] = box
        if decision.status == 0:
            if decision.identity is not None:
                environ[_IDENTITY] = decision.identity
            return None
        if decision.reason is not None:
            self.deny(req, decision)
        return self.respond(req, decision)

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

    def respond(self, req: Any, decision: Decision) -> Response:
        response = self._response(req, decision)
        if decision.policy.expose_reasons and decision.reason is not None:
            # development only (warned about at start): the client learns the reason
            response.headers["X-Access-Cors-Reason"] = decision.reason.value
            if response.is_json:
                response.set_data(json.dumps({**response.get_json(), "reason": decision.reason.value}))
        return response

    def _response(self, req: Any, decision: Decision) -> Response:
        status = decision.status
        response_class = self.app.response_class
        if status == 204:
            response = response_class(status=204)
            del response.headers["Content-Type"]  # an empty answer has no media type
            return response
        if status == 302:
            assert self.login is not None and decision.login_target is not None
            location = self.login.link(decision.login_target, req.script_root)
            return response_class(status=302, headers={"Location": location})
        if status == 401:
            login_url: str | None = None
            if self.login is not None:
                login_url = self.login.url(req.script_root)
                if decision.login_target is not None:
                    # absolute: the page that reads it lives on another origin
                    link = self.login.link(decision.login_target, req.script_root)
                    login_url = urljoin(req.host_url, link)
            body = json.dumps({"error": "unauthorized", "login_url": login_url})
            return response_class(body, 401, mimetype="application/json")
        if status == 503:
            return response_class(_BODY_UNAVAILABLE, 503, {"Retry-After": self.retry_after},
                                  mimetype="application/json")
        return response_class(_BODY_FORBIDDEN, status, mimetype="application/json")


def _any_audience(audience: str) -> bool:
    return True


def _apply_later(headers: Collection[Header], private: bool) -> None:
    from flask import after_this_request

    @after_this_request
    def _apply(response: Response) -> Response:
        items = list(response.headers.items())
        merge_headers(items, headers, private)
        response.headers.clear()
        for name, value in items:
            response.headers.add(name, value)
        return response


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
        state.compile_views(Problems())
        # Everything compiled: only now does the app count as protected.
        app.extensions.pop("access_cors_pending", None)
        app.extensions["access_cors"] = state
        self._states.append(state)
        app.before_request_funcs.setdefault(None, []).insert(0, state.before_request)
        app.wsgi_app = HeaderMiddleware(app.wsgi_app, state.before_wsgi)  # type: ignore[method-assign]
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
                state.scopes.compile((), f"view:{view.__name__}", problems, layer)
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
        ``@app.route``) is refused when the route's policy is compiled (:meth:`_State.marks`)."""
        before: ViewMarks = getattr(view, _MARKS, ViewMarks())
        settings = marks.pop("settings", before.settings)
        if settings is not None and before.settings is not None:
            settings = {**before.settings, **settings}

        @functools.wraps(view)
        def marked(*args: Any, **kwargs: Any) -> Any:
            return view(*args, **kwargs)

        setattr(marked, _MARKS, ViewMarks(
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
        return state.login.safe_return_path(value, state.scopes.is_exact_origin)


def _secure_cookie() -> bool:
    """Secure, except on a plain-http request to a loopback host (local development)."""
    if not has_request_context():
        return True
    host = request.host.rsplit(":", 1)[0] if not request.host.endswith("]") else request.host
    return not (request.scheme == "http" and is_loopback_host(host))
