# medvqa: every target sets up .venv first, so `make train` / `make test` work on a fresh machine.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
# torch 2.14.1 + torchvision 0.29.1 are a matching pair that installs from local disk on the dev/CI
# machines; the 2.13.0 CPU build does not work with the torchvision on the index. Override if needed.
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
ARGS    ?=

.DEFAULT_GOAL := help

.PHONY: system-deps help install train test test-full test-slurm slurm-up slurm-down bench lint format clean curriculum sweep report app gpu-wheelhouse

help:  ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(TORCH_SPEC)
	$(BIN)/pip install -q -e ".[dev,sweep,slurm,dicom-gpl]"
	$(BIN)/pip install -q --no-deps "lmms-eval==0.7.3"  # its SLAKE scorer, for the lmms_eval protocol test (pyproject [dev])
	touch $@

# System parts pip cannot install: Java for METEOR and the PTB tokenizer behind BLEU/ROUGE-L/CIDEr
# (pycocoevalcap), Chromium + its driver for the HTML report's browser test. Installed with apt-get when
# missing and this is root on Debian/Ubuntu; otherwise the line to run is printed (and the metric or test
# that needs the part says so itself, never silently).
SYSTEM_PARTS := java:default-jre-headless chromedriver:chromium chromedriver:chromium-driver
system-deps:  ## install Java (METEOR) and Chromium (report browser test) with apt-get when missing
	@missing=""; for part in $(SYSTEM_PARTS); do command -v $${part%%:*} >/dev/null || missing="$$missing $${part#*:}"; done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then apt-get update -qq && apt-get install -y -qq $$missing; \
	else echo "medvqa needs system packages:$$missing (as root: apt-get install -y$$missing)"; fi

install: $(VENV)/.installed system-deps  ## create .venv, install medvqa with dev tools, sweep (Optuna, plots) and slurm extras, and the system parts

train: install  ## train the default (tiny Qwen2-VL + LoRA on synthetic data); ARGS="key=value ..."
	$(BIN)/python -m medvqa.run $(ARGS)

curriculum: install  ## exp4_curriculum: easy -> medium -> hard on synthetic data, each stage from the last adapter
	$(BIN)/python -m medvqa.run experiment=exp4_curriculum $(ARGS)

sweep: install  ## basic sweep over learning rate x seed (override with ARGS, e.g. ARGS="trainer.max_steps=50")
	$(BIN)/python -m medvqa.run -m stage.lr=5e-4,1e-3,2e-3 seed=1,2 $(ARGS)

report: install  ## gather a sweep into sweep.md + sweep.csv + sweep_<param>.png plots + report.html: make report DIR=multirun/<date>/<time>
	$(BIN)/python -m medvqa.report sweep $(or $(DIR),$$(ls -d multirun/*/* | tail -1))

# the newest finished run under outputs/ (a folder with adapter/ and config.yaml); the app's own start
# writes nothing there, so it never picks itself
LATEST_RUN = $$(ls -td outputs/*/*/ 2>/dev/null | while read d; do [ -f "$$d/config.yaml" ] && [ -d "$$d/adapter" ] && echo "$$d" && break; done)
app: install  ## the guarded Gradio app on 127.0.0.1:7860 with the latest run (trains the default first if none); ARGS="guard=research ..."
	@run=$(LATEST_RUN); if [ -z "$$run" ]; then echo "no finished run under outputs/: training the default first"; \
	  $(BIN)/python -m medvqa.run && run=$(LATEST_RUN); fi; \
	echo "python -m medvqa.app run=$$run $(ARGS)"; $(BIN)/python -m medvqa.app run=$$run $(ARGS)

test: install  ## fast test suite (CPU, < 10 min)
	$(BIN)/python -m pytest -q $(ARGS)

test-full: install  ## every test, slow end-to-end bars included (the SLURM ones: make test-slurm)
	$(BIN)/python -m pytest -q -m "not gpu and not slurm" $(ARGS)

# A private one-node SLURM cluster (scripts/slurm_test_cluster.sh): slurm-wlm + munge installed with apt-get
# when missing, config and state under SLURM_TEST_DIR, never /etc/slurm; root starts the daemons.
SLURM_TEST_DIR ?= /tmp/medvqa-slurm
slurm-up:  ## start the one-node test cluster (root); prints the export SLURM_CONF=... line to use it
	@SLURM_TEST_DIR=$(SLURM_TEST_DIR) scripts/slurm_test_cluster.sh up

slurm-down:  ## stop the daemons slurm-up started (by their PIDs)
	@SLURM_TEST_DIR=$(SLURM_TEST_DIR) scripts/slurm_test_cluster.sh down

test-slurm: install  ## SLURM tests on the test cluster they start and stop (root): sweeps, chains, requeue, DDP under srun
	$(BIN)/python -m pytest -q -m slurm tests/test_slurm_cluster.py $(ARGS)

bench: install  ## SFT step/collation benchmark, JSON on stdout
	$(BIN)/python -m medvqa.bench sft $(ARGS)

lint: install  ## ruff check + format check
	$(BIN)/ruff check medvqa tests
	$(BIN)/ruff format --check medvqa tests

format: install  ## ruff fix + format
	$(BIN)/ruff check --fix medvqa tests
	$(BIN)/ruff format medvqa tests

# The device machine's Python (3.12, torch, transformers, peft, lightning; no registry) lacks these; they go
# into .whl/ (git-ignored, well under the device tool's 64 MiB carry limit) at this venv's versions, and
# experiments/gpu_bench/run.sh installs them offline. pydantic-core, simsimd and stringzilla (albumentations'
# dependencies) are compiled: their cp312 manylinux wheels. bitsandbytes (QLoRA) is too large to carry.
GPU_WHEELS := hydra-core==1.3.8 omegaconf==2.3.1 torchao==0.18.0 albumentations==2.0.8 albucore==0.0.24 \
	pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5 simsimd==6.5.16 \
	stringzilla==5.3.2
gpu-wheelhouse:  ## download the wheels the GPU machine lacks into .whl/ (for experiments/gpu_bench/run.sh)
	$(PY) -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
	  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
	  -d .whl $(GPU_WHEELS)
	$(PY) -m pip wheel -q --no-deps -w .whl antlr4-python3-runtime==4.9.3  # published as an sdist only
	@du -sh .whl

clean:  ## remove run outputs and caches (keeps .venv)
	rm -rf outputs multirun .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
