"""Issue #13: the event log and key fetching under faults, with real processes.

The promise of SPEC section 6 is that every denial is accounted for (the
counts written plus ``dropped`` equal the denials made) and that a failing
store never fails or slows a request; the JWKS client's is that no request
waits on a dead key server longer than one fetch timeout.  Each test breaks
one thing for real:

1. the SQLite file deleted under gunicorn's four workers, first the main file
   alone (its ``-wal`` and ``-shm`` stay behind), then with them;
2. a real redis-server made to hang (``DEBUG SLEEP 2``, twice) and then
   stopped and restarted, under four workers;
3. a flapping store: a size-limited disk (a tmpfs) that another process fills
   and frees again, and a database whose write lock another process takes and
   releases;
4. a JWKS server on loopback that accepts connections and never answers,
   with ``jwks_cooldown`` shorter than the fetch timeout;
5. a worker killed with ``SIGKILL``.

Every test prints one ``FAULT`` line with what it measured (``pytest -s
tests/test_faults.py``); the table "Faults tried" in ``docs/security.rst``
quotes those lines.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import sqlite3
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest
import requests
from flask import Flask
from werkzeug.serving import WSGIRequestHandler, make_server

from flask_access_cors import AccessCors
from flask_access_cors.events import SQLiteStore, WorkerStatus
from flask_access_cors.jwks import JWKSClient
from flask_access_cors.reasons import TokenError
from tests.redis_server import RedisServer, require_redis_server
from tests.test_multiprocess import (
    dropped_total,
    gunicorn,
    hostile_origins,
    read_with_cli,
    request,
)

pytestmark = pytest.mark.slow

WORKERS = 4  # what tests.test_multiprocess.gunicorn starts
#: The event log's defaults: a rate-limit window of 1 s, the writer waking every 0.25 s.
WINDOW, FLUSH_INTERVAL = 1.0, 0.25
#: Long enough for every window to close and its summary to be written.
SETTLE = WINDOW + FLUSH_INTERVAL + 0.5

# Loaded by gunicorn from its working directory (the tests' tmp_path).  Each
# worker appends the event log's own messages (not the INFO line every denial
# gets) to a file, so that the tests can count WARNINGs per worker.
GUNICORN_CONF = '''
import logging

worker_class = {worker_class!r}
threads = {threads}


class _OwnMessages(logging.Filter):
    def filter(self, record):
        return record.getMessage().startswith("flask-access-cors:")


def post_fork(server, worker):
    handler = logging.FileHandler({log!r})
    handler.setFormatter(logging.Formatter("%(process)d %(levelname)s %(message)s"))
    handler.addFilter(_OwnMessages())
    logger = logging.getLogger("flask_access_cors")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
'''


def configure_gunicorn(tmp_path: Path, worker_class: str = "sync", threads: int = 1) -> Path:
    """Write gunicorn.conf.py for the next gunicorn() in tmp_path; returns the log file."""
    log = tmp_path / "workers.log"
    conf = GUNICORN_CONF.format(worker_class=worker_class, threads=threads, log=str(log))
    (tmp_path / "gunicorn.conf.py").write_text(conf)
    return log


class WorkerLog:
    """The lines the workers logged: ``pid LEVEL message``."""

    def __init__(self, path: Path) -> None:
        text = path.read_text() if path.exists() else ""
        self.lines = [line.split(" ", 2) for line in text.splitlines() if line.count(" ") >= 2]

    def count(self, level: str, words: str) -> Counter[str]:
        """How many lines of ``level`` containing ``words`` each worker (pid) logged."""
        return Counter(pid for pid, lvl, message in self.lines if lvl == level and words in message)

    @property
    def warnings(self) -> int:
        return sum(1 for _, level, _ in self.lines if level == "WARNING")


class Responses:
    """What the clients saw: (time it finished, latency, status) per request.

    A request that failed without a response counts with status 0.
    """

    def __init__(self) -> None:
        self.results: list[tuple[float, float, int]] = []
        self._lock = threading.Lock()

    def deny(self, port: int, origin: str) -> None:
        started = time.monotonic()
        try:
            status = request(port, "/items", origin)
        except OSError:
            status = 0
        done = time.monotonic()
        with self._lock:
            self.results.append((done, done - started, status))

    @property
    def denials(self) -> int:
        return sum(1 for _, _, status in self.results if status == 403)

    @property
    def slowest(self) -> float:
        return max(latency for _, latency, _ in self.results)

    def unanswered(self) -> int:
        return sum(1 for _, _, status in self.results if status != 403)


class Traffic(Responses):
    """Client threads sending denials (POST /items from hostile origins) until the block ends."""

    def __init__(self, port: int, tag: str, threads: int = 8, distinct: int = 50,
                 pause: float = 0.004) -> None:
        super().__init__()
        self.port, self.tag, self.distinct, self.pause = port, tag, distinct, pause
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(n,)) for n in range(threads)]

    def _run(self, n: int) -> None:
        i = n
        while not self._stop.is_set():
            self.deny(self.port, f"https://{self.tag}{i % self.distinct}.evil.example")
            i += len(self._threads)
            time.sleep(self.pause)

    def __enter__(self) -> Traffic:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)


def send(port: int, origins: list[str], threads: int = 8) -> Responses:
    """Send one denial per origin, from ``threads`` threads; wait for every answer."""
    responses = Responses()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda origin: responses.deny(port, origin), origins))
    return responses


def counts_by_tag(rows: list[tuple[str | None, int]]) -> dict[str, int]:
    """Denials per phase: the tag is the first letter of the origin's host."""
    tally: Counter[str] = Counter()
    for origin, count in rows:
        assert origin is not None and origin.startswith("https://")
        tally[origin[len("https://")]] += count
    return dict(tally)


