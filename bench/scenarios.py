"""The scenarios: variants timed side by side, each variant's answer checked.

A variant's ``call(i)`` serves request ``i`` through the app's WSGI callable (no
server, no test client) and drains the body, or builds an app for start-up;
``check()`` says what is wrong with its answer (status, headers), or ``None``.
"""

from __future__ import annotations

import io
import json
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from werkzeug.test import Client, EnvironBuilder

from . import apps
from .apps import DENIED_ORIGIN, ORIGIN

ACAO, ACAC = "Access-Control-Allow-Origin", "Access-Control-Allow-Credentials"
ACAM, ACAH = "Access-Control-Allow-Methods", "Access-Control-Allow-Headers"
AUDIENCE, ISSUER, KID = "aud-tag", "https://team.cloudflareaccess.com", "bench-key-1"
FRESH_TOKENS = 6_144  # more than the verified-token cache (4,096, oldest evicted first)


@dataclass
class Variant:
    key: str
    label: str
    call: Callable[[int], object] | None  # None: skipped, see note
    check: Callable[[], str | None] = lambda: None
    baseline: str | None = None
    limit: float | None = None  # target: ratio <= limit (or median ms < limit, absolute)
    target: str = ""
    absolute: bool = False
    note: str = ""


@dataclass
class Scenario:
    key: str
    title: str
    variants: list[Variant]
    close: Callable[[], object] = lambda: None

    def timed(self) -> list[Variant]:
        return [v for v in self.variants if v.call is not None]

    def problems(self) -> list[str]:
        return [f"{self.key}/{v.key}: {p}" for v in self.timed() if (p := v.check())]


def environ(method: str, path: str = "/api/items", **headers: str) -> dict[str, Any]:
    """A WSGI environ for ``https://api.example.com``; ``Access_Control_X=`` is a header."""
    return EnvironBuilder(path, "https://api.example.com", method=method,
                          environ_base={"REMOTE_ADDR": "192.0.2.1"},
                          headers={k.replace("_", "-"): v for k, v in headers.items()}).get_environ()


def get(origin: str | None = ORIGIN, path: str = "/api/items", **headers: str) -> dict[str, Any]:
    return environ("GET", path, **({"Origin": origin} if origin else {}), **headers)


def preflight(**headers: str) -> dict[str, Any]:
    return environ("OPTIONS", **{"Origin": ORIGIN, "Access_Control_Request_Method": "POST",
                                 "Access_Control_Request_Headers": "content-type,x-requested-with",
                                 **headers})


class Requests:
    """Environ ``i``: a copy of the template, a fresh body, the i-th of each varying value."""

    def __init__(self, template: dict[str, Any], **varying: Sequence[str]) -> None:
        self.template, self.varying = template, list(varying.items())

    def __call__(self, i: int) -> dict[str, Any]:
        env = self.template.copy()
        env["wsgi.input"] = io.BytesIO(b"")
        for key, values in self.varying:
            env[key] = values[i % len(values)]
        return env


def _start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[[bytes], None]:
    return lambda data: None


def wsgi(key: str, label: str, app: Any, requests: Requests | dict[str, Any], status: int,
         present: Sequence[str] = (), absent: Sequence[str] = (), **kw: Any) -> Variant:
    reqs = requests if isinstance(requests, Requests) else Requests(requests)

    def call(i: int) -> None:  # the timed path: the least a server does with the answer
        body = app(reqs(i), _start)
        for _chunk in body:
            pass
        getattr(body, "close", lambda: None)()

    def check() -> str | None:
        r = Client(app, use_cookies=False).open(reqs(0))
        problems = [f"missing {h}" for h in present if h not in r.headers]
        problems += [f"unexpected {h}" for h in absent if h in r.headers]
        if r.status_code != status:
            problems.insert(0, f"status {r.status_code}, expected {status} ({r.data[:80]!r})")
        return "; ".join(problems) or None

    return Variant(key, label, call, check, **kw)


def optional(setting: str, key: str, label: str, build: Callable[[], Variant]) -> Variant:
    """``build()``; skipped if this version of the package lacks ``setting``, an error if it refuses it."""
    from flask_access_cors import ConfigError

    try:
        return build()
    except ConfigError as exc:
        if any(f"unknown setting {setting!r}" in message for _, message in exc.problems):
            return Variant(key, label, None, note=f"skipped: this version has no setting {setting}=")
        return Variant(key, label, None, note=f"ERROR ConfigError: {exc.problems[0][1]}")


