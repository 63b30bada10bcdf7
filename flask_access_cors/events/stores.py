"""Where events are kept: an in-memory ring, an SQLite file, or Redis.

A store is deliberately dumb and synchronous: it writes a batch or raises, and
it answers searches.  Everything about not blocking requests, batching,
rate limiting and counting failures lives in :class:`~.log.EventLog`, which
calls :meth:`Store.write` from its own background thread.

Every store keeps at most ``retention`` events (the newest) and answers
:meth:`Store.search` newest first, by event time.

Filters match the values as stored, i.e. already escaped (see
:func:`~.model.escape`): what a user copies from the CLI output finds the event
again.  ``path`` is a glob in which only ``*`` is special (it matches any run of
characters, ``/`` included); without ``*`` it is an exact match.  Matching is
case-sensitive, like Flask's routing.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable
from urllib.parse import urlsplit

from .model import Event

if TYPE_CHECKING:
    import redis

__all__ = ["MemoryStore", "RedisStore", "SQLiteStore", "Store", "open_store"]

_logger = logging.getLogger("flask_access_cors")


@runtime_checkable
class Store(Protocol):
    """What :class:`~.log.EventLog` needs from a place to keep events."""

    def write(self, events: Sequence[Event]) -> None:
        """Store ``events``, all or nothing as far as the backend allows.

        Raises on failure: the log counts what could not be written.
        """

    def search(
        self,
        *,
        reason: str | None = None,
        status: int | None = None,
        path: str | None = None,
        origin: str | None = None,
        since: datetime | None = None,
        limit: int = 100,
    ) -> list[Event]:
        """At most ``limit`` matching events, newest first."""
        ...

    def clear(self) -> None:
        """Forget every event."""

    def close(self) -> None:
        """Release connections; the store is not used afterwards."""


# -- shared helpers ---------------------------------------------------------


def _check_retention(retention: int) -> int:
    if isinstance(retention, bool) or not isinstance(retention, int) or retention < 1:
        raise ValueError(f"event_retention must be a positive integer, not {retention!r}")
    return retention


def _check_since(since: datetime | None) -> datetime | None:
    if since is None:
        return None
    if since.tzinfo is None or since.utcoffset() is None:
        raise ValueError("since must be an aware datetime (e.g. with tzinfo=timezone.utc)")
    return since.astimezone(timezone.utc)


def _path_matcher(pattern: str) -> Callable[[str], bool]:
    """A predicate for the ``path`` filter: ``*`` is the only wildcard."""
    if "*" not in pattern:
        return pattern.__eq__
    first, *middle, last = pattern.split("*")

    def match(path: str) -> bool:
        # Linear: the stored paths are attacker-controlled, and a backtracking regex
        # over them would cost O(n^k) for a pattern with k stars.
        if len(path) < len(first) + len(last) or not path.startswith(first):
            return False
        if not path.endswith(last):
            return False
        at, end = len(first), len(path) - len(last)
        for part in middle:
            found = path.find(part, at, end)
            if found < 0:
                return False
            at = found + len(part)
        return True

    return match


def _filter(
    events: Iterable[Event],
    *,
    reason: str | None,
    status: int | None,
    path: str | None,
    origin: str | None,
    since: datetime | None,
) -> Iterable[Event]:
    """The events that pass every given filter (shared by the non-SQL stores)."""
    path_ok = _path_matcher(path) if path is not None else None
    for event in events:
        if reason is not None and event.reason != reason:
            continue
        if status is not None and event.status != status:
            continue
        if origin is not None and event.origin != origin:
            continue
        if since is not None and event.time < since:
            continue
        if path_ok is not None and not path_ok(event.path):
            continue
        yield event


def _newest_first(events: Iterable[Event]) -> list[Event]:
    """Sort by time, newest first; among equal times the later-written first."""
    ordered = list(events)
    ordered.reverse()  # later-written first ...
    ordered.sort(key=lambda event: event.time, reverse=True)  # ... kept by the stable sort
    return ordered


# Stores guarded by a lock must get a fresh one in a forked child: the parent's
# lock may have been held by a thread that does not exist in the child.
_FORK_SENSITIVE: weakref.WeakSet[MemoryStore | SQLiteStore] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for store in list(_FORK_SENSITIVE):
        store._after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


# -- memory -----------------------------------------------------------------


class MemoryStore:
    """A ring of the newest ``retention`` events in this process (for tests).

    Thread-safe.  Each process has its own ring, so it is not for production
    use with several workers.
    """

    def __init__(self, *, retention: int = 10000) -> None:
        self.retention = _check_retention(retention)
        self._events: deque[Event] = deque(maxlen=self.retention)
        self._lock = threading.Lock()
        _FORK_SENSITIVE.add(self)

    def _after_fork_in_child(self) -> None:
        self._lock = threading.Lock()

    def write(self, events: Sequence[Event]) -> None:
        with self._lock:
            self._events.extend(events)

    def search(
        self,
        *,
        reason: str | None = None,
        status: int | None = None,
        path: str | None = None,
        origin: str | None = None,
        since: datetime | None = None,
        limit: int = 100,
    ) -> list[Event]:
        since = _check_since(since)
        with self._lock:
            snapshot = list(self._events)
        found = _filter(
            snapshot, reason=reason, status=status, path=path, origin=origin, since=since
        )
        return _newest_first(found)[:limit]

    def clear(self) -> None:
        with self._lock:
            self._events.clear()

    def close(self) -> None:
        """Nothing to release; the events stay readable."""


# -- SQLite -----------------------------------------------------------------

_SCHEMA = """
CREATE TABLE IF NOT EXISTS access_cors_events (
    seq          INTEGER PRIMARY KEY,
    id           TEXT    NOT NULL,
    time_us      INTEGER NOT NULL,
    status       INTEGER NOT NULL,
    reason       TEXT    NOT NULL,
    message      TEXT    NOT NULL,
    method       TEXT    NOT NULL,
    path         TEXT    NOT NULL,
    origin       TEXT,
    request_type TEXT    NOT NULL,
    policy       TEXT    NOT NULL,
    remote_addr  TEXT,
    identity     TEXT,
    count        INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX IF NOT EXISTS access_cors_events_time ON access_cors_events (time_us);
CREATE INDEX IF NOT EXISTS access_cors_events_reason ON access_cors_events (reason, time_us);
"""

_COLUMNS = (
    "id, time_us, status, reason, message, method, path, origin, "
    "request_type, policy, remote_addr, identity, count"
)
# Only constant text is interpolated into SQL here and below; values are always bound.
_INSERT = (
    f"INSERT INTO access_cors_events ({_COLUMNS}) "  # noqa: S608
    "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)"
)
# Keep the newest `retention` rows in write order: everything at or below the
# seq of the (retention+1)-th newest row goes.  Nothing happens while fewer rows exist.
_TRIM = (
    "DELETE FROM access_cors_events WHERE seq <= "
    "(SELECT seq FROM access_cors_events ORDER BY seq DESC LIMIT 1 OFFSET ?)"
)

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MICROSECOND = timedelta(microseconds=1)

# Connections abandoned in a forked child.  They belong to the parent: closing
# them in the child could disturb the parent's locks, and letting the garbage
# collector close them would do just that, so they are kept referenced.
_INHERITED_CONNECTIONS: list[sqlite3.Connection] = []


def _to_us(when: datetime) -> int:
    return (when - _EPOCH) // _MICROSECOND


def _glob_literal(pattern: str) -> str:
    """Translate a ``*``-only pattern to SQLite GLOB (where ``?`` and ``[`` are special too)."""
    return pattern.replace("[", "[[]").replace("?", "[?]")


class SQLiteStore:
    """Events in an SQLite file, shared by every worker process on the host.

    - WAL mode: readers never block the writer, and several processes can
      append to the same file.
    - A short busy timeout (``busy_timeout``, 200 ms by default): a file locked
      by someone else makes :meth:`write` fail fast, and the log counts the
      batch as dropped instead of stalling its queue.
    - One connection per process, guarded by a lock; a forked child notices the
      changed ``os.getpid()`` and opens its own.  After any failure the
      connection is dropped and reopened on next use, so a file that was
      read-only or missing works again once it is fixed.
    - The connection (and the parent directories) are only created on first
      use, so a bad path never breaks application start-up; it shows up as
      dropped events and one warning.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, retention: int = 10000, busy_timeout: float = 0.2
    ) -> None:
        text = os.fspath(path)
        if not text or text == ":memory:" or text.startswith("file:"):
            raise ValueError(
                f"SQLiteStore needs a file path, not {text!r} (use memory:// for a memory store)"
            )
        self.path = Path(text).absolute()  # a later chdir must not move the database
        self.retention = _check_retention(retention)
        self.busy_timeout = busy_timeout
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._pid = os.getpid()
        _FORK_SENSITIVE.add(self)

    def _after_fork_in_child(self) -> None:
        self._lock = threading.Lock()

    def _connection(self) -> sqlite3.Connection:
        """This process's connection, opened on demand.  Call with the lock held."""
        if self._pid != os.getpid():
            if self._conn is not None:
                _INHERITED_CONNECTIONS.append(self._conn)
            self._conn = None
            self._pid = os.getpid()
        if self._conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                self.path,
                timeout=self.busy_timeout,
                isolation_level=None,  # explicit transactions below
                check_same_thread=False,  # the lock serialises use across threads
            )
            try:
                self._enable_wal(conn)
                conn.execute("PRAGMA synchronous=NORMAL")  # WAL stays consistent; a debug log
                conn.executescript(_SCHEMA)  # does not need an fsync per batch
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    def _enable_wal(self, conn: sqlite3.Connection) -> None:
        """Switch to WAL, retrying within the busy timeout.

        SQLite does not call the busy handler for a journal-mode change, so
        workers creating the file at the same moment would otherwise see
        "database is locked" at once.
        """
        deadline = time.monotonic() + self.busy_timeout
        while True:
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.005)

    def _discard_connection(self) -> None:
        """Forget a connection that failed; the next call opens a new one."""
        if self._conn is not None:
            conn, self._conn = self._conn, None
            try:
                conn.close()
            except sqlite3.Error:
                _logger.debug("closing a failed SQLite connection failed", exc_info=True)

    def write(self, events: Sequence[Event]) -> None:
        if not events:
            return
        rows = [
            (
                e.id,
                _to_us(e.time),
                e.status,
                e.reason,
                e.message,
                e.method,
                e.path,
                e.origin,
                e.request_type,
                e.policy,
                e.remote_addr,
                e.identity,
                e.count,
            )
            for e in events
        ]
        with self._lock:
            try:
                conn = self._connection()
                conn.execute("BEGIN IMMEDIATE")
                try:
                    conn.executemany(_INSERT, rows)
                    conn.execute(_TRIM, (self.retention,))
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
            except (sqlite3.Error, OSError):
                self._discard_connection()
                raise

    def search(
        self,
        *,
        reason: str | None = None,
        status: int | None = None,
        path: str | None = None,
        origin: str | None = None,
        since: datetime | None = None,
        limit: int = 100,
    ) -> list[Event]:
        since = _check_since(since)
        clauses: list[str] = []
        params: list[object] = []
        if reason is not None:
            clauses.append("reason = ?")
            params.append(reason)
        if status is not None:
            clauses.append("status = ?")
            params.append(status)
        if path is not None:
            if "*" in path:
                clauses.append("path GLOB ?")
                params.append(_glob_literal(path))
            else:
                clauses.append("path = ?")
                params.append(path)
        if origin is not None:
            clauses.append("origin = ?")
            params.append(origin)
        if since is not None:
            clauses.append("time_us >= ?")
            params.append(_to_us(since))
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        sql = (
            f"SELECT {_COLUMNS} FROM access_cors_events {where} "  # noqa: S608
            "ORDER BY time_us DESC, seq DESC LIMIT ?"
        )
        params.append(limit)
        with self._lock:
            try:
                rows = self._connection().execute(sql, params).fetchall()
            except (sqlite3.Error, OSError):
                self._discard_connection()
                raise
        return [
            Event(
                id=row[0],
                time=_EPOCH + row[1] * _MICROSECOND,
                status=row[2],
                reason=row[3],
                message=row[4],
                method=row[5],
                path=row[6],
                origin=row[7],
                request_type=row[8],
                policy=row[9],
                remote_addr=row[10],
                identity=row[11],
                count=row[12],
            )
            for row in rows
        ]

    def clear(self) -> None:
        with self._lock:
            try:
                self._connection().execute("DELETE FROM access_cors_events")
            except (sqlite3.Error, OSError):
                self._discard_connection()
                raise

    def close(self) -> None:
        with self._lock:
            if self._pid == os.getpid():
                self._discard_connection()


