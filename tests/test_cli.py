"""``flask access-cors``: events, check and routes, through Click's runner and a real process."""

from __future__ import annotations

import dataclasses
import json
import os
import select
import subprocess
import sys
import textwrap
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Blueprint, Flask

from flask_access_cors import AccessCors, ConfigError
from flask_access_cors.views import events_blueprint

APP = "https://app.example.com"
EVIL = "https://evil.example"
SECRET = "k" * 40


def build(store: str = "memory://") -> tuple[Flask, AccessCors, list[str]]:
    app = Flask(__name__)
    access = AccessCors(app, origins=[APP], debug=True, event_store=store, jwt_secret=SECRET,
                        excluded_paths=["/admin*"])
    ran: list[str] = []

    @app.route("/items", methods=["GET", "PUT"])
    def items() -> str:
        ran.append("items")
        return "items"

    @app.get("/private")
    @access.cors(gate=True)
    def private() -> str:
        ran.append("private")
        return "private"

    @app.get("/hook")
    @access.exempt
    def hook() -> str:
        return "hook"

    return app, access, ran


def test_events_command_table_and_json() -> None:
    app, _, _ = build()
    client = app.test_client()
    client.get("/items", headers={"Origin": EVIL})
    client.options("/items", headers={"Origin": APP, "Access-Control-Request-Method": "DELETE"})
    runner = app.test_cli_runner()
    table = runner.invoke(args=["access-cors", "events"])
    assert table.exit_code == 0, table.output
    assert "origin_not_allowed" in table.output and "method_not_allowed" in table.output
    as_json = runner.invoke(args=["access-cors", "events", "--json", "--reason",
                                  "method_not_allowed"])
    lines = [json.loads(line) for line in as_json.output.splitlines()]
    assert [(e["reason"], e["request_type"], e["method"]) for e in lines] == [
        ("method_not_allowed", "preflight", "OPTIONS")]
    since = runner.invoke(args=["access-cors", "events", "--json", "--since", "10m",
                                "--origin", EVIL])
    assert [json.loads(line)["origin"] for line in since.output.splitlines()] == [EVIL]


@pytest.mark.parametrize(
    "args",
    [["--since", "yesterday"], ["--reason", "no_such_reason"], ["--limit", "0"],
     ["--status", "abc"], ["--since", "99999999d"], ["--since", "9999999999999d"]],
)
def test_events_command_usage_errors(args: list[str]) -> None:
    app, _, _ = build()
    result = app.test_cli_runner().invoke(args=["access-cors", "events", *args])
    assert result.exit_code == 2
    assert "Traceback" not in result.output


ROUTED_ITEMS = "routing: endpoint items (rule /items)"
NOT_FOUND = "routing: 404 Not Found \N{EM DASH} the fallback policy decides"


@pytest.mark.parametrize(
    ("args", "routing", "outcome", "policy", "reason"),
    [
        (["GET", "/items", "--origin", APP], ROUTED_ITEMS, "allowed: the view runs", "app", "-"),
        (["GET", "/items", "--origin", EVIL], ROUTED_ITEMS, "denied: 403", "app",
         "origin_not_allowed"),
        (["PUT", "/items", "--origin", APP, "--preflight", "-H", "X-Custom: 1"], ROUTED_ITEMS,
         "denied: 403", "app", "header_not_allowed"),
        (["PUT", "/items", "--origin", APP, "--preflight"], ROUTED_ITEMS,
         "allowed: preflight answered 204", "app", "-"),
        (["GET", "/private", "--origin", APP], "routing: endpoint private (rule /private)",
         "denied: 401", "view:private", "token_missing"),
        (["GET", "/admin/x", "--origin", APP], NOT_FOUND, "denied: 403", "app", "excluded_path"),
        (["GET", "/nothing", "--origin", APP], NOT_FOUND,
         "allowed by the policy; then Flask answers 404 Not Found", "app", "-"),
        (["GET", "/items/", "--origin", EVIL], NOT_FOUND, "denied: 403", "app",
         "origin_not_allowed"),
        (["DELETE", "/items", "--origin", APP],
         "routing: 405 Method Not Allowed \N{EM DASH} the fallback policy decides",
         "allowed by the policy; then Flask answers 405 Method Not Allowed", "app", "-"),
    ],
)
def test_check_command(args: list[str], routing: str, outcome: str, policy: str,
                       reason: str) -> None:
    app, access, ran = build()
    result = app.test_cli_runner().invoke(args=["access-cors", "check", *args])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith(f"request: {'OPTIONS' if '--preflight' in args else args[0]} "
                               f"http://localhost{args[1]} (host: the default")
    assert lines[1] == routing
    assert f"outcome: {outcome}" in result.output
    assert f"policy: {policy}" in result.output
    assert f"reason: {reason}" in result.output
    assert ran == []  # no side effects: the view did not run ...
    with app.app_context():
        assert access.events.search() == []  # ... and no event was recorded


