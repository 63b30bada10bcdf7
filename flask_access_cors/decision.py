"""One request's whole decision: request facts in, a :class:`Decision` out.

The Flask layer picks the route and its policy, collects the :class:`Facts`
once, and calls :func:`decide`, which runs the journey top to bottom:

1. classify the request (not CORS, same-origin, preflight, actual);
2. excluded paths: cross-origin requests refused, never a CORS header;
3. CORS: a preflight answered (or refused) from the policy, an actual request
   refused before the view or given its headers;
4. the gate: who is calling, and may they pass;
5. a login hint for an unauthenticated caller (a redirect for a page navigation,
   an absolute ``login_url`` for a cross-origin script).

Nothing here knows Flask; reading the token may fetch keys (:mod:`.tokens`).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from werkzeug.datastructures import MIMEAccept
from werkzeug.http import parse_accept_header

from . import cors
from .gate import Gate, audience_ok, authorize
from .login import return_target
from .policy import Header, Policy
from .reasons import Denial, Reason, RequestType
from .tokens import Identity

__all__ = ["Decision", "Facts", "decide", "own_origin"]

_ACTUAL, _PREFLIGHT = RequestType.ACTUAL, RequestType.PREFLIGHT
_NOT_CORS, _SAME_ORIGIN = RequestType.NOT_CORS, RequestType.SAME_ORIGIN


@dataclass(slots=True)
class Facts:
    """What the Flask layer knows about one request, collected once."""

    #: The WSGI environ: request headers are read from it only when a step needs them.
    environ: Mapping[str, Any]
    method: str
    #: ``request.path``: decoded, as the router saw it (without ``SCRIPT_NAME``).
    path: str
    script_root: str
    policy: Policy
    #: Methods the matched route accepts; ``None`` when routing failed.
    route_methods: Collection[str] | None
    #: For a preflight: the policy of the view that handles ``OPTIONS`` itself and will
    #: run in ``bypass`` mode (``None``: Flask's automatic answer, or no route).
    options_view: Policy | None = None
    #: Routing found a view for the request (not a 404, 405 or slash redirect).
    routed: bool = True
    #: ``login_url`` is configured, so an unauthenticated caller can be pointed at it.
    login: bool = False


@dataclass(slots=True)
class Decision:
    """What happens to one request. ``status`` 0: on to the view (or Flask's ``OPTIONS``)."""

    policy: Policy
    request_type: RequestType
    headers: Sequence[Header] = ()
    status: int = 0
    reason: Reason | None = None
    detail: str | None = None
    identity: Identity | None = None
    #: A 302's return target (a local path), or for a 401 to a CORS caller its origin.
    login_target: str | None = None
    #: The answer is for an authenticated caller of a gated scope: not for shared caches.
    private: bool = False


def own_origin(environ: Mapping[str, Any], origin: str) -> str:
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


def decide(facts: Facts, gate: Gate) -> Decision:
    """The whole answer to one request. No side effects but the gate's caches."""
    policy = facts.policy
    environ = facts.environ
    origin: str | None = environ.get("HTTP_ORIGIN")
    if origin is None:
        kind = _NOT_CORS
    else:
        kind = cors.classify(facts.method.upper(), origin, own_origin(environ, origin),
                             "HTTP_ACCESS_CONTROL_REQUEST_METHOD" in environ)
    headers: Sequence[Header]
    if policy.excludes and policy.is_excluded(facts.path):
        if kind is not _NOT_CORS and kind is not _SAME_ORIGIN:
            return _deny(policy, kind, Denial(Reason.EXCLUDED_PATH, facts.path))
        headers = policy.vary_only  # never a CORS header; the gate still applies
    elif kind is _PREFLIGHT:
        assert origin is not None
        return _preflight(facts, gate, origin)
    elif kind is _ACTUAL:
        assert origin is not None
        answer = cors.actual(policy, origin, facts.method)
        if isinstance(answer, Denial):
            return _deny(policy, kind, answer)
        headers = answer
    else:
        headers = policy.plain
    if policy.gate:
        return _gate(facts, gate, policy, kind, headers, origin)
    if gate.optional:
        # Optional authentication: a valid token still names the caller; a missing or
        # invalid one denies nothing and records nothing.
        found = gate.identify(environ)
        if isinstance(found, Identity) and audience_ok(policy.audience, found):
            return Decision(policy, kind, headers, identity=found, private=True)
    return Decision(policy, kind, headers)


def _deny(policy: Policy, kind: RequestType, denial: Denial,
          headers: Sequence[Header] | None = None, identity: Identity | None = None) -> Decision:
    if denial.reason is Reason.ORIGIN_MALFORMED:
        kind = RequestType.MALFORMED
    return Decision(policy, kind, policy.vary_only if headers is None else headers,
                    denial.status, denial.reason, denial.detail, identity)


def _preflight(facts: Facts, gate: Gate, origin: str) -> Decision:
    policy, environ = facts.policy, facts.environ
    if policy.preflight == "gate":
        checked = _gate(facts, gate, policy, _PREFLIGHT, policy.vary_only, origin)
        if checked.status:
            return checked
    result = cors.preflight(
        policy, origin, environ["HTTP_ACCESS_CONTROL_REQUEST_METHOD"],
        environ.get("HTTP_ACCESS_CONTROL_REQUEST_HEADERS"),
        environ.get("HTTP_ACCESS_CONTROL_REQUEST_PRIVATE_NETWORK"),
        facts.route_methods,
    )
    if isinstance(result, Denial):
        return _deny(policy, _PREFLIGHT, result)
    if policy.preflight != "bypass":
        return Decision(policy, _PREFLIGHT, result, 204)
    # bypass: the preflight goes on to the app, unless there is nothing to go on to (no
    # route, or a slash redirect: a preflight is never redirected); a view that answers
    # OPTIONS itself, and an unknown URL of a gated scope, are gated like any method, so
    # a forged preflight neither runs a gated view nor maps the API.
    view = facts.options_view if facts.routed else policy
    if view is not None and view.gate:
        checked = _gate(facts, gate, view, _PREFLIGHT, policy.vary_only, origin)
        if checked.status:
            return checked
        identity = checked.identity
    else:
        identity = None
    if not facts.routed:
        return Decision(policy, _PREFLIGHT, result, 204, identity=identity)
    return Decision(policy, _PREFLIGHT, result, identity=identity, private=identity is not None)


def _gate(facts: Facts, gate: Gate, policy: Policy, kind: RequestType,
          headers: Sequence[Header], origin: str | None) -> Decision:
    found = gate.identify(facts.environ)
    if isinstance(found, Identity) and not audience_ok(policy.audience, found):
        # a token for another Access application: as unauthenticated here as no token
        found = Denial(Reason.AUDIENCE_MISMATCH, f"aud {found.claims.get('aud')!r}", 401)
    if isinstance(found, Denial):
        decision = _deny(facts.policy, kind, found, headers)
        if facts.login and found.status == 401:
            _login_hint(decision, facts, kind, origin)
        return decision
    if not authorize(policy.require, found):
        return _deny(facts.policy, kind, Denial(Reason.ACCESS_DENIED, found.subject), headers, found)
    return Decision(facts.policy, kind, headers, 0, None, None, found, None, True)  # private


def _login_hint(decision: Decision, facts: Facts, kind: RequestType, origin: str | None) -> None:
    """A page navigation is redirected to log in; a cross-origin script is told where."""
    environ = facts.environ
    mode = environ.get("HTTP_SEC_FETCH_MODE")
    if mode is None and kind in (_NOT_CORS, _SAME_ORIGIN):
        accept = parse_accept_header(environ.get("HTTP_ACCEPT"), MIMEAccept)
        navigating = accept["text/html"] > accept["application/json"]
    else:
        navigating = mode == "navigate"
    if navigating and facts.method in ("GET", "HEAD"):
        decision.status = 302
        decision.login_target = return_target(
            facts.script_root, facts.path, environ.get("QUERY_STRING", ""),
            environ.get("RAW_URI") or environ.get("REQUEST_URI"),
        )
    elif kind in (_ACTUAL, _PREFLIGHT) and origin is not None:
        decision.login_target = origin
