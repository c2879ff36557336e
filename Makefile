# tubai: the human interface. `make test` and `make bench` set everything up on first use.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: setup test lint doctor agent energy bench models score report perf up down clean

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
#            [LIMIT=N] [BATCH=32] [REPEATS=1] [WEIGHTS=auto] [IDLE=S] [STORE=URL]
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
		$(if $(IDLE),--idle $(IDLE)) $(if $(STORE),--store $(STORE))

models: setup
	$(PY) -m benchmark models

# Score finished runs (writes score points), then print runs, repeats and rankings.
score: setup
	$(PY) -m scoring serve --once --grace 2 $(if $(STORE),--store $(STORE))
	$(PY) -m scoring runs $(if $(STORE),--store $(STORE))

# A self-contained HTML report with CSV, JSON and charts (OUT=report by default).
report: setup
	$(PY) -m scoring report --out $(or $(OUT),report) $(if $(STORE),--store $(STORE))

perf up down:
	@echo "make $@: not built yet (see the open issues)" >&2
	@exit 1

clean:
	rm -rf $(VENV) data/ .pytest_cache
