"""The event log dashboard (``GET <url_prefix>/`` of ``events_blueprint``).

Plain test-client tests for the gate, the filters and their 400s, the chart's
buckets, the weighted top lists and escaping; then the page in Debian's
Chromium: it draws its chart, asks nothing of any other origin, logs no console
error and runs nothing an attacker wrote. ``ACCESS_CORS_SCREENSHOT=docs/_static/dashboard.png``
also writes the documentation's screenshot.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import re
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from html.parser import HTMLParser
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import pytest
from flask import Flask, render_template_string

from flask_access_cors import AccessCors
from flask_access_cors.events import REASONS, Event, MemoryStore
from flask_access_cors.views import REASON_COLORS, events_blueprint

from .browser_support import ServerThread, start_server

if TYPE_CHECKING:
    from playwright.sync_api import Browser, ConsoleMessage, Dialog, Error, Page, Request

ROOT = Path(__file__).resolve().parents[1]
APP = "https://app.example.com"
EVIL = "https://evil.example"
SECRET = "k" * 40
OPS = "ops@example.com"
DASHBOARD = "/_access-cors/"


def build(template_folder: str | None = None) -> tuple[Flask, AccessCors]:
    app = Flask(__name__, template_folder=template_folder)
    access = AccessCors(app, origins=[APP], debug=True, event_store="memory://", jwt_secret=SECRET)

    @app.route("/api/items", methods=["GET", "PUT"])
    @access.cors(gate=True)
    def items() -> str:
        return "items"

    @app.get("/api/orders/<int:number>")
    def order(number: int) -> str:
        return f"order {number}"

    app.register_blueprint(events_blueprint(access, require={"emails": [OPS]}))
    return app, access


def auth(app: Flask, access: AccessCors, email: str = OPS) -> dict[str, str]:
    with app.test_request_context("/"):
        return {"Cf-Access-Jwt-Assertion": access.issue_token(email.split("@")[0], {"email": email})}


def event(reason: str = "origin_not_allowed", *, when: datetime | None = None, count: int = 1,
          path: str = "/api/items", origin: str | None = EVIL, status: int = 403,
          request_id: str | None = None) -> Event:
    made = Event.create(status=status, reason=reason, request_type="actual", policy="app",
                        method="GET", path=path, origin=origin, remote_addr="203.0.113.7",
                        request_id=request_id)
    return dataclasses.replace(made, time=when or made.time, count=count)


def store(access: AccessCors, app: Flask, *events: Event) -> None:
    """Events as another worker would have written them (times and counts of our choosing)."""
    with app.app_context():
        access.events.store.write(list(events))


def day_of_denials(access: AccessCors, app: Flask) -> Counter[tuple[int, str]]:
    """24 hours of denials, one hour per chart bucket (bucket ``i`` is the i-th hour of the
    last 24): a steady trickle of missing tokens, an origin scan in the afternoon, a bad
    deploy's header denials. Returns what each (bucket, reason) should add up to."""
    now = datetime.now(timezone.utc)
    expected: Counter[tuple[int, str]] = Counter()
    written: list[Event] = []
    origins = [EVIL, "https://staging.app.example.com", "http://localhost:3000",
               "https://partner.example"]
    paths = ["/api/items", "/api/orders/42", "/api/admin/users", "/api/reports"]
    for hour in range(24):
        # half an hour into the bucket: the page renders a few seconds later, still inside it
        when = now - timedelta(hours=24 - hour - 0.5)
        plan = [("token_missing", 1 + hour % 3)]
        if 13 <= hour <= 16:
            plan.append(("origin_not_allowed", 6 + 3 * (hour - 13)))
        if hour in (9, 10):
            plan.append(("header_not_allowed", 4))
        if hour % 6 == 5:
            plan.append(("token_expired", 2))
        if hour == 20:
            plan.append(("access_denied", 3))
        for i, (reason, count) in enumerate(plan):
            status = 401 if reason.startswith("token") else 403
            written.append(event(reason, when=when, count=count, status=status,
                                 path=paths[(hour + i) % len(paths)],
                                 origin=origins[(hour + i) % len(origins)],
                                 request_id=f"8f3a{hour:02d}{i}c2e1b7d4e0a-AMS"))
            expected[hour, reason] += count
    store(access, app, *written)
    return expected


