# cxr-covid: two commands on a fresh machine.
#   make report   create .venv, install, run the main job (PROFILE=default|full|paper|smoke)
#   make test     create .venv if missing, run the unit tests and the notebooks (nbval)
PYTHON ?= python3.11
PROFILE ?= default
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: report test env lab clean-outputs

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip setuptools wheel
	$(PY) -m pip install --quiet -e .
	$(PY) -m ipykernel install --sys-prefix --name cxr-covid --display-name "Python (cxr-covid)" --env TF_CPP_MIN_LOG_LEVEL 2
	@touch $(STAMP)

env: $(STAMP)

report: $(STAMP)
	$(PY) -m cxr_utils weights provision xception || echo "Xception weights not provisioned: its runs will be reported as not run"
	$(PY) -m cxr_utils pipeline --profile $(PROFILE)

test: $(STAMP)
	CXR_OFFLINE=1 $(VENV)/bin/pytest --nbval tests notebooks

lab: $(STAMP)
	$(VENV)/bin/jupyter lab notebooks/

clean-outputs:
	rm -rf outputs/
