"""The WSGI layer: the decided headers put on whatever response the app makes.

The hook stores its headers in the environ; :class:`HeaderMiddleware` adds them
at ``start_response``, so aborts, error handlers and unhandled 500s get exactly
the same set, without patching Flask, at the cost of a list merge.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from .policy import Header

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = ["BOX", "HeaderMiddleware", "merge_headers"]

#: The environ key holding ``(headers, private)`` for the response, or ``None``.
BOX = "flask_access_cors.headers"
CACHE_PRIVATE: Header = ("Cache-Control", "private")


def merge_headers(headers: list[tuple[str, str]], add: Iterable[Header], private: bool) -> None:
    """Replace any ``Access-Control-*`` header with ours and merge ``Vary``; with
    ``private``, add ``Cache-Control: private`` unless the view set its own."""
    if private:
        for name, _ in headers:
            if len(name) == 13 and name.lower() == "cache-control":
                break
        else:
            headers.append(CACHE_PRIVATE)
    for name, _ in headers:
        if name[0] in "AaVv":
            break
    else:  # the usual case: nothing to replace or merge
        headers.extend(add)
        return
    vary_at = -1
    for i in range(len(headers) - 1, -1, -1):
        low = headers[i][0].lower()
        if low.startswith("access-control-"):
            del headers[i]
            vary_at -= vary_at >= 0
        elif low == "vary":
            if vary_at >= 0:  # fold repeated Vary headers into one
                headers[i] = ("Vary", f"{headers[i][1]}, {headers[vary_at][1]}")
                del headers[vary_at]
            vary_at = i
    for name, value in add:
        if name != "Vary":
            headers.append((name, value))
        elif vary_at < 0:
            headers.append((name, value))
            vary_at = len(headers) - 1
        else:
            present = [v.strip() for v in headers[vary_at][1].split(",") if v.strip()]
            known = {v.lower() for v in present}
            if "*" in known:
                continue
            present += [v for v in value.split(", ") if v.lower() not in known]
            headers[vary_at] = ("Vary", ", ".join(present))


class HeaderMiddleware:
    """Adds the headers the hook decided on, at ``start_response``.

    Until ``preprocessors`` (the app's URL value preprocessors) has one,
    ``install_guard`` is pending: called on the first request that finds one (the
    Flask layer then decides ahead of them), then never again.
    """

    def __init__(self, wsgi_app: WSGIApplication, preprocessors: Mapping[Any, list[Any]],
                 install_guard: Callable[[], None]) -> None:
        self.wsgi_app = wsgi_app
        self.preprocessors = preprocessors
        self.install_guard: Callable[[], None] | None = install_guard

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        install = self.install_guard
        if install is not None and any(self.preprocessors.values()):
            install()
            self.install_guard = None
        environ[BOX] = None

        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            box = environ[BOX]
            if box is not None:
                merge_headers(headers, box[0], box[1])
            return start_response(status, headers, exc_info)

        return self.wsgi_app(environ, start)
