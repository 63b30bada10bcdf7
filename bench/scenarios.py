"""The scenarios of issue 6: each a set of variants measured side by side.

A builder returns a :class:`~bench.measure.Scenario`; building may fail (the
package under test is being written in parallel), in which case the scenario
is reported as broken with the error, and the others still run.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import apps
from .apps import DENIED_ORIGIN, ORIGIN
from .jwks import AUDIENCE, ISSUER, JWKSServer, SigningKey
from .measure import Row, Scenario, Target, Variant, stats
from .wsgi import Requests, WSGIApp, environ_template, null_app

__all__ = ["BUILDERS", "Context", "measure_startup"]

ACAO = "Access-Control-Allow-Origin"
ACAC = "Access-Control-Allow-Credentials"
ACAM = "Access-Control-Allow-Methods"
ACAH = "Access-Control-Allow-Headers"

PREFLIGHT: dict[str, str] = {
    "Origin": ORIGIN,
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "content-type,x-requested-with",
}
#: A host under the 501st wildcard, https://*.tenant500.example.net.
WILDCARD_REQUEST_ORIGIN = "https://app.tenant500.example.net"


@dataclass
class Context:
    """Resources shared by scenarios, created on first use and closed at the end."""

    quick: bool
    fresh_tokens: int
    _key: SigningKey | None = None
    _jwks: JWKSServer | None = None
    _tmp: tempfile.TemporaryDirectory[str] | None = None
    _closers: list[Callable[[], None]] = field(default_factory=list)

    @property
    def key(self) -> SigningKey:
        if self._key is None:
            self._key = SigningKey()
        return self._key

    @property
    def jwks_url(self) -> str:
        if self._jwks is None:
            self._jwks = JWKSServer(self.key.jwks())
            self._closers.append(self._jwks.close)
        return self._jwks.url

    @property
    def tmp(self) -> Path:
        if self._tmp is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="flask-access-cors-bench-")
            self._closers.append(self._tmp.cleanup)
        return Path(self._tmp.name)

    def close(self) -> None:
        while self._closers:
            self._closers.pop()()


def _get(origin: str | None = ORIGIN, path: str = "/api/items", **headers: str) -> dict[str, Any]:
    if origin is not None:
        headers["Origin"] = origin
    return environ_template("GET", path, {k.replace("_", "-"): v for k, v in headers.items()})


def _options(**overrides: str) -> dict[str, Any]:
    headers = dict(PREFLIGHT)
    headers.update({k.replace("_", "-"): v for k, v in overrides.items()})
    return environ_template("OPTIONS", "/api/items", headers)


def _v(key: str, label: str, library: str, app: WSGIApp, requests: Requests | dict[str, Any],
       status: int, **kw: Any) -> Variant:
    if not isinstance(requests, Requests):
        requests = Requests(requests)
    return Variant(key, label, library, app, requests, status, **kw)


def get_allowed(ctx: Context) -> Scenario:
    env = _get()
    return Scenario(
        "get_allowed",
        "Actual GET, allowed origin",
        "GET /api/items from an allowed origin, credentialed policy.",
        [
            _v("bare", "bare Flask", "bare", apps.bare_app(), env, 200, absent=(ACAO,)),
            _v("flask_cors", "flask-cors", "flask-cors", apps.flask_cors_app(), env, 200,
               present=(ACAO,)),
            _v("access_cors", "flask-access-cors", "access-cors", apps.access_cors_app(), env, 200,
               present=(ACAO, ACAC, "Vary"), target=Target(1.15, "<= 1.15 x bare")),
            _v("harness", "null WSGI app (harness cost)", "harness", null_app, env, 200),
        ],
        bare="bare",
    )


def get_no_origin(ctx: Context) -> Scenario:
    env = _get(None)
    return Scenario(
        "get_no_origin",
        "GET without Origin (not CORS)",
        "Same-origin or server-to-server traffic: what the layer costs when it has nothing to do.",
        [
            _v("bare", "bare Flask", "bare", apps.bare_app(), env, 200),
            _v("flask_cors", "flask-cors", "flask-cors", apps.flask_cors_app(), env, 200),
            _v("access_cors", "flask-access-cors", "access-cors", apps.access_cors_app(), env, 200,
               present=("Vary",), absent=(ACAO,)),
        ],
        bare="bare",
    )


def preflight(ctx: Context) -> Scenario:
    allowed, denied = _options(), _options(Origin=DENIED_ORIGIN)
    fc, ac = apps.flask_cors_app(), apps.access_cors_app()
    return Scenario(
        "preflight",
        "Preflight",
        "OPTIONS /api/items, Access-Control-Request-Method: POST, two request headers. "
        "Bare Flask answers it with its automatic OPTIONS response.",
        [
            _v("bare", "bare Flask (automatic OPTIONS)", "bare", apps.bare_app(), allowed, 200,
               present=("Allow",)),
            _v("flask_cors", "flask-cors, allowed", "flask-cors", fc, allowed, 200,
               present=(ACAO, ACAH)),
            _v("access_cors", "flask-access-cors, allowed", "access-cors", ac, allowed, 204,
               present=(ACAO, ACAM, ACAH), target=Target(1.0, "<= 1.0 x bare OPTIONS")),
            _v("flask_cors_denied", "flask-cors, origin denied", "flask-cors", fc, denied, 200,
               absent=(ACAO,), baseline="flask_cors"),
            _v("access_cors_denied", "flask-access-cors, origin denied", "access-cors", ac, denied,
               403, absent=(ACAO,), baseline="access_cors",
               target=Target(1.0, "<= 1.0 x allowed preflight")),
        ],
        bare="bare",
    )


def origins_large(ctx: Context) -> Scenario:
    exact = apps.many_exact_origins(10_000)
    wild = apps.many_wildcard_origins(1_000)
    hit = exact[5_000]
    env_exact, env_wild = _get(hit), _get(WILDCARD_REQUEST_ORIGIN)
    big = apps.access_cors_app(exact + wild)
    fc_big = apps.flask_cors_app([*exact, *apps.wildcard_regexes(1_000)])
    fc_one = apps.flask_cors_app([hit])
    return Scenario(
        "origins_large",
        "10,000 exact origins + 1,000 wildcards",
        "GET from an allowed origin: the 5,001st exact origin, or a host under the 501st "
        "wildcard https://*.tenant500.example.net; compared with a policy of that one origin "
        "(or that one wildcard).",
        [
            _v("bare", "bare Flask", "bare", apps.bare_app(), env_exact, 200),
            _v("access_one", "flask-access-cors, 1 origin", "access-cors",
               apps.access_cors_app([hit]), env_exact, 200, present=(ACAO,)),
            _v("access_big_exact", "flask-access-cors, 11k, exact hit", "access-cors", big,
               env_exact, 200, present=(ACAO,), baseline="access_one",
               target=Target(1.05, "<= 1.05 x 1 origin")),
            _v("access_one_wild", "flask-access-cors, 1 wildcard", "access-cors",
               apps.access_cors_app(["https://*.tenant500.example.net"]), env_wild, 200,
               present=(ACAO,)),
            _v("access_big_wild", "flask-access-cors, 11k, wildcard hit", "access-cors", big,
               env_wild, 200, present=(ACAO,), baseline="access_one_wild",
               target=Target(1.05, "<= 1.05 x 1 wildcard")),
            _v("flask_cors_one", "flask-cors, 1 origin", "flask-cors", fc_one, env_exact, 200,
               present=(ACAO,)),
            _v("flask_cors_big_exact", "flask-cors, 11k, exact hit", "flask-cors", fc_big,
               env_exact, 200, present=(ACAO,), baseline="flask_cors_one"),
            _v("flask_cors_big_wild", "flask-cors, 11k, wildcard hit", "flask-cors", fc_big,
               env_wild, 200, present=(ACAO,), baseline="flask_cors_one"),
        ],
        bare="bare",
    )


def _long_origin(length: int = 400) -> str:
    host = ".".join(["a" * 63] * 8)
    origin = f"https://{host}"[: length - len(".example.com")] + ".example.com"
    return origin.replace("..", ".a")


def hostile(ctx: Context) -> Scenario:
    inputs: list[tuple[str, str, dict[str, Any]]] = [
        ("commas_8k", "8 KiB of commas in ACRH", _options(Access_Control_Request_Headers="," * 8192)),
        ("commas_64k", "64 KiB of commas in ACRH",
         _options(Access_Control_Request_Headers="," * 65536)),
        ("names_1000", "1,000 repeated names in ACRH",
         _options(Access_Control_Request_Headers=", ".join(["content-type"] * 1000))),
        ("origin_400", "400-byte Origin", _options(Origin=_long_origin())),
        ("origin_dup", "duplicated Origin (a, a)", _options(Origin=f"{ORIGIN}, {ORIGIN}")),
    ]
    normal = _options()
    ac, fc = apps.access_cors_app(), apps.flask_cors_app()
    variants = [
        _v("bare", "bare Flask, normal preflight", "bare", apps.bare_app(), normal, 200),
        _v("access_cors", "flask-access-cors, normal preflight", "access-cors", ac, normal, 204,
           present=(ACAO,)),
    ]
    for key, label, env in inputs:
        variants.append(
            _v(f"access_{key}", f"flask-access-cors, {label}", "access-cors", ac, env, 403,
               absent=(ACAO,), baseline="access_cors",
               target=Target(1.2, "<= 1.2 x normal preflight"))
        )
    variants.append(_v("flask_cors", "flask-cors, normal preflight", "flask-cors", fc, normal, 200,
                       present=(ACAO,)))
    for key, label, env in inputs:
        variants.append(_v(f"flask_cors_{key}", f"flask-cors, {label}", "flask-cors", fc, env, 200,
                           baseline="flask_cors"))
    return Scenario(
        "hostile",
        "Hostile preflights",
        "Preflights built to make header parsing expensive, compared with a normal preflight "
        "on the same app (ACRH: Access-Control-Request-Headers).",
        variants,
        bare="bare",
    )


def gate(ctx: Context) -> Scenario:
    url = ctx.jwks_url
    one = ctx.key.token("u1")
    fresh = ctx.key.tokens(ctx.fresh_tokens, prefix="fresh")
    app = apps.access_cors_app(gate=True, jwks_url=url, audience=AUDIENCE, issuer=ISSUER)
    env = _get(path="/api/private")

    def cookies(tokens: list[str]) -> Requests:
        return Requests(env, {"HTTP_COOKIE": [f"CF_Authorization={t}" for t in tokens]})

    return Scenario(
        "gate",
        "Gated GET, RS256 token in the CF_Authorization cookie",
        "GET /api/private from an allowed origin with an RS256 access cookie, keys from a "
        "JWKS served on loopback. Cached: the same token every time (verified-token cache). "
        f"Fresh: a new token on every request ({ctx.fresh_tokens:,} distinct tokens, more "
        "than this variant serves, so every request verifies the signature).",
        [
            _v("bare", "bare Flask (same cookie)", "bare", apps.bare_app(), cookies([one]), 200),
            _v("access_cached", "flask-access-cors, token seen before", "access-cors", app,
               cookies([one]), 200, present=(ACAO,), target=Target(1.25, "<= 1.25 x bare")),
            _v("access_fresh", "flask-access-cors, fresh token each request", "access-cors", app,
               cookies(fresh), 200, present=(ACAO,), distinct=len(fresh)),
            _v("access_missing", "flask-access-cors, no token (401)", "access-cors", app,
               Requests(env, {"HTTP_COOKIE": ["theme=dark"]}), 401, present=(ACAO,)),
        ],
        bare="bare",
    )


def debug(ctx: Context) -> Scenario:
    distinct = [f"https://evil{i}.example.org" for i in range(50_000)]

    def requests(origins: list[str]) -> Requests:
        return Requests(_get(DENIED_ORIGIN), {"HTTP_ORIGIN": origins})

    def on(name: str) -> Any:
        return apps.access_cors_app(debug=True, event_store=f"sqlite:///{ctx.tmp / name}.sqlite3")

    off, on_same, on_distinct = apps.access_cors_app(), on("identical"), on("distinct")
    scenario = Scenario(
        "debug",
        "Denied GET, debug event log on (SQLite) and off",
        "GET /api/items from an origin that is not allowed: 403 before the view. Identical: "
        "the same origin every time (a flood the rate limiter folds). Distinct: a new origin "
        "on every request, so every denial is a new event for the background writer.",
        [
            _v("bare", "bare Flask (same request)", "bare", apps.bare_app(), requests([DENIED_ORIGIN]),
               200),
            _v("off_same", "debug off, identical denials", "access-cors", off,
               requests([DENIED_ORIGIN]), 403, absent=(ACAO,)),
            _v("on_same", "debug on, identical denials", "access-cors", on_same,
               requests([DENIED_ORIGIN]), 403, absent=(ACAO,), baseline="off_same",
               target=Target(2.0, "<= 2 x debug off")),
            _v("off_distinct", "debug off, distinct origins", "access-cors", off,
               requests(distinct), 403, absent=(ACAO,)),
            _v("on_distinct", "debug on, distinct origins", "access-cors", on_distinct,
               requests(distinct), 403, absent=(ACAO,), baseline="off_distinct",
               distinct=len(distinct)),
        ],
        bare="bare",
    )

    def close() -> None:
        for variant, app in (("on_same", on_same), ("on_distinct", on_distinct)):
            access = app.extensions["bench.access"]
            with app.app_context():
                log = access.events
                stored = log.search(limit=100_000)  # flushes this process's queue first
                log.close()
            target = next(v for v in scenario.variants if v.key == variant)
            target.note = (f"{len(stored):,} events stored for {sum(e.count for e in stored):,} "
                           f"denials; {log.dropped:,} dropped")

    scenario.cleanup = close
    return scenario


BUILDERS: dict[str, Callable[[Context], Scenario]] = {
    "get_allowed": get_allowed,
    "get_no_origin": get_no_origin,
    "preflight": preflight,
    "origins_large": origins_large,
    "hostile": hostile,
    "gate": gate,
    "debug": debug,
}


def measure_startup(runs: int = 5, clock: str = "cpu") -> list[Row]:
    """``AccessCors(app, origins=[...])`` (validation and compilation), median of ``runs``."""
    from flask_cors import CORS  # type: ignore[import-untyped]

    from flask_access_cors import AccessCors

    exact = apps.many_exact_origins(10_000)
    wild = apps.many_wildcard_origins(1_000)
    regexes = apps.wildcard_regexes(1_000)

    def access(origins: list[str]) -> Callable[[Any], object]:
        return lambda app: AccessCors(app, origins=origins, credentials=True, event_store="memory://")

    cases: list[tuple[str, str, str, Callable[[Any], object], Target | None]] = [
        ("access_one", "AccessCors, 1 origin", "access-cors", access(exact[:1]), None),
        ("access_10k", "AccessCors, 10,000 origins", "access-cors", access(exact),
         Target(100_000, "< 100 ms", absolute_us=True)),
        ("access_11k", "AccessCors, 10,000 origins + 1,000 wildcards", "access-cors",
         access(exact + wild), Target(100_000, "< 100 ms", absolute_us=True)),
        ("flask_cors_11k", "CORS (flask-cors), same 11,000", "flask-cors",
         lambda app: CORS(app, origins=[*exact, *regexes]), None),
    ]
    now = time.process_time_ns if clock == "cpu" else time.perf_counter_ns
    times: dict[str, list[float]] = {key: [] for key, *_ in cases}
    walls: dict[str, list[float]] = {key: [] for key, *_ in cases}
    for run in range(runs):
        for key, _label, _lib, setup, _target in cases if run % 2 == 0 else reversed(cases):
            app = apps.bare_app()
            t0, w0 = now(), time.perf_counter_ns()
            setup(app)
            w1, t1 = time.perf_counter_ns(), now()
            times[key].append((t1 - t0) / 1e3)
            walls[key].append((w1 - w0) / 1e3)
    rows = []
    for key, label, library, _setup, target in cases:
        median, low, high = stats(times[key])
        rows.append(Row(
            scenario="startup", variant=key, label=label, library=library,
            median_us=median, min_us=low, max_us=high,
            target=target.text if target else None,
            met=target.met(None, median) if target else None,
            per_run_us=[round(t, 1) for t in times[key]],
            per_run_other_us=[round(t, 1) for t in walls[key]],
            note=f"median of {runs}; IQR {_iqr(times[key])}",
        ))
    return rows


def _iqr(values: list[float]) -> str:
    if len(values) < 4:
        return "n/a"
    q = statistics.quantiles(values, n=4)
    return f"{q[0] / 1e3:.1f}-{q[2] / 1e3:.1f} ms"
