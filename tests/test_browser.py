"""The example app in a real browser: Debian's Chromium, driven through Playwright.

Each table case is one policy (the variable) and one ``fetch()`` from a page on
the single-page app's origin (``http://localhost:SPA``), from the same page on
a disallowed origin (``http://127.0.0.1:SPA``, another site) or from a
sandboxed iframe (``Origin: null``). Every case checks both sides: what the
page's script saw (status, readable headers, body, or the ``TypeError`` of a
CORS block) and what the server recorded (the views that ran, the debug
events, the requests per method, OPTIONS included).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

import pytest

from example_app import ALLOW_HEADERS, create_api, create_spa, demo_state
from flask_access_cors.events import REASONS

from .browser_support import (
    DemoApi,
    FetchResult,
    RequestLog,
    ServerThread,
    browser_fetch,
    fill,
    log_in_through_form,
    sandboxed_fetch,
    start_server,
)

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]


# -- fixtures -----------------------------------------------------------------------------


@dataclass
class Servers:
    api: ServerThread
    spa: ServerThread

    def names(self) -> dict[str, str]:
        """The placeholders cases use: ``{api}``, ``{spa}``, ``{disallowed}``."""
        return {
            "api": self.api.origin(),
            "spa": self.spa.origin(),
            "disallowed": self.spa.origin("127.0.0.1"),
        }


@pytest.fixture(scope="module")
def servers() -> Iterator[Servers]:
    api, spa = start_server(), start_server()
    spa.slot.app = create_spa(api.origin(), allowed_origin=spa.origin())
    try:
        yield Servers(api, spa)
    finally:
        api.stop()
        spa.stop()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A page in a fresh browser context: no cookies, no preflight cache."""
    context = browser.new_context()
    context.set_default_timeout(10_000)
    try:
        yield context.new_page()
    finally:
        context.close()


@pytest.fixture
def make_api(servers: Servers) -> Iterator[Callable[..., DemoApi]]:
    """Install a fresh demo API (``create_api(**policy)``) on the API server."""
    made: list[DemoApi] = []

    def make(config: dict[str, Any] | None = None, **policy: Any) -> DemoApi:
        policy.setdefault("event_store", "memory://")
        app = create_api(
            api_origin=servers.api.origin(), spa_origin=servers.spa.origin(), config=config, **policy,
        )
        api = DemoApi(app, RequestLog(app))
        servers.api.slot.app = api.requests
        made.append(api)
        return api

    try:
        yield make
    finally:
        servers.api.slot.app = None
        for api in made:
            api.close()


# -- the table ------------------------------------------------------------------------------


class Case(TypedDict, total=False):
    id: str
    policy: dict[str, Any]  # AccessCors settings over the demo's (the variable)
    config: dict[str, Any]  # app.config
    page: str  # "spa" (allowed origin, default), "disallowed" (127.0.0.1) or "sandbox"
    login: str  # log in through the form first, as this user
    path: str
    init: dict[str, Any]  # fetch() options
    repeat: int
    # What the page saw. status None: blocked, the script only got a TypeError.
    status: int | None
    json: dict[str, Any]  # expected members of the JSON body
    json_prefix: dict[str, str]  # members of the JSON body, by prefix
    readable: list[str]  # response headers the script can read
    hidden: list[str]  # response headers it cannot
    # What the server recorded while the page fetched.
    ran: list[str]  # views that ran ("METHOD endpoint")
    events: list[tuple[str, int, str, str | None]]  # (reason, status, request_type, origin)
    requests: dict[str, int]  # requests to `path` per method, exactly as sent


CREDENTIALED = {"credentials": "include"}
PUT_WITH_X_DEMO = {
    "method": "PUT",
    "credentials": "include",
    "headers": {"Content-Type": "application/json", "X-Demo": "hello"},
    "body": '{"note": "preflighted"}',
}
PUT_WITH_UNLISTED = {**PUT_WITH_X_DEMO, "headers": {"X-Demo": "hello", "X-Unlisted": "1"}}

