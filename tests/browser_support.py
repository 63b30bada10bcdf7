"""Helpers of the real-browser suite (tests/test_browser.py).

- servers on free loopback ports in background threads, each serving a
  swappable WSGI app (:class:`Slot`), so one pair of ports serves every test
  while each test gets a fresh API app with its own policy;
- :class:`RequestLog`, a WSGI wrapper recording every request the server saw
  (preflights are answered before any Flask hook of the app, so they are
  counted here);
- Chromium through Playwright, and the ``fetch()`` probes evaluated in pages.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypedDict, cast

import pytest
from flask import Flask
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from example_app import DemoState, demo_state
from flask_access_cors.events import Event

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment
    from playwright.sync_api import Browser, Page, Playwright

CHROMIUM = "/usr/bin/chromium"
LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: Servers listen here; pages reach them as ``http://localhost:PORT`` (the allowed
#: site) or ``http://127.0.0.1:PORT`` (another site, the disallowed origin).
BIND = "127.0.0.1"


def require_browser() -> None:
    """Skip (or, with CI=true, fail) when Chromium or Playwright is missing."""
    missing = []
    if not os.access(CHROMIUM, os.X_OK):
        missing.append(f"{CHROMIUM} is not installed (make test installs Debian's chromium as root)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("playwright is not installed (pip install -e '.[test]')")
    if missing:
        message = "; ".join(missing)
        if os.environ.get("CI") == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)


def launch(playwright: Playwright) -> Browser:
    """Debian's Chromium, headless (never a browser downloaded by ``playwright install``)."""
    return playwright.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)


# -- servers ------------------------------------------------------------------------


class Slot:
    """A WSGI app whose target can be swapped between tests."""

    def __init__(self) -> None:
        self.app: WSGIApplication | None = None

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        app = self.app
        if app is None:
            start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
            return [b"no app installed for this test"]
        return app(environ, start_response)


@dataclass(frozen=True)
class Seen:
    """One request as it reached the server: the method exactly as sent."""

    method: str
    path: str
    origin: str | None


class RequestLog:
    """Records every request, then hands it to the app."""

    def __init__(self, app: WSGIApplication) -> None:
        self.app = app
        self.seen: list[Seen] = []
        self._lock = threading.Lock()

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        with self._lock:
            self.seen.append(
                Seen(environ["REQUEST_METHOD"], environ.get("PATH_INFO", ""), environ.get("HTTP_ORIGIN"))
            )
        return self.app(environ, start_response)

    def count(self, method: str, path: str, since: int = 0) -> int:
        """Requests with exactly this method (case-sensitive) and path, from index ``since``."""
        with self._lock:
            return sum(1 for s in self.seen[since:] if s.method == method and s.path == path)


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


@dataclass
class ServerThread:
    server: BaseWSGIServer
    thread: threading.Thread
    slot: Slot

    @property
    def port(self) -> int:
        return self.server.server_port

    def origin(self, host: str = "localhost") -> str:
        return f"http://{host}:{self.port}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def start_server() -> ServerThread:
    """A threaded Werkzeug server on a free loopback port, serving an empty :class:`Slot`."""
    slot = Slot()
    server = make_server(BIND, 0, slot, threaded=True, request_handler=_QuietHandler)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.1},
        name=f"browser-test-{server.server_port}", daemon=True,
    )
    thread.start()
    return ServerThread(server, thread, slot)


@dataclass
class DemoApi:
    """An API app made by ``example_app.create_api`` and what its server saw."""

    app: Flask
    requests: RequestLog
    state: DemoState = field(init=False)

    def __post_init__(self) -> None:
        self.state = demo_state(self.app)

    def ran(self) -> list[str]:
        """``"METHOD endpoint"`` of the views that ran, oldest first."""
        return list(self.state.ran)

    def events(self) -> list[Event]:
        return self.state.access.events.search(limit=1000)

    def close(self) -> None:
        self.state.access.events.close()


# -- the page side --------------------------------------------------------------------


