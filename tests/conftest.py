"""Test session setup: offline, quiet threads, shared model folders built once per session."""

from __future__ import annotations

import os
import re

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
# built once, and the modules that name one costly session fixture share a worker. (xdist's own
# `loadgroup` marks do nothing under pytest 9: they rewrite a node attribute pytest no longer reads.)
SHARED_SESSION_FIXTURES = {"ci_run": "ci-run", "vllm_tiny": "vllm-engine", "openai_server": "vllm-engine"}
# ...except test_slurm.py: it waits ~10 min on the SLURM queue, so it builds its own ci run on the
# other worker rather than queue behind the ci run's other readers (the long pole of the suite)
OWN_SCOPE = {"tests/workflow/test_slurm.py"}


def pytest_xdist_make_scheduler(config, log):
    from functools import lru_cache

    from xdist.scheduler import LoadScopeScheduling

    @lru_cache(maxsize=None)
    def group(module: str) -> str:
        if module in OWN_SCOPE:
            return module
        source = (config.rootpath / module).read_text()
        return next((g for f, g in SHARED_SESSION_FIXTURES.items() if re.search(rf"\b{f}\b", source)), module)

    class ByModuleAndSharedFixture(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return group(nodeid.split("::")[0])

    return ByModuleAndSharedFixture(config, log)
