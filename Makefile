# StationWatch — the two commands: `make demo` and `make test`. Both install what is missing
# (Debian packages when run as root or with password-less sudo, a virtual environment, the
# package) and are safe to run twice.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# Debian packages the running system needs, as "command:package" pairs.
RUNTIME_PKGS := mosquitto:mosquitto influxd:influxdb /usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc:fonts-noto-cjk
TEST_PKGS    := chromium:chromium shellcheck:shellcheck /usr/share/fonts/truetype/wqy/wqy-zenhei.ttc:fonts-wqy-zenhei pdftotext:poppler-utils
# `make bench` only: npm installs the peer measured beside us (Node-RED, tests/benchmarks/bench_peer.py);
# mosquitto_sub is the broker's drain ceiling there
BENCH_PKGS   := npm:npm mosquitto_sub:mosquitto-clients

# the installed sub-packages of `stationwatch`, one per top-level folder (docs/architecture.md)
PACKAGES := sensors core gateway broker alerts dashboards cli
LAYERS   := $(VENV)/layers

.PHONY: demo demo-fresh test bench screenshots deps test-deps bench-deps postgres venv layers clean

demo: deps venv
	$(BIN)/stationwatch demo --config docs/examples/city-station.yaml

# the same, forgetting the alerts, readings and spool of earlier runs
demo-fresh: deps venv
	$(BIN)/stationwatch demo --config docs/examples/city-station.yaml --fresh

test: deps test-deps postgres venv layers
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

# The floor plan's contracts (pyproject.toml, [tool.importlinter]). import-linter walks folders; the
# editable install's import hook is invisible to it, so it reads a tree of links named as installed.
layers: venv
	@mkdir -p $(LAYERS)/stationwatch
	@for d in $(PACKAGES); do ln -sfn "$(CURDIR)/$$d" "$(LAYERS)/stationwatch/$$d"; done
	PYTHONPATH=$(LAYERS) $(BIN)/lint-imports --no-cache

# the duty board's desk, phone and site views as docs/board-{desk,phone,sites}.png (CJK font
# from RUNTIME_PKGS); only here, so `make test` leaves the tree as it was
screenshots: deps test-deps venv
	STATIONWATCH_SCREENSHOTS=1 $(BIN)/python -m pytest -q tests/test_board_browser.py -k "fire or phone or site_view"

bench: deps bench-deps venv
	$(BIN)/python tests/benchmarks/bench_ingest.py
	$(BIN)/python tests/benchmarks/bench_alerts.py
	$(BIN)/python tests/benchmarks/bench_gateway.py
	$(BIN)/python tests/benchmarks/bench_reports.py
	$(BIN)/python tests/benchmarks/bench_peer.py
	$(BIN)/python tests/benchmarks/bench_engine.py
	$(BIN)/python tests/benchmarks/bench_influx_load.py
	@# the deployment docs/scaling.md recommends (ingest and InfluxDB at nice 10), then all at one priority
	$(BIN)/python tests/benchmarks/bench_national.py --storage-nice 10
	$(BIN)/python tests/benchmarks/bench_national.py

deps:
	@PKGS="$(RUNTIME_PKGS)" sh apt-install.sh

test-deps:
	@PKGS="$(TEST_PKGS)" sh apt-install.sh

# the PostgreSQL server the shared-store tests use (127.0.0.1:5432): started, or installed and started
postgres:
	@sh postgres-up.sh

bench-deps:
	@PKGS="$(BENCH_PKGS)" sh apt-install.sh

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c 'import ensurepip' 2>/dev/null || PKGS="_:python3-venv" sh apt-install.sh
	$(PYTHON) -m venv $(VENV)
	@# grafana-client's niquests needs urllib3-future, whose wheel overwrites urllib3 (that requests, the
	@# InfluxDB client and schemathesis are made for) at every start; built this way it keeps to urllib3_future
	URLLIB3_NO_OVERRIDE=1 $(BIN)/python -m pip install -q --no-binary urllib3-future -e '.[test]'
	@touch $@

clean:
	rm -rf $(VENV) .demo *.egg-info
