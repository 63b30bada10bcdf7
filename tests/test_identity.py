"""SPEC 8.2, identity for real deployments, through real HTTP.

The app runs behind Werkzeug's real server; tokens come from the test kit's
:class:`FakeAccess` (a loopback JWKS) and from a second, independent JWKS server
(the token suite's :class:`JWKSServer`), so key fetching, rotation and outages
are real.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import rsa
from flask import Blueprint, Flask, jsonify

from flask_access_cors import AccessCors, ConfigError
from flask_access_cors.testing import FakeAccess
from tests.test_journey import serve
from tests.test_tokens import JWKSServer, to_jwk

SPA = "https://app.example.com"
OTHER_ISS = "https://login.example.net"
OTHER_AUD = "other-aud"


@pytest.fixture
def other_idp() -> Iterator[tuple[JWKSServer, rsa.RSAPrivateKey]]:
    """A second identity provider: its own JWKS server and key."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    srv = JWKSServer()
    srv.document = {"keys": [to_jwk(key, "other-1")]}
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield srv, key
    finally:
        srv.stop.set()
        srv.shutdown()
        srv.server_close()
        thread.join(5)


def other_token(key: rsa.RSAPrivateKey, **claims: Any) -> str:
    now = int(time.time())
    payload = {"sub": "bob", "email": "bob@example.net", "iss": OTHER_ISS, "aud": OTHER_AUD,
               "iat": now, "exp": now + 600, **claims}
    return jwt.encode(payload, key, algorithm="RS256", headers={"kid": "other-1"})


def whoami_app(**settings: Any) -> tuple[Flask, AccessCors]:
    app = Flask(__name__)
    app.config["PROPAGATE_EXCEPTIONS"] = False
    settings.setdefault("event_store", "memory://")
    settings.setdefault("debug", True)
    access = AccessCors(app, origins=[SPA], **settings)

    def who() -> Any:
        identity = access.identity
        return jsonify(subject=identity.subject if identity else None,
                       email=identity.email if identity else None,
                       groups=sorted(identity.groups) if identity else [])

    app.add_url_rule("/public", "public", access.public(who))
    app.add_url_rule("/private", "private", who)
    return app, access


def get(port: int, path: str, token: str | None = None, **headers: str) -> requests.Response:
    if token is not None:
        headers["Cf-Access-Jwt-Assertion"] = token
    return requests.get(f"http://127.0.0.1:{port}{path}", headers=headers, timeout=10)


# -- optional authentication ------------------------------------------------------------------


def test_a_public_view_knows_a_logged_in_caller(fake_access: FakeAccess) -> None:
    app, access = whoami_app(gate=True, **fake_access.settings)
    with serve(app) as port:
        known = get(port, "/public", fake_access.token(email="alice@example.com"))
        assert known.status_code == 200
        assert known.json()["email"] == "alice@example.com"
        assert known.headers["Cache-Control"] == "private"  # personalised: not for shared caches
        for bad in (None, "not-a-jwt", fake_access.token(exp=int(time.time()) - 3600),
                    fake_access.token(aud=["someone-else"])):
            anonymous = get(port, "/public", bad)
            assert anonymous.status_code == 200, bad
            assert anonymous.json()["subject"] is None
        assert get(port, "/private").status_code == 401  # the gate itself is unchanged
    with app.app_context():
        assert [e.reason for e in access.events.search()] == ["token_missing"]


def test_a_scope_without_gate_also_knows_its_caller(fake_access: FakeAccess) -> None:
    app, _ = whoami_app(**fake_access.settings)
    with serve(app) as port:
        assert get(port, "/private", fake_access.token(email="c@example.com")).json()["email"] \
            == "c@example.com"
        assert get(port, "/private", "garbage").json()["email"] is None


# -- groups under custom --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("claims", "admitted"),
    [
        ({"custom": {"groups": ["admins"]}}, True),
        ({"custom": {"roles": "admins"}}, True),
        ({"groups": ["admins"]}, True),
        ({"custom": {"groups": ["users"]}}, False),
        ({"custom": "admins"}, False),
        ({"custom": {"groups": [{"name": "admins"}]}}, False),
    ],
)
def test_require_groups_reads_cloudflare_custom_claims(
    fake_access: FakeAccess, claims: dict[str, Any], admitted: bool
) -> None:
    app, _ = whoami_app(require={"groups": ["admins"]}, **fake_access.settings)
    with serve(app) as port:
        response = get(port, "/private", fake_access.token(**claims))
        assert response.status_code == (200 if admitted else 403)


