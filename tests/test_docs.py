"""The documentation against the code: settings table, ConfigError codes, reason codes.

The settings reference is generated from ``SETTINGS`` by ``docs/_ext/settings_table.py``;
these tests check that the generated table, and the built HTML, name every setting, its
``ACCESS_CORS_*`` key and its default, and that every stable code is documented.
"""

from __future__ import annotations

import html
import importlib.util
import inspect
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from flask_access_cors.events.model import REASONS
from flask_access_cors.settings import SETTINGS, Setting, check_policy

pytest.importorskip("sphinx")

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PACKAGE = ROOT / "flask_access_cors"

#: ConfigError codes the SPEC declares stable, plus ``missing_verifier`` (documented in decisions).
CONFIG_ERROR_CODES = (
    "unknown_setting", "invalid_value", "invalid_origin", "insecure_origin",
    "wildcard_with_credentials", "invalid_method", "forbidden_method", "invalid_header",
    "forbidden_header", "invalid_expose_header", "max_age_out_of_range",
    "invalid_path_pattern", "missing_audience", "missing_issuer", "weak_secret",
    "conflicting_keys", "missing_secret_key", "missing_verifier",
)

#: Reason codes the SPEC declares stable (section 6).
REASON_CODES = (
    "origin_not_allowed", "origin_malformed", "method_not_allowed", "header_not_allowed",
    "request_headers_malformed", "private_network_not_allowed", "cors_disabled",
    "excluded_path", "token_missing", "token_malformed", "token_invalid", "token_expired",
    "token_not_yet_valid", "audience_mismatch", "issuer_mismatch", "key_unknown",
    "key_unavailable", "service_token_invalid", "access_denied",
)

_EMITTED = re.compile(r'(?:problems\.add\(|ConfigError\(\[\()\s*"(\w+)"')


def _load_extension() -> ModuleType:
    spec = importlib.util.spec_from_file_location("settings_table", DOCS / "_ext" / "settings_table.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


settings_table = _load_extension()


def _plain(rst: str) -> str:
    """Default text as a reader sees it: without the ``literal`` markers."""
    return rst.replace("``", "")


def _default_text(setting: Setting) -> str:
    return _plain(setting.default_doc or repr(setting.default))


def _html_text(path: Path) -> str:
    text = re.sub(r"<[^>]+>", "", path.read_text(encoding="utf-8"))
    return " ".join(html.unescape(text).split())


@pytest.fixture(scope="module")
def built_settings_page(tmp_path_factory: pytest.TempPathFactory) -> str:
    out = tmp_path_factory.mktemp("docs")
    result = subprocess.run(
        [sys.executable, "-m", "sphinx", "-q", "-b", "html", "-d", str(out / "doctrees"),
         str(DOCS), str(out / "html")],
        capture_output=True, text=True, check=False,
    )
    assert result.returncode == 0, result.stderr
    return _html_text(out / "html" / "settings.html")


def test_the_tables_cover_every_setting_once() -> None:
    names = [s.name for scope in settings_table.SCOPES for s in settings_table.settings_of(scope)]
    assert sorted(names) == sorted(SETTINGS)


@pytest.mark.parametrize("name", list(SETTINGS))
def test_generated_table_names_the_setting_its_key_and_default(name: str) -> None:
    setting = SETTINGS[name]
    table = settings_table.table_rst(setting.scope)
    assert f"``{setting.name}``" in table
    assert f"``{setting.config_key}``" in table
    assert f"``ACCESS_CORS_{name.upper()}``" in table
    assert setting.default_doc, f"{name} has no default_doc for the docs"
    assert setting.default_doc in table


def test_built_settings_page_shows_every_setting(built_settings_page: str) -> None:
    for setting in SETTINGS.values():
        assert setting.name in built_settings_page
        assert setting.config_key in built_settings_page
        assert _default_text(setting) in built_settings_page, setting.name


def test_parser_codes_follow_helpers() -> None:
    """The "Refused with" column sees every code the settings module can report."""
    source = (PACKAGE / "settings.py").read_text(encoding="utf-8")
    emitted = set(_EMITTED.findall(source)) - {"unknown_setting"}  # about names, not values
    combined = set(_EMITTED.findall(inspect.getsource(check_policy)))
    found = {code for s in SETTINGS.values() for code in settings_table.parser_codes(s.parse)}
    assert emitted == found | combined
    assert "max_age_out_of_range" in settings_table.parser_codes(SETTINGS["max_age"].parse)
    assert "invalid_value" in settings_table.parser_codes(SETTINGS["debug"].parse)


def _documented(page: str) -> str:
    return (DOCS / page).read_text(encoding="utf-8")


def test_every_config_error_code_is_documented() -> None:
    page = _documented("security.rst")
    emitted: set[str] = set()
    for path in PACKAGE.rglob("*.py"):
        emitted.update(_EMITTED.findall(path.read_text(encoding="utf-8")))
    assert set(CONFIG_ERROR_CODES) <= emitted, "a stable code is no longer emitted by the package"
    missing = [code for code in sorted(emitted | set(CONFIG_ERROR_CODES)) if f"``{code}``" not in page]
    assert not missing, f"ConfigError codes missing from docs/security.rst: {missing}"


def test_every_reason_code_is_documented() -> None:
    page = _documented("processing.rst")
    assert set(REASON_CODES) == set(REASONS)
    missing = [code for code in REASON_CODES if f"``{code}``" not in page]
    assert not missing, f"reason codes missing from docs/processing.rst: {missing}"


def test_index_includes_every_page() -> None:
    index = _documented("index.rst")
    pages = {p.relative_to(DOCS).with_suffix("").as_posix() for p in DOCS.rglob("*.rst")}
    pages -= {"index"}
    pages = {p for p in pages if not p.startswith("_")}
    listed = set(re.findall(r"^   ([\w/-]+)$", index, flags=re.M))
    assert "performance" in listed
    assert pages <= listed, f"pages not in the toctree: {sorted(pages - listed)}"


def test_readme_quick_start_has_exactly_two_commands() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"^\$ (.+)$", section, flags=re.M)
    assert commands == ["make demo", "make test"]