def file_rows(conn: sqlite3.Connection) -> list[tuple[str | None, int]]:
    """(origin, count) of every event in the file ``conn`` has open; none without the table."""
    if not conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'access_cors_events'").fetchone():
        return []
    return conn.execute("SELECT origin, count FROM access_cors_events").fetchall()


def cli_rows(tmp_path: Path, store: str) -> list[tuple[str | None, int]]:
    return [(e["origin"], int(e["count"])) for e in read_with_cli(tmp_path, store)]  # type: ignore[call-overload]


def report(fault: str, **numbers: Any) -> None:
    shown = " ".join(f"{k}={v:.2f}s" if isinstance(v, float) else f"{k}={v}" for k, v in numbers.items())
    print(f"\nFAULT {fault}: {shown}")


# -- 1. the SQLite file deleted mid-run ---------------------------------------------------


def test_sqlite_file_deleted_mid_run_is_noticed_and_recreated(tmp_path: Path) -> None:
    """Old code: every worker kept writing into its handle on the deleted file,
    so what was denied after the deletion went nowhere, uncounted."""
    path = tmp_path / "events.sqlite3"
    store = f"sqlite:///{path}"
    log = configure_gunicorn(tmp_path)
    held: list[sqlite3.Connection] = []  # keep each deleted file readable, to look inside later

    def delete(suffixes: tuple[str, ...]) -> None:
        time.sleep(SETTLE)  # the phase before is written in full
        conn = sqlite3.connect(path)
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()  # opens its -wal and -shm
        held.append(conn)
        for suffix in suffixes:
            Path(f"{path}{suffix}").unlink(missing_ok=True)

    with gunicorn(tmp_path, store) as port:
        phases = [send(port, hostile_origins(400, 40, "b"))]
        delete(("",))  # the main file alone: its -wal and -shm stay behind
        phases.append(send(port, hostile_origins(400, 40, "m")))
        delete(("", "-wal", "-shm"))  # a cleanup job removing everything
        phases.append(send(port, hostile_origins(400, 40, "a")))

    first, second = (counts_by_tag(file_rows(conn)) for conn in held)
    live = counts_by_tag(cli_rows(tmp_path, store))
    dropped = dropped_total(tmp_path)
    denials = sum(p.denials for p in phases)
    written = sum(first.values()) + sum(second.values()) + sum(live.values())
    replaced = WorkerLog(log).count("WARNING", "was deleted or replaced while in use")
    report("sqlite-file-deleted", denials=denials, written=written, dropped=dropped,
           warnings=WorkerLog(log).warnings, slowest=max(p.slowest for p in phases),
           first_file=first, second_file=second, live_file=live)

    assert denials == 1200 and all(p.unanswered() == 0 for p in phases)
    # Nothing denied after a deletion went into the deleted file ...
    assert set(first) == {"b"} and set(second) == {"m"} and set(live) == {"a"}
    # ... and nothing went missing: each phase is in its file, or counted.
    assert written + dropped == denials
    # Every worker that wrote after a deletion said so, once per deletion.
    assert replaced and max(replaced.values()) <= 2
    assert max(p.slowest for p in phases) < 2.0