def test_fake_access_puts_groups_under_custom(fake_access: FakeAccess) -> None:
    token = fake_access.token(groups=["eng"])
    assert jwt.decode(token, options={"verify_signature": False})["custom"] == {"groups": ["eng"]}


# -- audience per application ------------------------------------------------------------------


def per_path_app(fake: FakeAccess, **settings: Any) -> Flask:
    """Two Cloudflare Access applications, one per path, each with its own AUD tag."""
    app = Flask(__name__)
    app.config["PROPAGATE_EXCEPTIONS"] = False
    app.secret_key = "per-path-secret"
    access = AccessCors(app, origins=[SPA], gate=True, event_store="memory://",
                        **{**fake.settings, **settings})
    for name, aud in (("tool", "aud-public-tool"), ("admin", "aud-admin")):
        bp = access.blueprint(Blueprint(name, __name__, url_prefix=f"/{name}"), audience=aud)
        bp.add_url_rule("/", "index", lambda name=name: name)
        app.register_blueprint(bp)
    return app


def test_a_token_minted_for_one_application_does_not_open_another(fake_access: FakeAccess) -> None:
    app = per_path_app(fake_access)
    with serve(app) as port:
        tool = fake_access.token(aud=["aud-public-tool"])
        admin = fake_access.token(aud=["aud-admin"])
        assert get(port, "/tool/", tool).status_code == 200
        assert get(port, "/admin/", admin).status_code == 200
        assert get(port, "/admin/", tool).status_code == 401
        assert get(port, "/tool/", admin).status_code == 401
        assert get(port, "/tool/", fake_access.token(aud=["aud-public-tool", "aud-admin"])) \
            .status_code == 200


def test_an_audience_no_issuer_can_mint_is_a_config_error(fake_access: FakeAccess) -> None:
    with pytest.raises(ConfigError) as info:
        app = Flask(__name__)
        access = AccessCors(app, event_store="memory://", issuers=[fake_access.issuer_entry])
        bp = access.blueprint(Blueprint("x", __name__, url_prefix="/x"), gate=True,
                              audience="nobody-mints-this")
        bp.add_url_rule("/", "index", lambda: "x")
        app.register_blueprint(bp)
    assert [c for c, _ in info.value.problems] == ["unreachable_audience"]


# -- several issuers ---------------------------------------------------------------------------


def two_issuer_app(fake: FakeAccess, other: JWKSServer, **settings: Any) -> Flask:
    app, _ = whoami_app(gate=True, issuers=[
        fake.issuer_entry,
        {"jwks_url": other.url, "issuer": OTHER_ISS, "audience": [OTHER_AUD]},
    ], jwks_cooldown=0, **settings)
    return app


def test_tokens_of_each_issuer_are_verified_by_their_own_keys(
    fake_access: FakeAccess, other_idp: tuple[JWKSServer, rsa.RSAPrivateKey]
) -> None:
    other, key = other_idp
    app = two_issuer_app(fake_access, other)
    with serve(app) as port:
        assert get(port, "/private", fake_access.token(email="a@x.com")).json()["email"] == "a@x.com"
        assert get(port, "/private", other_token(key)).json()["email"] == "bob@example.net"
        # a token naming one issuer but signed with the other's key
        forged = other_token(key, iss=fake_access.issuer, aud=[fake_access.audience])
        assert get(port, "/private", forged).status_code == 401
        unknown = other_token(key, iss="https://elsewhere.example")
        assert get(port, "/private", unknown).status_code == 401


def test_an_issuer_outage_affects_only_its_own_tokens(
    fake_access: FakeAccess, other_idp: tuple[JWKSServer, rsa.RSAPrivateKey]
) -> None:
    other, key = other_idp
    other.mode = "error"  # the second provider's key server is down from the start
    app = two_issuer_app(fake_access, other)
    with serve(app) as port:
        assert get(port, "/private", other_token(key)).status_code == 503
        assert get(port, "/private", fake_access.token()).status_code == 200


