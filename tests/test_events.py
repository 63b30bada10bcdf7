"""The debug event log (SPEC section 6): escaping, messages, stores, the EventLog.

Stores are tested against the real thing: an SQLite file in tmp_path and a
redis-server started on a free loopback port (tests/redis_server.py).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import multiprocessing
import os
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import unicodedata
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flask_access_cors.events import (
    REASONS,
    REQUEST_TYPES,
    Event,
    EventLog,
    MemoryStore,
    RedisStore,
    SQLiteStore,
    Store,
    WorkerStatus,
    WorkerStore,
    WriteOutcomeUnknown,
    describe,
    escape,
    open_store,
)
from flask_access_cors.events.model import FIELD_LIMITS
from tests.redis_server import RedisServer, free_port, require_redis_server

SPEC_REASONS = (
    "origin_not_allowed",
    "origin_malformed",
    "method_not_allowed",
    "header_not_allowed",
    "request_headers_malformed",
    "private_network_not_allowed",
    "cors_disabled",
    "excluded_path",
    "token_missing",
    "token_malformed",
    "token_invalid",
    "token_expired",
    "token_not_yet_valid",
    "audience_mismatch",
    "issuer_mismatch",
    "key_unknown",
    "key_unavailable",
    "service_token_invalid",
    "access_denied",
)
GATE_CODES = SPEC_REASONS[8:]
LOGGER = "flask_access_cors"
BASE = datetime(2030, 1, 2, 3, 4, 5, 678901, tzinfo=timezone.utc)
NOBODY = 65534

# Characters that must never reach a log line unescaped.
BIDI = set("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
fork_warning = pytest.mark.filterwarnings("ignore:.*fork.*:DeprecationWarning")


def is_unsafe(char: str) -> bool:
    return unicodedata.category(char) in ("Cc", "Cs", "Zl", "Zp") or char in BIDI


def unescape(text: str) -> str:
    """Decode escape()'s output: proves that it is unambiguous."""
    out: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char != "\\":
            out.append(char)
            i += 1
        elif text[i + 1] == "\\":
            out.append("\\")
            i += 2
        elif text[i + 1] == "x":
            out.append(chr(int(text[i + 2 : i + 4], 16)))
            i += 4
        elif text[i + 1] == "u":
            out.append(chr(int(text[i + 2 : i + 6], 16)))
            i += 6
        else:
            raise AssertionError(f"stray backslash in {text!r}")
    return "".join(out)


def make_event(**overrides: Any) -> Event:
    fields: dict[str, Any] = {
        "status": 403,
        "reason": "origin_not_allowed",
        "request_type": "actual",
        "policy": "app",
        "method": "GET",
        "path": "/api/items",
        "origin": "https://evil.example",
        "remote_addr": "203.0.113.9",
        "identity": None,
        "detail": "https://evil.example",
    }
    when = overrides.pop("time", None)
    fields.update(overrides)
    event = Event.create(**fields)
    return dataclasses.replace(event, time=when) if when is not None else event


def total(events: Sequence[Event]) -> int:
    return sum(event.count for event in events)


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeStore:
    """A store that keeps every batch and can be told to fail, block or be slow."""

    def __init__(self) -> None:
        self.batches: list[list[Event]] = []
        self.broken = False
        self.fail_every = 0  # fail every n-th write when > 0
        self.delay = 0.0
        self.gate: threading.Event | None = None  # write waits until it is set
        self.entered = threading.Event()
        self.writes = 0
        self.closes = 0
        self._lock = threading.Lock()

    @property
    def events(self) -> list[Event]:
        with self._lock:
            return [event for batch in self.batches for event in batch]

    def write(self, events: Sequence[Event]) -> None:
        self.entered.set()
        if self.gate is not None:
            assert self.gate.wait(30)
        if self.delay:
            time.sleep(self.delay)
        with self._lock:
            self.writes += 1
            if self.broken or (self.fail_every and self.writes % self.fail_every == 0):
                raise OSError("store unavailable")
            self.batches.append(list(events))

    def search(self, **filters: Any) -> list[Event]:
        return list(reversed(self.events))[: filters.get("limit", 100)]

    def clear(self) -> None:
        with self._lock:
            self.batches.clear()

    def close(self) -> None:
        self.closes += 1


@pytest.fixture
def logs() -> Iterator[Callable[..., EventLog]]:
    """Makes EventLogs and closes them after the test."""
    made: list[EventLog] = []

    def make(store: Store, **options: Any) -> EventLog:
        log = EventLog(store, **options)
        made.append(log)
        return log

    yield make
    for log in made:
        log.close()


# -- running code in a forked child ------------------------------------------------


def start_forked(
    target: Callable[..., Any], *args: Any, unprivileged: bool = False
) -> tuple[Any, Any]:
    """Run ``target(*args)`` in a forked process; returns (process, pipe)."""
    ctx = multiprocessing.get_context("fork")
    receiver, sender = ctx.Pipe(duplex=False)

    def main() -> None:
        try:
            if unprivileged and os.geteuid() == 0:
                os.setgroups([])
                os.setgid(NOBODY)
                os.setuid(NOBODY)
            sender.send(("ok", target(*args)))
        except BaseException:
            sender.send(("error", traceback.format_exc()))

    process = ctx.Process(target=main)
    process.start()
    return process, receiver


def result_of(process: Any, receiver: Any, timeout: float = 60.0) -> Any:
    if not receiver.poll(timeout):
        process.kill()
        pytest.fail("the child process did not answer in time")
    status, value = receiver.recv()
    process.join(10)
    if status != "ok":
        pytest.fail(f"the child process failed:\n{value}")
    return value


# -- escape() -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("https://app.example.com", "https://app.example.com"),
        ("a\r\nSet-Cookie: x=1", "a\\x0d\\x0aSet-Cookie: x=1"),
        ("nul\x00byte", "nul\\x00byte"),
        ("\x1b[31mred\x1b[0m", "\\x1b[31mred\\x1b[0m"),
        ("tab\there", "tab\\x09here"),
        ("del\x7f", "del\\x7f"),
        ("c1 \x85 \x9b", "c1 \\x85 \\x9b"),
        ("line\u2028para\u2029", "line\\u2028para\\u2029"),
        ("bidi\u202eevil", "bidi\\u202eevil"),
        ("lone \udc80 surrogate", "lone \\udc80 surrogate"),
        ("back\\slash", "back\\\\slash"),
        ("\\x0d", "\\\\x0d"),
        ("ellipsis…", "ellipsis\\u2026"),
        ("café/ünïcödé/日本語/😀", "café/ünïcödé/日本語/😀"),
        ("", ""),
    ],
)
def test_escape_table(raw: str, expected: str) -> None:
    assert escape(raw) == expected
    assert unescape(expected) == raw


def test_escape_none_stays_none() -> None:
    assert escape(None) is None


@pytest.mark.parametrize(
    ("raw", "limit", "expected"),
    [
        ("a" * 200, 200, "a" * 200),
        ("a" * 201, 200, "a" * 200 + "…"),
        ("a" * 10_000, 200, "a" * 200 + "…"),
        ("abcdef", 5, "abcde…"),
        # An escape sequence is never cut in half.
        ("a" * 198 + "\n", 200, "a" * 198 + "…"),
        ("a" * 196 + "\n", 200, "a" * 196 + "\\x0a"),
        ("\\\\\\", 5, "\\\\\\\\…"),
        ("abc", 0, "…"),
        ("", 0, ""),
    ],
)
def test_escape_truncates(raw: str, limit: int, expected: str) -> None:
    assert escape(raw, limit) == expected


