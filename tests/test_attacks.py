"""An attack corpus through the Flask layer: no bypass, no 5xx, a clean event log.

Headers are injected straight into the WSGI environ where the test client
would refuse them (CR/LF), as a lenient server or proxy might pass them on.
"""

from __future__ import annotations

import logging
import re
import sqlite3
import time
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
from flask import Flask

from flask_access_cors import AccessCors

APP = "https://app.example.com"
SECRET = "z" * 40
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def build(**settings: Any) -> tuple[Flask, AccessCors, list[str]]:
    app = Flask(__name__)
    app.config["PROPAGATE_EXCEPTIONS"] = False
    settings.setdefault("event_store", "memory://")
    access = AccessCors(app, origins=[APP], credentials=True, debug=True, jwt_secret=SECRET,
                        excluded_paths=["/admin*"], **settings)
    ran: list[str] = []

    @app.route("/admin", methods=["GET", "POST"])
    @app.route("/admin/", endpoint="admin_slash", methods=["GET", "POST"])
    def admin() -> str:
        ran.append("admin")
        return "admin"

    @app.route("/public/<path:rest>", methods=["GET", "POST"])
    def public(rest: str) -> str:
        ran.append("public:" + rest)
        return rest

    @app.route("/private", methods=["GET", "POST"])
    @access.cors(gate=True)
    def private() -> str:
        ran.append("private")
        return "private"

    return app, access, ran


def assert_clean_log(app: Flask, access: AccessCors) -> None:
    with app.app_context():
        for event in access.events.search(limit=10_000):
            for text in (event.message, event.origin or "", event.path, event.method,
                         event.remote_addr or ""):
                assert not CONTROL.search(text), text
                assert len(text) <= 1000


@pytest.mark.parametrize(
    "origin",
    ["https://app.example.com\r\nX-Evil: 1", "https://app.example.com\x00", "\x1b[31mred",
     "https://app.example.com\u2028", APP + "," + APP, APP + ", " + APP, "x" * 65536,
     "https://app.example.com\t", "https://app.example.com" + "\x85"],
)
def test_hostile_origins_are_denied_and_logged_clean(origin: str) -> None:
    app, access, ran = build()
    response = app.test_client().post("/public/x", environ_overrides={"HTTP_ORIGIN": origin})
    assert response.status_code == 403 and ran == []
    assert "Access-Control-Allow-Origin" not in response.headers
    assert_clean_log(app, access)


@pytest.mark.parametrize(
    ("path", "reaches_admin"),
    [("/admin", True), ("/admin/", True), ("/Admin", False), ("//admin", True),
     ("/public/../admin", False), ("/public/%2e%2e/admin", False), ("/%2561dmin", False),
     ("/%61dmin", True), ("/admin;x=1", False), ("/+admin", False), ("/admin%00", False),
     ("/admin\r\n", False)],
)
@pytest.mark.parametrize("method", ["GET", "POST", "HEAD"])
def test_path_tricks_never_reach_an_excluded_view(path: str, reaches_admin: bool,
                                                  method: str) -> None:
    # Werkzeug does not resolve dot segments (browsers do before sending): /public/../admin
    # reaches the public view with rest='../admin', which is not the excluded view.
    app, access, ran = build()
    response = app.test_client().open(
        "/", method=method,
        environ_overrides={"PATH_INFO": unquote(path), "HTTP_ORIGIN": APP})
    assert response.status_code < 500
    assert "admin" not in ran  # no bypass, whatever the router made of the path
    if reaches_admin:
        assert response.status_code == 403
    assert_clean_log(app, access)


@pytest.mark.parametrize("method", ["FOO", "PROPFIND", "TRACE", "CONNECT", "get", "M" * 100])
def test_unknown_methods(method: str) -> None:
    app, access, ran = build()
    response = app.test_client().open("/public/x", method=method, headers={"Origin": APP})
    if method.upper() == "GET":  # Werkzeug upper-cases the method
        assert response.status_code == 200 and ran == ["public:x"]
    else:
        assert response.status_code in (403, 405) and ran == []
    assert_clean_log(app, access)


@pytest.mark.parametrize(
    "environ",
    [
        {"HTTP_COOKIE": "CF_Authorization=a; CF_Authorization=b"},
        {"HTTP_COOKIE": ";" * 65536},
        {"HTTP_COOKIE": "CF_Authorization=" + "A" * 65536},
        {"HTTP_CF_ACCESS_JWT_ASSERTION": "e" * 65536},
        {"HTTP_CF_ACCESS_JWT_ASSERTION": "a.b.c\r\n"},
        {"HTTP_CF_ACCESS_JWT_ASSERTION": "é.é.é"},
        {"HTTP_CF_ACCESS_CLIENT_ID": "id\x00", "HTTP_CF_ACCESS_CLIENT_SECRET": "s" * 65536},
        {"HTTP_CF_ACCESS_CLIENT_ID": "é" * 300},
    ],
)
def test_hostile_credentials_are_401_never_5xx(environ: dict[str, str]) -> None:
    app, access, ran = build(service_tokens={"ci": "c" * 40})
    response = app.test_client(use_cookies=False).get(
        "/private", environ_overrides={"HTTP_ORIGIN": APP, **environ})
    assert response.status_code == 401 and ran == []
    assert response.headers["Access-Control-Allow-Origin"] == APP
    assert_clean_log(app, access)


@pytest.mark.parametrize(
    "acrh", ["," * 65536, "x-a," * 2000, "x-a" * 20000, "content-type\r\nx: y", "\x00"])
def test_hostile_preflight_headers(acrh: str) -> None:
    app, access, _ = build()
    response = app.test_client().options("/public/x", environ_overrides={
        "HTTP_ORIGIN": APP, "HTTP_ACCESS_CONTROL_REQUEST_METHOD": "PUT",
        "HTTP_ACCESS_CONTROL_REQUEST_HEADERS": acrh})
    assert response.status_code == 403
    assert not any(n.startswith("Access-Control-") for n in response.headers.keys())
    assert_clean_log(app, access)


def test_head_is_treated_like_get() -> None:
    app, _, ran = build(methods=["GET"])
    client = app.test_client()
    assert client.head("/public/x", headers={"Origin": APP}).status_code == 200
    assert client.post("/public/x", headers={"Origin": APP}).status_code == 403
    assert ran == ["public:x"]


def test_locked_sqlite_store_never_fails_a_request(tmp_path: Path,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    db = tmp_path / "events.sqlite3"
    app, access, _ = build(event_store=f"sqlite:///{db}")
    client = app.test_client()
    client.get("/public/x", headers={"Origin": "https://warmup.example"})
    with app.app_context():
        assert access.events.flush()
    caplog.set_level(logging.WARNING, logger="flask_access_cors")
    locker = sqlite3.connect(db, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")  # another process holding the database
    try:
        started = time.monotonic()
        for i in range(50):
            response = client.get("/public/x", headers={"Origin": f"https://e{i}.example"})
            assert response.status_code == 403
        assert time.monotonic() - started < 5  # the request path never waits for the store
        with app.app_context():
            access.events.flush()
            assert access.events.dropped > 0
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1  # logged once, not once per failure
    client.get("/public/x", headers={"Origin": "https://after.example"})
    with app.app_context():
        origins = {e.origin for e in access.events.search(limit=1000)}
        dropped = access.events.dropped
        written = sum(e.count for e in access.events.search(limit=1000))
    assert "https://after.example" in origins  # writing resumed once the lock was gone
    assert written + dropped == 52  # nothing lost without being counted
