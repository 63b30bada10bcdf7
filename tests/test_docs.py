"""The documentation against the code: settings table, ConfigError codes, reason codes, and
the statements the pages make about behaviour.

The settings reference is generated from ``SETTINGS`` by ``docs/_ext/settings_table.py``;
these tests check that the generated table, and the built HTML, name every setting, its
``ACCESS_CORS_*`` key and its default, and that every stable code is documented. The tests at
the end read claims from the pages (tables, examples, answers shown) and check them against
the code, or against flask-cors for the migration page.
"""

from __future__ import annotations

import html
import importlib.util
import inspect
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from types import ModuleType
from typing import Any

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


# -- statements the docs make about behaviour, checked against it --------------------------------
#
# Each test below reads a claim from the page (a table, a code block, an example answer) and
# checks it against the code or the library it is about, so a false statement cannot come back
# unnoticed.


def _code_blocks(text: str, language: str = "python") -> list[str]:
    """The ``.. code-block:: <language>`` blocks of an rst text, dedented."""
    lines = text.splitlines()
    blocks: list[str] = []
    i = 0
    while i < len(lines):
        match = re.match(r"^(\s*)\.\. code-block:: (\w+)\s*$", lines[i])
        i += 1
        if not match or match.group(2) != language:
            continue
        base = len(match.group(1))
        body: list[str] = []
        while i < len(lines) and (not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > base):
            body.append(lines[i])
            i += 1
        blocks.append(textwrap.dedent("\n".join(body)).strip("\n") + "\n")
    return blocks


def _markdown_blocks(text: str, language: str = "python") -> list[str]:
    return [b + "\n" for b in re.findall(rf"^```{language}\n(.*?)^```", text, flags=re.M | re.S)]


def _list_tables(text: str) -> list[list[list[str]]]:
    """The ``.. list-table::`` tables of an rst text: rows of cells, header row first."""
    lines = text.splitlines()
    tables: list[list[list[str]]] = []
    i = 0
    while i < len(lines):
        match = re.match(r"^(\s*)\.\. list-table::", lines[i])
        i += 1
        if not match:
            continue
        base = len(match.group(1))
        rows: list[list[str]] = []
        while i < len(lines) and (not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > base):
            line = lines[i].strip()
            if line.startswith("* - "):
                rows.append([line[4:]])
            elif line.startswith("- ") and rows:
                rows[-1].append(line[2:])
            elif line and rows:
                rows[-1][-1] += " " + line
            i += 1
        tables.append(rows)
    return tables


def _table(text: str, first_header: str) -> list[list[str]]:
    found = [t for t in _list_tables(text) if t and t[0][0] == first_header]
    assert len(found) == 1, f"expected one list-table headed {first_header!r}"
    return found[0]


def _literals(cell: str) -> list[str]:
    return re.findall(r"``(.+?)``", cell)


def _paragraph(text: str, start: str) -> str:
    """The paragraph of ``text`` that begins with ``start``, on one line."""
    for paragraph in re.split(r"\n\s*\n", text):
        if paragraph.strip().startswith(start):
            return " ".join(paragraph.split())
    raise AssertionError(f"no paragraph starting with {start!r}")


SPA = "https://app.example.com"

#: The requests behind the rows of the cache table in processing.rst, by row label; for the
#: "refused origin" row, one per column (any list of origins, an anonymous "*").
_CACHE_ROWS: dict[str, tuple[str, tuple[dict[str, str], dict[str, str]]]] = {
    "a request without ``Origin``": ("/data", ({}, {})),
    "an allowed cross-origin request": ("/data", ({"Origin": SPA}, {"Origin": SPA})),
    'a refused origin (``403``; under ``"*"``, a malformed one)': (
        "/data", ({"Origin": "https://evil.example"}, {"Origin": "https://a.example, https://b.example"})),
    "an excluded path, without ``Origin``": ("/internal", ({}, {})),
    "an excluded path, cross-origin (``403``)": ("/internal", ({"Origin": SPA}, {"Origin": SPA})),
    "an unknown URL (``404``), without ``Origin``": ("/nowhere", ({}, {})),
    "an exempt view": ("/hook", ({"Origin": SPA}, {"Origin": SPA})),
}


