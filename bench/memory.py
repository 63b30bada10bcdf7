"""Memory over a long run: distinct tokens and origins must not grow the process.

Run in a fresh interpreter (``python -m bench.memory``) so that nothing the
other scenarios allocated counts. The app is the full configuration: a gate
with RS256 tokens from a loopback JWKS, exact and wildcard origins, and the
debug event log on (SQLite). Each request has a new origin (under a wildcard),
and a token from a cycle much longer than the verified-token cache, so every
request is a cache miss that inserts (and evicts). Every 8th request comes from
a new, disallowed origin and every 16th (a different one) carries no token, so the event log's
queue, rate limiter and store all fill up to their bounds. RSS (VmRSS) and peak
RSS (VmHWM) are read from ``/proc/self/status`` at intervals.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

__all__ = ["main", "read_status", "run"]


def read_status() -> tuple[int, int]:
    """``(VmRSS, VmHWM)`` in KiB, from ``/proc/self/status``."""
    rss = hwm = 0
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
            elif line.startswith("VmHWM:"):
                hwm = int(line.split()[1])
    return rss, hwm


def run(requests: int, tokens: int, every: int) -> dict[str, Any]:
    from . import apps
    from .jwks import AUDIENCE, ISSUER, JWKSServer, SigningKey
    from .wsgi import Requests, call, environ_template, timed_batch

    key = SigningKey()
    t0 = time.perf_counter()
    cycle = key.tokens(tokens, prefix="m")
    signing_s = time.perf_counter() - t0
    server = JWKSServer(key.jwks())
    tmp = tempfile.TemporaryDirectory(prefix="flask-access-cors-mem-")
    try:
        app = apps.access_cors_app(
            [*apps.many_exact_origins(1_000), *apps.many_wildcard_origins(1_000)],
            gate=True, jwks_url=server.url, audience=AUDIENCE, issuer=ISSUER,
            debug=True, event_store=f"sqlite:///{Path(tmp.name) / 'events.sqlite3'}",
        )
        origins, cookies = [], []
        for i in range(max(requests, 1)):
            if i % 8 == 7:
                origins.append(f"https://x{i}.evil.example.org")
            else:
                origins.append(f"https://u{i}.tenant{i % 1_000}.example.net")
        for i in range(len(cycle)):
            cookies.append("theme=dark" if i % 16 == 10 else f"CF_Authorization={cycle[i]}")
        env = environ_template("GET", "/api/private", {"Origin": apps.ORIGIN})
        reqs = Requests(env, {"HTTP_ORIGIN": origins, "HTTP_COOKIE": cookies})
        access = app.extensions["bench.access"]
        # What the mix looks like (these requests are served again, timed, below).
        mix = Counter(call(app, reqs(i))[0] for i in range(min(requests, 64)))
        gc.collect()
        samples: list[dict[str, float]] = []
        rss, hwm = read_status()
        samples.append({"requests": 0, "rss_kib": rss, "hwm_kib": hwm, "seconds": 0.0})
        start, done = time.perf_counter(), 0
        while done < requests:
            n = min(every, requests - done)
            timed_batch(app, reqs, done, n)
            done += n
            rss, hwm = read_status()
            samples.append({"requests": done, "rss_kib": rss, "hwm_kib": hwm,
                            "seconds": round(time.perf_counter() - start, 2)})
        elapsed = time.perf_counter() - start
        with app.app_context():
            log = access.events
            log.flush()
            dropped = log.dropped
            log.close()
        rss, hwm = read_status()
        verifier = getattr(getattr(app.extensions.get("access_cors"), "gate", None), "verifier", None)
        cached = getattr(verifier, "_cache", None)  # diagnostics only: the cache's current size
        return {
            "requests": requests,
            "token_cycle": tokens,
            "signing_seconds": round(signing_s, 2),
            "seconds": round(elapsed, 2),
            "us_per_request": round(elapsed / max(requests, 1) * 1e6, 1),
            "events_dropped": dropped,
            "status_mix": {str(k): v for k, v in sorted(mix.items())},
            "token_cache_entries": len(cached) if cached is not None else None,
            "samples": samples,
            "final_rss_kib": rss,
            "final_hwm_kib": hwm,
        }
    finally:
        server.close()
        tmp.cleanup()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.memory", description=__doc__)
    parser.add_argument("--requests", type=int, default=200_000)
    parser.add_argument("--tokens", type=int, default=8_192, help="distinct tokens, cycled")
    parser.add_argument("--every", type=int, default=10_000, help="sample RSS every N requests")
    args = parser.parse_args(argv)
    json.dump(run(args.requests, args.tokens, args.every), sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
