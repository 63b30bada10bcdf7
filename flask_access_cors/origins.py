"""The origin grammar, and the matcher built from it.

A configured origin is written exactly as a browser serialises the ``Origin``
header (lower case, no default port, no path), optionally with ``*`` as the
whole leftmost label (``https://*.example.com``) or as the whole port
(``http://localhost:*``). Nothing is normalised: a pattern a browser would
never send is an error, because a pattern that silently never matches (or
matches more than meant) is how CORS allow-lists fail open or break.

Matching a request's origin costs a set lookup per label of its host, whatever
the number of configured origins.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

__all__ = ["MAX_ORIGIN_LENGTH", "OriginMatcher", "is_loopback_host", "parse_pattern"]

#: Longest ``Origin`` accepted from a request: scheme (a few bytes), ``://``,
#: a 253-byte host name and a port fit well inside it.
MAX_ORIGIN_LENGTH = 326

_DEFAULT_PORTS = {"http": "80", "https": "443"}
_SCHEME = re.compile(r"[a-z][a-z0-9+.\-]*\Z")
_LABEL = re.compile(r"(?!-)[a-z0-9\-]{1,63}(?<!-)\Z")
_PORT = re.compile(r"[1-9][0-9]{0,4}\Z")
#: The common case, checked in one step at start: an exact http(s) origin with a
#: host name of valid labels. Anything else takes the careful path that says why.
_FAST_EXACT = re.compile(
    r"(https?)://((?:(?!-)[a-z0-9\-]{1,63}(?<!-)\.)*(?!-)[a-z0-9\-]{1,63}(?<!-))"
    r"(?::([1-9][0-9]{0,4}))?\Z"
)
#: A request origin that could have come from a browser: scheme, host, port.
_WELL_FORMED = re.compile(
    r"[A-Za-z][A-Za-z0-9+.\-]*://(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.\-_]+)(?::[0-9]{1,5})?\Z"
)


def is_loopback_host(host: str) -> bool:
    """``localhost``, ``*.localhost``, ``127.0.0.0/8`` or ``[::1]``."""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Pattern:
    """One parsed origin pattern."""

    text: str
    scheme: str
    host: str  # without the "*." of a subdomain wildcard
    port: str  # "" (default port), digits, or "*"
    subdomains: bool

    @property
    def is_exact(self) -> bool:
        return not self.subdomains and self.port != "*"


def _split(value: str) -> tuple[str, str, str] | str:
    """Split ``scheme://host[:port]``; return an error message instead on failure."""
    if value != value.strip() or any(c.isspace() for c in value):
        return "contains whitespace"
    if not value.isascii():
        return "is not ASCII (write international domain names in their xn-- form)"
    if value.lower() != value:
        return "has upper-case letters (browsers send origins in lower case)"
    scheme, sep, rest = value.partition("://")
    if not sep or not _SCHEME.match(scheme):
        return "is not of the form scheme://host[:port]"
    if scheme == "file":
        return "is a file: origin, which browsers send as the opaque 'null'"
    if "@" in rest:
        return "has userinfo"
    if any(c in rest for c in "/?#"):
        return "has a path, trailing slash, query or fragment"
    if rest.startswith("["):
        end = rest.find("]")
        if end < 0:
            return "has an unterminated IPv6 address"
        host, after = rest[: end + 1], rest[end + 1 :]
        if after and not after.startswith(":"):
            return "has text after its IPv6 address"
        port = after[1:] if after else ""
        if after == ":":
            return "has an empty port"
    else:
        host, colon, port = rest.partition(":")
        if colon and not port:
            return "has an empty port"
    return scheme, host, port


def _check_host(host: str) -> str | None:
    if host.startswith("["):
        try:
            address = ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            return "has an invalid IPv6 address"
        if f"[{address.compressed}]" != host:
            return f"should write its IPv6 address as [{address.compressed}]"
        return None
    labels = host.split(".")
    if all(label.isdigit() for label in labels):
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            return "has an invalid IPv4 address"
        return None
    if len(host) > 253 or not all(_LABEL.match(label) for label in labels):
        return "has an invalid host name"
    return None


