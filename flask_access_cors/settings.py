"""Every setting, once: its name, default, validation and documentation.

A setting is given as a keyword (``origins=...``) or as an ``app.config`` key
(``ACCESS_CORS_ORIGINS``). Parsing turns the raw value into the immutable form
the rest of the package uses, and reports problems into a list rather than
raising on the first, so :class:`ConfigError` can list every problem at once.
Combinations that are only wrong together (a ``"*"`` origin with
``credentials``) are checked by :func:`check_policy` on the merged layers.

The settings reference in the docs is generated from :data:`SETTINGS`.
"""

from __future__ import annotations

import difflib
import importlib.util
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from .origins import Pattern, is_loopback_host, parse_pattern
from .paths import looks_like_regex

__all__ = [
    "CONFIG_PREFIX",
    "SETTINGS",
    "ConfigError",
    "Problems",
    "Rule",
    "Setting",
    "check_policy",
    "parse_settings",
]

CONFIG_PREFIX = "ACCESS_CORS_"


class ConfigError(ValueError):
    """The configuration is wrong; ``problems`` lists every ``(code, message)``."""

    def __init__(self, problems: Iterable[tuple[str, str]]) -> None:
        self.problems: list[tuple[str, str]] = list(problems)
        lines = "\n".join(f"  [{code}] {message}" for code, message in self.problems)
        count = len(self.problems)
        super().__init__(
            f"flask-access-cors: {count} configuration problem{'s' if count != 1 else ''}:\n{lines}"
        )


class Problems:
    """Collects problems; :meth:`raise_if_any` turns them into one :class:`ConfigError`."""

    def __init__(self) -> None:
        self.items: list[tuple[str, str]] = []

    def add(self, code: str, message: str) -> None:
        if (code, message) not in self.items:  # one mistake, one report
            self.items.append((code, message))

    def raise_if_any(self) -> None:
        if self.items:
            raise ConfigError(self.items)


Parser = Callable[[Any, str, Problems], Any]

_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z\-]+\Z")
_FORBIDDEN_METHODS = frozenset({"CONNECT", "TRACE", "TRACK"})
#: Request headers a page's script can never set (Fetch's forbidden request
#: header names): listing one is a mistake that would never take effect.
_FORBIDDEN_HEADERS = frozenset(
    {
        "accept-charset",
        "accept-encoding",
        "access-control-request-headers",
        "access-control-request-method",
        "access-control-request-private-network",
        "connection",
        "content-length",
        "cookie",
        "cookie2",
        "date",
        "dnt",
        "expect",
        "host",
        "keep-alive",
        "origin",
        "referer",
        "set-cookie",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "via",
    }
)
_FORBIDDEN_HEADER_PREFIXES = ("proxy-", "sec-", "access-control-")
_PREFLIGHT_MODES = ("respond", "bypass", "gate")
_REQUIRE_KEYS = ("emails", "email_domains", "groups", "service_tokens")


def _seq(value: Any) -> list[Any] | None:
    """A list/tuple/set/frozenset as a list; ``None`` for anything else (a bare string included)."""
    if isinstance(value, (list, tuple, set, frozenset)):
        return list(value)
    return None


def _bool(value: Any, name: str, problems: Problems) -> bool:
    if not isinstance(value, bool):
        problems.add("invalid_value", f"{name} must be True or False, not {value!r}")
        return False
    return value