def _cache_headers(headers: Any, origin: str | None) -> set[str]:
    """The CORS and ``Vary: Origin`` headers of a response, as the table writes them."""
    found: set[str] = set()
    vary = {v.strip().lower() for v in headers.get("Vary", "").split(",")}
    if "origin" in vary:
        found.add("Vary: Origin")
    for name, value in headers.items():
        if name.lower().startswith("access-control-"):
            found.add(f"{name}: {'<origin>' if origin is not None and value == origin else value}")
    return found


def test_processing_cache_table_is_what_responses_carry() -> None:
    """Excluded paths carry ``Vary: Origin`` (0.1's docs said they carried no ``Vary``)."""
    from flask import Flask

    from flask_access_cors import AccessCors

    table = _table(_documented("processing.rst"), "Response")
    assert [r[0] for r in table[1:]] == list(_CACHE_ROWS), "a row of the table has no request here"
    for column, origins in ((1, [SPA]), (2, "*")):
        app = Flask(__name__)
        access = AccessCors(app, origins=origins, excluded_paths=["/internal"], event_store="memory://")
        app.add_url_rule("/data", "data", lambda: "data")
        app.add_url_rule("/internal", "internal", lambda: "internal")
        app.add_url_rule("/hook", "hook", access.exempt(lambda: "hook"))
        client = app.test_client()
        for row in table[1:]:
            path, per_column = _CACHE_ROWS[row[0]]
            headers = per_column[column - 1]
            status = re.search(r"``(\d{3})``", row[0])
            response = client.get(path, headers=headers)
            assert response.status_code == (int(status.group(1)) if status else 200), row[0]
            expected = set() if row[column] == "nothing" else set(_literals(row[column]))
            assert _cache_headers(response.headers, headers.get("Origin")) == expected, (row[0], origins)


def test_cloudflare_trusted_hosts_claim_holds() -> None:
    """An untrusted ``Host`` gets Flask's 400 before the extension answers anything."""
    from flask_access_cors import request_denied

    page = _documented("recipes/cloudflare.rst")
    claim = _paragraph(page, "``TRUSTED_HOSTS`` makes Flask refuse")
    assert "``400" in claim and "before the extension answers anything" in claim
    assert "before any of the app's hooks or views run" in claim
    [setup] = [b for b in _code_blocks(page) if "TRUSTED_HOSTS=" in b]
    assert "access = AccessCors(app)" in setup
    setup = setup.replace("access = AccessCors(app)", "access = AccessCors(app, event_store='memory://')")
    namespace: dict[str, Any] = {"__name__": "cloudflare_recipe"}
    exec(compile(setup, "docs/recipes/cloudflare.rst", "exec"), namespace)
    app = namespace["app"]
    ran: list[str] = []
    app.before_request(lambda: ran.append("hook") and None)
    app.add_url_rule("/api/items", "items", lambda: ran.append("view") or "items", methods=["GET", "POST"])
    denied: list[Any] = []

    def receiver(sender: Any, event: Any, **extra: Any) -> None:
        denied.append(event)

    request_denied.connect(receiver, app)
    try:
        client = app.test_client()
        trusted = app.config["TRUSTED_HOSTS"][0]
        preflight = {"Origin": app.config["ACCESS_CORS_ORIGINS"][0], "Access-Control-Request-Method": "POST"}
        for method, headers in [("OPTIONS", preflight), ("GET", {}), ("GET", {"Sec-Fetch-Mode": "navigate"}),
                                ("GET", {"Origin": "https://evil.example"})]:
            bad = client.open("/api/items", method=method, headers={**headers, "Host": "evil.example"})
            assert bad.status_code == 400, (method, headers)
            assert not [h for h in bad.headers.keys() if h.lower().startswith("access-control-")]
        assert (ran, denied) == ([], [])
        # the same requests for the trusted host are the extension's to answer
        assert client.options("/api/items", headers={**preflight, "Host": trusted}).status_code == 204
        assert client.get("/api/items", headers={"Host": trusted}).status_code == 401
        assert [e.reason for e in denied] == ["token_missing"]
    finally:
        request_denied.disconnect(receiver, app)


