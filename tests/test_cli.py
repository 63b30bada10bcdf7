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
from flask import Flask

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


@pytest.mark.parametrize(
    ("args", "outcome", "policy", "reason"),
    [
        (["GET", "/items", "--origin", APP], "allowed: the view runs", "app", "-"),
        (["GET", "/items", "--origin", EVIL], "denied: 403", "app", "origin_not_allowed"),
        (["PUT", "/items", "--origin", APP, "--preflight", "-H", "X-Custom: 1"],
         "denied: 403", "app", "header_not_allowed"),
        (["PUT", "/items", "--origin", APP, "--preflight"], "allowed: preflight answered 204",
         "app", "-"),
        (["GET", "/private", "--origin", APP], "denied: 401", "view:private", "token_missing"),
        (["GET", "/admin/x", "--origin", APP], "denied: 403", "app", "excluded_path"),
        (["GET", "/nothing", "--origin", APP],
         "allowed by the policy; routing answers 404 (fallback policy)", "app", "-"),
    ],
)
def test_check_command(args: list[str], outcome: str, policy: str, reason: str) -> None:
    app, access, ran = build()
    result = app.test_cli_runner().invoke(args=["access-cors", "check", *args])
    assert result.exit_code == 0, result.output
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


def test_routes_command() -> None:
    app, _, _ = build()
    result = app.test_cli_runner().invoke(args=["access-cors", "routes"])
    assert result.exit_code == 0
    lines = {line.split()[0]: line for line in result.output.splitlines()}
    assert f"origins={APP}" in lines["/items"] and "gate=no" in lines["/items"]
    assert "policy=view:private" in lines["/private"] and "gate=yes" in lines["/private"]
    assert "exempt" in lines["/hook"]


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
