"""The scope tree: app > blueprint > view, compiled once into policies.

Flask picks the route; this module picks its policy. Settings given to
``@access.cors``/``@access.public``/``@access.exempt`` belong to the routes a
decorated view is registered on (:class:`ViewMarks`, looked up by endpoint),
never to a function object shared with other routes. Requests that fail routing
fall back to the blueprint owning the URL prefix, however the path is spelled.

Pure: no Flask.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from .paths import readings
from .policy import Policy, compile_policy, merge_layers, policy_defaults
from .settings import Problems, check_policy

__all__ = ["Scopes", "ViewMarks"]

logger = logging.getLogger("flask_access_cors")


@dataclass(frozen=True)
class ViewMarks:
    """What the decorators said about the view registered on one endpoint."""

    settings: Mapping[str, Any] | None = None
    public: bool = False
    exempt: bool = False

    def layer(self) -> Mapping[str, Any] | None:
        if self.public:
            return {**(self.settings or {}), "gate": False, "require": None}
        return self.settings


class Scopes:
    """Every scope's compiled policy; a policy with problems is never served."""

    def __init__(self, app_layer: Mapping[str, Any], *, has_verifier: bool,
                 admit_audience: Callable[[str], bool], development: bool,
                 problems: Problems) -> None:
        self.defaults = policy_defaults()
        self.app_layer = app_layer
        self.development = development
        self.has_verifier = has_verifier
        self.admit_audience = admit_audience
        #: Parsed blueprint layers and URL prefixes, by registered (dotted) name.
        self.blueprints: dict[str, tuple[Mapping[str, Any], str | None]] = {}
        self.by_chain: dict[tuple[str, ...], Policy] = {}
        self.by_endpoint: dict[str, Policy | None] = {}
        self.prefixes: list[tuple[str, Policy]] = []
        self.app = self.compile((), "app", problems)

    def compile(self, chain: tuple[str, ...], name: str, problems: Problems,
                view: Mapping[str, Any] | None = None) -> Policy:
        layers = [self.defaults, self.app_layer, *(self.blueprints[b][0] for b in chain)]
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
        if policy.expose_reasons and not self.development:
            logger.warning(
                "flask-access-cors: %s: expose_reasons tells every client why it was refused; "
                "it is meant for development, and this app is in neither debug nor testing "
                "mode", name,
            )
        for audience in sorted(policy.audience or ()):
            if not self.admit_audience(audience):
                problems.add(
                    "unreachable_audience",
                    f"{name}: audience {audience!r} is not among the audiences of any issuer "
                    "(issuers=[...] entries, or the app's own tokens), so no token could pass",
                )
        if policy.gate and not self.has_verifier:
            problems.add(
                "missing_verifier",
                f"{name}: gate/require is on but no verifier (team_domain, jwks_url, jwt_secret, "
                "signing_key) and no service_tokens are configured",
            )
        return policy

    def chain(self, blueprint: str | None) -> tuple[str, ...]:
        """The configured blueprints enclosing ``blueprint``, outermost first."""
        if not blueprint:
            return ()
        parts = blueprint.split(".")
        names = (".".join(parts[: i + 1]) for i in range(len(parts)))
        return tuple(n for n in names if n in self.blueprints)

    def chain_policy(self, chain: tuple[str, ...], problems: Problems) -> Policy:
        if not chain:
            return self.app
        policy = self.by_chain.get(chain)
        if policy is None:
            before = len(problems.items)
            policy = self.compile(chain, f"blueprint:{chain[-1]}", problems)
            if len(problems.items) == before:
                self.by_chain[chain] = policy
        return policy

    def add_blueprint(self, name: str, layer: Mapping[str, Any], url_prefix: str | None,
                      problems: Problems) -> None:
        self.blueprints[name] = (layer, url_prefix)
        self.by_chain.clear()
        self.by_endpoint.clear()
        policy = self.chain_policy(self.chain(name), problems)
        prefixes = [p for p in self.prefixes if p[0] != (url_prefix or "").rstrip("/")]
        if url_prefix and url_prefix.strip("/"):
            prefixes.append((url_prefix.rstrip("/"), policy))
        self.prefixes = sorted(prefixes, key=lambda p: -len(p[0]))

    def endpoint(self, endpoint: str, marks: ViewMarks | None, problems: Problems) -> Policy | None:
        """The policy of ``endpoint`` (``None``: exempt), compiled once."""
        before = len(problems.items)
        policy: Policy | None
        if marks is not None and marks.exempt:
            policy = None
        else:
            chain = self.chain(endpoint.rpartition(".")[0])
            layer = marks.layer() if marks is not None else None
            if layer is None:
                policy = self.chain_policy(chain, problems)
            else:
                policy = self.compile(chain, f"view:{endpoint}", problems, layer)
        if len(problems.items) == before:
            self.by_endpoint[endpoint] = policy
        return policy

    def fallback(self, path: str) -> Policy:
        """For requests that failed routing: a policy that excludes the path (a view's
        ``excluded_paths`` included: when in doubt, excluded), else the blueprint owning
        the URL prefix (under any reading of the path: ``/api//v1/x`` is under
        ``/api/v1``), else the app."""
        for policy in self.policies():
            if policy.excludes and policy.is_excluded(path):
                return policy
        if self.prefixes:
            spellings = readings(path)
            for prefix, policy in self.prefixes:
                for p in spellings:
                    if p == prefix or p.startswith(prefix + "/"):
                        return policy
        return self.app

    def policies(self) -> Iterator[Policy]:
        yield self.app
        yield from self.by_chain.values()
        yield from (p for p in self.by_endpoint.values() if p is not None)

    def is_exact_origin(self, origin: str) -> bool:
        return any(origin in p.origins.exact for p in self.policies())
