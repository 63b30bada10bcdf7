"""The event log under a real WSGI server: gunicorn with four worker processes.

Denials are made concurrently from several client threads; afterwards the
counts written (suppressed repeats included) plus what each worker reported
as dropped must equal the denials made, and a separate process (the CLI) must
read them all.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.redis_server import RedisServer, free_port, require_redis_server

pytestmark = pytest.mark.slow

APP = "https://app.example.com"

APP_MODULE = textwrap.dedent("""
    import atexit, os
    from flask import Flask
    from flask_access_cors import AccessCors

    app = Flask(__name__)
    access = AccessCors(app, origins=["https://app.example.com"], debug=True,
                        event_store=os.environ["EVENT_STORE"])

    @app.route("/items", methods=["GET", "POST"])
    def items():
        return "items"

    def report():
        # close first (it flushes), then say what this worker could not write
        access.events.close()
        with open(os.environ["DROPPED_FILE"], "a") as out:
            out.write(f"{os.getpid()} {access.events.dropped}\\n")

    atexit.register(report)
""")


@contextmanager
def gunicorn(tmp_path: Path, store: str, workers: int = 4, *, source: str = APP_MODULE,
             env: dict[str, str] | None = None) -> Iterator[int]:
    """``source`` (an app module with ``/items``) under gunicorn with ``workers`` workers."""
    (tmp_path / "mpapp.py").write_text(source)
    port = free_port()
    env = {**os.environ, "EVENT_STORE": store, "DROPPED_FILE": str(tmp_path / "dropped.txt"),
           "PYTHONPATH": str(tmp_path), **(env or {})}
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-w", str(workers), "-b", f"127.0.0.1:{port}",
         "--graceful-timeout", "20", "mpapp:app"],
        cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if request(port, "/items", None) == 200:
                    break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(process.stderr.read().decode() if process.stderr else "")
            time.sleep(0.1)
        yield port
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(60)


def request(port: int, path: str, origin: str | None) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("POST", path, body=b"x=1",
                     headers={"Origin": origin} if origin else {})
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def deny_many(port: int, origins: list[str], threads: int = 16) -> None:
    with ThreadPoolExecutor(threads) as pool:
        statuses = list(pool.map(lambda o: request(port, "/items", o), origins))
    assert statuses == [403] * len(origins)  # every denial really was one


def hostile_origins(count: int, distinct: int, tag: str) -> list[str]:
    return [f"https://{tag}{i % distinct}.evil.example" for i in range(count)]


def dropped_total(tmp_path: Path, workers: int = 4) -> int:
    lines = (tmp_path / "dropped.txt").read_text().split("\n")
    counts = [int(line.split()[1]) for line in lines if line]
    assert len(counts) == workers  # every worker reported
    return sum(counts)


def read_with_cli(tmp_path: Path, store: str) -> list[dict[str, object]]:
    env = {**os.environ, "EVENT_STORE": store, "DROPPED_FILE": os.devnull,
           "FLASK_APP": "mpapp", "PYTHONPATH": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-m", "flask", "access-cors", "events", "--json", "--limit", "100000"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_sqlite_accounting_across_four_workers(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'events.sqlite3'}"
    origins = hostile_origins(1200, distinct=40, tag="a")
    with gunicorn(tmp_path, store) as port:
        deny_many(port, origins)
    events = read_with_cli(tmp_path, store)
    written = sum(int(e["count"]) for e in events)  # type: ignore[call-overload]
    assert written + dropped_total(tmp_path) == len(origins)
    assert {e["origin"] for e in events} == set(origins)
    assert any(int(e["count"]) > 1 for e in events)  # type: ignore[call-overload]


def test_redis_accounting_with_the_server_stopped_mid_run(tmp_path: Path) -> None:
    binary = require_redis_server()
    server = RedisServer(binary, tmp_path)
    server.start()
    try:
        before, during, after = (hostile_origins(300, 10, tag) for tag in ("b", "c", "d"))
        with gunicorn(tmp_path, server.url) as port:
            deny_many(port, before)
            time.sleep(2.0)  # let the rate-limit windows close and the writers flush
            # this redis-server keeps nothing on disk: count what phase one wrote now
            written_before = sum(int(e["count"]) for e in read_with_cli(tmp_path, server.url))  # type: ignore[call-overload]
            server.stop()
            started = time.monotonic()
            deny_many(port, during)
            assert time.monotonic() - started < 20  # served while the store is down
            server.start()
            time.sleep(1.5)
            deny_many(port, after)
        events = read_with_cli(tmp_path, server.url)
    finally:
        server.stop()
    written = sum(int(e["count"]) for e in events)  # type: ignore[call-overload]
    dropped = dropped_total(tmp_path)
    assert written_before + written + dropped == 900
    assert dropped > 0  # the outage was counted, not hidden
    assert set(after) <= {e["origin"] for e in events}  # writing resumed after the restart
