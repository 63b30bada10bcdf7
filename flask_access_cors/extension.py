"""The Flask layer: settings per scope, the request hook, and the one denial function.

The decision is taken in a ``before_request`` hook inserted ahead of the app's
own, so an app's authentication hook can never turn a preflight into a ``401``;
when the app has URL value preprocessors (which Flask runs before any hook), a
guard inserted ahead of them decides instead. The CORS
headers of a request that proceeds are put on the response at the WSGI layer
(a ``start_response`` wrapper), so aborts, error handlers and unhandled 500s
get exactly the same set, without patching Flask, at the cost of a list merge.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote, unquote, urljoin

from blinker import Namespace
from flask import (
    Blueprint,
    Flask,
    Response,
    current_app,
    has_app_context,
    has_request_context,
    request,
)
from flask.sansio.blueprints import BlueprintSetupState
from itsdangerous import BadSignature, URLSafeTimedSerializer
from werkzeug.exceptions import HTTPException, MethodNotAllowed
from werkzeug.wrappers import Response as BaseResponse

from . import cors
from .cors import ACTUAL, MALFORMED, NOT_CORS, PREFLIGHT, SAME_ORIGIN, Denial
from .events import Event, EventLog, Store, open_store
from .gate import Gate, authorize
from .origins import is_loopback_host
from .policy import Header, Policy, compile_policy, merge_layers, policy_defaults
from .settings import (
    POLICY_SETTINGS,
    SETTINGS,
    Problems,
    check_policy,
    config_settings,
    parse_settings,
)
from .tokens import Identity, JWKSClient, ServiceTokens, TokenIssuer, TokenVerifier, load_private_key

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = ["AccessCors", "request_denied"]

logger = logging.getLogger("flask_access_cors")

#: Sent for every denial, debug or not: ``request_denied.send(app, event=event)``.
request_denied = Namespace().signal("request-denied")

F = TypeVar("F", bound=Callable[..., Any])
R = TypeVar("R", bound=BaseResponse)

_BOX = "flask_access_cors.headers"
#: Set by the guard preprocessor: the answer it decided on (``None``: proceed).
_DECIDED = "flask_access_cors.decided"
_IDENTITY = "flask_access_cors.identity"
_VIEW_SETTINGS = "_access_cors_settings"
_PUBLIC = "_access_cors_public"
_EXEMPT = "_access_cors_exempt"
_RETURN_SALT = "flask-access-cors.return"
_RETURN_MAX_AGE = 600
_BODY_FORBIDDEN = b'{"error": "forbidden"}'
_BODY_UNAVAILABLE = b'{"error": "unavailable"}'
_SLASHES = re.compile(r"/{2,}")


@dataclass(slots=True)
class Outcome:
    """What happens to one request. ``status`` 0 means: on to the view."""

    policy: Policy
    request_type: str
    headers: Iterable[Header] = ()
    status: int = 0
    reason: str | None = None
    detail: str | None = None
    identity: Identity | None = None
    location: str | None = None
    login_url: str | None = field(default=None)


def _merge_headers(headers: list[tuple[str, str]], add: Iterable[Header]) -> None:
    """Replace any ``Access-Control-*`` header with ours and merge ``Vary``."""
    for name, _ in headers:
        if name[0] in "AaVv":
            break
    else:  # the usual case: nothing to replace or merge
        headers.extend(add)
        return
    vary_at = -1
    for i in range(len(headers) - 1, -1, -1):
        low = headers[i][0].lower()
        if low.startswith("access-control-"):
            del headers[i]
            vary_at -= vary_at >= 0
        elif low == "vary":
            if vary_at >= 0:  # fold repeated Vary headers into one
                headers[i] = ("Vary", f"{headers[i][1]}, {headers[vary_at][1]}")
                del headers[vary_at]
            vary_at = i
    for name, value in add:
        if name != "Vary":
            headers.append((name, value))
        elif vary_at < 0:
            headers.append((name, value))
            vary_at = len(headers) - 1
        else:
            present = [v.strip() for v in headers[vary_at][1].split(",") if v.strip()]
            known = {v.lower() for v in present}
            if "*" in known:
                continue
            present += [v for v in value.split(", ") if v.lower() not in known]
            headers[vary_at] = ("Vary", ", ".join(present))


class _Answer(HTTPException):
    """The extension's own answer, raised past the app's URL value preprocessors."""

    def __init__(self, response: Response) -> None:
        super().__init__(response=response)


class _HeaderMiddleware:
    """Adds the headers the hook decided on, at ``start_response``."""

    def __init__(self, wsgi_app: WSGIApplication, state: _State) -> None:
        self.wsgi_app = wsgi_app
        self.state = state

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        state = self.state
        if not state.guarded and any(state.app.url_value_preprocessors.values()):
            state.install_guard()
        environ[_BOX] = None

        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            add = environ[_BOX]
            if add:
                _merge_headers(headers, add)
            return start_response(status, headers, exc_info)

        return self.wsgi_app(environ, start)


class _State:
    """One app's compiled configuration (``app.extensions["access_cors"]``)."""

    def __init__(self, app: Flask, raw: Mapping[str, Any],
                 problems: Problems) -> None:
        self.app = app
        parsed = parse_settings(raw, "init_app", problems, scope="app")
        defaults = {n: SETTINGS[n].default for n in SETTINGS if SETTINGS[n].scope == "app"}
        app_values = {**parse_settings(defaults, "defaults", Problems(), scope="app"), **parsed}
        self.app_layer = {n: v for n, v in parsed.items() if n in POLICY_SETTINGS}
        self.defaults = policy_defaults()
        self.gate = self._build_gate(app_values, problems)
        self.issuer: TokenIssuer | None = self._build_issuer(app_values, problems)
        self.login_url: str | None = app_values["login_url"]
        self.serializer: URLSafeTimedSerializer | None = None
        if self.login_url is not None:
            if not app.secret_key:
                problems.add(
                    "missing_secret_key",
                    "login_url needs app.secret_key, which signs the return link",
                )
            else:
                self.serializer = URLSafeTimedSerializer(app.secret_key, salt=_RETURN_SALT)
        self.retry_after = str(max(int(app_values["jwks_cooldown"]), 1))
        store = app_values["event_store"] or (
            f"sqlite:///{app.instance_path}/access_cors_events.sqlite3"
        )
        self.event_store: str = store
        self.event_retention: int = app_values["event_retention"]
        self._store: Store | None = None
        try:  # opening is lazy for sqlite and redis: this checks the URL, connects nothing
            self._store = open_store(store, retention=self.event_retention)
        except (ValueError, ImportError) as exc:
            problems.add("invalid_value", f"event_store: {exc}")
        self._events: EventLog | None = None
        self._lock = threading.Lock()
        self.merge_slashes = app.url_map.merge_slashes
        self.trap = bool(app.config.get("TRAP_HTTP_EXCEPTIONS"))
        self.guarded = False
        #: Parsed blueprint layers and URL prefixes, by registered (dotted) name.
        self.blueprints: dict[str, tuple[dict[str, Any], str | None]] = {}
        self.by_chain: dict[tuple[str, ...], Policy] = {}
        self.by_endpoint: dict[str, Policy | None] = {}
        self.prefixes: list[tuple[str, Policy]] = []
        self.app_policy = self._compile((), "app", problems)
        problems.raise_if_any()

    # -- configuration ---------------------------------------------------------

    def _build_gate(self, values: dict[str, Any], problems: Problems) -> Gate:
        team = values["team_domain"]
        jwks_url = values["jwks_url"] or (f"https://{team}/cdn-cgi/access/certs" if team else None)
        issuer = values["issuer"] or (f"https://{team}" if team else None)
        audience = values["audience"]
        secret, pem = values["jwt_secret"], values["signing_key"]
        if secret is not None and len(secret) < 32:
            secret = None  # reported as weak_secret by the setting's parser
        algorithms = values["algorithms"]
        verifier: TokenVerifier | None = None
        before = len(problems.items)
        if sum(x is not None for x in (jwks_url, secret, pem)) > 1:
            problems.add(
                "conflicting_keys",
                "give one of jwks_url/team_domain, jwt_secret and signing_key: one verifier per app",
            )
        elif jwks_url is not None:
            if not audience:
                problems.add("missing_audience", "a JWKS verifier needs audience (the AUD tag)")
            if not issuer:
                problems.add("missing_issuer", "a JWKS verifier needs issuer")
            algs = algorithms or ("RS256", "ES256")
            if "HS256" in algs:
                problems.add("conflicting_keys", "HS256 cannot be used with a JWKS")
            if len(problems.items) == before:
                jwks = JWKSClient(jwks_url, cooldown=values["jwks_cooldown"])
                verifier = TokenVerifier(algorithms=algs, audience=audience, issuer=issuer,
                                         leeway=values["leeway"], jwks=jwks)
        elif secret is not None:
            if algorithms and algorithms != ("HS256",):
                problems.add("conflicting_keys", "jwt_secret verifies HS256 tokens only")
            else:
                verifier = TokenVerifier(algorithms=("HS256",), audience=audience, issuer=issuer,
                                         leeway=values["leeway"], key=secret)
        elif pem is not None:
            try:
                _, public, alg = load_private_key(pem)
            except ValueError as exc:
                problems.add("invalid_value", f"signing_key: {exc}")
            else:
                if algorithms and algorithms != (alg,):
                    problems.add("conflicting_keys", f"signing_key is an {alg} key")
                else:
                    verifier = TokenVerifier(algorithms=(alg,), audience=audience, issuer=issuer,
                                             leeway=values["leeway"], key=public)
        elif algorithms:
            problems.add("invalid_value", "algorithms is set but no key or JWKS is configured")
        tokens = ServiceTokens(values["service_tokens"]) if values["service_tokens"] else None
        return Gate(verifier, tokens, values["token_headers"], values["cookie_name"])

    def _build_issuer(self, values: dict[str, Any], problems: Problems) -> TokenIssuer | None:
        audience = values["audience"][0] if values["audience"] else None
        if values["jwt_secret"] is not None and len(values["jwt_secret"]) >= 32:
            return TokenIssuer(
                algorithm="HS256", key=values["jwt_secret"], issuer=values["issuer"],
                audience=audience,
            )
        if values["signing_key"] is not None:
            try:
                private, _, alg = load_private_key(values["signing_key"])
            except ValueError:
                return None  # reported by _build_gate
            return TokenIssuer(algorithm=alg, key=private, issuer=values["issuer"], audience=audience)
        return None

    def _compile(self, chain: tuple[str, ...], name: str, problems: Problems,
                 view: Mapping[str, Any] | None = None) -> Policy:
        layers: list[Mapping[str, Any]] = [
            self.defaults, self.app_layer, *(self.blueprints[b][0] for b in chain)
        ]
        if view is not None:
            layers.append(view)
        merged = merge_layers(*layers)
        check_policy(merged, name, problems)
        policy = compile_policy(name, merged)
        if policy.preflight == "gate":
            logger.warning(
                "flask-access-cors: %s: preflight='gate' makes browsers fail every preflight "
                "(they never send credentials on one); use 'respond' unless a proxy in front "
                "adds them", name,
            )
        if policy.gate and self.gate.verifier is None and self.gate.service_tokens is None:
            problems.add(
                "missing_verifier",
                f"{name}: gate/require is on but no verifier (team_domain, jwks_url, jwt_secret, "
                "signing_key) and no service_tokens are configured",
            )
        return policy

    def _chain(self, blueprint: str | None) -> tuple[str, ...]:
        """The configured blueprints enclosing ``blueprint``, outermost first."""
        if not blueprint:
            return ()
        parts = blueprint.split(".")
        names = (".".join(parts[: i + 1]) for i in range(len(parts)))
        return tuple(n for n in names if n in self.blueprints)

    def _chain_policy(self, chain: tuple[str, ...], problems: Problems) -> Policy:
        if not chain:
            return self.app_policy
        policy = self.by_chain.get(chain)
        if policy is None:
            before = len(problems.items)
            policy = self._compile(chain, f"blueprint:{chain[-1]}", problems)
            if len(problems.items) == before:  # a policy with problems is never served
                self.by_chain[chain] = policy
        return policy

    def add_blueprint(self, name: str, layer: dict[str, Any], url_prefix: str | None,
                      problems: Problems) -> None:
        self.blueprints[name] = (layer, url_prefix)
        self.by_chain.clear()
        self.by_endpoint.clear()
        policy = self._chain_policy(self._chain(name), problems)
        prefixes = [p for p in self.prefixes if p[0] != (url_prefix or "")]
        if url_prefix and url_prefix.strip("/"):
            prefixes.append((url_prefix.rstrip("/"), policy))
        self.prefixes = sorted(prefixes, key=lambda p: -len(p[0]))
        self.compile_views(problems)

    def compile_views(self, problems: Problems) -> None:
        for endpoint in list(self.app.view_functions):
            self._compile_endpoint(endpoint, problems)

    def _compile_endpoint(self, endpoint: str, problems: Problems) -> Policy | None:
        before = len(problems.items)
        view = self.app.view_functions.get(endpoint)
        policy: Policy | None
        if view is not None and getattr(view, _EXEMPT, False):
            policy = None
        else:
            chain = self._chain(endpoint.rpartition(".")[0])
            layer: dict[str, Any] | None = getattr(view, _VIEW_SETTINGS, None)
            if getattr(view, _PUBLIC, False):
                layer = {**(layer or {}), "gate": False, "require": None}
            if layer is None:
                policy = self._chain_policy(chain, problems)
            else:
                policy = self._compile(chain, f"view:{endpoint}", problems, layer)
        if len(problems.items) == before:  # a policy with problems is never served
            self.by_endpoint[endpoint] = policy
        return policy

    def endpoint_policy(self, endpoint: str) -> Policy | None:
        """The policy of a view added after start; compiled once, then looked up.

        A view whose settings are wrong in combination raises :class:`ConfigError` on
        every request to it (a 500, logged by Flask): it fails closed, never open.
        """
        problems = Problems()
        policy = self._compile_endpoint(endpoint, problems)
        problems.raise_if_any()
        return policy

    def fallback_policy(self, path: str) -> Policy:
        """For requests that failed routing: the blueprint owning the URL prefix, or the app."""
        for prefix, policy in self.prefixes:
            if path == prefix or path.startswith(prefix + "/"):
                return policy
        return self.app_policy

    @property
    def events(self) -> EventLog:
        if self._events is None:
            with self._lock:
                if self._events is None:
                    assert self._store is not None  # else init_app raised ConfigError
                    self._events = EventLog(self._store)
        return self._events

    # -- the request -----------------------------------------------------------

    def before_request(self) -> Response | None:
        """The first ``before_request`` hook: decide, and answer or let the request on.

        When the app has URL value preprocessors (which Flask runs before any
        ``before_request`` hook), :meth:`guard` has decided already.
        """
        req = request._get_current_object()  # type: ignore[attr-defined]
        environ = req.environ
        if _DECIDED in environ:
            decided: Response | None = environ.pop(_DECIDED)
            return decided
        return self.answer(req)

    def install_guard(self) -> None:
        """Decide ahead of the app's URL value preprocessors (a lookup of ``<org>``,
        say), so none of the app's code runs for a refused request."""
        with self._lock:
            if not self.guarded:
                self.app.url_value_preprocessors.setdefault(None, []).insert(0, self.guard)
                self.guarded = True

    def guard(self, endpoint: str | None, values: dict[str, Any] | None) -> None:
        """An answer is raised past the app's preprocessors as a code-less
        ``HTTPException``, which Flask returns as is (no error handler replaces it).
        Under ``TRAP_HTTP_EXCEPTIONS`` a raise would become a 500, so the answer is
        left to the ``before_request`` hook, and the preprocessors do run."""
        req = request._get_current_object()  # type: ignore[attr-defined]
        response = self.answer(req)
        if response is not None and not self.trap:
            raise _Answer(response)
        req.environ[_DECIDED] = response

    def answer(self, req: Any) -> Response | None:
        """Decide, account for a denial, and build the answer (``None``: on to the view)."""
        outcome = self.decide(req)
        if outcome is None:
            return None
        environ = req.environ
        if _BOX not in environ:  # a WSGI stack built around Flask's wsgi_app directly
            self.apply_later(outcome.headers)
        environ[_BOX] = outcome.headers
        if outcome.status == 0:
            if outcome.identity is not None:
                environ[_IDENTITY] = outcome.identity
            return None
        if outcome.reason is not None:
            self.deny(req, outcome)
        return self.respond(outcome)

    @staticmethod
    def apply_later(headers: Iterable[Header]) -> None:
        from flask import after_this_request

        @after_this_request
        def _apply(response: Response) -> Response:
            items = list(response.headers.items())
            _merge_headers(items, headers)
            response.headers.clear()
            for name, value in items:
                response.headers.add(name, value)
            return response

    def decide(self, req: Any) -> Outcome | None:
        """Classify the request, pick its policy, and decide. No side effects."""
        environ = req.environ
        rule = req.url_rule
        route_methods: Collection[str] | None
        if rule is not None:
            try:
                policy = self.by_endpoint[rule.endpoint]
            except KeyError:
                policy = self.endpoint_policy(rule.endpoint)
            route_methods = rule.methods
            if policy is None:
                acrm = environ.get("HTTP_ACCESS_CONTROL_REQUEST_METHOD")
                if req.method != "OPTIONS" or acrm is None:
                    return None
                found = self.rule_for(req, acrm.upper())
                if found is None or found[1] is rule.methods:
                    return None
                policy, route_methods = found
        else:
            policy = self.fallback_policy(req.path)
            exc = req.routing_exception
            route_methods = (
                frozenset(exc.valid_methods or ()) if isinstance(exc, MethodNotAllowed) else None
            )
        origin: str | None = environ.get("HTTP_ORIGIN")
        if origin is None:
            kind = NOT_CORS
        else:
            kind = cors.classify(
                req.method, origin, _own_origin(environ, origin),
                "HTTP_ACCESS_CONTROL_REQUEST_METHOD" in environ,
            )
        headers: Iterable[Header]
        if (policy.excluded_exact or policy.excluded_prefixes) and policy.is_excluded(
            self.routed_path(req.path)
        ):
            if kind is not NOT_CORS and kind is not SAME_ORIGIN:
                return Outcome(policy, kind, policy.vary_only, 403, "excluded_path", req.path)
            headers = policy.vary_only  # no CORS header ever; the gate still applies
        elif kind is PREFLIGHT:
            assert origin is not None
            request_method = environ["HTTP_ACCESS_CONTROL_REQUEST_METHOD"]
            if (
                rule is not None
                and route_methods is not None
                and request_method.upper() not in route_methods
            ):
                # One URL, one view per method (@app.get + @app.post): Werkzeug matched the
                # OPTIONS to the first rule; ask about the rule the actual request will hit.
                found = self.rule_for(req, request_method.upper())
                if found is not None:
                    policy, route_methods = found
            if policy.preflight == "gate":
                gate = self.check_gate(policy, kind, environ, policy.vary_only)
                if gate is not None:
                    if gate.status == 401:
                        self.add_login(req, gate, kind, origin)
                    return gate
            result = cors.preflight(
                policy, origin, request_method,
                environ.get("HTTP_ACCESS_CONTROL_REQUEST_HEADERS"),
                environ.get("HTTP_ACCESS_CONTROL_REQUEST_PRIVATE_NETWORK"),
                route_methods,
            )
            if isinstance(result, Denial):
                return Outcome(policy, kind, policy.vary_only, 403, result.reason, result.detail)
            if policy.preflight == "bypass":
                return Outcome(policy, kind, result)
            return Outcome(policy, kind, result, 204)
        if kind is ACTUAL:
            assert origin is not None
            answer = cors.actual(policy, origin, environ.get("REQUEST_METHOD", req.method))
            if isinstance(answer, Denial):
                return Outcome(policy, kind, policy.vary_only, 403, answer.reason, answer.detail)
            headers = answer
        else:
            headers = policy.vary_only
        if policy.gate:
            gate = self.check_gate(policy, kind, environ, headers)
            if gate is not None:
                if gate.status == 0:
                    return gate
                if gate.status in (302, 401) and gate.reason is not None:
                    self.add_login(req, gate, kind, origin)
                return gate
        return Outcome(policy, kind, headers)

    def rule_for(self, req: Any, method: str) -> tuple[Policy, Collection[str] | None] | None:
        """The policy and methods of the rule ``method`` would reach at this URL, if any."""
        from flask.globals import request_ctx

        adapter = request_ctx.url_adapter
        if adapter is None:
            return None
        try:
            rule, _ = adapter.match(method=method, return_rule=True)
        except HTTPException:
            return None
        policy = self.by_endpoint.get(rule.endpoint, False)
        if policy is False:
            policy = self.endpoint_policy(rule.endpoint)
        if not isinstance(policy, Policy):  # an exempt view is left alone
            return None
        return policy, rule.methods

    def check_gate(self, policy: Policy, kind: str, environ: Mapping[str, Any],
                   headers: Iterable[Header]) -> Outcome | None:
        found = self.gate.identify(environ)
        if isinstance(found, Denial):
            return Outcome(policy, kind, headers, found.status, found.reason, found.detail)
        if not authorize(policy.require, found):
            return Outcome(policy, kind, headers, 403, "access_denied", found.subject,
                           identity=found)
        return Outcome(policy, kind, headers, 0, identity=found) if kind is not PREFLIGHT else None

    def add_login(self, req: Any, outcome: Outcome, kind: str, origin: str | None) -> None:
        """Point an unauthenticated caller at the login page, with a signed way back."""
        if self.serializer is None or self.login_url is None or outcome.status != 401:
            return
        accept = req.accept_mimetypes
        navigating = req.headers.get("Sec-Fetch-Mode") == "navigate" or (
            "Sec-Fetch-Mode" not in req.headers
            and kind in (NOT_CORS, SAME_ORIGIN)
            and accept["text/html"] > accept["application/json"]
        )
        if navigating and req.method in ("GET", "HEAD"):
            target = quote(req.path, safe="/:@!$&'()*+,;=-._~")
            if req.query_string:
                target += "?" + req.query_string.decode("latin-1")
            outcome.status = 302
            outcome.location = self.login_link(target)
        elif kind in (ACTUAL, PREFLIGHT) and origin is not None:
            # absolute: the page that reads it lives on another origin
            outcome.login_url = urljoin(req.host_url, self.login_link(origin))
        else:
            outcome.login_url = self.login_url

    def login_link(self, target: str) -> str:
        assert self.serializer is not None and self.login_url is not None
        signed = self.serializer.dumps(target)
        sep = "&" if "?" in self.login_url else "?"
        return f"{self.login_url}{sep}redirect_url={quote(signed)}"

    def routed_path(self, path: str) -> str:
        """The path as the router matched it (Werkzeug merges repeated slashes)."""
        if self.merge_slashes and "//" in path:
            return _SLASHES.sub("/", path)
        return path

    def deny(self, req: Any, outcome: Outcome) -> Event | None:
        """The one place a denial is accounted for: event, log line, signal.

        The event is built only when something reads it (``debug``, a signal
        receiver, or the logger at INFO), so a flood of denials costs little.
        """
        debug = outcome.policy.debug
        if not (debug or request_denied.receivers or logger.isEnabledFor(logging.INFO)):
            return None
        kind = MALFORMED if outcome.reason == "origin_malformed" else outcome.request_type
        identity = outcome.identity.subject if outcome.identity is not None else None
        event = Event.create(
            status=outcome.status,
            reason=outcome.reason or "",
            request_type=kind,
            policy=outcome.policy.name,
            method=req.environ.get("REQUEST_METHOD", ""),
            path=req.path,
            origin=req.environ.get("HTTP_ORIGIN"),
            remote_addr=req.remote_addr,
            identity=identity,
            detail=outcome.detail,
        )
        if debug:
            try:
                self.events.record(event)
            except Exception:  # the log counts its own failures; this is a bug guard
                logger.exception("flask-access-cors: the event log failed to record a denial")
        logger.info("%s %s %s: %s", event.status, event.method, event.path, event.message)
        request_denied.send(self.app, event=event)
        return event

    def respond(self, outcome: Outcome) -> Response:
        status = outcome.status
        response_class = self.app.response_class
        if status == 204:
            response = response_class(status=204)
            del response.headers["Content-Type"]  # an empty answer has no media type
            return response
        if status == 302:
            return response_class(status=302, headers={"Location": outcome.location or "/"})
        if status == 401:
            body = json.dumps({"error": "unauthorized", "login_url": outcome.login_url})
            return response_class(body, 401, mimetype="application/json")
        if status == 503:
            return response_class(
                _BODY_UNAVAILABLE, 503, {"Retry-After": self.retry_after},
                mimetype="application/json",
            )
        return response_class(_BODY_FORBIDDEN, status, mimetype="application/json")

    def safe_return_path(self, value: str | None) -> str | None:
        if not value or self.serializer is None:
            return None
        try:
            target = self.serializer.loads(value, max_age=_RETURN_MAX_AGE)
        except BadSignature:
            return None
        if not isinstance(target, str):
            return None
        if target.startswith("/"):
            return target if _is_local_path(target) else None
        if self.is_exact_origin(target):
            return target
        return None

    def is_exact_origin(self, origin: str) -> bool:
        policies = [self.app_policy, *self.by_chain.values()]
        policies += [p for p in self.by_endpoint.values() if p is not None]
        return any(origin in p.origins.exact for p in policies)


