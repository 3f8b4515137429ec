# The two entry points: `make demo` (the pipeline on the embedded demo) and `make test`.
# Both create .venv from constraints.txt when it is missing.
PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
export PATH := $(BIN):$(PATH)
# Torch runs on the CPU here; keep YOLOv5 from looking for GPUs or going online.
export CUDA_VISIBLE_DEVICES :=
export YOLOv5_VERBOSE ?= True

.PHONY: venv demo test test-fast lint lock clean-venv

venv: $(VENV)/.installed

# pip byte-compiles what it installs (75 s of a 180 s install here): not to be skipped with --no-compile, because
# where PYTHONDONTWRITEBYTECODE is set (this machine, CI) every process would then compile torch from source again.
$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "pip==25.3"
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	touch $@

demo: venv
	dvc repro
	dvc metrics show

test: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lightweight dag
	$(BIN)/python -m pytest

test-fast: venv
	$(BIN)/python -m pytest -m "not slow"

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

lock: venv
	{ head -2 constraints.txt; $(BIN)/python -m pip freeze --exclude-editable | grep -v "^pip=="; \
	  echo "setuptools==$$($(BIN)/python -c 'import setuptools; print(setuptools.__version__)')"; } > constraints.new
	mv constraints.new constraints.txt

clean-venv:
	rm -rf $(VENV)
