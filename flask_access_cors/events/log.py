"""The event log: record denials without ever slowing down or failing a request.

:meth:`EventLog.record` is called on the request path, so it only does
in-memory work: a rate limiter folds bursts of identical denials into one
summary event, and what remains goes onto a bounded queue.  A daemon thread
drains the queue in batches into the :class:`~.stores.Store`.  When the queue
is full or the store fails, events are counted in :attr:`EventLog.dropped`
instead, so the accounting holds for every process::

    recorded == written + dropped + pending

where ``recorded`` is the sum of the counts given to :meth:`record` (one per
denial), ``written`` the sum of the ``count`` of the events the store took,
and ``pending`` what is still queued, in a rate-limit window, or in a write
whose outcome is not known yet.  A write that may have been applied although
it failed (:class:`~.stores.WriteOutcomeUnknown`, e.g. a Redis timeout) is
kept and written again, which is harmless (store writes are idempotent),
until the store answers: it is counted once, never as both written and
dropped.  ``pending`` is 0 after :meth:`EventLog.flush` or :meth:`EventLog.close`
returned True, except in a process killed before it could flush (``SIGKILL``):
its heartbeat (:meth:`EventLog.workers`) shows how far it had come.
"""

from __future__ import annotations

import atexit
import dataclasses
import logging
import os
import queue
import socket
import threading
import time
import uuid
import weakref
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta, timezone

from .model import REASONS, Event
from .stores import Store, WorkerStatus, WorkerStore, WriteOutcomeUnknown

__all__ = ["EventLog"]

_logger = logging.getLogger("flask_access_cors")

_Key = tuple[str, str, str, str | None]


def _key(event: Event) -> _Key:
    """Denials are "identical" when reason, method, path and origin agree (SPEC 6)."""
    return (event.reason, event.method, event.path, event.origin)


# -- rate limiting ----------------------------------------------------------


class _Window:
    """An open window of one key: when it started, and what it swallowed since."""

    __slots__ = ("last", "started", "suppressed")

    def __init__(self, started: float) -> None:
        self.started = started
        self.suppressed = 0
        self.last: Event | None = None


def _summary(window: _Window) -> list[Event]:
    """The summary event of a closing window, if it suppressed anything.

    It carries the fields of the last suppressed denial (its time, status,
    address, ...), a new id, ``count`` = the number suppressed and the message
    prefixed with ``"N similar events suppressed: "``.
    """
    if window.last is None:
        return []
    last, n = window.last, window.suppressed
    return [
        dataclasses.replace(
            last,
            id=uuid.uuid4().hex,
            count=n,
            message=f"{n} similar events suppressed: {last.message}",
        )
    ]


class _RateLimiter:
    """Folds bursts of identical denials; the caller holds the log's lock.

    Window semantics: the first denial of a key is let through and opens a
    window of ``window`` seconds.  Identical denials inside it are only
    counted.  The window closes when the next denial of that key arrives after
    it (the summary goes out, then that denial is let through and opens a new
    window), when :meth:`expire` finds it over (the writer thread's tick), when
    :meth:`drain` is called (flush/close), or when more than ``max_keys``
    windows are open (the oldest is closed early), which bounds memory.
    A window that suppressed nothing closes silently.
    """

    def __init__(self, window: float, max_keys: int) -> None:
        self.window = window
        self.max_keys = max_keys
        # Ordered by `started`: a key whose window restarts moves to the end.
        self._open: OrderedDict[_Key, _Window] = OrderedDict()

    def admit(self, event: Event, now: float) -> list[Event]:
        """What to queue for ``event`` arriving at ``now``: it, summaries, or nothing."""
        if self.window <= 0:
            return [event]
        key = _key(event)
        current = self._open.get(key)
        if current is not None and now - current.started < self.window:
            current.suppressed += event.count
            current.last = event
            return []
        out: list[Event] = []
        if current is not None:
            out += _summary(self._open.pop(key))
        self._open[key] = _Window(now)
        while len(self._open) > self.max_keys:
            out += _summary(self._open.popitem(last=False)[1])
        out.append(event)
        return out

    def expire(self, now: float) -> list[Event]:
        """Close every window that is over, oldest first."""
        out: list[Event] = []
        while self._open:
            key, window = next(iter(self._open.items()))
            if now - window.started < self.window:
                break  # the rest started later still
            del self._open[key]
            out += _summary(window)
        return out

    def drain(self) -> list[Event]:
        """Close every window now."""
        out: list[Event] = []
        for window in self._open.values():
            out += _summary(window)
        self._open.clear()
        return out


