# Two commands on a fresh machine (Python 3.11, pip and make):
#   make run    set everything up, generate the demo sources and run `etl run` on the embedded database
#   make test   set everything up and run the tests with coverage (80% enforced)

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PACKAGES := -e shared -e services/staging -e services/conformed -e services/semantic \
            -e services/samples -e services/pipeline -e domains/commerce
PYPROJECTS := shared/pyproject.toml $(wildcard services/*/pyproject.toml) $(wildcard domains/*/pyproject.toml)

.PHONY: install run test lint status clean-data

$(VENV)/.installed: constraints.txt requirements-dev.txt $(PYPROJECTS)
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] >= (3, 11), "Python 3.11+ is required"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -r requirements-dev.txt $(PACKAGES)
	touch $@

install: $(VENV)/.installed

run: install
	$(BIN)/etl-samples generate
	$(BIN)/etl run

status: install
	$(BIN)/etl status

test: install
	$(BIN)/pytest --cov --cov-report=term

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/sqlfluff lint shared/src/etl_shared/migrations domains/*/*/models tests/domains

clean-data:
	rm -rf .etl
