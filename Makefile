# Joulepoint Edge. `make run` serves the demo on http://127.0.0.1:8000; `make test` runs the suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: venv lock upgrade run demo demo-setup simulate test lint

# `make run` serves on HOST:PORT with SERVER (swap it: make run SERVER='$(BIN)/daphne -b ...').
HOST ?= 127.0.0.1
PORT ?= 8000
URL := http://$(HOST):$(PORT)
SERVER ?= $(BIN)/uvicorn joulepoint.asgi:application --host $(HOST) --port $(PORT) --lifespan off
SIM_INTERVAL ?= 5
MANAGE := $(BIN)/python manage.py

# The ranges we accept live in requirements*.txt; requirements.lock pins the versions CI tested
# (every platform, Python 3.11+), so a fresh clone installs exactly those.
$(BIN)/activate: requirements.txt requirements-dev.txt requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements-dev.txt -c requirements.lock
	touch $(BIN)/activate

venv: $(BIN)/activate

# requirements.lock from the ranges (uv's resolver; one version per package where it can):
# `make lock` keeps existing pins and adds what requirements*.txt gained; `make upgrade` moves
# everything to the newest allowed. Both install the result; then run the suite on PostgreSQL +
# Redis before committing it (README, "Upgrading dependencies").
LOCK_FLAGS ?=
lock:
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q uv
	$(BIN)/uv pip compile requirements-dev.txt --universal --fork-strategy fewest --python-version 3.11 \
	  --custom-compile-command "make lock" -q $(LOCK_FLAGS) -o requirements.lock
	$(BIN)/pip install -q -r requirements-dev.txt -c requirements.lock
	touch $(BIN)/activate

upgrade:
	$(MAKE) lock LOCK_FLAGS=--upgrade

