"""A compiled, immutable policy with its precomputed header values.

Settings are merged once per scope (app, blueprint, view) and compiled here,
so the per-request work is set lookups and copying prepared header pairs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from .origins import OriginMatcher
from .paths import readings
from .settings import POLICY_SETTINGS, SETTINGS, HeaderNames, Origins, Problems, Rule, parse_settings

__all__ = ["Header", "Policy", "compile_policy", "merge_layers", "policy_defaults"]

Header = tuple[str, str]

VARY_ORIGIN: Header = ("Vary", "Origin")
VARY_PREFLIGHT: Header = (
    "Vary",
    "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
)


def policy_defaults() -> dict[str, Any]:
    """Every policy setting's default, parsed."""
    problems = Problems()
    defaults = parse_settings({n: SETTINGS[n].default for n in POLICY_SETTINGS}, "defaults", problems)
    problems.raise_if_any()
    return defaults


def merge_layers(*layers: Mapping[str, Any]) -> dict[str, Any]:
    """Layer parsed settings outer to inner; ``excluded_paths`` lists add up."""
    merged: dict[str, Any] = {}
    excluded: list[str] = []
    for layer in layers:
        merged.update(layer)
        for path in layer.get("excluded_paths", ()):
            if path not in excluded:
                excluded.append(path)
    merged["excluded_paths"] = tuple(excluded)
    return merged


@dataclass(frozen=True, eq=False)
class Policy:
    """What one scope allows, compiled for the request path."""

    name: str
    settings: Mapping[str, Any] = field(repr=False)
    origins: OriginMatcher = field(repr=False)
    any_origin: bool  # an anonymous "*": answers with "*", accepts "null"
    methods: frozenset[str]
    allow_any_header: bool
    allow_headers: frozenset[str]
    credentials: bool
    private_network: bool
    enabled: bool
    excluded_exact: frozenset[str]
    excluded_prefixes: tuple[str, ...]
    #: Any excluded path at all (so most requests skip the readings).
    excludes: bool
    preflight: str
    gate: bool
    require: Rule | None
    #: The ``aud`` values this scope accepts (``None``: whatever the issuers accept).
    audience: frozenset[str] | None
    debug: bool
    expose_reasons: bool
    #: Headers that follow ``Access-Control-Allow-Origin`` on an allowed actual request.
    actual_tail: tuple[Header, ...]
    #: Headers that follow the per-request ones on a successful preflight.
    preflight_tail: tuple[Header, ...]
    #: Added to responses that get no other CORS header (denials, excluded paths).
    vary_only: tuple[Header, ...]
    #: Added to responses to requests without a cross-origin ``Origin``: ``Vary: Origin``,
    #: or for an anonymous ``"*"`` the whole answer, so a shared cache can serve it to anyone.
    plain: tuple[Header, ...]
    #: The whole answer to an actual request from each exact origin, built once.
    exact_actual: Mapping[str, tuple[Header, ...]] = field(repr=False)

    def is_excluded(self, path: str) -> bool:
        """Does a pattern match ``path`` or any reading of it (:func:`.paths.readings`)?"""
        exact, prefixes = self.excluded_exact, self.excluded_prefixes
        return any(
            p in exact or (bool(prefixes) and p.startswith(prefixes)) for p in readings(path)
        )


def compile_policy(name: str, merged: Mapping[str, Any]) -> Policy:
    origins: Origins = merged["origins"]
    allow: HeaderNames = merged["allow_headers"]
    expose: HeaderNames = merged["expose_headers"]
    credentials: bool = merged["credentials"]
    matcher = OriginMatcher(origins.patterns, origins.callables)
    any_origin = origins.any and not credentials

    actual_tail: list[Header] = []
    preflight_tail: list[Header] = []
    if credentials:
        actual_tail.append(("Access-Control-Allow-Credentials", "true"))
        preflight_tail.append(("Access-Control-Allow-Credentials", "true"))
    if expose.any:
        actual_tail.append(("Access-Control-Expose-Headers", "*"))
    elif expose.names:
        actual_tail.append(("Access-Control-Expose-Headers", ", ".join(sorted(expose.names))))
    if not any_origin:  # the answer depends on Origin
        actual_tail.append(VARY_ORIGIN)
    max_age: int = merged["max_age"]
    if max_age:
        preflight_tail.append(("Access-Control-Max-Age", str(max(max_age, 0))))
    preflight_tail.append(VARY_PREFLIGHT)

    excluded: tuple[str, ...] = merged["excluded_paths"]
    require: Rule | None = merged["require"]
    return Policy(
        name=name,
        settings=MappingProxyType(dict(merged)),
        origins=matcher,
        any_origin=any_origin,
        methods=merged["methods"],
        allow_any_header=allow.any,
        allow_headers=allow.names,
        credentials=credentials,
        private_network=merged["private_network"],
        enabled=merged["enabled"],
        excluded_exact=frozenset(p for p in excluded if not p.endswith("*")),
        excluded_prefixes=tuple(p[:-1] for p in excluded if p.endswith("*")),
        excludes=bool(excluded),
        preflight=merged["preflight"],
        gate=merged["gate"] or require is not None,
        require=require,
        audience=frozenset(merged["audience"]) if merged["audience"] else None,
        debug=merged["debug"],
        expose_reasons=merged["expose_reasons"],
        actual_tail=tuple(actual_tail),
        preflight_tail=tuple(preflight_tail),
        vary_only=(VARY_ORIGIN,),
        plain=(
            (("Access-Control-Allow-Origin", "*"), *actual_tail)
            if any_origin and merged["enabled"] else (VARY_ORIGIN,)
        ),
        exact_actual={
            origin: (("Access-Control-Allow-Origin", origin), *actual_tail)
            for origin in (matcher.exact if merged["enabled"] else ())
        },
    )
