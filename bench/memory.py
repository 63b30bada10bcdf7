"""Memory over a long run, by tracemalloc, in a fresh process: ``python -m bench.memory N`` (JSON out).

The full configuration: the gate (HS256 tokens from ``jwt_secret``, so every
request can carry a token never seen before), 1,000 exact origins and 1,000
wildcards, the debug event log on (SQLite). Request ``i`` comes from a new
origin with a new token; every 8th from a new disallowed origin (a new debug
event), every 16th without a token (401). The bounded caches fill in the first
half: the second half should not grow.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
import tracemalloc
from collections import Counter

from . import apps
from .scenarios import Requests, get


def run(requests: int) -> dict[str, object]:
    tmp = tempfile.TemporaryDirectory(prefix="bench-memory-")
    app = apps.access_cors_app(apps.exact_origins(1_000) + apps.wildcard_origins(1_000), gate=True,
                               jwt_secret="s" * 40, debug=True, event_store=f"sqlite:///{tmp.name}/e.sqlite3")
    access, template, statuses = app.extensions[apps.KEY], Requests(get(path="/api/private")), Counter[str]()

    def serve(first: int, n: int) -> None:
        with app.app_context():  # for issue_token(); each request still pushes its own context
            for i in range(first, first + n):
                env = template(i)
                env["HTTP_ORIGIN"] = (f"https://x{i}.evil.example.org" if i % 8 == 7
                                      else f"https://u{i}.tenant{i % 1_000}.example.net")
                token = access.issue_token(f"m{i}")  # a new one every time
                env["HTTP_COOKIE"] = "theme=dark" if i % 16 == 10 else f"CF_Authorization={token}"
                body = app(env, lambda status, headers, exc_info=None: statuses.update([status[:3]]))
                b"".join(body)
                body.close()

    def snapshot() -> tracemalloc.Snapshot:  # the event queue drained; without the snapshots' own memory
        with app.app_context():
            access.events.flush()
        return tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)])

    tracemalloc.start()
    serve(-1_000, 1_000)  # warm-up: imports, lazy set-up, first allocations
    start, began = tracemalloc.get_traced_memory()[0], time.perf_counter()
    serve(0, requests // 2)
    half = snapshot()
    serve(requests // 2, requests - requests // 2)
    end, seconds = snapshot(), time.perf_counter() - began
    with app.app_context():
        access.events.close()
    tracemalloc.stop()
    tmp.cleanup()
    diff = end.compare_to(half, "lineno")
    return {"requests": requests, "seconds": round(seconds, 1), "statuses": dict(statuses),
            "start_kib": start / 1024, "half_kib": sum(s.size for s in half.statistics("filename")) / 1024,
            "growth_kib": sum(s.size_diff for s in diff) / 1024, "events_dropped": access.events.dropped,
            "top_growth": [f"{'/'.join(s.traceback[0].filename.split('/')[-2:])}:{s.traceback[0].lineno} "
                           f"{s.size_diff / 1024:+.0f} KiB" for s in diff[:3]]}


if __name__ == "__main__":
    json.dump(run(int(sys.argv[1]) if len(sys.argv) > 1 else 200_000), sys.stdout)
