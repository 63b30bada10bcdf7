"""SPEC 8.3, seeing why: reasons while developing, request ids, metrics, mistakes explained."""

from __future__ import annotations

import logging
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from flask_access_cors import AccessCors, ConfigError
from tests.test_multiprocess import gunicorn, request

SPA = "https://app.example.com"
SECRET = "s" * 40


def small_app(**settings: Any) -> tuple[Flask, AccessCors]:
    app = Flask(__name__)
    app.testing = True
    settings.setdefault("event_store", "memory://")
    access = AccessCors(app, origins=[SPA], **settings)

    @app.route("/items", methods=["GET", "POST"])
    def items() -> str:
        return "items"

    return app, access


# -- expose_reasons ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "headers", "status", "reason"),
    [
        ({}, {"Origin": "https://evil.example"}, 403, "origin_not_allowed"),
        ({}, {"Origin": SPA, "Access-Control-Request-Method": "TRACE"}, 403, "method_not_allowed"),
        ({"jwt_secret": SECRET, "gate": True}, {}, 401, "token_missing"),
        ({"jwt_secret": SECRET, "gate": True}, {"Cf-Access-Jwt-Assertion": "x.y.z"}, 401,
         "token_malformed"),
    ],
)
def test_expose_reasons_tells_the_developer_why(
    settings: dict[str, Any], headers: dict[str, str], status: int, reason: str
) -> None:
    method = "OPTIONS" if "Access-Control-Request-Method" in headers else "GET"
    for exposed in (True, False):
        app, _ = small_app(expose_reasons=exposed, **settings)
        response = app.test_client().open("/items", method=method, headers=headers)
        assert response.status_code == status
        if exposed:
            assert response.headers["X-Access-Cors-Reason"] == reason
            assert response.json is not None and response.json["reason"] == reason
        else:
            assert "X-Access-Cors-Reason" not in response.headers
            assert response.json is not None and "reason" not in response.json


def test_expose_reasons_outside_debug_or_testing_is_warned_about(caplog: pytest.LogCaptureFixture) -> None:
    for debug, testing, warned in [(False, False, True), (True, False, False), (False, True, False)]:
        caplog.clear()
        app = Flask(__name__)
        app.debug, app.testing = debug, testing
        with caplog.at_level(logging.WARNING, logger="flask_access_cors"):
            AccessCors(app, origins=[SPA], expose_reasons=True, event_store="memory://")
        assert any("expose_reasons" in r.getMessage() for r in caplog.records) is warned


# -- request ids ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"X-Request-ID": "req-123"}, "req-123"),
        ({"CF-Ray": "8f1e2d3c4b5a6978-AMS"}, "8f1e2d3c4b5a6978-AMS"),
        ({"X-Request-ID": "a", "CF-Ray": "b"}, "b"),  # Cloudflare's, not the client's
        ({"X-Request-ID": "evil\x1b[31m" + "x" * 100}, None),
        ({}, None),
    ],
)
def test_events_carry_the_request_id(headers: dict[str, str], expected: str | None) -> None:
    app, access = small_app(debug=True)
    app.test_client().get("/items", headers={"Origin": "https://evil.example", **headers})
    with app.app_context():
        access.events.flush()
        [event] = access.events.search()
    if expected is not None:
        assert event.request_id == expected
    elif headers:  # escaped and cut: no raw control character, at most 64 characters (+ mark)
        assert event.request_id is not None and "\x1b" not in event.request_id
        assert len(event.request_id) <= 65
    else:
        assert event.request_id is None


# -- metrics ----------------------------------------------------------------------------------


def test_metrics_count_every_denial_by_reason_policy_and_status() -> None:
    from prometheus_client import REGISTRY

    def value(reason: str, status: str) -> float:
        found = REGISTRY.get_sample_value("flask_access_cors_denials_total",
                                          {"reason": reason, "policy": "app", "status": status})
        return found or 0.0

    app, _ = small_app(metrics=True, jwt_secret=SECRET, gate=True)
    before = value("origin_not_allowed", "403"), value("token_missing", "401")
    client = app.test_client()
    for _ in range(3):
        client.get("/items", headers={"Origin": "https://evil.example"})
    client.get("/items")
    assert value("origin_not_allowed", "403") - before[0] == 3
    assert value("token_missing", "401") - before[1] == 1


