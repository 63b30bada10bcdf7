"""Flask picks the route, and with it the policy: the Flask layer's routing half.

:class:`Router` maps a request to its :class:`~.decision.Facts` (the policy and
what Flask's routing knows: the route's methods, whether a view answers
``OPTIONS`` itself, whether routing succeeded). Settings given by the decorators are read from the
view registered on each endpoint (:class:`~.scopes.ViewMarks` on the decorator's
wrapper), so they belong to routes, not to function objects.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Collection
from typing import Any
from urllib.parse import unquote, urlsplit

from flask import Flask
from flask.globals import request_ctx
from werkzeug.exceptions import HTTPException, MethodNotAllowed, SecurityError
from werkzeug.routing import RequestRedirect

from .decision import Facts
from .policy import Policy
from .scopes import Scopes, ViewMarks
from .settings import Problems

__all__ = ["MARKS", "Router"]

#: The attribute of a decorated view's wrapper holding its :class:`ViewMarks`.
MARKS = "_access_cors_marks"
_UNSEEN: Any = object()  # an endpoint not compiled yet


class Router:
    """One app's routes and their policies (compiled once, looked up per request)."""

    def __init__(self, app: Flask, scopes: Scopes,
                 decorated: weakref.WeakKeyDictionary[Callable[..., Any], Callable[..., Any]],
                 *, login: bool) -> None:
        self.app = app
        self.scopes = scopes
        #: ``login_url`` is configured (a fact every decision needs).
        self.login = login
        #: Each function given to a decorator, and the wrapper it returned.
        self.decorated = decorated

    def compile_views(self, problems: Problems) -> None:
        for endpoint in list(self.app.view_functions):
            self.scopes.endpoint(endpoint, self.marks(endpoint, problems), problems)
        problems.raise_if_any()

    def marks(self, endpoint: str, problems: Problems) -> ViewMarks | None:
        """The decorators' settings for the view registered on ``endpoint``."""
        view = self.app.view_functions.get(endpoint)
        marks: ViewMarks | None = getattr(view, MARKS, None)
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

    def facts(self, req: Any) -> Facts | None:
        """What Flask's routing says about this request, collected once for
        :func:`.decision.decide` (``None``: an exempt view, left alone).

        A preflight asks about another method: its policy is that of the rule the
        actual request will reach (one URL, one view per method: ``@app.get`` +
        ``@app.post``), unless the ``OPTIONS`` request itself will run a view that
        answers ``OPTIONS`` (the target is exempt, or in ``bypass`` mode): then that
        view's policy governs, exclusions and gate included.
        """
        environ = req.environ
        wanted = environ.get("HTTP_ACCESS_CONTROL_REQUEST_METHOD")
        rule = req.url_rule
        if rule is not None and wanted is None:  # the usual case: routed, not a preflight
            policy = self.scopes.by_endpoint.get(rule.endpoint, _UNSEEN)
            if policy is _UNSEEN:
                policy = self.policy_for(rule.endpoint)
            if policy is None:
                return None
            return Facts(environ, environ.get("REQUEST_METHOD") or req.method, req.path,
                         req.root_path, policy, rule.methods, None, True, self.login)
        preflight = wanted is not None and req.method == "OPTIONS" and "HTTP_ORIGIN" in environ
        method = wanted.upper() if preflight else req.method
        options_view: Policy | None = None
        routed = rule is not None
        if rule is None:
            exc = req.routing_exception
            if isinstance(exc, SecurityError):
                raise exc  # TRUSTED_HOSTS first: Flask's 400, never the extension's answer
            methods: Collection[str] | None = None
            policy = None
            if isinstance(exc, RequestRedirect):  # merged slashes, strict slashes: its target
                target, methods = self.match(req, urlsplit(exc.new_url).path, method)
                if target is not None:
                    policy = self.policy_for(target.endpoint)
                    if policy is None:
                        return None
            if policy is None:
                methods = frozenset(exc.valid_methods or ()) if isinstance(exc, MethodNotAllowed) else None
                self.compile_pending()  # every view's excluded_paths count for an unrouted path
                policy = self.scopes.fallback(req.path)
        else:
            policy = self.policy_for(rule.endpoint)
            methods = rule.methods
            if preflight:
                if not getattr(rule, "provide_automatic_options", True):
                    options_view = policy  # this view answers OPTIONS itself
                if methods is not None and method not in methods:
                    other, other_methods = self.match(req, None, method)
                    if other is not None and method in other_methods:
                        policy, methods = self.policy_for(other.endpoint), other_methods
                if options_view is not None and (policy is None or policy.preflight == "bypass"):
                    policy, methods = options_view, rule.methods
            if policy is None:
                return None
        return Facts(environ, environ.get("REQUEST_METHOD") or req.method, req.path,
                     req.root_path, policy, methods, options_view, routed, self.login)

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
