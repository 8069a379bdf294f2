# Every target creates .venv when missing. torch==2.13.0 is installed first (a CPU wheel on our
# machines) unless the venv already imports torch: any other torch spec may pull a multi-GB CUDA build.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.itpo-installed

.PHONY: setup demo test test-slow bench docs docs-check lint type format clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e ".[dev]"
	@touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(VENV)/bin/itpo demo

test: setup
	$(PY) -m pytest -q

test-slow: setup
	$(PY) -m pytest -q -m slow

bench: setup
	$(PY) -m pytest benchmarks -q -m "not slow" --benchmark-only --benchmark-json=benchmarks/results/latency.json
	$(PY) benchmarks/latency_table.py

# every generated doc regenerated in place from the committed JSON/CSV (benchmarks/regenerate_docs.py --list)
docs: setup
	$(PY) benchmarks/regenerate_docs.py

# every generated doc (docs/, model cards, behaviour cards, benchmark tables) regenerated into a temporary
# folder from the committed JSON/CSV and compared byte for byte; a failure names the command that regenerates it
docs-check: setup
	$(PY) -m pytest tests/test_docs_generated.py -q -m "slow or not slow"

lint: setup
	$(VENV)/bin/ruff check $(wildcard itpo_wrap itpo_lab policies tests benchmarks examples)

format: setup
	$(VENV)/bin/ruff format $(wildcard itpo_wrap itpo_lab policies tests benchmarks examples)

type: setup
	$(VENV)/bin/mypy itpo_wrap itpo_lab

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