test: venv
	$(BIN)/pytest

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Demo database and credentials: migrate the SQLite default, collect static files (served by
# WhiteNoise), create or reuse the demo tenant and print its logins (see docs/demo.md).
# The demo's webhook goes to a receiver on loopback, which the SSRF guard refuses unless told.
WEBHOOK_PORT ?= 8765
run demo demo-setup simulate: export AUTOMATIONS_WEBHOOK_ALLOW_PRIVATE = 1
run demo demo-setup simulate: export DEMO_WEBHOOK_PORT = $(WEBHOOK_PORT)
# The OCPP server of the demo (chargers connect to ws://127.0.0.1:$(OCPP_PORT)/ocpp/{id}; docs/load.md).
OCPP_PORT ?= 8180
run demo demo-setup: export DEMO_OCPP_PORT = $(OCPP_PORT)

demo-setup: venv
	$(MANAGE) migrate --noinput -v 0
	$(MANAGE) collectstatic --noinput -v 0
	$(MANAGE) demo_setup --url $(URL)

demo: demo-setup

# The demo simulator in the foreground (a server must be running at URL).
simulate: venv
	$(MANAGE) simulate --url $(URL) --interval $(SIM_INTERVAL)

# Everything: venv, migrations, demo tenant, the simulator in the background (log in
# var/simulator.log), the periodic tasks a deployment's celery beat runs (outbox sweep, delivery
# retries, rollups, retention, command expiry; log in var/periodic.log) and the server in the
# foreground; stopping the server stops the others. The OCPP server (log in var/ocpp-server.log)
# and two simulated charging stations (var/ocpp-stations.log) run beside them.
# With MQTT_URL set (e.g. make run MQTT_URL=mqtt://127.0.0.1:1884) make run starts its own
# Mosquitto there (log var/mosquitto.log), configured by manage.py mosquitto_auth in var/mqtt:
# no anonymous clients, each device logs in as meter-<id>/gateway-<id> with its key and may use
# only its own topics, the bridge has its own account; device changes rewrite and reload it.
# The MQTT bridge runs beside them (log in var/mqtt-bridge.log; docs/live.md, "MQTT identity").
# Pick a port nothing listens on (a system Mosquitto often holds 1883). The webhook receiver starts before the demo
# setup (its history's webhooks find it), so demo-setup's steps are repeated here rather than
# called as $(MAKE) demo-setup: a recipe naming $(MAKE) runs even under `make -n`.
# The simulator then sends the SIM_MQTT_METERS (kinds, comma-separated, or all) over MQTT, each
# meter logged in as meter-<id> with its device key, and the others over HTTP.
MQTT_URL ?=
SIM_MQTT_METERS ?= pv
run: venv
	@mkdir -p var; \
	$(MANAGE) demo_webhook_receiver --port $(WEBHOOK_PORT) > var/webhook-receiver.log 2>&1 & \
	receiver=$$!; sim=; periodic=; bridge=; broker=; ocpp=; stations=; sim_mqtt=; \
	trap 'kill $$receiver $$sim $$periodic $$bridge $$broker $$ocpp $$stations 2>/dev/null; wait $$receiver $$sim $$periodic $$bridge $$broker $$ocpp $$stations 2>/dev/null' EXIT; \
	trap 'exit 130' INT; trap 'exit 143' TERM; \
	$(MANAGE) migrate --noinput -v 0 && $(MANAGE) collectstatic --noinput -v 0 && \
	  $(MANAGE) demo_setup --url $(URL) || exit 1; \
	if [ -n "$(MQTT_URL)" ]; then \
	  command -v mosquitto >/dev/null || { echo "MQTT_URL needs Mosquitto (apt-get install mosquitto)"; exit 1; }; \
	  export MQTT_AUTH_DIR="$$PWD/var/mqtt"; \
	  bridge_url=$$($(MANAGE) mosquitto_auth --dir "$$MQTT_AUTH_DIR" --listen "$(MQTT_URL)" --print-url) || exit 1; \
	  mosquitto -c "$$MQTT_AUTH_DIR/mosquitto.conf" > var/mosquitto.log 2>&1 & broker=$$!; \
	  export MQTT_URL="$$bridge_url"; \
	  sim_mqtt="--mqtt $(MQTT_URL) --mqtt-meters $(SIM_MQTT_METERS)"; \
	  echo "Mosquitto running (pid $$broker, log var/mosquitto.log, logins and ACL in var/mqtt) on $(MQTT_URL)"; \
	fi; \
	$(MANAGE) simulate --url $(URL) --interval $(SIM_INTERVAL) $$sim_mqtt --stop-with-parent > var/simulator.log 2>&1 & \
	sim=$$!; \
	$(MANAGE) periodic_tasks --stop-with-parent > var/periodic.log 2>&1 & \
	periodic=$$!; \
	$(MANAGE) ocpp_server --port $(OCPP_PORT) > var/ocpp-server.log 2>&1 & \
	ocpp=$$!; \
	$(MANAGE) simulate_stations --demo --interval $(SIM_INTERVAL) --stop-with-parent > var/ocpp-stations.log 2>&1 & \
	stations=$$!; \
	if [ -n "$(MQTT_URL)" ]; then \
	  $(MANAGE) mqtt_bridge > var/mqtt-bridge.log 2>&1 & bridge=$$!; \
	  echo "MQTT bridge running (pid $$bridge, log var/mqtt-bridge.log) on $(MQTT_URL)"; \
	fi; \
	echo "OCPP server on ws://$(HOST):$(OCPP_PORT)/ocpp/{id} (pid $$ocpp, log var/ocpp-server.log), two simulated charging stations (pid $$stations, log var/ocpp-stations.log)"; \
	echo "Simulator running (pid $$sim, log var/simulator.log), periodic tasks (pid $$periodic, log var/periodic.log), webhook receiver (pid $$receiver, deliveries in var/webhooks.log); serving $(URL) — Ctrl-C stops all."; \
	$(SERVER)
