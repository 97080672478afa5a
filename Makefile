# cxr-covid: two commands on a fresh machine.
#   make report   create .venv, install, run the main job (PROFILE=default|full|paper|smoke;
#                 WORKERS=N runs each stage's runs on N local Dask workers)
#   make test     create .venv if missing, lint, run the unit tests and the notebooks (nbval)
#   make lint     ruff (lint + format check) over the package, tests, benchmarks and notebooks
PYTHON ?= python3.11
PROFILE ?= default
WORKERS ?=
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: report test lint format env lab chromium clean-outputs

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip setuptools wheel
	$(PY) -m pip install --quiet -e .
	$(PY) -m ipykernel install --sys-prefix --name cxr-covid --display-name "Python (cxr-covid)" --env TF_CPP_MIN_LOG_LEVEL 2
	@touch $(STAMP)

env: $(STAMP)

report: $(STAMP)
	$(PY) -m cxr_utils pipeline --profile $(PROFILE)$(if $(WORKERS), --executor dask --workers $(WORKERS))

test: lint chromium
	CXR_OFFLINE=1 $(VENV)/bin/pytest --nbval tests notebooks

LINTED := cxr_utils tests benchmarks notebooks

lint: $(STAMP)
	$(VENV)/bin/ruff check $(LINTED)
	$(VENV)/bin/ruff format --check $(LINTED)

format: $(STAMP)
	$(VENV)/bin/ruff check --fix $(LINTED)
	$(VENV)/bin/ruff format $(LINTED)

# Debian's Chromium renders the report in the tests; where it cannot be installed they skip and say so.
chromium:
	@command -v chromium >/dev/null 2>&1 || { (apt-get update -qq && apt-get install -y -qq chromium) >/dev/null 2>&1 \
		|| echo "note: chromium could not be installed; the report render tests will be skipped"; }

lab: $(STAMP)
	$(VENV)/bin/jupyter lab notebooks/

clean-outputs:
	rm -rf outputs/
