"""Sphinx configuration for the flask-access-cors documentation.

Kept minimal: autodoc for the public API and one local extension
(``_ext/settings_table.py``) that generates the settings reference from
``flask_access_cors.settings.SETTINGS``. No intersphinx: the build needs no
network.
"""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "_ext"))
sys.path.insert(0, str(HERE.parent))

from flask_access_cors import __version__  # noqa: E402

project = "flask-access-cors"
project_copyright = "the flask-access-cors authors"
release = __version__
version = ".".join(__version__.split(".")[:2])

extensions = ["sphinx.ext.autodoc", "settings_table"]
exclude_patterns = ["_build"]
default_role = "code"
autodoc_member_order = "bysource"
autodoc_typehints = "signature"

html_theme = "alabaster"
html_theme_options = {
    "description": "Zero-Trust-style access control at the origin, for Flask.",
    "fixed_sidebar": True,
    "page_width": "1100px",
    "sidebar_width": "230px",
}