CASES: list[Case] = [
    {
        "id": "simple-get-allowed-origin-readable",
        "path": "/api/echo", "init": CREDENTIALED,
        "status": 200, "json": {"method": "GET", "x_demo": None},
        "readable": ["X-Request-Id", "Content-Type"], "hidden": ["X-Internal-Trace"],
        "ran": ["GET api.echo"], "events": [], "requests": {"GET": 1, "OPTIONS": 0},
    },
    {
        "id": "nothing-exposed-hides-x-request-id",
        "policy": {"expose_headers": []},
        "path": "/api/echo", "init": CREDENTIALED,
        "status": 200, "readable": ["Content-Type"], "hidden": ["X-Request-Id", "X-Internal-Trace"],
        "ran": ["GET api.echo"], "events": [],
    },
    {
        "id": "disallowed-origin-simple-post-blocked-before-view",
        "page": "disallowed",
        "path": "/api/echo", "init": {"method": "POST", "body": "side effect?"},
        "status": None,
        "ran": [], "events": [("origin_not_allowed", 403, "actual", "{disallowed}")],
        "requests": {"POST": 1, "OPTIONS": 0},
    },
    {
        "id": "the-same-origin-allowed-by-policy",
        "page": "disallowed", "policy": {"origins": ["{spa}", "{disallowed}"]},
        "path": "/api/echo", "init": {"method": "POST", "body": "hello"},
        "status": 200, "json": {"method": "POST"},
        "ran": ["POST api.echo"], "events": [], "requests": {"POST": 1},
    },
    {
        "id": "preflighted-put-allowed-header",
        "path": "/api/echo", "init": PUT_WITH_X_DEMO,
        "status": 200, "json": {"method": "PUT", "x_demo": "hello"},
        "ran": ["PUT api.echo"], "events": [], "requests": {"OPTIONS": 1, "PUT": 1},
    },
    {
        "id": "preflighted-put-unlisted-header-blocked",
        "path": "/api/echo", "init": PUT_WITH_UNLISTED,
        "status": None,
        "ran": [], "events": [("header_not_allowed", 403, "preflight", "{spa}")],
        "requests": {"OPTIONS": 1, "PUT": 0},
    },
    {
        "id": "unlisted-header-allowed-by-policy",
        "policy": {"allow_headers": [*ALLOW_HEADERS, "X-Unlisted"]},
        "path": "/api/echo", "init": PUT_WITH_UNLISTED,
        "status": 200, "json": {"method": "PUT"},
        "ran": ["PUT api.echo"], "events": [], "requests": {"OPTIONS": 1, "PUT": 1},
    },
    {
        "id": "lower-case-patch-echoed-as-sent",
        "path": "/api/echo", "init": {"method": "patch", "credentials": "include"},
        "status": 200, "json": {"method": "PATCH"},
        "ran": ["PATCH api.echo"], "events": [], "requests": {"OPTIONS": 1, "patch": 1, "PATCH": 0},
    },
    {
        "id": "patch-not-in-policy-methods",
        "policy": {"methods": ["GET", "POST", "PUT"]},
        "path": "/api/echo", "init": {"method": "patch", "credentials": "include"},
        "status": None,
        "ran": [], "events": [("method_not_allowed", 403, "preflight", "{spa}")],
        "requests": {"OPTIONS": 1, "patch": 0},
    },
    {
        "id": "max-age-600-one-preflight-for-two-fetches",
        "policy": {"max_age": 600},
        "path": "/api/echo", "init": PUT_WITH_X_DEMO, "repeat": 2,
        "status": 200, "ran": ["PUT api.echo", "PUT api.echo"], "events": [],
        "requests": {"OPTIONS": 1, "PUT": 2},
    },
    {
        "id": "max-age-minus-1-preflight-every-time",
        "policy": {"max_age": -1},
        "path": "/api/echo", "init": PUT_WITH_X_DEMO, "repeat": 2,
        "status": 200, "ran": ["PUT api.echo", "PUT api.echo"], "events": [],
        "requests": {"OPTIONS": 2, "PUT": 2},
    },
    {
        "id": "gate-401-readable-with-login-url",
        "path": "/api/me", "init": CREDENTIALED,
        "status": 401, "json": {"error": "unauthorized"},
        "json_prefix": {"login_url": "{api}/login?redirect_url="},
        "ran": [], "events": [("token_missing", 401, "actual", "{spa}")], "requests": {"GET": 1},
    },
    {
        "id": "credentialed-fetch-after-login-form",
        "login": "alice",
        "path": "/api/me", "init": CREDENTIALED,
        "status": 200, "json": {"user": "alice", "name": "alice", "source": "cookie"},
        "ran": ["GET api.me"], "events": [], "requests": {"GET": 1},
    },
    {
        "id": "logged-in-but-fetch-omits-credentials",
        "login": "alice",
        "path": "/api/me", "init": {},  # credentials: 'same-origin', the default
        "status": 401, "ran": [], "events": [("token_missing", 401, "actual", "{spa}")],
    },
    {
        "id": "logged-in-but-policy-without-credentials",
        "login": "alice", "policy": {"credentials": False},
        # The cookie goes out and the view runs: the page just cannot read the answer.
        "path": "/api/me", "init": CREDENTIALED,
        "status": None, "ran": ["GET api.me"], "events": [], "requests": {"GET": 1},
    },
    {
        "id": "error-404-readable",
        "path": "/no-such-page", "init": CREDENTIALED,
        "status": 404, "ran": [], "events": [],
    },
    {
        "id": "error-500-readable",
        "config": {"PROPAGATE_EXCEPTIONS": False},
        "path": "/api/boom", "init": CREDENTIALED,
        "status": 500, "readable": ["Content-Type"], "ran": ["GET api.boom"], "events": [],
    },
    {
        "id": "sandboxed-iframe-origin-null-denied",
        "page": "sandbox",
        "path": "/api/echo", "init": {},
        "status": None,
        "ran": [], "events": [("origin_not_allowed", 403, "actual", "null")], "requests": {"GET": 1},
    },
    {
        "id": "sandboxed-iframe-allowed-by-anonymous-any-origin",
        "page": "sandbox", "policy": {"origins": "*", "credentials": False},
        "path": "/api/echo", "init": {},
        "status": 200, "json": {"method": "GET"}, "readable": ["X-Request-Id"],
        "ran": ["GET api.echo"], "events": [],
    },
    {
        "id": "excluded-path-refused-cross-origin",
        "path": "/internal/status", "init": CREDENTIALED,
        "status": None,
        "ran": [], "events": [("excluded_path", 403, "actual", "{spa}")], "requests": {"GET": 1},
    },
]


