"""Validation at start: every problem listed at once, each with its stable code."""

from __future__ import annotations

from typing import Any

import pytest

from flask_access_cors.policy import compile_policy, merge_layers, policy_defaults
from flask_access_cors.settings import SETTINGS, ConfigError, Problems, check_policy, parse_settings


def codes(settings: dict[str, Any]) -> list[str]:
    problems = Problems()
    layer = parse_settings(settings, "test", problems)
    if not problems.items:
        check_policy(merge_layers(policy_defaults(), layer), "test", problems)
    return [code for code, _ in problems.items]


@pytest.mark.parametrize(
    ("settings", "code"),
    [
        ({"origin": ["https://a.com"]}, "unknown_setting"),
        ({"team_domain": "x.cloudflareaccess.com"}, "unknown_setting"),  # app-level only
        ({"origins": ["null"]}, "invalid_origin"),
        ({"origins": ["https://a.com/"]}, "invalid_origin"),
        ({"origins": ["*", "https://a.com"]}, "invalid_origin"),
        ({"origins": "*", "credentials": True}, "wildcard_with_credentials"),
        ({"origins": ["http://a.com"], "credentials": True}, "insecure_origin"),
        ({"methods": ["CONNECT"]}, "forbidden_method"),
        ({"methods": ["trace"]}, "forbidden_method"),
        ({"methods": ["GE T"]}, "invalid_method"),
        ({"allow_headers": ["Cookie"]}, "forbidden_header"),
        ({"allow_headers": ["Sec-Fetch-Mode"]}, "forbidden_header"),
        ({"allow_headers": ["Proxy-Authorization"]}, "forbidden_header"),
        ({"allow_headers": ["Access-Control-Allow-Origin"]}, "forbidden_header"),
        ({"allow_headers": ["X Bad"]}, "invalid_header"),
        ({"expose_headers": ["Set-Cookie"]}, "invalid_expose_header"),
        ({"expose_headers": "*", "origins": ["https://a.com"], "credentials": True},
         "invalid_expose_header"),
        ({"max_age": 86401}, "max_age_out_of_range"),
        ({"max_age": -2}, "max_age_out_of_range"),
        ({"max_age": "10"}, "invalid_value"),
        ({"excluded_paths": ["admin*"]}, "invalid_path_pattern"),
        ({"excluded_paths": ["/a*b"]}, "invalid_path_pattern"),
        ({"credentials": "yes"}, "invalid_value"),
        ({"preflight": "skip"}, "invalid_value"),
        ({"require": {"email": ["a@b.c"]}}, "invalid_value"),
    ],
)
def test_each_problem_has_its_code(settings: dict[str, Any], code: str) -> None:
    assert code in codes(settings)


def test_valid_settings_have_no_problem() -> None:
    assert codes({
        "origins": ["https://app.example.com", "https://*.example.com", "http://localhost:*"],
        "credentials": True,
        "methods": ["GET", "patch"],
        "allow_headers": ["X-Custom", "Content-Type"],
        "expose_headers": ["X-Total-Count"],
        "max_age": -1,
        "excluded_paths": ["/admin*", "/account"],
        "require": {"emails": ["a@example.com"]},
    }) == []


def test_every_problem_is_listed_at_once() -> None:
    with pytest.raises(ConfigError) as info:
        problems = Problems()
        parse_settings(
            {"origins": ["https://A.com", "null"], "methods": ["TRACE"], "max_age": 10**6,
             "colour": "red"},
            "test", problems,
        )
        problems.raise_if_any()
    err = info.value
    assert isinstance(err, ValueError)
    assert sorted(code for code, _ in err.problems) == sorted(
        ["invalid_origin", "invalid_origin", "forbidden_method", "max_age_out_of_range",
         "unknown_setting"]
    )
    for code, message in err.problems:
        assert f"[{code}] {message}" in str(err)


def test_defaults_are_valid_and_documented() -> None:
    policy = compile_policy("app", policy_defaults())
    assert policy.methods == {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"}
    assert not policy.origins and not policy.credentials
    for setting in SETTINGS.values():
        assert setting.doc and setting.default_doc, setting.name
