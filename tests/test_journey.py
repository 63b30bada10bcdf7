"""SPEC 8.1, one request journey: each way around the first release's rules, closed.

One scenario per test, each with its app inline. The encoded-path cases run
through a real server (Werkzeug's), since only a server decodes ``%2f`` before
routing; the test client would send the path already decoded.
"""

from __future__ import annotations

import contextlib
import http.client
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from flask import Flask, request, send_from_directory
from werkzeug.middleware.dispatcher import DispatcherMiddleware
from werkzeug.serving import make_server

from flask_access_cors import AccessCors, ConfigError

SECRET = "s" * 40
SPA = "https://app.example.com"
ORIGINS = ["https://app.example.com", "https://partner.example.com"]


def token(sub: str = "alice@example.com", **claims: Any) -> str:
    import time

    now = int(time.time())
    return jwt.encode({"sub": sub, "email": sub, "iat": now, "exp": now + 600, **claims},
                      SECRET, algorithm="HS256")


def new_app(**settings: Any) -> tuple[Flask, AccessCors]:
    app = Flask(__name__)
    app.secret_key = "journey-secret"
    app.config["PROPAGATE_EXCEPTIONS"] = False
    settings.setdefault("event_store", "memory://")
    return app, AccessCors(app, **settings)


# -- settings belong to routes --------------------------------------------------------------


@pytest.mark.parametrize("decorator", ["public", "exempt", "cors"])
def test_a_decorator_changes_only_the_route_it_decorates(decorator: str) -> None:
    app, access = new_app(origins=[SPA], jwt_secret=SECRET, require={"emails": ["boss@example.com"]})
    ran: list[str] = []

    def report() -> str:
        ran.append(request.path)
        return "secret report"

    decorate = {
        "public": access.public,
        "exempt": access.exempt,
        "cors": access.cors(origins=["https://partner.example.com"], require=None, gate=False),
    }[decorator]
    app.add_url_rule("/private/report", "private_report", report)
    app.add_url_rule("/shared/report", "shared_report", decorate(report))
    client = app.test_client()
    # the undecorated route keeps its require rule: no token, no report
    assert client.get("/private/report").status_code == 401
    assert client.get("/private/report", headers={"Cf-Access-Jwt-Assertion": token()}).status_code == 403
    assert client.get("/private/report", headers={
        "Origin": "https://partner.example.com",
        "Cf-Access-Jwt-Assertion": token("boss@example.com"),
    }).status_code == 403  # the partner origin belongs to the decorated route only
    assert ran == []
    # the decorated one is open, as asked
    assert client.get("/shared/report").status_code == 200
    assert ran == ["/shared/report"]
    assert not hasattr(report, "_access_cors_marks")


def test_a_decorator_above_the_route_decorator_is_a_config_error() -> None:
    app = Flask(__name__)
    access = AccessCors()

    @access.public
    @app.get("/oops")
    def oops() -> str:
        return "never public"

    with pytest.raises(ConfigError, match=r"below @app\.route"):
        access.init_app(app, origins=[SPA], jwt_secret=SECRET, gate=True, event_store="memory://")


def test_a_decorator_above_a_route_added_after_start_fails_closed() -> None:
    app, access = new_app(origins=[SPA], jwt_secret=SECRET, gate=True)

    @access.public
    @app.get("/oops")
    def oops() -> str:
        return "never public"

    assert app.test_client().get("/oops").status_code == 500


def test_a_misplaced_decorator_on_a_blueprint_view_fails_closed() -> None:
    from flask import Blueprint

    app, access = new_app(origins=[SPA], jwt_secret=SECRET, gate=True)
    bp = Blueprint("bp", __name__)

    @access.public
    @bp.get("/oops")
    def oops() -> str:
        return "never public"

    app.register_blueprint(bp)
    assert app.test_client().get("/oops").status_code == 500


# -- excluded paths cannot be escaped -----------------------------------------------------


@pytest.mark.parametrize("strict_on", ["rule", "map"])
def test_a_trailing_slash_does_not_escape_an_excluded_path(strict_on: str) -> None:
    app, _ = new_app(origins=[SPA], excluded_paths=["/admin"])
    if strict_on == "map":
        app.url_map.strict_slashes = False

    @app.get("/admin", strict_slashes=False if strict_on == "rule" else None)
    def admin() -> str:
        return "admin"

    client = app.test_client()
    for path in ("/admin", "/admin/"):
        response = client.get(path, headers={"Origin": SPA})
        assert response.status_code == 403, path
        assert "Access-Control-Allow-Origin" not in response.headers


