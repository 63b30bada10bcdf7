"""Prometheus metrics: every denial counted by reason, policy and status.

One counter in ``prometheus_client``'s default registry, created on first use
(registering it twice would be an error, and several apps in one process share
it). Labels never hold a raw origin or path: policy names come from the app's
own configuration, so the label set is bounded. Under gunicorn,
``prometheus_client``'s multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``) works
as it documents: each worker writes its own file and a collector sums them.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from prometheus_client import Counter

__all__ = ["denials"]

_lock = threading.Lock()
_counter: Counter | None = None


def denials() -> Counter:
    """The counter ``flask_access_cors_denials_total{reason, policy, status}``."""
    global _counter
    with _lock:
        if _counter is None:
            from prometheus_client import Counter

            _counter = Counter(
                "flask_access_cors_denials",
                "Requests refused by flask-access-cors, by reason code, policy and status.",
                ["reason", "policy", "status"],
            )
        return _counter