def test_check_command_with_a_token_header() -> None:
    app, access, _ = build()
    with app.test_request_context("/"):
        token = access.issue_token("ann")
    result = app.test_cli_runner().invoke(args=[
        "access-cors", "check", "GET", "/private", "--origin", APP,
        "-H", f"Cf-Access-Jwt-Assertion: {token}"])
    assert "outcome: allowed: the view runs" in result.output


def test_check_command_usage_error() -> None:
    app, _, _ = build()
    result = app.test_cli_runner().invoke(args=["access-cors", "check", "GET", "/items",
                                                "--origin", APP, "-H", "no colon"])
    assert result.exit_code == 2 and "Name: value" in result.output


PARTNER = "https://partner.example"


def partner_app(**config: Any) -> tuple[Flask, AccessCors, list[str]]:
    """An API at ``api.example.com`` whose ``partner`` blueprint allows the partner's origin."""
    app = Flask(__name__, subdomain_matching=config.pop("subdomain_matching", False))
    app.config.update(config)
    access = AccessCors(app, origins=[APP], debug=True, event_store="memory://")
    ran: list[str] = []
    bp = Blueprint("partner", __name__, url_prefix="/partner")
    access.blueprint(bp, origins=[PARTNER])

    @bp.route("/orders", methods=["GET", "PUT"])
    def orders() -> str:
        ran.append("orders")
        return "orders"

    app.register_blueprint(bp)
    return app, access, ran


def check(app: Flask, *args: str) -> Any:
    result = app.test_cli_runner().invoke(args=["access-cors", "check", *args])
    assert result.exit_code == 0, (result.output, result.exception)
    return result


def test_check_builds_the_request_for_server_name() -> None:
    app, access, ran = partner_app(SERVER_NAME="api.example.com", TRUSTED_HOSTS=["api.example.com"])
    served = app.test_client().options("/partner/orders", headers={
        "Origin": PARTNER, "Access-Control-Request-Method": "PUT"})
    assert served.status_code == 204  # what the server does ...
    with app.app_context():
        access.events.clear()
    result = check(app, "PUT", "/partner/orders", "--origin", PARTNER, "--preflight")
    assert result.output.splitlines()[:3] == [  # ... is what check says
        "request: OPTIONS http://api.example.com/partner/orders (host: SERVER_NAME)",
        "routing: endpoint partner.orders (rule /partner/orders)",
        "outcome: allowed: preflight answered 204",
    ]
    assert "policy: blueprint:partner" in result.output
    assert f"Access-Control-Allow-Origin: {PARTNER}" in result.output
    assert ran == []
    with app.app_context():
        assert access.events.search() == []


@pytest.mark.parametrize(
    ("trusted", "host"),
    [(["api.example.com"], "api.example.com"),
     ([".example.com", "api.example.com:8443", "other.example"], "api.example.com:8443")],
)
def test_check_defaults_to_the_first_trusted_host_that_is_not_a_wildcard(
        trusted: list[str], host: str) -> None:
    app, _, ran = partner_app(TRUSTED_HOSTS=trusted)
    result = check(app, "PUT", "/partner/orders", "--origin", PARTNER, "--preflight")
    assert result.output.splitlines()[0] == (
        f"request: OPTIONS http://{host}/partner/orders (host: the first TRUSTED_HOSTS entry)")
    assert "outcome: allowed: preflight answered 204" in result.output
    assert ran == []


