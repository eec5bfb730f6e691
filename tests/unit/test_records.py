"""The run-folder contract (tipping.records): records match their declared types, and every reader
of run folders refuses an incomplete or unreadable one with the same one-line error."""

import json
import shutil

import pytest

from tipping import paths
from tipping.cli import main
from tipping.records import MultiTurn, RunFolder, SingleTurn

SINGLE = ["run", "single", "--items", "single-test", "--limit", "2", "--rounds", "2", "--policy", "scripted:comply"]
MULTI = [
    "run",
    "multi",
    "--scenarios",
    "multi-games",
    "--limit",
    "1",
    "--agents",
    "3",
    "--thresholds",
    "2",
    "--confederates",
    "1",
    "--rounds",
    "2",
    "--policy",
    "scripted:collude:1",
]
POPULATION = [
    "run",
    "population",
    "--scenarios",
    "multi-games",
    "--limit",
    "1",
    "--threshold-fractions",
    "0.5",
    "--agents",
    "6",
    "--network",
    "ring:k=2",
    "--confederates",
    "1",
    "--rounds",
    "2",
    "--policy",
    "scripted:comply",
]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """One finished run folder per testbed (tests copy them before breaking them)."""
    root = tmp_path_factory.mktemp("runs")
    for name, args in (("single", SINGLE), ("multi", MULTI), ("population", POPULATION)):
        assert main([*args, "--out", str(root / name), "--cache-dir", str(root / "cache"), "--no-progress"]) == 0
    return root


@pytest.mark.parametrize("testbed,typed", [("single", SingleTurn), ("multi", MultiTurn), ("population", MultiTurn)])
def test_records_hold_exactly_their_declared_fields(finished, testbed, typed):
    run = RunFolder(finished / testbed)
    assert run.config["testbed"] == testbed and run.records
    declared = typed.__required_keys__ | typed.__optional_keys__
    assert typed.__optional_keys__ == {"policy", "decision", "sampling"}  # the rollout engine adds them
    for record in run.records:
        assert set(record) == declared


def test_a_run_folder_holds_exactly_the_declared_files(finished):
    for testbed in ("single", "multi", "population"):
        names = sorted(p.name for p in (finished / testbed).iterdir())
        extra = [paths.EDGE_LIST] if testbed == "population" else []
        assert names == sorted([*paths.RUN_FILES, *extra]), testbed


# every reader of run folders: (name, the testbed of the run it reads, folder -> command line)
READERS = [
    ("tables", "single", lambda run, out: ["tables", str(run), "--out", str(out)]),
    ("tables-population", "population", lambda run, out: ["tables", str(run), "--out", str(out)]),
    ("compare", "single", lambda run, out: ["compare", str(run), str(run), "--out", str(out)]),
    ("export", "single", lambda run, out: ["export", "inspect", str(run), "--out", str(out)]),
    ("evolve-score", "single", lambda run, out: ["evolve", "score", "--run", str(run), "--out", str(out / "s.jsonl")]),
    ("population-report", "population", lambda run, out: ["population", "report", str(run), "--out", str(out)]),
]
NEEDS_CONFIG = [r for r in READERS if r[0] != "evolve-score"]  # scoring reads the records and prompts only


def refused(finished, tmp_path, capsys, testbed, command, breaks) -> tuple[str, str]:
    run = tmp_path / "run"
    shutil.copytree(finished / testbed, run)
    breaks(run)
    capsys.readouterr()
    assert main(command(run, tmp_path / "out")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and not (tmp_path / "out").exists()
    return err, str(run)


@pytest.mark.parametrize("testbed,command", [r[1:] for r in READERS], ids=[r[0] for r in READERS])
def test_every_reader_names_the_missing_file_and_the_folder(finished, tmp_path, capsys, testbed, command):
    err, run = refused(finished, tmp_path, capsys, testbed, command, lambda run: (run / paths.RECORDS_JSONL).unlink())
    assert f"{run}/records.jsonl: not found; is {run} a finished `tipping run` folder?" in err


@pytest.mark.parametrize("testbed,command", [r[1:] for r in NEEDS_CONFIG], ids=[r[0] for r in NEEDS_CONFIG])
def test_every_reader_refuses_an_unfinished_run(finished, tmp_path, capsys, testbed, command):
    err, run = refused(finished, tmp_path, capsys, testbed, command, lambda run: (run / paths.METRICS_JSON).unlink())
    assert f"{run}/metrics.json: not found; is {run} a finished `tipping run` folder?" in err


@pytest.mark.parametrize("text", ["{", json.dumps({"config": {}}), "[]"], ids=["invalid-json", "no-testbed", "list"])
@pytest.mark.parametrize("testbed,command", [r[1:] for r in NEEDS_CONFIG], ids=[r[0] for r in NEEDS_CONFIG])
def test_every_reader_refuses_an_unreadable_run_json(finished, tmp_path, capsys, testbed, command, text):
    err, run = refused(
        finished, tmp_path, capsys, testbed, command, lambda run: (run / paths.RUN_JSON).write_text(text)
    )
    assert f"{run}/run.json: unreadable run output (" in err


@pytest.mark.parametrize(
    "command", [r[2] for r in READERS if r[1] == "population"], ids=[r[0] for r in READERS if r[1] == "population"]
)
def test_a_population_run_without_its_graph_is_refused(finished, tmp_path, capsys, command):
    err, run = refused(finished, tmp_path, capsys, "population", command, lambda run: (run / paths.EDGE_LIST).unlink())
    assert f"{run}/network.edgelist: not found; is {run} a finished `tipping run population` folder?" in err
