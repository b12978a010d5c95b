# Call Journal — developer entry points. `make test` works on a fresh clone.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: venv lint test test-long run proto bench clean browser

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

lint: venv
	$(BIN)/ruff check cj cj_api cj_encoder cj_agent tests bench tools scripts
	$(BIN)/ruff format --check cj cj_api cj_encoder cj_agent tests bench tools scripts
	$(BIN)/mypy

test: lint browser
	$(BIN)/pytest -m "not slow"

# The console's browser test (tests/console) drives Debian's Chromium with Playwright
# (never `playwright install`: no browser download). Installed when missing and we are
# root (as CI runs); otherwise that test fails saying what to install.
CHROMIUM ?= /usr/bin/chromium
browser:
	@if [ -x $(CHROMIUM) ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		{ apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium; } \
		|| echo "make browser: installing chromium failed; tests/console will fail"; \
	else echo "make browser: $(CHROMIUM) is missing; install Debian's chromium package (apt-get install chromium) for tests/console"; fi

# The long tests (faults, load, thorough fuzzing); writes their figures to docs/reliability.md.
test-long: venv
	CJ_TEST_RELIABILITY_REPORT=docs/reliability.md $(BIN)/pytest -m slow

# Every benchmark in turn (tens of minutes; run on an idle machine). Each prints its
# figures and, last, one JSON line.
bench: venv
	set -e; for script in bench/[a-z]*.py; do echo "== $$script"; $(BIN)/python $$script; done

proto: venv
	$(BIN)/python tools/gen_proto.py

# docker compose when a Docker engine answers, else natively (`cj dev`); the script
# makes the venv itself when it needs one. Options: make run ARGS="--rest-port 8081"
run:
	MAKE="$(MAKE)" VENV="$(VENV)" ./scripts/run.sh $(ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