# -- reading the page ----------------------------------------------------------------------

_VOID = {"meta", "link", "input", "br", "img", "hr", "source", "wbr"}


@dataclasses.dataclass
class Node:
    tag: str
    attrs: dict[str, str]
    children: list[Node | str] = dataclasses.field(default_factory=list)

    @property
    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").split())

    def text(self) -> str:
        return " ".join("".join(c if isinstance(c, str) else " " + c.text() + " "
                                for c in self.children).split())

    def find_all(self, tag: str, cls: str | None = None) -> list[Node]:
        found: list[Node] = []
        for child in self.children:
            if isinstance(child, Node):
                if child.tag == tag and (cls is None or cls in child.classes):
                    found.append(child)
                found += child.find_all(tag, cls)
        return found

    def with_class(self, cls: str) -> Node:
        """The first element below this one (any tag) with class ``cls``."""
        for child in self.children:
            if isinstance(child, Node):
                if cls in child.classes:
                    return child
                try:
                    return child.with_class(cls)
                except LookupError:
                    continue
        raise LookupError(f"no element of class {cls!r}")

    def find(self, tag: str, cls: str | None = None) -> Node:
        found = self.find_all(tag, cls)
        assert found, f"no <{tag} class={cls}>"
        return found[0]


class _TreeBuilder(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.root = Node("#document", {})
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {k: v or "" for k, v in attrs})
        self.stack[-1].children.append(node)
        if tag not in _VOID:
            self.stack.append(node)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.stack[-1].children.append(Node(tag, {k: v or "" for k, v in attrs}))

    def handle_endtag(self, tag: str) -> None:
        for depth in range(len(self.stack) - 1, 0, -1):
            if self.stack[depth].tag == tag:
                del self.stack[depth:]
                return

    def handle_data(self, data: str) -> None:
        self.stack[-1].children.append(data)


def parse(html: str) -> Node:
    builder = _TreeBuilder()
    builder.feed(html)
    builder.close()
    return builder.root


def rows(page: Node) -> list[dict[str, str]]:
    """The newest-events table: one dict per row, cell class -> text."""
    names = ("time", "status", "reason", "method", "path", "message", "origin", "policy",
             "identity", "request_id", "count")
    return [{name: row.with_class(name).text() for name in names}
            for row in page.find_all("tr", "event")]


def bars(page: Node) -> Counter[tuple[int, str]]:
    """What the chart draws: (bucket, reason) -> count, from its ``rect.bar`` elements."""
    drawn: Counter[tuple[int, str]] = Counter()
    for rect in page.find("svg", "chart").find_all("rect", "bar"):
        drawn[int(rect.attrs["data-bucket"]), rect.attrs["data-reason"]] += int(rect.attrs["data-count"])
    return drawn


def top(page: Node, section: str) -> list[tuple[str, int]]:
    table = page.find("section", section)
    return [(cells[0].text(), int(cells[1].text()))
            for cells in (tr.find_all("td") for tr in table.find_all("tr")) if cells]


def get(app: Flask, access: AccessCors, query: str = "") -> tuple[int, Node, Any]:
    response = app.test_client().get(DASHBOARD + query, headers=auth(app, access))
    return response.status_code, parse(response.get_data(as_text=True)), response


# -- the gate --------------------------------------------------------------------------------


def test_the_dashboard_sits_behind_the_require_gate() -> None:
    app, access = build()
    client = app.test_client()
    anonymous = client.get(DASHBOARD)
    assert anonymous.status_code == 401
    assert anonymous.get_json()["error"] == "unauthorized"
    assert "Denials" not in anonymous.get_data(as_text=True)
    other = client.get(DASHBOARD, headers=auth(app, access, "eve@example.com"))
    assert other.status_code == 403
    assert "Denials" not in other.get_data(as_text=True)
    ops = client.get(DASHBOARD, headers=auth(app, access))
    assert ops.status_code == 200 and ops.mimetype == "text/html"
    with app.app_context():  # the refusals are events like any other, on the blueprint's policy
        refused = access.events.search(path=DASHBOARD)
    assert sorted((e.reason, e.policy) for e in refused) == [
        ("access_denied", "blueprint:access_cors_events"),
        ("token_missing", "blueprint:access_cors_events")]


