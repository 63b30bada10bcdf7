"""Shared fixtures: small apps built inline, one scenario per test."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest
from flask import Flask

from flask_access_cors import AccessCors
from tests.browser_support import launch, require_browser

if TYPE_CHECKING:
    from playwright.sync_api import Browser

IN_CI = os.environ.get("CI") == "true"


def require_binary(path_or_name: str) -> str:
    """The binary's path; in CI a missing binary fails the test, elsewhere it skips."""
    found = path_or_name if os.path.isabs(path_or_name) and os.access(path_or_name, os.X_OK) \
        else shutil.which(path_or_name)
    if found:
        return found
    message = f"{path_or_name} is not installed (make test installs it as root)"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


def make_app(**settings: Any) -> tuple[Flask, AccessCors, list[str]]:
    """An app with a few routes; ``ran`` records which views ran."""
    app = Flask(__name__)
    app.config.update(PROPAGATE_EXCEPTIONS=False, SERVER_NAME=None)
    settings.setdefault("event_store", "memory://")
    access = AccessCors(app, **settings)
    ran: list[str] = []

    @app.route("/items", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
    def items() -> dict[str, Any]:
        ran.append("items")
        return {"ok": True}

    @app.get("/boom")
    def boom() -> str:
        ran.append("boom")
        raise RuntimeError("unhandled")

    return app, access, ran


@pytest.fixture
def app_factory() -> Iterator[Callable[..., tuple[Flask, AccessCors, list[str]]]]:
    made: list[AccessCors] = []

    def factory(**settings: Any) -> tuple[Flask, AccessCors, list[str]]:
        app, access, ran = make_app(**settings)
        made.append(access)
        return app, access, ran

    yield factory


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's Chromium through Playwright, one per test module (skips, or fails in CI, without it)."""
    require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = launch(playwright)
        try:
            yield chromium
        finally:
            chromium.close()
