# vireid: two commands do everything on a fresh machine.
#   make demo   set up .venv and run the main job on built-in synthetic data
#   make test   set up .venv and run the test suite
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DEMO_DIR ?= out/demo

.PHONY: venv demo test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(PY) -m vireid demo --out $(DEMO_DIR)

# one worker per CPU (torch runs one thread in each: tests/conftest.py); an idle worker takes tests from a
# busy one (a module's fixtures may then be built on both: still the shortest wall time, measured)
test: $(STAMP)
	$(PY) -m pytest -q -n auto --dist worksteal

lint: $(STAMP)
	$(VENV)/bin/ruff check vireid tests bench

bench: $(STAMP)
	$(PY) bench/eval_speed.py

clean:
	rm -rf $(VENV) out .pytest_cache
