# powerrl — every target creates .venv and installs what it needs on a fresh machine.
# TORCH_SPEC pins the CPU build of PyTorch so that pip never pulls a multi-GB CUDA build;
# override it (e.g. `make test TORCH_SPEC='torch==2.5.1'`) where another build is available.
PYTHON     ?= $(shell command -v python3.11 || command -v python3)
VENV       ?= .venv
TORCH_SPEC ?= torch==2.13.0
PY         := $(VENV)/bin/python
PIP        := $(PY) -m pip
STAMP      := $(VENV)/.powerrl-installed
DEMO_OUT   ?= out/demo

.PHONY: install build demo test test-all test-debug bench lint docs tune policies clean

$(PY):
	@test -n "$(PYTHON)" || { echo "error: no python3.11 or python3 on PATH; install Python >= 3.11 or pass PYTHON=/path/to/python"; exit 1; }
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "error: $(PYTHON) does not run or is older than Python 3.11; pass PYTHON=/path/to/python3.11"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

$(STAMP): $(PY) pyproject.toml setup.py
	$(PIP) install --quiet "$(TORCH_SPEC)"
	$(PIP) install --quiet "Cython>=3.0" "numpy>=1.26" "setuptools>=77" wheel
	$(PIP) install --quiet --no-build-isolation -e ".[train,agent,coordinator,dev]"
	@touch $(STAMP)

install: $(STAMP)

# Rebuild the Cython core in place (cheap when nothing changed). POWERRL_DEBUG=1 gives bounds checks.
build: $(STAMP)
	$(PY) setup.py --quiet build_ext --inplace

# The main job: trained policies (when shipped) vs the tuned baselines vs the oracle on held-out day 22.
demo: build
	$(VENV)/bin/powerrl compare --out $(DEMO_OUT)

test: build
	$(PY) -m pytest -q

test-all: build
	$(PY) -m pytest -q -m ""

# The native-core tests against a bounds-checked build (-O0 -g, Cython boundscheck/wraparound), then
# the optimised build again.
test-debug: $(STAMP)
	POWERRL_DEBUG=1 $(PY) setup.py --quiet build_ext --inplace --force
	$(PY) -m pytest -q tests/_core tests/c tests/envs tests/hw tests/shield
	$(PY) setup.py --quiet build_ext --inplace --force

bench: build
	$(PY) benchmarks/run_all.py

lint: $(STAMP)
	$(VENV)/bin/ruff check powerrl tests benchmarks examples
	$(VENV)/bin/mypy powerrl

docs: build
	$(VENV)/bin/powerrl docs envs --out docs/envs.md

# Re-tune every baseline on training days (never the held-out ones) into the shipped parameter file
# that powerrl compare reads. Each entry records its own command; about 20 minutes on 2 cores.
TUNED_OUT ?= powerrl/data/baselines/tuned.yaml
TUNE       = $(VENV)/bin/powerrl tune-baseline --quiet --out $(TUNED_OUT)
NODE_TUNE  = --scenario nodedvfs-day22 --days 20 21 --seeds 1
CLUS_TUNE  = --scenario clusterbudget-day22 --days 20 21 --seeds 1
DC_TUNE    = --scenario datacenter-day22 --days 19 20 21 --seeds 2
tune: build
	for b in userspace ondemand conservative schedutil; do $(TUNE) $$b $(NODE_TUNE) || exit 1; done
	$(TUNE) step_wise $(NODE_TUNE) --grid governor=ondemand,conservative,schedutil --grid hyst_c=2
	$(TUNE) power_allocator $(NODE_TUNE) --grid governor=ondemand,conservative,schedutil
	for b in proportional priority_proportional dynamo; do $(TUNE) $$b $(CLUS_TUNE) || exit 1; done
	$(TUNE) efficiency $(CLUS_TUNE) --grid high_ratio=1.3 --grid boost_frac=0.15
	for b in no_deferral carbon_threshold carbon_forecast; do $(TUNE) $$b $(DC_TUNE) || exit 1; done

# Retrain and re-export the shipped policies (docs/training.md) into powerrl/data/policies; each run
# keeps its folder under runs/. About an hour on 2 cores (17, 39 and 6 minutes for the shipped runs).
POLICY_EXPERIMENTS ?= nodedvfs:nodedvfs-ppo clusterbudget:clusterbudget-ppo datacenter:datacenter-ppo-deferral
policies: build
	stamp=$$(date +%Y%m%d-%H%M%S); for pair in $(POLICY_EXPERIMENTS); do env=$${pair%%:*}; exp=$${pair#*:}; \
	  $(VENV)/bin/powerrl train $$exp --out runs/$$env-v0-$$stamp && \
	  $(VENV)/bin/powerrl export runs/$$env-v0-$$stamp --out powerrl/data/policies/$$env-v0.onnx || exit 1; done

clean:
	rm -rf build powerrl/_core/*.so powerrl/_core/*.c *.egg-info