def test_check_says_flask_answers_400_for_an_untrusted_host() -> None:
    app, access, ran = partner_app(SERVER_NAME="api.example.com", TRUSTED_HOSTS=["api.example.com"])
    assert app.test_client().get("/partner/orders", base_url="http://evil.example",
                                 headers={"Origin": PARTNER}).status_code == 400
    with app.app_context():
        access.events.clear()
    result = check(app, "GET", "/partner/orders", "--origin", PARTNER, "--host", "evil.example")
    assert result.output.splitlines()[1:] == [
        "routing: 400 Bad Request \N{EM DASH} the host 'evil.example' is not in TRUSTED_HOSTS",
        "outcome: denied by Flask: 400 before anything else runs (neither flask-access-cors "
        "nor the view sees the request); check --host and TRUSTED_HOSTS",
    ]
    assert ran == []
    with app.app_context():
        assert access.events.search() == []


def test_check_says_when_routing_fails_and_host_finds_the_route() -> None:
    """A blueprint on the ``api`` subdomain: for the bare SERVER_NAME, routing fails and the
    app's policy (not the partner's) decides; ``--host api.example.com`` reaches the route."""
    app = Flask(__name__, subdomain_matching=True)
    app.config.update(SERVER_NAME="example.com")
    access = AccessCors(app, origins=[APP], event_store="memory://")
    partner = Blueprint("partner", __name__, subdomain="api")
    access.blueprint(partner, origins=[PARTNER])

    @partner.route("/orders", methods=["GET", "PUT"])
    def orders() -> str:
        return "orders"

    app.register_blueprint(partner)

    bare = check(app, "PUT", "/orders", "--origin", PARTNER, "--preflight")
    assert bare.output.splitlines()[:3] == [
        "request: OPTIONS http://example.com/orders (host: SERVER_NAME)",
        "routing: 404 Not Found \N{EM DASH} the fallback policy decides",
        "outcome: denied: 403",
    ]
    assert "policy: app" in bare.output and "reason: origin_not_allowed" in bare.output
    api = check(app, "PUT", "/orders", "--origin", PARTNER, "--preflight",
                "--host", "api.example.com")
    assert api.output.splitlines()[:3] == [
        "request: OPTIONS http://api.example.com/orders (host: --host)",
        "routing: endpoint partner.orders (rule /orders)",
        "outcome: allowed: preflight answered 204",
    ]


def test_check_host_with_a_scheme_decides_same_origin() -> None:
    app, _, _ = partner_app()
    result = check(app, "GET", "/partner/orders", "--origin", "https://api.example.com",
                   "--host", "https://api.example.com")
    assert result.output.splitlines()[0] == (
        "request: GET https://api.example.com/partner/orders (host: --host)")
    assert "request type: same_origin" in result.output
    assert "outcome: allowed: the view runs" in result.output


@pytest.mark.parametrize("host", ["ftp://api.example.com", "api.example.com/x", "", "a b",
                                  "user@api.example.com"])
def test_check_refuses_a_bad_host(host: str) -> None:
    app, _, _ = partner_app()
    result = app.test_cli_runner().invoke(args=[
        "access-cors", "check", "GET", "/partner/orders", "--origin", PARTNER, "--host", host])
    assert result.exit_code == 2, result.output
    assert "--host" in result.output and "Traceback" not in result.output


def test_events_command_shows_the_request_id() -> None:
    app, _, _ = build()
    client = app.test_client()
    client.get("/items", headers={"Origin": EVIL, "CF-Ray": "8f3a9c2e1b7d4e0a-AMS"})
    client.get("/items", headers={"Origin": "https://other.example"})
    runner = app.test_cli_runner()
    table = runner.invoke(args=["access-cors", "events"]).output.splitlines()
    fields = [dict(f.split("=", 1) for f in line.split() if "=" in f)
              for line in table if not line.startswith(" ")]
    assert {f["origin"]: f["request_id"] for f in fields} == {
        EVIL: "8f3a9c2e1b7d4e0a-AMS", "https://other.example": "-"}
    as_json = runner.invoke(args=["access-cors", "events", "--json", "--origin", EVIL])
    assert [json.loads(line)["request_id"] for line in as_json.output.splitlines()] == [
        "8f3a9c2e1b7d4e0a-AMS"]


def is_staff(identity: Any) -> bool:
    return False


def routes(app: Flask) -> tuple[str, dict[str, dict[str, str]]]:
    """``flask access-cors routes``: its output, and each line's ``name=value`` fields by rule."""
    result = app.test_cli_runner().invoke(args=["access-cors", "routes"])
    assert result.exit_code == 0, result.output
    return result.output, {
        line.split()[0]: dict(f.split("=", 1) for f in line.split("  ")[1:] if "=" in f)
        for line in result.output.splitlines()}


