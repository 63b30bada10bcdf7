"""The seed documents' situations, end to end: Chromium, the Cloudflare Access stand-in
(example_app.edge), and the demo API at the origin validating the assertion itself.

Every scenario is named after the seed situation it reproduces and asserts both what
the page saw and what the origin recorded. The browser resolves the demo's hostnames
to loopback (``--host-resolver-rules``), so site and cookie rules are real; its
profile allows third-party cookies, as the seed assumes (its own warning: "Do not
troubleshoot CORS in Incognito mode").
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from example_app.edge_demo import HOSTS, SERVICE_TOKEN, EdgeDemo
from tests.browser_support import CHROMIUM, require_browser

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def demo() -> Iterator[EdgeDemo]:
    with EdgeDemo.start() as running:
        yield running


@pytest.fixture(scope="module")
def page(demo: EdgeDemo) -> Iterator[Any]:
    require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright, tempfile.TemporaryDirectory() as profile:
        # A regular profile that allows third-party cookies (Chromium blocks them by default).
        (Path(profile) / "Default").mkdir()
        (Path(profile) / "Default" / "Preferences").write_text(json.dumps(
            {"profile": {"cookie_controls_mode": 0, "block_third_party_cookies": False}}))
        context = playwright.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, headless=True, ignore_https_errors=True,
            args=["--no-sandbox", "--disable-gpu", *demo.chromium_args])
        tab = context.new_page()
        tab.goto(demo.urls["app1"])  # Access sends us to the team domain's login page
        assert "cloudflareaccess.test" in tab.url
        tab.click("button[type=submit]")
        tab.wait_for_url(demo.urls["app1"])
        for mode in ("bypass", "block"):  # log in to those two API applications
            tab.goto(demo.urls[mode])
            assert "Logged in to the API" in tab.content()
        tab.goto(demo.urls["app1"])
        yield tab
        if os.environ.get("ACCESS_CORS_SCREENSHOTS"):  # for the docs: the page after the tests
            tab.click("#refresh")
            tab.wait_for_function("document.getElementById('events').textContent.length > 0")
            tab.screenshot(path=os.path.join(os.environ["ACCESS_CORS_SCREENSHOTS"], "edge.png"),
                           full_page=True)
        context.close()


def run(page: Any, scenario: str) -> dict[str, Any]:
    """Run one of the demo page's scenario functions, and show its result on the page."""
    result: dict[str, Any] = page.evaluate(f"window.scenarios.{scenario}()")
    page.evaluate(f"document.getElementById('out-{scenario}').textContent = {json.dumps(json.dumps(result))}")
    return result


def new_events(demo: EdgeDemo, seen: int) -> list[dict[str, Any]]:
    return demo.origin_events()[: max(len(demo.origin_events()) - seen, 0)]


def test_preflight_blocked_without_bypass_and_the_bypass_fix(demo: EdgeDemo, page: Any) -> None:
    before, forwarded = len(demo.origin_events()), len(demo.edge.forwarded)
    blocked = run(page, "preflightBlocked")
    assert blocked["error"] is not None and blocked["status"] is None  # a CORS failure
    assert (HOSTS["block"], "OPTIONS", "/api/items", "403") in demo.edge.log
    assert demo.edge.forwarded[forwarded:] == []  # Access stopped it: the origin saw nothing
    fixed = run(page, "preflightBypassed")
    assert fixed["ok"] and fixed["json"] == {"stored": {"name": "widget"}}
    assert (HOSTS["bypass"], "OPTIONS", "/api/items") in demo.edge.forwarded[forwarded:]
    assert new_events(demo, before) == []  # the origin allowed both requests


def test_request_without_the_cookie_is_sent_to_the_login_page(demo: EdgeDemo, page: Any) -> None:
    forwarded = len(demo.edge.forwarded)
    omitted = run(page, "credentialsOmitted")  # fetch's default credentials mode
    assert omitted["error"] is not None
    assert (HOSTS["bypass"], "GET", "/api/me", "302") in demo.edge.log  # to the login page
    assert demo.edge.forwarded[forwarded:] == []


