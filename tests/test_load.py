"""Bounded load under gunicorn (4 workers): every decision checked, every denial accounted for.

64 client threads for ``LOAD_SECONDS`` (default 30) mix allowed, denied,
preflight and gated requests on loopback. Afterwards: zero 5xx, zero wrong
decisions, and the event log's counts plus what each worker dropped equal the
denials made. Throughput and p99 latency are printed (run with ``-s``) and
written to ``$LOAD_REPORT`` when set.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from pathlib import Path

import jwt
import pytest

from tests.redis_server import free_port

pytestmark = pytest.mark.slow

SPA = "https://app.example.com"
SECRET = "load-test-secret-" + "x" * 32
SECONDS = float(os.environ.get("LOAD_SECONDS", "30"))
CLIENTS = 64

APP_MODULE = textwrap.dedent(f"""
    import atexit, os
    from flask import Flask
    from flask_access_cors import AccessCors

    app = Flask(__name__)
    access = AccessCors(app, origins=["{SPA}"], credentials=True, debug=True,
                        allow_headers=["X-Custom", "Content-Type"], jwt_secret="{SECRET}",
                        event_store=os.environ["EVENT_STORE"])

    @app.route("/api/items", methods=["GET", "PUT"])
    def items():
        return "items"

    @app.get("/api/private")
    @access.cors(gate=True)
    def private():
        return access.identity.subject

    def report():
        access.events.close()
        with open(os.environ["DROPPED_FILE"], "a") as out:
            out.write(f"{{os.getpid()}} {{access.events.dropped}}\\n")

    atexit.register(report)
""")


def token() -> str:
    now = int(time.time())
    return jwt.encode({"sub": "load", "iat": now, "exp": now + 3600}, SECRET, algorithm="HS256")


# (name, method, path, headers, expected status, ACAO expected)
def cases(valid: str) -> list[tuple[str, str, str, dict[str, str], int, str | None]]:
    return [
        ("allowed", "GET", "/api/items", {"Origin": SPA}, 200, SPA),
        ("denied_origin", "GET", "/api/items", {"Origin": "https://evil.example"}, 403, None),
        ("preflight", "OPTIONS", "/api/items", {"Origin": SPA, "Access-Control-Request-Method":
                                                "PUT", "Access-Control-Request-Headers":
                                                "x-custom"}, 204, SPA),
        ("preflight_denied", "OPTIONS", "/api/items", {
            "Origin": SPA, "Access-Control-Request-Method": "PUT",
            "Access-Control-Request-Headers": "x-other"}, 403, None),
        ("gated_ok", "GET", "/api/private", {"Origin": SPA, "Cf-Access-Jwt-Assertion": valid},
         200, SPA),
        ("gated_missing", "GET", "/api/private", {"Origin": SPA}, 401, SPA),
    ]


def test_load_under_gunicorn(tmp_path: Path) -> None:
    (tmp_path / "loadapp.py").write_text(APP_MODULE)
    store = f"sqlite:///{tmp_path / 'events.sqlite3'}"
    port = free_port()
    env = {**os.environ, "EVENT_STORE": store, "DROPPED_FILE": str(tmp_path / "dropped.txt"),
           "PYTHONPATH": str(tmp_path)}
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-w", "4", "-b", f"127.0.0.1:{port}",
         "--backlog", "256", "loadapp:app"],
        cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    table = cases(token())
    latencies: list[float] = []
    outcomes: Counter[str] = Counter()
    wrong: list[str] = []
    lock = threading.Lock()
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                conn.request("GET", "/api/items")
                conn.getresponse().read()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        stop_at = time.monotonic() + SECONDS

        def client(seed: int) -> None:
            rng = random.Random(seed)
            mine: list[float] = []
            counts: Counter[str] = Counter()
            errors: list[str] = []
            while time.monotonic() < stop_at:
                name, method, path, headers, status, acao = rng.choice(table)
                started = time.perf_counter()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                try:
                    conn.request(method, path, headers=headers)
                    response = conn.getresponse()
                    response.read()
                finally:
                    conn.close()
                mine.append(time.perf_counter() - started)
                counts[name] += 1
                got = (response.status, response.getheader("Access-Control-Allow-Origin"))
                if got != (status, acao):
                    errors.append(f"{name}: {got} != {(status, acao)}")
            with lock:
                latencies.extend(mine)
                outcomes.update(counts)
                wrong.extend(errors)

        threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
        began = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.monotonic() - began
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(60)

    assert wrong == []  # zero wrong decisions, zero 5xx
    denials = outcomes["denied_origin"] + outcomes["preflight_denied"] + outcomes["gated_missing"]
    dropped = sum(int(line.split()[1]) for line in
                  (tmp_path / "dropped.txt").read_text().splitlines())
    with sqlite3.connect(tmp_path / "events.sqlite3") as db:
        written = db.execute("SELECT COALESCE(SUM(count), 0) FROM access_cors_events").fetchone()[0]
    assert written + dropped == denials
    latencies.sort()
    total = sum(outcomes.values())
    report = {
        "seconds": round(elapsed, 1), "clients": CLIENTS, "workers": 4, "requests": total,
        "throughput_rps": round(total / elapsed, 1),
        "p50_ms": round(latencies[len(latencies) // 2] * 1000, 2),
        "p99_ms": round(latencies[int(len(latencies) * 0.99)] * 1000, 2),
        "denials": denials, "events_written_count": written, "dropped": dropped,
        "by_case": dict(outcomes),
    }
    print("\nload:", json.dumps(report))
    if os.environ.get("LOAD_REPORT"):
        Path(os.environ["LOAD_REPORT"]).write_text(json.dumps(report, indent=2))