@contextlib.contextmanager
def serve(app: Flask) -> Iterator[int]:
    """The app behind Werkzeug's real server on a loopback port."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_port
    finally:
        server.shutdown()


@pytest.fixture
def file_server(tmp_path: Path) -> Iterator[int]:
    (tmp_path / "public").mkdir()
    (tmp_path / "private").mkdir()
    (tmp_path / "public" / "ok.txt").write_text("public")
    (tmp_path / "private" / "secret.txt").write_text("SECRET")
    app, _ = new_app(origins=[SPA], excluded_paths=["/files/private/*", "/files/private"])

    @app.get("/files/<path:name>")
    def files(name: str) -> Any:
        return send_from_directory(tmp_path, name)

    with serve(app) as port:
        yield port


def raw_get(port: int, path: str, headers: dict[str, str],
            method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.putrequest(method, path, skip_accept_encoding=True)  # the path goes out as written
    for name, value in headers.items():
        conn.putheader(name, value)
    conn.endheaders()
    response = conn.getresponse()
    body = response.read()
    conn.close()
    return response.status, dict(response.getheaders()), body


ESCAPES = [
    "/files/private/secret.txt",
    "/files/public%2f..%2fprivate/secret.txt",
    "/files/public%2F..%2Fprivate/secret.txt",
    "/files/public/%2e%2e/private/secret.txt",
    "/files/public%2f%2e%2e%2fprivate/secret.txt",
    "/files/public%252f..%252fprivate/secret.txt",
    "/files//private/secret.txt",
    "/files/./private/secret.txt",
    "/files/public/../private/secret.txt",
    "/files/public%5c..%5cprivate/secret.txt",
]


@pytest.mark.parametrize("path", ESCAPES)
def test_encoded_slashes_and_dot_segments_do_not_escape_an_excluded_path(
    file_server: int, path: str
) -> None:
    status, headers, body = raw_get(file_server, path, {"Origin": SPA})
    assert status in (403, 404), (path, status)
    assert b"SECRET" not in body
    assert "Access-Control-Allow-Origin" not in headers


def test_the_public_file_is_still_served_cross_origin(file_server: int) -> None:
    status, headers, body = raw_get(file_server, "/files/public/ok.txt", {"Origin": SPA})
    assert (status, body) == (200, b"public")
    assert headers["Access-Control-Allow-Origin"] == SPA


@pytest.mark.parametrize(
    ("setting", "value", "code"),
    [
        ("excluded_paths", [r"/admin/.*"], "invalid_path_pattern"),
        ("excluded_paths", [r"/api/v[0-9]+/*"], "invalid_path_pattern"),
        ("excluded_paths", ["/a*/b"], "invalid_path_pattern"),
        ("excluded_paths", [r"/x\.json"], "invalid_path_pattern"),
        ("allow_headers", ["X-Custom-*"], "invalid_header"),
        ("allow_headers", ["*-Token"], "invalid_header"),
    ],
)
def test_regex_looking_patterns_are_refused_with_a_suggestion(
    setting: str, value: list[str], code: str
) -> None:
    with pytest.raises(ConfigError) as info:
        new_app(origins=[SPA], **{setting: value})
    assert [c for c, _ in info.value.problems] == [code]
    message = info.value.problems[0][1]
    assert repr(value[0]) in message
    assert "write a literal path" in message or "list each header" in message


@pytest.mark.parametrize(
    "pattern", ["/admin*", "/v1.2/*", "/files/report.json", "/a-b_c~d", "/c++/*", "/(legacy)/*"]
)
def test_literal_patterns_are_still_accepted(pattern: str) -> None:
    new_app(origins=[SPA], excluded_paths=[pattern])


# -- bypass mode: a forged preflight never runs a gated view ---------------------------------


def test_a_forged_preflight_in_bypass_mode_does_not_run_a_gated_options_view() -> None:
    app, _ = new_app(origins=[SPA], jwt_secret=SECRET, gate=True, preflight="bypass")
    ran: list[str] = []

    @app.route("/api/purge", methods=["OPTIONS", "POST"])
    def purge() -> str:
        ran.append(request.method)
        return "purged"

    @app.post("/api/auto")
    def auto() -> str:
        return "auto"

    client = app.test_client()
    forged = {"Origin": SPA, "Access-Control-Request-Method": "POST"}
    assert client.options("/api/purge", headers=forged).status_code == 401
    assert ran == []
    authed = client.options("/api/purge", headers={**forged, "Cf-Access-Jwt-Assertion": token()})
    assert authed.status_code == 200 and ran == ["OPTIONS"]
    assert authed.headers["Access-Control-Allow-Origin"] == SPA
    # Flask's automatic OPTIONS answer still needs no token: it runs no view
    automatic = client.options("/api/auto", headers=forged)
    assert automatic.status_code == 200
    assert automatic.headers["Access-Control-Allow-Origin"] == SPA


# -- unknown URLs under a gated prefix ------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    ["/api/v1/nope", "/api//v1/nope", "/api/v1//nope", "//api/v1/nope", "/api/./v1/nope",
     "/api/v1", "/api//v1", "/api/v1/"],
)
def test_unknown_urls_under_a_gated_prefix_get_401_however_spelled(path: str) -> None:
    from flask import Blueprint

    app, access = new_app(origins=[SPA], jwt_secret=SECRET)
    bp = access.blueprint(Blueprint("v1", __name__, url_prefix="/api/v1"), gate=True)

    @bp.get("/known")
    def known() -> str:
        return "known"

    app.register_blueprint(bp)
    with serve(app) as port:
        status, _, _ = raw_get(port, path, {})
        assert status == 401, path
        assert raw_get(port, "/nowhere", {})[0] == 404  # not under the prefix


# -- login return links -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("script_root", "target"),
    [
        ("", "/search?q=a%20b"),
        ("", "/search?q=a+b&path=C%3A%5Cdir%5Cfile"),
        ("", "/search?q=%2F%2Fevil.com"),
        ("", "/a%20b/c?x=%25"),
        ("/app", "/report?year=2026&q=a%20b"),
    ],
)
def test_login_return_links_keep_path_query_and_script_name(script_root: str, target: str) -> None:
    app, access = new_app(origins=[SPA], jwt_secret=SECRET, gate=True, login_url="/login")

    @app.get("/<path:anything>")
    def anything(anything: str) -> str:
        return "page"

    @app.get("/login")
    @access.public
    def login() -> str:
        return access.safe_return_path(request.args.get("redirect_url")) or "-"

    served: Any = DispatcherMiddleware(lambda e, s: [], {script_root: app}) if script_root else app
    from werkzeug.test import Client

    client = Client(served)
    response = client.get(script_root + target, headers={"Sec-Fetch-Mode": "navigate"})
    assert response.status_code == 302
    location = response.headers["Location"]
    assert location.startswith(script_root + "/login?")  # the app's login page, under its mount
    back = client.get(location)
    assert back.get_data(as_text=True) == script_root + target


# -- caches ---------------------------------------------------------------------------------


def test_an_anonymous_any_origin_policy_answers_the_same_with_or_without_origin() -> None:
    app, _ = new_app(origins="*")

    @app.get("/public-data")
    def data() -> str:
        return "data"

    client = app.test_client()
    plain = client.get("/public-data")
    cross = client.get("/public-data", headers={"Origin": "https://anyone.example"})
    assert plain.headers["Access-Control-Allow-Origin"] == "*"
    assert cross.headers["Access-Control-Allow-Origin"] == "*"
    assert "Origin" not in plain.headers.get("Vary", "")


def test_other_policies_say_vary_origin_on_every_response() -> None:
    app, _ = new_app(origins=[SPA], excluded_paths=["/internal"])

    @app.get("/data")
    def data() -> str:
        return "data"

    @app.get("/internal")
    def internal() -> str:
        return "internal"

    client = app.test_client()
    for path, headers in [
        ("/data", {}), ("/data", {"Origin": SPA}), ("/data", {"Origin": "https://evil.example"}),
        ("/internal", {}), ("/nowhere", {}), ("/data", {"Origin": SPA, "X": "post"}),
    ]:
        response = client.get(path, headers=headers)
        assert "Origin" in response.headers.get("Vary", ""), (path, headers)


def test_authenticated_answers_of_a_gated_scope_are_private() -> None:
    app, access = new_app(origins=[SPA], jwt_secret=SECRET, gate=True)

    @app.get("/me")
    def me() -> str:
        return "me"

    @app.get("/cached")
    def cached() -> Any:
        return "cached", 200, {"Cache-Control": "no-store"}

    @app.get("/open")
    @access.public
    def open_view() -> str:
        return "open"

    client = app.test_client()
    auth = {"Cf-Access-Jwt-Assertion": token()}
    assert client.get("/me", headers=auth).headers["Cache-Control"] == "private"
    assert client.get("/cached", headers=auth).headers["Cache-Control"] == "no-store"
    assert "Cache-Control" not in client.get("/open").headers


# -- host checks first ----------------------------------------------------------------------


def test_trusted_hosts_is_enforced_before_a_preflight_is_answered() -> None:
    app, _ = new_app(origins=[SPA])
    app.config["TRUSTED_HOSTS"] = ["api.example.com"]

    @app.post("/items")
    def items() -> str:
        return "items"

    client = app.test_client()
    preflight = {"Origin": SPA, "Access-Control-Request-Method": "POST"}
    bad = client.options("/items", headers={**preflight, "Host": "evil.example"})
    assert bad.status_code == 400
    assert "Access-Control-Allow-Origin" not in bad.headers
    good = client.options("/items", headers={**preflight, "Host": "api.example.com"})
    assert good.status_code == 204


# -- several apps, one extension --------------------------------------------------------------


def test_an_extension_serving_several_apps_refuses_to_guess_outside_a_context() -> None:
    access = AccessCors(jwt_secret=SECRET)
    first, second = Flask("first"), Flask("second")
    for app in (first, second):
        access.init_app(app, event_store="memory://")
    with pytest.raises(RuntimeError, match="serves 2 apps"):
        access.events  # noqa: B018 - the property is what is under test
    with pytest.raises(RuntimeError, match="serves 2 apps"):
        access.issue_token("alice")
    with second.app_context():
        claims = jwt.decode(access.issue_token("alice"), SECRET, algorithms=["HS256"])
        assert claims["sub"] == "alice"
        assert access.events is second.extensions["access_cors"].events


# -- found by the red team (black-box, against the docs) -------------------------------------


def same_url_app(mode: str, ran: list[str]) -> Flask:
    """One URL, three views: a gated one answering OPTIONS itself, an exempt GET, and an
    excluded POST/OPTIONS view beside a public GET."""
    app = Flask(__name__)
    app.config["PROPAGATE_EXCEPTIONS"] = False
    access = AccessCors()

    def secret() -> str:
        ran.append("secret")
        return "secret"

    def excluded() -> str:
        ran.append("excluded")
        return "excluded"

    app.add_url_rule("/t2", "t2_secret", secret, methods=["PUT", "OPTIONS"])
    app.add_url_rule("/t2", "t2_exempt", access.exempt(lambda: "exempt"), methods=["GET"])
    app.add_url_rule("/t4", "t4_excl", access.cors(excluded_paths=["/t4"], gate=False)(excluded),
                     methods=["POST", "OPTIONS"])
    app.add_url_rule("/t4", "t4_pub", access.public(lambda: "public"), methods=["GET"])
    access.init_app(app, origins=[SPA], credentials=True, jwt_secret=SECRET, gate=True,
                    preflight=mode, event_store="memory://")
    return app


@pytest.mark.parametrize("mode", ["respond", "bypass"])
@pytest.mark.parametrize("origin", [SPA, "https://evil.example", "null"])
def test_a_preflight_rerouted_to_an_exempt_view_never_runs_the_gated_options_view(
    mode: str, origin: str
) -> None:
    ran: list[str] = []
    with serve(same_url_app(mode, ran)) as port:
        for wanted in ("GET", "HEAD"):
            status, headers, _ = raw_get(port, "/t2", {
                "Origin": origin, "Access-Control-Request-Method": wanted}, method="OPTIONS")
            assert status in (401, 403), (wanted, status)
            assert "Access-Control-Allow-Origin" not in headers
    assert ran == []


@pytest.mark.parametrize("mode", ["respond", "bypass"])
def test_an_excluded_view_answering_options_is_not_reached_through_its_neighbour(mode: str) -> None:
    ran: list[str] = []
    with serve(same_url_app(mode, ran)) as port:
        status, headers, _ = raw_get(port, "/t4", {
            "Origin": SPA, "Access-Control-Request-Method": "GET"}, method="OPTIONS")
    assert ran == []
    if mode == "bypass":  # the excluded view would run: the exclusion governs
        assert status == 403 and not any(h.startswith("Access-Control-") for h in headers)
    else:  # the extension answers from the GET view's policy; nothing runs
        assert status == 204


def gated_api(mode: str) -> Flask:
    from flask import Blueprint

    app, access = new_app(origins=[SPA], credentials=True, jwt_secret=SECRET, preflight=mode)
    bp = access.blueprint(Blueprint("api", __name__, url_prefix="/api"), gate=True)
    bp.add_url_rule("/data", "data", lambda: "data", methods=["GET", "POST"])
    app.register_blueprint(bp)
    return app


@pytest.mark.parametrize("path", ["/api/nope", "/api/opt/", "/api"])
def test_forged_preflights_in_bypass_mode_do_not_map_a_gated_api(path: str) -> None:
    with serve(gated_api("bypass")) as port:
        status, headers, _ = raw_get(port, path, {
            "Origin": SPA, "Access-Control-Request-Method": "GET"}, method="OPTIONS")
        known, _, _ = raw_get(port, "/api/data", {
            "Origin": SPA, "Access-Control-Request-Method": "GET"}, method="OPTIONS")
    assert status == 401 and "Access-Control-Allow-Origin" not in headers
    assert known == 200  # Flask's automatic OPTIONS answer for a real route: no view runs


@pytest.mark.parametrize("mode", ["respond", "bypass"])
def test_a_preflight_with_an_inner_double_slash_is_neither_redirected_nor_widened(mode: str) -> None:
    with serve(gated_api(mode)) as port:
        put, put_headers, _ = raw_get(port, "/api//data", {
            "Origin": SPA, "Access-Control-Request-Method": "PUT"}, method="OPTIONS")
        post, _, _ = raw_get(port, "/api//data", {
            "Origin": SPA, "Access-Control-Request-Method": "POST"}, method="OPTIONS")
    assert put == 403 and "Access-Control-Allow-Methods" not in put_headers
    assert post in (204, 401)  # never a 308: a preflight is not redirected


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/vx//secret"), ("GET", "/vx/%2fsecret"), ("GET", "/vx%252fsecret"),
     ("OPTIONS", "/vx//secret")],
)
def test_a_views_excluded_paths_hold_when_routing_fails(method: str, path: str) -> None:
    app, access = new_app(origins=[SPA], credentials=True, expose_headers=["X-Total"])

    @app.route("/vx/<path:p>", methods=["GET", "POST"])
    @access.cors(excluded_paths=["/vx/secret*"])
    def vx(p: str) -> str:
        return "vx"

    headers = {"Origin": SPA}
    if method == "OPTIONS":
        headers["Access-Control-Request-Method"] = "DELETE"
    with serve(app) as port:
        status, got, _ = raw_get(port, path, headers, method=method)
    assert status == 403, (method, path, status)
    assert not any(h.startswith("Access-Control-") for h in got)


def test_a_return_link_keeps_an_encoded_slash_in_the_path() -> None:
    app, access = new_app(origins=[SPA], jwt_secret=SECRET, gate=True, login_url="/login")

    @app.get("/item/<name>")
    def item(name: str) -> str:
        return name

    @app.get("/login")
    @access.public
    def login() -> str:
        return access.safe_return_path(request.args.get("redirect_url")) or "-"

    with serve(app) as port:
        status, headers, _ = raw_get(port, "/item/a%2Fb?q=a%20b+c%2B", {"Sec-Fetch-Mode": "navigate"})
        assert status == 302
        _, _, body = raw_get(port, headers["Location"], {})
    assert body == b"/item/a%2Fb?q=a%20b+c%2B"


def test_an_email_with_two_at_signs_belongs_to_no_domain() -> None:
    app, _ = new_app(origins=[SPA], jwt_secret=SECRET, require={"email_domains": ["example.com"]})

    @app.get("/x")
    def x() -> str:
        return "x"

    client = app.test_client()
    ok = client.get("/x", headers={"Cf-Access-Jwt-Assertion": token("a@example.com")})
    sneaky = client.get("/x", headers={"Cf-Access-Jwt-Assertion": token("a@evil.org@example.com")})
    assert (ok.status_code, sneaky.status_code) == (200, 403)


def test_a_login_url_with_a_fragment_is_refused() -> None:
    with pytest.raises(ConfigError, match="fragment"):
        new_app(origins=[SPA], jwt_secret=SECRET, login_url="https://auth.example.com/login#x")
