"""Zero-Trust-style access control at the origin for Flask.

Public names only; see the documentation for the behaviour.
"""

from .extension import AccessCors, request_denied
from .settings import ConfigError

__version__ = "0.1.0"

__all__ = ["AccessCors", "ConfigError", "request_denied"]
