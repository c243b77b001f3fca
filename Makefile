# The two commands the README promises on a fresh machine: `make demo` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
DEMO_DIR ?= demo-out

.PHONY: install demo test test-fast lint docs clean sshd chromium arm-board

install: $(STAMP)

# Re-install only when the project's dependencies change.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[all]"
	touch $(STAMP)

demo: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" bash scripts/demo.sh $(DEMO_DIR)

# The emulated aarch64 board for tests/arm is prepared (once, cached outside the repository) where the machine
# allows it: root and binfmt_misc. Elsewhere those tests are skipped and say why.
test: $(STAMP) sshd chromium
	$(BIN)/python tests/arm/board.py prepare-if-possible
	$(BIN)/python -m pytest

# The development loop: the unit tests, no training or conversion (about a minute); `make test` still runs everything.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow and not arm" -q

arm-board: $(STAMP)
	$(BIN)/python tests/arm/board.py prepare

# The remote-bench tests start an OpenSSH server on 127.0.0.1; install it on a fresh CI machine when we are root.
sshd:
	@if ! command -v /usr/sbin/sshd >/dev/null && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		(apt-get update -qq && apt-get install -y -qq openssh-server openssh-client >/dev/null) || \
		echo "openssh-server could not be installed: the remote bench tests will be skipped"; \
	fi

# The report's browser test opens the page in headless Chromium (Debian's package); installed when we are root.
chromium:
	@if ! command -v chromium >/dev/null && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		(apt-get update -qq && apt-get install -y -qq chromium >/dev/null) || \
		echo "chromium could not be installed: the report's browser tests will be skipped"; \
	fi

# ruff, then pyright on the public API (edgetl/__init__.py, api.py and tests/typecheck_api.py: pyproject.toml).
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pyright --pythonpath $(BIN)/python

# The documentation site (docs/, mkdocs.yml) into site/; --strict fails on a broken link or a missing reference.
docs: $(STAMP)
	$(BIN)/mkdocs build --strict

clean:
	rm -rf $(DEMO_DIR) .pytest_cache site