def test_escape_rejects_negative_limit() -> None:
    with pytest.raises(ValueError, match="limit"):
        escape("x", -1)


def test_escape_cost_does_not_grow_with_hostile_input() -> None:
    hostile = "\r\n" * 5_000_000
    started = time.perf_counter()
    result = escape(hostile)
    assert time.perf_counter() - started < 0.05
    assert result is not None and result.endswith("…") and len(result) <= 201


UNSAFE_SAMPLES = list("\r\n\x00\x1b\x7f\x85\x9b\u2028\u2029\\\u2026\u202e\udc80")


@settings(max_examples=500, deadline=None)
@given(
    text=st.text(
        st.one_of(st.characters(exclude_categories=()), st.sampled_from(UNSAFE_SAMPLES)),
        max_size=300,
    ),
    limit=st.integers(min_value=0, max_value=250),
)
def test_escape_property(text: str, limit: int) -> None:
    result = escape(text, limit)
    assert result is not None
    assert not any(is_unsafe(char) for char in result)
    assert len(result) <= limit + 1
    if result.endswith("…"):  # a literal U+2026 is escaped, so this is the marker
        assert text.startswith(unescape(result[:-1]))
        assert len(unescape(result[:-1])) < len(text)
    else:
        assert unescape(result) == text


# -- reasons, describe(), Event.create() ----------------------------------------------


def test_reason_codes_are_exactly_the_specs() -> None:
    assert tuple(REASONS) == SPEC_REASONS
    for code, phrase in REASONS.items():
        assert phrase[0].isupper() and phrase.endswith("."), code
    assert REQUEST_TYPES == ("preflight", "actual", "not_cors", "same_origin", "malformed")


@pytest.mark.parametrize(
    ("reason", "request_type", "expected"),
    [
        ("origin_not_allowed", "preflight", "Invalid CORS pre-flight request. Origin not allowed."),
        ("origin_not_allowed", "actual", "Invalid CORS request. Origin not allowed."),
        ("origin_malformed", "malformed", "Invalid CORS request. Origin malformed."),
        ("method_not_allowed", "preflight", "Invalid CORS pre-flight request. Method not allowed."),
        ("header_not_allowed", "preflight", "Invalid CORS pre-flight request. Header not allowed."),
        ("excluded_path", "actual", "Invalid CORS request. Path excluded from CORS."),
        ("cors_disabled", "not_cors", "Invalid request. CORS disabled."),
        ("token_missing", "not_cors", "Access denied. Access token missing."),
        ("token_expired", "same_origin", "Access denied. Access token expired."),
        (
            "access_denied",
            "actual",
            "Access denied to CORS request. Identity not allowed by policy.",
        ),
        (
            "token_missing",
            "preflight",
            "Access denied to CORS pre-flight request. Access token missing.",
        ),
        ("key_unavailable", "not_cors", "Access denied. Signing keys unavailable."),
    ],
)
def test_describe_table(reason: str, request_type: str, expected: str) -> None:
    assert describe(reason, request_type, None) == expected
    assert describe(reason, request_type, "x") == f"{expected} [x]"


@pytest.mark.parametrize("reason", SPEC_REASONS)
@pytest.mark.parametrize("request_type", REQUEST_TYPES)
def test_describe_covers_every_reason_and_type(reason: str, request_type: str) -> None:
    message = describe(reason, request_type, None)
    assert message.endswith(" " + REASONS[reason])
    gate = reason in GATE_CODES
    assert message.startswith("Access denied") == gate
    assert ("pre-flight" in message) == (request_type == "preflight")


@pytest.mark.parametrize(
    ("reason", "request_type"), [("origin_not_alowed", "actual"), ("token_missing", "cors")]
)
def test_describe_rejects_unknown_vocabulary(reason: str, request_type: str) -> None:
    with pytest.raises(ValueError, match="unknown"):
        describe(reason, request_type, None)


def test_preflight_origin_denial_message_is_the_specs_example() -> None:
    origin = "https://evil.example"
    event = make_event(request_type="preflight", method="OPTIONS", origin=origin, detail=origin)
    phrase = REASONS["origin_not_allowed"]
    assert event.message == f"Invalid CORS pre-flight request. {phrase} [{origin}]"
    assert event.message == (
        "Invalid CORS pre-flight request. Origin not allowed. [https://evil.example]"
    )


def test_hostile_detail_appears_escaped_in_the_message() -> None:
    origin = "https://evil.example\r\nX-Injected: 1\x1b[2J\u2028"
    event = make_event(request_type="preflight", origin=origin, detail=origin)
    escaped = escape(origin, FIELD_LIMITS["detail"])
    assert escaped == "https://evil.example\\x0d\\x0aX-Injected: 1\\x1b[2J\\u2028"
    assert event.message == f"Invalid CORS pre-flight request. Origin not allowed. [{escaped}]"
    assert event.origin == escaped
    assert not any(is_unsafe(char) for char in event.message)


def test_long_detail_is_truncated_in_the_message() -> None:
    event = make_event(detail="https://" + "a" * 1000 + ".example")
    assert event.message.endswith("…]")
    assert len(event.message) <= len("Invalid CORS request. Origin not allowed. []") + 201


@pytest.mark.parametrize("field", ["method", "path", "origin", "remote_addr", "identity", "policy"])
def test_create_escapes_every_request_value(field: str) -> None:
    raw = "x\r\ny\x00z\x1b\u2029\\" + "w" * 1000
    event = make_event(**{field: raw})
    value = getattr(event, field)
    assert value == escape(raw, FIELD_LIMITS[field])
    assert value.startswith("x\\x0d\\x0ay\\x00z\\x1b\\u2029\\\\")
    assert value.endswith("…") and len(value) == FIELD_LIMITS[field] + 1


def test_create_fills_identity_time_and_count() -> None:
    before = datetime.now(timezone.utc)
    event = make_event(identity="alice@example.com", status=401, reason="token_expired")
    after = datetime.now(timezone.utc)
    assert re.fullmatch(r"[0-9a-f]{32}", event.id) and uuid.UUID(event.id).version == 4
    assert event.time.utcoffset() == timedelta(0) and before <= event.time <= after
    assert (event.count, event.status, event.identity) == (1, 401, "alice@example.com")
    assert make_event().id != make_event().id


