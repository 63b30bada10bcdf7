"""``python -m example_app`` (``make demo``): serve the API and the SPA from one process.

``python -m example_app --edge`` (``make demo-edge``) runs the API behind a Cloudflare
Access stand-in instead (:mod:`example_app.edge_demo`).

Both origins listen on loopback only. Ports: ``DEMO_API_PORT`` (5001) and
``DEMO_SPA_PORT`` (5002); ``DEMO_INSTANCE_PATH`` moves the instance folder (the
SQLite event store) away from ``instance/`` next to the package.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType

from werkzeug.serving import BaseWSGIServer, make_server

from . import API_PORT, SPA_PORT, create_api, create_spa

HOST = "127.0.0.1"


def _stop(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # SIGTERM stops as Ctrl+C does: servers shut down, events flushed


def _wait_for_ctrl_c(cleanup: Callable[[], None]) -> int:
    """Serve until Ctrl+C or SIGTERM, then run ``cleanup``."""
    signal.signal(signal.SIGTERM, _stop)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        print("\nstopping", flush=True)
    finally:
        cleanup()
    return 0


def edge_main() -> int:
    """``--edge``: the demo API behind the Cloudflare Access stand-in (example_app.edge)."""
    from .edge_demo import HOSTS, EdgeDemo

    port = int(os.environ.get("DEMO_EDGE_PORT", "8443"))
    try:
        running = EdgeDemo.start(port=port)
        demo = running.__enter__()
    except OSError as exc:
        print(f"example_app: cannot listen on port {port}: {exc}\nSet DEMO_EDGE_PORT to a free port.",
              file=sys.stderr)
        return 1
    rules = " ".join(f'"{arg}"' for arg in demo.chromium_args)
    print(
        "flask-access-cors behind a Cloudflare Access stand-in (DEMO ONLY)\n"
        f"  front end (app1):            {demo.urls['app1']}\n"
        f"  API, OPTIONS bypassed:       {demo.urls['bypass']}\n"
        f"  API, preflights blocked:     {demo.urls['block']}\n"
        f"  API, preflights at the edge: {demo.urls['respond']}\n"
        f"  team domain (login):         {demo.urls['team']}\n"
        f"  the origin, around the edge: http://127.0.0.1:{demo.origin_port}/api/me\n"
        "The hostnames resolve to loopback only inside a browser started with:\n"
        f"  chromium {rules} --user-data-dir=$(mktemp -d) {demo.urls['app1']}\n"
        f"Hostnames: {', '.join(HOSTS.values())}. Press Ctrl+C to stop.",
        flush=True,
    )
    return _wait_for_ctrl_c(lambda: running.__exit__(None, None, None))


def main() -> int:
    if "--edge" in sys.argv[1:]:
        return edge_main()
    api_origin = f"http://localhost:{API_PORT}"
    spa_origin = f"http://localhost:{SPA_PORT}"
    # DEMO_INSTANCE_PATH: where the SQLite event store goes (default: instance/ in the repo).
    instance = os.environ.get("DEMO_INSTANCE_PATH")
    api = create_api(
        api_origin=api_origin, spa_origin=spa_origin,
        instance_path=os.path.abspath(instance) if instance else None,
    )
    spa = create_spa(api_origin, allowed_origin=spa_origin)
    servers: list[BaseWSGIServer] = []
    try:
        for app, port in ((api, API_PORT), (spa, SPA_PORT)):
            servers.append(make_server(HOST, port, app, threaded=True))
    except OSError as exc:
        for server in servers:
            server.server_close()
        print(
            f"example_app: cannot listen on {HOST}: {exc}\n"
            "Set DEMO_API_PORT / DEMO_SPA_PORT to free ports.",
            file=sys.stderr,
        )
        return 1
    threads = [
        threading.Thread(target=server.serve_forever, name=f"demo-{server.port}", daemon=True)
        for server in servers
    ]
    for thread in threads:
        thread.start()
    print(
        "flask-access-cors demo (DEMO ONLY: any user name logs in)\n"
        f"  single-page app (allowed origin):   {spa_origin}/\n"
        f"  same page from a disallowed origin: http://127.0.0.1:{SPA_PORT}/\n"
        f"  API (login, gated /api/*):          {api_origin}/\n"
        f"  debug event log (loopback only):    {api_origin}/debug/events\n"
        f"  events from the CLI:                FLASK_APP=example_app:create_api "
        ".venv/bin/flask access-cors events\n"
        "Press Ctrl+C to stop.",
        flush=True,
    )
    def stop_servers() -> None:
        for server in servers:
            server.shutdown()
            server.server_close()

    return _wait_for_ctrl_c(stop_servers)


if __name__ == "__main__":
    sys.exit(main())
