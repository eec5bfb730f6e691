"""Test session setup: offline, quiet threads, shared model folders built once per session."""

from __future__ import annotations

import os

# before torch is imported anywhere: spinning OpenMP threads make decoding 4-15x slower on 2 busy cores
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
UPSTREAM = ROOT.parent / "shared" / "upstream-atp"


@pytest.fixture(scope="session")
def upstream() -> Path:
    if not UPSTREAM.is_dir():
        pytest.skip(f"the paper's data files are not at {UPSTREAM}")
    return UPSTREAM


pytest_plugins = ["fixtures_models"]  # model fixtures (tests/fixtures_models.py): tiny_model, smollm2_model, vllm_tiny, ...
