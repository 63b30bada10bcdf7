"""Property-based tests: arbitrary valid configurations x arbitrary request facts.

Each example builds a real app with a generated policy and sends one generated
request through the Flask layer, then checks the invariants that must hold
whatever the configuration.
"""

from __future__ import annotations

import re
from typing import Any

from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flask_access_cors import AccessCors, request_denied

PATTERNS = ["https://app.example.com", "https://*.example.com", "http://localhost:*",
            "http://127.0.0.1:5000", "https://other.test"]
ORIGINS = ["https://app.example.com", "https://a.b.example.com", "https://example.com",
           "http://localhost:3000", "http://127.0.0.1:5000", "https://evil.test", "null",
           "https://app.example.com,https://app.example.com", "https://app.example.com/",
           "http://localhost", "https://ÄPP.example.com", "https://x.example.com\r\nX: 1",
           "https://" + "a" * 400 + ".com"]
METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "patch", "DELETE", "OPTIONS", "PURGE", "TRACE"]
PATHS = ["/items", "/admin", "/admin/x", "/missing", "/account", "/items/"]
HEADER_LISTS = [None, "content-type", "x-custom", "authorization", "x-custom,content-type",
                "," * 5000, "x-a," * 200, "bad header"]
CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@st.composite
def configurations(draw: st.DrawFn) -> dict[str, Any]:
    any_origin = draw(st.booleans()) and draw(st.booleans())
    credentials = False if any_origin else draw(st.booleans())
    origins: Any = "*" if any_origin else draw(st.lists(st.sampled_from(PATTERNS), unique=True))
    if credentials and not any_origin:
        origins = [o for o in origins if not o.startswith("http://") or "localhost" in o
                   or "127.0.0.1" in o]
    config: dict[str, Any] = {
        "origins": origins,
        "credentials": credentials,
        "methods": draw(st.lists(st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE"]),
                                 min_size=1, unique=True)),
        "allow_headers": draw(st.sampled_from(["*", ["X-Custom"], ["Content-Type"], []])),
        "excluded_paths": draw(st.lists(st.sampled_from(["/admin*", "/account"]), unique=True)),
        "enabled": draw(st.booleans()) or draw(st.booleans()),
        "max_age": draw(st.sampled_from([-1, 0, 600])),
        "private_network": draw(st.booleans()),
        "preflight": draw(st.sampled_from(["respond", "bypass"])),
        "debug": True,
        "event_store": "memory://",
    }
    return config


@st.composite
def requests(draw: st.DrawFn) -> dict[str, Any]:
    method = draw(st.sampled_from(METHODS))
    environ: dict[str, Any] = {"REQUEST_METHOD": method}
    origin = draw(st.none() | st.sampled_from(ORIGINS) | st.text(max_size=40))
    if origin is not None:
        environ["HTTP_ORIGIN"] = origin
    if method == "OPTIONS" and draw(st.booleans()):
        environ["HTTP_ACCESS_CONTROL_REQUEST_METHOD"] = draw(st.sampled_from(METHODS))
        acrh = draw(st.sampled_from(HEADER_LISTS))
        if acrh is not None:
            environ["HTTP_ACCESS_CONTROL_REQUEST_HEADERS"] = acrh
        if draw(st.booleans()):
            environ["HTTP_ACCESS_CONTROL_REQUEST_PRIVATE_NETWORK"] = "true"
    return {"path": draw(st.sampled_from(PATHS)), "environ": environ}


def build(config: dict[str, Any]) -> tuple[Flask, AccessCors]:
    app = Flask(__name__)
    app.config["PROPAGATE_EXCEPTIONS"] = False
    access = AccessCors(app, **config)
    for path in ("/items", "/admin", "/admin/x", "/account"):
        app.add_url_rule(path, path, lambda: "ok", methods=["GET", "POST", "PUT", "PATCH",
                                                              "DELETE", "PURGE"])
    return app, access


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(configurations(), requests())
def test_invariants(config: dict[str, Any], req: dict[str, Any]) -> None:
    app, access = build(config)
    events: list[Any] = []

    def receiver(sender: Flask, event: Any) -> None:
        events.append(event)

    with request_denied.connected_to(receiver, app):
        response = app.test_client().open(req["path"], environ_overrides=req["environ"])
    assert response.status_code < 500, response.get_data(as_text=True)
    acao = response.headers.getlist("Access-Control-Allow-Origin")
    assert len(acao) <= 1
    if acao and acao[0] == "*":
        assert "Access-Control-Allow-Credentials" not in response.headers
    if acao:
        assert acao[0] in ("*", req["environ"].get("HTTP_ORIGIN"))
    if acao and acao[0] != "*":
        vary = ",".join(response.headers.getlist("Vary")).lower()
        assert "origin" in vary
    excluded = any(req["path"] == p or (p.endswith("*") and req["path"].startswith(p[:-1]))
                   for p in config["excluded_paths"])
    if excluded:
        assert not any(n.lower().startswith("access-control-") for n in response.headers.keys())
    denied = response.status_code == 403  # the views here never answer 403 themselves
    assert denied == bool(events)
    with app.app_context():
        stored = access.events.search()
    assert len(stored) == len(events)  # debug on: a denial if and only if an event
    for event in stored:
        for text in (event.message, event.origin or "", event.path, event.method):
            assert not CONTROL.search(text)
