# Every target bootstraps what it needs: a virtual environment in .venv and,
# where missing, the Debian packages the tests drive (chromium, redis-server).
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: demo demo-edge test lint docs bench system-deps clean

$(STAMP): setup.cfg pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,docs,redis]'
	touch $(STAMP)

system-deps:
	@bash scripts/system-deps.sh

demo: $(STAMP)
	$(PY) -m example_app

demo-edge: $(STAMP)
	$(PY) -m example_app --edge

lint: $(STAMP)
	$(VENV)/bin/ruff check flask_access_cors tests bench example_app docs/conf.py
	$(VENV)/bin/mypy

docs: $(STAMP)
	$(VENV)/bin/sphinx-build -W --keep-going -q -b html docs docs/_build/html

test: $(STAMP) system-deps lint docs
	$(VENV)/bin/pytest

# BENCH_ARGS=--quick for a short run; pyperf and locust come with the bench extra.
bench: $(STAMP)
	@$(PY) -c "import pyperf" 2>/dev/null && test -x $(VENV)/bin/locust || $(PY) -m pip install --quiet -e '.[bench]'
	$(PY) -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) docs/_build .pytest_cache .mypy_cache .ruff_cache
