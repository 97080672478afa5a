# cxr-covid: two commands on a fresh machine.
#   make report   create .venv, install, run the main job (PROFILE=default|full|paper|smoke;
#                 WORKERS=N runs each stage's runs on N local Dask workers)
#   make test     create .venv if missing, lint, run the unit tests and the notebooks (nbval)
#   make course   the main job at the `course` profile (5-7 min on 2 cores) into outputs/course/,
#                 its report in outputs/course/report/ (the committed report/ is left alone)
#   make lint     ruff (lint + format check) over the package, tests, benchmarks and notebooks;
#                 lint-imports (the package's layers, pyproject.toml)
#   make student  write student/: the notebooks without solutions or hidden tests (otter assign),
#                 and each notebook's autograder, the instructor's key, into outputs/grading/
#   make grade NB="student/02_custom_cnn.ipynb ..."  grade filled-in student notebooks: points per exercise
#   make book     the course website (Jupyter Book) from the latest build's executed notebooks
#                 (OUT=outputs/course for the course build); lands in OUT/book/_build/html
PYTHON ?= python3.11
PROFILE ?= default
WORKERS ?=
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: report course book test lint format env lab student grade browser clean-outputs

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip setuptools wheel
	$(PY) -m pip install --quiet -e '.[dev,book]'
	$(PY) -m ipykernel install --sys-prefix --name cxr-covid --display-name "Python (cxr-covid)" --env TF_CPP_MIN_LOG_LEVEL 2
	@touch $(STAMP)

env: $(STAMP)

report: $(STAMP) browser
	$(PY) -m cxr_utils pipeline --profile $(PROFILE)$(if $(WORKERS), --executor dask --workers $(WORKERS))

COURSE_OUT := outputs/course

course: $(STAMP) browser
	$(PY) -m cxr_utils pipeline --profile course --out $(COURSE_OUT)$(if $(WORKERS), --executor dask --workers $(WORKERS))

# the course website from the executed notebooks of the build in OUT (default outputs/): OUT/book/_build/html
OUT ?=

book: $(STAMP)
	$(PY) -m cxr_utils book$(if $(OUT), --out-root $(OUT))

test: lint browser
	CXR_OFFLINE=1 $(VENV)/bin/pytest --nbval tests notebooks

LINTED := cxr_utils tests benchmarks notebooks

lint: $(STAMP)
	$(VENV)/bin/ruff check $(LINTED)
	$(VENV)/bin/ruff format --check $(LINTED)
	$(VENV)/bin/lint-imports

format: $(STAMP)
	$(VENV)/bin/ruff check --fix $(LINTED)
	$(VENV)/bin/ruff format $(LINTED)

# Debian's Chromium prints report.pdf and renders the report in the tests; poppler-utils (pdftotext,
# pdfinfo) reads the PDF back in the tests. Where they cannot be installed, the PDF is not printed
# and those tests skip, each saying so.
browser:
	@{ command -v chromium && command -v pdftotext; } >/dev/null 2>&1 || { (apt-get update -qq && \
		apt-get install -y -qq chromium poppler-utils) >/dev/null 2>&1 \
		|| echo "note: chromium/poppler-utils could not be installed: no report.pdf, render tests skipped"; }

# The student edition and the autograders (otter-grader; see cxr_utils/course.py and COURSE.md section 4).
student: $(STAMP)
	$(PY) -m cxr_utils course student --dest student

NB ?=

grade: $(STAMP)
	@test -n "$(NB)" || { echo 'usage: make grade NB="student/02_custom_cnn.ipynb ..."'; exit 2; }
	TF_CPP_MIN_LOG_LEVEL=2 $(PY) -m cxr_utils course grade $(NB)

lab: $(STAMP)
	$(VENV)/bin/jupyter lab notebooks/

clean-outputs:
	rm -rf outputs/