def test_credentials_mode_mistake_and_its_fix(demo: EdgeDemo, page: Any) -> None:
    assert run(page, "credentialsOmitted")["error"] is not None
    fixed = run(page, "credentialsIncluded")
    assert fixed["ok"] and fixed["json"]["email"] == "user@example.com"


def test_simple_request_with_the_cookie_gets_its_cors_headers_from_the_origin(
    demo: EdgeDemo, page: Any
) -> None:
    result = run(page, "simpleWithCookie")
    assert result["ok"] and result["json"]["service"] is False
    # The edge adds no CORS header for this application: the origin's answer is what the
    # browser accepted. From an origin the API does not list, the origin refuses.
    token = demo.fake.token(aud=["aud-api-bypass"])
    refused = demo.request("GET", HOSTS["bypass"], "/api/me",
                           headers={"Origin": "https://evil.example.test",
                                    "Cookie": f"CF_Authorization={token}"})
    assert refused.status_code == 403 and "Access-Control-Allow-Origin" not in refused.headers
    assert demo.origin_events()[0]["reason"] == "origin_not_allowed"


def test_null_origin_after_the_login_redirect_chain(demo: EdgeDemo, page: Any) -> None:
    """app1 calls another Access application it is not logged in to (seed: app1 calling
    app2): Access's redirects turn Origin into "null", which a credentialed policy
    never allows; the chain leaves the application's cookie, so a retry works."""
    chain = run(page, "nullOriginChain")
    assert chain["error"] is not None
    refused = demo.origin_events()[0]
    assert (refused["reason"], refused["origin"], refused["path"]) == (
        "origin_not_allowed", "null", "/api/me")
    retry = run(page, "retryAfterLogin")
    assert retry["ok"] and retry["json"]["email"] == "user@example.com"


def test_preflight_answered_by_the_edge_cors_settings(demo: EdgeDemo, page: Any) -> None:
    run(page, "nullOriginChain")  # logs in to this application as a side effect (see above)
    forwarded = len(demo.edge.forwarded)
    result = run(page, "preflightAtEdge")
    assert result["ok"] and result["json"] == {"stored": {"name": "widget"}}
    assert (HOSTS["respond"], "OPTIONS", "/api/items", "204") in demo.edge.log
    assert demo.edge.forwarded[forwarded:] == [(HOSTS["respond"], "PUT", "/api/items")]


# -- without a browser: what the origin checks itself ----------------------------------------


def test_the_origin_validates_the_assertion_itself(demo: EdgeDemo) -> None:
    origin = f"http://127.0.0.1:{demo.origin_port}/api/me"
    assert requests.get(origin, timeout=10).status_code == 401  # around the edge
    from flask_access_cors.testing import FakeAccess

    with FakeAccess(audience="aud-api-bypass", team_domain="test.cloudflareaccess.com") as other:
        forged = other.token(email="mallory@example.com")  # same iss and aud, another key
    assert requests.get(origin, headers={"Cf-Access-Jwt-Assertion": forged},
                        timeout=10).status_code == 401
    genuine = demo.fake.token(aud=["aud-api-bypass"])
    assert requests.get(origin, headers={"Cf-Access-Jwt-Assertion": genuine},
                        timeout=10).status_code == 200
    # through the edge, a client-sent assertion is dropped: no cookie, so to the login page
    via_edge = demo.request("GET", HOSTS["bypass"], "/api/me",
                            headers={"Cf-Access-Jwt-Assertion": genuine})
    assert via_edge.status_code == 302 and "cloudflareaccess.test" in via_edge.headers["Location"]


def test_service_tokens_are_exchanged_at_the_edge(demo: EdgeDemo) -> None:
    client_id, secret = SERVICE_TOKEN
    ok = demo.request("GET", HOSTS["bypass"], "/api/me", headers={
        "CF-Access-Client-Id": client_id, "CF-Access-Client-Secret": secret})
    assert ok.status_code == 200 and ok.json() == {"subject": client_id, "email": None,
                                                   "service": True}
    wrong = demo.request("GET", HOSTS["bypass"], "/api/me", headers={
        "CF-Access-Client-Id": client_id, "CF-Access-Client-Secret": "x"})
    assert wrong.status_code == 302