# -- Redis ------------------------------------------------------------------


class RedisStore:
    """Events in a Redis sorted set, for applications running on several hosts.

    The set's score is the event time, so searches are newest first across
    hosts, ``since`` is answered by Redis, and trimming to ``retention``
    (``ZREMRANGEBYRANK``, in the same transaction as ``ZADD``) removes the
    oldest events.  Members are the events' JSON (unique through their id).

    Short socket timeouts (``timeout``, 0.5 s for connecting and for each
    reply) make a stopped or hung server fail fast.  A connection error is
    retried once at once; a timeout is not retried.  redis-py replaces stale
    pooled connections and reconnects by itself once the server is back.
    """

    def __init__(
        self,
        url: str,
        *,
        retention: int = 10000,
        key: str = "flask_access_cors:events",
        timeout: float = 0.5,
    ) -> None:
        try:
            import redis
            from redis.backoff import NoBackoff
            from redis.retry import Retry
        except ImportError as exc:  # pragma: no cover - depends on the installed extras
            raise ImportError(
                "the Redis event store needs the redis package: "
                "pip install 'flask-access-cors[redis]'"
            ) from exc
        self.retention = _check_retention(retention)
        self.key = key
        self._client: redis.Redis = redis.Redis.from_url(
            url,
            socket_connect_timeout=timeout,
            socket_timeout=timeout,
            # One immediate retry on a connection error (a connection dropped
            # mid-command); never on a timeout, which would only double the wait.
            retry=Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,)),
            decode_responses=True,
        )

    def write(self, events: Sequence[Event]) -> None:
        if not events:
            return
        members = {
            json.dumps(e.to_dict(), separators=(",", ":")): e.time.timestamp() for e in events
        }
        pipe = self._client.pipeline(transaction=True)
        pipe.zadd(self.key, members)
        pipe.zremrangebyrank(self.key, 0, -(self.retention + 1))
        pipe.execute()

    def search(
        self,
        *,
        reason: str | None = None,
        status: int | None = None,
        path: str | None = None,
        origin: str | None = None,
        since: datetime | None = None,
        limit: int = 100,
    ) -> list[Event]:
        since = _check_since(since)
        low: float | str = since.timestamp() if since is not None else "-inf"
        page = max(limit, 200)
        found: list[Event] = []
        seen: set[str] = set()
        offset = 0
        while len(found) < limit:
            # Pages by rank; a concurrent write may shift ranks, hence `seen`.
            members = self._client.zrevrangebyscore(
                self.key, "+inf", low, start=offset, num=page
            )
            if not members:
                break
            offset += len(members)
            batch = []
            for member in members:
                event = self._decode(member)
                if event is not None and event.id not in seen:
                    seen.add(event.id)
                    batch.append(event)
            found.extend(
                _filter(batch, reason=reason, status=status, path=path, origin=origin, since=since)
            )
        return found[:limit]

    def _decode(self, member: object) -> Event | None:
        """An event from a set member; foreign or corrupt members are skipped."""
        try:
            if not isinstance(member, str):
                raise TypeError("not a decoded string")
            return Event.from_dict(json.loads(member))
        except (ValueError, TypeError):
            _logger.debug("skipping a corrupt member of Redis key %r", self.key)
            return None

    def clear(self) -> None:
        self._client.delete(self.key)

    def close(self) -> None:
        self._client.close()