def test_the_page_needs_nothing_from_elsewhere_and_says_so() -> None:
    app, access = build()
    status, page, response = get(app, access)
    assert status == 200
    csp = response.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "script-src" not in csp
    nonce = re.search(r"'nonce-([^']+)'", csp)
    assert nonce is not None
    [style] = page.find_all("style")
    assert style.attrs["nonce"] == nonce.group(1)
    assert page.find_all("script") == []
    for tag, attr in (("link", "href"), ("a", "href"), ("form", "action")):
        for node in page.find_all(tag):
            target = node.attrs.get(attr, "")
            assert not urlsplit(target).netloc and urlsplit(target).scheme in ("", "data"), target
    assert response.headers["Cache-Control"] == "no-store"
    # each page gets its own nonce
    assert get(app, access)[2].headers["Content-Security-Policy"] != csp


# -- what it shows -----------------------------------------------------------------------------


def test_newest_events_with_request_id_and_count() -> None:
    app, access = build()
    client = app.test_client()
    client.get("/api/items", headers={"Origin": EVIL, "X-Request-ID": "req-1"})
    client.get("/api/orders/7", headers={"Origin": EVIL, "CF-Ray": "8f3a9c2e1b7d4e0a-AMS"})
    for _ in range(5):  # a burst: one event, then one summary of the 4 suppressed repeats
        client.put("/api/items", headers={"Origin": "https://scan.example"})
    status, page, _ = get(app, access)
    assert status == 200
    found = {(r["path"], r["origin"], r["request_id"], int(r["count"])) for r in rows(page)}
    assert found == {
        ("/api/items", EVIL, "req-1", 1),
        ("/api/orders/7", EVIL, "8f3a9c2e1b7d4e0a-AMS", 1),
        ("/api/items", "https://scan.example", "-", 1),
        ("/api/items", "https://scan.example", "-", 4),
    }
    assert {r["reason"] for r in rows(page)} == {"origin_not_allowed"}
    assert all(r["message"].startswith(("Invalid CORS request.", "4 similar events"))
               for r in rows(page))
    assert top(page, "top-origins") == [("https://scan.example", 5), (EVIL, 2)]


def test_top_origins_and_paths_are_weighted_by_count() -> None:
    app, access = build()
    store(access, app,
          event(origin="https://one.example", path="/api/a", count=7),
          *[event(origin="https://many.example", path="/api/b") for _ in range(3)],
          event(origin=None, path="/api/b", reason="token_missing", status=401))
    _, page, _ = get(app, access)
    assert top(page, "top-origins") == [("https://one.example", 7), ("https://many.example", 3),
                                        ("(no Origin header)", 1)]
    assert top(page, "top-paths") == [("/api/a", 7), ("/api/b", 4)]
    # each entry links to the page filtered by it
    link = page.find("section", "top-origins").find("a")
    assert parse_qs(urlsplit(link.attrs["href"]).query) == {"origin": ["https://one.example"]}


def test_the_chart_stacks_each_hour_by_reason() -> None:
    app, access = build()
    expected = day_of_denials(access, app)
    store(access, app, event(when=datetime.now(timezone.utc) - timedelta(hours=30)))  # outside
    status, page, _ = get(app, access)
    assert status == 200
    assert bars(page) == expected
    legend = {li.attrs["data-reason"]: int(li.find("span", "count").text())
              for li in page.find("ul", "legend").find_all("li")}
    totals: Counter[str] = Counter()
    for (_, reason), count in expected.items():
        totals[reason] += count
    assert legend == dict(totals)
    # stacked: within a bucket the rects sit on top of each other, from the axis up
    chart = page.find("svg", "chart")
    for bucket in {b for b, _ in expected}:
        rects = [r for r in chart.find_all("rect", "bar") if r.attrs["data-bucket"] == str(bucket)]
        tops = sorted((float(r.attrs["y"]), float(r.attrs["height"])) for r in rects)
        for (y, height), (below, _) in itertools.pairwise(tops):
            assert abs(y + height - below) < 0.2
    # and a window of 2h holds the last two buckets of the day only, now in 5-minute bars
    _, narrow, _ = get(app, access, "?since=2h")
    assert sum(bars(narrow).values()) == sum(c for (b, _), c in expected.items() if b >= 22)


