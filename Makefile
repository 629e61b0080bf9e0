# rappel — every target bootstraps its virtual environment when it is missing.
# durable-rules ships no wheels: building it needs gcc and the Python headers.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# durable-rules 2.0.28 calls PyEval_CallObject, removed in Python 3.13.
	CPPFLAGS="$$($(BIN)/python -c 'import sys; print("-DPyEval_CallObject=PyObject_CallObject" if sys.version_info >= (3, 13) else "")') $$CPPFLAGS" \
	  $(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/rappel demo

test: $(STAMP)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/rappel lint

bench: $(STAMP)
	$(BIN)/python benchmarks/daily_run.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
