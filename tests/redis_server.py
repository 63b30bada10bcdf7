"""A throw-away redis-server on a free loopback port, for the event-store tests.

The server keeps nothing on disk (``--save '' --appendonly no``) unless it
is made ``persistent`` (an append-only file synced on every write, so that
what it acknowledged survives a restart), and can be stopped and started
again on the same port, to test what the Redis event store does while its
server is away.  ``debug_command=True`` allows ``DEBUG SLEEP`` (Redis 7
refuses ``DEBUG`` by default), to make the server hang on purpose.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

import pytest


def require_redis_server() -> str:
    """Path of redis-server.  Missing: fail when CI == "true", skip otherwise."""
    found = shutil.which("redis-server")
    if found:
        return found
    message = (
        "redis-server is not installed (Debian package redis-server; "
        "`make test` installs it when run as root)"
    )
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def free_port() -> int:
    """A TCP port nobody listens on right now, on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def ping(port: int, timeout: float = 0.5) -> bool:
    """True when a Redis server answers PING on the port."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """One redis-server process; :meth:`start` / :meth:`stop` may be repeated."""

    def __init__(
        self,
        binary: str,
        directory: Path,
        port: int | None = None,
        *,
        persistent: bool = False,
        debug_command: bool = False,
    ) -> None:
        self.binary = binary
        self.directory = directory
        self.port = port or free_port()
        self.persistent = persistent
        self.debug_command = debug_command
        self._process: subprocess.Popen[bytes] | None = None
        self._log = directory / f"redis-{self.port}.log"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        assert self._process is None, "already running"
        storage = ["--appendonly", "yes", "--appendfsync", "always"] if self.persistent else [
            "--appendonly", "no"]
        extra = ["--enable-debug-command", "yes"] if self.debug_command else []
        self._process = subprocess.Popen(
            [
                self.binary,
                "--save", "",
                *storage,
                *extra,
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--dir", str(self.directory),
                "--logfile", str(self._log),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while not ping(self.port):
            if self._process.poll() is not None or time.monotonic() > deadline:
                log = self._log.read_text() if self._log.exists() else ""
                self.stop()
                raise RuntimeError(f"redis-server did not come up on port {self.port}:\n{log}")
            time.sleep(0.02)

    def hang(self, seconds: float) -> None:
        """Make the server answer nobody for ``seconds`` (``DEBUG SLEEP``); returns when
        it answers again.  Needs ``debug_command=True``."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=seconds + 10) as sock:
            sock.sendall(f"DEBUG SLEEP {seconds}\r\n".encode())
            reply = sock.recv(64)
        assert reply.startswith(b"+OK"), reply

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