def test_every_reason_has_its_own_colour() -> None:
    assert set(REASON_COLORS) == set(REASONS)
    assert len(set(REASON_COLORS.values())) == len(REASON_COLORS)


def test_dropped_denials_are_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    app, access = build()

    def broken(*args: Any, **kwargs: Any) -> None:
        raise OSError("disk full")

    with app.app_context():
        assert isinstance(access.events.store, MemoryStore)
        monkeypatch.setattr(access.events.store, "write", broken)
    client = app.test_client()
    for origin in ("https://a.example", "https://b.example", "https://c.example"):
        client.get("/api/items", headers={"Origin": origin})
    _, page, _ = get(app, access)
    assert page.find("strong", "dropped").text() == "3"
    assert rows(page) == []


def test_an_unreadable_store_is_a_503_page(monkeypatch: pytest.MonkeyPatch,
                                           caplog: pytest.LogCaptureFixture) -> None:
    app, access = build()

    def unreadable(*args: Any, **kwargs: Any) -> None:
        raise OSError("connection refused by redis.internal:6379")

    with app.app_context():
        monkeypatch.setattr(access.events.store, "search", unreadable)
    status, page, response = get(app, access)
    assert status == 503 and response.mimetype == "text/html"
    alert = page.find("div", "error").text()
    assert "the event store could not be read (OSError)" in alert
    assert "redis.internal" not in alert  # the details go to the log, for the operator
    assert "redis.internal" in caplog.text


# -- filters ---------------------------------------------------------------------------------


@pytest.fixture
def filtered() -> tuple[Flask, AccessCors]:
    app, access = build()
    now = datetime.now(timezone.utc)
    store(access, app,
          event("origin_not_allowed", path="/api/items", origin=EVIL, when=now - timedelta(hours=3)),
          event("token_missing", status=401, path="/api/orders/1", origin=APP,
                when=now - timedelta(minutes=5)),
          event("header_not_allowed", path="/api/orders/2", origin=APP, when=now - timedelta(days=3)))
    return app, access


@pytest.mark.parametrize(
    ("query", "paths"),
    [
        ("", ["/api/orders/1", "/api/items"]),  # the default window is 24h
        ("?since=7d", ["/api/orders/1", "/api/items", "/api/orders/2"]),
        ("?reason=token_missing", ["/api/orders/1"]),
        ("?status=403&since=7d", ["/api/items", "/api/orders/2"]),
        ("?path=/api/orders/*&since=7d", ["/api/orders/1", "/api/orders/2"]),
        ("?origin=https://evil.example", ["/api/items"]),
        ("?since=1h", ["/api/orders/1"]),
        ("?limit=1&since=7d", ["/api/orders/1"]),
        ("?reason=&status=&path=&origin=&since=&limit=", ["/api/orders/1", "/api/items"]),
    ],
)
def test_filters(filtered: tuple[Flask, AccessCors], query: str, paths: list[str]) -> None:
    status, page, _ = get(*filtered, query)
    assert status == 200
    assert [r["path"] for r in rows(page)] == paths