@pytest.mark.parametrize(
    "overrides",
    [{"reason": "nope"}, {"request_type": "cors"}, {"status": "403"}, {"status": True}],
)
def test_create_rejects_bad_arguments(overrides: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        make_event(**overrides)


def test_event_is_frozen_and_validated() -> None:
    event = make_event()
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.status = 200  # type: ignore[misc]
    with pytest.raises(ValueError, match="aware"):
        dataclasses.replace(event, time=datetime(2030, 1, 1))
    with pytest.raises(ValueError, match="count"):
        dataclasses.replace(event, count=0)


def test_to_dict_from_dict_round_trip() -> None:
    event = make_event(time=BASE, identity="bob", origin=None, detail=None)
    data = event.to_dict()
    assert data["time"] == "2030-01-02T03:04:05.678901+00:00"
    assert set(data) == {field.name for field in dataclasses.fields(Event)}
    assert Event.from_dict(json.loads(json.dumps(data))) == event
    # Another offset is normalised to UTC.
    shifted = dict(data, time="2030-01-02T05:04:05.678901+02:00")
    assert Event.from_dict(shifted).time == BASE
    assert Event.from_dict(shifted).time.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    "change",
    [
        {"reason": None},
        {"status": "403"},
        {"count": True},
        {"count": 0},
        {"origin": 5},
        {"time": "2030-01-02T03:04:05"},
        {"time": "yesterday"},
        {"time": 12},
    ],
)
def test_from_dict_rejects_corrupt_records(change: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        Event.from_dict({**make_event().to_dict(), **change})


def test_from_dict_reports_a_missing_field() -> None:
    data = make_event().to_dict()
    del data["path"]
    with pytest.raises(ValueError, match="'path'"):
        Event.from_dict(data)


# -- stores -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    binary = require_redis_server()
    with RedisServer(binary, tmp_path_factory.mktemp("redis")) as server:
        yield server


def flush_redis(url: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    client.flushall()
    client.close()


STORE_KINDS = ["memory", "sqlite", pytest.param("redis", marks=pytest.mark.slow)]


@pytest.fixture(params=STORE_KINDS)
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[..., Store]]:
    """Makes stores of one kind, all on the same backing storage."""
    kind = request.param
    url = "memory://"
    if kind == "sqlite":
        url = f"sqlite:///{tmp_path}/db/events.sqlite3"
    elif kind == "redis":
        url = request.getfixturevalue("redis_server").url
        flush_redis(url)
    made: list[Store] = []

    def make(retention: int = 1000) -> Store:
        store = open_store(url, retention=retention)
        made.append(store)
        return store

    yield make
    for store in made:
        store.close()


# Written out of time order, to show that searches sort by event time.
EVIL, APP = "https://evil.example", "https://app.example"
SAMPLE = [
    dict(reason="origin_not_allowed", status=403, path="/api/items", origin=EVIL),
    dict(reason="token_missing", status=401, path="/api/items/7", origin=APP),
    dict(reason="method_not_allowed", status=403, path="/admin/users", origin=EVIL),
    dict(reason="token_expired", status=401, path="/api/?x", origin=None),
    dict(reason="origin_not_allowed", status=403, path="/API/items", origin=EVIL + ":8443"),
    dict(reason="key_unavailable", status=503, path="/api/[a]", origin=APP),
]
EST = timezone(timedelta(hours=-5))


@pytest.fixture
def sample(make_store: Callable[..., Store]) -> tuple[Store, list[Event]]:
    store = make_store()
    events = [make_event(time=BASE + timedelta(seconds=i), **f) for i, f in enumerate(SAMPLE)]
    store.write([events[3], events[0], events[5]])
    store.write([events[1], events[4], events[2]])
    return store, events


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({}, [5, 4, 3, 2, 1, 0]),
        ({"reason": "origin_not_allowed"}, [4, 0]),
        ({"status": 401}, [3, 1]),
        ({"path": "/api/items"}, [0]),
        ({"path": "/api/*"}, [5, 3, 1, 0]),
        ({"path": "*items*"}, [4, 1, 0]),
        ({"path": "/api/?x"}, [3]),
        ({"path": "/api/item?"}, []),
        ({"path": "/api/[a]"}, [5]),
        ({"path": "/api/[*"}, [5]),
        ({"path": "*"}, [5, 4, 3, 2, 1, 0]),
        ({"origin": "https://evil.example"}, [2, 0]),
        ({"since": BASE + timedelta(seconds=3)}, [5, 4, 3]),
        ({"since": BASE + timedelta(seconds=2, microseconds=1)}, [5, 4, 3]),
        ({"since": (BASE + timedelta(seconds=4)).astimezone(EST)}, [5, 4]),
        ({"limit": 2}, [5, 4]),
        ({"limit": 1, "status": 403}, [4]),
        ({"reason": "origin_not_allowed", "origin": "https://evil.example", "since": BASE}, [0]),
    ],
)
def test_store_search(
    sample: tuple[Store, list[Event]], filters: dict[str, Any], expected: list[int]
) -> None:
    store, events = sample
    found = store.search(**filters)
    assert [event.id for event in found] == [events[i].id for i in expected]
    assert found == [events[i] for i in expected]  # every field survives the round trip


def test_store_rejects_naive_since(sample: tuple[Store, list[Event]]) -> None:
    store, _ = sample
    with pytest.raises(ValueError, match="aware"):
        store.search(since=datetime(2030, 1, 1))


def test_store_keeps_the_newest_retention_events(make_store: Callable[..., Store]) -> None:
    store = make_store(retention=10)
    events = [make_event(path=f"/r/{i}", time=BASE + timedelta(seconds=i)) for i in range(25)]
    store.write(events[:7])
    store.write(events[7:20])
    store.write(events[20:])
    assert store.search(limit=100) == events[15:][::-1]


def test_store_clear(sample: tuple[Store, list[Event]]) -> None:
    store, _ = sample
    store.clear()
    assert store.search() == []
    store.write([make_event()])
    assert len(store.search()) == 1


def test_store_keeps_hostile_values_verbatim(make_store: Callable[..., Store]) -> None:
    store = make_store()
    event = make_event(
        path="/x'; DROP TABLE access_cors_events; --\"%_*?[",
        identity="ünï'cödé\\",
        origin="https://évil.example\r\n",
        method="G\"ET",
    )
    store.write([event, make_event()])
    assert store.search(path=event.path) == [event]
    assert store.search(origin=event.origin) == [event]
    assert len(store.search()) == 2


def test_store_write_of_nothing_is_a_no_op(make_store: Callable[..., Store]) -> None:
    store = make_store()
    store.write([])
    assert store.search() == []


def test_store_keeps_the_request_id(make_store: Callable[..., Store]) -> None:
    store = make_store()
    tagged = make_event(path="/tagged", request_id="req-\r\n" + "7" * 80)
    store.write([tagged, make_event(path="/plain")])
    found = {event.path: event for event in store.search()}
    assert found["/tagged"].request_id == tagged.request_id
    assert tagged.request_id is not None and tagged.request_id.startswith("req-\\x0d\\x0a")
    assert found["/plain"].request_id is None
    assert found["/tagged"] == tagged  # every field comes back as written


def _status(flushes: int, **changes: Any) -> WorkerStatus:
    fields: dict[str, Any] = {
        "host": "web-1", "pid": 4242, "started": BASE, "last_flush": BASE + timedelta(seconds=flushes),
        "recorded": 10 * flushes, "written": 9 * flushes, "dropped": flushes, "flushes": flushes,
    }
    fields.update(changes)
    return WorkerStatus(**fields)


def test_store_keeps_the_newest_heartbeat_per_worker(make_store: Callable[..., Store]) -> None:
    store = make_store()
    assert isinstance(store, WorkerStore)
    store.write([make_event(path="/one")], worker=_status(1))
    store.write([], worker=_status(3))
    store.write([], worker=_status(2))  # a late duplicate of an older write: ignored
    store.write([], worker=_status(1, pid=7, host="web-2"))
    newest, other = store.workers()
    assert newest == _status(3) and other.pid == 7
    assert newest.pending == 30 - 27 - 3 == 0
    store.write([], worker=_status(3, closed=True, recorded=31, dropped=4))  # the closing one
    assert store.workers()[0] == _status(3, closed=True, recorded=31, dropped=4)
    assert [e.path for e in store.search()] == ["/one"]
    store.clear()
    assert store.workers() == [] and store.search() == []