def test_self_issued_tokens_are_accepted_beside_jwks_issuers(
    fake_access: FakeAccess, other_idp: tuple[JWKSServer, rsa.RSAPrivateKey]
) -> None:
    other, _ = other_idp
    app, access = whoami_app(gate=True, jwt_secret="k" * 40, issuer="https://api.example.com",
                             issuers=[fake_access.issuer_entry,
                                      {"jwks_url": other.url, "issuer": OTHER_ISS,
                                       "audience": [OTHER_AUD]}])
    with serve(app) as port, app.app_context():
        own = access.issue_token("carol", {"email": "c@own.example"})
        assert jwt.decode(own, options={"verify_signature": False})["iss"] == "https://api.example.com"
        assert get(port, "/private", own).json()["email"] == "c@own.example"
        assert get(port, "/private", fake_access.token(email="d@x.com")).json()["email"] == "d@x.com"


@pytest.mark.parametrize(
    ("settings", "codes"),
    [
        ({"issuers": [{"issuer": "https://a", "jwks_url": "https://a/certs", "audience": "x"},
                      {"issuer": "https://a", "jwks_url": "https://b/certs", "audience": "y"}]},
         ["conflicting_keys"]),
        ({"issuers": [{"team_domain": "t.cloudflareaccess.com"}]}, ["missing_audience"]),
        ({"issuers": [{"jwks_url": "https://a/certs", "audience": "x"}]}, ["missing_issuer"]),
        ({"issuers": [{"team_domain": "t.cloudflareaccess.com", "audience": "x"}],
          "jwt_secret": "k" * 40, "issuer": "https://t.cloudflareaccess.com"}, ["conflicting_keys"]),
        ({"issuers": [{"team_domain": "t.cloudflareaccess.com", "audience": "x"}],
          "jwt_secret": "k" * 40}, ["missing_issuer"]),
        ({"issuers": [{"team_domain": "t.cloudflareaccess.com", "audience": "x", "aud": "y"}]},
         ["invalid_value"]),
        ({"issuers": [{"team_domain": "t.cloudflareaccess.com", "audience": "x"}],
          "team_domain": "u.cloudflareaccess.com", "audience": "y"}, ["conflicting_keys"]),
    ],
)
def test_issuer_mistakes_are_config_errors(settings: dict[str, Any], codes: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        AccessCors(Flask(__name__), event_store="memory://", **settings)
    assert [c for c, _ in info.value.problems] == codes


# -- the test kit ----------------------------------------------------------------------------


def test_rotation_while_serving(fake_access: FakeAccess) -> None:
    app, _ = whoami_app(gate=True, **fake_access.settings)
    with serve(app) as port:
        before = fake_access.token(email="old@example.com")
        assert get(port, "/private", before).status_code == 200
        fake_access.rotate()
        after = fake_access.token(email="new@example.com")
        assert jwt.get_unverified_header(after)["kid"] != jwt.get_unverified_header(before)["kid"]
        assert get(port, "/private", after).json()["email"] == "new@example.com"
        assert get(port, "/private", before).status_code == 200  # the old key stays published
        assert fake_access.fetches == 2


def test_service_token_jwts_are_service_identities(fake_access: FakeAccess) -> None:
    app, _ = whoami_app(require={"service_tokens": ["ci-bot.access"]}, **fake_access.settings)
    with serve(app) as port:
        assert get(port, "/private", fake_access.service_token("ci-bot.access")).json()["subject"] \
            == "ci-bot.access"
        assert get(port, "/private", fake_access.service_token("other.access")).status_code == 403


def test_log_in_gives_the_test_client_the_access_cookie(fake_access: FakeAccess) -> None:
    app, _ = whoami_app(gate=True, **fake_access.settings)
    client = app.test_client()
    assert client.get("/private").status_code == 401
    fake_access.log_in(client, email="eve@example.com", groups=["eng"])
    response = client.get("/private")
    assert response.json == {"subject": response.json["subject"], "email": "eve@example.com",
                             "groups": ["eng"]}


def test_a_token_for_another_application_is_sent_to_log_in_like_no_token(
    fake_access: FakeAccess
) -> None:
    app = per_path_app(fake_access, login_url="/login")
    client = app.test_client()
    other_app = fake_access.token(aud=["aud-public-tool"])
    page = client.get("/admin/", headers={"Cf-Access-Jwt-Assertion": other_app,
                                          "Sec-Fetch-Mode": "navigate"})
    assert page.status_code == 302 and page.headers["Location"].startswith("/login?redirect_url=")
    script = client.get("/admin/", headers={"Cf-Access-Jwt-Assertion": other_app, "Origin": SPA})
    assert script.status_code == 401
    assert script.json is not None and script.json["login_url"].startswith("http://localhost/login?")