def _int(value: Any, name: str, problems: Problems, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        problems.add("invalid_value", f"{name} must be an integer, not {value!r}")
        return low
    if value < low or (high is not None and value > high):
        span = f"{low}..{high}" if high is not None else f">= {low}"
        problems.add("invalid_value", f"{name} must be {span}, not {value}")
    return value


def _strings(value: Any, name: str, problems: Problems, allow_star: bool) -> list[str] | None:
    if allow_star and value == "*":
        return ["*"]
    items = [value] if isinstance(value, str) else _seq(value)
    if items is None or not all(isinstance(i, str) for i in items):
        problems.add("invalid_value", f"{name} must be a list of strings, not {value!r}")
        return None
    return items


@dataclass(frozen=True)
class Origins:
    """The parsed ``origins`` setting."""

    any: bool = False
    patterns: tuple[Pattern, ...] = ()
    callables: tuple[Callable[[str], bool], ...] = ()


def _origins(value: Any, name: str, problems: Problems) -> Origins:
    if value == "*":
        return Origins(any=True)
    if callable(value):
        return Origins(callables=(value,))
    items = [value] if isinstance(value, str) else _seq(value)
    if items is None:
        problems.add("invalid_value", f"{name} must be a list of origins, '*' or a callable")
        return Origins()
    patterns: list[Pattern] = []
    callables: list[Callable[[str], bool]] = []
    for item in items:
        if callable(item):
            callables.append(item)
        elif item == "*":
            problems.add("invalid_origin", f"{name}: '*' must be given alone, not in a list")
        elif not isinstance(item, str):
            problems.add("invalid_origin", f"{name}: {item!r} is not a string")
        else:
            try:
                patterns.append(parse_pattern(item))
            except ValueError as exc:
                problems.add("invalid_origin", f"{name}: {item!r} {exc}")
    return Origins(False, tuple(patterns), tuple(callables))


def _methods(value: Any, name: str, problems: Problems) -> frozenset[str]:
    items = _strings(value, name, problems, allow_star=False) or []
    methods: set[str] = set()
    for item in items:
        if not _TOKEN.match(item):
            problems.add("invalid_method", f"{name}: {item!r} is not a valid method name")
        elif item.upper() in _FORBIDDEN_METHODS:
            problems.add("forbidden_method", f"{name}: {item.upper()} can never be sent by a browser")
        else:
            methods.add(item.upper())
    return frozenset(methods)


@dataclass(frozen=True)
class HeaderNames:
    """A parsed header list: lower-case names, or ``any`` for ``"*"``."""

    any: bool = False
    names: frozenset[str] = frozenset()


def _allow_headers(value: Any, name: str, problems: Problems) -> HeaderNames:
    items = _strings(value, name, problems, allow_star=True) or []
    star = "*" in items  # "*" never covers Authorization, which may be listed beside it
    names: set[str] = set()
    for item in items:
        low = item.lower()
        if item == "*":
            continue
        if "*" in item:
            problems.add(
                "invalid_header",
                f"{name}: {item!r}: header names have no wildcards; list each header, or give "
                "the lone '*' for any header but Authorization",
            )
        elif not _TOKEN.match(item):
            problems.add("invalid_header", f"{name}: {item!r} is not a valid header name")
        elif low in _FORBIDDEN_HEADERS or low.startswith(_FORBIDDEN_HEADER_PREFIXES):
            problems.add(
                "forbidden_header", f"{name}: {item} can never be set by a page's script"
            )
        else:
            names.add(low)
    return HeaderNames(any=star, names=frozenset(names))


def _expose_headers(value: Any, name: str, problems: Problems) -> HeaderNames:
    items = _strings(value, name, problems, allow_star=True) or []
    if items == ["*"]:
        return HeaderNames(any=True)
    names: set[str] = set()
    for item in items:
        if not _TOKEN.match(item) or item == "*":
            problems.add("invalid_expose_header", f"{name}: {item!r} is not a valid header name")
        elif item.lower() in ("set-cookie", "set-cookie2"):
            problems.add(
                "invalid_expose_header",
                f"{name}: {item} is never readable by scripts; exposing it is a mistake",
            )
        else:
            names.add(item)
    return HeaderNames(names=frozenset(names))


def _max_age(value: Any, name: str, problems: Problems) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        problems.add("invalid_value", f"{name} must be an integer, not {value!r}")
        return 0
    if not -1 <= value <= 86400:
        problems.add("max_age_out_of_range", f"{name} must be within -1..86400, not {value}")
    return value


def _excluded_paths(value: Any, name: str, problems: Problems) -> tuple[str, ...]:
    items = _strings(value, name, problems, allow_star=False) or []
    for item in items:
        if looks_like_regex(item):
            literal = re.split(r"\.?[*\[(\\^$?+]", item)[0] + "*"
            problems.add(
                "invalid_path_pattern",
                f"{name}: {item!r} looks like a regular expression, which excluded_paths does "
                f"not support; write a literal path, optionally ending in '*' (like "
                f"{literal!r})",
            )
        elif (
            not item.startswith("/")
            or not item.isprintable()
            or any(c.isspace() or c in "?#" for c in item)
        ):
            problems.add(
                "invalid_path_pattern",
                f"{name}: {item!r} must be a path starting with '/', optionally ending in '*'",
            )
    return tuple(items)


def _preflight(value: Any, name: str, problems: Problems) -> str:
    if value not in _PREFLIGHT_MODES:
        problems.add("invalid_value", f"{name} must be one of {', '.join(_PREFLIGHT_MODES)}")
        return "respond"
    return str(value)


@dataclass(frozen=True)
class Rule:
    """An authorisation rule: the identity passes if it matches any listed value."""

    emails: frozenset[str] = frozenset()
    email_domains: frozenset[str] = frozenset()
    groups: frozenset[str] = frozenset()
    service_tokens: frozenset[str] = frozenset()
    check: Callable[[Any], bool] | None = None


def _require(value: Any, name: str, problems: Problems) -> Rule | None:
    if value is None:
        return None
    if callable(value):
        return Rule(check=value)
    if not isinstance(value, Mapping) or not value:
        problems.add(
            "invalid_value",
            f"{name} must be a non-empty mapping of {', '.join(_REQUIRE_KEYS)}, or a callable",
        )
        return None
    values: dict[str, frozenset[str]] = {}
    for key, item in value.items():
        if key not in _REQUIRE_KEYS:
            problems.add("invalid_value",
                         f"{name}: unknown key {key!r}{did_you_mean(str(key), _REQUIRE_KEYS)}")
            continue
        items = _strings(item, f"{name}[{key!r}]", problems, allow_star=False) or []
        if key in ("emails", "email_domains"):
            items = [i.lower() for i in items]
        values[key] = frozenset(items)
    return Rule(
        emails=values.get("emails", frozenset()),
        email_domains=values.get("email_domains", frozenset()),
        groups=values.get("groups", frozenset()),
        service_tokens=values.get("service_tokens", frozenset()),
    )


def _optional_str(value: Any, name: str, problems: Problems) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        problems.add("invalid_value", f"{name} must be a non-empty string")
        return None
    return value


def _audience(value: Any, name: str, problems: Problems) -> tuple[str, ...] | None:
    if value is None:
        return None
    items = _strings(value, name, problems, allow_star=False)
    if items is None:
        return None
    if not items or not all(items):
        problems.add("missing_audience", f"{name} must not be empty")
    return tuple(items)


def _team_domain(value: Any, name: str, problems: Problems) -> str | None:
    text = _optional_str(value, name, problems)
    if text is not None and not re.fullmatch(r"[a-z0-9\-]+(\.[a-z0-9\-]+)+", text):
        problems.add(
            "invalid_value",
            f"{name} must be a host name like myteam.cloudflareaccess.com, not {text!r}",
        )
    return text


def _url(value: Any, name: str, problems: Problems) -> str | None:
    text = _optional_str(value, name, problems)
    if text is None:
        return None
    match = re.fullmatch(r"(https?)://([^/?#:]+|\[[^\]]+\])(?::\d+)?(?:[/?][^\s#]*)?", text)
    if not match:
        problems.add("invalid_value", f"{name} must be an absolute http(s) URL, not {text!r}")
    elif match.group(1) == "http" and not is_loopback_host(match.group(2)):
        problems.add("insecure_origin", f"{name} must use https (http only on loopback)")
    return text


def _secret(value: Any, name: str, problems: Problems) -> bytes | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = value.encode()
    if not isinstance(value, bytes):
        problems.add("invalid_value", f"{name} must be a string or bytes")
        return None
    if len(value) < 32:
        problems.add("weak_secret", f"{name} must be at least 32 bytes (it has {len(value)})")
    return value


def _pem(value: Any, name: str, problems: Problems) -> str | None:
    text = _optional_str(value, name, problems)
    if text is not None and "-----BEGIN" not in text:
        problems.add("invalid_value", f"{name} must be a PEM-encoded private key")
    return text


_ALGORITHMS = ("RS256", "ES256", "HS256")


def _algorithms(value: Any, name: str, problems: Problems) -> tuple[str, ...] | None:
    if value is None:
        return None
    items = _strings(value, name, problems, allow_star=False) or []
    if not items:
        problems.add("invalid_value", f"{name} must not be empty")
    for item in items:
        if item not in _ALGORITHMS:
            problems.add("invalid_value", f"{name}: {item!r} is not one of {', '.join(_ALGORITHMS)}")
    if "HS256" in items and len(set(items)) > 1:
        problems.add(
            "conflicting_keys", f"{name}: HS256 cannot be mixed with public-key algorithms"
        )
    return tuple(items)


@dataclass(frozen=True)
class IssuerEntry:
    """One token issuer with a JWKS: whose ``iss`` it is, its keys and its audiences."""

    issuer: str
    jwks_url: str
    audience: tuple[str, ...]
    algorithms: tuple[str, ...] | None = None


_ISSUER_KEYS = ("team_domain", "jwks_url", "issuer", "audience", "algorithms")


def _issuers(value: Any, name: str, problems: Problems) -> tuple[IssuerEntry, ...]:
    if value is None:
        return ()
    items = _seq(value)
    if items is None or not all(isinstance(i, Mapping) for i in items):
        problems.add("invalid_value", f"{name} must be a list of mappings with the keys "
                     f"{', '.join(_ISSUER_KEYS)}")
        return ()
    entries: list[IssuerEntry] = []
    seen: set[str] = set()
    for index, item in enumerate(items):
        where = f"{name}[{index}]"
        for key in item:
            if key not in _ISSUER_KEYS:
                problems.add("invalid_value", f"{where}: unknown key {key!r}"
                             f"{did_you_mean(str(key), _ISSUER_KEYS)}")
        team = _team_domain(item.get("team_domain"), f"{where}: team_domain", problems)
        jwks_url = _url(item.get("jwks_url"), f"{where}: jwks_url", problems) or (
            f"https://{team}/cdn-cgi/access/certs" if team else None
        )
        issuer = _optional_str(item.get("issuer"), f"{where}: issuer", problems) or (
            f"https://{team}" if team else None
        )
        audience = _audience(item.get("audience"), f"{where}: audience", problems)
        algorithms = _algorithms(item.get("algorithms"), f"{where}: algorithms", problems)
        if jwks_url is None:
            problems.add("invalid_value", f"{where} needs team_domain or jwks_url")
        if issuer is None:
            problems.add("missing_issuer", f"{where} needs an issuer (or team_domain)")
        if not audience:
            problems.add("missing_audience", f"{where} needs an audience (the AUD tag)")
        if algorithms and "HS256" in algorithms:
            problems.add("conflicting_keys", f"{where}: HS256 cannot be used with a JWKS")
        if issuer is not None and issuer in seen:
            problems.add("conflicting_keys", f"{where}: issuer {issuer!r} is listed twice; "
                         "list each issuer once, with all its audiences")
        if issuer is not None:
            seen.add(issuer)
        if jwks_url and issuer and audience:
            entries.append(IssuerEntry(issuer, jwks_url, audience, algorithms))
    return tuple(entries)


def _non_negative(value: Any, name: str, problems: Problems) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        problems.add("invalid_value", f"{name} must be a number >= 0, not {value!r}")
        return 0.0
    return float(value)


def _header_name(value: Any, name: str, problems: Problems) -> str:
    if not isinstance(value, str) or not _TOKEN.match(value):
        problems.add("invalid_value", f"{name} must be a valid cookie/header name, not {value!r}")
        return ""
    return value


def _token_headers(value: Any, name: str, problems: Problems) -> tuple[str, ...]:
    items = _strings(value, name, problems, allow_star=False) or []
    for item in items:
        if not _TOKEN.match(item):
            problems.add("invalid_header", f"{name}: {item!r} is not a valid header name")
    return tuple(items)


def _service_tokens(value: Any, name: str, problems: Problems) -> dict[str, str]:
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        problems.add("invalid_value", f"{name} must be a mapping of client id -> secret")
        return {}
    for client_id, secret in value.items():
        if not client_id or not client_id.isascii() or not client_id.isprintable():
            problems.add("invalid_value", f"{name}: client id {client_id!r} is not printable ASCII")
        if secret.startswith("sha256:"):
            if not re.fullmatch(r"[0-9a-f]{64}", secret[7:]):
                problems.add(
                    "invalid_value", f"{name}[{client_id!r}]: sha256: needs 64 lower-case hex digits"
                )
        elif len(secret.encode()) < 32:
            problems.add(
                "weak_secret", f"{name}[{client_id!r}]: the secret must be at least 32 bytes"
            )
    return dict(value)


def _login_url(value: Any, name: str, problems: Problems) -> str | None:
    text = _optional_str(value, name, problems)
    if text is not None and not (
        (text.startswith("/") and not text.startswith("//")) or text.startswith("https://")
        or text.startswith("http://")
    ):
        problems.add("invalid_value", f"{name} must be a path (/login) or an absolute URL")
    elif text is not None and "#" in text:
        problems.add("invalid_value", f"{name} must not have a #fragment: the return link "
                     "appended after it would never reach the server")
    return text


def _event_store(value: Any, name: str, problems: Problems) -> str | None:
    text = _optional_str(value, name, problems)
    if text is not None and not text.startswith(("memory://", "sqlite:///", "redis://", "rediss://")):
        problems.add(
            "invalid_value",
            f"{name} must be memory://, sqlite:///PATH or redis://HOST:PORT/DB, not {text!r}",
        )
        return None  # reported once, here; the store is not opened
    return text


def _metrics(value: Any, name: str, problems: Problems) -> bool:
    enabled = _bool(value, name, problems)
    if enabled and importlib.util.find_spec("prometheus_client") is None:
        problems.add("invalid_value", f"{name} needs prometheus_client: "
                     "pip install 'flask-access-cors[metrics]'")
        return False
    return enabled


def _retention(value: Any, name: str, problems: Problems) -> int:
    return _int(value, name, problems, 1, 10_000_000)


def _flag(value: Any, name: str, problems: Problems) -> bool:
    return _bool(value, name, problems)


@dataclass(frozen=True)
class Setting:
    """One setting: where it applies, its default, its parser and its documentation."""

    name: str
    scope: Literal["policy", "app"]
    default: Any
    parse: Parser
    doc: str
    default_doc: str = ""

    @property
    def config_key(self) -> str:
        return CONFIG_PREFIX + self.name.upper()


DEFAULT_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
DEFAULT_ALLOW_HEADERS = (
    "Accept",
    "Accept-Language",
    "Authorization",
    "Content-Language",
    "Content-Type",
    "X-CSRF-Token",
    "X-Requested-With",
)

_ALL = [
    Setting("origins", "policy", (), _origins,
            "Allowed origins: exact (``https://app.example.com``), subdomain wildcard "
            "(``https://*.example.com``), port wildcard (``http://localhost:*``), ``\"*\"`` "
            "(any origin; never with credentials) or a callable ``origin -> bool``. Written "
            "exactly as browsers send them. Empty: no cross-origin request is allowed.",
            "``()``"),
    Setting("methods", "policy", DEFAULT_METHODS, _methods,
            "Methods allowed cross-origin, matched case-insensitively and echoed as requested; "
            "also limited to what the route accepts. CONNECT, TRACE and TRACK are refused.",
            "GET, HEAD, POST, PUT, PATCH, DELETE"),
    Setting("allow_headers", "policy", DEFAULT_ALLOW_HEADERS, _allow_headers,
            "Request headers allowed cross-origin, or ``\"*\"`` (which never covers "
            "``Authorization``). Headers a script can never set are refused.",
            ", ".join(DEFAULT_ALLOW_HEADERS)),
    Setting("expose_headers", "policy", (), _expose_headers,
            "Response headers scripts may read. ``Set-Cookie``, and ``\"*\"`` with "
            "credentials, are refused.", "``()``"),
    Setting("credentials", "policy", False, _flag,
            "Send ``Access-Control-Allow-Credentials: true`` (cookies and HTTP auth).",
            "``False``"),
    Setting("max_age", "policy", 1800, _max_age,
            "Preflight cache lifetime in seconds, -1..86400; ``0`` omits the header, ``-1`` "
            "sends ``0`` (no caching).", "``1800``"),
    Setting("private_network", "policy", False, _flag,
            "Answer ``Access-Control-Request-Private-Network: true`` preflights with "
            "``Access-Control-Allow-Private-Network: true``.", "``False``"),
    Setting("enabled", "policy", True, _flag,
            "``False`` denies every cross-origin request to this scope (``cors_disabled``).",
            "``True``"),
    Setting("excluded_paths", "policy", (), _excluded_paths,
            "Paths excluded from CORS: a literal path, optionally ending in ``*`` for a "
            "prefix. Cross-origin requests are denied, same-origin ones untouched. Lists from "
            "the app, blueprints and view add up.", "``()``"),
    Setting("preflight", "policy", "respond", _preflight,
            "``respond``: answer preflights from the policy; ``bypass``: let them reach the "
            "app's own OPTIONS handling (CORS headers still added); ``gate``: preflights must "
            "authenticate.", "``\"respond\"``"),
    Setting("gate", "policy", False, _flag,
            "Require authentication (a user token or a service token) for this scope.",
            "``False``"),
    Setting("require", "policy", None, _require,
            "Authorisation rule (implies ``gate``): a mapping of ``emails``, "
            "``email_domains``, ``groups`` (claim ``groups`` or ``roles``) and "
            "``service_tokens``, any of which admits the identity; or a callable "
            "``identity -> bool``.", "``None``"),
    Setting("debug", "policy", False, _flag,
            "Record every denial of this scope in the event log.", "``False``"),
    Setting("expose_reasons", "policy", False, _flag,
            "Development only: a denial also carries ``X-Access-Cors-Reason: <code>`` and a "
            "``reason`` field in its JSON body. Logged as a warning at start when the app is "
            "in neither debug nor testing mode.", "``False``"),
    Setting("team_domain", "app", None, _team_domain,
            "Cloudflare Access team domain (``myteam.cloudflareaccess.com``); sets "
            "``jwks_url`` and ``issuer``.", "``None``"),
    Setting("jwks_url", "app", None, _url,
            "JWKS URL for RS256/ES256 tokens; needs ``audience`` and ``issuer``.", "``None``"),
    Setting("issuer", "app", None, _optional_str,
            "Required ``iss`` claim.", "``None``"),
    Setting("audience", "policy", None, _audience,
            "Accepted ``aud`` values (a string or a list; a token's list ``aud`` must contain "
            "one). A policy setting: each Cloudflare Access application (one per path) has "
            "its own AUD tag, and a scope accepts only tokens for its own; the app accepts the "
            "union of all audiences configured anywhere.", "``None``"),
    Setting("issuers", "app", None, _issuers,
            "Several token issuers: a list of mappings with the keys ``team_domain``, "
            "``jwks_url``, ``issuer``, ``audience`` (each entry needs an issuer and an "
            "audience) and ``algorithms``. A token is verified by the entry whose ``issuer`` "
            "is its ``iss``. ``team_domain``/``jwks_url``/``issuer`` at the top level are "
            "shorthand for one entry.", "``None``"),
    Setting("jwt_secret", "app", None, _secret,
            "HS256 secret (at least 32 bytes) for tokens the app issues itself.", "``None``"),
    Setting("signing_key", "app", None, _pem,
            "PEM private key (RSA >= 2048 bits or EC P-256) for tokens the app issues itself.",
            "``None``"),
    Setting("algorithms", "app", None, _algorithms,
            "Explicit algorithm allow-list; never taken from the token.",
            "derived from the key"),
    Setting("leeway", "app", 60, _non_negative,
            "Seconds of clock skew allowed for ``exp``, ``nbf`` and ``iat``.", "``60``"),
    Setting("jwks_cooldown", "app", 30, _non_negative,
            "Seconds after the last JWKS fetch before an unknown ``kid`` may trigger another.",
            "``30``"),
    Setting("cookie_name", "app", "CF_Authorization", _header_name,
            "The access cookie.", "``\"CF_Authorization\"``"),
    Setting("token_headers", "app", ("Cf-Access-Jwt-Assertion", "Cf-Access-Token"),
            _token_headers, "Headers checked for a token, in order, before the cookie.",
            "``(\"Cf-Access-Jwt-Assertion\", \"Cf-Access-Token\")``"),
    Setting("service_tokens", "app", {}, _service_tokens,
            "``client_id -> secret`` (or ``\"sha256:<hex>\"``), sent as "
            "``CF-Access-Client-Id`` / ``CF-Access-Client-Secret``.", "``{}``"),
    Setting("login_url", "app", None, _login_url,
            "Where unauthenticated page navigations are redirected; needs ``app.secret_key``.",
            "``None``"),
    Setting("event_store", "app", None, _event_store,
            "``memory://``, ``sqlite:///PATH`` or ``redis://HOST:PORT/DB``.",
            "``sqlite:///<instance_path>/access_cors_events.sqlite3``"),
    Setting("event_retention", "app", 10000, _retention,
            "Newest events kept.", "``10000``"),
    Setting("metrics", "app", False, _metrics,
            "Count every denial in the Prometheus counter ``flask_access_cors_denials_total`` "
            "(labels ``reason``, ``policy``, ``status``) in the default registry; needs the "
            "``metrics`` extra (``prometheus_client``), and works under gunicorn's multiprocess "
            "mode as ``prometheus_client`` documents.", "``False``"),
]

#: Every setting by name, in documentation order.
SETTINGS: dict[str, Setting] = {s.name: s for s in _ALL}
POLICY_SETTINGS = tuple(s.name for s in _ALL if s.scope == "policy")


def parse_settings(
    raw: Mapping[str, Any], where: str, problems: Problems, *, scope: str = "policy"
) -> dict[str, Any]:
    """Parse keyword settings for one layer (``scope="policy"``) or the app (``"app"``).

    Unknown names are problems, never ignored: a typo must not fail open.
    """
    parsed: dict[str, Any] = {}
    for name, value in raw.items():
        setting = SETTINGS.get(name)
        if setting is None or (scope == "policy" and setting.scope != "policy"):
            hint = " (an app-level setting)" if setting else did_you_mean(name, SETTINGS)
            problems.add("unknown_setting", f"{where}: unknown setting {name!r}{hint}")
            continue
        parsed[name] = setting.parse(value, f"{where}: {name}", problems)
    return parsed


#: flask-cors names people bring along, and what they are called here.
_FLASK_CORS_NAMES = {
    "supports_credentials": "credentials",
    "resources": "a blueprint or @access.cors per view",
    "send_wildcard": "origins='*'",
    "vary_header": "nothing: Vary is always right",
    "automatic_options": "preflight",
    "always_send": "nothing: headers go on every answer of an allowed origin",
    "intercept_exceptions": "nothing: error responses always get the headers",
    "allow_private_network": "private_network",
}


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """``; did you mean 'origins'?`` for a near miss (or a flask-cors name), else ``""``."""
    is_key = name.startswith(CONFIG_PREFIX)
    lowered = name.lower().removeprefix(CONFIG_PREFIX.lower())
    if lowered in _FLASK_CORS_NAMES:
        here = _FLASK_CORS_NAMES[lowered]
        if here in SETTINGS:
            ours = SETTINGS[here].config_key if is_key else here
            return f"; did you mean {ours!r}? (flask-cors' {lowered} is {here} here)"
        return f" (a flask-cors option; here: {here})"
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def config_settings(config: Mapping[str, Any], problems: Problems) -> dict[str, Any]:
    """The raw ``ACCESS_CORS_*`` keys of ``app.config``, as keyword names."""
    raw: dict[str, Any] = {}
    for key, value in config.items():
        if not key.startswith(CONFIG_PREFIX):
            continue
        name = key[len(CONFIG_PREFIX) :].lower()
        if name not in SETTINGS or SETTINGS[name].config_key != key:
            known = [s.config_key for s in SETTINGS.values()]
            problems.add("unknown_setting",
                         f"app.config: unknown key {key!r}{did_you_mean(key, known)}")
            continue
        raw[name] = value
    return raw


def check_policy(merged: Mapping[str, Any], where: str, problems: Problems) -> None:
    """Check what is only wrong in combination, on a policy's merged settings."""
    origins: Origins = merged["origins"]
    if not merged["credentials"]:
        return
    if origins.any:
        problems.add(
            "wildcard_with_credentials",
            f"{where}: origins '*' cannot be combined with credentials "
            "(browsers refuse it; list the origins instead)",
        )
    for pattern in origins.patterns:
        if pattern.scheme == "http" and not is_loopback_host(pattern.host):
            problems.add(
                "insecure_origin",
                f"{where}: {pattern.text} is plain http; with credentials only https "
                "(or a loopback host) is allowed, since anyone on the network can be that origin",
            )
    if merged["expose_headers"].any:
        problems.add(
            "invalid_expose_header",
            f"{where}: expose_headers '*' means nothing with credentials; list the headers",
        )