def check_page(seen: FetchResult, case: Case, names: dict[str, str]) -> None:
    status = case.get("status", 200)
    if status is None:
        assert seen["status"] is None, f"expected a CORS block, the page read {seen}"
        assert seen["error"] is not None and seen["error"].startswith("TypeError"), seen
        return
    assert seen["error"] is None, seen
    assert seen["status"] == status, seen
    for key, value in case.get("json", {}).items():
        assert seen["json"] is not None and seen["json"].get(key) == value, (key, seen)
    for key, prefix in fill(case.get("json_prefix", {}), names).items():
        assert str(seen["json"].get(key, "")).startswith(prefix), (key, seen)
    for name in case.get("readable", []):
        assert seen["read"][name] is not None and name.lower() in seen["headers"], (name, seen)
    for name in case.get("hidden", []):
        assert seen["read"][name] is None and name.lower() not in seen["headers"], (name, seen)


@pytest.mark.parametrize("case", CASES, ids=[case["id"] for case in CASES])
def test_fetch(case: Case, page: Page, servers: Servers, make_api: Callable[..., DemoApi]) -> None:
    names = servers.names()
    api = make_api(config=case.get("config"), **fill(case.get("policy", {}), names))
    if "login" in case:
        log_in_through_form(page, f"{names['api']}/api/me", f"{names['api']}/login", case["login"])
        # The navigation was redirected (a denial, recorded), the form ran, then the page did.
        assert api.ran() == ["GET login", "POST login", "GET api.me"]
        assert [(e.reason, e.status, e.request_type, e.origin) for e in api.events()] == [
            ("token_missing", 302, "not_cors", None),
        ]
    page.goto(names["disallowed" if case.get("page") == "disallowed" else "spa"] + "/")
    ran_before, requests_before = len(api.ran()), len(api.requests.seen)
    events_before = {event.id for event in api.events()}

    url = names["api"] + case["path"]
    init = case.get("init", {})
    read = [*case.get("readable", []), *case.get("hidden", [])]
    for _ in range(case.get("repeat", 1)):
        if case.get("page") == "sandbox":
            seen = sandboxed_fetch(page, url, init, read)
        else:
            seen = browser_fetch(page, url, init, read)
        check_page(seen, case, names)

    assert api.ran()[ran_before:] == case["ran"]
    new = [event for event in api.events() if event.id not in events_before]
    recorded = sorted(
        (event.reason, event.status, event.request_type, event.origin)
        for event in new for _ in range(event.count)
    )
    assert recorded == sorted(fill(case["events"], names))
    for event in new:
        assert event.path == case["path"]
        assert REASONS[event.reason] in event.message, event.message
    for method, count in case.get("requests", {}).items():
        assert api.requests.count(method, case["path"], requests_before) == count, (method, api.requests.seen)


