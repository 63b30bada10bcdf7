"""The debug event log (SPEC section 6): why was this request denied?

Pure Python, no Flask: the extension builds an :class:`Event` for each denial
and hands it to an :class:`EventLog`, which writes it to a :class:`Store`
(``memory://``, ``sqlite:///PATH`` or ``redis://HOST:PORT/DB``, see
:func:`open_store`) from a background thread.  Each writing process also
leaves a heartbeat, a :class:`WorkerStatus`, listed by :meth:`EventLog.workers`.
"""

from .log import EventLog
from .model import REASONS, REQUEST_TYPES, Event, describe, escape, parse_duration
from .stores import (
    MemoryStore,
    RedisStore,
    SQLiteStore,
    Store,
    WorkerStatus,
    WorkerStore,
    WriteOutcomeUnknown,
    open_store,
)

__all__ = [
    "REASONS",
    "REQUEST_TYPES",
    "Event",
    "EventLog",
    "MemoryStore",
    "RedisStore",
    "SQLiteStore",
    "Store",
    "WorkerStatus",
    "WorkerStore",
    "WriteOutcomeUnknown",
    "describe",
    "escape",
    "open_store",
    "parse_duration",
]