def _signed_payload(signed: str) -> Any:
    """The value an itsdangerous ``URLSafeTimedSerializer`` token carries (unverified)."""
    import base64
    import json

    payload = signed.split(".", 1)[0]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def test_spa_login_url_is_absolute_and_leads_back(monkeypatch: pytest.MonkeyPatch,
                                                  tmp_path: Path) -> None:
    """The 401 to a cross-origin caller carries an absolute ``login_url`` back to its origin."""
    import json
    from urllib.parse import unquote, urlsplit

    page = _documented("recipes/spa.rst")
    [exchange] = [b for b in _code_blocks(page, "http") if "401 UNAUTHORIZED" in b]
    request_part, _, response_part = exchange.partition("\n\n")
    method, path, _ = request_part.splitlines()[0].split(" ")
    sent = dict(line.split(": ", 1) for line in request_part.splitlines()[1:])
    shown = json.loads(response_part.strip().splitlines()[-1])["login_url"]
    shown_base, _, shown_signed = shown.partition("?redirect_url=")
    assert urlsplit(shown_base).scheme == "https" and urlsplit(shown_base).netloc == sent["Host"]
    assert _signed_payload(shown_signed) == sent["Origin"]

    [api] = [b for b in _code_blocks(page) if "login_url=" in b and "def me()" in b]
    monkeypatch.chdir(tmp_path)  # the example's default event store lives in the instance folder
    namespace: dict[str, Any] = {"__name__": "spa_recipe", "load_secret": lambda name: f"{name}-" + "x" * 40,
                                 "authenticate": lambda *args: None}
    exec(compile(api, "docs/recipes/spa.rst", "exec"), namespace)
    app, access = namespace["app"], namespace["access"]
    response = app.test_client().open(path, method=method, base_url=f"https://{sent['Host']}",
                                      headers={"Origin": sent["Origin"]})
    assert response.status_code == 401
    assert response.headers["Access-Control-Allow-Origin"] == sent["Origin"]
    assert response.json is not None
    actual_base, _, actual_signed = response.json["login_url"].partition("?redirect_url=")
    assert actual_base == shown_base
    assert _signed_payload(unquote(actual_signed)) == _signed_payload(shown_signed)
    with app.test_request_context():
        assert access.safe_return_path(unquote(actual_signed)) == sent["Origin"]


#: Pages whose Python examples must pass ``mypy --strict``.
TYPED_EXAMPLES = ("README.md", "docs/quickstart.rst", "docs/recipes/spa.rst", "docs/testing.rst",
                  "docs/recipes/cloudflare.rst", "docs/recipes/fusionauth.rst", "docs/processing.rst",
                  "docs/settings.rst", "docs/index.rst")


def test_no_example_reads_an_attribute_of_an_unchecked_identity() -> None:
    for name in TYPED_EXAMPLES:
        text = (ROOT / name).read_text(encoding="utf-8")
        assert "access.identity." not in text, f"{name}: access.identity is Optional; check it first"


def _example_module(block: str) -> str:
    """A block as a module: ``app`` and ``access`` defined unless the block defines them."""
    import ast

    defined: set[str] = set()
    for node in ast.parse(block).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            defined.add(node.name)
        elif isinstance(node, ast.Assign):
            defined.update(t.id for t in node.targets if isinstance(t, ast.Name))
    prelude = ["from flask import Flask", "from flask_access_cors import AccessCors"]
    if "app" not in defined:
        prelude.append("app = Flask(__name__)")
    if "access" not in defined:
        prelude.append("access = AccessCors()")
    return "\n".join(prelude) + "\n" + block