# -- URLs -------------------------------------------------------------------


def open_store(url: str, *, retention: int) -> Store:
    """The store an ``event_store`` setting names.

    - ``memory://`` -- :class:`MemoryStore`
    - ``sqlite:///PATH`` -- :class:`SQLiteStore`; ``PATH`` is everything after
      the third slash, so ``sqlite:///events.db`` is relative to the working
      directory and ``sqlite:////var/lib/app/events.db`` is absolute
      (SQLAlchemy's convention; the spec's default
      ``sqlite:///<instance_path>/...`` is absolute because ``instance_path`` is)
    - ``redis://HOST:PORT/DB`` (or ``rediss://`` for TLS) -- :class:`RedisStore`

    Raises :class:`ValueError` for anything else.  Messages never repeat the
    URL itself, which may hold a password.
    """
    _check_retention(retention)
    if not isinstance(url, str):
        raise ValueError(f"event_store must be a URL string, not {type(url).__name__}")
    scheme = urlsplit(url).scheme.lower() if "://" in url else ""
    if scheme == "memory":
        if url.lower() != "memory://":
            raise ValueError("a memory event_store takes no host or path: use 'memory://'")
        return MemoryStore(retention=retention)
    if scheme == "sqlite":
        prefix = "sqlite:///"
        if not url.lower().startswith(prefix) or len(url) == len(prefix):
            raise ValueError(
                "an SQLite event_store must be 'sqlite:///PATH' "
                "(three slashes, then a relative or absolute file path)"
            )
        path = url[len(prefix) :]
        if "?" in path or "#" in path or path == ":memory:":
            raise ValueError(
                "an SQLite event_store must name a plain file: no query, "
                "fragment or ':memory:' (use memory:// for a memory store)"
            )
        return SQLiteStore(path, retention=retention)
    if scheme in ("redis", "rediss"):
        if not urlsplit(url).hostname:
            raise ValueError("a Redis event_store must be 'redis://HOST:PORT/DB'")
        return RedisStore(url, retention=retention)
    raise ValueError(
        f"unsupported event_store scheme {scheme or '(none)'!r}: "
        "use 'memory://', 'sqlite:///PATH' or 'redis://HOST:PORT/DB'"
    )