def parse_pattern(value: str) -> Pattern:
    """Parse one configured origin pattern, or raise :class:`ValueError` saying why."""
    if value == "null":
        raise ValueError(
            "'null' is the origin of sandboxed frames, file: pages and redirects; "
            "any page can send it, so it cannot be allowed explicitly"
        )
    fast = _FAST_EXACT.match(value)
    if fast is not None:
        scheme, host, port = fast.groups()
        if (
            not host.replace(".", "").isdigit()  # IPv4 addresses take the careful path
            and len(host) <= 253
            and (port is None or (int(port) <= 65535 and port != _DEFAULT_PORTS[scheme]))
        ):
            return Pattern(value, scheme, host, port or "", False)
    if "," in value:
        raise ValueError("contains a comma: give a list of origins, not one string")
    split = _split(value)
    if isinstance(split, str):
        raise ValueError(split)
    scheme, host, port = split
    subdomains = host.startswith("*.")
    if subdomains:
        host = host[2:]
        if scheme not in _DEFAULT_PORTS:
            raise ValueError("wildcards are only supported for http and https origins")
        if "." not in host and host != "localhost":
            raise ValueError(
                "a subdomain wildcard needs a registrable domain of at least two labels "
                "(*.example.com, not *.com)"
            )
        if host.replace(".", "").isdigit() or host.startswith("["):
            raise ValueError("a subdomain wildcard cannot be put on an IP address")
    if "*" in host:
        raise ValueError("'*' may only be the whole leftmost label (https://*.example.com)")
    problem = _check_host(host)
    if problem:
        raise ValueError(problem)
    if port == "*":
        if scheme not in _DEFAULT_PORTS:
            raise ValueError("wildcards are only supported for http and https origins")
    elif port:
        if "*" in port:
            raise ValueError("'*' may only be the whole port (http://localhost:*)")
        if not _PORT.match(port) or int(port) > 65535:
            raise ValueError("has an invalid port (1-65535, no leading zeros)")
        if _DEFAULT_PORTS.get(scheme) == port:
            raise ValueError(f"has the default port {port}, which browsers omit")
    return Pattern(value, scheme, host, port, subdomains)


def _request_parts(origin: str) -> tuple[str, str, str]:
    """Split a well-formed request origin into scheme, host and port."""
    scheme, _, rest = origin.partition("://")
    if rest.startswith("["):
        end = rest.index("]")
        return scheme, rest[: end + 1], rest[end + 2 :]
    host, _, port = rest.partition(":")
    return scheme, host, port


def is_well_formed(origin: str) -> bool:
    """Could this ``Origin`` header have been sent by a browser?

    Duplicated headers joined by a comma, whitespace, non-ASCII bytes, a path
    and oversize values are all refused here, before any matching.
    """
    return (
        len(origin) <= MAX_ORIGIN_LENGTH and origin.isascii() and bool(_WELL_FORMED.match(origin))
    )


class OriginMatcher:
    """Decides whether a well-formed request origin is allowed.

    Exact origins live in a set; subdomain wildcards are keyed by
    ``(scheme, ".suffix", port)`` and looked up once per label boundary of the
    request's host; port wildcards by ``(scheme, host)``. ``null`` never
    matches here: only an anonymous ``"*"`` policy accepts it, and that is
    decided by the policy.
    """

    __slots__ = ("any_port", "callables", "exact", "suffixes")

    def __init__(
        self,
        patterns: Iterable[Pattern] = (),
        callables: Iterable[Callable[[str], bool]] = (),
    ) -> None:
        exact: set[str] = set()
        suffixes: set[tuple[str, str, str]] = set()
        any_port: set[tuple[str, str]] = set()
        for p in patterns:
            if p.subdomains:
                suffixes.add((p.scheme, "." + p.host, p.port))
            elif p.port == "*":
                any_port.add((p.scheme, p.host))
            else:
                exact.add(p.text)
        self.exact = frozenset(exact)
        self.suffixes = frozenset(suffixes)
        self.any_port = frozenset(any_port)
        self.callables = tuple(callables)

    def __bool__(self) -> bool:
        return bool(self.exact or self.suffixes or self.any_port or self.callables)

    def matches(self, origin: str) -> bool:
        """``origin`` must already be known to be well formed (or be in the exact set)."""
        if origin in self.exact:
            return True
        if self.suffixes or self.any_port:
            scheme, host, port = _request_parts(origin)
            if (scheme, host) in self.any_port:
                return True
            if self.suffixes and not host.startswith("["):
                suffixes = self.suffixes
                dot = host.find(".")
                while dot > 0:
                    suffix = host[dot:]
                    if (scheme, suffix, port) in suffixes or (scheme, suffix, "*") in suffixes:
                        return True
                    dot = host.find(".", dot + 1)
        return any(check(origin) for check in self.callables)
