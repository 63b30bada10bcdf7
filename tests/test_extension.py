"""The Flask layer, through real requests: one scenario per test, configuration inline."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from flask import Blueprint, Flask, abort, jsonify, request
from werkzeug.test import Client

from flask_access_cors import AccessCors, ConfigError, request_denied

APP = "https://app.example.com"
EVIL = "https://evil.example"
Factory = Callable[..., tuple[Flask, AccessCors, list[str]]]


def cors_headers(response: Any) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for name, value in response.headers.items():
        if name.lower().startswith("access-control-"):
            found.setdefault(name, []).append(value)
    return found


def preflight(client: Client, path: str, origin: str = APP, method: str = "PUT",
              headers: str | None = None, **extra: str) -> Any:
    h = {"Origin": origin, "Access-Control-Request-Method": method, **extra}
    if headers is not None:
        h["Access-Control-Request-Headers"] = headers
    return client.options(path, headers=h)


def test_disallowed_simple_post_never_runs_its_view(app_factory: Factory) -> None:
    app, access, ran = app_factory(origins=[APP], debug=True)
    response = app.test_client().post("/items", headers={"Origin": EVIL}, data="a=1",
                                      content_type="application/x-www-form-urlencoded")
    assert response.status_code == 403
    assert ran == []
    assert cors_headers(response) == {}
    with app.app_context():
        [event] = access.events.search()
    assert (event.reason, event.origin, event.request_type) == ("origin_not_allowed", EVIL,
                                                                "actual")


def test_allowed_get_runs_and_gets_one_set_of_headers(app_factory: Factory) -> None:
    app, _, ran = app_factory(origins=[APP], credentials=True, expose_headers=["X-Total"])
    response = app.test_client().get("/items", headers={"Origin": APP})
    assert response.status_code == 200 and ran == ["items"]
    assert cors_headers(response) == {
        "Access-Control-Allow-Origin": [APP],
        "Access-Control-Allow-Credentials": ["true"],
        "Access-Control-Expose-Headers": ["X-Total"],
    }
    assert response.headers.getlist("Vary") == ["Origin"]


def test_preflight_is_answered_before_the_apps_own_auth_hook(app_factory: Factory) -> None:
    app, _, ran = app_factory(origins=[APP], allow_headers=["X-Custom"])

    @app.before_request
    def require_login() -> Any:
        if "Authorization" not in request.headers:
            return jsonify(error="login"), 401
        return None

    response = preflight(app.test_client(), "/items", headers="x-custom")
    assert response.status_code == 204
    assert response.headers["Access-Control-Allow-Origin"] == APP
    assert response.headers["Access-Control-Allow-Methods"] == "PUT"
    assert response.headers["Access-Control-Allow-Headers"] == "x-custom"
    assert response.headers["Access-Control-Max-Age"] == "1800"
    assert ran == []
    # and the actual request still meets the app's hook
    assert app.test_client().put("/items", headers={"Origin": APP}).status_code == 401


@pytest.mark.parametrize(
    "origin",
    ["https://app.example.com,https://app.example.com", "https://app.example.com/x",
     "https://app.example.com\t"],
)
def test_malformed_origin_is_denied(app_factory: Factory, origin: str) -> None:
    app, access, ran = app_factory(origins=[APP], debug=True)
    response = app.test_client().get("/items", headers={"Origin": origin})
    assert response.status_code == 403 and ran == []
    with app.app_context():
        [event] = access.events.search()
    assert (event.reason, event.request_type) == ("origin_malformed", "malformed")


def test_same_origin_post_with_its_own_origin_is_untouched(app_factory: Factory) -> None:
    app, _, ran = app_factory(origins=[APP])
    response = app.test_client().post("/items", headers={"Origin": "http://localhost"})
    assert response.status_code == 200 and ran == ["items"]
    assert cors_headers(response) == {}


@pytest.mark.parametrize(
    ("path", "excluded"),
    [("/admin", True), ("/%61dmin", True), ("//admin", True), ("/admin/users", True),
     ("/%2561dmin", False), ("/Admin", False), ("/items", False)],
)
def test_excluded_path_is_matched_as_the_router_saw_it(app_factory: Factory, path: str,
                                                       excluded: bool) -> None:
    app, access, ran = app_factory(origins=[APP], excluded_paths=["/admin*"], debug=True)

    @app.route("/<path:anything>")
    def catch_all(anything: str) -> str:
        ran.append(anything)
        return anything

    @app.route("/admin")
    def admin() -> str:
        ran.append("admin")
        return "admin"

    client = app.test_client()

    def get(**kwargs: Any) -> Any:
        if path.startswith("//"):  # the test client would read //admin as a host name
            kwargs["environ_overrides"] = {"PATH_INFO": path}
            return client.get("/", **kwargs)
        return client.get(path, **kwargs)

    response = get(headers={"Origin": APP})
    if excluded:
        assert response.status_code == 403 and ran == []
        assert cors_headers(response) == {}
        with app.app_context():
            assert [e.reason for e in access.events.search()] == ["excluded_path"]
        same = get()  # same-origin requests are untouched
        assert same.status_code in (200, 308) and cors_headers(same) == {}
    else:
        assert response.status_code != 403
        with app.app_context():
            assert access.events.search() == []


def test_config_error_lists_every_problem() -> None:
    app = Flask(__name__)
    app.config["ACCESS_CORS_ORIGINS"] = ["https://App.example.com", "null"]
    app.config["ACCESS_CORS_METHODS"] = ["TRACE"]
    app.config["ACCESS_CORS_MAX_AGES"] = 10  # a typo must never fail open
    with pytest.raises(ConfigError) as info:
        AccessCors(app, credentials=True, max_age=99999)
    assert {c for c, _ in info.value.problems} >= {"unknown_setting"}
    app.config.pop("ACCESS_CORS_MAX_AGES")
    with pytest.raises(ConfigError) as info:
        AccessCors(app, credentials=True, max_age=99999, jwt_secret="short")
    assert sorted(c for c, _ in info.value.problems) == sorted(
        ["invalid_origin", "invalid_origin", "forbidden_method", "max_age_out_of_range",
         "weak_secret"]
    )


def test_keywords_override_config() -> None:
    app = Flask(__name__)
    app.config["ACCESS_CORS_ORIGINS"] = [EVIL]
    AccessCors(app, origins=[APP], event_store="memory://")
    app.get("/x")(lambda: "x")
    client = app.test_client()
    assert client.get("/x", headers={"Origin": APP}).status_code == 200
    assert client.get("/x", headers={"Origin": EVIL}).status_code == 403


def test_preflight_is_never_redirected(app_factory: Factory) -> None:
    app, _, ran = app_factory(origins=[APP])

    @app.route("/dir/", methods=["GET", "PUT"])
    def directory() -> str:
        ran.append("dir")
        return "dir"

    client = app.test_client()
    assert client.get("/dir").status_code == 308  # what Werkzeug does without us
    response = preflight(client, "/dir")
    assert response.status_code == 204
    assert response.headers["Access-Control-Allow-Origin"] == APP
    assert ran == []


@pytest.mark.parametrize("path", ["/abort", "/handled", "/boom", "/missing"])
def test_error_responses_get_exactly_one_set_of_headers(app_factory: Factory, path: str) -> None:
    app, _, _ = app_factory(origins=[APP], credentials=True)

    @app.get("/abort")
    def aborting() -> str:
        abort(409)

    @app.get("/handled")
    def handled() -> str:
        raise KeyError("x")

    @app.errorhandler(KeyError)
    def on_key_error(exc: KeyError) -> Any:
        response = jsonify(error="key")
        response.status_code = 400
        response.headers["Access-Control-Allow-Origin"] = "*"  # a stray header is replaced
        response.headers["Vary"] = "Accept-Encoding"
        return response

    response = app.test_client().get(path, headers={"Origin": APP})
    assert response.status_code >= 400
    assert cors_headers(response) == {
        "Access-Control-Allow-Origin": [APP],
        "Access-Control-Allow-Credentials": ["true"],
    }
    vary = response.headers.getlist("Vary")
    assert len(vary) == 1
    tokens = [v.strip() for v in vary[0].split(",")]
    assert tokens.count("Origin") == 1


def test_vary_is_merged_with_the_views_own(app_factory: Factory) -> None:
    app, _, _ = app_factory(origins=[APP])

    @app.get("/varied")
    def varied() -> Any:
        response = jsonify(ok=True)
        response.headers["Vary"] = "Accept-Encoding, origin"
        return response

    for headers in ({"Origin": APP}, {}):
        response = app.test_client().get("/varied", headers=headers)
        assert response.headers.getlist("Vary") == ["Accept-Encoding, origin"]


def test_vary_origin_on_requests_without_origin_and_on_denials(app_factory: Factory) -> None:
    app, _, _ = app_factory(origins=[APP])
    client = app.test_client()
    assert client.get("/items").headers.getlist("Vary") == ["Origin"]
    denied = client.get("/items", headers={"Origin": EVIL})
    assert denied.status_code == 403 and denied.headers.getlist("Vary") == ["Origin"]
    anonymous, _, _ = app_factory(origins="*")
    response = anonymous.test_client().get("/items", headers={"Origin": EVIL})
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert "Vary" not in response.headers


def test_method_not_accepted_by_route(app_factory: Factory) -> None:
    app, _, _ = app_factory(origins=[APP])
    client = app.test_client()
    actual = client.put("/boom", headers={"Origin": APP})
    assert actual.status_code == 405
    assert actual.headers["Access-Control-Allow-Origin"] == APP
    denied = preflight(client, "/boom", method="PUT")
    assert denied.status_code == 403 and cors_headers(denied) == {}


def test_method_case_is_echoed(app_factory: Factory) -> None:
    app, _, ran = app_factory(origins=[APP])
    client = app.test_client()
    response = preflight(client, "/items", method="patch")
    assert response.status_code == 204
    assert response.headers["Access-Control-Allow-Methods"] == "patch"
    assert client.open("/items", method="patch", headers={"Origin": APP}).status_code == 200
    assert ran == ["items"]


def test_policy_methods_limit_actual_requests(app_factory: Factory) -> None:
    app, access, ran = app_factory(origins=[APP], methods=["GET"], debug=True)
    client = app.test_client()
    assert client.delete("/items", headers={"Origin": APP}).status_code == 403
    assert client.head("/items", headers={"Origin": APP}).status_code == 200
    assert ran == ["items"]
    with app.app_context():
        assert [e.reason for e in access.events.search()] == ["method_not_allowed"]


def test_blueprint_layers_and_fallback(app_factory: Factory) -> None:
    app, access, _ran = app_factory(origins=[APP], credentials=True)
    api = Blueprint("api", __name__, url_prefix="/api")
    inner = Blueprint("inner", __name__, url_prefix="/inner")
    access.blueprint(api, origins=["https://partner.example.com"])
    access.blueprint(inner, origins=["https://inner.example.com"], max_age=60)

    @api.get("/thing")
    def thing() -> str:
        return "thing"

    @inner.get("/deep")
    def deep() -> str:
        return "deep"

    @api.get("/own")
    @access.cors(origins=[APP])
    def own() -> str:
        return "own"

    api.register_blueprint(inner)
    app.register_blueprint(api)
    client = app.test_client()
    partner = client.get("/api/thing", headers={"Origin": "https://partner.example.com"})
    assert partner.headers["Access-Control-Allow-Origin"] == "https://partner.example.com"
    assert partner.headers["Access-Control-Allow-Credentials"] == "true"  # inherited
    assert client.get("/api/thing", headers={"Origin": APP}).status_code == 403
    assert client.get("/api/own", headers={"Origin": APP}).status_code == 200
    assert client.get("/api/inner/deep", headers={"Origin": "https://partner.example.com"}
                      ).status_code == 403  # innermost wins
    pre = preflight(client, "/api/inner/deep", origin="https://inner.example.com", method="GET")
    assert pre.headers["Access-Control-Max-Age"] == "60"
    # routing failures: the blueprint owning the prefix, else the app
    missing = client.get("/api/nothing", headers={"Origin": "https://partner.example.com"})
    assert missing.status_code == 404
    assert missing.headers["Access-Control-Allow-Origin"] == "https://partner.example.com"
    assert client.get("/nothing", headers={"Origin": APP}).headers[
        "Access-Control-Allow-Origin"] == APP


def test_cross_layer_problems_are_refused_at_registration(app_factory: Factory) -> None:
    app, access, _ = app_factory(origins=[APP], credentials=True)
    bp = Blueprint("open", __name__)
    access.blueprint(bp, origins="*")
    bp.get("/open")(lambda: "open")
    with pytest.raises(ConfigError) as info:
        app.register_blueprint(bp)
    assert [c for c, _ in info.value.problems] == ["wildcard_with_credentials"]


def test_blueprint_registered_before_init_app_is_checked_by_init_app() -> None:
    access = AccessCors()
    bp = Blueprint("open", __name__)
    access.blueprint(bp, origins=["http://plain.example.com"])
    app = Flask(__name__)
    app.register_blueprint(bp)
    with pytest.raises(ConfigError) as info:
        access.init_app(app, credentials=True, event_store="memory://")
    assert [c for c, _ in info.value.problems] == ["insecure_origin"]


def test_disabled_scope(app_factory: Factory) -> None:
    app, access, _ran = app_factory(origins=[APP], enabled=False, debug=True)
    client = app.test_client()
    assert client.get("/items", headers={"Origin": APP}).status_code == 403
    assert client.get("/items").status_code == 200  # not CORS: untouched
    assert preflight(client, "/items").status_code == 403
    with app.app_context():
        assert {e.reason for e in access.events.search()} == {"cors_disabled"}


def test_private_network_opt_in(app_factory: Factory) -> None:
    closed, _, _ = app_factory(origins=[APP])
    opened, _, _ = app_factory(origins=[APP], private_network=True)
    pna = {"Access-Control-Request-Private-Network": "true"}
    assert preflight(closed.test_client(), "/items", **pna).status_code == 403
    plain = preflight(closed.test_client(), "/items")
    assert "Access-Control-Allow-Private-Network" not in plain.headers
    ok = preflight(opened.test_client(), "/items", **pna)
    assert ok.headers["Access-Control-Allow-Private-Network"] == "true"
    actual = opened.test_client().get("/items", headers={"Origin": APP, **pna})
    assert "Access-Control-Allow-Private-Network" not in actual.headers


def test_bypass_mode_reaches_the_apps_options_handler(app_factory: Factory) -> None:
    app, _, ran = app_factory(origins=[APP], preflight="bypass")

    @app.route("/custom", methods=["PUT", "OPTIONS"], provide_automatic_options=False)
    def custom() -> Any:
        ran.append(request.method)
        return "", 200, {"X-Handled-By": "app"}

    response = preflight(app.test_client(), "/custom")
    assert response.status_code == 200 and ran == ["OPTIONS"]
    assert response.headers["X-Handled-By"] == "app"
    assert response.headers["Access-Control-Allow-Origin"] == APP
    assert preflight(app.test_client(), "/custom", origin=EVIL).status_code == 403


def test_exempt_view_is_left_alone(app_factory: Factory) -> None:
    app, access, _ = app_factory(origins=[APP])

    @app.get("/webhook")
    @access.exempt
    def webhook() -> Any:
        return "ok", 200, {"Access-Control-Allow-Origin": "https://own.choice"}

    response = app.test_client().get("/webhook", headers={"Origin": EVIL})
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == "https://own.choice"
    assert "Vary" not in response.headers


def test_view_policy_overrides_and_is_checked_against_the_app(app_factory: Factory) -> None:
    _app, access, _ = app_factory(origins=[APP], credentials=True)
    with pytest.raises(ConfigError) as info:
        access.cors(origins="*")(lambda: "x")
    assert [c for c, _ in info.value.problems] == ["wildcard_with_credentials"]
    with pytest.raises(ConfigError) as info:
        access.cors(origin="typo")
    assert [c for c, _ in info.value.problems] == ["unknown_setting"]


def test_every_denial_sends_the_signal_debug_or_not(app_factory: Factory) -> None:
    app, access, _ = app_factory(origins=[APP])
    seen: list[Any] = []

    def receiver(sender: Flask, event: Any) -> None:
        seen.append((sender, event))

    with request_denied.connected_to(receiver):
        app.test_client().get("/items", headers={"Origin": EVIL})
        app.test_client().get("/items", headers={"Origin": APP})
    assert len(seen) == 1
    sender, event = seen[0]
    assert sender is app and event.reason == "origin_not_allowed" and event.status == 403
    with app.app_context():
        assert access.events.search() == []  # debug off: nothing stored


def test_null_origin(app_factory: Factory) -> None:
    listed, _, _ = app_factory(origins=[APP])
    anonymous, _, _ = app_factory(origins="*")
    assert listed.test_client().get("/items", headers={"Origin": "null"}).status_code == 403
    response = anonymous.test_client().get("/items", headers={"Origin": "null"})
    assert response.headers["Access-Control-Allow-Origin"] == "*"


def test_denial_body_says_nothing_beyond_the_status(app_factory: Factory) -> None:
    app, _, _ = app_factory(origins=[APP])
    body = app.test_client().get("/items", headers={"Origin": EVIL}).get_data(as_text=True)
    assert EVIL not in body and "origin" not in body.lower()


def test_init_app_twice_is_refused(app_factory: Factory) -> None:
    app, access, _ = app_factory(origins=[APP])
    with pytest.raises(RuntimeError):
        access.init_app(app)


def test_one_url_with_a_view_per_method(app_factory: Factory) -> None:
    app, access, ran = app_factory(origins=[APP], methods=["GET"])

    @app.get("/things")
    def list_things() -> str:
        ran.append("list")
        return "list"

    @app.post("/things")
    @access.cors(methods=["POST"])
    def create_thing() -> str:
        ran.append("create")
        return "create"

    client = app.test_client()
    response = preflight(client, "/things", method="POST", headers="content-type")
    assert response.status_code == 204  # answered from the POST view's policy
    assert response.headers["Access-Control-Allow-Methods"] == "POST"
    assert preflight(client, "/things", method="DELETE").status_code == 403
    assert client.post("/things", headers={"Origin": APP}).status_code == 200
    assert ran == ["create"]


def test_vary_origin_even_without_allowed_origins(app_factory: Factory) -> None:
    for settings in ({}, {"origins": [APP], "enabled": False}):
        app, _, _ = app_factory(**settings)
        assert app.test_client().get("/items").headers.getlist("Vary") == ["Origin"]


def test_preflight_answer_has_no_content_type(app_factory: Factory) -> None:
    app, _, _ = app_factory(origins=[APP])
    response = preflight(app.test_client(), "/items")
    assert response.status_code == 204 and "Content-Type" not in response.headers


def test_star_headers_with_authorization_listed(app_factory: Factory) -> None:
    app, _, _ = app_factory(origins=[APP], allow_headers=["*", "Authorization"])
    star, _, _ = app_factory(origins=[APP], allow_headers="*")
    assert preflight(app.test_client(), "/items", headers="authorization,x-any").status_code == 204
    assert preflight(star.test_client(), "/items", headers="authorization").status_code == 403
    assert preflight(star.test_client(), "/items", headers="x-any").status_code == 204


def test_refused_requests_run_none_of_the_apps_url_preprocessors(app_factory: Factory) -> None:
    app, _access, ran = app_factory(origins=[APP], debug=True)
    loaded: list[str] = []

    @app.url_value_preprocessor
    def load_org(endpoint: str | None, values: dict[str, Any] | None) -> None:
        loaded.append(str(endpoint))  # e.g. a database lookup

    client = app.test_client()
    assert client.post("/items", headers={"Origin": EVIL}).status_code == 403
    pre = preflight(client, "/items")
    assert pre.status_code == 204 and pre.headers["Access-Control-Allow-Origin"] == APP
    assert loaded == [] and ran == []
    assert client.get("/items", headers={"Origin": APP}).status_code == 200
    assert loaded == ["items"]


def test_a_view_added_later_with_a_bad_combination_fails_closed() -> None:
    access = AccessCors()

    @access.cors(origins=["http://insecure.example"])  # fine alone, insecure with credentials
    def late() -> str:
        return "late"

    app = Flask(__name__)
    app.config["PROPAGATE_EXCEPTIONS"] = False
    access.init_app(app, origins=[APP], credentials=True, event_store="memory://")
    app.add_url_rule("/late", "late", late)  # the factory pattern: routes after init_app
    client = app.test_client()
    for _ in range(3):  # never served with the insecure policy, not even after a first failure
        response = client.get("/late", headers={"Origin": "http://insecure.example"})
        assert response.status_code == 500
        assert "Access-Control-Allow-Origin" not in response.headers


def test_a_view_decorated_after_init_is_checked_against_every_app() -> None:
    access = AccessCors()
    first, second = Flask("first"), Flask("second")
    access.init_app(first, origins=[APP], event_store="memory://")
    access.init_app(second, origins=[APP], credentials=True, event_store="memory://")
    with pytest.raises(ConfigError) as info:
        access.cors(origins="*")(lambda: "x")
    assert [c for c, _ in info.value.problems] == ["wildcard_with_credentials"]


@pytest.mark.parametrize("store", ["redis://localhost:abc/0", "sqlite:///", "memory://x"])
def test_a_bad_event_store_is_refused_at_start(store: str) -> None:
    with pytest.raises(ConfigError) as info:
        AccessCors(Flask(__name__), event_store=store)
    assert [c for c, _ in info.value.problems] == ["invalid_value"]


def test_a_failed_init_app_leaves_the_app_uninitialised() -> None:
    access = AccessCors()
    bp = Blueprint("open", __name__)
    access.blueprint(bp, origins="*")
    app = Flask(__name__)
    app.register_blueprint(bp)
    with pytest.raises(ConfigError):
        access.init_app(app, origins=[APP], credentials=True, event_store="memory://")
    assert "access_cors" not in app.extensions
    assert app.url_value_preprocessors.get(None, []) == []


def test_per_method_views_when_the_first_is_exempt(app_factory: Factory) -> None:
    app, access, _ = app_factory(origins=[APP])

    @app.get("/mixed")
    @access.exempt
    def mixed_get() -> str:
        return "get"

    @app.post("/mixed")
    def mixed_post() -> str:
        return "post"

    response = preflight(app.test_client(), "/mixed", method="POST")
    assert response.status_code == 204 and response.headers["Access-Control-Allow-Origin"] == APP


def test_excluded_path_denial_varies_on_origin(app_factory: Factory) -> None:
    app, _, _ = app_factory(origins=[APP], excluded_paths=["/items"])
    response = app.test_client().get("/items", headers={"Origin": APP})
    assert response.status_code == 403 and response.headers.getlist("Vary") == ["Origin"]


def test_a_raw_rule_without_methods(app_factory: Factory) -> None:
    from werkzeug.routing import Rule

    app, _, _ = app_factory(origins=[APP])
    app.url_map.add(Rule("/raw", endpoint="raw"))
    app.view_functions["raw"] = lambda: "raw"
    assert preflight(app.test_client(), "/raw", method="PUT").status_code == 204
