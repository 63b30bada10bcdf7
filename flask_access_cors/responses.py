"""The Flask layer's answering half: a :class:`~.decision.Decision` becomes a response.

The client learns nothing from a denial beyond its status (and, for a ``401``,
where to log in), unless the policy has ``expose_reasons`` on (development only).
"""

from __future__ import annotations

import json
from collections.abc import Collection
from typing import Any
from urllib.parse import urljoin

from flask import Flask, Response, after_this_request

from .decision import Decision
from .login import LoginLinks
from .policy import Header
from .wsgi import merge_headers

__all__ = ["apply_later", "respond"]

_BODY_FORBIDDEN = b'{"error": "forbidden"}'
_BODY_UNAVAILABLE = b'{"error": "unavailable"}'


def respond(app: Flask, req: Any, decision: Decision, login: LoginLinks | None,
            retry_after: str) -> Response:
    """The answer to a request the decision does not let on to the view."""
    response = _response(app, req, decision, login, retry_after)
    if decision.policy.expose_reasons and decision.reason is not None:
        # development only (warned about at start): the client learns the reason
        response.headers["X-Access-Cors-Reason"] = decision.reason.value
        if response.is_json:
            response.set_data(json.dumps({**response.get_json(), "reason": decision.reason.value}))
    return response


def _response(app: Flask, req: Any, decision: Decision, login: LoginLinks | None,
              retry_after: str) -> Response:
    status = decision.status
    response_class = app.response_class
    if status == 204:
        response = response_class(status=204)
        del response.headers["Content-Type"]  # an empty answer has no media type
        return response
    if status == 302:
        assert login is not None and decision.login_target is not None
        location = login.link(decision.login_target, req.script_root)
        return response_class(status=302, headers={"Location": location})
    if status == 401:
        login_url: str | None = None
        if login is not None:
            login_url = login.url(req.script_root)
            if decision.login_target is not None:
                # absolute: the page that reads it lives on another origin
                link = login.link(decision.login_target, req.script_root)
                login_url = urljoin(req.host_url, link)
        body = json.dumps({"error": "unauthorized", "login_url": login_url})
        return response_class(body, 401, mimetype="application/json")
    if status == 503:
        return response_class(_BODY_UNAVAILABLE, 503, {"Retry-After": retry_after},
                              mimetype="application/json")
    return response_class(_BODY_FORBIDDEN, status, mimetype="application/json")


def apply_later(headers: Collection[Header], private: bool) -> None:
    """Merge the headers in an ``after_request`` step: for a WSGI stack built around
    Flask's ``wsgi_app`` directly, where the extension's WSGI wrapper never runs."""

    @after_this_request
    def _apply(response: Response) -> Response:
        items = list(response.headers.items())
        merge_headers(items, headers, private)
        response.headers.clear()
        for name, value in items:
            response.headers.add(name, value)
        return response
