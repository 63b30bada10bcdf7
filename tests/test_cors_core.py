"""The pure CORS decision, table-driven: origins x methods x headers x credentials."""

from __future__ import annotations

from typing import Any

import pytest

from flask_access_cors import cors
from flask_access_cors.cors import Denial
from flask_access_cors.policy import Policy, compile_policy, merge_layers, policy_defaults
from flask_access_cors.settings import Problems, check_policy, parse_settings


def policy(**settings: Any) -> Policy:
    problems = Problems()
    merged = merge_layers(policy_defaults(), parse_settings(settings, "test", problems))
    check_policy(merged, "test", problems)
    problems.raise_if_any()
    return compile_policy("app", merged)


def header_map(result: list[tuple[str, str]] | Denial) -> dict[str, str]:
    assert not isinstance(result, Denial), result
    names = [name for name, _ in result]
    assert len(names) == len(set(names)), "a header appears twice"
    return dict(result)


EXACT = {"origins": ["https://app.example.com"]}
WILD = {"origins": ["https://*.example.com"]}
ANY = {"origins": "*"}
CRED = {"origins": ["https://app.example.com"], "credentials": True}
LOCAL = {"origins": ["http://localhost:*"], "credentials": True}
CALLABLE = {"origins": lambda o: o.endswith(".example.org")}


@pytest.mark.parametrize(
    ("settings", "origin", "acao"),
    [
        (EXACT, "https://app.example.com", "https://app.example.com"),
        (EXACT, "https://evil.example", None),
        (WILD, "https://a.b.example.com", "https://a.b.example.com"),
        (WILD, "https://example.com", None),
        (ANY, "https://anything.test", "*"),
        (ANY, "null", "*"),
        (CRED, "https://app.example.com", "https://app.example.com"),
        (CRED, "null", None),
        (LOCAL, "http://localhost:5173", "http://localhost:5173"),
        (CALLABLE, "https://x.example.org", "https://x.example.org"),
        (CALLABLE, "https://x.example.net", None),
        ({}, "https://app.example.com", None),
    ],
)
@pytest.mark.parametrize("method", ["GET", "POST", "DELETE", "patch"])
def test_actual_origin_table(settings: dict[str, Any], origin: str, acao: str | None,
                             method: str) -> None:
    p = policy(**settings)
    result = cors.actual(p, origin, method)
    if acao is None:
        assert isinstance(result, Denial) and result.reason == "origin_not_allowed"
        return
    headers = header_map(result)
    assert headers["Access-Control-Allow-Origin"] == acao
    assert ("Access-Control-Allow-Credentials" in headers) is p.credentials
    if p.credentials:
        assert headers["Access-Control-Allow-Credentials"] == "true"
        assert acao != "*"
    assert ("Vary" in headers) is (acao != "*")


@pytest.mark.parametrize(
    ("methods", "requested", "route", "allowed"),
    [
        (None, "PUT", None, True),
        (None, "patch", None, True),
        (["GET"], "PUT", None, False),
        (["GET"], "HEAD", None, True),
        (None, "PUT", {"GET", "HEAD", "OPTIONS"}, False),
        (None, "PATCH", {"PATCH", "OPTIONS"}, True),
        (None, "OPTIONS", None, False),
        (None, "GE T", None, False),
        (["PURGE"], "purge", None, True),
    ],
)
def test_preflight_methods(methods: list[str] | None, requested: str, route: set[str] | None,
                           allowed: bool) -> None:
    settings: dict[str, Any] = dict(EXACT)
    if methods is not None:
        settings["methods"] = methods
    result = cors.preflight(policy(**settings), "https://app.example.com", requested, None, None,
                            route)
    if allowed:
        assert header_map(result)["Access-Control-Allow-Methods"] == requested  # echoed as sent
    else:
        assert isinstance(result, Denial) and result.reason == "method_not_allowed"
        assert result.detail == requested


@pytest.mark.parametrize(
    ("allow", "requested", "reason"),
    [
        (None, "content-type,x-csrf-token", None),
        (None, "x-custom", "header_not_allowed"),
        (["X-Custom"], "x-custom", None),
        (["X-Custom"], "X-CUSTOM , content-type", "header_not_allowed"),
        ("*", "x-anything,x-other", None),
        ("*", "authorization", "header_not_allowed"),
        (["Authorization"], "authorization", None),
        ("*", "x-a,bad header", "header_not_allowed"),
        (None, "," * 65536, "request_headers_malformed"),
        (None, "x-a," * 1000, "request_headers_malformed"),
        (None, "accept,,content-type", None),
    ],
)
def test_preflight_headers(allow: Any, requested: str, reason: str | None) -> None:
    settings: dict[str, Any] = dict(EXACT)
    if allow is not None:
        settings["allow_headers"] = allow
    result = cors.preflight(policy(**settings), "https://app.example.com", "POST", requested,
                            None, None)
    if reason is None:
        assert header_map(result)["Access-Control-Allow-Headers"] == requested
    else:
        assert isinstance(result, Denial) and result.reason == reason


