"""Test session setup: offline, quiet threads, shared model folders and scripted runs built once per session."""

from __future__ import annotations

import functools
import os
import re

import pytest

# before torch is imported anywhere: spinning OpenMP threads make decoding 4-15x slower on 2 busy cores
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# model fixtures (tests/fixtures_models.py): tiny_model, smollm2_model, vllm_tiny, ...; the paper's data files
# (tests/fixtures_upstream.py): upstream; pytester runs pytest on a made-up test folder
pytest_plugins = ["fixtures_models", "fixtures_upstream", "pytester"]

# `make test` runs two pytest-xdist workers: the suite waits on subprocesses (snakemake, SLURM,
# vLLM servers) for over half its wall time. A module runs on one worker, so its module fixtures are
# built once, and the modules that name the vLLM engine share a worker (one engine per session). The
# CI run is shared across workers through a file lock (tests/workflow/conftest.py), so its readers
# spread. (xdist's own `loadgroup` marks do nothing under pytest 9: they rewrite a node attribute
# pytest no longer reads.)
SHARED_SESSION_FIXTURES = {"vllm_tiny": "vllm-engine", "openai_server": "vllm-engine"}
# The modules that wait longest start first, one per worker, so that no worker is left alone with a
# long one at the end (the scheduler keeps this collection order: see pytest_xdist_make_scheduler)
SLOW_FIRST = (
    "tests/workflow/test_slurm.py",
    "tests/workflow/test_ci_run.py",
    "tests/integration/test_vllm.py",
    "tests/workflow/test_dvc.py",
    "tests/workflow/test_rerun.py",
)


@pytest.fixture(scope="session")
def scripted_runs(tmp_path_factory):
    """The shared scripted run set and its tables folder (tests/scripted_runs.py), built once: a dict of
    runs (list, in build order), named (name -> folder), tables (folder), long_episode. Read only."""
    from scripted_runs import build_run_set

    return build_run_set(tmp_path_factory.mktemp("scripted-runs"))


def pytest_collection_modifyitems(config, items):
    rank = {module: i for i, module in enumerate(SLOW_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(SLOW_FIRST)))


def pytest_xdist_make_scheduler(config, log):

    from xdist.scheduler import LoadScopeScheduling

    @functools.cache
    def group(module: str) -> str:
        source = (config.rootpath / module).read_text()
        return next((g for f, g in SHARED_SESSION_FIXTURES.items() if re.search(rf"\b{f}\b", source)), module)

    class ByModuleAndSharedFixture(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return group(nodeid.split("::")[0])

    config.option.loadscopereorder = False  # xdist would order scopes by test count; ours: SLOW_FIRST
    return ByModuleAndSharedFixture(config, log)