# -- 2. Redis made slow, then stopped and restarted ----------------------------------------


def test_redis_hanging_and_restarted_counts_every_denial_once(tmp_path: Path) -> None:
    """Old code: a batch whose reply timed out was counted as dropped, and Redis
    executed it once it woke up: written + dropped exceeded the denials made.
    Four gthread workers of four threads each (the other tests use sync workers)."""
    server = RedisServer(require_redis_server(), tmp_path, persistent=True, debug_command=True)
    server.start()
    log = configure_gunicorn(tmp_path, worker_class="gthread", threads=4)
    try:
        with gunicorn(tmp_path, server.url) as port:
            with Traffic(port, "r") as traffic:
                time.sleep(0.5)
                server.hang(2)  # every writer's batch in flight times out (0.5 s)
                time.sleep(0.5)
                server.hang(2)
                time.sleep(0.3)
                server.stop()  # SIGTERM: what it acknowledged is in its append-only file
                time.sleep(0.8)
                server.start()
                time.sleep(1.0)
        events = read_with_cli(tmp_path, server.url)
    finally:
        server.stop()
    written = sum(int(e["count"]) for e in events)  # type: ignore[call-overload]
    dropped = dropped_total(tmp_path)
    outages = WorkerLog(log).count("WARNING", "failed (")
    report("redis-hang-and-restart", denials=traffic.denials, written=written, dropped=dropped,
           warnings=WorkerLog(log).warnings, slowest=traffic.slowest)

    assert traffic.unanswered() == 0
    assert len({e["id"] for e in events}) == len(events)
    assert written + dropped == traffic.denials  # each denial counted exactly once
    assert outages and max(outages.values()) == 1  # one WARNING per worker for the whole outage
    assert traffic.slowest < 2.0  # requests never waited for Redis


# -- 3. a flapping store ---------------------------------------------------------------------


@contextmanager
def small_disk(directory: Path, size: str = "16m") -> Iterator[Path]:
    """A size-limited tmpfs at ``directory``; skips the test when it cannot be mounted."""
    directory.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(directory)],
                             capture_output=True, text=True, check=False)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a size-limited tmpfs here (needs root): {mounted.stderr.strip()}")
    try:
        yield directory
    finally:
        subprocess.run(["umount", "-l", str(directory)], check=False)


def fill(directory: Path) -> Path:
    """Another program takes every free byte of the disk."""
    filler = directory / "filler"
    chunk = b"\0" * (1 << 20)
    with open(filler, "wb", buffering=0) as out:  # unbuffered: closing has nothing left to write
        try:
            while True:
                out.write(chunk)
        except OSError:  # ENOSPC: the disk is full, which is the point
            return filler
    return filler


