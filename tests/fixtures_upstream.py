"""The paper's data files (../shared/upstream-atp next to the repository), for the guarantee tests
that compare against them. Missing files skip those tests with the reason shown, except under CI
(env CI=true, set by .ci/run), where a missing guarantee must fail the run instead of passing silently."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

UPSTREAM = Path(__file__).resolve().parents[1].parent / "shared" / "upstream-atp"


@pytest.fixture(scope="session")
def upstream() -> Path:
    if not UPSTREAM.is_dir():
        reason = f"the paper's data files are not at {UPSTREAM}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason}; under CI the tests that compare against them must run", pytrace=False)
        pytest.skip(reason)
    return UPSTREAM