def _own_origin(environ: Mapping[str, Any], origin: str) -> str:
    """This request's own origin as a browser would serialise it (after ``ProxyFix``).

    Only built when ``origin`` could be it: most cross-origin requests end in
    another host name, and that is one ``endswith`` away.
    """
    scheme: str = environ["wsgi.url_scheme"]
    host: str | None = environ.get("HTTP_HOST")
    if host and ":" not in host and not origin.endswith(host.lower()):
        return ""
    if not host:
        host = f"{environ.get('SERVER_NAME', '')}:{environ.get('SERVER_PORT', '')}"
    if (scheme == "http" and host.endswith(":80")) or (scheme == "https" and host.endswith(":443")):
        host = host.rpartition(":")[0]
    return f"{scheme}://{host.lower()}"


def _is_local_path(target: str) -> bool:
    """A path on this host, whatever a browser makes of it (no ``//host``, ``/\\host``)."""
    decoded = target
    for _ in range(3):  # see through double encoding of / and \
        decoded = unquote(decoded)
    for candidate in (target, decoded):
        if not candidate.startswith("/") or candidate.startswith(("//", "/\\")):
            return False
        if "\\" in candidate or not candidate.isprintable() or any(c.isspace() for c in candidate):
            return False
    return True


class AccessCors:
    """Zero-Trust-style access control for a Flask app.

    ``AccessCors(app, **settings)`` or ``AccessCors()`` then
    ``init_app(app, **settings)``. Keyword settings override the app's
    ``ACCESS_CORS_*`` config.
    """

    def __init__(self, app: Flask | None = None, **settings: Any) -> None:
        self._settings = settings
        self._app: Flask | None = None
        self._states: list[_State] = []
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
        raw = config_settings(app.config, problems)
        raw.update(self._settings)
        raw.update(settings)
        state = _State(app, raw, problems)
        pending = app.extensions.get("access_cors_pending", {})
        for name, (layer, url_prefix) in pending.items():
            problems = Problems()
            state.add_blueprint(name, layer, url_prefix, problems)
            problems.raise_if_any()
        problems = Problems()
        state.compile_views(problems)
        problems.raise_if_any()
        # Everything compiled: only now does the app count as protected.
        app.extensions.pop("access_cors_pending", None)
        app.extensions["access_cors"] = state
        self._states.append(state)
        app.before_request_funcs.setdefault(None, []).insert(0, state.before_request)
        app.wsgi_app = _HeaderMiddleware(app.wsgi_app, state)  # type: ignore[method-assign]
        from .cli import cli

        app.cli.add_command(cli)
        if self._app is None:
            self._app = app

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
                problems = Problems()
                state.add_blueprint(name, layer, setup.url_prefix, problems)
                problems.raise_if_any()
            else:
                setup.app.extensions.setdefault("access_cors_pending", {})[name] = (
                    layer, setup.url_prefix,
                )

        bp.record(register)
        return bp

    def cors(self, **settings: Any) -> Callable[[F], F]:
        """A policy for one view, layered on its blueprint's and the app's."""
        problems = Problems()
        layer = parse_settings(settings, "view", problems)
        problems.raise_if_any()

        def decorate(view: F) -> F:
            setattr(view, _VIEW_SETTINGS, layer)
            problems = Problems()
            for state in self._states:  # check the combination with each app's layer now
                state._compile((), f"view:{view.__name__}", problems, layer)
            problems.raise_if_any()
            return view

        return decorate

    def public(self, view: F) -> F:
        """This view needs no authentication (CORS still applies)."""
        setattr(view, _PUBLIC, True)
        return view

    def exempt(self, view: F) -> F:
        """The extension leaves this view entirely alone."""
        setattr(view, _EXEMPT, True)
        return view

    # -- per request and per app ---------------------------------------------------

    def _state(self, app: Flask | None = None) -> _State:
        if app is None:
            app = current_app._get_current_object() if has_app_context() else self._app  # type: ignore[attr-defined]
        state = app.extensions.get("access_cors") if app is not None else None
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
        state = self._state()
        response.set_cookie(
            state.gate.cookie_name, token, httponly=True, secure=_secure_cookie(),
            samesite="Lax", path="/",
        )
        return response

    def clear_access_cookie(self, response: R) -> R:
        """Expire the access cookie (log out), with the attributes it was set with."""
        state = self._state()
        response.delete_cookie(
            state.gate.cookie_name, path="/", secure=_secure_cookie(), httponly=True,
            samesite="Lax",
        )
        return response

    def safe_return_path(self, value: str | None) -> str | None:
        """The verified target of a signed ``redirect_url``: a local path or an allowed origin."""
        return self._state().safe_return_path(value)


def _secure_cookie() -> bool:
    """Secure, except on a plain-http request to a loopback host (local development)."""
    if not has_request_context():
        return True
    host = request.host.rsplit(":", 1)[0] if not request.host.endswith("]") else request.host
    return not (request.scheme == "http" and is_loopback_host(host))