@pytest.mark.parametrize("cause", ["disk-full", "write-lock"])
def test_flapping_store_logs_one_warning_per_worker(tmp_path: Path, cause: str) -> None:
    """Old code: a WARNING at every failure that followed a success, one per flap."""
    directory = tmp_path / "disk" if cause == "disk-full" else tmp_path
    log = configure_gunicorn(tmp_path)
    with small_disk(directory) if cause == "disk-full" else nullcontext(directory):
        path = directory / "events.sqlite3"
        store = f"sqlite:///{path}"
        with gunicorn(tmp_path, store) as port:
            with Traffic(port, "f") as traffic:
                time.sleep(0.3)
                # Another process (a backup, say) that holds the write lock now and then.
                locker = sqlite3.connect(path, isolation_level=None, timeout=5)
                for _ in range(6):  # failing spells, with writes succeeding between them
                    if cause == "disk-full":
                        filler = fill(directory)
                        time.sleep(0.4)
                        filler.unlink()
                    else:
                        locker.execute("BEGIN EXCLUSIVE")
                        time.sleep(0.4)
                        locker.execute("ROLLBACK")
                    time.sleep(0.4)
                locker.close()
        written = sum(count for _, count in cli_rows(tmp_path, store))
    dropped = dropped_total(tmp_path)
    worker_log = WorkerLog(log)
    outages = worker_log.count("WARNING", "failed (")
    recoveries = worker_log.count("INFO", "works again")
    report(f"flapping-store-{cause}", denials=traffic.denials, written=written, dropped=dropped,
           warnings=worker_log.warnings, slowest=traffic.slowest,
           recoveries=sum(recoveries.values()))

    assert traffic.unanswered() == 0
    assert dropped > 0  # the store really failed, again and again
    assert written + dropped == traffic.denials
    assert outages and max(outages.values()) == 1 and len(outages) <= WORKERS
    assert worker_log.warnings == sum(outages.values())
    assert max(recoveries.values(), default=0) <= 1  # and one INFO when it works again
    assert traffic.slowest < 2.0


# -- 4. a JWKS server that hangs -----------------------------------------------------------


class HangingJWKS(ThreadingHTTPServer):
    """Accepts every connection, reads the request, never answers (a hung key server)."""

    daemon_threads = True

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.hits = 0
        self.open = 0
        self.most_open = 0
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _HangHandler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/cdn-cgi/access/certs"

    def __enter__(self) -> HangingJWKS:
        threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.shutdown()
        self.server_close()


class _HangHandler(BaseHTTPRequestHandler):
    server: HangingJWKS

    def do_GET(self) -> None:
        srv = self.server
        with srv.lock:
            srv.hits += 1
            srv.open += 1
            srv.most_open = max(srv.most_open, srv.open)
        try:
            # Hold the connection until the client gives up (closes it): the
            # number of open connections is then the number of fetches running.
            self.connection.settimeout(0.02)
            while not srv.stop.is_set():
                try:
                    if not self.connection.recv(1, socket.MSG_PEEK):
                        break
                except TimeoutError:
                    continue
                except OSError:
                    break
        finally:
            with srv.lock:
                srv.open -= 1
        self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: the test reads counters, not logs."""


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Silent: thousands of 503 lines would only bury a failure's output."""


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


#: Well-formed RS256 JWT whose kid the client must fetch keys for (the signature never gets checked).
TOKEN = ".".join([_b64({"alg": "RS256", "kid": "k1", "typ": "JWT"}),
                  _b64({"sub": "someone", "aud": "aud", "exp": 4102444800, "iat": 1}), "c2ln"])


def test_jwks_hanging_request_waits_at_most_one_timeout(caplog: pytest.LogCaptureFixture) -> None:
    """Old code: with jwks_cooldown (1 s) below the fetch timeout (3 s), a request
    waiting for the fetch lock could lose it to a new fetch, and then to another:
    waits of several timeouts.  Here: HTTP requests through a threaded server for 6.5 s."""
    with HangingJWKS() as jwks:
        app = Flask(__name__)
        AccessCors(app, jwks_url=jwks.url, issuer="https://test.cloudflareaccess.com",
                   audience="aud", gate=True, jwks_cooldown=1, event_store="memory://")

        @app.route("/items")
        def items() -> str:
            return "items"

        server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=_QuietHandler)
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}).start()
        url = f"http://127.0.0.1:{server.server_port}/items"
        results: list[tuple[float, int]] = []
        deadline = time.monotonic() + 6.5

        def client() -> None:
            with requests.Session() as session:
                while time.monotonic() < deadline:
                    started = time.monotonic()
                    status = session.get(url, headers={"Cf-Access-Jwt-Assertion": TOKEN},
                                         timeout=30).status_code
                    results.append((time.monotonic() - started, status))

        try:
            with ThreadPoolExecutor(16) as pool:
                for future in [pool.submit(client) for _ in range(16)]:
                    future.result()
        finally:
            server.shutdown()
            server.server_close()
        hits, most_open = jwks.hits, jwks.most_open
    slowest = max(latency for latency, _ in results)
    warnings = [r for r in caplog.records if r.levelname == "WARNING" and "JWKS fetch" in r.getMessage()]
    report("jwks-hanging", requests=len(results), fetches=hits, concurrent_fetches=most_open,
           warnings=len(warnings), slowest=slowest)

    assert {status for _, status in results} == {503}  # key_unavailable, never a 5xx crash
    assert most_open == 1  # single flight
    assert len(warnings) <= hits  # one per failed fetch (the last may come later), none per request
    assert slowest < 3.0 + 1.0  # one timeout (gate.py's 3 s), plus scheduling slack


