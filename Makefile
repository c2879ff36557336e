# tubai: the human interface. `make test` and `make bench` set everything up on first use.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

# --- The lab-machine stack (make up; README, "Lab machine") --------------------------------
# Where `make up` has written .env, the host-side commands that write or read measurements use
# the stack's InfluxDB (TUBAI_STORE from .env), for these targets only (never for test), each
# with its own InfluxDB credential from .env, never the admin token: `make bench` the bench
# one (writes run events, reads the exporter's samples), `make score`, `make report` and
# `make energy` the scoring one. The environment, or STORE=..., still wins: a TUBAI_STORE, or a
# TUBAI_INFLUXDB_TOKEN or TUBAI_INFLUXDB_USERNAME, there is used as it is. Nothing else is read
# from .env.
ifneq ($(wildcard .env),)
dotenv = $(shell sed -n 's/^$(1)=//p' .env)
ifeq ($(origin TUBAI_STORE),undefined)
TUBAI_STORE := $(call dotenv,TUBAI_STORE)
endif
bench score report energy: export TUBAI_STORE := $(TUBAI_STORE)
ifeq ($(origin TUBAI_INFLUXDB_TOKEN)$(origin TUBAI_INFLUXDB_USERNAME),undefinedundefined)
bench: export TUBAI_INFLUXDB_USERNAME := $(call dotenv,TUBAI_INFLUXDB_BENCH_USER)
bench: export TUBAI_INFLUXDB_PASSWORD := $(call dotenv,TUBAI_INFLUXDB_BENCH_PASSWORD)
score report energy: export TUBAI_INFLUXDB_USERNAME := $(call dotenv,TUBAI_INFLUXDB_SCORING_USER)
score report energy: export TUBAI_INFLUXDB_PASSWORD := $(call dotenv,TUBAI_INFLUXDB_SCORING_PASSWORD)
endif
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

# Then the tests marked timing once more, each beside CPU_LOAD busy-loop processes (2: CI's two
# cores saturated by others): they must hold on a busy machine. CPU_LOAD=0 leaves that out.
CPU_LOAD ?= 2
test: setup lint
	$(PY) -m pytest
	$(if $(filter-out 0,$(CPU_LOAD)),$(PY) -m pytest -m timing --cpu-load=$(CPU_LOAD))

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

# Performance figures (README, "Performance"): a table, and perf/results.json. About 30 minutes
# (the simulated lab of perf/lab_scale.py: about 15).
perf: setup
	$(PY) perf/run.py $(if $(REPEATS_PERF),--repeats $(REPEATS_PERF))

# The GPU check (README, "GPU check"): on a machine with an NVIDIA GPU, offline and without
# TensorFlow, in at most 8 minutes; BACKEND=torch (or jax), OUT=gpu-check. No `setup` first:
# there is no network there; the venv is made from carried wheels as README says.
GPU_PYTHON ?= $(if $(wildcard $(PY)),$(PY),python3)
.PHONY: gpu-check
gpu-check:
	$(GPU_PYTHON) scripts/gpu_check.py --backend $(or $(BACKEND),torch) --out $(or $(OUT),gpu-check)

# The lab-machine stack: InfluxDB, Grafana, the exporter (COMPOSE_PROFILES in .env: cpu or gpu)
# and the scoring service. The first `make up` writes .env with fresh secrets; an .env written
# before the per-role InfluxDB credentials is refused, with what to do (README, "A lab machine").
up:
	@test -f .env || sh scripts/make-env.sh .env
	@grep -q '^TUBAI_INFLUXDB_ADMIN_TOKEN=' .env || { echo ".env predates the per-role" \
		"InfluxDB credentials: see README, \"A lab machine\" (Upgrading an older .env)" >&2; \
		exit 1; }
	@test -d /sys/class/powercap || echo "note: no RAPL here (/sys/class/powercap): the" \
		"exporter will estimate CPU power from utilisation, marked estimated" >&2
	@if grep -q '^COMPOSE_FILE=.*docker-compose\.tls\.yml' .env \
		&& ! grep -q '^TUBAI_TLS_CERT=.' .env; then \
		TUBAI_TLS_NAMES="$$(sed -n 's/^TUBAI_TLS_NAMES=//p' .env)" sh scripts/make-certs.sh certs; fi
	$(COMPOSE) up -d --build
	@echo "Grafana: $$(grep -q '^COMPOSE_FILE=.*docker-compose\.tls\.yml' .env && echo https \
		|| echo http)://localhost:$$(sed -n 's/^GRAFANA_PORT=//p' .env | grep . || echo 3000)" \
		"(user admin, password in .env (GRAFANA_ADMIN_PASSWORD))"

# A lab of machines (README, "A lab of machines"). On the central machine: `make token
# HOST=name` mints a token that may only write the bucket (BENCH=1: read it too) and prints
# the `make join` line for that host; `make revoke HOST=name` withdraws its tokens. On a joining
# machine: `make join CENTRAL=https://host:8086 TOKEN=... CA=ca.pem [HOST=name]` writes
# .env.join and starts the exporter alone (docker-compose.join.yml); NODOCKER=1 only writes it.
.PHONY: token revoke join
token revoke:
	@INFLUX="$(COMPOSE) exec -T influxdb influx" sh scripts/lab-token.sh $@ "$(HOST)" \
		$(if $(BENCH),bench)

join:
	@sh scripts/join.sh "$(CENTRAL)" "$(TOKEN)" "$(CA)" $(HOST)
	$(if $(NODOCKER),@echo "without Docker: set -a; . ./.env.join; set +a;" \
		"$(PY) -m exporters run",$(COMPOSE) -f docker-compose.join.yml --env-file .env.join \
		--profile join up -d --build)

# requirements.lock: the tubai image's dependencies (pyproject's [project.dependencies] and the
# setuptools that builds the package), every release pinned with the hashes of its files, for
# CPython 3.11 on Linux, the image's. Rerun after changing those dependencies; needs PyPI.
.PHONY: lock
LOCK_PYTHON ?= python3.11
lock:
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	unset PIP_FIND_LINKS PIP_EXTRA_INDEX_URL PIP_CONSTRAINT && \
	export PIP_CONFIG_FILE=/dev/null PIP_INDEX_URL=https://pypi.org/simple && \
	$(LOCK_PYTHON) -m venv "$$tmp/venv" && \
	"$$tmp/venv/bin/pip" install -q --disable-pip-version-check pip-tools && \
	"$$tmp/venv/bin/pip-compile" --quiet --generate-hashes --allow-unsafe --all-build-deps \
		--strip-extras --no-emit-index-url --index-url https://pypi.org/simple \
		--output-file requirements.lock pyproject.toml

# Stops the stack; its data stays in the named volumes (docker compose down -v deletes them).
down:
	$(COMPOSE) down

logs:
	$(COMPOSE) logs -f --tail=100

clean:
	rm -rf $(VENV) data/ .pytest_cache
