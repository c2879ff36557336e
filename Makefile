# tubai: the human interface. `make test` and `make bench` set everything up on first use.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

# --- The lab-machine stack (make up; README, "Lab machine") --------------------------------
# Where `make up` has written .env, the host-side commands that write or read measurements use
# the stack's InfluxDB: TUBAI_STORE and TUBAI_INFLUXDB_TOKEN from .env, for these targets only
# (never for test). The environment, or STORE=..., still wins. Nothing else is read from .env.
ifneq ($(wildcard .env),)
ifeq ($(origin TUBAI_STORE),undefined)
TUBAI_STORE := $(shell sed -n 's/^TUBAI_STORE=//p' .env)
endif
ifeq ($(origin TUBAI_INFLUXDB_TOKEN),undefined)
TUBAI_INFLUXDB_TOKEN := $(shell sed -n 's/^TUBAI_INFLUXDB_TOKEN=//p' .env)
endif
bench score report energy: export TUBAI_STORE := $(TUBAI_STORE)
bench score report energy: export TUBAI_INFLUXDB_TOKEN := $(TUBAI_INFLUXDB_TOKEN)
endif
# `docker compose` (the plugin), else the older `docker-compose`.
COMPOSE ?= $(shell docker compose version >/dev/null 2>&1 \
	&& echo "docker compose" || echo docker-compose)
# -------------------------------------------------------------------------------------------

.PHONY: setup test lint doctor agent energy bench models score report perf up down logs clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -e '.[test]'
	rm -f $(VENV)/.installed-* && touch $@

lint: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

test: setup lint
	$(PY) -m pytest

doctor: setup
	$(PY) -m exporters doctor

# Sample this machine into the embedded store until Ctrl-C (DURATION=S to stop by itself).
agent: setup
	$(PY) -m exporters run $(if $(DURATION),--duration $(DURATION))

# Energy of every domain in the last 5 minutes (START=..., END=... to choose).
energy: setup
	$(PY) -m scoring energy --start=$(or $(START),-5m) --end=$(or $(END),now)

# make bench [MODEL=efficientnetv2_s] [DATA=/path/to/ILSVRC2012/val|synthetic|digits]
#            [LIMIT=N] [BATCH=32] [REPEATS=1] [WEIGHTS=auto] [IDLE=S] [MIN_DURATION=S]
#            [STORE=URL]
MODEL   ?= digits_cnn
DATA    ?= auto
BATCH   ?= 32
REPEATS ?= 1
WEIGHTS ?= auto
# digits' 450 test images take milliseconds: cycle them 100 times for a measurable window
LIMIT   ?= $(if $(filter digits_cnn,$(MODEL)),45000)
bench: setup
	$(PY) -m benchmark run --model $(MODEL) --data $(DATA) --batch-size $(BATCH) \
		--repeats $(REPEATS) --weights $(WEIGHTS) $(if $(LIMIT),--limit $(LIMIT)) \
		$(if $(IDLE),--idle $(IDLE)) $(if $(MIN_DURATION),--min-duration $(MIN_DURATION)) \
		$(if $(STORE),--store $(STORE))

models: setup
	$(PY) -m benchmark models

# Score finished runs (writes score points), then print runs, repeats and rankings.
score: setup
	$(PY) -m scoring serve --once --grace 2 $(if $(STORE),--store $(STORE))
	$(PY) -m scoring runs $(if $(STORE),--store $(STORE))

# A self-contained HTML report with CSV, JSON and charts (OUT=report by default).
report: setup
	$(PY) -m scoring report --out $(or $(OUT),report) $(if $(STORE),--store $(STORE))

# Performance figures (README, "Performance"): a table, and perf/results.json. About 8 minutes.
perf: setup
	$(PY) perf/run.py $(if $(REPEATS_PERF),--repeats $(REPEATS_PERF))

# The lab-machine stack: InfluxDB, Grafana, the exporter (COMPOSE_PROFILES in .env: cpu or gpu)
# and the scoring service. The first `make up` writes .env with fresh secrets.
up:
	@test -f .env || sh scripts/make-env.sh .env
	@test -d /sys/class/powercap || echo "note: no RAPL here (/sys/class/powercap): the" \
		"exporter will estimate CPU power from utilisation, marked estimated" >&2
	$(COMPOSE) up -d --build
	@echo "Grafana: http://localhost:$$(sed -n 's/^GRAFANA_PORT=//p' .env | grep . || echo 3000)" \
		"(user admin, password in .env (GRAFANA_ADMIN_PASSWORD))"

# Stops the stack; its data stays in the named volumes (docker compose down -v deletes them).
down:
	$(COMPOSE) down

logs:
	$(COMPOSE) logs -f --tail=100

clean:
	rm -rf $(VENV) data/ .pytest_cache
