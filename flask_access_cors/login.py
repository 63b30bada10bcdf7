"""The login flow's return links: signed, expiring, and never an open redirect.

A caller sent to ``login_url`` carries ``redirect_url``: the page to return
to, signed with ``app.secret_key`` (itsdangerous). :meth:`LoginLinks.safe_return_path`
gives it back only if it is a path on this host or an exact allowed origin.

Pure: no Flask.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import quote, unquote

from itsdangerous import BadSignature, URLSafeTimedSerializer

__all__ = ["LoginLinks", "is_local_path", "return_target"]

_SALT = "flask-access-cors.return"
_MAX_AGE = 600
#: Characters a path keeps as they are; everything else is percent-encoded once.
_PATH_SAFE = "/:@!$&'()*+,;=-._~"
#: A query is kept as sent (its own escapes included); only what may not appear raw
#: in a ``Location`` header is encoded.
_QUERY_SAFE = _PATH_SAFE + "?%[]"


def return_target(script_root: str, path: str, query_string: bytes | str,
                  raw_uri: str | None = None) -> str:
    """The URL a navigation should come back to: ``SCRIPT_NAME``, path and query, exactly.

    ``raw_uri`` is the request target as the client sent it (``RAW_URI`` or
    ``REQUEST_URI``, kept by gunicorn and Werkzeug): used as is when it names this
    very path (so ``%2F`` stays ``%2F``), else the target is rebuilt from the parts.
    """
    if raw_uri and raw_uri.startswith("/") and is_local_path(raw_uri):
        if unquote(raw_uri.partition("?")[0]) == script_root + path:
            return raw_uri
    target = quote(script_root + path, safe=_PATH_SAFE)
    query = query_string.decode("latin-1") if isinstance(query_string, bytes) else query_string
    if query:
        target += "?" + quote(query, safe=_QUERY_SAFE, encoding="latin-1")
    return target


def is_local_path(target: str) -> bool:
    """A path on this host, whatever a browser makes of it (no ``//host``, ``/\\host``).

    The raw target must be printable ASCII without whitespace (a ``Location`` value
    a browser will not rewrite). Its path part must not reach another host once
    decoded (``/%2F%2Fevil.com``); the query may hold any escape (``q=a%20b``).
    """
    if not target.isascii() or not target.isprintable() or " " in target:
        return False
    path = target.partition("?")[0]
    decoded = path
    for _ in range(3):  # see through double encoding of / and \
        decoded = unquote(decoded)
    for candidate in (path, decoded):
        stripped = candidate.replace("\t", "").replace("\r", "").replace("\n", "")
        if not stripped.startswith("/") or stripped.startswith(("//", "/\\")):
            return False
    return True


class LoginLinks:
    """Builds ``login_url?redirect_url=<signed>`` and checks what comes back."""

    def __init__(self, login_url: str, secret_key: str | bytes) -> None:
        self.login_url = login_url
        self.serializer = URLSafeTimedSerializer(secret_key, salt=_SALT)

    def url(self, script_root: str = "") -> str:
        """``login_url``; a path is the app's own, so it is under ``SCRIPT_NAME``."""
        if self.login_url.startswith("/") and script_root:
            return script_root + self.login_url
        return self.login_url

    def link(self, target: str, script_root: str = "") -> str:
        signed = self.serializer.dumps(target)
        url = self.url(script_root)
        sep = "&" if "?" in url else "?"
        return f"{url}{sep}redirect_url={quote(signed)}"

    def safe_return_path(self, value: str | None,
                         is_allowed_origin: Callable[[str], bool]) -> str | None:
        if not value:
            return None
        try:
            target = self.serializer.loads(value, max_age=_MAX_AGE)
        except BadSignature:
            return None
        if not isinstance(target, str):
            return None
        if target.startswith("/"):
            return target if is_local_path(target) else None
        return target if is_allowed_origin(target) else None
