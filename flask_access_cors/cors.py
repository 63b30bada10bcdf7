"""The pure CORS decision: request facts in, headers or a denial out.

Nothing here knows Flask. The Flask layer classifies the request, picks the
policy and calls :func:`preflight` or :func:`actual`; a :class:`Denial`
carries a stable reason code and the offending value (escaped later, when the
event is written).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Collection, Sequence

from .origins import is_well_formed
from .policy import Header, Policy
from .reasons import Denial, Reason, RequestType

__all__ = [
    "ACTUAL",
    "MALFORMED",
    "NOT_CORS",
    "PREFLIGHT",
    "SAME_ORIGIN",
    "Denial",
    "actual",
    "classify",
    "preflight",
]

logger = logging.getLogger("flask_access_cors")

NOT_CORS = RequestType.NOT_CORS
SAME_ORIGIN = RequestType.SAME_ORIGIN
PREFLIGHT = RequestType.PREFLIGHT
ACTUAL = RequestType.ACTUAL
MALFORMED = RequestType.MALFORMED

#: ``Access-Control-Request-Headers`` longer than this, or naming more headers,
#: is refused before it is split, so hostile input costs no more than a normal
#: preflight. Browsers send a short, sorted, de-duplicated list.
MAX_REQUEST_HEADERS_LENGTH = 2048
MAX_REQUEST_HEADERS_COUNT = 64

_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z\-]+\Z")


def classify(method: str, origin: str | None, own_origin: str, has_acrm: bool) -> RequestType:
    """Tomcat-style classification; ``malformed`` is found later, only when matching fails."""
    if origin is None:
        return NOT_CORS
    if origin == own_origin:
        return SAME_ORIGIN
    if method == "OPTIONS" and has_acrm:
        return PREFLIGHT
    return ACTUAL


def allow_origin(policy: Policy, origin: str) -> str | Denial:
    """The ``Access-Control-Allow-Origin`` value for ``origin``, or why it is refused."""
    if not policy.enabled:
        return Denial(Reason.CORS_DISABLED, origin)
    if origin in policy.origins.exact:
        return origin
    if policy.any_origin:
        return "*" if origin == "null" or is_well_formed(origin) else Denial(Reason.ORIGIN_MALFORMED, origin)
    if origin == "null":
        return Denial(Reason.ORIGIN_NOT_ALLOWED, origin)
    if not is_well_formed(origin):
        return Denial(Reason.ORIGIN_MALFORMED, origin)
    try:
        if policy.origins.matches(origin):
            return origin
    except Exception:
        # A user's origin callable failed: refuse (fail closed) and say why, once per failure.
        logger.exception("flask-access-cors: the origins callable of %s raised", policy.name)
    return Denial(Reason.ORIGIN_NOT_ALLOWED, origin)


def _method_allowed(policy: Policy, method: str) -> bool:
    if method in policy.methods:
        return True
    upper = method.upper()
    return upper in policy.methods or (upper == "HEAD" and "GET" in policy.methods)


def actual(policy: Policy, origin: str, method: str) -> Sequence[Header] | Denial:
    """An actual (non-preflight) cross-origin request: refused before the view, or its headers."""
    prepared = policy.exact_actual.get(origin)
    if prepared is not None and method in policy.methods:
        return prepared  # the common case: an exact origin, a listed method
    allowed = allow_origin(policy, origin)
    if isinstance(allowed, Denial):
        return allowed
    if not _method_allowed(policy, method):
        return Denial(Reason.METHOD_NOT_ALLOWED, method)
    return [("Access-Control-Allow-Origin", allowed), *policy.actual_tail]


def _check_request_headers(policy: Policy, value: str) -> Denial | None:
    if len(value) > MAX_REQUEST_HEADERS_LENGTH or value.count(",") >= MAX_REQUEST_HEADERS_COUNT:
        return Denial(Reason.REQUEST_HEADERS_MALFORMED, value)
    allowed = policy.allow_headers
    for raw in value.split(","):
        name = raw.strip().lower()
        if not name or name in allowed:
            continue
        if policy.allow_any_header and name != "authorization" and _TOKEN.match(name):
            continue
        return Denial(Reason.HEADER_NOT_ALLOWED, name)
    return None


def preflight(
    policy: Policy,
    origin: str,
    request_method: str,
    request_headers: str | None,
    private_network: str | None,
    route_methods: Collection[str] | None,
) -> list[Header] | Denial:
    """A preflight: the headers of the ``204`` answer, or why it is refused.

    ``route_methods`` are the methods the matched route accepts (``None`` when
    routing failed and nothing is known); the requested method must be allowed
    by both. The method is echoed exactly as requested, since browsers compare
    it case-sensitively (``fetch(url, {method: "patch"})`` sends ``patch``).
    """
    allowed = allow_origin(policy, origin)
    if isinstance(allowed, Denial):
        return allowed
    method = request_method.upper()
    if (
        not _TOKEN.match(request_method)
        or not _method_allowed(policy, method)
        or (route_methods is not None and method not in route_methods)
    ):
        return Denial(Reason.METHOD_NOT_ALLOWED, request_method)
    headers: list[Header] = [
        ("Access-Control-Allow-Origin", allowed),
        ("Access-Control-Allow-Methods", request_method),
    ]
    if request_headers:
        denial = _check_request_headers(policy, request_headers)
        if denial is not None:
            return denial
        headers.append(("Access-Control-Allow-Headers", request_headers))
    if private_network is not None and private_network.lower() == "true":
        if not policy.private_network:
            return Denial(Reason.PRIVATE_NETWORK_NOT_ALLOWED, private_network)
        headers.append(("Access-Control-Allow-Private-Network", "true"))
    headers.extend(policy.preflight_tail)
    return headers