def test_routes_command() -> None:
    app, _, _ = build()
    output, lines = routes(app)
    assert lines["/items"]["origins"] == APP and lines["/items"]["gate"] == "no"
    assert lines["/items"]["methods"] == "GET,HEAD,OPTIONS,PUT"  # the route's own
    assert lines["/items"]["cors_methods"] == "GET,HEAD,PUT"
    assert lines["/items"]["require"] == "-" and lines["/items"]["audience"] == "-"
    assert lines["/private"]["policy"] == "view:private" and lines["/private"]["gate"] == "yes"
    assert lines["/hook"] == {"endpoint": "hook", "methods": "GET,HEAD,OPTIONS"}
    assert "/hook  endpoint=hook  methods=GET,HEAD,OPTIONS  exempt\n" in output


def test_routes_command_shows_headers_require_and_audience() -> None:
    app = Flask(__name__)
    access = AccessCors(app, team_domain="myteam.cloudflareaccess.com", audience=["app-aud"],
                        origins=[APP], event_store="memory://")
    api = Blueprint("api", __name__, url_prefix="/api")
    access.blueprint(api, require={"emails": ["ann@example.com"], "email_domains": ["example.com"],
                                   "groups": ["ops", "dev"], "service_tokens": ["ci"]},
                     allow_headers=["X-CSRF-Token", "Content-Type"], audience=["orders-aud"],
                     methods=["GET", "POST"])

    @api.route("/orders", methods=["GET", "PUT"])
    def orders() -> str:
        return "orders"

    @api.get("/staff")
    @access.cors(require=is_staff, allow_headers=["*", "Authorization"])
    def staff() -> str:
        return "staff"

    app.register_blueprint(api)
    _, lines = routes(app)
    assert lines["/api/orders"] == {
        "endpoint": "api.orders", "methods": "GET,HEAD,OPTIONS,PUT", "policy": "blueprint:api",
        "origins": APP, "cors_methods": "GET,HEAD", "headers": "content-type,x-csrf-token",
        "credentials": "no", "gate": "require",
        "require": "emails(ann@example.com) domains(example.com) groups(dev,ops) "
                   "service_tokens(ci)",
        "audience": "orders-aud", "debug": "no", "preflight": "respond", "excluded": "no",
    }
    assert lines["/api/staff"]["require"] == "callable(is_staff)"
    assert lines["/api/staff"]["headers"] == "*,authorization"
    assert lines["/api/staff"]["methods"] == "GET,HEAD,OPTIONS"
    assert lines["/static/<path:filename>"]["audience"] == "app-aud"


def test_events_http_view_requires_a_rule_and_filters() -> None:
    app, access, _ = build()
    with pytest.raises(ConfigError):
        events_blueprint(access, require=None)
    app.register_blueprint(events_blueprint(access, require={"emails": ["ops@example.com"]}))
    client = app.test_client()
    client.get("/items", headers={"Origin": EVIL})
    assert client.get("/_access-cors/events").status_code == 401
    with app.test_request_context("/"):
        ops = access.issue_token("ops", {"email": "ops@example.com"})
        other = access.issue_token("eve", {"email": "eve@example.com"})
    assert client.get("/_access-cors/events",
                      headers={"Cf-Access-Jwt-Assertion": other}).status_code == 403
    response = client.get("/_access-cors/events?reason=origin_not_allowed&since=1h",
                          headers={"Cf-Access-Jwt-Assertion": ops})
    assert response.status_code == 200
    assert [e["origin"] for e in response.get_json()["events"]] == [EVIL]
    for query in ("limit=0", "status=99999999999999999999", "since=999999d",
                  "since=0001-01-01T00:00:00%2B14:00", "reason=nope", "since=yesterday"):
        bad = client.get(f"/_access-cors/events?{query}", headers={"Cf-Access-Jwt-Assertion": ops})
        assert bad.status_code == 400, query


