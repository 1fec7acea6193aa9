# make demo: the main job: set up .venv with the pinned runtime dependencies, train a character LSTM
#            on Tiny Shakespeare for about three minutes, compare it with the baselines, sample from it
# make test: every test (set up .venv with the pinned test dependencies too, then ruff and pytest)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test gradcheck clean

DEMO_RUN := runs/demo

demo: $(VENV)/.installed
	rm -rf $(DEMO_RUN)
	$(BIN)/bptt train $(DEMO_RUN) --max-time 180 --eval-every 250
	$(BIN)/bptt sample $(DEMO_RUN) --tokens 700 --temperature 0.8 --seed 1

gradcheck: $(VENV)/.installed-test
	$(BIN)/bptt gradcheck

test: $(VENV)/.installed-test
	$(BIN)/ruff check src tests benchmarks experiments
	$(BIN)/python -m pytest -n 2 -q

# --no-compile: pip would byte-compile every file it installs (torch's thousands: about 20 s here);
# Python compiles the modules that are imported, when they are
$(VENV)/.installed: requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --no-compile -r requirements.txt
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed requirements-test.txt
	$(BIN)/python -m pip install -q --no-compile -r requirements-test.txt
	touch $@

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache .hypothesis runs