# -- flows through the demo's own page --------------------------------------------------------


def click_and_read(page: Page, action: str) -> dict[str, Any]:
    """Click one of the SPA's buttons and return the result it shows."""
    count = int(page.get_attribute("#out", "data-count") or "0")
    page.click(f'button[data-action="{action}"]')
    page.wait_for_function("n => Number(document.getElementById('out').dataset.count) > n", arg=count)
    shown: dict[str, Any] = json.loads(page.text_content("#out") or "{}")
    return shown


def test_session_expired_flow_of_the_spa(page: Page, servers: Servers,
                                          make_api: Callable[..., DemoApi]) -> None:
    """401 → the page follows login_url → login form → back on the SPA → logged in."""
    names = servers.names()
    api = make_api()
    page.goto(names["spa"] + "/")
    assert page.get_attribute("#mode", "data-mode") == "allowed"

    page.click('button[data-action="me"]')
    page.wait_for_url(lambda url: url.startswith(f"{names['api']}/login?redirect_url="))
    page.fill('input[name="user"]', "bob")
    with page.expect_navigation():
        page.click('button[type="submit"]')
    assert page.url == names["spa"] + "/"  # the signed redirect_url named the SPA's origin

    cookies = page.context.cookies(names["api"])
    assert [(c["name"], c["httpOnly"], c["sameSite"], c["secure"], c["path"]) for c in cookies] == [
        ("CF_Authorization", True, "Lax", False, "/"),
    ]
    shown = click_and_read(page, "me")
    assert (shown["status"], shown["json"]["user"]) == (200, "bob")
    assert api.ran() == ["GET login", "POST login", "GET api.me"]
    assert [(e.reason, e.status, e.origin) for e in api.events()] == [("token_missing", 401, names["spa"])]

    assert click_and_read(page, "logout")["status"] == 200
    assert page.context.cookies(names["api"]) == []
    page.click('button[data-action="me"]')  # the session is over: back to the login page
    page.wait_for_url(lambda url: url.startswith(f"{names['api']}/login?redirect_url="))


def test_spa_buttons_and_the_debug_event_view(page: Page, servers: Servers,
                                               make_api: Callable[..., DemoApi]) -> None:
    names = servers.names()
    api = make_api()
    page.goto(names["spa"] + "/")
    put = click_and_read(page, "put")
    assert (put["status"], put["json"]["x_demo"]) == (200, "hello from the SPA")
    assert put["requestId"] is not None and put["internalTrace"] is None
    patch = click_and_read(page, "patch")
    assert (patch["status"], patch["json"]["method"]) == (200, "PATCH")
    assert click_and_read(page, "badHeader")["error"].startswith("TypeError")
    assert click_and_read(page, "boom")["status"] == 500
    assert click_and_read(page, "excluded")["error"].startswith("TypeError")
    assert click_and_read(page, "sandboxed")["error"].startswith("TypeError")

    page.goto(names["disallowed"] + "/")
    assert page.get_attribute("#mode", "data-mode") == "disallowed"
    assert click_and_read(page, "get")["error"].startswith("TypeError")

    assert api.ran() == ["PUT api.echo", "PATCH api.echo", "GET api.boom"]
    page.goto(names["api"] + "/debug/events")
    rows = page.eval_on_selector_all(
        "tr.event", "rows => rows.map(r => [r.dataset.reason, r.querySelector('.message').textContent])",
    )
    reasons = sorted(reason for reason, _ in rows)
    assert reasons == ["excluded_path", "header_not_allowed", "origin_not_allowed", "origin_not_allowed"]
    messages = [message for _, message in rows]
    assert f"Invalid CORS request. Origin not allowed. [{names['disallowed']}]" in messages
    assert "Invalid CORS pre-flight request. Header not allowed. [x-not-allowed]" in messages
    assert "GET api.boom" in (page.text_content("#ran") or "")