def test_the_form_keeps_the_filters_and_the_json_link_follows_them(
        filtered: tuple[Flask, AccessCors]) -> None:
    _, page, _ = get(*filtered, "?reason=token_missing&since=2h&path=/api/*")
    form = page.find("form", "filters")
    values = {i.attrs["name"]: i.attrs.get("value", "") for i in form.find_all("input")}
    assert values == {"status": "", "path": "/api/*", "origin": "", "since": "2h", "limit": ""}
    selected = [o.attrs["value"] for o in form.find("select").find_all("option") if "selected" in o.attrs]
    assert selected == ["token_missing"]
    json_link = next(a for a in page.find_all("a") if a.text() == "as JSON")
    url = urlsplit(json_link.attrs["href"])
    assert url.path == "/_access-cors/events"
    assert parse_qs(url.query) == {"reason": ["token_missing"], "since": ["2h"], "path": ["/api/*"]}


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("?limit=0", "limit must be within 1..1000"),
        ("?limit=many", "invalid literal for int()"),
        ("?status=99999999999999999999", "status must be an HTTP status code"),
        ("?status=abc", "invalid literal for int()"),
        ("?reason=nope", "unknown reason code 'nope'"),
        ("?since=yesterday", "'yesterday' is not a duration like 30s, 10m, 2h or 7d"),
        ("?since=2026-01-01T00:00:00", "since must carry a time zone"),
        ("?since=999999d", "date value out of range"),
        ("?since=0001-01-01T00:00:00%2B14:00", "date value out of range"),
    ],
)
def test_bad_filters_are_a_400_page_that_says_why(query: str, message: str) -> None:
    app, access = build()
    status, page, response = get(app, access, query)
    assert status == 400
    assert response.mimetype == "text/html"
    alert = page.find("div", "error")
    assert alert.attrs["role"] == "alert"
    assert message in alert.text()
    assert page.find_all("svg", "chart") == []
    # the JSON view refuses the same values
    json = app.test_client().get("/_access-cors/events" + query, headers=auth(app, access))
    assert json.status_code == 400 and json.get_json()["error"] == "bad_request"


# -- hostile values ----------------------------------------------------------------------------

SCRIPT_PATH = "/<script>alert(1)</script>"
HOSTILE_ORIGIN = 'https://x.example"><img src=x onerror=alert(2)>'
HOSTILE_ID = "<svg onload=alert(3)>"


def hostile_denials(app: Flask) -> None:
    client = app.test_client()
    client.get(SCRIPT_PATH, headers={"Origin": EVIL, "X-Request-ID": HOSTILE_ID})
    client.get("/api/items", headers={"Origin": HOSTILE_ORIGIN})


def test_attacker_values_are_escaped() -> None:
    app, access = build()
    hostile_denials(app)
    status, page, response = get(app, access)
    assert status == 200
    html = response.get_data(as_text=True)
    assert "<script>" not in html and "<img" not in html and "<svg onload" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert page.find_all("script") == [] and page.find_all("img") == []
    found = {(r["reason"], r["path"], r["origin"], r["request_id"]) for r in rows(page)}
    assert found == {
        ("origin_not_allowed", SCRIPT_PATH, EVIL, HOSTILE_ID),
        ("origin_malformed", "/api/items", HOSTILE_ORIGIN, "-"),
    }
    assert any(HOSTILE_ORIGIN in r["message"] for r in rows(page))


def test_an_app_can_override_the_dashboards_template(tmp_path: Path) -> None:
    (tmp_path / "access_cors").mkdir()
    (tmp_path / "access_cors" / "dashboard.html").write_text("{{ chart.total }} denials, our way")
    app, access = build(template_folder=str(tmp_path))
    store(access, app, event(count=3))
    status, _, response = get(app, access)
    assert status == 200 and response.get_data(as_text=True) == "3 denials, our way"


def test_the_apps_own_templates_are_not_shadowed(tmp_path: Path) -> None:
    (tmp_path / "dashboard.html").write_text("the app's own dashboard")
    (tmp_path / "_chart.html").write_text("the app's own chart")
    app, access = build(template_folder=str(tmp_path))

    @app.get("/mine")
    @access.public
    def mine() -> str:
        return render_template_string("{% include 'dashboard.html' %} / {% include '_chart.html' %}")

    assert app.test_client().get("/mine").get_data(as_text=True) == (
        "the app's own dashboard / the app's own chart")
    status, page, _ = get(app, access)
    assert status == 200 and page.find_all("svg", "chart")


# -- in Chromium -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server() -> Iterator[ServerThread]:
    started = start_server()
    try:
        yield started
    finally:
        started.stop()