# -- process-wide bookkeeping -----------------------------------------------

# Live logs, for the fork and exit hooks.  Weak: a log nobody uses can go away.
_LIVE: weakref.WeakSet[EventLog] = weakref.WeakSet()


def _close_all_at_exit() -> None:
    """Flush every live log when the interpreter exits (e.g. a gunicorn worker exits)."""
    for log in list(_LIVE):
        log.close()


def _reset_all_in_child() -> None:
    for log in list(_LIVE):
        log._reset_for_process()


atexit.register(_close_all_at_exit)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_all_in_child)

# Wakes the writer without being an event (close() uses it).
_WAKE = object()


class EventLog:
    """Non-blocking, rate-limited, accounted recording of denials.

    ``queue_size`` bounds the events waiting to be written; ``window`` is the
    rate limiter's window in seconds (``0`` turns it off); ``flush_interval``
    is how often the writer thread wakes up to close expired windows and to
    retry writes of unknown outcome; ``clock`` is the limiter's (and the
    outage log's) monotonic clock (tests pass a fake one); ``batch_size`` caps
    one :meth:`Store.write`; ``max_keys`` caps the open rate-limit windows.

    Failures are logged once per outage: a WARNING when a write first fails,
    and an INFO ("works again") once writes succeed and none has failed for
    ``quiet_period`` seconds, or when the log is closed after a successful
    write.  A store that fails now and then (a nearly full disk, a flapping
    network) is one outage until it has been quiet that long.  Each process
    logs its own outages.

    Rate limiting is per process: each worker folds its own repeats, so a
    burst spread over N workers is written as up to N first events and N
    summaries.

    Fork safety: the writer thread and queue belong to one process.  A forked
    child (gunicorn with ``--preload``) starts with an empty queue, a fresh
    limiter, zeroed counters and no thread; its first :meth:`record` starts
    its own writer.  Events the parent had queued are written by the parent.
    """

    def __init__(
        self,
        store: Store,
        *,
        queue_size: int = 10000,
        window: float = 1.0,
        flush_interval: float = 0.25,
        clock: Callable[[], float] = time.monotonic,
        batch_size: int = 500,
        max_keys: int = 1000,
        quiet_period: float = 30.0,
    ) -> None:
        for name, number in (("queue_size", queue_size), ("batch_size", batch_size)):
            if number < 1:
                raise ValueError(f"{name} must be >= 1, not {number}")
        if max_keys < 1:
            raise ValueError(f"max_keys must be >= 1, not {max_keys}")
        if window < 0:
            raise ValueError(f"window must be >= 0 seconds, not {window}")
        if flush_interval <= 0:
            raise ValueError(f"flush_interval must be > 0 seconds, not {flush_interval}")
        if quiet_period < 0:
            raise ValueError(f"quiet_period must be >= 0 seconds, not {quiet_period}")
        self.store = store
        # Heartbeats need a store that keeps them (all built-in stores do).
        self._worker_store: WorkerStore | None = store if isinstance(store, WorkerStore) else None
        self._queue_size = queue_size
        self._window = window
        self._flush_interval = flush_interval
        self._clock = clock
        self._batch_size = batch_size
        self._max_keys = max_keys
        self._quiet_period = quiet_period
        self._host = socket.gethostname()
        self._closed = False
        self._reset_for_process()
        _LIVE.add(self)

    def _reset_for_process(self) -> None:
        """Per-process state: everything a forked child must not share with its parent."""
        self._pid = os.getpid()
        self._started = datetime.now(timezone.utc)
        self._lock = threading.Lock()  # guards the limiter, the counters and _thread
        self._progress = threading.Condition(self._lock)
        self._queue: queue.Queue[Event | object] = queue.Queue(self._queue_size)
        self._limiter = _RateLimiter(self._window, self._max_keys)
        self._recorded = 0  # denials given to record()
        self._written = 0  # denials the store took
        self._dropped = 0
        self._flushes = 0  # batches written
        self._enqueued = 0  # events put on the queue
        self._finished = 0  # events taken off it and written or counted as dropped
        # Batches whose write may or may not have been applied, oldest first;
        # only the writer thread (or close(), once it is gone) touches them.
        self._unknown: deque[list[Event]] = deque()
        self._unknown_events = 0
        self._retry_at = 0.0  # time.monotonic() of the next retry of _unknown
        # Outage bookkeeping (clock() times): see _failed() and _check_recovered().
        self._failing = False
        self._last_failure = 0.0
        self._ok_since_failure = False
        self._outage_began = self._started
        self._outage_failures = 0
        self._dropped_before_outage = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_tick = self._clock()

    # -- recording (request path) -------------------------------------------

    def record(self, event: Event) -> None:
        """Queue a denial; never blocks, never raises.

        What cannot be queued (full queue, closed log, any unexpected error) is
        counted in :attr:`dropped`.
        """
        counted = False
        try:
            if self._pid != os.getpid():
                self._reset_for_process()  # a fork without the at-fork hook
            if self._closed:
                with self._lock:
                    self._recorded += event.count
                    self._dropped += event.count
                return
            now = self._clock()
            with self._lock:
                self._recorded += event.count
                counted = True
                for ready in self._limiter.admit(event, now):
                    self._enqueue_locked(ready)
                self._start_writer_locked()
        except Exception:
            self._count_lost(event, counted)

    def _count_lost(self, event: Event, counted: bool) -> None:
        """Last resort of :meth:`record`: account for the event.

        Logging does not raise (handler errors go to ``Handler.handleError``).
        """
        count = getattr(event, "count", 1)
        with self._lock:
            if not counted:
                self._recorded += count
            self._dropped += count
        _logger.exception("flask-access-cors: recording a debug event failed")

    def _enqueue_locked(self, event: Event) -> None:
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            self._dropped += event.count
        else:
            self._enqueued += 1

    def _start_writer_locked(self) -> bool:
        """Start this process's writer thread; False when threads cannot start
        (e.g. during interpreter shutdown), in which case flush() writes inline."""
        if self._thread is not None and self._thread.is_alive():
            return True
        thread = threading.Thread(
            target=self._run, name="flask-access-cors-events", daemon=True
        )
        try:
            thread.start()
        except RuntimeError:
            return False
        self._thread = thread
        return True

    # -- the writer thread ----------------------------------------------------

    def _run(self) -> None:
        while True:
            self._retry_unknown()
            if self._unknown_events >= self._queue_size:
                # As many events of unknown outcome as the queue holds: leave the
                # queue alone until they are settled; record() counts the overflow.
                if self._stop.wait(self._flush_interval):
                    return
                self._tick()
                continue
            batch = self._take_batch()
            self._tick()
            if batch:
                self._write(batch)
            elif self._stop.is_set():
                return

    def _take_batch(self, block: bool = True) -> list[Event]:
        """Up to ``batch_size`` queued events, waiting at most one flush interval."""
        batch: list[Event] = []
        try:
            item = self._queue.get(block, self._flush_interval if block else None)
            while True:
                if isinstance(item, Event):
                    batch.append(item)
                if len(batch) >= self._batch_size:
                    break
                item = self._queue.get_nowait()
        except queue.Empty:
            pass
        return batch

    def _tick(self) -> None:
        """Close expired rate-limit windows, at most once per flush interval."""
        now = self._clock()
        if now - self._last_tick < self._flush_interval:
            return
        self._last_tick = now
        with self._lock:
            for summary in self._limiter.expire(now):
                self._enqueue_locked(summary)
        self._check_recovered()

    def _heartbeat(self, batch: Sequence[Event], closed: bool = False) -> WorkerStatus:
        """This process's status as it will be once ``batch`` is written."""
        with self._lock:
            return WorkerStatus(
                host=self._host,
                pid=self._pid,
                started=self._started,
                last_flush=datetime.now(timezone.utc),
                recorded=self._recorded,
                written=self._written + sum(event.count for event in batch),
                dropped=self._dropped,
                flushes=self._flushes + (1 if batch else 0),
                closed=closed,
            )

    def _store_write(self, batch: Sequence[Event]) -> None:
        if self._worker_store is not None:
            self._worker_store.write(batch, worker=self._heartbeat(batch))
        else:
            self.store.write(batch)

    def _write(self, batch: list[Event]) -> None:
        """Write one batch; on failure count it as dropped, or keep it when its
        outcome is unknown.

        The outcome is logged before the batch counts as finished, so whoever
        waits in :meth:`flush` also sees the warning.
        """
        try:
            self._store_write(batch)
        except WriteOutcomeUnknown as exc:
            self._failed(exc)
            with self._lock:
                self._unknown.append(batch)
                self._unknown_events += len(batch)
            self._retry_at = time.monotonic() + self._flush_interval
        except Exception as exc:
            self._failed(exc)
            self._finish(batch, written=False)
        else:
            self._succeeded()
            self._finish(batch, written=True)

    def _retry_unknown(self) -> None:
        """Write the batches of unknown outcome again, oldest first, when due.

        Writing them again is harmless (store writes are idempotent), and once
        it succeeds each event is in the store exactly once.  Until then they
        are neither written nor dropped, whatever the retry's error: the first
        attempt may have been applied.
        """
        if not self._unknown or time.monotonic() < self._retry_at:
            return
        while self._unknown:
            batch = self._unknown[0]
            try:
                self._store_write(batch)
            except Exception as exc:
                self._failed(exc)
                self._retry_at = time.monotonic() + self._flush_interval
                return
            with self._lock:
                self._unknown.popleft()
                self._unknown_events -= len(batch)
            self._succeeded()
            self._finish(batch, written=True)

    def _failed(self, exc: Exception) -> None:
        """A write failed: start an outage (one WARNING) unless one is going on."""
        now = self._clock()
        with self._lock:
            self._last_failure = now
            self._ok_since_failure = False
            first = not self._failing
            if first:
                self._failing = True
                self._outage_began = datetime.now(timezone.utc)
                self._outage_failures = 0
                self._dropped_before_outage = self._dropped
            self._outage_failures += 1
        if first:
            _logger.warning(
                "flask-access-cors: the debug event store %s failed (%s: %s); "
                "events are counted in access.events.dropped until it works again "
                "(writes that may have been applied are retried instead); "
                "logged once per outage",
                type(self.store).__name__,
                type(exc).__name__,
                exc,
            )

    def _succeeded(self) -> None:
        with self._lock:
            if self._failing:
                self._ok_since_failure = True
        self._check_recovered()

    def _check_recovered(self, *, closing: bool = False) -> None:
        """End the outage (one INFO) once writes succeed and ``quiet_period`` passed
        without a failure; on closing, as soon as the last write succeeded."""
        with self._lock:
            if not (self._failing and self._ok_since_failure):
                return
            if not closing and self._clock() - self._last_failure < self._quiet_period:
                return
            self._failing = False
            failures = self._outage_failures
            dropped = self._dropped - self._dropped_before_outage
            began = self._outage_began
        _logger.info(
            "flask-access-cors: the debug event store %s works again "
            "(outage since %s: %d failed writes, %d events dropped)",
            type(self.store).__name__,
            began.isoformat(timespec="seconds"),
            failures,
            dropped,
        )

    def _finish(self, batch: list[Event], *, written: bool) -> None:
        """Account for a processed batch and wake flush()."""
        count = sum(event.count for event in batch)
        with self._lock:
            if written:
                self._written += count
                self._flushes += 1
            else:
                self._dropped += count
            self._finished += len(batch)
            self._progress.notify_all()

    # -- reading and control ----------------------------------------------------

    @property
    def dropped(self) -> int:
        """Denials of this process that were not written (full queue, failing store)."""
        return self._dropped

    def flush(self, timeout: float = 5.0) -> bool:
        """Close all rate-limit windows and wait until what is queued is processed.

        Returns True when every event queued before the call has been written
        or counted as dropped within ``timeout`` seconds (a write of unknown
        outcome is waited for until it is settled).
        """
        if timeout < 0:
            raise ValueError(f"timeout must be >= 0, not {timeout}")
        deadline = time.monotonic() + timeout
        if self._pid != os.getpid():
            self._reset_for_process()
        with self._lock:
            if self._stop.is_set():  # closed: nothing is queued or written any more
                return self._finished >= self._enqueued
            for summary in self._limiter.drain():
                self._enqueue_locked(summary)
            target = self._enqueued
            threaded = self._start_writer_locked()
        if not threaded:
            self._write_inline()
        with self._lock:
            while self._finished < target:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._progress.wait(remaining)
        return True

    def _write_inline(self) -> None:
        """Drain the queue on the calling thread (no writer thread available)."""
        self._retry_at = 0.0
        self._retry_unknown()
        while batch := self._take_batch(block=False):
            self._write(batch)

    def search(
        self,
        reason: str | None = None,
        status: int | None = None,
        path: str | None = None,
        origin: str | None = None,
        since: datetime | timedelta | None = None,
        limit: int = 100,
    ) -> list[Event]:
        """Events matching every given filter, newest first.

        ``since`` is an aware ``datetime`` or a ``timedelta`` back from now.
        ``path`` is a glob where only ``*`` is special; ``origin`` is exact; both
        match the stored (escaped) values.  Pending writes of this process are
        flushed first (waiting at most 2 s), so a caller sees its own denials.
        Raises :class:`ValueError` for bad arguments; store errors propagate.
        """
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValueError(f"limit must be a positive integer, not {limit!r}")
        if reason is not None and reason not in REASONS:
            raise ValueError(f"unknown reason code {reason!r}")
        if status is not None and (isinstance(status, bool) or not isinstance(status, int)):
            raise ValueError(f"status must be an integer, not {status!r}")
        for name, text in (("path", path), ("origin", origin)):
            if text is not None and not isinstance(text, str):
                raise ValueError(f"{name} must be a string, not {text!r}")
        cutoff: datetime | None
        if since is None:
            cutoff = None
        elif isinstance(since, timedelta):
            if since < timedelta(0):
                raise ValueError("since must not be a negative timedelta")
            cutoff = datetime.now(timezone.utc) - since
        elif isinstance(since, datetime):
            if since.tzinfo is None or since.utcoffset() is None:
                raise ValueError("since must be an aware datetime or a timedelta")
            cutoff = since.astimezone(timezone.utc)
        else:
            raise ValueError(f"since must be a datetime or a timedelta, not {since!r}")
        self.flush(timeout=2.0)
        return self.store.search(
            reason=reason, status=status, path=path, origin=origin, since=cutoff, limit=limit
        )

    def workers(self) -> list[WorkerStatus]:
        """The heartbeats of the processes writing to this store, newest first.

        One :class:`~flask_access_cors.events.WorkerStatus` per process that
        wrote events (the store keeps the 256 most recent), on every host
        sharing the store: ``host``, ``pid``, ``started``, ``last_flush``,
        ``recorded``, ``written``, ``dropped``, ``pending``, ``flushes`` and
        ``closed``.  A process that exited cleanly has ``closed=True`` and
        ``pending == 0``; one with ``closed=False`` is running, or died without
        closing its log (``SIGKILL``), and then its ``pending`` denials and
        those it recorded after ``last_flush`` were lost.  This process's
        pending writes are flushed first (waiting at most 2 s).  Empty for a
        custom store without heartbeats; store errors propagate.
        """
        self.flush(timeout=2.0)
        if self._worker_store is None:
            return []
        return self._worker_store.workers()

    def clear(self) -> None:
        """Forget every stored event and heartbeat (pending events first written, then removed).

        :attr:`dropped` is a process counter and is left as it is.
        """
        self.flush(timeout=2.0)
        self.store.clear()

    def close(self, timeout: float = 5.0) -> None:
        """Flush, stop the writer, write a last heartbeat and close the store.  Idempotent.

        Called for every live log when the interpreter exits.  Denials recorded
        after closing are counted as dropped.  Writes whose outcome is still
        unknown when the writer has stopped are counted as dropped (with a
        WARNING saying that they may be in the store as well).
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
        try:
            self.flush(timeout)
            self._stop.set()
            thread = self._thread
            if thread is not None and thread.ident != threading.get_ident():
                try:
                    self._queue.put_nowait(_WAKE)
                except queue.Full:
                    _logger.debug("the event writer is busy; it sees the stop after this batch")
                thread.join(timeout)
            if thread is None or not thread.is_alive():
                self._settle_at_close()
            try:
                self.store.close()
            except Exception:
                _logger.warning("flask-access-cors: closing the event store failed", exc_info=True)
        finally:
            _LIVE.discard(self)

    def _settle_at_close(self) -> None:
        """Account for what the stopped writer left, then write the last heartbeat."""
        # Whatever slipped in after the flush can no longer be written.
        while batch := self._take_batch(block=False):
            self._finish(batch, written=False)
        unknown = list(self._unknown)
        self._unknown.clear()
        self._unknown_events = 0
        for batch in unknown:
            self._finish(batch, written=False)
        if unknown:
            _logger.warning(
                "flask-access-cors: %d debug events whose write to %s timed out could not be "
                "confirmed before closing; they are counted as dropped and may be in the "
                "store as well",
                sum(event.count for batch in unknown for event in batch),
                type(self.store).__name__,
            )
        self._check_recovered(closing=True)
        if self._worker_store is not None and self._recorded:
            try:
                self._worker_store.write([], worker=self._heartbeat([], closed=True))
            except Exception:
                # Nothing is lost but the heartbeat: the process shows as not closed.
                _logger.debug("writing the last heartbeat failed", exc_info=True)