def test_login_returns_only_to_signed_local_targets(page: Page, servers: Servers,
                                                   make_api: Callable[..., DemoApi]) -> None:
    names = servers.names()
    make_api()
    for redirect_url in ("https://evil.example/", "/api/me", "//evil.example/"):
        page.goto(f"{names['api']}/login?redirect_url={redirect_url}")
        page.fill('input[name="user"]', "carol")
        with page.expect_navigation():
            page.click('button[type="submit"]')
        assert page.url == names["api"] + "/"  # unsigned: falls back to the API's home page
        assert page.text_content("#user") == "carol"


def test_cross_site_login_post_refused_before_the_view(page: Page, servers: Servers,
                                                       make_api: Callable[..., DemoApi]) -> None:
    """A form on another site posting to /login (login CSRF) is a 403; the view never runs."""
    names = servers.names()
    api = make_api()
    page.goto(names["disallowed"] + "/")
    with page.expect_navigation():
        page.evaluate("""(action) => {
            const form = document.createElement('form');
            form.method = 'post';
            form.action = action;
            form.innerHTML = '<input name="user" value="mallory">';
            document.body.appendChild(form);
            form.submit();
        }""", f"{names['api']}/login")
    assert page.url == f"{names['api']}/login"
    assert api.ran() == []
    assert page.context.cookies(names["api"]) == []
    assert [(e.reason, e.method, e.origin) for e in api.events()] == [
        ("origin_not_allowed", "POST", names["disallowed"]),
    ]


# -- without a browser -------------------------------------------------------------------------


def test_debug_event_view_is_for_loopback_only() -> None:
    app = create_api(event_store="memory://")
    client = app.test_client()
    try:
        for addr, status in (("127.0.0.1", 200), ("::1", 200), ("203.0.113.9", 404), ("10.0.0.1", 404)):
            response = client.get("/debug/events", environ_base={"REMOTE_ADDR": addr})
            assert response.status_code == status, addr
    finally:
        demo_state(app).access.events.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_demo_starts_with_one_command_and_prints_its_urls(tmp_path: Path) -> None:
    api_port, spa_port = _free_port(), _free_port()
    env = {**os.environ, "DEMO_API_PORT": str(api_port), "DEMO_SPA_PORT": str(spa_port),
           "DEMO_INSTANCE_PATH": str(tmp_path)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "example_app"], cwd=ROOT, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    try:
        assert proc.stdout is not None
        lines = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if line.startswith("Press Ctrl+C"):
                break
        printed = "".join(lines)
        assert f"http://localhost:{spa_port}/" in printed, printed
        assert f"http://127.0.0.1:{spa_port}/" in printed, printed
        assert f"http://localhost:{api_port}/debug/events" in printed, printed
        with urllib.request.urlopen(f"http://localhost:{spa_port}/", timeout=5) as response:
            assert f'data-api="http://localhost:{api_port}"' in response.read().decode()
        request = urllib.request.Request(
            f"http://localhost:{api_port}/api/echo", headers={"Origin": f"http://localhost:{spa_port}"},
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            assert response.headers["Access-Control-Allow-Origin"] == f"http://localhost:{spa_port}"
        denied = urllib.request.Request(
            f"http://localhost:{api_port}/api/me", headers={"Origin": f"http://127.0.0.1:{spa_port}"},
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(denied, timeout=5)
        assert refused.value.code == 403
        refused.value.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        assert (tmp_path / "access_cors_events.sqlite3").exists()  # the denial, flushed at exit
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
