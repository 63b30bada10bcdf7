"""An RSA signing key, a JWKS endpoint on loopback, and Cloudflare-Access-shaped tokens."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from .wsgi import ROOT

__all__ = ["AUDIENCE", "ISSUER", "KID", "JWKSServer", "SigningKey"]

AUDIENCE = "aud-tag"
ISSUER = "https://team.cloudflareaccess.com"
KID = "bench-key-1"


class SigningKey:
    """An RSA-2048 key that signs RS256 tokens the way Cloudflare Access does."""

    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.pem = self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def jwks(self) -> bytes:
        member: dict[str, Any] = json.loads(RSAAlgorithm.to_jwk(self.key.public_key()))
        member.update(kid=KID, alg="RS256", use="sig")
        return json.dumps({"keys": [member]}).encode()

    def token(self, subject: str = "u1", now: int | None = None) -> str:
        return _sign(self.pem, subject, int(time.time()) if now is None else now)

    def tokens(self, n: int, prefix: str = "u", workers: int = 2) -> list[str]:
        """``n`` distinct tokens (distinct ``sub``), signed by ``workers`` child processes.

        RSA signing is what makes a fresh token expensive to produce; the
        children are plain ``python -m bench.jwks`` processes (no
        multiprocessing, which would re-import the caller's main module).
        """
        now = int(time.time())
        subjects = [f"{prefix}{i}" for i in range(n)]
        if n < 256 or workers <= 1:
            return [_sign(self.pem, s, now) for s in subjects]
        size = (n + workers - 1) // workers
        children = []
        for i in range(0, n, size):
            child = subprocess.Popen([sys.executable, "-m", "bench.jwks"], cwd=ROOT,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)
            assert child.stdin is not None
            job = {"pem": self.pem.decode(), "subjects": subjects[i : i + size], "now": now}
            child.stdin.write(json.dumps(job).encode())
            child.stdin.close()
            children.append(child)
        tokens: list[str] = []
        for child in children:
            assert child.stdout is not None
            out = child.stdout.read()
            if child.wait() != 0:
                raise RuntimeError("a token-signing child process failed")
            tokens += json.loads(out)
        return tokens


_KEYS: dict[bytes, Any] = {}


def _sign(pem: bytes, subject: str, now: int) -> str:
    key: Any = _KEYS.get(pem)
    if key is None:
        key = _KEYS[pem] = serialization.load_pem_private_key(pem, password=None)
    claims = {
        "sub": subject,
        "email": "a@example.com",
        "aud": [AUDIENCE],
        "iss": ISSUER,
        "iat": now,
        "exp": now + 3600,
    }
    return jwt.encode(claims, key, "RS256", headers={"kid": KID})


def _sign_many() -> None:
    """Child process: read ``{pem, subjects, now}`` on stdin, write the tokens as JSON."""
    job = json.load(sys.stdin)
    pem = job["pem"].encode()
    json.dump([_sign(pem, s, job["now"]) for s in job["subjects"]], sys.stdout)


class JWKSServer:
    """Serves one JWKS document at ``/certs`` from a daemon thread on 127.0.0.1."""

    def __init__(self, document: bytes) -> None:
        body = document

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path != "/certs":
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/certs"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


if __name__ == "__main__":
    _sign_many()
