"""The settings reference, generated from the code so that it cannot drift.

``.. settings-table:: policy`` (or ``app``) renders one row per setting of
that scope in :data:`flask_access_cors.settings.SETTINGS`: its name and
``ACCESS_CORS_*`` key, its documented default, its description, and the
:class:`~flask_access_cors.ConfigError` codes its parser can report. The codes
are read from the parser's source (``problems.add("code", ...)``), following
calls into the settings module's own helpers, so a new check shows up here
without anyone editing the docs.

Each row is also a target for the ``:setting:`` role (``:setting:`origins```).
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from typing import Any

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective

from flask_access_cors import settings as settings_module
from flask_access_cors.settings import SETTINGS, Setting

SCOPES = ("policy", "app")
_CODE = re.compile(r'problems\.add\(\s*"(\w+)"')
_CALL = re.compile(r"\b(_\w+)\(")


def parser_codes(parse: Callable[..., Any]) -> list[str]:
    """The ConfigError codes ``parse`` (or a settings helper it calls) can report."""
    codes: set[str] = set()
    seen: set[str] = set()
    todo = [parse]
    while todo:
        func = todo.pop()
        if func.__name__ in seen:
            continue
        seen.add(func.__name__)
        source = inspect.getsource(func)
        codes.update(_CODE.findall(source))
        for name in _CALL.findall(source):
            helper = getattr(settings_module, name, None)
            if inspect.isfunction(helper) and helper.__module__ == settings_module.__name__:
                todo.append(helper)
    return sorted(codes)


def settings_of(scope: str) -> list[Setting]:
    """The settings of ``scope``, in documentation order."""
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {SCOPES}, not {scope!r}")
    return [s for s in SETTINGS.values() if s.scope == scope]


def table_rst(scope: str) -> str:
    """The reStructuredText of the table for ``scope``."""
    lines = [
        ".. list-table::",
        "   :header-rows: 1",
        "   :widths: 24 20 42 14",
        "   :class: settings-table",
        "",
        "   * - Setting / config key",
        "     - Default",
        "     - Meaning and validation",
        "     - Refused with",
    ]
    for setting in settings_of(scope):
        codes = ", ".join(f"``{code}``" for code in parser_codes(setting.parse)) or "-"
        lines += [
            f"   * - .. setting:: {setting.name}",
            "",
            f"       ``{setting.name}``",
            "",
            f"       ``{setting.config_key}``",
            f"     - {setting.default_doc or f'``{setting.default!r}``'}",
            f"     - {setting.doc}",
            f"     - {codes}",
        ]
    return "\n".join(lines) + "\n"


class SettingsTable(SphinxDirective):
    """``.. settings-table:: policy|app``"""

    required_arguments = 1
    has_content = False

    def run(self) -> list[nodes.Node]:
        scope = self.arguments[0]
        if scope not in SCOPES:
            raise self.error(f"settings-table: scope must be one of {', '.join(SCOPES)}")
        self.env.note_dependency(settings_module.__file__)
        return self.parse_text_to_nodes(table_rst(scope))


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_crossref_type("setting", "setting", indextemplate="single: %s (setting)")
    app.add_directive("settings-table", SettingsTable)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
