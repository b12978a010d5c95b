# Call Journal — developer entry points. `make test` works on a fresh clone.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: venv lint test test-long run proto bench clean system-packages browser

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

test: lint system-packages
	$(BIN)/pytest -m "not slow"

# Debian packages some tests use, installed when missing and we are root (as CI is);
# otherwise those tests say what to install (the console's browser test fails saying so).
# command:package pairs: promtool checks the alert rules; Chromium (and a font) runs the
# console's browser test with Playwright (never `playwright install`: no downloads).
SYSTEM_PACKAGES := promtool:prometheus chromium:chromium chromium:fonts-liberation
system-packages:
	@missing=""; for pair in $(SYSTEM_PACKAGES); do \
	  command -v "$${pair%%:*}" >/dev/null 2>&1 || missing="$$missing $${pair#*:}"; done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing Debian packages:$$missing"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    --no-install-recommends $$missing >/dev/null) || echo "could not install$$missing"; \
	else echo "not root: install$$missing (Debian) for the tests that need them"; fi

browser: system-packages

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
