# Two commands do all the set-up on a fresh machine (README):
#   make reproduce   set up, then run the reproduction (paper profile with a CUDA GPU; without one
#                    it shows the store and the plan and trains nothing unless ARGS gives --profile)
#   make test        set up, then lint and run the whole test suite (notebooks included)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# torch is pinned for the set-up only (the package itself accepts torch >= 2.4): on Linux,
# torch==2.13.0 from PyPI is the CUDA build; on the project's CPU machines a local CPU build.
TORCH  ?= torch==2.13.0
# The shared datasets, only when that folder exists: a MMLREPRO_DATA_DIR that does not exist is
# an error (issue 15), and an empty one is never exported.
ifeq ($(strip $(MMLREPRO_DATA_DIR)),)
ifneq ($(wildcard ../shared/data/.),)
export MMLREPRO_DATA_DIR := $(abspath ../shared/data)
else
unexport MMLREPRO_DATA_DIR
endif
endif

.PHONY: setup test reproduce report notebooks lint clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check "$(TORCH)"
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[dev]"
	touch $@

setup: $(BIN)/.installed

lint: setup
	$(BIN)/ruff check .

test: setup lint
	TQDM_DISABLE=1 $(BIN)/python -m pytest -q -p no:cacheprovider tests
	# the committed notebooks, run by nbval on a copy of the tree's notebooks, store and figures
	# (their relative paths ../results and ../figures then point into the copy), so a test run
	# never writes into the committed store or figures
	rm -rf .nbval && mkdir -p .nbval/figures && cp -r notebooks results .nbval/
	cd .nbval && TQDM_DISABLE=1 ../$(BIN)/python -m pytest -q -p no:cacheprovider --nbval-lax notebooks
	rm -rf .nbval

reproduce: setup
	$(BIN)/mmlrepro reproduce $(ARGS)
	$(BIN)/mmlrepro report

report: setup
	$(BIN)/mmlrepro report

notebooks: setup
	$(BIN)/mmlrepro notebooks --profile $(or $(PROFILE),quick)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .nbval
