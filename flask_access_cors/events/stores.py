"""Where events are kept: an in-memory ring, an SQLite file, or Redis.

A store is deliberately dumb and synchronous: it writes a batch or raises, and
it answers searches.  Everything about not blocking requests, batching,
rate limiting and counting failures lives in :class:`~.log.EventLog`, which
calls :meth:`Store.write` from its own background thread.

Every store keeps at most ``retention`` events (the newest) and answers
:meth:`Store.search` newest first, by event time.

Stores that also keep *heartbeats* (all three built-in ones) implement
:class:`WorkerStore`: :meth:`WorkerStore.write` then takes the writing
process's :class:`WorkerStatus` and stores it in the same transaction as the
batch, and :meth:`WorkerStore.workers` lists them.  A store whose write may
have been applied although it raised (a timeout after the request was sent)
raises :class:`WriteOutcomeUnknown`, and writing the same batch again must be
harmless (idempotent), so the log can retry it and count it exactly once.

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
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable
from urllib.parse import urlsplit

from .model import Event

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: files are recreated without the lock
    fcntl = None  # type: ignore[assignment]

if TYPE_CHECKING:
    import redis

__all__ = [
    "MemoryStore",
    "RedisStore",
    "SQLiteStore",
    "Store",
    "WorkerStatus",
    "WorkerStore",
    "WriteOutcomeUnknown",
    "open_store",
]

_logger = logging.getLogger("flask_access_cors")


class WriteOutcomeUnknown(Exception):
    """A write failed in a way that leaves its outcome unknown.

    Raised by :meth:`Store.write` when the batch may have been applied
    although the write did not complete, e.g. a Redis reply that timed out
    after the command was sent.  Writing the same batch again is harmless, so
    :class:`~.log.EventLog` keeps it and retries it until the store answers,
    instead of counting it as dropped (and then finding it written).
    """


@dataclass(frozen=True, slots=True)
class WorkerStatus:
    """One process's heartbeat: what its event log had done when it last wrote.

    Written with every batch, in the same transaction, and once more (with
    ``closed=True``) when the log is closed, e.g. when a worker exits.  A
    process that dies without closing (``SIGKILL``, an OOM kill) leaves its
    last heartbeat with ``closed=False``: its ``pending`` denials at that time,
    and whatever it recorded after ``last_flush``, were never written.

    - ``host``, ``pid``: the process; ``started``: when its log started
      recording (tells a reused pid apart).
    - ``last_flush``: when this heartbeat was written (aware UTC).
    - ``recorded``: denials the process recorded (suppressed repeats included).
    - ``written``: denials it wrote (the sum of the ``count`` of its events).
    - ``dropped``: denials it counted as dropped (full queue, failing store).
    - ``flushes``: batches it wrote; ``closed``: it closed its log cleanly.
    """

    host: str
    pid: int
    started: datetime
    last_flush: datetime
    recorded: int
    written: int
    dropped: int
    flushes: int = 0
    closed: bool = False

    @property
    def pending(self) -> int:
        """Denials recorded but neither written nor dropped at ``last_flush``.

        Waiting in the queue or in a rate-limit window at that moment; lost
        if the process was killed.
        """
        return self.recorded - self.written - self.dropped

    @property
    def worker_id(self) -> str:
        """``host:pid:started`` (microseconds), unique across pid reuse."""
        return f"{self.host}:{self.pid}:{_to_us(self.started)}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (times as ISO 8601 in UTC), ``pending`` included."""
        return {
            "host": self.host,
            "pid": self.pid,
            "started": self.started.astimezone(timezone.utc).isoformat(),
            "last_flush": self.last_flush.astimezone(timezone.utc).isoformat(),
            "recorded": self.recorded,
            "written": self.written,
            "dropped": self.dropped,
            "pending": self.pending,
            "flushes": self.flushes,
            "closed": self.closed,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> WorkerStatus:
        """Rebuild from :meth:`to_dict` output; :class:`ValueError` when malformed."""
        try:
            host, closed = data["host"], data.get("closed", False)
            numbers = [data[name] for name in ("pid", "recorded", "written", "dropped", "flushes")]
            texts = [data["started"], data["last_flush"]]
        except KeyError as exc:
            raise ValueError(f"worker record lacks field {exc.args[0]!r}") from None
        if not isinstance(host, str) or not isinstance(closed, bool):
            raise ValueError("worker field 'host' must be a string and 'closed' a boolean")
        if any(isinstance(n, bool) or not isinstance(n, int) for n in numbers):
            raise ValueError("worker fields pid, recorded, written, dropped, flushes must be integers")
        times: list[datetime] = []
        for text in texts:
            when = datetime.fromisoformat(text) if isinstance(text, str) else None
            if when is None or when.tzinfo is None:
                raise ValueError("worker times must be ISO 8601 with a UTC offset")
            times.append(when.astimezone(timezone.utc))
        pid, recorded, written, dropped, flushes = numbers
        return cls(
            host=host,
            pid=pid,
            started=times[0],
            last_flush=times[1],
            recorded=recorded,
            written=written,
            dropped=dropped,
            flushes=flushes,
            closed=closed,
        )


@runtime_checkable
class Store(Protocol):
    """What :class:`~.log.EventLog` needs from a place to keep events."""

    def write(self, events: Sequence[Event]) -> None:
        """Store ``events``, all or nothing as far as the backend allows.

        Raises on failure: the log counts what could not be written.  Raises
        :class:`WriteOutcomeUnknown` when the batch may have been stored anyway.
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


@runtime_checkable
class WorkerStore(Store, Protocol):
    """A store that also keeps the writing processes' heartbeats."""

    def write(self, events: Sequence[Event], worker: WorkerStatus | None = None) -> None:
        """Store ``events`` and, in the same transaction, the ``worker`` heartbeat.

        A heartbeat replaces the one stored for the same
        :attr:`WorkerStatus.worker_id`, unless that one has more ``flushes``
        (a late duplicate of an older write).  ``events`` may be empty.
        """

    def workers(self) -> list[WorkerStatus]:
        """The stored heartbeats (at most :data:`MAX_WORKERS`), newest ``last_flush`` first."""
        ...


#: Heartbeats a store keeps: the most recently written ones.
MAX_WORKERS = 256


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


def _newest_workers(workers: Iterable[WorkerStatus]) -> list[WorkerStatus]:
    return sorted(workers, key=lambda status: status.last_flush, reverse=True)


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
        self._workers: dict[str, WorkerStatus] = {}
        self._lock = threading.Lock()
        _FORK_SENSITIVE.add(self)

    def _after_fork_in_child(self) -> None:
        self._lock = threading.Lock()

    def write(self, events: Sequence[Event], worker: WorkerStatus | None = None) -> None:
        with self._lock:
            self._events.extend(events)
            if worker is not None:
                known = self._workers.get(worker.worker_id)
                if known is None or known.flushes <= worker.flushes:
                    self._workers[worker.worker_id] = worker
                if len(self._workers) > MAX_WORKERS:
                    keep = _newest_workers(self._workers.values())[:MAX_WORKERS]
                    self._workers = {status.worker_id: status for status in keep}

    def workers(self) -> list[WorkerStatus]:
        with self._lock:
            return _newest_workers(self._workers.values())

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
            self._workers.clear()

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
    count        INTEGER NOT NULL DEFAULT 1,
    request_id   TEXT
);
CREATE INDEX IF NOT EXISTS access_cors_events_time ON access_cors_events (time_us);
CREATE INDEX IF NOT EXISTS access_cors_events_reason ON access_cors_events (reason, time_us);
CREATE TABLE IF NOT EXISTS access_cors_workers (
    worker        TEXT    PRIMARY KEY,
    host          TEXT    NOT NULL,
    pid           INTEGER NOT NULL,
    started_us    INTEGER NOT NULL,
    last_flush_us INTEGER NOT NULL,
    recorded      INTEGER NOT NULL,
    written       INTEGER NOT NULL,
    dropped       INTEGER NOT NULL,
    flushes       INTEGER NOT NULL,
    closed        INTEGER NOT NULL
);
"""

#: Columns added after the first release, with their type: files made by an
#: older version get them with ``ALTER TABLE ... ADD COLUMN`` when opened.
_ADDED_COLUMNS = (("request_id", "TEXT"),)

_COLUMNS = (
    "id, time_us, status, reason, message, method, path, origin, "
    "request_type, policy, remote_addr, identity, count, request_id"
)
# Only constant text is interpolated into SQL here and below; values are always bound.
_INSERT = (
    f"INSERT INTO access_cors_events ({_COLUMNS}) "  # noqa: S608
    "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
)
# Keep the newest `retention` rows in write order: everything at or below the
# seq of the (retention+1)-th newest row goes.  Nothing happens while fewer rows exist.
_TRIM = (
    "DELETE FROM access_cors_events WHERE seq <= "
    "(SELECT seq FROM access_cors_events ORDER BY seq DESC LIMIT 1 OFFSET ?)"
)
_WORKER_COLUMNS = (
    "host, pid, started_us, last_flush_us, recorded, written, dropped, flushes, closed"
)
# A late duplicate of an older heartbeat (fewer flushes) never overwrites a newer one.
_UPSERT_WORKER = (
    f"INSERT INTO access_cors_workers (worker, {_WORKER_COLUMNS}) "  # noqa: S608
    "VALUES (?,?,?,?,?,?,?,?,?,?) ON CONFLICT (worker) DO UPDATE SET "
    "last_flush_us = excluded.last_flush_us, recorded = excluded.recorded, "
    "written = excluded.written, dropped = excluded.dropped, flushes = excluded.flushes, "
    "closed = excluded.closed WHERE excluded.flushes >= access_cors_workers.flushes"
)
_TRIM_WORKERS = (
    "DELETE FROM access_cors_workers WHERE worker NOT IN "
    "(SELECT worker FROM access_cors_workers ORDER BY last_flush_us DESC LIMIT ?)"
)

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MICROSECOND = timedelta(microseconds=1)

# Connections abandoned in a forked child.  They belong to the parent: closing
# them in the child could disturb the parent's locks, and letting the garbage
# collector close them would do just that, so they are kept referenced.
_INHERITED_CONNECTIONS: list[sqlite3.Connection] = []

# Files SQLite keeps beside a database.  Left behind by a database file that was
# deleted while open, they still belong to it (other processes may still use
# them): a new database created at the same path would adopt them and be corrupt.
_SIDE_FILES = ("-wal", "-shm", "-journal")

_FileId = tuple[int, int]


def _to_us(when: datetime) -> int:
    return (when - _EPOCH) // _MICROSECOND


def _from_us(value: int) -> datetime:
    return _EPOCH + value * _MICROSECOND


def _glob_literal(pattern: str) -> str:
    """Translate a ``*``-only pattern to SQLite GLOB (where ``?`` and ``[`` are special too)."""
    return pattern.replace("[", "[[]").replace("?", "[?]")


def _file_id(path: Path) -> _FileId | None:
    """(device, inode) of ``path``, or None when there is no such file."""
    try:
        status = os.stat(path)
    except FileNotFoundError:
        return None
    return status.st_dev, status.st_ino


@contextmanager
def _directory_lock(directory: Path, timeout: float) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``directory`` while a database file is (re)created.

    Every process of this host that finds the file missing goes through it,
    so one of them clears the left-over side files and creates the file, and
    the others then open that file instead of deleting its fresh side files.
    Waits at most ``timeout`` seconds (then raises :class:`OSError`: the batch
    is counted as dropped and the next one tries again).  Without ``fcntl``
    (not POSIX) there is no lock.
    """
    if fcntl is None:  # pragma: no cover - not POSIX
        yield
        return
    try:
        fd = os.open(directory, os.O_RDONLY)
    except PermissionError:
        # A directory we may write in but not read (mode -wx): no lock to take.
        _logger.debug("cannot open %s to lock it; creating the event file unlocked", directory)
        fd = -1
    if fd < 0:
        yield
        return
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise OSError(f"{directory} stays locked by another process") from None
                time.sleep(0.005)
            except OSError:
                # A file system without flock (some network mounts): go on unlocked
                # rather than never creating the file.
                _logger.debug("cannot lock %s; creating the event file unlocked", directory)
                break
        yield
    finally:
        os.close(fd)  # releases the lock


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
    - A file deleted or replaced while in use (log rotation, a cleanup job, a
      volume remounted) is noticed: every call compares the device and inode
      at the path with those of the open file (one ``stat``, not one per
      event), and on a change the connection is closed and the file at the
      path opened, or created again, with a WARNING.  A batch that was being
      written while the file changed is written again to the new file.
      Creating the file again first removes the ``-wal``/``-shm``/``-journal``
      files the deleted one left behind (they would corrupt a new database),
      under an ``flock`` on the directory so that workers do not remove each
      other's fresh ones.  Renaming *another* database over a file in use is
      not supported: its side files would be the old file's.
    - Files made by an older version get the columns added since
      (``request_id``) when they are first opened.
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
        self._file: _FileId | None = None  # the file self._conn has open
        self._pid = os.getpid()
        _FORK_SENSITIVE.add(self)

    def _after_fork_in_child(self) -> None:
        self._lock = threading.Lock()

    def _connection(self) -> sqlite3.Connection:
        """This process's connection to the file now at the path.  Call with the lock held."""
        if self._pid != os.getpid():
            if self._conn is not None:
                _INHERITED_CONNECTIONS.append(self._conn)
            self._conn = None
            self._pid = os.getpid()
        if self._conn is not None and self._file_changed():
            self._leave_replaced_file()
        if self._conn is None:
            self._conn = self._open()
        return self._conn

    def _file_changed(self) -> bool:
        return _file_id(self.path) != self._file

    def _open(self) -> sqlite3.Connection:
        """Open (creating if need be) the file at the path and note which file it is."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(3):
            before = _file_id(self.path)
            if before is None:
                with _directory_lock(self.path.parent, self.busy_timeout):
                    if _file_id(self.path) is None:
                        for suffix in _SIDE_FILES:
                            Path(f"{self.path}{suffix}").unlink(missing_ok=True)
                    conn = self._connect()
            else:
                conn = self._connect()
            after = _file_id(self.path)
            if after is not None and before in (None, after):
                self._file = after
                return conn
            conn.close()  # the file changed while it was being opened: once more
        raise sqlite3.OperationalError(f"the event file {self.path} keeps changing")

    def _connect(self) -> sqlite3.Connection:
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
            self._migrate(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    @staticmethod
    def _migrate(conn: sqlite3.Connection) -> None:
        """Add the columns a file made by an older version lacks.

        Checked again inside a write transaction: another worker may be
        migrating the same file at the same moment.
        """

        def missing() -> list[tuple[str, str]]:
            have = {row[1] for row in conn.execute("PRAGMA table_info(access_cors_events)")}
            return [(name, kind) for name, kind in _ADDED_COLUMNS if name not in have]

        if not missing():
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            for name, kind in missing():
                # name and kind come from _ADDED_COLUMNS, never from input
                conn.execute(f"ALTER TABLE access_cors_events ADD COLUMN {name} {kind}")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

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

    def _leave_replaced_file(self) -> None:
        """The file at the path is not the one open any more: let go of the old one.

        Closing is safe: SQLite neither checkpoints nor deletes the side files
        of a database that was moved or unlinked, so the new file's ``-wal``
        and ``-shm`` are left alone.
        """
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            # A file moved away (rotation) then holds what was written to it.
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.Error:
            _logger.debug("checkpointing the replaced event file failed", exc_info=True)
        try:
            conn.close()
        except sqlite3.Error:
            _logger.debug("closing the replaced event file failed", exc_info=True)
        _logger.warning(
            "flask-access-cors: the event file %s was deleted or replaced while in use; "
            "this process now writes to a new file at that path "
            "(events written before are not in it)",
            self.path,
        )

    def _discard_connection(self) -> None:
        """Forget a connection that failed; the next call opens a new one."""
        if self._conn is not None:
            conn, self._conn = self._conn, None
            try:
                conn.close()
            except sqlite3.Error:
                _logger.debug("closing a failed SQLite connection failed", exc_info=True)

    def write(self, events: Sequence[Event], worker: WorkerStatus | None = None) -> None:
        if not events and worker is None:
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
                e.request_id,
            )
            for e in events
        ]
        with self._lock:
            try:
                self._insert(self._connection(), rows, worker)
                try:
                    moved = self._file_changed()
                except OSError:
                    # Committed; a path that cannot be checked now is checked on the next call.
                    moved = False
                if moved:
                    # The file went away while this batch was being written, so
                    # the batch may be only in the old one: write it to the new.
                    self._leave_replaced_file()
                    self._insert(self._connection(), rows, worker)
            except (sqlite3.Error, OSError):
                self._discard_connection()
                raise

    def _insert(
        self, conn: sqlite3.Connection, rows: Sequence[tuple[object, ...]], worker: WorkerStatus | None
    ) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            if rows:
                conn.executemany(_INSERT, rows)
                conn.execute(_TRIM, (self.retention,))
            if worker is not None:
                conn.execute(
                    _UPSERT_WORKER,
                    (
                        worker.worker_id,
                        worker.host,
                        worker.pid,
                        _to_us(worker.started),
                        _to_us(worker.last_flush),
                        worker.recorded,
                        worker.written,
                        worker.dropped,
                        worker.flushes,
                        int(worker.closed),
                    ),
                )
                conn.execute(_TRIM_WORKERS, (MAX_WORKERS,))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _query(self, sql: str, params: Sequence[object] = ()) -> list[Any]:
        with self._lock:
            try:
                return self._connection().execute(sql, params).fetchall()
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
        return [
            Event(
                id=row[0],
                time=_from_us(row[1]),
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
                request_id=row[13],
            )
            for row in self._query(sql, params)
        ]

    def workers(self) -> list[WorkerStatus]:
        sql = (
            f"SELECT {_WORKER_COLUMNS} FROM access_cors_workers "  # noqa: S608
            "ORDER BY last_flush_us DESC"
        )
        return [
            WorkerStatus(
                host=row[0],
                pid=row[1],
                started=_from_us(row[2]),
                last_flush=_from_us(row[3]),
                recorded=row[4],
                written=row[5],
                dropped=row[6],
                flushes=row[7],
                closed=bool(row[8]),
            )
            for row in self._query(sql)
        ]

    def clear(self) -> None:
        with self._lock:
            try:
                conn = self._connection()
                conn.execute("BEGIN IMMEDIATE")
                try:
                    conn.execute("DELETE FROM access_cors_events")
                    conn.execute("DELETE FROM access_cors_workers")
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
            except (sqlite3.Error, OSError):
                self._discard_connection()
                raise

    def close(self) -> None:
        with self._lock:
            if self._pid == os.getpid():
                self._discard_connection()


# -- Redis ------------------------------------------------------------------

# Stores a heartbeat unless the stored one has more flushes (a late duplicate of
# an older write), and keeps only the ARGV[5] most recently written heartbeats.
# KEYS: the heartbeat hash (worker id -> JSON), the sorted set (worker id -> time).
# ARGV: worker id, JSON, flushes, last flush (epoch seconds), how many to keep.
_HEARTBEAT_LUA = """
local old = redis.call('HGET', KEYS[1], ARGV[1])
if old then
  local ok, stored = pcall(cjson.decode, old)
  if ok and type(stored) == 'table' and tonumber(stored['flushes'])
     and tonumber(stored['flushes']) > tonumber(ARGV[3]) then
    return 0
  end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[1])
