"""The access gate through the Flask layer: identities, rules, the login flow, 401/403/503."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest
from flask import Flask, redirect, request

from flask_access_cors import AccessCors, ConfigError

SECRET = "s" * 40
SPA = "http://localhost:5002"
EVIL = "http://127.0.0.1:6666"
SERVICE_SECRET = "x" * 48


def gated_app(**settings: Any) -> tuple[Flask, AccessCors, list[str]]:
    app = Flask(__name__)
    app.secret_key = "test-secret-key"
    app.config["PROPAGATE_EXCEPTIONS"] = False
    settings.setdefault("origins", [SPA])
    settings.setdefault("credentials", True)
    settings.setdefault("jwt_secret", SECRET)
    settings.setdefault("gate", True)
    settings.setdefault("debug", True)
    settings.setdefault("event_store", "memory://")
    access = AccessCors(app, **settings)
    ran: list[str] = []

    @app.route("/api/data", methods=["GET", "PUT"])
    def data() -> dict[str, Any]:
        ran.append("data")
        identity = access.identity
        assert identity is not None
        return {"subject": identity.subject, "source": identity.source,
                "service": identity.is_service}

    @app.route("/login", methods=["GET", "POST"])
    @access.public
    def login() -> Any:
        if request.method == "GET":
            return "<form method=post>"
        response = redirect(access.safe_return_path(request.args.get("redirect_url")) or "/")
        token = access.issue_token(request.form["user"], {"email": request.form["user"]})
        access.set_access_cookie(response, token)
        return response

    return app, access, ran


def reasons(app: Flask, access: AccessCors) -> list[str]:
    with app.app_context():
        return [e.reason for e in access.events.search()]


def test_login_round_trip() -> None:
    app, access, ran = gated_app(login_url="/login")
    client = app.test_client()
    first = client.get("/api/data?page=2", headers={"Sec-Fetch-Mode": "navigate",
                                                    "Accept": "text/html"})
    assert first.status_code == 302 and ran == []
    location = urlsplit(first.headers["Location"])
    assert location.path == "/login"
    redirect_url = parse_qs(location.query)["redirect_url"][0]
    login = client.post(f"/login?redirect_url={redirect_url}", data={"user": "ann@example.com"})
    assert login.status_code == 302
    assert login.headers["Location"] == "/api/data?page=2"
    cookie = login.headers["Set-Cookie"]
    for attribute in ("HttpOnly", "SameSite=Lax", "Path=/"):
        assert attribute in cookie
    assert "Secure" not in cookie  # plain http on a loopback host only
    back = client.get("/api/data?page=2")
    assert back.status_code == 200
    assert back.get_json() == {"subject": "ann@example.com", "source": "cookie", "service": False}
    assert reasons(app, access) == ["token_missing"]


def test_cookie_is_secure_on_a_public_host() -> None:
    app, access, _ = gated_app()
    with app.test_request_context("/", base_url="https://api.example.com"):
        response = access.set_access_cookie(app.response_class(), "t")
    assert "Secure" in response.headers["Set-Cookie"]
    with app.test_request_context("/", base_url="https://api.example.com"):
        cleared = access.clear_access_cookie(app.response_class())
    assert "Max-Age=0" in cleared.headers["Set-Cookie"] or "expires=" in cleared.headers[
        "Set-Cookie"].lower()


def test_unauthenticated_cors_request_gets_a_readable_401() -> None:
    app, access, ran = gated_app(login_url="/login")
    response = app.test_client().get("/api/data", headers={"Origin": SPA})
    assert response.status_code == 401 and ran == []
    assert response.headers["Access-Control-Allow-Origin"] == SPA
    assert response.headers["Access-Control-Allow-Credentials"] == "true"
    body = response.get_json()
    assert body["error"] == "unauthorized"
    login = urlsplit(body["login_url"])
    assert (login.scheme, login.netloc, login.path) == ("http", "localhost", "/login")  # absolute
    query = parse_qs(login.query)
    with app.test_request_context("/"):
        assert access.safe_return_path(query["redirect_url"][0]) == SPA


def test_disallowed_origin_gets_403_before_the_gate() -> None:
    app, access, ran = gated_app()
    response = app.test_client().get("/api/data", headers={"Origin": EVIL})
    assert response.status_code == 403 and ran == []
    assert reasons(app, access) == ["origin_not_allowed"]


@pytest.mark.parametrize(
    ("rule", "user", "groups", "allowed"),
    [
        ({"emails": ["ann@example.com"]}, "ann@example.com", None, True),
        ({"emails": ["ann@example.com"]}, "bob@example.com", None, False),
        ({"email_domains": ["example.com"]}, "bob@EXAMPLE.com", None, True),
        ({"email_domains": ["example.com"]}, "bob@example.com.evil", None, False),
        ({"groups": ["admins"]}, "carl@x.test", ["admins", "staff"], True),
        ({"groups": ["admins"]}, "carl@x.test", ["staff"], False),
        ({"service_tokens": ["ci"]}, "dora@x.test", None, False),
    ],
)
def test_require_rules(rule: dict[str, Any], user: str, groups: list[str] | None,
                       allowed: bool) -> None:
    app, access, ran = gated_app(require=rule)
    with app.test_request_context("/"):
        claims: dict[str, Any] = {"email": user}
        if groups:
            claims["groups"] = groups
        token = access.issue_token(user, claims)
    response = app.test_client().get("/api/data", headers={"Origin": SPA,
                                                           "Cf-Access-Jwt-Assertion": token})
    assert response.status_code == (200 if allowed else 403)
    assert response.headers["Access-Control-Allow-Origin"] == SPA  # readable either way
    assert ran == (["data"] if allowed else [])
    if not allowed:
        assert reasons(app, access) == ["access_denied"]


def test_service_tokens() -> None:
    app, access, ran = gated_app(service_tokens={"ci.access": SERVICE_SECRET},
                                 require={"service_tokens": ["ci.access"]})
    client = app.test_client()
    ok = client.get("/api/data", headers={"CF-Access-Client-Id": "ci.access",
                                          "CF-Access-Client-Secret": SERVICE_SECRET})
    assert ok.status_code == 200
    assert ok.get_json() == {"subject": "ci.access", "source": "service_token", "service": True}
    for secret in ("wrong" * 10, "é" * 30, "x" * 5000):
        bad = client.get("/api/data", headers={"CF-Access-Client-Id": "ci.access",
                                               "CF-Access-Client-Secret": secret})
        assert bad.status_code == 401
    assert ran == ["data"]
    assert set(reasons(app, access)) == {"service_token_invalid"}


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda t: t[:-6] + ("A" if t[-6] != "A" else "B") + t[-5:], "token_invalid"),
        (lambda t: t + "!", "token_malformed"),
        (lambda t: "not-a-token", "token_malformed"),
        (lambda t: "x" * 20000, "token_malformed"),
        (lambda t: jwt.encode({"sub": "a", "iat": int(time.time()), "exp": int(time.time()) + 60},
                              "", algorithm="none"), "token_invalid"),
        (lambda t: jwt.encode({"sub": "a", "iat": int(time.time()) - 7200,
                               "exp": int(time.time()) - 3600}, SECRET, algorithm="HS256"),
         "token_expired"),
    ],
)
def test_bad_tokens_are_401_with_their_reason(mutate: Any, reason: str) -> None:
    app, access, ran = gated_app()
    with app.test_request_context("/"):
        token = mutate(access.issue_token("ann"))
    response = app.test_client().get("/api/data", headers={"Cf-Access-Jwt-Assertion": token})
    assert response.status_code == 401 and ran == []
    assert reasons(app, access) == [reason]


def test_header_token_that_fails_is_not_retried_from_the_cookie() -> None:
    app, access, ran = gated_app()
    with app.test_request_context("/"):
        good = access.issue_token("ann")
    client = app.test_client()
    client.set_cookie("CF_Authorization", good)
    assert client.get("/api/data").status_code == 200
    assert client.get("/api/data", headers={"Cf-Access-Jwt-Assertion": "bad"}).status_code == 401
    assert ran == ["data"]


def test_two_access_cookies_are_malformed() -> None:
    app, access, ran = gated_app()
    with app.test_request_context("/"):
        good = access.issue_token("ann")
    response = app.test_client(use_cookies=False).get(
        "/api/data", headers={"Cookie": f"CF_Authorization={good}; CF_Authorization={good}"})
    assert response.status_code == 401 and ran == []
    assert reasons(app, access) == ["token_malformed"]


@pytest.mark.parametrize(
    ("mode", "status", "ran_views"),
    [("respond", 204, []), ("bypass", 200, []), ("gate", 401, [])],
)
def test_preflight_modes(mode: str, status: int, ran_views: list[str]) -> None:
    app, _, ran = gated_app(preflight=mode)
    response = app.test_client().options("/api/data", headers={
        "Origin": SPA, "Access-Control-Request-Method": "PUT"})
    assert response.status_code == status
    assert ran == ran_views
    if status != 401:
        assert response.headers["Access-Control-Allow-Origin"] == SPA


def test_gate_mode_preflight_passes_with_a_token() -> None:
    app, access, _ = gated_app(preflight="gate")
    with app.test_request_context("/"):
        token = access.issue_token("ann")
    response = app.test_client().options("/api/data", headers={
        "Origin": SPA, "Access-Control-Request-Method": "PUT", "Cf-Access-Jwt-Assertion": token})
    assert response.status_code == 204


def test_key_server_down_is_503_with_retry_after() -> None:
    app, access, ran = gated_app(jwt_secret=None, jwks_url="http://127.0.0.1:9/certs",
                                 audience="aud", issuer="https://team.example")
    key = "k" * 40
    token = jwt.encode({"sub": "a", "aud": "aud", "iss": "https://team.example",
                        "iat": int(time.time()), "exp": int(time.time()) + 60}, key,
                       algorithm="HS256", headers={"kid": "k1"})
    rsa_like = jwt.api_jws.PyJWS().encode(b"{}", key, "HS256")  # noqa: F841 - any token shape
    response = app.test_client().get("/api/data", headers={"Cf-Access-Jwt-Assertion": token,
                                                           "Origin": SPA})
    # an HS256 token is refused before any key is fetched; an RS256 header needs the key server
    assert response.status_code == 401
    header = jwt.utils.base64url_encode(b'{"alg":"RS256","kid":"k1","typ":"JWT"}').decode()
    payload = jwt.utils.base64url_encode(b'{"sub":"a"}').decode()
    response = app.test_client().get(
        "/api/data", headers={"Cf-Access-Jwt-Assertion": f"{header}.{payload}.AAAA",
                              "Origin": SPA})
    assert response.status_code == 503
    assert int(response.headers["Retry-After"]) > 0
    assert response.headers["Access-Control-Allow-Origin"] == SPA
    assert ran == []
    assert reasons(app, access)[0] == "key_unavailable"


@pytest.mark.parametrize(
    "target",
    ["//evil.com", "/\\evil.com", "/\t/evil.com", "/ /evil.com", "https://evil.com",
     "/%2F%2Fevil.com", "/%5Cevil.com", "/%252F%252Fevil.com", "\\\\evil.com", "evil.com",
     "javascript:alert(1)", "http://localhost:5002.evil.com", "/ok\r\nSet-Cookie: x=1"],
)
def test_open_redirect_vectors_are_refused(target: str) -> None:
    app, access, _ = gated_app(login_url="/login")
    state = app.extensions["access_cors"]
    with app.test_request_context("/"):
        signed = state.login.serializer.dumps(target)  # even a validly signed target is checked
        assert access.safe_return_path(signed) is None
        assert access.safe_return_path(state.login.serializer.dumps("/fine?x=1")) == "/fine?x=1"
        assert access.safe_return_path(state.login.serializer.dumps(SPA)) == SPA
        assert access.safe_return_path(target) is None  # unsigned


def test_config_errors_of_the_gate() -> None:
    cases: list[tuple[dict[str, Any], set[str]]] = [
        ({"jwks_url": "https://t.example/certs"}, {"missing_audience", "missing_issuer"}),
        ({"jwks_url": "https://t.example/certs", "audience": [], "issuer": "i"},
         {"missing_audience"}),
        ({"jwks_url": "https://t.example/certs", "audience": "a", "issuer": "i",
          "jwt_secret": SECRET}, {"conflicting_keys"}),
        ({"jwt_secret": "short"}, {"weak_secret"}),
        ({"login_url": "/login"}, {"missing_secret_key"}),
        ({"jwks_url": "http://t.example/certs", "audience": "a", "issuer": "i"},
         {"insecure_origin"}),
        ({"service_tokens": {"ci": "short"}}, {"weak_secret"}),
        ({"gate": True}, {"missing_verifier"}),
    ]
    for settings, expected in cases:
        app = Flask(__name__)
        with pytest.raises(ConfigError) as info:
            AccessCors(app, event_store="memory://", **settings)
        assert {c for c, _ in info.value.problems} == expected, settings


def test_team_domain_fills_in_cloudflare_urls() -> None:
    app = Flask(__name__)
    AccessCors(app, team_domain="myteam.cloudflareaccess.com", audience="tag",
               event_store="memory://")
    verifier = app.extensions["access_cors"].gate.verifier
    assert verifier is not None
    assert verifier._jwks.url == "https://myteam.cloudflareaccess.com/cdn-cgi/access/certs"


def test_excluded_paths_still_need_authentication() -> None:
    app, access, _ran = gated_app(excluded_paths=["/api/data"])
    client = app.test_client()
    assert client.get("/api/data").status_code == 401  # excluded from CORS, not from the gate
    assert client.get("/api/data", headers={"Origin": SPA}).status_code == 403
    with app.test_request_context("/"):
        token = access.issue_token("ann")
    ok = client.get("/api/data", headers={"Cf-Access-Jwt-Assertion": token})
    assert ok.status_code == 200 and "Access-Control-Allow-Origin" not in ok.headers
    assert reasons(app, access) == ["excluded_path", "token_missing"]


@pytest.mark.parametrize(
    ("accept", "fetch_mode", "status"),
    [("text/html,application/xhtml+xml,*/*;q=0.8", None, 302),
     ("application/json, text/html;q=0.1", None, 401),
     ("*/*", None, 401),
     ("*/*", "navigate", 302),
     ("text/html", "cors", 401)],
)
def test_login_redirect_only_for_page_navigations(accept: str, fetch_mode: str | None,
                                                  status: int) -> None:
    app, _, _ = gated_app(login_url="/login")
    headers = {"Accept": accept}
    if fetch_mode:
        headers["Sec-Fetch-Mode"] = fetch_mode
    assert app.test_client().get("/api/data", headers=headers).status_code == status


def test_client_id_header_without_service_tokens_falls_back_to_the_token() -> None:
    app, access, _ = gated_app()
    with app.test_request_context("/"):
        token = access.issue_token("ann")
    response = app.test_client().get("/api/data", headers={
        "CF-Access-Client-Id": "passed-through", "Cf-Access-Jwt-Assertion": token})
    assert response.status_code == 200 and response.get_json()["source"] == "header"


def test_gate_mode_preflight_401_carries_the_login_url() -> None:
    app, _, _ = gated_app(preflight="gate", login_url="/login")
    response = app.test_client().options("/api/data", headers={
        "Origin": SPA, "Access-Control-Request-Method": "PUT"})
    assert response.status_code == 401
    assert response.get_json()["login_url"].startswith("http://localhost/login?redirect_url=")


def test_absurd_expiry_is_invalid_not_a_crash() -> None:
    app, access, ran = gated_app()
    now = int(time.time())
    token = jwt.encode({"sub": "a", "iat": now, "exp": 10**400}, SECRET, algorithm="HS256")
    response = app.test_client().get("/api/data", headers={"Cf-Access-Jwt-Assertion": token})
    assert response.status_code == 401 and ran == []
    assert reasons(app, access) == ["token_invalid"]


def test_repeated_token_is_served_from_the_identity_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    app, access, _ = gated_app()
    with app.test_request_context("/"):
        token = access.issue_token("ann")
    verifier = app.extensions["access_cors"].gate.verifier
    calls: list[str] = []
    original = verifier.verify
    monkeypatch.setattr(verifier, "verify", lambda t: calls.append(t) or original(t))
    client = app.test_client()
    for _ in range(3):
        assert client.get("/api/data", headers={"Cf-Access-Jwt-Assertion": token}).status_code == 200
    assert calls == [token]  # verified once
