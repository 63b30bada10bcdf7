"""Direct WSGI calls: cheap per-request environs and fully drained responses.

Each request gets its own environ: a shallow copy of a template built once,
a fresh ``wsgi.input``, and optionally the ``i``-th value of a few varying
keys (distinct tokens or origins). Every variant of a scenario uses the same
kind of factory, so the harness costs the same for all of them.
"""

from __future__ import annotations

import io
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "HOST",
    "ROOT",
    "Capture",
    "Requests",
    "WSGIApp",
    "call",
    "environ_template",
    "null_app",
    "timed_batch",
]

#: The repository (what ``python -m bench...`` child processes run in).
ROOT = Path(__file__).resolve().parent.parent
#: What the apps see as their own host: cross-origin requests come from elsewhere.
HOST = "api.example.com"

Environ = dict[str, Any]
StartResponse = Callable[..., Callable[[bytes], object]]
WSGIApp = Callable[[Environ, StartResponse], Iterable[bytes]]


def environ_template(
    method: str,
    path: str,
    headers: Mapping[str, str] | None = None,
    *,
    query: str = "",
    scheme: str = "https",
) -> Environ:
    """A complete WSGI environ (PEP 3333) without ``wsgi.input``."""
    env: Environ = {
        "REQUEST_METHOD": method,
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "SERVER_NAME": HOST,
        "SERVER_PORT": "443" if scheme == "https" else "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "192.0.2.10",
        "REMOTE_PORT": "50000",
        "HTTP_HOST": HOST,
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": scheme,
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    for name, value in (headers or {}).items():
        key = name.upper().replace("-", "_")
        env[key if key in ("CONTENT_TYPE", "CONTENT_LENGTH") else "HTTP_" + key] = value
    return env


class Requests:
    """Environ number ``i``: the template's copy, a fresh body, the i-th varying values."""

    __slots__ = ("template", "varying")

    def __init__(
        self, template: Environ, varying: Mapping[str, Sequence[str]] | None = None
    ) -> None:
        self.template = template
        self.varying: tuple[tuple[str, Sequence[str]], ...] = tuple((varying or {}).items())
        for key, values in self.varying:
            if not values:
                raise ValueError(f"no values for varying key {key}")

    def __call__(self, i: int) -> Environ:
        env = self.template.copy()
        env["wsgi.input"] = io.BytesIO(b"")
        for key, values in self.varying:
            env[key] = values[i % len(values)]
        return env


def _write(data: bytes) -> None:
    """The legacy ``write`` callable: nothing in these apps uses it."""


class Capture:
    """A ``start_response`` that keeps the status and headers of the last response."""

    __slots__ = ("headers", "status")

    def __init__(self) -> None:
        self.status = ""
        self.headers: list[tuple[str, str]] = []

    def __call__(
        self, status: str, headers: list[tuple[str, str]], exc_info: Any = None
    ) -> Callable[[bytes], None]:
        self.status = status
        self.headers = headers
        return _write


def call(app: WSGIApp, environ: Environ) -> tuple[int, list[tuple[str, str]], bytes]:
    """One request: ``(status code, headers, body)``, the iterable drained and closed."""
    capture = Capture()
    body = app(environ, capture)
    try:
        data = b"".join(body)
    finally:
        close = getattr(body, "close", None)
        if close is not None:
            close()
    return int(capture.status.split(" ", 1)[0]), capture.headers, data


def timed_batch(app: WSGIApp, requests: Requests, start: int, n: int) -> tuple[int, int]:
    """``(wall, cpu)`` nanoseconds for requests ``start .. start+n-1``, bodies drained and closed.

    ``cpu`` is the process's CPU time (all its threads): on a shared machine it
    leaves out the time the process waited for a core.
    """
    capture = Capture()
    clock, cpu = time.perf_counter_ns, time.process_time_ns
    c0 = cpu()
    t0 = clock()
    for i in range(start, start + n):
        body = app(requests(i), capture)
        for _chunk in body:
            pass
        close = getattr(body, "close", None)
        if close is not None:
            close()
    t1 = clock()
    return t1 - t0, cpu() - c0


def null_app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    """The cheapest WSGI app: what the harness itself costs per request."""
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
    return [b"ok"]