METRICS_APP = textwrap.dedent("""
    from flask import Flask
    from flask_access_cors import AccessCors

    app = Flask(__name__)
    AccessCors(app, origins=["https://app.example.com"], metrics=True, event_store="memory://")

    @app.route("/items", methods=["GET", "POST"])
    def items():
        return "items"
""")


@pytest.mark.slow
def test_metrics_add_up_across_gunicorn_workers(tmp_path: Path) -> None:
    from prometheus_client import CollectorRegistry, multiprocess

    metrics_dir = tmp_path / "prom"
    metrics_dir.mkdir()
    origins = [f"https://evil{i % 7}.example" for i in range(400)]
    with gunicorn(tmp_path, "memory://", source=METRICS_APP,
                  env={"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}) as port:
        with ThreadPoolExecutor(16) as pool:
            statuses = list(pool.map(lambda o: request(port, "/items", o), origins))
        assert statuses == [403] * len(origins)
    files = list(metrics_dir.glob("counter_*.db"))
    assert len(files) >= 2  # several workers wrote their own counts
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(metrics_dir))
    total = registry.get_sample_value("flask_access_cors_denials_total",
                                      {"reason": "origin_not_allowed", "policy": "app",
                                       "status": "403"})
    assert total == len(origins)


def test_metrics_without_prometheus_client_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "prometheus_client" else real(name, *a))
    with pytest.raises(ConfigError, match=r"flask-access-cors\[metrics\]"):
        small_app(metrics=True)


# -- mistakes explained, each once ------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "config", "hint"),
    [
        ({"orgins": [SPA]}, {}, "did you mean 'origins'?"),
        ({"supports_credentials": True}, {}, "did you mean 'credentials'?"),
        ({"require": {"email": ["a@example.com"]}, "jwt_secret": SECRET}, {},
         "did you mean 'emails'?"),
        ({"alow_headers": ["X-A"]}, {}, "did you mean 'allow_headers'?"),
        ({}, {"ACCESS_CORS_ORGINS": [SPA]}, "did you mean 'ACCESS_CORS_ORIGINS'?"),
        ({}, {"ACCESS_CORS_SUPPORTS_CREDENTIALS": True}, "did you mean 'ACCESS_CORS_CREDENTIALS'?"),
        ({"send_wildcard": True}, {}, "a flask-cors option"),
    ],
)
def test_unknown_names_suggest_the_known_one(
    settings: dict[str, Any], config: dict[str, Any], hint: str
) -> None:
    app = Flask(__name__)
    app.config.update(config)
    with pytest.raises(ConfigError) as info:
        AccessCors(app, event_store="memory://", **settings)
    [(_, message)] = info.value.problems
    assert hint in message


@pytest.mark.parametrize(
    ("settings", "codes"),
    [
        ({"team_domain": "t.cloudflareaccess.com", "gate": True}, ["missing_audience"]),
        ({"event_store": "ftp://x"}, ["invalid_value"]),
        ({"origins": "*", "credentials": True}, ["wildcard_with_credentials"]),
    ],
)
def test_each_mistake_is_reported_once(settings: dict[str, Any], codes: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        AccessCors(Flask(__name__), **{"event_store": "memory://", **settings})
    assert [c for c, _ in info.value.problems] == codes


def test_a_blueprints_wildcard_with_the_apps_credentials_is_reported_once() -> None:
    from flask import Blueprint

    app = Flask(__name__)
    access = AccessCors(app, origins=[SPA], credentials=True, event_store="memory://")
    outer = access.blueprint(Blueprint("outer", __name__, url_prefix="/o"), origins="*")
    inner = Blueprint("inner", __name__, url_prefix="/i")
    inner.add_url_rule("/", "index", lambda: "x")
    outer.register_blueprint(inner)
    outer.add_url_rule("/", "index", lambda: "x")
    with pytest.raises(ConfigError) as info:
        app.register_blueprint(outer)
    assert [c for c, _ in info.value.problems] == ["wildcard_with_credentials"]
