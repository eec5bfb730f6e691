"""The `upstream` fixture: without the paper's files, guarantee tests skip with the reason shown,
but fail under CI (CI=true) so that a CI run never passes with those guarantees unchecked."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures_upstream.py"


@pytest.fixture
def checkout(pytester):
    """A made-up checkout: repo/tests holds the fixture and one test that reads a paper file."""
    tests = pytester.mkdir("repo").joinpath("tests")
    tests.mkdir()
    shutil.copy(FIXTURE, tests / FIXTURE.name)
    (tests / "conftest.py").write_text('pytest_plugins = ["fixtures_upstream"]\n')
    (tests / "test_reads.py").write_text("def test_reads(upstream):\n    assert (upstream / 'x.json').is_file()\n")
    return pytester


def run(checkout, monkeypatch, ci: str | None):
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    return checkout.runpytest_subprocess("-rs", "-p", "no:cacheprovider", "repo/tests")


def test_missing_files_skip_with_the_reason_outside_ci(checkout, monkeypatch):
    for ci in (None, "false"):
        result = run(checkout, monkeypatch, ci)
        result.assert_outcomes(skipped=1)
        result.stdout.fnmatch_lines(["SKIPPED*the paper's data files are not at */shared/upstream-atp"])


def test_missing_files_fail_under_ci(checkout, monkeypatch):
    result = run(checkout, monkeypatch, "true")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "*the paper's data files are not at */shared/upstream-atp; under CI the tests "
            "that compare against them must run*"
        ]
    )


def test_present_files_are_used_under_ci(checkout, monkeypatch):
    data = checkout.path / "shared" / "upstream-atp"
    data.mkdir(parents=True)
    (data / "x.json").write_text("[]")
    run(checkout, monkeypatch, "true").assert_outcomes(passed=1)
