# medvqa: every target sets up .venv first, so `make train` / `make test` work on a fresh machine.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
# torch 2.14.1 + torchvision 0.29.1 are a matching pair that installs from local disk on the dev/CI
# machines; the 2.13.0 CPU build does not work with the torchvision on the index. Override if needed.
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
ARGS    ?=

.DEFAULT_GOAL := help
.PHONY: help install train test test-full bench lint format clean curriculum sweep report

help:  ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(TORCH_SPEC)
	$(BIN)/pip install -q -e ".[dev,sweep,slurm]"
	touch $@

# METEOR and the PTB tokenizer behind BLEU/ROUGE-L/CIDEr (pycocoevalcap) run on Java, which pip cannot
# install: on Debian/Ubuntu `apt-get install -y default-jre-headless` (.ci/run does it when java is missing).
# The HTML report's browser test drives Chromium (selenium comes with [dev]): `apt-get install -y chromium
# chromium-driver` (.ci/run does it when chromedriver is missing).
install: $(VENV)/.installed  ## create .venv and install medvqa with dev tools, sweep (Optuna, plots) and slurm extras

train: install  ## train the default (tiny Qwen2-VL + LoRA on synthetic data); ARGS="key=value ..."
	$(BIN)/python -m medvqa.run $(ARGS)

curriculum: install  ## exp4_curriculum: easy -> medium -> hard on synthetic data, each stage from the last adapter
	$(BIN)/python -m medvqa.run experiment=exp4_curriculum $(ARGS)

sweep: install  ## basic sweep over learning rate x seed (override with ARGS, e.g. ARGS="trainer.max_steps=50")
	$(BIN)/python -m medvqa.run -m stage.lr=5e-4,1e-3,2e-3 seed=1,2 $(ARGS)

report: install  ## gather a sweep into sweep.md + sweep.csv + sweep_<param>.png plots + report.html: make report DIR=multirun/<date>/<time>
	$(BIN)/python -m medvqa.report sweep $(or $(DIR),$$(ls -d multirun/*/* | tail -1))

test: install  ## fast test suite (CPU, < 10 min)
	$(BIN)/python -m pytest -q $(ARGS)

test-full: install  ## every test, slow end-to-end bars included
	$(BIN)/python -m pytest -q -m "not gpu" $(ARGS)

bench: install  ## SFT step/collation benchmark, JSON on stdout
	$(BIN)/python -m medvqa.bench sft $(ARGS)

lint: install  ## ruff check + format check
	$(BIN)/ruff check medvqa tests
	$(BIN)/ruff format --check medvqa tests

format: install  ## ruff fix + format
	$(BIN)/ruff check --fix medvqa tests
	$(BIN)/ruff format medvqa tests

clean:  ## remove run outputs and caches (keeps .venv)
	rm -rf outputs multirun .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