def test_worker_status_round_trips_and_rejects_garbage() -> None:
    status = _status(5, closed=True)
    assert WorkerStatus.from_dict(json.loads(json.dumps(status.to_dict()))) == status
    assert status.to_dict()["pending"] == status.pending
    for change in ({"pid": "1"}, {"closed": "yes"}, {"started": "2030-01-01T00:00:00"}, {"host": None}):
        with pytest.raises(ValueError):
            WorkerStatus.from_dict({**status.to_dict(), **change})
    with pytest.raises(ValueError, match="lacks field"):
        WorkerStatus.from_dict({"host": "h"})


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("memory://", MemoryStore),
        ("MEMORY://", MemoryStore),
        ("sqlite:///{tmp}/a/b/events.sqlite3", SQLiteStore),
        ("redis://127.0.0.1:6399/3", RedisStore),
        ("rediss://user:secret@cache.example:6380/0", RedisStore),
    ],
)
def test_open_store_urls(url: str, kind: type, tmp_path: Path) -> None:
    store = open_store(url.format(tmp=tmp_path), retention=5)
    try:
        assert type(store) is kind
        assert store.retention == 5  # type: ignore[attr-defined]
    finally:
        store.close()
    assert not (tmp_path / "a").exists()  # nothing is created before the first write