class FetchResult(TypedDict):
    """What a page's script saw of one ``fetch()``."""

    ok: bool
    status: int | None
    headers: dict[str, str]  # every header the script can read (lower-case names)
    read: dict[str, str | None]  # response.headers.get(name) for the names asked for
    body: str | None
    json: Any
    error: str | None  # "TypeError: Failed to fetch" on a CORS block


#: ``async ({url, init, read}) => FetchResult``: one fetch(), as the page sees it.
PROBE_JS = """
async ({url, init, read}) => {
  try {
    const response = await fetch(url, init);
    const headers = {};
    response.headers.forEach((value, name) => { headers[name] = value; });
    const readable = {};
    for (const name of read) readable[name] = response.headers.get(name);
    const body = await response.text();
    let json = null;
    try { json = JSON.parse(body); } catch (e) { /* not JSON */ }
    return {ok: response.ok, status: response.status, headers, read: readable, body, json, error: null};
  } catch (e) {
    return {ok: false, status: null, headers: {}, read: {}, body: null, json: null,
            error: `${e.name}: ${e.message}`};
  }
}
"""

#: The same probe run inside ``<iframe sandbox="allow-scripts" srcdoc=...>``: an
#: opaque origin, so the browser sends ``Origin: null``.
SANDBOX_JS = """
({probe, args}) => new Promise((resolve, reject) => {
  const frame = document.createElement('iframe');
  frame.setAttribute('sandbox', 'allow-scripts');
  const script = `(${probe})(${JSON.stringify(args)}).then(
      (result) => parent.postMessage({result, frameOrigin: self.origin}, '*'));`;
  const timer = setTimeout(() => reject(new Error('the sandboxed iframe did not answer')), 8000);
  window.addEventListener('message', function onMessage(event) {
    if (event.source !== frame.contentWindow) return;
    window.removeEventListener('message', onMessage);
    clearTimeout(timer);
    resolve({...event.data.result, frameOrigin: event.data.frameOrigin});
  });
  frame.srcdoc = '<script>' + script + '<' + '/script>';
  document.body.appendChild(frame);
})
"""


def browser_fetch(page: Page, url: str, init: Mapping[str, Any] | None = None,
                  read: Iterable[str] = ()) -> FetchResult:
    """``fetch(url, init)`` in ``page``; what its script could see."""
    result: FetchResult = page.evaluate(PROBE_JS, {"url": url, "init": dict(init or {}), "read": list(read)})
    return result


def sandboxed_fetch(page: Page, url: str, init: Mapping[str, Any] | None = None,
                    read: Iterable[str] = ()) -> FetchResult:
    """``fetch(url, init)`` from a sandboxed iframe in ``page`` (``Origin: null``)."""
    args = {"url": url, "init": dict(init or {}), "read": list(read)}
    result: dict[str, Any] = page.evaluate(SANDBOX_JS, {"probe": PROBE_JS, "args": args})
    assert result.pop("frameOrigin") == "null", "the sandboxed frame should have an opaque origin"
    return cast(FetchResult, result)


def log_in_through_form(page: Page, gated_url: str, login_url: str, user: str) -> None:
    """Navigate to a gated page, get sent to the login form, submit it, come back."""
    page.goto(gated_url)
    assert page.url.startswith(f"{login_url}?redirect_url="), page.url
    page.fill('input[name="user"]', user)
    with page.expect_navigation():
        page.click('button[type="submit"]')
    assert page.url == gated_url, page.url


def fill(value: Any, names: Mapping[str, str]) -> Any:
    """``value`` with ``{api}``, ``{spa}``, ... replaced in every string, recursively."""
    if isinstance(value, str):
        for name, replacement in names.items():
            value = value.replace("{" + name + "}", replacement)
        return value
    if isinstance(value, list):
        return [fill(item, names) for item in value]
    if isinstance(value, tuple):
        return tuple(fill(item, names) for item in value)
    if isinstance(value, dict):
        return {key: fill(item, names) for key, item in value.items()}
    return value