def test_python_examples_pass_mypy_strict(tmp_path: Path) -> None:
    """``access.identity`` is ``Identity | None``: an example that reads it unchecked fails here.

    Names the examples leave to the reader (``load_secret``, ``authenticate``, a blueprint
    defined elsewhere) and unannotated helpers are let through; ``app.wsgi_app = ProxyFix(...)``
    is Flask's documented idiom, which mypy calls a method assignment.
    """
    pytest.importorskip("mypy")
    package = tmp_path / "examples"
    package.mkdir()
    (package / "__init__.py").write_text("", encoding="utf-8")
    count = 0
    for name in TYPED_EXAMPLES:
        text = (ROOT / name).read_text(encoding="utf-8")
        blocks = _markdown_blocks(text) if name.endswith(".md") else _code_blocks(text)
        for block in blocks:
            count += 1
            stem = re.sub(r"\W", "_", Path(name).stem)
            (package / f"example_{count:02d}_{stem}.py").write_text(_example_module(block), encoding="utf-8")
    assert count >= 10
    (tmp_path / "mypy.ini").write_text(textwrap.dedent("""
        [mypy]
        strict = True
        incremental = False
        [mypy-examples.*]
        disable_error_code = name-defined, no-untyped-def, method-assign
        [mypy-flask_access_cors.*]
        follow_imports = silent
    """), encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", "mypy.ini", "--cache-dir", str(tmp_path / ".cache"),
         "-p", "examples"],
        cwd=tmp_path, env={**os.environ, "MYPYPATH": str(ROOT)}, capture_output=True, text=True,
        check=False, timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_testing_page_examples_run(tmp_path: Path) -> None:
    """Every ``# test_*.py`` module on the testing page passes, with the ``fake_access`` fixture
    found through the ``pytest11`` entry point (no conftest)."""
    modules = [b for b in _code_blocks(_documented("testing.rst")) if re.match(r"# test_\w+\.py\n", b)]
    assert len(modules) >= 2
    for block in modules:
        (tmp_path / block.split("\n", 1)[0][2:]).write_text(block, encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "error::UserWarning", "."],
        cwd=tmp_path, capture_output=True, text=True, check=False, timeout=600,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert re.search(r"\b(\d+) passed", result.stdout)


def test_flask_cors_origin_table_is_what_flask_cors_does() -> None:
    """flask-cors turns an origin string with ``*`` into a prefix regex: the page says what it admits."""
    import ast
    from importlib.metadata import version

    from flask import Flask

    flask_cors = pytest.importorskip("flask_cors")
    page = _documented("recipes/flask-cors.rst")
    assert version("flask-cors") == "6.0.2" and "flask-cors 6.0.2" in page, "re-check the page"
    table = _table(page, "``origins=``")
    assert len(table) >= 3
    for row in table[1:]:
        [written] = _literals(row[0])
        pattern = ast.literal_eval(written)
        app = Flask(__name__)
        flask_cors.CORS(app, origins=pattern)
        app.add_url_rule("/x", "x", lambda: "x")
        client = app.test_client()
        for origin in _literals(row[1]):
            answer = client.get("/x", headers={"Origin": origin}).headers.get("Access-Control-Allow-Origin")
            assert answer == origin, (pattern, origin)
        for origin in _literals(row[2]):
            answer = client.get("/x", headers={"Origin": origin}).headers.get("Access-Control-Allow-Origin")
            assert answer is None, (pattern, origin)


