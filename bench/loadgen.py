"""One run over HTTP: gunicorn on loopback and a small threaded load generator.

Each app (bare Flask, flask-cors, flask-access-cors) is served by its own
gunicorn (``-w 2``, sync workers by default); all three are started first, then
measured in turn on each route, so they share the same conditions. The load
generator is plain Python: threads, each with one ``http.client`` connection
(kept alive when the server allows it; gunicorn's sync workers close the
connection after every response, so the client reconnects). It competes with
the workers for the same two cores, so these numbers show the end-to-end
picture, not the extension's own cost.
"""

from __future__ import annotations

import http.client
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from .apps import ORIGIN
from .wsgi import ROOT

__all__ = ["HTTPResult", "find_gunicorn", "run_http"]

VARIANTS = (("bare", "bare Flask"), ("flask_cors", "flask-cors"), ("access_cors", "flask-access-cors"))
ROUTES: tuple[tuple[str, str, str, dict[str, str], dict[str, int]], ...] = (
    ("get_allowed", "GET", "/api/items", {"Origin": ORIGIN},
     {"bare": 200, "flask_cors": 200, "access_cors": 200}),
    ("preflight", "OPTIONS", "/api/items",
     {"Origin": ORIGIN, "Access-Control-Request-Method": "POST",
      "Access-Control-Request-Headers": "content-type,x-requested-with"},
     {"bare": 200, "flask_cors": 200, "access_cors": 204}),
)


@dataclass
class HTTPResult:
    route: str
    variant: str
    label: str
    seconds: float
    requests: int = 0
    errors: int = 0
    reconnects: int = 0
    unexpected: dict[str, int] = field(default_factory=dict)
    rps: float = 0.0
    p50_ms: float = 0.0
    p90_ms: float = 0.0
    p99_ms: float = 0.0
    ratio: float | None = None  # bare's throughput / this one's: > 1 means slower


def find_gunicorn() -> str | None:
    local = Path(sys.executable).parent / "gunicorn"
    return str(local) if local.exists() else shutil.which("gunicorn")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class _Server:
    def __init__(self, gunicorn: str, variant: str, workers: int, worker_class: str,
                 log: Path) -> None:
        self.port = _free_port()
        self.log = log
        env = {**os.environ, "BENCH_APP": variant}
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(
                [gunicorn, "-w", str(workers), "-k", worker_class, "-b", f"127.0.0.1:{self.port}",
                 "--chdir", str(ROOT), "--log-level", "warning", "bench.serve:app"],
                env=env, stdout=out, stderr=subprocess.STDOUT,
            )

    def wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited: {self.log.read_text()[-500:]}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", "/api/items")
                conn.getresponse().read()
                conn.close()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("gunicorn did not answer in time")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _load(port: int, method: str, path: str, headers: dict[str, str], seconds: float,
          threads: int) -> tuple[list[float], int, int, Counter[int]]:
    stop = threading.Event()
    latencies: list[list[float]] = [[] for _ in range(threads)]
    errors = [0] * threads
    reconnects = [0] * threads
    statuses: list[Counter[int]] = [Counter() for _ in range(threads)]

    def worker(n: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        mine, seen = latencies[n], statuses[n]
        clock = time.perf_counter
        while not stop.is_set():
            t0 = clock()
            try:
                conn.request(method, path, headers=headers)
                response = conn.getresponse()
                response.read()
            except (OSError, http.client.HTTPException):
                errors[n] += 1
                conn.close()
                continue
            mine.append(clock() - t0)
            seen[response.status] += 1
            if response.will_close:
                conn.close()  # http.client reopens on the next request
                reconnects[n] += 1
        conn.close()

    pool = [threading.Thread(target=worker, args=(n,), daemon=True) for n in range(threads)]
    for t in pool:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in pool:
        t.join(15)
    merged: Counter[int] = Counter()
    for c in statuses:
        merged.update(c)
    return [x for part in latencies for x in part], sum(errors), sum(reconnects), merged


def run_http(seconds: float, threads: int = 4, workers: int = 2, worker_class: str = "sync",
             slices: int = 5) -> tuple[list[HTTPResult], str]:
    """Measure every route on every app; returns the results and a one-line description.

    Each app gets ``seconds`` per route, in ``slices`` slices taken round-robin
    over the apps (alternating the order), so a busy moment of the machine is
    shared out rather than landing on one app.
    """
    gunicorn = find_gunicorn()
    if gunicorn is None:
        return [], "skipped: gunicorn is not installed"
    wrk = "wrk is installed but not used" if shutil.which("wrk") else "wrk not installed"
    description = (
        f"gunicorn -w {workers} -k {worker_class} on 127.0.0.1; Python load generator, "
        f"{threads} threads with http.client; {seconds:g} s per app and route, in {slices} "
        f"interleaved slices ({wrk})"
    )
    results: list[HTTPResult] = []
    piece = seconds / slices
    with tempfile.TemporaryDirectory(prefix="flask-access-cors-http-") as tmp:
        servers = {key: _Server(gunicorn, key, workers, worker_class, Path(tmp) / f"{key}.log")
                   for key, _ in VARIANTS}
        try:
            for server in servers.values():
                server.wait_ready()
            flip = False
            for route, method, path, headers, expect in ROUTES:
                for key, _ in VARIANTS:  # warm-up
                    _load(servers[key].port, method, path, headers, min(0.5, piece), threads)
                lat: dict[str, list[float]] = {key: [] for key, _ in VARIANTS}
                errors: Counter[str] = Counter()
                reconnects: Counter[str] = Counter()
                statuses: dict[str, Counter[int]] = {key: Counter() for key, _ in VARIANTS}
                for _slice in range(slices):
                    order = list(reversed(VARIANTS)) if flip else list(VARIANTS)
                    flip = not flip
                    for key, _label in order:
                        got, err, rec, seen = _load(servers[key].port, method, path, headers,
                                                    piece, threads)
                        lat[key] += got
                        errors[key] += err
                        reconnects[key] += rec
                        statuses[key].update(seen)
                by_key: dict[str, HTTPResult] = {}
                for key, label in VARIANTS:
                    r = HTTPResult(route, key, label, seconds, len(lat[key]), errors[key],
                                   reconnects[key])
                    r.unexpected = {str(c): n for c, n in statuses[key].items() if c != expect[key]}
                    r.rps = len(lat[key]) / seconds
                    if len(lat[key]) >= 2:
                        q = statistics.quantiles(lat[key], n=100)
                        r.p50_ms, r.p90_ms, r.p99_ms = q[49] * 1e3, q[89] * 1e3, q[98] * 1e3
                    by_key[key] = r
                for key, _ in VARIANTS:
                    r = by_key[key]
                    r.ratio = by_key["bare"].rps / r.rps if r.rps else None
                    results.append(r)
        finally:
            for server in servers.values():
                server.stop()
    return results, description
