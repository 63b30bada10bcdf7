"""Tests for flask_access_cors.tokens: lookup, JWKS, verification, cache, service tokens, issuing.

The JWKS tests talk to a real HTTP server on loopback whose behaviour each test
switches (keys, rotation, down, slow, garbage, oversize, redirect, ...) and
which counts the requests it receives.

Those tests must not depend on how fast this machine is at the moment (a full
run on two busy cores can stall a thread for a long time):

* each server answers on a path of its own (``/certs/<random>``), so only its
  own client's requests are counted, never a stray one that reaches a recycled
  loopback port;
* clients that are not testing a timeout get one (``NO_TIMEOUT``) that a
  passing run never reaches, so a slow moment cannot turn a fetch into a
  failure;
* a count taken after the client has given up waits for the server thread to
  record the request (:meth:`JWKSServer.wait_for_hits`);
* tests that are about a timeout bound the elapsed time by what the client
  would take *without* the timeout, not by the timeout plus a small margin.
"""

from __future__ import annotations

import ast
import base64
import hashlib
import hmac
import http.server
import json
import logging
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from hypothesis import given, settings
from hypothesis import strategies as st
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from flask_access_cors import tokens
from flask_access_cors.jwks import JWKSClient
from flask_access_cors.reasons import TokenError
from flask_access_cors.tokens import (
    Identity,
    ServiceTokens,
    TokenIssuer,
    TokenVerifier,
    identity_from_claims,
    load_private_key,
    locate_token,
)

AUD = "4714c1358e65fe4b408ad6d432a5f878f08194bdb4752441fd56faefa9b2b6f2"
ISS = "https://myteam.cloudflareaccess.com"
SECRET = b"s" * 32
HEADERS = ("Cf-Access-Jwt-Assertion", "Cf-Access-Token")
COOKIE = "CF_Authorization"
DROP = object()  # sentinel: remove this claim

#: A timeout for JWKS clients whose test is not about timeouts: far longer than
#: any fetch from loopback takes, even on a loaded machine.
NO_TIMEOUT = 30.0


# --------------------------------------------------------------------------- helpers


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def craft(header: dict[str, Any], payload: dict[str, Any], signature: bytes = b"sig") -> str:
    """A token assembled by hand, for shapes PyJWT refuses to produce."""
    return ".".join([b64(json.dumps(header).encode()), b64(json.dumps(payload).encode()), b64(signature)])


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {
        "sub": "user-1",
        "email": "ada@example.com",
        "aud": [AUD],
        "iss": ISS,
        "iat": now,
        "exp": now + 300,
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not DROP}


def sign(key: Any, alg: str = "RS256", kid: str | None = "A", **overrides: Any) -> str:
    headers = {"kid": kid} if kid is not None else None
    return jwt.encode(claims(**overrides), key, algorithm=alg, headers=headers)


def to_jwk(private_key: Any, kid: str | None, **extra: Any) -> dict[str, Any]:
    public = private_key.public_key()
    if isinstance(public, rsa.RSAPublicKey):
        data = RSAAlgorithm.to_jwk(public, as_dict=True)
        data["alg"] = "RS256"
    else:
        data = ECAlgorithm.to_jwk(public, as_dict=True)
        data["alg"] = "ES256"
    data["use"] = "sig"
    if kid is not None:
        data["kid"] = kid
    data.update(extra)
    return {k: v for k, v in data.items() if v is not DROP}


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def reason_of(call: Callable[[], object]) -> str:
    with pytest.raises(TokenError) as info:
        call()
    return info.value.reason


# --------------------------------------------------------------------------- keys


@pytest.fixture(scope="session")
def key_a() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="session")
def key_b() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="session")
def key_attacker() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="session")
def key_ec() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


# --------------------------------------------------------------------------- JWKS server


