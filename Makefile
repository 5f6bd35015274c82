# Two entry points: `make run` (the whole loop on the bundled example) and `make test`.
# Both build .venv from nothing on first use; torch is installed first and pinned so that
# no other package can replace the CPU build with CUDA wheels.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DATA ?= ../shared/data/leandojo_b4_sample
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export ANONYMIZED_TELEMETRY := False

.PHONY: run test test-slow test-all bench clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -qq --upgrade pip
	$(PY) -m pip install -qq torch==2.13.0
	PIP_CONSTRAINT=$(CURDIR)/constraints.txt $(PY) -m pip install -qq -e '.[dev]'
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q -n 2

test-slow: $(STAMP)
	$(PY) -m pytest -q -n 2 -m slow

test-all: $(STAMP)
	$(PY) -m pytest -q -m "slow or not slow"

run: $(STAMP)
	@test -d $(DATA) || { echo "error: $(DATA) not found: the bundled example is read from ../shared/data (see README)"; exit 2; }
	$(VENV)/bin/lifelean -w workspaces/example run $(DATA) --split-by-dir 2
	$(VENV)/bin/lifelean -w workspaces/example report

clean:
	rm -rf $(VENV) .pytest_cache
