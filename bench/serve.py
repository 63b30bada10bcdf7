"""WSGI entry point for gunicorn: ``bench.serve:app``, chosen by ``BENCH_APP``.

``BENCH_APP`` is ``bare``, ``flask_cors`` or ``access_cors``; the apps are the
ones the in-process scenarios measure.
"""

from __future__ import annotations

import os

from flask import Flask

from . import apps

__all__ = ["app", "build"]


def build(name: str) -> Flask:
    if name == "bare":
        return apps.bare_app()
    if name == "flask_cors":
        return apps.flask_cors_app()
    if name == "access_cors":
        return apps.access_cors_app()
    raise ValueError(f"unknown BENCH_APP {name!r}: bare, flask_cors or access_cors")


app = build(os.environ.get("BENCH_APP", "bare"))