local keep = tonumber(ARGV[5])
local stale = redis.call('ZRANGE', KEYS[2], 0, -(keep + 1))
if #stale > 0 then
  redis.call('HDEL', KEYS[1], unpack(stale))
  redis.call('ZREMRANGEBYRANK', KEYS[2], 0, -(keep + 1))
end
return 1
"""


def _member(event: Event) -> str:
    """The sorted-set member of an event: the same event always gives the same text,
    so writing a batch twice leaves one member per event (ZADD only updates its score)."""
    return json.dumps(event.to_dict(), separators=(",", ":"))


class RedisStore:
    """Events in a Redis sorted set, for applications running on several hosts.

    The set's score is the event time, so searches are newest first across
    hosts, ``since`` is answered by Redis, and trimming to ``retention``
    (``ZREMRANGEBYRANK``, in the same ``MULTI``/``EXEC`` transaction as
    ``ZADD``) removes the oldest events.  Members are the events' JSON (unique
    through their id, and the same text for the same event), so writing a
    batch twice stores it once: writes are idempotent.

    Short socket timeouts (``timeout``, 0.5 s for connecting and for each
    reply) make a stopped or hung server fail fast.  What a failure means is
    told apart: when no connection could be made, or Redis refused the
    transaction, nothing was written and :meth:`write` raises that error; when
    the transaction was sent but its reply did not come (a timeout, a
    connection closed by a server shutting down), it may have been applied,
    and :meth:`write` raises :class:`WriteOutcomeUnknown` so that the log
    writes it again later instead of counting it as dropped.  The connection
    of such a write is closed (its reply may still arrive).

    Heartbeats (:class:`WorkerStatus`) live in the hash ``<key>:workers``,
    with ``<key>:workers:seen`` ordering them for trimming.
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
        self.workers_key = f"{key}:workers"
        self._seen_key = f"{key}:workers:seen"
        self._redis = redis
        self._client: redis.Redis = redis.Redis.from_url(
            url,
            socket_connect_timeout=timeout,
            socket_timeout=timeout,
            # Connecting is retried once at once; commands are sent by write()
            # itself, which knows when a retry is safe.
            retry=Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,)),
            decode_responses=True,
        )

    def write(self, events: Sequence[Event], worker: WorkerStatus | None = None) -> None:
        if not events and worker is None:
            return
        commands: list[tuple[object, ...]] = [("MULTI",)]
        if events:
            pairs: list[object] = []
            for event in events:
                pairs += [event.time.timestamp(), _member(event)]
            commands.append(("ZADD", self.key, *pairs))
            commands.append(("ZREMRANGEBYRANK", self.key, 0, -(self.retention + 1)))
        if worker is not None:
            commands.append((
                "EVAL", _HEARTBEAT_LUA, 2, self.workers_key, self._seen_key, worker.worker_id,
                json.dumps(worker.to_dict(), separators=(",", ":")), worker.flushes,
                worker.last_flush.timestamp(), MAX_WORKERS,
            ))
        commands.append(("EXEC",))
        replies = self._transaction(commands)
        if events and isinstance(replies[0], Exception):
            raise replies[0]  # e.g. WRONGTYPE: the ZADD did nothing
        if worker is not None and isinstance(replies[-1], Exception):
            _logger.debug("storing the heartbeat in Redis failed: %s", replies[-1])

    def _transaction(self, commands: list[tuple[object, ...]]) -> list[Any]:
        """Send one MULTI ... EXEC on a connection of our own; EXEC's results.

        The pool hands out a connected, clean connection (it reconnects a
        stale one), so an error getting it means nothing was sent.
        """
        redis = self._redis
        pool = self._client.connection_pool
        conn: Any  # redis-py's connection methods are untyped
        try:
            conn = pool.get_connection()
        except TypeError:  # pragma: no cover - redis-py < 5.3 wants a command name
            conn = pool.get_connection("MULTI")
        try:
            replies: list[Any] = []
            try:
                conn.send_packed_command(conn.pack_commands(commands), check_health=False)
                for _ in commands:
                    try:
                        replies.append(conn.read_response())
                    except redis.ResponseError as exc:  # an error reply: still in step
                        replies.append(exc)
            except (redis.TimeoutError, redis.ConnectionError, OSError) as exc:
                # Sent, or partly sent, with no reply: EXEC may have run.  The
                # connection goes, so that a late reply is never read as another's.
                conn.disconnect()
                raise WriteOutcomeUnknown(
                    f"no reply from Redis ({type(exc).__name__}: {exc}); "
                    "the batch may have been written"
                ) from exc
        finally:
            pool.release(conn)
        result = replies[-1]
        if isinstance(result, list):
            return result
        # EXECABORT: a command was refused while queued (READONLY, OOM, ...), so
        # nothing ran.  The first error says why.
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        raise redis.ResponseError(f"the transaction was not executed ({result!r})")

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

    def workers(self) -> list[WorkerStatus]:
        found: list[WorkerStatus] = []
        for text in self._client.hvals(self.workers_key):
            try:
                found.append(WorkerStatus.from_dict(json.loads(text)))
            except (ValueError, TypeError):
                _logger.debug("skipping a corrupt heartbeat in Redis key %r", self.workers_key)
        return _newest_workers(found)

    def clear(self) -> None:
        self._client.delete(self.key, self.workers_key, self._seen_key)

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
