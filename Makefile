# deepicd: `make demo` runs the whole pipeline on a CPU; `make test` runs the test suite.
SHELL  := /bin/bash
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: setup test demo bench clean lock-gpu gpu-check gpu-check-tiny

setup: $(STAMP)

# pip, quiet, without the warnings some mirrors print for every package they do not carry.
PIP := set -o pipefail; $(PY) -m pip install -q --disable-pip-version-check
QUIET := 2>&1 | { grep -v '^WARNING: Location' || true; }

# torch==2.13.0 first, alone: that exact pin resolves to the CPU build; anything looser pulls CUDA wheels.
$(STAMP): pyproject.toml
	$(PYTHON) -c 'import sys; assert (3, 11) <= sys.version_info < (3, 13), "deepicd needs Python 3.11 or 3.12"'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) torch==2.13.0 $(QUIET)
	$(PIP) -e '.[test]' torch==2.13.0 $(QUIET)
	touch $(STAMP)

test: setup
	$(PY) -m pytest -q

# The whole pipeline on this CPU, from synthetic MIMIC-IV to a Table-3 report under runs/demo/.
demo: setup
	$(PY) -m deepicd.demo

# CPU benchmarks; results and the machine they ran on are recorded in docs/benchmarks.md.
bench: setup
	$(PY) benchmarks/bench_rewards.py
	$(PY) benchmarks/bench_judge.py --requests 512 --concurrency 32 --delay 0.2
	$(PY) benchmarks/bench_preprocess.py --admissions 30000 --repeat 3
	$(PY) benchmarks/bench_evaluate.py --rows 1000000
	$(PY) benchmarks/bench_generate.py

# Resolve the `gpu` extra for a CUDA node into requirements/ (minutes; needs the index). tests/launch checks it.
lock-gpu: setup
	$(PY) scripts/lock_gpu.py

# The GPU figures in one run (docs/benchmarks.md). On the GPU machine, without the venv; output in $OUT or ./gpu-check.
gpu-check:
	$(PYTHON) benchmarks/gpu_check.py

# The same script end to end on this CPU at tiny sizes (about half a minute).
gpu-check-tiny: setup
	$(PY) benchmarks/gpu_check.py --tiny --out runs/gpu-check-tiny

clean:
	rm -rf $(VENV) runs/demo