def prepare(data: Path) -> Callable[[], None]:
    """Once, in the main process: an RSA key, its JWKS on loopback, the tokens; returns ``stop``."""
    import jwt
    from cryptography.hazmat.primitives.asymmetric import rsa

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

    key, now = rsa.generate_private_key(public_exponent=65537, key_size=2048), int(time.time())
    jwk = {**json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key())), "kid": KID, "alg": "RS256"}
    (data / "jwks.json").write_text(json.dumps({"keys": [jwk]}))
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(Quiet, directory=str(data)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    claims = {"email": "a@example.com", "aud": [AUDIENCE], "iss": ISSUER, "iat": now, "exp": now + 10800}
    tokens = [jwt.encode({**claims, "sub": f"u{i}"}, key, "RS256", headers={"kid": KID})
              for i in range(FRESH_TOKENS + 1)]
    url = f"http://127.0.0.1:{server.server_address[1]}/jwks.json"
    (data / "gate.json").write_text(json.dumps({"jwks_url": url, "tokens": tokens}))
    return server.shutdown


def get_allowed(data: Path) -> Scenario:
    env = get()
    return Scenario("get_allowed", "Actual GET, allowed origin (credentialed policy)", [
        wsgi("bare", "bare Flask", apps.bare_app(), env, 200, absent=[ACAO]),
        wsgi("flask_cors", "flask-cors", apps.flask_cors_app(), env, 200, present=[ACAO]),
        wsgi("access_cors", "flask-access-cors", apps.access_cors_app(), env, 200,
             present=[ACAO, ACAC, "Vary"], limit=1.15, target="<= 1.15 x bare")])


def preflight_scenario(data: Path) -> Scenario:
    ok, denied = preflight(), preflight(Origin=DENIED_ORIGIN)
    fc, ac = apps.flask_cors_app(), apps.access_cors_app()
    return Scenario("preflight", "Preflight OPTIONS, allowed and denied origin", [
        wsgi("bare", "bare Flask (automatic OPTIONS)", apps.bare_app(), ok, 200, present=["Allow"]),
        wsgi("flask_cors", "flask-cors, allowed", fc, ok, 200, present=[ACAO, ACAH]),
        wsgi("access_cors", "flask-access-cors, allowed", ac, ok, 204, present=[ACAO, ACAM, ACAH], limit=1.0,
             target="<= 1.0 x bare OPTIONS"),
        wsgi("flask_cors_denied", "flask-cors, denied", fc, denied, 200, absent=[ACAO],
             baseline="flask_cors"),
        wsgi("access_denied", "flask-access-cors, denied", ac, denied, 403, absent=[ACAO],
             baseline="access_cors", limit=1.0, target="<= 1.0 x allowed preflight")])


def origins_large(data: Path, flask_cors: bool = False) -> Scenario:
    """flask-cors apart: a request to its 11k policy costs 100 times the others, who would get few loops."""
    exact, wild, one_wild = apps.exact_origins(10_000), apps.wildcard_origins(1_000), "https://*.tenant500.example.net"
    by_exact, by_wild, hit = get(exact[5_000]), get("https://app.tenant500.example.net"), [ACAO]
    if flask_cors:
        big = apps.flask_cors_app([*exact, *apps.wildcard_regexes(1_000)])
        return Scenario("origins_large_flask_cors", "The same with flask-cors (wildcards as regexes)", [
            wsgi("one", "flask-cors, 1 origin", apps.flask_cors_app(exact[5_000:5_001]), by_exact, 200,
                 present=hit),
            wsgi("big", "flask-cors, 11k, exact hit", big, by_exact, 200, present=hit),
            wsgi("big_wild", "flask-cors, 11k, wildcard hit", big, by_wild, 200, present=hit)])
    big = apps.access_cors_app(exact + wild)
    return Scenario("origins_large", "10,000 exact origins + 1,000 wildcards vs a policy of the one that "
                    "matches (the 5,001st origin, or the 501st wildcard)", [
        wsgi("bare", "bare Flask", apps.bare_app(), by_exact, 200),
        wsgi("one", "flask-access-cors, 1 origin", apps.access_cors_app([exact[5_000]]), by_exact, 200,
             present=hit),
        wsgi("big", "flask-access-cors, 11k, exact hit", big, by_exact, 200, present=hit, baseline="one",
             limit=1.05, target="<= 1.05 x 1 origin"),
        wsgi("one_wild", "flask-access-cors, 1 wildcard", apps.access_cors_app([one_wild]), by_wild, 200,
             present=hit),
        wsgi("big_wild", "flask-access-cors, 11k, wildcard hit", big, by_wild, 200, present=hit,
             baseline="one_wild", limit=1.05, target="<= 1.05 x 1 wildcard")])


def hostile(data: Path, flask_cors: bool = False) -> Scenario:
    """flask-cors apart: it takes up to 1,000 times longer on these, and the others would get few loops."""
    acrh, long_host = "Access_Control_Request_Headers", ".".join(["a" * 63] * 6)[:380]
    inputs = [("commas_8k", "8 KiB of commas in ACRH", {acrh: "," * 8192}),
              ("commas_64k", "64 KiB of commas in ACRH", {acrh: "," * 65536}),
              ("names_1000", "1,000 repeated names in ACRH", {acrh: ", ".join(["content-type"] * 1000)}),
              ("origin_400", "400-byte Origin", {"Origin": f"https://{long_host}.example.com"}),
              ("origin_dup", "duplicated Origin (a, a)", {"Origin": f"{ORIGIN}, {ORIGIN}"})]
    if flask_cors:
        fc = apps.flask_cors_app()
        return Scenario("hostile_flask_cors", "The same hostile preflights to flask-cors", [
            wsgi("normal", "flask-cors, normal preflight", fc, preflight(), 200, present=[ACAO]),
            *(wsgi(k, f"flask-cors, {label}", fc, preflight(**h), 200) for k, label, h in inputs)])
    ac = apps.access_cors_app()
    return Scenario("hostile", "Hostile preflights (ACRH: Access-Control-Request-Headers) vs a normal one", [
        wsgi("bare", "bare Flask, normal preflight", apps.bare_app(), preflight(), 200),
        wsgi("normal", "flask-access-cors, normal", ac, preflight(), 204, present=[ACAO]),
        *(wsgi(k, f"flask-access-cors, {label}", ac, preflight(**h), 403, absent=[ACAO], baseline="normal",
               limit=1.2, target="<= 1.2 x normal preflight") for k, label, h in inputs)])


def gate(data: Path) -> Scenario:
    shared = json.loads((data / "gate.json").read_text())
    url, (seen, *fresh) = shared["jwks_url"], shared["tokens"]
    app = apps.access_cors_app(gate=True, jwks_url=url, audience=AUDIENCE, issuer=ISSUER)
    env, target = get(path="/api/private"), {"limit": 1.25, "target": "<= 1.25 x bare"}

    def cookies(*values: str) -> Requests:
        return Requests(env, HTTP_COOKIE=[f"CF_Authorization={t}" for t in values])

    def two_issuers() -> Variant:  # the token's issuer is the second one listed
        two = apps.access_cors_app(gate=True, issuers=[
            {"issuer": "https://other.cloudflareaccess.com", "jwks_url": url, "audience": AUDIENCE},
            {"issuer": ISSUER, "jwks_url": url, "audience": AUDIENCE}])
        return wsgi("access_two_issuers", "flask-access-cors, 2 issuers, token seen", two, cookies(seen), 200,
                    present=[ACAO], **target)

    return Scenario("gate", "Gated GET, RS256 token in the CF_Authorization cookie, JWKS on loopback; "
                    f"first-seen: {len(fresh):,} tokens in turn, more than the verified-token cache holds", [
        wsgi("bare", "bare Flask (same cookie)", apps.bare_app(), cookies(seen), 200),
        wsgi("access_seen", "flask-access-cors, token seen before", app, cookies(seen), 200, present=[ACAO],
             **target),
        optional("issuers", "access_two_issuers", "flask-access-cors, 2 issuers, token seen", two_issuers),
        wsgi("access_fresh", "flask-access-cors, first-seen token", app, cookies(*fresh), 200,
             present=[ACAO]),
        wsgi("access_missing", "flask-access-cors, no token (401)", app,
             Requests(env, HTTP_COOKIE=["theme=dark"]), 401, present=[ACAO])])


def debug(data: Path) -> Scenario:
    tmp = tempfile.TemporaryDirectory(prefix="bench-events-")
    on_same, on_distinct = (apps.access_cors_app(debug=True, event_store=f"sqlite:///{tmp.name}/{name}.sqlite3")
                            for name in ("same", "distinct"))
    off, same = apps.access_cors_app(), Requests(get(DENIED_ORIGIN))
    distinct = Requests(get(DENIED_ORIGIN), HTTP_ORIGIN=[f"https://x{i}.example.org" for i in range(50_000)])

    def close() -> None:
        for app in (on_same, on_distinct):
            with app.app_context():
                app.extensions[apps.KEY].events.close()
        tmp.cleanup()

    return Scenario("debug", "Denied GET (403), debug event log on (SQLite) and off; identical: the same "
                    "origin each time (folded by the rate limiter), distinct: a new origin each time", [
        wsgi("bare", "bare Flask (same request)", apps.bare_app(), same, 200),
        wsgi("off_same", "debug off, identical denials", off, same, 403, absent=[ACAO]),
        wsgi("on_same", "debug on, identical denials", on_same, same, 403, absent=[ACAO], baseline="off_same",
             limit=2.0, target="<= 2 x debug off"),
        wsgi("off_distinct", "debug off, distinct origins", off, distinct, 403),
        wsgi("on_distinct", "debug on, distinct origins", on_distinct, distinct, 403,
             baseline="off_distinct"),
    ], close=close)


def metrics(data: Path) -> Scenario:
    allowed, denied, off = get(), get(DENIED_ORIGIN), apps.access_cors_app()

    def on(name: str, env: dict[str, Any], status: int) -> Variant:
        return optional("metrics", f"on_{name}", f"metrics on, {name} GET", lambda: wsgi(
            f"on_{name}", f"metrics on, {name} GET", apps.access_cors_app(metrics=True), env, status,
            baseline=f"off_{name}"))

    ons = [on("allowed", allowed, 200), on("denied", denied, 403)]
    return Scenario("metrics", "Metrics on (metrics=True) and off", [
        wsgi("bare", "bare Flask", apps.bare_app(), allowed, 200),
        wsgi("off_allowed", "metrics off, allowed GET", off, allowed, 200, present=[ACAO]), ons[0],
        wsgi("off_denied", "metrics off, denied GET", off, denied, 403), ons[1],
    ] if any(v.call for v in ons) else ons)


def startup(data: Path) -> Scenario:
    from flask_cors import CORS

    from flask_access_cors import AccessCors

    exact, wild = apps.exact_origins(10_000), apps.wildcard_origins(1_000)
    fc_origins = exact + apps.wildcard_regexes(1_000)

    def make(key: str, label: str, setup: Callable[[Any], object], **kw: Any) -> Variant:
        return Variant(key, label, lambda i: setup(apps.bare_app()),
                       lambda: setup(apps.bare_app()) and None, **kw)

    def access(origins: list[str]) -> Callable[[Any], object]:
        return lambda app: AccessCors(app, origins=origins, credentials=True, event_store="memory://")

    limit = {"limit": 100.0, "target": "< 100 ms", "absolute": True}
    return Scenario("startup", "Start-up: a new app with the routes, then the extension (validation, "
                    "parsing, compilation; a refused configuration raises)", [
        make("bare", "Flask app alone", lambda app: app),
        make("access_one", "AccessCors, 1 origin", access(exact[:1])),
        make("access_10k", "AccessCors, 10,000 origins", access(exact), **limit),
        make("access_11k", "AccessCors, 10,000 + 1,000 wildcards", access(exact + wild), **limit),
        make("flask_cors_11k", "CORS (flask-cors), same 11,000", lambda app: CORS(app, origins=fc_origins))])


BUILDERS: dict[str, Callable[[Path], Scenario]] = {
    "get_allowed": get_allowed, "preflight": preflight_scenario,
    "origins_large": origins_large, "origins_large_flask_cors": partial(origins_large, flask_cors=True),
    "hostile": hostile, "hostile_flask_cors": partial(hostile, flask_cors=True), "gate": gate, "debug": debug,
    "metrics": metrics, "startup": startup}