def test_jwks_waiters_never_start_a_second_fetch_and_wait_for_theirs_only() -> None:
    """The client alone, cooldown 0, a 0.4 s timeout and 16 threads for 2.5 s."""
    with HangingJWKS() as jwks:
        client = JWKSClient(jwks.url, cooldown=0, timeout=0.4)
        waits: list[float] = []
        deadline = time.monotonic() + 2.5

        def caller() -> None:
            while time.monotonic() < deadline:
                started = time.monotonic()
                with pytest.raises(TokenError):
                    client.get_key("k1")
                waits.append(time.monotonic() - started)
                if waits[-1] < 0.01:
                    time.sleep(0.01)  # refused at once: no spinning on the GIL

        with ThreadPoolExecutor(16) as pool:
            for future in [pool.submit(caller) for _ in range(16)]:
                future.result()
        hits, most_open = jwks.hits, jwks.most_open
    report("jwks-client-cooldown-0", calls=len(waits), fetches=hits, concurrent_fetches=most_open,
           slowest=max(waits))
    assert most_open == 1
    assert max(waits) < 0.4 + 0.4  # one timeout, plus scheduling slack on a busy machine
    assert hits <= 2.5 / 0.4 + 2  # back to back at most, never overlapping


# -- 5. a worker killed with SIGKILL -------------------------------------------------------


def test_sigkilled_worker_leaves_a_visible_bounded_gap(tmp_path: Path) -> None:
    """Old code: a killed worker's queued denials vanished and nothing said so.

    Now its last heartbeat stays in the store with ``closed=False``; the loss is
    what it had not written: at least the ``pending`` its heartbeat shows, at
    most the denials of its last window + flush interval (SPEC section 6 as
    documented in docs/events.rst).
    """
    path = tmp_path / "events.sqlite3"
    store = f"sqlite:///{path}"
    configure_gunicorn(tmp_path)
    with gunicorn(tmp_path, store) as port:
        with Traffic(port, "k", distinct=25, pause=0.01) as before:
            time.sleep(3.0)
        killed_at = time.monotonic()
        reader = SQLiteStore(path)
        running = [w for w in reader.workers() if not w.closed]
        victim = max(running, key=lambda w: w.recorded)
        os.kill(victim.pid, signal.SIGKILL)
        time.sleep(0.5)  # gunicorn starts a replacement
        after = send(port, hostile_origins(200, 25, "z"))
    heartbeats = {w.pid: w for w in reader.workers()}
    reader.close()

    killed: WorkerStatus = heartbeats.pop(victim.pid)
    written = sum(count for _, count in cli_rows(tmp_path, store))
    reported = dropped_total(tmp_path)  # the three survivors and the replacement
    denials = before.denials + after.denials
    lost = denials - written - reported - killed.dropped
    # The stated bound: what the killed worker recorded in its last window +
    # flush interval (its writes take milliseconds here), so at most what all
    # workers were sent in that time.
    horizon = WINDOW + FLUSH_INTERVAL + 0.25
    bound = sum(1 for done, _, status in before.results if status == 403 and done >= killed_at - horizon)
    report("sigkill-worker", denials=denials, written=written, dropped=reported + killed.dropped,
           warnings=0, slowest=max(before.slowest, after.slowest), lost=lost,
           visible_pending=killed.pending, bound=bound)

    assert before.unanswered() == 0 and after.unanswered() == 0
    assert not killed.closed  # the gap is visible
    assert all(w.closed and w.pending == 0 for w in heartbeats.values())
    assert sum(w.dropped for w in heartbeats.values()) == reported
    assert 0 <= killed.pending <= lost <= bound
