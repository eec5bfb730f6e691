"""Test session setup: offline, quiet threads, shared model folders built once per session."""

from __future__ import annotations

import os

# before torch is imported anywhere: spinning OpenMP threads make decoding 4-15x slower on 2 busy cores
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# model fixtures (tests/fixtures_models.py): tiny_model, smollm2_model, vllm_tiny, ...; the paper's data files
# (tests/fixtures_upstream.py): upstream; pytester runs pytest on a made-up test folder
pytest_plugins = ["fixtures_models", "fixtures_upstream", "pytester"]