class JWKSServer(http.server.ThreadingHTTPServer):
    """A JWKS endpoint whose behaviour a test switches through ``mode``."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _JWKSHandler)
        self.mode = "keys"
        self.document: dict[str, Any] = {"keys": []}
        self.body = b""
        self.send_length = True
        self.delay = 0.0
        # A path nobody else knows: a request for it can only come from this test's client.
        self.certs_path = f"/certs/{secrets.token_hex(8)}"
        self.redirect_target = f"{self.certs_path}/moved-target"
        self.paths: list[str] = []  # every request line's path, in arrival order
        self.recorded = threading.Condition()
        self.stop = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{self.certs_path}"

    @property
    def hits(self) -> int:
        """Requests for this server's JWKS path received so far."""
        with self.recorded:
            return self.paths.count(self.certs_path)

    def record(self, path: str) -> None:
        with self.recorded:
            self.paths.append(path)
            self.recorded.notify_all()

    def wait_for_hits(self, n: int, timeout: float = NO_TIMEOUT) -> int:
        """The hit count once it reaches ``n`` (or ``timeout`` passes).

        For counts taken after the client gave up (a timeout, a reset): the
        server thread may not have read the request line yet.
        """
        with self.recorded:
            self.recorded.wait_for(lambda: self.paths.count(self.certs_path) >= n, timeout)
            return self.paths.count(self.certs_path)

    def serve(self, *private_keys_and_kids: tuple[Any, str], **extra: Any) -> None:
        self.mode = "keys"
        self.document = {"keys": [to_jwk(k, kid) for k, kid in private_keys_and_kids], **extra}

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients that gave up (timeouts) break the pipe; that is expected here."""


class _JWKSHandler(http.server.BaseHTTPRequestHandler):
    server: JWKSServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        srv = self.server
        srv.record(self.path)
        if self.path == srv.redirect_target:
            return self._send(200, json.dumps(srv.document).encode())
        if self.path != srv.certs_path:
            return self._send(404, b'{"error": "unknown path"}')
        if srv.delay:
            srv.stop.wait(srv.delay)
        mode = srv.mode
        if mode == "keys":
            self._send(200, json.dumps(srv.document).encode())
        elif mode == "error":
            self._send(500, b'{"error": "down"}')
        elif mode == "garbage":
            self._send(200, b"<html>definitely not json")
        elif mode == "empty":
            self._send(200, b'{"keys": []}')
        elif mode == "raw":
            self._send(200, srv.body, content_length=srv.send_length)
        elif mode == "redirect":
            self.send_response(302)
            self.send_header("Location", srv.redirect_target)
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif mode == "reset":
            self.close_connection = True  # no response at all
        elif mode == "endless":
            self.send_response(200)
            self.end_headers()  # no Content-Length: the body ends when the connection does
            while not srv.stop.is_set():
                self.wfile.write(b" " * 65536)
        elif mode == "drip":
            self.send_response(200)
            self.send_header("Content-Length", "100000")
            self.end_headers()
            for _ in range(200):
                self.wfile.write(b" ")
                self.wfile.flush()
                if srv.stop.wait(0.05):
                    break

    def _send(self, status: int, body: bytes, content_length: bool = True) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        if content_length:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def server() -> Iterator[JWKSServer]:
    srv = JWKSServer()
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield srv
    finally:
        srv.stop.set()
        srv.shutdown()
        srv.server_close()
        thread.join(5)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def client(server: JWKSServer, clock: FakeClock) -> JWKSClient:
    return JWKSClient(server.url, cooldown=30, lifespan=300, timeout=NO_TIMEOUT, clock=clock)


@pytest.fixture
def verifier(client: JWKSClient) -> TokenVerifier:
    return TokenVerifier(algorithms=["RS256", "ES256"], audience=AUD, issuer=ISS, jwks=client)


# --------------------------------------------------------------------------- JWKS client


def test_jwks_keys_are_fetched_once_and_cached(server, client, key_a):
    server.serve((key_a, "A"))
    first = client.get_key("A")
    second = client.get_key("A")
    assert first is second
    assert server.hits == 1 == client.fetches
    assert first.algorithm_name == "RS256"
    claims_ = jwt.decode(sign(key_a), first, algorithms=["RS256"], audience=AUD)
    assert claims_["sub"] == "user-1"


def test_jwks_rotation_old_and_new_kid_both_verify(server, client, clock, verifier, key_a, key_b):
    server.serve((key_a, "A"))
    assert verifier.verify(sign(key_a, kid="A"))["sub"] == "user-1"
    server.serve((key_a, "A"), (key_b, "B"))  # overlap: both published
    clock.advance(31)
    assert verifier.verify(sign(key_b, kid="B", sub="bob"))["sub"] == "bob"
    assert verifier.verify(sign(key_a, kid="A", sub="ann"))["sub"] == "ann"
    assert server.hits == 2
    server.serve((key_b, "B"))  # A retired
    clock.advance(301)
    assert reason_of(lambda: verifier.verify(sign(key_a, kid="A", sub="late"))) == "key_unknown"
    assert verifier.verify(sign(key_b, kid="B", sub="carl"))["sub"] == "carl"


FAILURES = ["error", "reset", "garbage", "empty", "redirect", "oversize"]

#: What the client logs for each failure: a fetch that failed for another reason
#: (a timeout on a slow moment, say) must not pass for the one under test.
FAILURE_LOGGED = {
    "error": "(HTTP status 500)",
    "reset": "(ConnectionError)",
    "garbage": "(body is not JSON)",
    "empty": "(no usable signing key in the set)",
    "redirect": "(HTTP status 302)",
    "oversize": "exceeds 262144)",
}


def _break(server: JWKSServer, failure: str) -> None:
    if failure == "oversize":
        server.mode = "raw"
        server.body = json.dumps(server.document).encode() + b" " * 300_000
    else:
        server.mode = failure


@pytest.mark.parametrize("failure", FAILURES)
def test_jwks_stale_if_error_keeps_serving_last_good_set(server, client, clock, key_a, failure, caplog):
    server.serve((key_a, "A"))
    good = client.get_key("A")
    _break(server, failure)
    clock.advance(301)  # past lifespan: a refetch is due
    with caplog.at_level(logging.WARNING, logger="flask_access_cors"):
        assert client.get_key("A") is good
    assert server.hits == 2
    ours = [r for r in caplog.records if r.name == "flask_access_cors" and server.url in r.getMessage()]
    assert [r.levelno for r in ours] == [logging.WARNING]
    assert FAILURE_LOGGED[failure] in ours[0].getMessage()
    assert "still serving the last good key set" in ours[0].getMessage()
    clock.advance(31)
    assert reason_of(lambda: client.get_key("B")) == "key_unknown"
    assert client.get_key("A") is good


@pytest.mark.parametrize("failure", FAILURES)
def test_jwks_down_from_the_start_is_key_unavailable(server, client, key_a, failure):
    server.serve((key_a, "A"))
    _break(server, failure)
    assert reason_of(lambda: client.get_key("A")) == "key_unavailable"
    assert server.hits == 1
    assert server.redirect_target not in server.paths  # the redirect was not followed


def test_jwks_closed_port_is_key_unavailable():
    # Bound but not listening: connections are refused, and while we hold the
    # port no other server (another test, another process) can take it.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        jwks = JWKSClient(f"http://127.0.0.1:{port}/certs", timeout=NO_TIMEOUT)
        started = time.monotonic()
        assert reason_of(lambda: jwks.get_key("A")) == "key_unavailable"
        assert time.monotonic() - started < NO_TIMEOUT / 3  # refused at once, not timed out
    assert jwks.fetches == 1


def test_jwks_slow_server_timeout_holds(server, key_a):
    server.serve((key_a, "A"))
    server.delay = NO_TIMEOUT  # the answer would come after 30 s (teardown ends the wait)
    jwks = JWKSClient(server.url, timeout=0.3)
    started = time.monotonic()
    assert reason_of(lambda: jwks.get_key("A")) == "key_unavailable"
    assert time.monotonic() - started < NO_TIMEOUT / 3  # gave up near 0.3 s, not after 30 s
    assert server.wait_for_hits(1) == 1


def test_jwks_dripping_body_cannot_outlast_the_timeout(server):
    server.mode = "drip"  # one byte every 50 ms of a promised 100 kB: 10 s of drip, then it stops
    jwks = JWKSClient(server.url, timeout=0.4)
    started = time.monotonic()
    assert reason_of(lambda: jwks.get_key("A")) == "key_unavailable"
    # Each read returns within the timeout, so only the whole-body deadline stops
    # it early: about 0.4 s, where a per-read timeout alone would take 10 s.
    assert time.monotonic() - started < 5.0


def test_jwks_endless_body_is_cut_off_at_the_cap(server):
    server.mode = "endless"
    jwks = JWKSClient(server.url, timeout=NO_TIMEOUT, max_bytes=262144)
    started = time.monotonic()
    assert reason_of(lambda: jwks.get_key("A")) == "key_unavailable"
    assert time.monotonic() - started < NO_TIMEOUT / 3  # stopped at the cap, not at the deadline


@pytest.mark.parametrize("send_length", [True, False], ids=["content-length", "close-delimited"])
@pytest.mark.parametrize(("padding", "ok"), [(0, True), (1, False), (100_000, False)])
def test_jwks_size_cap(server, key_a, send_length, padding, ok):
    document = json.dumps({"keys": [to_jwk(key_a, "A")]}).encode()
    limit = len(document) + 10
    server.mode = "raw"
    server.send_length = send_length
    server.body = document + b" " * (10 + padding)  # exactly at the limit when padding == 0
    jwks = JWKSClient(server.url, max_bytes=limit, timeout=NO_TIMEOUT)
    if ok:
        assert jwks.get_key("A").key_id == "A"
    else:
        assert reason_of(lambda: jwks.get_key("A")) == "key_unavailable"


def test_jwks_cloudflare_document_shape(server, client, verifier, key_a, key_b):
    cert = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    server.serve(
        (key_a, "A"),
        (key_b, "B"),
        public_cert={"kid": "A", "cert": cert},
        public_certs=[{"kid": "A", "cert": cert}, {"kid": "B", "cert": cert}],
    )
    assert verifier.verify(sign(key_a, kid="A"))["sub"] == "user-1"
    assert verifier.verify(sign(key_b, kid="B", sub="b"))["sub"] == "b"
    assert server.hits == 1


def test_jwks_unusable_keys_are_skipped_not_fatal(server, client, key_a, key_ec):
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    p384 = ec.generate_private_key(ec.SECP384R1())
    private_jwk = RSAAlgorithm.to_jwk(key_a, as_dict=True) | {"kid": "private"}
    server.mode = "keys"
    server.document = {
        "keys": [
            {"kty": "oct", "k": b64(b"k" * 32), "kid": "oct"},
            to_jwk(key_a, "enc", use="enc"),
            to_jwk(key_a, "rs512", alg="RS512"),
            to_jwk(key_a, "verify-less", key_ops=["encrypt"]),
            to_jwk(weak, "weak"),
            ECAlgorithm.to_jwk(p384.public_key(), as_dict=True) | {"kid": "p384"},
            private_jwk,
            {"kty": "RSA", "kid": "broken", "n": "!!", "e": "AQAB"},
            "not an object",
            to_jwk(key_a, "good"),
            to_jwk(key_ec, "ec-good", alg=DROP),  # alg absent: inferred from kty/crv
        ]
    }
    assert client.get_key("good").algorithm_name == "RS256"
    assert client.get_key("ec-good").algorithm_name == "ES256"
    for kid in ("oct", "enc", "rs512", "verify-less", "weak", "p384", "private", "broken"):
        assert reason_of(lambda kid=kid: client.get_key(kid)) == "key_unknown", kid


def test_jwks_set_without_usable_keys_is_a_failed_fetch(server, client, key_a):
    server.mode = "keys"
    server.document = {"keys": [to_jwk(key_a, "enc", use="enc")]}
    assert reason_of(lambda: client.get_key("enc")) == "key_unavailable"


@pytest.mark.parametrize(("kids", "ok"), [(["A"], True), ([None], True), (["A", "B"], False)])
def test_jwks_token_without_kid_needs_a_one_key_set(server, client, key_a, key_b, kids, ok):
    server.mode = "keys"
    pairs = zip([key_a, key_b], kids, strict=False)
    server.document = {"keys": [to_jwk(k, kid) for k, kid in pairs]}
    if ok:
        assert client.get_key(None).algorithm_name == "RS256"
    else:
        assert reason_of(lambda: client.get_key(None)) == "key_unknown"


def test_jwks_flood_of_random_kids_fetches_once_per_cooldown(server, client, clock, key_a):
    server.serve((key_a, "A"))
    client.get_key("A")
    for _ in range(300):
        assert reason_of(lambda: client.get_key(secrets.token_hex(8))) == "key_unknown"
        clock.advance(0.05)  # 15 s in all: still inside the cooldown
    assert server.hits == 1
    clock.advance(15.1)
    for _ in range(300):
        assert reason_of(lambda: client.get_key(secrets.token_hex(8))) == "key_unknown"
    assert server.hits == 2 == client.fetches
    assert client.get_key("A").key_id == "A"


def test_jwks_cooldown_counts_failed_attempts(server, client, clock, key_a):
    server.mode = "error"
    assert reason_of(lambda: client.get_key("A")) == "key_unavailable"
    server.serve((key_a, "A"))
    clock.advance(29)
    assert reason_of(lambda: client.get_key("A")) == "key_unavailable"
    assert server.hits == 1
    clock.advance(1)
    assert client.get_key("A").key_id == "A"
    assert server.hits == 2


def test_jwks_lifespan_refetches_a_known_kid(server, client, clock, key_a, key_b):
    server.serve((key_a, "A"))
    old = client.get_key("A")
    clock.advance(299)
    assert client.get_key("A") is old
    server.serve((key_b, "A"))  # same kid, new key material
    clock.advance(1)
    assert client.get_key("A") is not old
    assert server.hits == 2


@pytest.mark.parametrize("cooldown", [30, 0])
@pytest.mark.parametrize("warm", [False, True], ids=["cold-start", "unknown-kid"])
def test_jwks_concurrent_callers_share_one_fetch(server, clock, key_a, key_b, warm, cooldown):
    client = JWKSClient(server.url, cooldown=cooldown, timeout=NO_TIMEOUT, clock=clock)
    server.serve((key_a, "A"))
    if warm:
        client.get_key("A")
        clock.advance(31)
    server.serve((key_a, "A"), (key_b, "B"))
    server.delay = 0.3
    barrier = threading.Barrier(16)
    results: list[Any] = []

    def worker() -> None:
        barrier.wait()
        results.append(client.get_key("B"))

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(2 * NO_TIMEOUT)
    assert len(results) == 16
    assert all(r is results[0] for r in results)
    assert server.hits == (2 if warm else 1)


@pytest.mark.parametrize("url", ["ftp://example.com/certs", "example.com/certs", ""])
def test_jwks_url_must_be_http(url):
    with pytest.raises(ValueError, match="http"):
        JWKSClient(url)


# --------------------------------------------------------------------------- attacks


def _hs256_with_public_pem(k: dict[str, Any]) -> str:
    pem = (
        k["a"]
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "A"}).encode())
    payload = b64(json.dumps(claims()).encode())
    signature = hmac.new(pem, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{b64(signature)}"


def _tampered(k: dict[str, Any]) -> str:
    header, _, signature = sign(k["a"]).split(".")
    return ".".join([header, b64(json.dumps(claims(sub="admin")).encode()), signature])


def _embedded_jwk(k: dict[str, Any]) -> str:
    headers = {"kid": "A", "jwk": to_jwk(k["attacker"], "A")}
    return jwt.encode(claims(), k["attacker"], algorithm="RS256", headers=headers)


ATTACKS: list[tuple[str, Callable[[dict[str, Any]], str], str]] = [
    ("alg-none", lambda k: jwt.encode(claims(), None, algorithm="none"), "token_invalid"),
    (
        "alg-none-crafted",
        lambda k: craft({"alg": "none", "kid": "A"}, claims(), b""),
        "token_invalid",
    ),
    ("alg-None-case", lambda k: craft({"alg": "None", "kid": "A"}, claims()), "token_invalid"),
    ("hs256-with-rsa-public-pem", _hs256_with_public_pem, "token_invalid"),
    ("alg-not-in-allow-list", lambda k: sign(k["a"], alg="RS512"), "token_invalid"),
    (
        "alg-not-a-string",
        lambda k: craft({"alg": ["RS256"], "kid": "A"}, claims()),
        "token_invalid",
    ),
    ("es256-header-on-rsa-kid", lambda k: sign(k["ec"], alg="ES256", kid="A"), "token_invalid"),
    ("wrong-aud", lambda k: sign(k["a"], aud=["someone-else"]), "audience_mismatch"),
    ("wrong-aud-string", lambda k: sign(k["a"], aud="someone-else"), "audience_mismatch"),
    (
        "wrong-iss",
        lambda k: sign(k["a"], iss="https://evil.cloudflareaccess.com"),
        "issuer_mismatch",
    ),
    (
        "expired",
        lambda k: sign(k["a"], iat=int(time.time()) - 7200, exp=int(time.time()) - 3600),
        "token_expired",
    ),
    ("nbf-in-future", lambda k: sign(k["a"], nbf=int(time.time()) + 3600), "token_not_yet_valid"),
    ("iat-in-future", lambda k: sign(k["a"], iat=int(time.time()) + 3600), "token_not_yet_valid"),
    ("missing-exp", lambda k: sign(k["a"], exp=DROP), "token_invalid"),
    ("missing-iat", lambda k: sign(k["a"], iat=DROP), "token_invalid"),
    ("exp-not-a-number", lambda k: sign(k["a"], exp="tomorrow"), "token_invalid"),
    ("sub-not-a-string", lambda k: sign(k["a"], sub=42), "token_invalid"),
    ("tampered-payload", _tampered, "token_invalid"),
    ("signed-by-another-key", lambda k: sign(k["attacker"], kid="A"), "token_invalid"),
    ("embedded-jwk-header", _embedded_jwk, "token_invalid"),
    ("unknown-kid", lambda k: sign(k["attacker"], kid="attacker"), "key_unknown"),
    ("truncated-signature", lambda k: sign(k["a"]).rsplit(".", 1)[0], "token_malformed"),
    ("truncated-half", lambda k: sign(k["a"])[:40], "token_malformed"),
    ("oversize", lambda k: sign(k["a"], pad="x" * 9000), "token_malformed"),
    ("non-base64", lambda k: "eyJ!!!.eyJ@@@.###", "token_malformed"),
    ("non-ascii", lambda k: sign(k["a"]) + "é", "token_malformed"),
    ("header-not-json", lambda k: b64(b"{nope") + ".e30.c2ln", "token_malformed"),
    ("empty-claims", lambda k: jwt.encode({}, k["a"], "RS256", {"kid": "A"}), "token_invalid"),
    ("one-segment", lambda k: "abc", "token_malformed"),
]


@pytest.fixture
def attack_keys(server, key_a, key_b, key_attacker, key_ec) -> dict[str, Any]:
    server.serve((key_a, "A"), (key_ec, "E"))
    return {"a": key_a, "b": key_b, "attacker": key_attacker, "ec": key_ec}


@pytest.mark.parametrize(("factory", "reason"), [a[1:] for a in ATTACKS], ids=[a[0] for a in ATTACKS])
def test_attacks_are_refused_with_their_reason(verifier, attack_keys, factory, reason):
    token = factory(attack_keys)
    with pytest.raises(TokenError) as info:
        verifier.verify(token)
    assert info.value.reason == reason
    assert token not in str(info.value)  # the detail never echoes the token


def test_genuine_tokens_of_both_algorithms_verify(verifier, attack_keys):
    assert verifier.verify(sign(attack_keys["a"], kid="A"))["sub"] == "user-1"
    assert verifier.verify(sign(attack_keys["ec"], alg="ES256", kid="E"))["sub"] == "user-1"


def test_hs256_with_public_pem_refused_by_a_static_key_verifier(key_a):
    static = TokenVerifier(algorithms=["RS256"], audience=AUD, issuer=ISS, key=key_a.public_key())
    token = _hs256_with_public_pem({"a": key_a})
    assert reason_of(lambda: static.verify(token)) == "token_invalid"
    assert static.verify(sign(key_a))["sub"] == "user-1"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"algorithms": ["HS256", "RS256"], "key": SECRET}, "mixed"),
        ({"algorithms": ["none"], "key": SECRET}, "unsupported"),
        ({"algorithms": [], "key": SECRET}, "empty"),
        ({"algorithms": "RS256", "key": SECRET}, "list"),
        ({"algorithms": ["HS256"], "key": b"short"}, "32 bytes"),
        ({"algorithms": ["RS256"], "key": SECRET}, "HS256"),
        ({"algorithms": ["HS256"]}, "exactly one"),
    ],
)
def test_verifier_refuses_unsafe_configuration(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TokenVerifier(audience=AUD, issuer=ISS, **kwargs)


def test_verifier_refuses_hs256_with_jwks(client):
    with pytest.raises(ValueError, match="RS256/ES256"):
        TokenVerifier(algorithms=["HS256"], audience=AUD, issuer=ISS, jwks=client)


# --------------------------------------------------------------------------- accepted shapes


@pytest.mark.parametrize(
    ("configured", "token_aud"),
    [
        (AUD, [AUD]),
        (AUD, ["other", AUD]),
        (AUD, AUD),
        (["other", AUD], [AUD, "third"]),
    ],
)
def test_audience_list_forms_verify(configured, token_aud):
    verifier = TokenVerifier(algorithms=["HS256"], audience=configured, issuer=ISS, key=SECRET)
    assert verifier.verify(sign(SECRET, alg="HS256", aud=token_aud))["aud"] == token_aud


def test_audience_and_issuer_none_are_not_checked():
    verifier = TokenVerifier(algorithms=["HS256"], audience=None, issuer=None, key=SECRET)
    token = sign(SECRET, alg="HS256", aud="anything", iss="anyone")
    assert verifier.verify(token)["iss"] == "anyone"


@pytest.mark.parametrize(
    ("offsets", "ok"),
    [
        ({"exp": -30}, True),  # expired 30 s ago, inside the 60 s leeway
        ({"exp": -61}, False),
        ({"iat": 30, "exp": 300}, True),  # a fast issuer clock, inside the leeway
        ({"nbf": 30}, True),
        ({"nbf": 61}, False),
    ],
)
def test_leeway_applies_to_time_claims(offsets, ok):
    now = time.time()
    verifier = TokenVerifier(algorithms=["HS256"], audience=AUD, issuer=ISS, key=SECRET, clock=lambda: now)
    token = sign(SECRET, alg="HS256", **{k: int(now) + v for k, v in offsets.items()})
    if ok:
        assert verifier.verify(token)["sub"] == "user-1"
    else:
        assert reason_of(lambda: verifier.verify(token)) in {"token_expired", "token_not_yet_valid"}


def test_cloudflare_service_token_jwt_is_a_service_identity(verifier, server, key_a):
    server.serve((key_a, "A"))
    now = int(time.time())
    token = jwt.encode(
        {
            "aud": [AUD],
            "exp": now + 86400,
            "iat": now,
            "iss": ISS,
            "common_name": "abc123.access",
            "sub": "",
            "type": "app",
            "identity_nonce": "6ei69kawdKzMIAPF",
        },
        key_a,
        algorithm="RS256",
        headers={"kid": "A"},
    )
    identity = identity_from_claims(verifier.verify(token), "header")
    assert identity.is_service
    assert identity.subject == identity.common_name == "abc123.access"
    assert identity.email is None
    assert identity.source == "header"


@pytest.mark.parametrize(
    ("token_claims", "subject", "is_service", "email"),
    [
        ({"sub": "u1", "email": "a@b.c"}, "u1", False, "a@b.c"),
        ({"sub": "u1", "email": 7}, "u1", False, None),
        ({"sub": "u1", "common_name": "svc"}, "u1", False, None),  # a user cannot become a service
        ({"sub": "", "common_name": "svc"}, "svc", True, None),
        ({"common_name": "svc"}, "svc", True, None),
    ],
)
def test_identity_from_claims(token_claims, subject, is_service, email):
    identity = identity_from_claims(token_claims, "cookie")
    assert (identity.subject, identity.is_service, identity.email) == (subject, is_service, email)
    assert identity.common_name == (subject if is_service else None)


@pytest.mark.parametrize("token_claims", [{}, {"sub": ""}, {"sub": "", "common_name": ""}])
def test_identity_needs_a_subject(token_claims):
    assert reason_of(lambda: identity_from_claims(token_claims, "cookie")) == "token_invalid"


@pytest.mark.parametrize(
    ("token_claims", "groups"),
    [
        ({"groups": ["a", "b"]}, {"a", "b"}),
        ({"roles": "admin"}, {"admin"}),
        ({"groups": ["a"], "roles": ["r"]}, {"a", "r"}),
        ({"groups": [1, None, "ok", ""]}, {"ok"}),
        ({"groups": {"a": 1}}, set()),
        ({}, set()),
    ],
)
def test_identity_groups(token_claims, groups):
    identity = identity_from_claims({"sub": "u", **token_claims}, "header")
    assert identity.groups == frozenset(groups)


def test_identity_claims_are_read_only_and_detached():
    source = {"sub": "u", "email": "a@b.c"}
    identity = identity_from_claims(source, "header")
    source["sub"] = "changed"
    assert identity.claims["sub"] == "u"
    with pytest.raises(TypeError):
        identity.claims["sub"] = "x"  # type: ignore[index]


# --------------------------------------------------------------------------- cache


@pytest.fixture
def decode_calls(monkeypatch) -> list[str]:
    calls: list[str] = []
    real = jwt.decode

    def counting(token: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(token)
        return real(token, *args, **kwargs)

    monkeypatch.setattr(jwt, "decode", counting)
    return calls


def test_cache_hit_skips_signature_and_key_lookup(verifier, client, server, key_a, decode_calls, monkeypatch):
    server.serve((key_a, "A"))
    lookups: list[Any] = []
    real_get_key = client.get_key
    monkeypatch.setattr(client, "get_key", lambda kid: lookups.append(kid) or real_get_key(kid))
    token = sign(key_a)
    first = verifier.verify(token)
    second = verifier.verify(token)
    assert first == second
    assert decode_calls == [token]
    assert lookups == ["A"]


def test_cache_entry_is_never_served_past_exp(decode_calls):
    clock = FakeClock(time.time())
    verifier = TokenVerifier(algorithms=["HS256"], audience=AUD, issuer=ISS, key=SECRET, clock=clock)
    exp = int(clock.now) + 100
    token = sign(SECRET, alg="HS256", exp=exp)
    verifier.verify(token)
    clock.now = exp - 1
    verifier.verify(token)
    assert len(decode_calls) == 1
    clock.now = exp  # at exp: verified afresh (inside the leeway, so still accepted)
    assert verifier.verify(token)["exp"] == exp
    assert len(decode_calls) == 2
    clock.now = exp + 61
    assert reason_of(lambda: verifier.verify(token)) == "token_expired"


def test_cache_is_bounded_oldest_out_first(decode_calls):
    verifier = TokenVerifier(algorithms=["HS256"], audience=AUD, issuer=ISS, key=SECRET, cache_size=2)
    t1, t2, t3 = (sign(SECRET, alg="HS256", sub=f"u{i}") for i in range(3))
    for token in (t1, t2, t3, t3, t2):
        verifier.verify(token)
    assert decode_calls == [t1, t2, t3]
    verifier.verify(t1)  # evicted when t3 arrived
    assert decode_calls == [t1, t2, t3, t1]


def test_failures_are_not_cached(decode_calls):
    verifier = TokenVerifier(algorithms=["HS256"], audience=AUD, issuer=ISS, key=SECRET)
    token = sign(b"x" * 32, alg="HS256")
    for _ in range(2):
        assert reason_of(lambda: verifier.verify(token)) == "token_invalid"
    assert decode_calls == [token, token]


def test_caller_cannot_poison_the_cache():
    verifier = TokenVerifier(algorithms=["HS256"], audience=AUD, issuer=ISS, key=SECRET)
    token = sign(SECRET, alg="HS256")
    verifier.verify(token)["sub"] = "admin"
    assert verifier.verify(token)["sub"] == "user-1"


def test_cache_under_concurrent_verification():
    verifier = TokenVerifier(algorithms=["HS256"], audience=AUD, issuer=ISS, key=SECRET, cache_size=8)
    batch = [sign(SECRET, alg="HS256", sub=f"u{i}") for i in range(32)]
    errors: list[BaseException] = []

    def worker(offset: int) -> None:
        try:
            for i in range(200):
                j = (i + offset) % len(batch)
                assert verifier.verify(batch[j])["sub"] == f"u{j}"
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_verify_only_ever_raises_token_error(garbage):
    verifier = TokenVerifier(algorithms=["HS256"], audience=AUD, issuer=ISS, key=SECRET)
    with pytest.raises(TokenError):
        verifier.verify(garbage)


# --------------------------------------------------------------------------- locate_token


@pytest.mark.parametrize(
    ("headers", "cookie", "expected"),
    [
        (
            {"Cf-Access-Jwt-Assertion": "h1", "Cf-Access-Token": "h2"},
            f"{COOKIE}=c",
            ("h1", "header"),
        ),
        ({"Cf-Access-Token": "h2"}, f"{COOKIE}=c", ("h2", "header")),
        ({"cf-access-jwt-assertion": "lower"}, None, ("lower", "header")),
        ({"Cf-Access-Jwt-Assertion": ""}, f"{COOKIE}=c", ("c", "cookie")),
        ({"Cf-Access-Jwt-Assertion": "   "}, f"{COOKIE}=c", ("c", "cookie")),
        ({"Cf-Access-Jwt-Assertion": "Bearer tok"}, None, ("tok", "header")),
        ({}, f"a=1; {COOKIE}=c; b=2", ("c", "cookie")),
        ({}, f'{COOKIE}="quoted"', ("quoted", "cookie")),
        ({}, f"{COOKIE}=; {COOKIE}=real", ("real", "cookie")),
        ({}, f"X{COOKIE}=x; {COOKIE}_2=y", None),
        ({}, f"{COOKIE}", None),
        ({}, "", None),
        ({}, None, None),
    ],
)
def test_locate_token(headers, cookie, expected):
    assert locate_token(headers, cookie, HEADERS, COOKIE) == expected


def test_locate_token_with_an_environ_callable():
    environ = {"HTTP_CF_ACCESS_TOKEN": "from-environ"}

    def lookup(name: str) -> str | None:
        return environ.get("HTTP_" + name.upper().replace("-", "_"))

    assert locate_token(lookup, None, HEADERS, COOKIE) == ("from-environ", "header")
    assert locate_token(lambda name: None, f"{COOKIE}=c", HEADERS, COOKIE) == ("c", "cookie")


@pytest.mark.parametrize(
    "cookie",
    [f"{COOKIE}=a; {COOKIE}=b", f"{COOKIE}=a;{COOKIE}=a", f"x=1; {COOKIE} = a ; y=2;{COOKIE}=b"],
)
def test_two_access_cookies_are_malformed(cookie):
    assert reason_of(lambda: locate_token({}, cookie, HEADERS, COOKIE)) == "token_malformed"


def test_header_token_wins_over_duplicate_cookies():
    found = locate_token({"Cf-Access-Token": "h"}, f"{COOKIE}=a; {COOKIE}=b", HEADERS, COOKIE)
    assert found == ("h", "header")


@pytest.mark.parametrize(
    ("cookie", "expected"),
    [
        (";" * 65536, None),
        (";" * 65536 + f"{COOKIE}=tok", ("tok", "cookie")),
        (f"{COOKIE}=;" * 4096, None),
        ("=;" * 32768, None),
        ("a" * 65536, None),
    ],
)
def test_hostile_cookie_headers_are_cheap(cookie, expected):
    started = time.perf_counter()
    assert locate_token({}, cookie, HEADERS, COOKIE) == expected
    assert time.perf_counter() - started < 0.05


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(f'{COOKIE}=; "ab\t'), max_size=200))
def test_locate_token_never_fails_unexpectedly(cookie):
    try:
        found = locate_token({}, cookie, HEADERS, COOKIE)
    except TokenError as exc:
        assert exc.reason == "token_malformed"
    else:
        assert found is None or (found[1] == "cookie" and found[0].strip() == found[0] != "")


# --------------------------------------------------------------------------- service tokens


CLIENT_SECRET = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"


@pytest.fixture
def service_tokens() -> ServiceTokens:
    return ServiceTokens(
        {
            "plain.access": CLIENT_SECRET,
            "hashed.access": "sha256:" + hashlib.sha256(CLIENT_SECRET.encode()).hexdigest(),
        }
    )


@pytest.mark.parametrize("client_id", ["plain.access", "hashed.access"])
def test_service_token_accepted(service_tokens, client_id):
    identity = service_tokens.check(client_id, CLIENT_SECRET)
    assert identity == Identity(
        subject=client_id,
        email=None,
        claims={},
        source="service_token",
        is_service=True,
        common_name=client_id,
    )


@pytest.mark.parametrize(
    ("client_id", "secret"),
    [
        ("plain.access", CLIENT_SECRET[:-1] + "0"),
        ("hashed.access", CLIENT_SECRET + "x"),
        ("plain.access", ""),
        ("unknown.access", CLIENT_SECRET),
        ("", CLIENT_SECRET),
        ("plain.accéss", CLIENT_SECRET),
        ("plain.access", CLIENT_SECRET[:-1] + "é"),
        ("plain.access", CLIENT_SECRET + "a" * 513),
        ("p" * 600, CLIENT_SECRET),
        ("hashed.access", "sha256:" + hashlib.sha256(CLIENT_SECRET.encode()).hexdigest()),
    ],
)
def test_service_token_refused(service_tokens, client_id, secret):
    assert reason_of(lambda: service_tokens.check(client_id, secret)) == "service_token_invalid"


def test_service_token_unknown_id_does_the_same_work(service_tokens, monkeypatch):
    compared: list[tuple[int, int]] = []
    real = hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        compared.append((len(a), len(b)))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", counting)
    reason_of(lambda: service_tokens.check("unknown.access", "guess"))
    reason_of(lambda: service_tokens.check("plain.access", "guess"))
    assert compared == [(32, 32), (32, 32)]


@pytest.mark.parametrize(
    "config",
    [
        {"id": "sha256:abc"},
        {"id": "sha256:" + "g" * 64},
        {"": CLIENT_SECRET},
        {"id": ""},
    ],
)
def test_service_tokens_refuse_bad_configuration(config):
    with pytest.raises(ValueError, match=r"service token|client id"):
        ServiceTokens(config)


# --------------------------------------------------------------------------- issuing


@pytest.fixture(params=["HS256", "RS256", "ES256"])
def issuer_and_verifier(request, key_a, key_ec) -> tuple[TokenIssuer, TokenVerifier]:
    signing = {"HS256": SECRET, "RS256": key_a, "ES256": key_ec}[request.param]
    verifying = SECRET if request.param == "HS256" else signing.public_key()
    issuer = TokenIssuer(algorithm=request.param, key=signing, kid="self", issuer=ISS, audience=AUD)
    verifier = TokenVerifier(algorithms=[request.param], audience=AUD, issuer=ISS, key=verifying)
    return issuer, verifier


def test_issued_tokens_round_trip(issuer_and_verifier):
    issuer, verifier = issuer_and_verifier
    token = issuer.issue("ada", {"email": "ada@example.com", "groups": ["staff"]}, ttl=120)
    verified = verifier.verify(token)
    identity = identity_from_claims(verified, "cookie")
    assert (identity.subject, identity.email, identity.groups) == (
        "ada",
        "ada@example.com",
        {"staff"},
    )
    assert verified["exp"] - verified["iat"] == 120
    assert verified["nbf"] == verified["iat"]
    assert jwt.get_unverified_header(token)["kid"] == "self"
    assert verified["jti"] != verifier.verify(issuer.issue("ada"))["jti"]


@pytest.mark.parametrize("claim", ["sub", "iat", "exp", "iss", "aud", "nbf"])
def test_issuer_claims_cannot_be_overridden(claim):
    issuer = TokenIssuer(algorithm="HS256", key=SECRET, issuer=ISS, audience=AUD)
    with pytest.raises(ValueError, match=claim):
        issuer.issue("ada", {claim: "x"})


@pytest.mark.parametrize(("subject", "ttl"), [("", 60), ("ada", 0), ("ada", -5), ("ada", True)])
def test_issuer_refuses_bad_arguments(subject, ttl):
    issuer = TokenIssuer(algorithm="HS256", key=SECRET)
    with pytest.raises(ValueError):
        issuer.issue(subject, ttl=ttl)


def test_issuer_accepts_a_pem_and_its_verifier_the_public_half(key_ec):
    pem = key_ec.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    private, public, algorithm = load_private_key(pem)
    issuer = TokenIssuer(algorithm=algorithm, key=pem)
    verifier = TokenVerifier(algorithms=[algorithm], audience=None, issuer=None, key=public)
    assert verifier.verify(issuer.issue("svc"))["sub"] == "svc"
    assert algorithm == "ES256"
    assert isinstance(private, ec.EllipticCurvePrivateKey)


def _pem(key: Any, password: bytes | None = None) -> bytes:
    encryption = serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: _pem(rsa.generate_private_key(public_exponent=65537, key_size=1024)), "2048"),
        (lambda: _pem(ec.generate_private_key(ec.SECP384R1())), "P-256"),
        (lambda: _pem(ed25519.Ed25519PrivateKey.generate()), "unsupported"),
        (lambda: _pem(ec.generate_private_key(ec.SECP256R1()), b"pw"), "encrypted"),
        (lambda: b"-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n", "PEM"),
        (lambda: "not a key", "PEM"),
    ],
)
def test_load_private_key_refuses(make, match):
    with pytest.raises(ValueError, match=match):
        load_private_key(make())


def test_load_private_key_accepts_rsa_2048(key_a):
    private, public, algorithm = load_private_key(_pem(key_a))
    assert algorithm == "RS256"
    assert public.public_numbers() == key_a.public_key().public_numbers()
    assert private.key_size == 2048


# --------------------------------------------------------------------------- errors


def test_token_error_reasons_are_a_closed_set():
    with pytest.raises(ValueError, match="unknown"):
        TokenError("token_sort_of_ok")
    error = TokenError("token_expired", "exp is in the past")
    assert (error.reason, error.detail) == ("token_expired", "exp is in the past")
    assert str(error).startswith(error.reason)


def test_module_is_flask_free():
    tree = ast.parse(open(tokens.__file__, encoding="utf-8").read())
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    }
    imported |= {
        node.module.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module
    }
    assert "jwt" in imported
    assert not imported & {"flask", "werkzeug"}