def test_flask_cors_blueprints_add_while_ours_replace() -> None:
    from flask import Blueprint, Flask

    from flask_access_cors import AccessCors

    flask_cors = pytest.importorskip("flask_cors")
    page = _documented("recipes/flask-cors.rst")
    [block] = [b for b in _code_blocks(page) if "CORS(api_bp" in b]
    theirs, ours = block.split("\n\n")
    origin_lists = [re.findall(r'"(https://[^"]+)"', m) for m in re.findall(r"origins=\[([^\]]*)\]", block)]
    fc_app, fc_bp, ac_app, ac_bp = origin_lists
    candidates = sorted({*fc_app, *fc_bp, *ac_app, *ac_bp, "https://evil.example"})

    def admitted(app: Flask) -> set[str]:
        client = app.test_client()
        answers = {o: client.get("/api/x", headers={"Origin": o}).headers for o in candidates}
        return {o for o, headers in answers.items() if headers.get("Access-Control-Allow-Origin") == o}

    app = Flask(__name__)
    flask_cors.CORS(app, origins=fc_app)
    bp = Blueprint("api", __name__, url_prefix="/api")
    flask_cors.CORS(bp, origins=fc_bp)
    bp.add_url_rule("/x", "x", lambda: "x")
    app.register_blueprint(bp)
    fc_admitted = admitted(app)
    assert fc_admitted == {*fc_app, *fc_bp}  # the blueprint adds to the app's origins
    assert set(re.findall(r"https://[\w.-]+", theirs.splitlines()[0])) == fc_admitted

    app = Flask(__name__)
    access = AccessCors(app, origins=ac_app, event_store="memory://")
    bp = access.blueprint(Blueprint("api", __name__, url_prefix="/api"), origins=ac_bp)
    bp.add_url_rule("/x", "x", lambda: "x")
    app.register_blueprint(bp)
    ac_admitted = admitted(app)
    assert ac_admitted == set(ac_bp)  # ours replaces them
    assert set(re.findall(r"https://[\w.-]+", ours.splitlines()[0])) == ac_admitted
    prose = " ".join(page.split())
    assert "the blueprint *adds* its origins to the app's" in prose
    assert "a blueprint's ``origins`` *replace* the app's" in prose


def test_flask_cors_config_keys_are_all_mapped() -> None:
    """Every ``CORS_*`` key flask-cors reads is listed; "no equivalent" keys and renamed keys are
    refused with a hint; the page's example error is the real one."""
    from flask import Flask

    from flask_access_cors import AccessCors, ConfigError

    flask_cors_core = pytest.importorskip("flask_cors.core")
    page = _documented("recipes/flask-cors.rst")
    table = _table(page, "flask-cors key")
    keys = [_literals(row[0])[0] for row in table[1:]]
    assert sorted(keys) == sorted(flask_cors_core.CONFIG_OPTIONS)
    config_keys = {s.config_key: s.name for s in SETTINGS.values()}

    def problems(key: str) -> list[tuple[str, str]]:
        app = Flask(__name__)
        app.config["ACCESS_" + key] = True
        try:
            AccessCors(app, event_store="memory://")
        except ConfigError as exc:
            return exc.problems
        return []

    for key, row in zip(keys, table[1:], strict=True):
        here = [v for v in _literals(row[1]) if v.startswith("ACCESS_CORS_")]
        if row[1].startswith("no equivalent"):
            assert here == []
            assert [c for c, _ in problems(key)] == ["unknown_setting"], key
            continue
        [target] = here[:1]
        assert target in config_keys, target
        if target != "ACCESS_" + key:  # renamed: the prefixed flask-cors key is refused, with a hint
            [(code, message)] = problems(key)
            assert code == "unknown_setting" and f"did you mean {target!r}" in message
    [shown] = re.findall(r"^\s*(\[unknown_setting\] app\.config: .*)$", page, flags=re.M)
    [(code, message)] = problems("CORS_SUPPORTS_CREDENTIALS")
    assert shown == f"[{code}] {message}"
