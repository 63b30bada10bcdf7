"""Every reading of a request path a server or framework may act on.

``excluded_paths`` and the URL-prefix fallback must not be escaped by spelling a
path differently from the pattern: Werkzeug merges repeated slashes and follows
``strict_slashes`` redirects, servers decode ``%2f`` before routing, and
``send_from_directory`` resolves ``..``. :func:`readings` returns the path as
routed plus each of those readings; a pattern that matches any of them matches.
When in doubt, a reading is included: an extra reading can only exclude more.

Pure: no Flask.
"""

from __future__ import annotations

import posixpath
import re
from urllib.parse import unquote

__all__ = ["looks_like_regex", "readings"]

#: Nothing in the path that any reading would change but the trailing slash.
_PLAIN = re.compile(r"[^%\\]*\Z")
_ENCODED = re.compile(r"%(?:2[fFeE5]|5[cC])")
_SLASHES = re.compile(r"/{2,}")
#: ``.`` before a quantifier or group, a backslash escape, a character class ``[0-9]``
#: or an alternation ``(a|b)``: nobody writes these in a URL path by accident.
_REGEX_LIKE = re.compile(r"\.[*\[(\\^$?+]|\\|\[[^\]/]*\]|\([^)/]*\|[^)/]*\)")


def looks_like_regex(pattern: str) -> bool:
    """Would a reader take ``pattern`` for a regular expression (``/admin/.*``, ``^/api``)?

    The grammar is literal paths with an optional trailing ``*``; a regex would
    be accepted as a literal that matches nothing, so it is refused instead.
    """
    body = pattern[:-1] if pattern.endswith("*") else pattern
    return "*" in body or bool(_REGEX_LIKE.search(pattern))


def _normalise(path: str) -> str:
    path = _SLASHES.sub("/", path.replace("\\", "/"))
    resolved = posixpath.normpath(path)
    if path.endswith("/") and resolved != "/":
        resolved += "/"
    return resolved if resolved.startswith("/") else "/" + resolved


def readings(path: str) -> tuple[str, ...]:
    """``path`` as routed, normalised (slashes merged, ``%2f``/``%2e``/``%5c``/``%25``
    decoded up to three times, backslashes as slashes, dot segments resolved), each
    with and without its trailing slash (the ``strict_slashes`` redirect target)."""
    bases = [path]
    if "//" in path or "/." in path or not _PLAIN.match(path):
        decoded = path
        for _ in range(3):
            step = _ENCODED.sub(lambda m: unquote(m.group()), decoded)
            if step == decoded:
                break
            decoded = step
        bases += [_normalise(path), _normalise(decoded)]
    out: list[str] = []
    for base in bases:
        trimmed = base.rstrip("/") or "/"
        for candidate in (base, trimmed, trimmed if trimmed == "/" else trimmed + "/"):
            if candidate not in out:
                out.append(candidate)
    return tuple(out)
