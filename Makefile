# The two commands the README promises on a fresh machine: `make demo` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
DEMO_DIR ?= demo-out

.PHONY: install demo test lint clean arm-board

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
test: $(STAMP)
	$(BIN)/python tests/arm/board.py prepare-if-possible
	$(BIN)/python -m pytest

arm-board: $(STAMP)
	$(BIN)/python tests/arm/board.py prepare

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(DEMO_DIR) .pytest_cache
