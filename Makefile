# Two commands on a fresh machine: `make run` and `make test`.
# VENV may point elsewhere (CI keeps one outside the clone): make test VENV=/opt/venvs/deploybench
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.deploybench-installed
SUITE ?= quick
ARGS ?=

.PHONY: setup run test lint docs clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e '.[all,dev]'
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/deploybench run --suite $(SUITE) $(ARGS)

# two test processes (pytest-xdist): most of a test's time is a child it waits for
TEST_WORKERS ?= 2

test: $(STAMP)
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder $(ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check toolkit exporters tests benchmarks

# the docs site, into site/ (the CLI reference is generated from the app; --strict: a broken
# link or a page left out of the navigation fails)
docs: $(STAMP)
	$(VENV)/bin/mkdocs build --strict

clean:
	rm -rf results build site *.egg-info
