"""Zero-Trust-style access control at the origin for Flask.

Public names only; see the documentation for the behaviour. The Flask layer
(:mod:`.extension`) is imported on first use, so the decision core
(``origins``, ``policy``, ``cors``, ``gate``, ``tokens``, ``decision``)
imports without Flask.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .settings import ConfigError

if TYPE_CHECKING:
    from .extension import AccessCors, request_denied

__version__ = "0.2.0"

__all__ = ["AccessCors", "ConfigError", "request_denied"]


def __getattr__(name: str) -> Any:
    if name in ("AccessCors", "request_denied"):
        from . import extension

        return getattr(extension, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