def test_cli_in_a_real_process_reads_what_another_wrote(tmp_path: Path) -> None:
    db = tmp_path / "events.sqlite3"
    module = tmp_path / "cliapp.py"
    module.write_text(textwrap.dedent(f"""
        from flask import Flask
        from flask_access_cors import AccessCors
        app = Flask(__name__)
        AccessCors(app, origins=["{APP}"], debug=True, event_store="sqlite:///{db}")
        app.get("/items")(lambda: "items")
    """))
    env = {**os.environ, "FLASK_APP": "cliapp", "PYTHONPATH": str(tmp_path)}
    writer = textwrap.dedent("""
        from cliapp import app
        client = app.test_client()
        for i in range(5):
            client.get("/items", headers={"Origin": "https://evil{}.example".format(i)})
    """)
    subprocess.run([sys.executable, "-c", writer], env=env, check=True, cwd=tmp_path,
                   timeout=60)
    result = subprocess.run([sys.executable, "-m", "flask", "access-cors", "events", "--json"],
                            env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    events: list[dict[str, Any]] = [json.loads(line) for line in result.stdout.splitlines()]
    assert sorted(e["origin"] for e in events) == [f"https://evil{i}.example" for i in range(5)]
    assert all(e["reason"] == "origin_not_allowed" for e in events)


def test_events_follow_prints_new_events_as_they_come(tmp_path: Path) -> None:
    db = tmp_path / "events.sqlite3"
    (tmp_path / "followapp.py").write_text(textwrap.dedent(f"""
        from flask import Flask
        from flask_access_cors import AccessCors
        app = Flask(__name__)
        AccessCors(app, origins=["{APP}"], debug=True, event_store="sqlite:///{db}")
        app.get("/items")(lambda: "items")
    """))
    env = {**os.environ, "FLASK_APP": "followapp", "PYTHONPATH": str(tmp_path)}
    follower = subprocess.Popen(
        [sys.executable, "-m", "flask", "access-cors", "events", "--follow", "--json"],
        env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(2.0)  # the follower is polling an empty log
        writer = ("from followapp import app\n"
                  "app.test_client().get('/items', headers={'Origin': 'https://late.example'})\n")
        subprocess.run([sys.executable, "-c", writer], env=env, cwd=tmp_path, check=True,
                       timeout=60)
        assert follower.stdout is not None
        ready, _, _ = select.select([follower.stdout], [], [], 20)
        assert ready, "the follower printed nothing within 20 s"
        line = follower.stdout.readline()
        assert json.loads(line)["origin"] == "https://late.example"
        # another worker's writer delivers an event stamped earlier than the last one shown
        from flask_access_cors.events import Event, SQLiteStore
        older = Event.create(status=403, reason="origin_not_allowed", request_type="actual",
                             policy="app", method="GET", path="/items",
                             origin="https://older.example", remote_addr=None)
        older = dataclasses.replace(older, time=older.time - timedelta(seconds=5))
        store = SQLiteStore(str(db))
        store.write([older])
        store.close()
        ready, _, _ = select.select([follower.stdout], [], [], 20)
        assert ready, "the late event was never printed"
        assert json.loads(follower.stdout.readline())["origin"] == "https://older.example"
    finally:
        follower.terminate()
        follower.wait(10)


def test_events_workers_shows_each_processes_heartbeat(tmp_path: Path) -> None:
    """A worker that closed its log is accounted for; one that was killed (simulated:
    its log is never closed) shows what it still had pending at its last heartbeat."""
    store = f"sqlite:///{tmp_path}/events.sqlite3"
    app = Flask(__name__)
    AccessCors(app, origins=["https://app.example.com"], debug=True, event_store=store)
    app.add_url_rule("/items", "items", lambda: "items")
    client = app.test_client()
    for i in range(5):
        client.get("/items", headers={"Origin": f"https://evil{i}.example"})
    runner = app.test_cli_runner()
    with app.app_context():
        app.extensions["access_cors"].events.flush()
    table = runner.invoke(args=["access-cors", "events", "--workers"])
    assert table.exit_code == 0, table.output
    [line] = table.output.splitlines()
    assert f"pid={os.getpid()}" in line and "recorded=5" in line and "closed=no" in line
    rows = [json.loads(row) for row in runner.invoke(
        args=["access-cors", "events", "--workers", "--json"]).output.splitlines()]
    assert [(r["pid"], r["recorded"], r["written"] + r["dropped"] + r["pending"]) for r in rows] \
        == [(os.getpid(), 5, 5)]
    empty = Flask(__name__)
    AccessCors(empty, event_store="memory://")
    none = empty.test_cli_runner().invoke(args=["access-cors", "events", "--workers"])
    assert none.exit_code == 0 and "no worker heartbeats" in none.output
