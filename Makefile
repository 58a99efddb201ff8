# deepicd: `make demo` runs the whole pipeline on a CPU; `make test` runs the test suite.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: setup test bench clean

setup: $(STAMP)

# torch==2.13.0 first, alone: that exact pin resolves to the CPU build; anything looser pulls CUDA wheels.
$(STAMP): pyproject.toml
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "deepicd needs Python >= 3.11"'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test]' torch==2.13.0
	touch $(STAMP)

test: setup
	$(PY) -m pytest -q

bench: setup
	$(PY) benchmarks/bench_rewards.py

clean:
	rm -rf $(VENV) runs/demo