def test_mixed_case_allowed_header() -> None:
    result = cors.preflight(policy(**EXACT, allow_headers=["X-Custom", "Content-Type"]),
                            "https://app.example.com", "POST", "X-CUSTOM , content-type", None,
                            None)
    assert header_map(result)["Access-Control-Allow-Headers"] == "X-CUSTOM , content-type"


@pytest.mark.parametrize(
    ("max_age", "header"), [(1800, "1800"), (0, None), (-1, "0"), (86400, "86400")]
)
def test_max_age(max_age: int, header: str | None) -> None:
    result = cors.preflight(policy(**EXACT, max_age=max_age), "https://app.example.com", "GET",
                            None, None, None)
    assert header_map(result).get("Access-Control-Max-Age") == header


@pytest.mark.parametrize(
    ("enabled_pna", "sent", "outcome"),
    [(False, None, None), (False, "true", "private_network_not_allowed"), (True, "true", "true"),
     (True, None, None), (False, "false", None)],
)
def test_private_network(enabled_pna: bool, sent: str | None, outcome: str | None) -> None:
    result = cors.preflight(policy(**EXACT, private_network=enabled_pna),
                            "https://app.example.com", "GET", None, sent, None)
    if outcome == "private_network_not_allowed":
        assert isinstance(result, Denial) and result.reason == outcome
    else:
        assert header_map(result).get("Access-Control-Allow-Private-Network") == outcome


def test_preflight_vary_and_credentials() -> None:
    headers = header_map(cors.preflight(policy(**CRED), "https://app.example.com", "PUT",
                                        "x-csrf-token", None, None))
    assert headers["Vary"] == (
        "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"
    )
    assert headers["Access-Control-Allow-Credentials"] == "true"
    assert headers["Access-Control-Allow-Origin"] == "https://app.example.com"


@pytest.mark.parametrize(
    ("origin", "reason"),
    [
        ("https://app.example.com,https://app.example.com", "origin_malformed"),
        ("https://app.example.com ", "origin_malformed"),
        ("https://ä.example.com", "origin_malformed"),
        ("https://app.example.com/path", "origin_malformed"),
        ("https://" + "a" * 400 + ".com", "origin_malformed"),
        ("null", "origin_not_allowed"),
    ],
)
@pytest.mark.parametrize("settings", [EXACT, WILD, ANY])
def test_malformed_origins(origin: str, reason: str, settings: dict[str, Any]) -> None:
    result = cors.actual(policy(**settings), origin, "GET")
    if settings is ANY and origin == "null":
        assert header_map(result)["Access-Control-Allow-Origin"] == "*"
    else:
        assert isinstance(result, Denial) and result.reason == reason


def test_disabled_policy_denies_every_origin() -> None:
    result = cors.actual(policy(**EXACT, enabled=False), "https://app.example.com", "GET")
    assert isinstance(result, Denial) and result.reason == "cors_disabled"


def test_expose_headers() -> None:
    headers = header_map(cors.actual(policy(**EXACT, expose_headers=["X-Total", "ETag"]),
                                     "https://app.example.com", "GET"))
    assert headers["Access-Control-Expose-Headers"] == "ETag, X-Total"


@pytest.mark.parametrize(
    ("method", "origin", "own", "acrm", "kind"),
    [
        ("GET", None, "https://api.test", False, cors.NOT_CORS),
        ("POST", "https://api.test", "https://api.test", False, cors.SAME_ORIGIN),
        ("OPTIONS", "https://app.test", "https://api.test", True, cors.PREFLIGHT),
        ("OPTIONS", "https://app.test", "https://api.test", False, cors.ACTUAL),
        ("GET", "https://app.test", "https://api.test", True, cors.ACTUAL),
    ],
)
def test_classify(method: str, origin: str | None, own: str, acrm: bool, kind: str) -> None:
    assert cors.classify(method, origin, own, acrm) == kind


def test_failing_origin_callable_fails_closed(caplog: pytest.LogCaptureFixture) -> None:
    def broken(origin: str) -> bool:
        raise RuntimeError("boom")

    result = cors.actual(policy(origins=broken), "https://a.test", "GET")
    assert isinstance(result, Denial) and result.reason == "origin_not_allowed"
    assert "raised" in caplog.text