@dataclasses.dataclass
class Visit:
    page: Page
    requests: list[str]
    console: list[str]
    dialogs: list[str]


@pytest.fixture
def visit(browser: Browser, server: ServerThread) -> Iterator[Any]:
    """Serve an app and open a logged-in page that records every request and console error."""
    contexts = []

    def open_page(app: Flask, access: AccessCors) -> Visit:
        server.slot.app = app
        context = browser.new_context(viewport={"width": 1200, "height": 900})
        contexts.append(context)
        context.set_default_timeout(10_000)
        with app.test_request_context("/"):
            token = access.issue_token("ops", {"email": OPS})
        context.add_cookies([{"name": "CF_Authorization", "value": token, "url": server.origin()}])
        page = context.new_page()
        seen = Visit(page, [], [], [])

        def on_request(request: Request) -> None:
            seen.requests.append(request.url)

        def on_console(message: ConsoleMessage) -> None:
            if message.type in ("error", "warning"):
                seen.console.append(f"{message.type}: {message.text}")

        def on_page_error(error: Error) -> None:
            seen.console.append(f"pageerror: {error}")

        def on_dialog(dialog: Dialog) -> None:
            seen.dialogs.append(dialog.message)
            dialog.dismiss()

        page.on("request", on_request)
        page.on("console", on_console)
        page.on("pageerror", on_page_error)
        page.on("dialog", on_dialog)
        return seen

    yield open_page
    for context in contexts:
        context.close()
    server.slot.app = None


@pytest.mark.browser
def test_dashboard_in_chromium(visit: Any, server: ServerThread) -> None:
    app, access = build()
    expected = day_of_denials(access, app)
    hostile_denials(app)
    seen: Visit = visit(app, access)
    response = seen.page.goto(server.origin() + DASHBOARD)
    assert response is not None and response.status == 200
    seen.page.wait_for_load_state("load")

    expected.update({(23, "origin_not_allowed"): 1, (23, "origin_malformed"): 1})  # the hostile ones
    drawn = seen.page.locator("svg.chart rect.bar").evaluate_all(
        "els => els.map(e => [+e.dataset.bucket, e.dataset.reason, +e.dataset.count,"
        " e.getBoundingClientRect().height, e.getBoundingClientRect().width])")
    assert Counter({(bucket, reason): count for bucket, reason, count, _, _ in drawn}) == expected
    assert len(drawn) == len(expected)  # one rect per reason and hour
    assert all(height > 0 and width > 0 for *_, height, width in drawn)
    legend = seen.page.locator("ul.legend li").all_inner_texts()
    assert any(text.startswith("origin_not_allowed") for text in legend)

    # the hostile values are text on the page, and nothing of them ran or loaded
    assert seen.page.locator("td.request_id", has_text=HOSTILE_ID).count() == 1
    assert seen.page.get_by_text(SCRIPT_PATH).count() >= 1
    assert seen.page.evaluate("document.querySelectorAll('script, img, iframe').length") == 0
    assert seen.dialogs == []

    own = server.origin() + "/"
    assert seen.requests and all(url.startswith(own) for url in seen.requests), seen.requests
    assert seen.console == []


@pytest.mark.browser
def test_filtering_through_the_form_in_chromium(visit: Any, server: ServerThread) -> None:
    app, access = build()
    day_of_denials(access, app)
    seen: Visit = visit(app, access)
    seen.page.goto(server.origin() + DASHBOARD)
    seen.page.select_option("select[name=reason]", "header_not_allowed")
    with seen.page.expect_navigation():
        seen.page.click("form.filters button[type=submit]")
    query = parse_qs(urlsplit(seen.page.url).query)
    assert query["reason"] == ["header_not_allowed"]
    assert set(seen.page.locator("tr.event td.reason").all_inner_texts()) == {"header_not_allowed"}
    reasons = seen.page.locator("svg.chart rect.bar").evaluate_all("els => els.map(e => e.dataset.reason)")
    assert reasons and set(reasons) == {"header_not_allowed"}

    seen.page.fill("input[name=limit]", "0")
    with seen.page.expect_navigation():
        seen.page.click("form.filters button[type=submit]")
    assert "limit must be within 1..1000" in seen.page.locator("[role=alert]").inner_text()
    own = server.origin() + "/"
    assert all(url.startswith(own) for url in seen.requests), seen.requests
    # the 400 itself is the only thing Chromium reports
    assert [m for m in seen.console if "status of 400" not in m] == []


