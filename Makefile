# Two commands: `make dev` (set up + run the gateway on a local anvil) and `make test`
# (set up + lint + type-check + the whole suite). Both work on a fresh machine.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: setup dev observe test lint docs chaos soak bench bench-siwe web screenshot clean

setup: $(VENV)/.installed contracts/node_modules/.installed web/node_modules/.installed

$(VENV)/.installed: pyproject.toml
	./scripts/system-deps.sh
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e . --group dev
	touch $@

contracts/node_modules/.installed: contracts/package.json contracts/package-lock.json
	cd contracts && npm ci --no-audit --no-fund --loglevel=error
	touch $@

web/node_modules/.installed: web/package.json web/package-lock.json
	cd web && npm ci --no-audit --no-fund --loglevel=error
	ln -sfn ../web/node_modules examples/node_modules  # viem for examples/rpc_viem.mjs
	touch $@

# The reference page's bundle (gateway/webapp/static/app.js), rebuilt from web/src and the lock file.
web: setup
	node web/build.mjs

# The docs' screenshots of the reference page (signed in, and without a wallet), by the browser tests.
screenshot: setup
	GATEWAY_SCREENSHOT=docs/app-page.png GATEWAY_SCREENSHOT_NO_WALLET=docs/no-wallet.png \
		$(BIN)/pytest tests/browser -k "whole_journey or without_a_wallet" -q

# PORT=8181 make dev, make dev PORT=8181 (GATEWAY_PORT works too): the gateway's port.
# With `make observe` running, its traces go to that Jaeger (.gateway/observe/otlp.env).
dev: setup
	$(if $(wildcard .gateway/observe/otlp.env),set -a && . ./.gateway/observe/otlp.env && set +a &&) \
		$(BIN)/gateway dev $(if $(PORT),--port $(PORT))

# Jaeger v2 (built once) and Prometheus with the project's rules, for `make dev` to report to.
observe: setup
	$(BIN)/python scripts/observe.py

lint: setup
	$(BIN)/ruff check gateway tests bench examples grafana docs scripts
	$(BIN)/ruff format --check gateway tests bench examples grafana docs scripts
	$(BIN)/mypy

test: lint
	$(BIN)/pytest

# docs/configuration.md and docs/metrics.md, from the settings models and the metric registry.
docs: setup
	$(BIN)/python docs/build.py

# The chaos run of `make test`, each fault held 30 s instead of 5 (about 8 minutes).
chaos: setup
	CHAOS_HOLD_S=30 $(BIN)/pytest tests/chaos/test_chaos.py

# 20 minutes of steady mixed load on the chaos deployment; RSS and descriptors must stay flat.
soak: setup
	GATEWAY_SOAK_MINUTES=$(or $(MINUTES),20) $(BIN)/pytest tests/chaos/test_soak.py --basetemp=.soak

bench: setup
	$(BIN)/python bench/healthz.py

# The reference `siwe` package needs web3<8 and abnf<2.4: it gets a venv of its own.
.venv-bench-siwe/.installed:
	$(PYTHON) -m venv .venv-bench-siwe
	.venv-bench-siwe/bin/pip install --quiet --upgrade pip
	.venv-bench-siwe/bin/pip install --quiet "siwe==4.4.0" "abnf<2.4" coincurve
	touch $@

bench-siwe: setup .venv-bench-siwe/.installed
	$(BIN)/python bench/siwe_verify.py

clean:
	rm -rf $(VENV) .venv-bench-siwe contracts/node_modules web/node_modules .gateway .pytest_cache .mypy_cache .ruff_cache