def test_open_store_sqlite_relative_path_is_fixed_at_opening(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    store = open_store("sqlite:///logs/events.sqlite3", retention=5)
    assert isinstance(store, SQLiteStore)
    monkeypatch.chdir("/")
    store.write([make_event()])
    store.close()
    assert (tmp_path / "logs" / "events.sqlite3").is_file()


@pytest.mark.parametrize(
    "url",
    [
        "",
        "memory",
        "memory://somewhere",
        "sqlite://",
        "sqlite:///",
        "sqlite://host/events.db",
        "sqlite:///:memory:",
        "sqlite:///events.db?mode=ro",
        "redis://",
        "http://example.com/events",
        "postgres://admin:hunter2@db.example/events",
    ],
)
def test_open_store_rejects_other_urls(url: str) -> None:
    with pytest.raises(ValueError) as info:
        open_store(url, retention=10)
    message = str(info.value)
    assert "hunter2" not in message
    assert "memory://" in message or "sqlite:///" in message or "redis://" in message


@pytest.mark.parametrize("retention", [0, -1, True, 2.5])
def test_open_store_rejects_bad_retention(retention: Any) -> None:
    with pytest.raises(ValueError, match="retention"):
        open_store("memory://", retention=retention)


def test_memory_store_is_a_ring() -> None:
    store = MemoryStore(retention=3)
    events = [make_event(path=f"/{i}", time=BASE + timedelta(seconds=i)) for i in range(5)]
    store.write(events)
    assert store.search() == events[:1:-1]


# -- SQLite specifics -------------------------------------------------------------------


def test_sqlite_uses_wal_and_indexes(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "dir" / "events.sqlite3"
    store = SQLiteStore(path, retention=10)
    store.write([make_event()])
    store.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        indexes = {row[1] for row in conn.execute("PRAGMA index_list(access_cors_events)")}
        columns = [row[1] for row in conn.execute("PRAGMA table_info(access_cors_events)")]
    conn.close()
    assert {"access_cors_events_time", "access_cors_events_reason"} <= indexes
    assert columns[0] == "seq"


# The schema of the first release, before request_id.
OLD_SCHEMA = """
CREATE TABLE access_cors_events (
    seq INTEGER PRIMARY KEY, id TEXT NOT NULL, time_us INTEGER NOT NULL,
    status INTEGER NOT NULL, reason TEXT NOT NULL, message TEXT NOT NULL,
    method TEXT NOT NULL, path TEXT NOT NULL, origin TEXT, request_type TEXT NOT NULL,
    policy TEXT NOT NULL, remote_addr TEXT, identity TEXT, count INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX access_cors_events_time ON access_cors_events (time_us);
INSERT INTO access_cors_events VALUES
    (1, 'old1', 1893553445678901, 403, 'origin_not_allowed', 'm', 'GET', '/old',
     'https://evil.example', 'actual', 'app', '203.0.113.9', NULL, 3);
"""


def test_sqlite_file_of_the_old_schema_gets_the_request_id_column(tmp_path: Path) -> None:
    path = tmp_path / "events.sqlite3"
    with sqlite3.connect(path) as conn:
        conn.executescript(OLD_SCHEMA)
    conn.close()
    first, second = SQLiteStore(path), SQLiteStore(path)  # two workers opening it
    first.write([make_event(path="/new", request_id="abc")])
    second.write([make_event(path="/newer")])
    found = {e.path: e for e in second.search()}
    assert (found["/old"].request_id, found["/old"].count) == (None, 3)
    assert found["/new"].request_id == "abc" and found["/newer"].request_id is None
    for store in (first, second):
        store.close()
    with sqlite3.connect(path) as conn:
        columns = [row[1] for row in conn.execute("PRAGMA table_info(access_cors_events)")]
    conn.close()
    assert columns.count("request_id") == 1 and columns[-1] == "request_id"


def _paths_in(conn: sqlite3.Connection) -> list[str]:
    return sorted(row[0] for row in conn.execute("SELECT path FROM access_cors_events"))


@pytest.mark.parametrize("removed", [("",), ("", "-wal", "-shm")], ids=["main-file", "with-side-files"])
def test_sqlite_deleted_file_is_noticed_and_recreated(
    tmp_path: Path, removed: tuple[str, ...], caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 13, item 1, in one process: the write after a deletion goes to a new
    file, not into the deleted one, and the side files left behind are not adopted."""
    path = tmp_path / "events.sqlite3"
    store = SQLiteStore(path)
    store.write([make_event(path="/before")])
    held = sqlite3.connect(path)  # the deleted file stays readable through it
    assert _paths_in(held) == ["/before"]
    for suffix in removed:
        Path(f"{path}{suffix}").unlink()
    store.write([make_event(path="/after")])
    assert [e.path for e in store.search()] == ["/after"]
    assert _paths_in(held) == ["/before"]  # nothing went into the deleted file
    held.close()
    assert [r.getMessage() for r in warnings_of(caplog)] == [
        f"flask-access-cors: the event file {path} was deleted or replaced while in use; this "
        "process now writes to a new file at that path (events written before are not in it)"]
    store.close()
    reader = sqlite3.connect(path)  # a fresh connection: not corrupted by the old side files
    assert _paths_in(reader) == ["/after"]
    reader.close()


def test_sqlite_replaced_file_is_noticed(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Log rotation by renaming: the moved file keeps what was written to it."""
    path = tmp_path / "events.sqlite3"
    store = SQLiteStore(path)
    store.write([make_event(path="/one")])
    os.rename(path, tmp_path / "events.sqlite3.1")
    other = SQLiteStore(path)  # another worker: creates the new file at the path first
    other.write([make_event(path="/two")])
    store.write([make_event(path="/three")])
    assert sorted(e.path for e in store.search()) == ["/three", "/two"]
    assert len(warnings_of(caplog)) == 1
    for s in (store, other):
        s.close()
    rotated = sqlite3.connect(tmp_path / "events.sqlite3.1")
    assert _paths_in(rotated) == ["/one"]  # checkpointed into the moved file before letting go
    rotated.close()


def test_sqlite_checks_its_file_once_per_batch_not_per_event(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "events.sqlite3"
    store = SQLiteStore(path)
    store.write([make_event()])
    calls: list[str] = []
    real_stat = os.stat

    def counting_stat(target: Any, *args: Any, **kwargs: Any) -> os.stat_result:
        if str(target) == str(path):
            calls.append(str(target))
        return real_stat(target, *args, **kwargs)

    monkeypatch.setattr(os, "stat", counting_stat)
    store.write([make_event(path=f"/{i}") for i in range(500)])
    assert 1 <= len(calls) <= 2  # before the batch, and after it to catch a deletion meanwhile
    store.close()


def _write_many(url: str, prefix: str, n: int, barrier: Any) -> int:
    """Child process: its own store and log, n distinct denials; returns dropped."""
    log = EventLog(open_store(url, retention=100_000), batch_size=20, flush_interval=0.01)
    barrier.wait(30)
    for i in range(n):
        log.record(make_event(path=f"/{prefix}/{i}"))
        if i % 50 == 0:
            time.sleep(0.001)  # let the writers of both processes interleave
    log.close()
    return log.dropped


@fork_warning
@pytest.mark.parametrize("kind", ["sqlite", pytest.param("redis", marks=pytest.mark.slow)])
def test_two_processes_write_at_once(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if kind == "sqlite":
        url = f"sqlite:///{tmp_path}/events.sqlite3"
    else:
        url = request.getfixturevalue("redis_server").url
        flush_redis(url)
    barrier = multiprocessing.get_context("fork").Barrier(2)
    children = [start_forked(_write_many, url, name, 500, barrier) for name in ("a", "b")]
    dropped = [result_of(*child) for child in children]
    assert dropped == [0, 0]
    store = open_store(url, retention=100_000)
    try:
        found = store.search(limit=5000)
    finally:
        store.close()
    assert sorted(e.path for e in found) == sorted(
        f"/{name}/{i}" for name in ("a", "b") for i in range(500)
    )


def _record_with_inherited_log(log: EventLog, name: str) -> tuple[int, bool]:
    for i in range(50):
        log.record(make_event(path=f"/{name}/{i}"))
    flushed = log.flush(10)
    log.close()
    return log.dropped, flushed


@fork_warning
def test_forked_children_start_their_own_writer(
    tmp_path: Path, logs: Callable[..., EventLog]
) -> None:
    """gunicorn --preload: the log, its writer thread and an open rate-limit
    window exist before the fork; the children must neither lose their own
    events nor repeat the parent's."""
    store = SQLiteStore(tmp_path / "events.sqlite3", retention=1000)
    log = logs(store, clock=FakeClock())
    for _ in range(3):
        log.record(make_event(path="/parent/burst"))  # 1 written, 2 held in the open window
    assert wait_until(lambda: len(store.search()) == 1)  # the writer thread is running
    children = [start_forked(_record_with_inherited_log, log, name) for name in ("c1", "c2")]
    assert [result_of(*child) for child in children] == [(0, True), (0, True)]
    log.record(make_event(path="/parent/after"))
    found = log.search(limit=1000)
    assert sorted(e.path for e in found if not e.path.startswith("/parent")) == sorted(
        f"/{n}/{i}" for n in ("c1", "c2") for i in range(50)
    )
    assert sorted(e.count for e in found if e.path == "/parent/burst") == [1, 2]
    assert [e.count for e in found if e.path == "/parent/after"] == [1]
    assert log.dropped == 0


def test_sqlite_locked_database_fails_fast_and_resumes(
    tmp_path: Path, logs: Callable[..., EventLog], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    path = tmp_path / "events.sqlite3"
    store = SQLiteStore(path, retention=1000)
    log = logs(store, window=0, flush_interval=0.05, quiet_period=0)
    log.record(make_event(path="/ok/0"))
    assert log.flush(5) and log.dropped == 0

    locker = sqlite3.connect(path, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    try:
        started = time.perf_counter()
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            store.write([make_event(path="/direct")])
        assert time.perf_counter() - started < 1.0

        started = time.perf_counter()
        for i in range(5):
            log.record(make_event(path=f"/locked/{i}"))
        assert time.perf_counter() - started < 0.05  # record() does not wait for the lock
        assert log.flush(5)
        assert time.perf_counter() - started < 1.0
        assert log.dropped == 5
        for i in range(5):
            log.record(make_event(path=f"/still-locked/{i}"))
        assert log.flush(5) and log.dropped == 10
        assert len(warnings_of(caplog)) == 1
        assert "SQLiteStore" in warnings_of(caplog)[0].getMessage()
    finally:
        locker.execute("ROLLBACK")
        locker.close()

    for i in range(3):
        log.record(make_event(path=f"/unlocked/{i}"))
    written = log.search(limit=100)
    assert sorted(e.path for e in written) == ["/ok/0", "/unlocked/0", "/unlocked/1", "/unlocked/2"]
    assert total(written) + log.dropped == 1 + 5 + 5 + 3
    assert len(warnings_of(caplog)) == 1
    assert any("works again" in r.getMessage() for r in caplog.records
               if r.name == LOGGER and r.levelno == logging.INFO)


class _WarningCounter(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1


def _read_only_scenario(directory: str, kind: str) -> dict[str, Any]:
    """Runs in an unprivileged child: root would ignore the permission bits."""
    root = Path(directory)
    if kind == "file":
        path = root / "events.sqlite3"
        setup = SQLiteStore(path, retention=100)
        setup.write([make_event(path="/setup")])
        setup.close()
        locked: list[tuple[Path, int, int]] = [(path, 0o444, 0o644), (root, 0o555, 0o755)]
    else:
        path = root / "sub" / "events.sqlite3"
        (root / "sub").mkdir()
        locked = [(root / "sub", 0o555, 0o755)]
    for target, mode, _ in locked:
        target.chmod(mode)
    counter = _WarningCounter()
    logging.getLogger(LOGGER).addHandler(counter)
    log = EventLog(SQLiteStore(path, retention=100), window=0, flush_interval=0.05)
    started = time.perf_counter()
    for i in range(5):
        log.record(make_event(path=f"/ro/{i}"))
    recorded_in = time.perf_counter() - started
    flushed = log.flush(5)
    failed_in = time.perf_counter() - started
    dropped_while_read_only = log.dropped
    for target, _, mode in locked:
        target.chmod(mode)
    for i in range(3):
        log.record(make_event(path=f"/rw/{i}"))
    found = log.search(limit=100)
    log.close()
    return {
        "euid": os.geteuid(),
        "recorded_in": recorded_in,
        "flushed": flushed,
        "failed_in": failed_in,
        "dropped_while_read_only": dropped_while_read_only,
        "dropped": log.dropped,
        "warnings": counter.count,
        "paths": sorted(event.path for event in found),
    }


@fork_warning
@pytest.mark.parametrize("kind", ["file", "directory"])
def test_sqlite_read_only_location_fails_fast_and_resumes(kind: str) -> None:
    directory = tempfile.mkdtemp(prefix="fac-readonly-")
    try:
        if os.geteuid() == 0:
            os.chown(directory, NOBODY, NOBODY)
        outcome = result_of(*start_forked(_read_only_scenario, directory, kind, unprivileged=True))
    finally:
        shutil.rmtree(directory)
    assert outcome["euid"] != 0
    assert outcome["recorded_in"] < 0.05
    assert outcome["flushed"] and outcome["failed_in"] < 1.0
    assert outcome["dropped_while_read_only"] == 5 == outcome["dropped"]
    assert outcome["warnings"] == 1
    setup = ["/setup"] if kind == "file" else []
    assert outcome["paths"] == sorted([*setup, "/rw/0", "/rw/1", "/rw/2"])


# -- Redis specifics --------------------------------------------------------------------


@pytest.mark.slow
def test_redis_store_survives_a_server_restart(
    tmp_path: Path, logs: Callable[..., EventLog], caplog: pytest.LogCaptureFixture
) -> None:
    import redis

    caplog.set_level(logging.INFO, logger=LOGGER)
    server = RedisServer(require_redis_server(), tmp_path)
    server.start()
    try:
        store = RedisStore(server.url, retention=1000)
        log = logs(store, window=0, flush_interval=0.05)
        for i in range(10):
            log.record(make_event(path=f"/before/{i}"))
        assert len(log.search(limit=100)) == 10

        server.stop()
        started = time.perf_counter()
        with pytest.raises(redis.ConnectionError):
            store.write([make_event(path="/direct")])
        assert time.perf_counter() - started < 1.0

        slowest = 0.0
        for i in range(200):
            started = time.perf_counter()
            log.record(make_event(path=f"/down/{i}"))
            slowest = max(slowest, time.perf_counter() - started)
            if i % 50 == 0:
                time.sleep(0.02)  # let the writer try (and fail) several batches
        assert slowest < 0.05
        assert log.flush(10)
        assert log.dropped == 200
        assert len(warnings_of(caplog)) == 1

        server.start()  # same port, empty (no persistence)
        for i in range(10):
            log.record(make_event(path=f"/after/{i}"))
        found = log.search(limit=100)
        assert sorted(e.path for e in found) == sorted(f"/after/{i}" for i in range(10))
        assert log.dropped == 200
        assert len(warnings_of(caplog)) == 1
    finally:
        server.stop()


@pytest.mark.slow
def test_redis_store_reconnects_after_an_idle_restart(tmp_path: Path) -> None:
    """The pooled connection is stale after a restart; the first write still succeeds."""
    server = RedisServer(require_redis_server(), tmp_path)
    server.start()
    try:
        store = RedisStore(server.url, retention=100)
        store.write([make_event(path="/one")])
        server.stop()
        server.start()
        store.write([make_event(path="/two")])
        assert [e.path for e in store.search()] == ["/two"]
        store.close()
    finally:
        server.stop()


@pytest.mark.slow
def test_redis_read_only_replica_fails_fast_and_resumes(
    redis_server: RedisServer, logs: Callable[..., EventLog], caplog: pytest.LogCaptureFixture
) -> None:
    import redis

    flush_redis(redis_server.url)
    admin = redis.Redis.from_url(redis_server.url)
    store = RedisStore(redis_server.url, retention=1000)
    log = logs(store, window=0, flush_interval=0.05)
    admin.execute_command("REPLICAOF", "127.0.0.1", str(free_port()))  # a master that never answers
    try:
        started = time.perf_counter()
        for i in range(5):
            log.record(make_event(path=f"/ro/{i}"))
        assert log.flush(5) and time.perf_counter() - started < 1.0
        assert log.dropped == 5
        assert len(warnings_of(caplog)) == 1
        assert "READONLY" in warnings_of(caplog)[0].getMessage().upper()
    finally:
        admin.execute_command("REPLICAOF", "NO", "ONE")
        admin.close()
    for i in range(3):
        log.record(make_event(path=f"/rw/{i}"))
    assert sorted(e.path for e in log.search()) == ["/rw/0", "/rw/1", "/rw/2"]


@pytest.mark.slow
def test_redis_write_that_times_out_is_of_unknown_outcome_and_safe_to_repeat(
    tmp_path: Path,
) -> None:
    """A reply that times out after the transaction was sent: Redis runs it when it
    wakes up, so the store must not say "not written"; writing it again stores it once."""
    server = RedisServer(require_redis_server(), tmp_path, debug_command=True)
    server.start()
    try:
        store = RedisStore(server.url, timeout=0.3)
        store.write([make_event(path="/warm")])  # a pooled, connected connection
        hang = threading.Thread(target=server.hang, args=(1,))
        hang.start()
        time.sleep(0.1)
        batch = [make_event(path=f"/late/{i}") for i in range(5)]
        with pytest.raises(WriteOutcomeUnknown):
            store.write(batch)
        hang.join(10)
        assert wait_until(lambda: len(store.search()) == 6)  # it did run
        store.write(batch)  # the retry the log makes
        found = store.search(limit=100)
        assert sorted(e.path for e in found) == ["/late/0", "/late/1", "/late/2", "/late/3",
                                                 "/late/4", "/warm"]
        store.close()
    finally:
        server.stop()


@pytest.mark.slow
def test_redis_store_times_out_on_a_silent_server() -> None:
    """A server that accepts connections but never answers (a hung host)."""
    import socket

    import redis

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        port = listener.getsockname()[1]
        store = RedisStore(f"redis://127.0.0.1:{port}/0", retention=10)
        started = time.perf_counter()
        with pytest.raises(redis.TimeoutError):
            store.write([make_event()])
        assert time.perf_counter() - started < 2.0
        store.close()


# -- EventLog: rate limiting ------------------------------------------------------------


def test_identical_burst_is_written_once_plus_a_summary(logs: Callable[..., EventLog]) -> None:
    store, clock = FakeStore(), FakeClock()
    log = logs(store, clock=clock)
    first = make_event(request_type="preflight", method="OPTIONS")
    log.record(first)
    for _ in range(999):
        log.record(make_event(request_type="preflight", method="OPTIONS"))
    assert log.flush(5)
    written = store.events
    assert [e.count for e in written] == [1, 999]
    assert written[0] == first
    assert written[1].message == f"999 similar events suppressed: {first.message}"
    assert written[1].id != first.id and written[1].reason == first.reason
    assert total(written) + log.dropped == 1000 and log.dropped == 0


@pytest.mark.parametrize(
    ("change", "merged"),
    [
        ({"reason": "header_not_allowed"}, False),
        ({"method": "POST"}, False),
        ({"path": "/api/other"}, False),
        ({"origin": "https://other.example"}, False),
        ({"origin": None}, False),
        ({"status": 401}, True),  # not part of the key
        ({"remote_addr": "198.51.100.1"}, True),
        ({"detail": "something else"}, True),
    ],
)
def test_limiter_key_is_reason_method_path_origin(
    logs: Callable[..., EventLog], change: dict[str, Any], merged: bool
) -> None:
    store, clock = FakeStore(), FakeClock()
    log = logs(store, clock=clock)
    for _ in range(10):
        log.record(make_event())
        log.record(make_event(**change))
    assert log.flush(5)
    counts = sorted(e.count for e in store.events)
    assert counts == ([1, 19] if merged else [1, 1, 9, 9])


def test_window_is_closed_by_the_next_record_after_it(logs: Callable[..., EventLog]) -> None:
    store, clock = FakeStore(), FakeClock()
    log = logs(store, clock=clock, window=1.0)
    for offset in (0.0, 0.5, 0.999):
        clock.now = 1000.0 + offset
        log.record(make_event())
    clock.now = 1001.0
    log.record(make_event(path="/api/items"))
    # No flush: the window was closed by that record().
    assert wait_until(lambda: [e.count for e in store.events] == [1, 2, 1])
    assert store.events[1].message.startswith("2 similar events suppressed: ")
    assert log.flush(5)
    assert [e.count for e in store.events] == [1, 2, 1]  # the new window swallowed nothing


def test_window_is_closed_by_the_writer_tick(logs: Callable[..., EventLog]) -> None:
    store, clock = FakeStore(), FakeClock()
    log = logs(store, clock=clock, window=1.0, flush_interval=0.01)
    for _ in range(4):
        log.record(make_event())
    time.sleep(0.1)
    assert [e.count for e in store.events] == [1]  # window still open
    clock.now += 1.5
    assert wait_until(lambda: [e.count for e in store.events] == [1, 3])


def test_limiter_memory_is_bounded(logs: Callable[..., EventLog]) -> None:
    store, clock = FakeStore(), FakeClock()
    log = logs(store, clock=clock, max_keys=3)
    for key in ("a", "b", "c"):
        log.record(make_event(path=f"/{key}"))
        log.record(make_event(path=f"/{key}"))
    log.record(make_event(path="/d"))  # a fourth key: the oldest window (a) closes early
    def summarised() -> list[str]:
        return sorted(e.path for e in store.events if e.message.startswith("1 similar"))

    assert wait_until(lambda: summarised() == ["/a"])
    time.sleep(0.05)
    assert summarised() == ["/a"]
    for i in range(5000):
        log.record(make_event(path=f"/many/{i}"))
    assert len(log._limiter._open) <= 3
    assert log.flush(5)
    assert summarised() == ["/a", "/b", "/c"]
    assert total(store.events) == 7 + 5000


def test_window_zero_turns_the_limiter_off(logs: Callable[..., EventLog]) -> None:
    store = FakeStore()
    log = logs(store, window=0)
    for _ in range(10):
        log.record(make_event())
    assert log.flush(5)
    assert [e.count for e in store.events] == [1] * 10


# -- EventLog: accounting, back-pressure, failures --------------------------------------


@pytest.mark.parametrize("scenario", ["healthy", "flaky store", "tiny queue"])
def test_accounting_holds_under_concurrent_threads(
    logs: Callable[..., EventLog], scenario: str
) -> None:
    store = FakeStore()
    options: dict[str, Any] = {"window": 0.002, "batch_size": 50, "queue_size": 1_000_000}
    if scenario == "flaky store":
        store.fail_every = 3
    elif scenario == "tiny queue":
        store.delay = 0.002
        options["queue_size"] = 5
    log = logs(store, **options)
    threads_n, per_thread = 8, 1500
    barrier = threading.Barrier(threads_n)

    def hammer(worker: int) -> None:
        barrier.wait()
        for i in range(per_thread):
            # Bursts on a few shared keys (folded) and distinct keys (not folded).
            path = f"/shared/{i % 7}" if i % 2 else f"/w{worker}/{i}"
            log.record(make_event(path=path))

    threads = [threading.Thread(target=hammer, args=(n,)) for n in range(threads_n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert log.flush(30)
    assert total(store.events) + log.dropped == threads_n * per_thread
    if scenario == "healthy":
        assert log.dropped == 0
        assert any(e.count > 1 for e in store.events)  # the limiter took part
    else:
        assert log.dropped > 0


def test_queue_overflow_is_counted_exactly(logs: Callable[..., EventLog]) -> None:
    store = FakeStore()
    store.gate = threading.Event()
    log = logs(store, window=0, queue_size=10)
    log.record(make_event(path="/first"))
    assert store.entered.wait(5)  # the writer holds /first and is stuck in write()
    started = time.perf_counter()
    for i in range(100):
        log.record(make_event(path=f"/flood/{i}"))
    assert time.perf_counter() - started < 0.05
    assert log.dropped == 90
    store.gate.set()
    assert log.flush(5)
    assert [e.path for e in store.events] == ["/first"] + [f"/flood/{i}" for i in range(10)]
    assert total(store.events) + log.dropped == 101


def test_record_stays_fast_while_the_store_is_slow(logs: Callable[..., EventLog]) -> None:
    store = FakeStore()
    store.delay = 0.2
    log = logs(store, window=0)
    slowest, started = 0.0, time.perf_counter()
    for i in range(2000):
        before = time.perf_counter()
        log.record(make_event(path=f"/slow/{i}"))
        slowest = max(slowest, time.perf_counter() - before)
    assert time.perf_counter() - started < 1.0
    assert slowest < 0.05
    assert store.writes <= 1  # the writes really were slow and still pending
    assert log.flush(20)
    assert total(store.events) == 2000 and log.dropped == 0


def test_one_warning_per_outage(
    logs: Callable[..., EventLog], caplog: pytest.LogCaptureFixture
) -> None:
    """A WARNING when writes start failing, an INFO once they have succeeded for a
    quiet period; a failure inside that period belongs to the same outage."""
    caplog.set_level(logging.INFO, logger=LOGGER)
    store, clock = FakeStore(), FakeClock()
    log = logs(store, window=0, clock=clock, quiet_period=10)

    def recoveries() -> list[str]:
        return [r.getMessage() for r in caplog.records
                if r.name == LOGGER and r.levelno == logging.INFO and "works again" in r.getMessage()]

    store.broken = True
    for i in range(3):
        assert log.record(make_event(path=f"/a/{i}")) is None
        assert log.flush(5)
    assert log.dropped == 3 and len(warnings_of(caplog)) == 1
    assert "OSError: store unavailable" in warnings_of(caplog)[0].getMessage()
    store.broken = False
    log.record(make_event(path="/b"))
    assert log.flush(5) and [e.path for e in store.events] == ["/b"]
    clock.now += 5  # flapping: it fails again within the quiet period
    store.broken = True
    log.record(make_event(path="/c"))
    assert log.flush(5)
    store.broken = False
    log.record(make_event(path="/d"))
    assert log.flush(5)
    assert log.dropped == 4 and len(warnings_of(caplog)) == 1 and recoveries() == []
    clock.now += 10  # quiet for the whole period: the writer's tick says so
    assert wait_until(lambda: len(recoveries()) == 1)
    assert "4 failed writes, 4 events dropped" in recoveries()[0]
    store.broken = True  # a new outage
    log.record(make_event(path="/e"))
    assert log.flush(5)
    assert log.dropped == 5 and len(warnings_of(caplog)) == 2


def test_a_flapping_store_logs_one_warning_and_counts_exactly(
    logs: Callable[..., EventLog], caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 13, item 3: one batch in three fails for 600 batches (the old code
    logged a WARNING after every success); closing after a success ends the outage."""
    caplog.set_level(logging.INFO, logger=LOGGER)
    store = FakeStore()
    store.fail_every = 3
    log = logs(store, window=0)
    for i in range(600):
        log.record(make_event(path=f"/flap/{i}"))
        assert log.flush(5)
    store.fail_every = 0
    log.record(make_event(path="/fine"))
    log.close()
    assert len(warnings_of(caplog)) == 1
    assert total(store.events) + log.dropped == 601
    assert log.dropped == 200
    infos = [r for r in caplog.records
             if r.name == LOGGER and r.levelno == logging.INFO and "works again" in r.getMessage()]
    assert len(infos) == 1 and "200 failed writes, 200 events dropped" in infos[0].getMessage()


class UnsureStore(FakeStore):
    """Applies some writes and then reports their outcome as unknown, like a Redis
    reply that timed out after the server ran the command; a write of the same
    events again is harmless (kept once, by id)."""

    def __init__(self) -> None:
        super().__init__()
        self.unsure = 0  # how many next writes apply, then raise WriteOutcomeUnknown
        self.unsure_unapplied = 0  # how many next writes raise it without applying

    def write(self, events: Sequence[Event]) -> None:
        with self._lock:
            self.writes += 1
            known = {e.id for batch in self.batches for e in batch}
            fresh = [e for e in events if e.id not in known]
            if self.unsure_unapplied:
                self.unsure_unapplied -= 1
                raise WriteOutcomeUnknown("timed out before it ran")
            if fresh:
                self.batches.append(fresh)
            if self.unsure:
                self.unsure -= 1
                raise WriteOutcomeUnknown("timed out after it ran")


@pytest.mark.parametrize("applied", [True, False], ids=["applied", "not-applied"])
def test_write_of_unknown_outcome_is_retried_and_counted_once(
    logs: Callable[..., EventLog], caplog: pytest.LogCaptureFixture, applied: bool
) -> None:
    """Issue 13, item 2: the old code counted such a batch as dropped, and the store had it."""
    store = UnsureStore()
    if applied:
        store.unsure = 3
    else:
        store.unsure_unapplied = 3
    log = logs(store, window=0, flush_interval=0.02)
    for i in range(20):
        log.record(make_event(path=f"/u/{i}"))
    assert log.flush(5)
    assert log.dropped == 0 and total(store.events) == 20
    assert sorted(e.path for e in store.events) == sorted(f"/u/{i}" for i in range(20))
    assert store.writes > 3 and len(warnings_of(caplog)) == 1


def test_unknown_outcome_left_at_close_is_counted_dropped_and_said(
    logs: Callable[..., EventLog], caplog: pytest.LogCaptureFixture
) -> None:
    store = UnsureStore()
    store.unsure_unapplied = 10**6  # the store never answers again
    log = logs(store, window=0, flush_interval=0.02)
    for i in range(4):
        log.record(make_event(path=f"/lost/{i}"))
    assert not log.flush(0.3)  # not settled: neither written nor dropped yet
    assert log.dropped == 0
    log.close(timeout=0.3)
    assert log.dropped == 4 and total(store.events) == 0
    assert "4 debug events whose write to UnsureStore timed out" in warnings_of(caplog)[-1].getMessage()


def test_backlog_of_unknown_outcomes_is_bounded(logs: Callable[..., EventLog]) -> None:
    """While writes of unknown outcome fill a queue's worth, the writer leaves the
    queue alone, so record() counts the overflow instead of memory growing."""
    store = UnsureStore()
    store.unsure_unapplied = 10**6
    log = logs(store, window=0, queue_size=10, batch_size=5, flush_interval=0.02)
    for i in range(10):
        log.record(make_event(path=f"/a/{i}"))
    assert wait_until(lambda: log._unknown_events >= 10)
    for i in range(30):
        log.record(make_event(path=f"/b/{i}"))
    assert log.dropped == 20  # ten more fit in the queue
    store.unsure_unapplied = 0
    assert log.flush(5)
    assert total(store.events) + log.dropped == 40


def test_heartbeats_say_what_each_process_did(logs: Callable[..., EventLog]) -> None:
    store, clock = MemoryStore(retention=100), FakeClock()
    log = logs(store, clock=clock, queue_size=3)
    assert log.workers() == []  # nothing recorded, nothing written
    for _ in range(4):
        log.record(make_event(path="/same"))  # one written, three folded into a window
    assert log.flush(5)
    [status] = log.workers()
    assert (status.pid, status.host) == (os.getpid(), socket.gethostname())
    assert (status.recorded, status.written, status.dropped, status.pending) == (4, 4, 0, 0)
    assert not status.closed and status.flushes >= 1
    assert status.last_flush >= status.started
    log.close()
    [closed] = store.workers()
    assert closed.closed and closed.pending == 0 and closed.flushes == status.flushes


def test_heartbeat_shows_what_a_process_had_pending(logs: Callable[..., EventLog]) -> None:
    """What a process killed now would lose: the repeats held in its open window."""
    store, clock = MemoryStore(retention=100), FakeClock()
    log = logs(store, clock=clock)
    for _ in range(5):
        log.record(make_event(path="/burst"))  # the first is queued, four are held
    assert wait_until(lambda: len(store.search()) == 1)
    [status] = store.workers()
    assert (status.recorded, status.written, status.pending) == (5, 1, 4)


def test_a_store_without_heartbeats_still_works(logs: Callable[..., EventLog]) -> None:
    store = FakeStore()
    log = logs(store)
    log.record(make_event())
    assert log.workers() == [] and log.flush(5) and total(store.events) == 1


def test_flush_and_close_are_idempotent(logs: Callable[..., EventLog]) -> None:
    store, clock = FakeStore(), FakeClock()
    log = logs(store, clock=clock)
    assert log.flush(1)  # nothing recorded yet
    for _ in range(3):
        log.record(make_event())
    log.close()  # closes the open window and writes it
    assert [e.count for e in store.events] == [1, 2]
    log.close()
    assert store.closes == 1
    assert log.flush(1) and log.flush(1)
    log.record(make_event())  # after close: counted, never written
    assert log.dropped == 1 and total(store.events) == 3


def test_search_sees_own_events_and_validates(logs: Callable[..., EventLog]) -> None:
    log = logs(MemoryStore(retention=100))
    old = make_event(path="/old", time=datetime.now(timezone.utc) - timedelta(hours=1))
    log.record(old)
    for _ in range(3):
        log.record(make_event(path="/new"))
    found = log.search()  # no explicit flush
    assert [(e.path, e.count) for e in found] == [("/new", 2), ("/new", 1), ("/old", 1)]
    assert [e.path for e in log.search(since=timedelta(minutes=5))] == ["/new", "/new"]
    assert log.search(since=old.time) == found
    assert log.search(reason="token_missing") == []
    for bad in (
        {"limit": 0},
        {"limit": -1},
        {"limit": True},
        {"limit": "10"},
        {"since": datetime(2030, 1, 1)},
        {"since": timedelta(minutes=-1)},
        {"since": "10m"},
        {"reason": "origin_not_alowed"},
        {"status": "403"},
        {"path": 5},
    ):
        with pytest.raises(ValueError):
            log.search(**bad)


def test_clear_removes_pending_events_too(logs: Callable[..., EventLog]) -> None:
    log = logs(MemoryStore(retention=100))
    for _ in range(5):
        log.record(make_event())
    log.clear()
    assert log.search() == []
    assert log.dropped == 0


def test_a_store_failure_never_reaches_the_caller(logs: Callable[..., EventLog]) -> None:
    class Exploding(FakeStore):
        def write(self, events: Sequence[Event]) -> None:
            raise RuntimeError("boom")

    log = logs(Exploding())
    log.record(make_event())
    assert log.flush(5) and log.dropped == 1


EXIT_SCRIPT = """
import sys
from flask_access_cors.events import EventLog, Event, SQLiteStore
log = EventLog(SQLiteStore(sys.argv[1], retention=1000))
def event(path):
    return Event.create(status=403, reason="origin_not_allowed", request_type="actual",
                        policy="app", method="GET", path=path, origin="https://evil.example",
                        remote_addr="127.0.0.1", detail="https://evil.example")
for i in range(50):
    log.record(event(f"/exit/{i}"))
for i in range(30):
    log.record(event("/burst"))
# no flush, no close: the process just ends
"""


def test_process_exit_flushes(tmp_path: Path) -> None:
    path = tmp_path / "events.sqlite3"
    subprocess.run([sys.executable, "-c", EXIT_SCRIPT, str(path)], check=True, timeout=60)
    store = SQLiteStore(path, retention=1000)
    found = store.search(limit=1000)
    store.close()
    assert total(found) == 80
    assert sorted(e.count for e in found if e.path == "/burst") == [1, 29]


def test_path_glob_is_linear_on_hostile_stored_paths() -> None:
    """Stored paths are attacker-controlled: a many-star glob must not backtrack."""
    store = MemoryStore(retention=100)
    hostile = [Event.create(status=403, reason="origin_not_allowed", request_type="actual",
                            policy="app", method="GET", path="/api/" + "/" * 400 + str(i),
                            origin=None, remote_addr=None) for i in range(50)]
    store.write(hostile)
    started = time.perf_counter()
    found = store.search(reason=None, status=None, path="/api/*/*/*/export", origin=None,
                         since=None, limit=100)
    assert found == []
    assert time.perf_counter() - started < 0.5
    assert len(store.search(reason=None, status=None, path="/api/*/*1", origin=None, since=None,
                            limit=100)) == 5