@pytest.mark.browser
@pytest.mark.skipif(
    not os.environ.get("ACCESS_CORS_SCREENSHOT"),
    reason="set ACCESS_CORS_SCREENSHOT=docs/_static/dashboard.png to write the docs' screenshot")
def test_screenshot_for_the_docs(visit: Any, server: ServerThread) -> None:
    app, access = build()
    day_of_denials(access, app)
    client = app.test_client()
    client.put("/api/items", headers={"Origin": EVIL, "CF-Ray": "8f3b1d07aa5c2e61-FRA"})
    client.get("/api/items", headers={"Origin": APP, "X-Request-ID": "0b6c1f7e-5d2a-4c7e-9f3a"})
    seen: Visit = visit(app, access)
    seen.page.goto(server.origin() + DASHBOARD + "?limit=8")
    target = ROOT / os.environ["ACCESS_CORS_SCREENSHOT"]
    target.parent.mkdir(parents=True, exist_ok=True)
    seen.page.screenshot(path=str(target), full_page=True)
    assert target.stat().st_size > 10_000
    assert seen.console == []


def console_errors(page: Page) -> list[str]:
    """The text of every console error ``page`` logs from now on."""
    errors: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            errors.append(message.text)

    page.on("console", on_console)
    return errors


@pytest.mark.browser
def test_the_console_messages_quoted_in_the_docs_are_chromiums(browser: Browser,
                                                                 server: ServerThread) -> None:
    """docs/debugging.rst quotes Chromium's console for each kind of refusal: these are
    the messages this Chromium prints, with the example's URLs put in."""
    allowed, other = server.origin("localhost"), server.origin("127.0.0.1")
    app = Flask(__name__)
    access = AccessCors(app, origins=[allowed], debug=True, event_store="memory://",
                        jwt_secret=SECRET, methods=["GET", "PUT"])
    page_html = "<!doctype html><link rel=icon href='data:,'><title>page</title><p>page"
    app.add_url_rule("/", "page", access.exempt(lambda: page_html))
    app.add_url_rule("/api/items", "items", lambda: {"items": []}, methods=["GET", "PUT"])
    app.add_url_rule("/api/private", "private", access.cors(gate=True)(lambda: {"ok": True}))
    server.slot.app = app
    docs = (ROOT / "docs" / "debugging.rst").read_text(encoding="utf-8")
    cases = [  # page origin, API origin, path, fetch() init, the reason recorded
        (other, allowed, "/api/items", {}, "origin_not_allowed"),
        (allowed, other, "/api/items", {"method": "PUT", "headers": {"X-Trace-Id": "1"}},
         "header_not_allowed"),
        (allowed, other, "/api/private", {}, "token_missing"),
        (allowed, other, "/api/private", {"credentials": "include"}, "token_missing"),
    ]
    try:
        for page_origin, api_origin, path, init, reason in cases:
            context = browser.new_context()
            try:
                page = context.new_page()
                console = console_errors(page)
                page.goto(page_origin + "/")
                with app.app_context():
                    access.events.clear()
                page.evaluate("async ([url, init]) => { try { await fetch(url, init) } catch (e) {} }",
                              [api_origin + path, init])
                page.wait_for_timeout(200)  # console messages arrive asynchronously
            finally:
                context.close()
            quoted = [m.replace(api_origin, "https://api.example.com")
                       .replace(page_origin, "https://app.example.com") for m in console
                      if m.startswith(("Access to fetch", "Failed to load resource: the server"))]
            assert quoted, (path, init, console)
            for message in quoted:
                assert message in docs, f"docs/debugging.rst does not quote: {message}"
            with app.app_context():
                assert [e.reason for e in access.events.search()] == [reason]
    finally:
        server.slot.app = None
