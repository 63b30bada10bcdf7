"""The origin grammar and matcher (pure)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flask_access_cors.origins import (
    MAX_ORIGIN_LENGTH,
    OriginMatcher,
    is_loopback_host,
    is_well_formed,
    parse_pattern,
)


def matcher(*patterns: str) -> OriginMatcher:
    return OriginMatcher([parse_pattern(p) for p in patterns])


@pytest.mark.parametrize(
    ("patterns", "origin", "expected"),
    [
        (["https://app.example.com"], "https://app.example.com", True),
        (["https://app.example.com"], "http://app.example.com", False),
        (["https://app.example.com"], "https://app.example.com:8443", False),
        (["https://*.example.com"], "https://a.example.com", True),
        (["https://*.example.com"], "https://a.b.example.com", True),
        (["https://*.example.com"], "https://example.com", False),
        (["https://*.example.com"], "https://badexample.com", False),
        (["https://*.example.com"], "https://a.example.com.evil.net", False),
        (["https://*.example.com"], "http://a.example.com", False),
        (["https://*.example.com"], "https://a.example.com:8443", False),
        (["https://*.example.com:*"], "https://a.example.com:8443", True),
        (["https://*.example.com:8443"], "https://a.example.com:8443", True),
        (["https://*.example.com:8443"], "https://a.example.com", False),
        (["http://localhost:*"], "http://localhost:5173", True),
        (["http://localhost:*"], "http://localhost", True),
        (["http://localhost:*"], "http://localhost.evil.net:5173", False),
        (["http://localhost:*"], "https://localhost:5173", False),
        (["http://[::1]:*"], "http://[::1]:8080", True),
        (["http://127.0.0.1:8000"], "http://127.0.0.1:8000", True),
        (["https://app.example.com"], "null", False),
    ],
)
def test_matching(patterns: list[str], origin: str, expected: bool) -> None:
    assert matcher(*patterns).matches(origin) is expected


@pytest.mark.parametrize(
    "pattern",
    [
        "null",
        "file://",
        "file:///etc/passwd",
        "https://example.com/",
        "https://example.com/path",
        "https://example.com?q",
        "https://user@example.com",
        "https://Example.com",
        "HTTPS://example.com",
        "https://example.com:443",
        "http://example.com:80",
        " https://example.com",
        "https://exa mple.com",
        "https://exämple.com",
        "https://*example.com",
        "https://a.*.example.com",
        "https://*.com",
        "https://example.*",
        "https://example.com:8*",
        "https://example.com:0",
        "https://example.com:65536",
        "https://example.com:08080",
        "https://example.com:",
        "example.com",
        "https://a.com,https://b.com",
        "https://[::0:1]",
        "https://*.127.0.0.1",
        "ftp://*.example.com",
        "https://-bad.example.com",
    ],
)
def test_refused_patterns(pattern: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_pattern(pattern)
    assert str(info.value)  # every refusal says why


@pytest.mark.parametrize(
    "pattern",
    [
        "https://app.example.com",
        "https://*.example.com",
        "http://localhost:*",
        "http://127.0.0.1:5000",
        "http://[::1]:8080",
        "https://xn--mnchen-3ya.example",
        "chrome-extension://abcdefghijklmnop",
        "https://*.localhost",
    ],
)
def test_accepted_patterns(pattern: str) -> None:
    assert parse_pattern(pattern).text == pattern


@pytest.mark.parametrize(
    ("origin", "ok"),
    [
        ("https://a.com", True),
        ("https://a.com,https://a.com", False),
        ("https://a.com https://b.com", False),
        ("https://a.com/", False),
        ("https://a.com/path", False),
        ("https://ä.com", False),
        ("https://a.com\r\nX-Injected: 1", False),
        ("https://" + "a" * MAX_ORIGIN_LENGTH + ".com", False),
        ("http://[::1]:8080", True),
    ],
)
def test_well_formed(origin: str, ok: bool) -> None:
    assert is_well_formed(origin) is ok


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("localhost", True), ("a.localhost", True), ("127.0.0.1", True), ("127.9.9.9", True),
     ("[::1]", True), ("localhost.evil.com", False), ("10.0.0.1", False), ("example.com", False)],
)
def test_loopback(host: str, loopback: bool) -> None:
    assert is_loopback_host(host) is loopback


labels = st.from_regex(r"[a-z0-9]{1,10}", fullmatch=True)
tlds = st.from_regex(r"[a-z]{2,6}", fullmatch=True)


@given(st.lists(labels, min_size=1, max_size=4), labels, tlds)
def test_wildcard_is_label_bounded(prefix: list[str], name: str, tld: str) -> None:
    domain = f"{name}.{tld}"
    m = matcher(f"https://*.{domain}")
    assert m.matches(f"https://{'.'.join(prefix)}.{domain}")
    assert not m.matches(f"https://{domain}")
    assert not m.matches(f"https://{prefix[0]}{domain}")
    assert not m.matches(f"https://{prefix[0]}.{domain}.evil")


def test_cost_does_not_depend_on_pattern_count() -> None:
    """10,000 exact origins and 1,000 wildcards are stored as sets, not scanned."""
    exact = [f"https://app{i}.example.com" for i in range(10_000)]
    wild = [f"https://*.tenant{i}.example.net" for i in range(1_000)]
    m = matcher(*exact, *wild)
    assert len(m.exact) == 10_000 and len(m.suffixes) == 1_000
    assert m.matches("https://app9999.example.com")
    assert m.matches("https://x.y.tenant999.example.net")
    assert not m.matches("https://x.tenant1000.example.net")
