"""The CLI contract: the issue's must-show runs, compare, reruns, and one-line input errors."""

import json
import subprocess
import sys

import pytest
from statsmodels.stats.contingency_tables import mcnemar

from tipping import paths
from tipping.cli import main
from tipping.metrics import clustered_mcnemar, newcombe_paired
from tipping.outputs import output_lock


def metrics(folder):
    return json.loads((folder / "metrics.json").read_text())


def run(args, capsys=None):
    code = main([*args, "--no-progress"] if args[0] == "run" else args)
    return code


def test_single_flip_at_4_on_the_papers_64_items(upstream, tmp_path):
    out = tmp_path / "s"
    assert (
        run(
            [
                "run",
                "single",
                "--items",
                str(upstream / "sa/question_64.json"),
                "--policy",
                "scripted:flip@4",
                "--rounds",
                "6",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    m = metrics(out)
    assert m["rounds"] == [1, 2, 3, 4, 5, 6]
    assert m["violation_rate"] == [0, 0, 0, 1, 1, 1]
    assert m["n"] == [64] * 6 and m["invalid_rate"] == [0] * 6
    assert m["tipping_round"] == 4
    assert len((out / "records.jsonl").read_text().splitlines()) == 64 * 6


def test_multi_one_colluder_in_every_cell(upstream, tmp_path):
    out = tmp_path / "m"
    assert (
        run(
            [
                "run",
                "multi",
                "--scenarios",
                str(upstream / "ma/templates.json"),
                "--policy",
                "scripted:collude:1",
                "--agents",
                "8",
                "--rounds",
                "3",
                "--thresholds",
                "2,4,6,8",
                "--reward-sets",
                "1.2,1.0,0.8",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    cells = metrics(out)["cells"]
    assert [c["threshold"] for c in cells] == [2, 4, 6, 8]
    for c in cells:
        assert c["rewards"] == [1.2, 1.0, 0.8]
        assert c["collusion_rate"] == [0.125, 0.125, 0.125]
        assert c["n"] == [56, 56, 56]


def test_library_splits_run_and_rerun_is_free_and_identical(tmp_path):
    args = ["run", "single", "--items", "single-test", "--policy", "scripted:flip@2", "--rounds", "3", "--out"]
    assert run([*args, str(tmp_path / "a")]) == 0
    first = (tmp_path / "a/records.jsonl").read_bytes()
    assert run([*args, str(tmp_path / "a")]) == 0
    stats = json.loads((tmp_path / "a/run.json").read_text())["stats"]
    assert stats["model_calls"] == 0 and stats["cache_hits"] == 64 * 3
    assert (tmp_path / "a/records.jsonl").read_bytes() == first
    assert run([*args, str(tmp_path / "b")]) == 0  # a fresh folder: same seed, same records
    assert (tmp_path / "b/records.jsonl").read_bytes() == first


def rewrite_records(folder, change):
    """Edit a finished run's records.jsonl in place (a scripted policy ignores feedback, so a
    control that behaves differently is made by hand)."""
    lines = [json.loads(x) for x in (folder / "records.jsonl").read_text().splitlines()]
    (folder / "records.jsonl").write_text("".join(json.dumps(change(r)) + "\n" for r in lines))


def effect(treatment, control, out):
    assert main(["compare", str(treatment), str(control), "--out", str(out)]) == 0
    return json.loads((out / "effect.json").read_text())


def test_compare_is_paired_per_round_with_newcombe_and_mcnemar(tmp_path):
    base = ["run", "single", "--items", "single-test", "--rounds", "4", "--policy", "scripted:flip@3"]
    assert run([*base, "--out", str(tmp_path / "t")]) == 0
    assert run([*base, "--feedback", "none", "--out", str(tmp_path / "c")]) == 0  # feedback may differ
    rewrite_records(tmp_path / "c", lambda r: {**r, "deviant": r["round"] == 4 and r["item"].endswith("-00")})
    got = effect(tmp_path / "t", tmp_path / "c", tmp_path / "e")
    assert "Newcombe RG (1998)" in got["methods"]["newcombe_paired"] and "mcnemar" in got["methods"]
    rounds = got["rounds"]
    assert [r["difference"] for r in rounds][:3] == [0, 0, 1]
    for r in rounds:
        assert r["interval"] == "newcombe_paired" and r["test"] == "mcnemar" and r["n_pairs"] == 64
    round4 = rounds[3]  # treatment deviates on all 64 items, control on the first item of each job
    k = round(round4["control_rate"] * 64)
    assert 0 < k < 64 and round4["difference"] == pytest.approx(1 - k / 64)
    assert (round4["ci_low"], round4["ci_high"]) == pytest.approx(newcombe_paired(k, 64 - k, 0, 0))
    assert round4["p_value"] == pytest.approx(mcnemar([[k, 64 - k], [0, 0]], exact=64 - k < 25).pvalue)
    assert rounds[2]["ci_low"] > 0.9 and rounds[2]["p_value"] < 1e-10


def test_compare_a_run_with_itself_gives_zero_differences(tmp_path):
    assert (
        run(
            [
                "run",
                "single",
                "--items",
                "single-test",
                "--rounds",
                "3",
                "--policy",
                "scripted:flip@2",
                "--out",
                str(tmp_path / "s"),
            ]
        )
        == 0
    )
    for r in effect(tmp_path / "s", tmp_path / "s", tmp_path / "e")["rounds"]:
        assert r["difference"] == 0 and r["p_value"] == 1 and r["ci_low"] <= 0 <= r["ci_high"]
        assert r["ci_high"] - r["ci_low"] < 0.12  # all 64 pairs agree: narrower than the unpaired interval
    assert (
        run(
            [
                "run",
                "multi",
                "--scenarios",
                "multi-games",
                "--rounds",
                "2",
                "--thresholds",
                "2,4",
                "--policy",
                "scripted:collude:3",
                "--out",
                str(tmp_path / "m"),
            ]
        )
        == 0
    )
    got = effect(tmp_path / "m", tmp_path / "m", tmp_path / "f")
    for r in [r for c in got["cells"] for r in c["rounds"]] + got["pooled"]:
        assert (r["difference"], r["ci_low"], r["ci_high"], r["p_value"]) == (0, 0, 0, 1)  # degenerate: identical
        assert r["interval"] == "cluster_bootstrap"


def test_multi_compare_bootstraps_episodes(tmp_path):
    base = [
        "run",
        "multi",
        "--scenarios",
        "multi-games",
        "--rounds",
        "2",
        "--thresholds",
        "2,4",
        "--policy",
        "scripted:collude:4",
    ]
    assert run([*base, "--out", str(tmp_path / "t")]) == 0
    assert run([*base, "--out", str(tmp_path / "c")]) == 0
    rewrite_records(tmp_path / "c", lambda r: {**r, "deviant": r["agent"] < 1})  # control: one colluder
    got = effect(tmp_path / "t", tmp_path / "c", tmp_path / "e")
    assert [c["threshold"] for c in got["cells"]] == [2, 4]
    for r in [r for c in got["cells"] for r in c["rounds"]]:
        assert r["difference"] == pytest.approx(3 / 8) and r["n_pairs"] == 56 and r["n_clusters"] == 7
        assert r["interval"] == "cluster_bootstrap" and r["test"] == "clustered_mcnemar"
        assert r["p_value"] == pytest.approx(clustered_mcnemar([3] * 7, [0] * 7))
    assert all(r["n_clusters"] == 14 for r in got["pooled"])


SINGLE8 = ["run", "single", "--items", "single-test", "--rounds", "2", "--limit", "8", "--policy", "scripted:comply"]


@pytest.mark.parametrize(
    "change,field",
    [
        (["--items", "single-train"], "items"),
        (["--limit", "4"], "n_items"),
        (["--seed", "1"], "seed"),
        (["--rounds", "3"], "rounds"),
        (["--window", "1"], "window"),
        (["--policy", "scripted:violate"], "policy"),
    ],
)
def test_compare_refuses_runs_that_do_not_pair(change, field, tmp_path, capsys):
    assert run([*SINGLE8, "--out", str(tmp_path / "t")]) == 0
    assert run([*SINGLE8, *change, "--out", str(tmp_path / "c")]) == 0
    assert main(["compare", str(tmp_path / "t"), str(tmp_path / "c"), "--out", str(tmp_path / "e")]) == 2
    err = capsys.readouterr().err
    assert f"compare: treatment and control differ in {field} (" in err and "a paired effect needs" in err
    assert err.count("\n") == 1 and not (tmp_path / "e").exists()


BAD = [
    (
        ["run", "single", "--items", "single-test", "--policy", "scripted:comply", "--rounds", "0"],
        "--rounds must be >= 1",
    ),
    (
        ["run", "single", "--items", "single-test", "--policy", "scripted:comply", "--supervision", "sometimes"],
        "is not a pattern",
    ),
    (["run", "single", "--items", "no-such-split", "--policy", "scripted:comply"], "no-such-split"),
    (["run", "single", "--items", "single-test", "--policy", "gpt:x"], "expected BACKEND:TARGET"),
    (["run", "single", "--items", "single-test", "--policy", "scripted:sometimes"], "unknown script"),
    (["run", "single", "--items", "single-test", "--policy", "scripted:comply", "--window", "-1"], "--window"),
    (["run", "single", "--items", "single-test", "--policy", "scripted:comply", "--tag", "oops"], "KEY=VALUE"),
    (["run", "single", "--items", "single-test", "--policy", "scripted:comply", "--rounds", "two"], "invalid int"),
    (
        ["run", "multi", "--scenarios", "multi-games", "--policy", "scripted:comply", "--thresholds", "2,9"],
        "outside 1..8",
    ),
    (
        ["run", "multi", "--scenarios", "multi-games", "--policy", "scripted:comply", "--reward-sets", "1.2,1.0"],
        "three factors",
    ),
    (["run", "multi", "--scenarios", "single-test", "--policy", "scripted:comply"], "single-test"),
    (["run", "multi", "--scenarios", "multi-games", "--policy", "scripted:comply", "--agents", "1"], "--agents"),
    (
        ["run", "multi", "--scenarios", "multi-games", "--policy", "scripted:comply", "--confederates", "8"],
        "--confederates",
    ),
    (["run", "single", "--items", "single-test", "--policy", "openai:nohash"], "openai:BASE_URL#MODEL"),
]


@pytest.mark.parametrize("args,expected", BAD, ids=[" ".join(a[2:]) for a, _ in BAD])
def test_bad_values_give_one_line_and_exit_2(args, expected, tmp_path, capsys):
    assert main([*args, "--out", str(tmp_path / "o"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert expected in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "o" / "metrics.json").exists()


def finished(tmp_path, name):
    assert run([*SINGLE8, "--out", str(tmp_path / name)]) == 0
    return tmp_path / name


def unfinished(tmp_path):  # a run stopped before metrics.json, which is written last
    (finished(tmp_path, "c") / "metrics.json").unlink()
    return [finished(tmp_path, "t"), tmp_path / "c"]


def unreadable(tmp_path):
    (finished(tmp_path, "t") / "run.json").write_text("{")
    return [tmp_path / "t", finished(tmp_path, "c")]


COMPARE_BAD = [  # (case, tmp_path -> [treatment, control], error text)
    (
        "no-folders",
        lambda tmp_path: [tmp_path / "x", tmp_path / "y"],
        "x/run.json: not found; is {tmp}/x a finished `tipping run` folder?",
    ),
    ("control-unfinished", unfinished, "c/metrics.json: not found; is {tmp}/c a finished `tipping run` folder?"),
    ("unreadable-run-json", unreadable, "t/run.json: unreadable run output ("),
]


@pytest.mark.parametrize("folders,expected", [case[1:] for case in COMPARE_BAD], ids=[case[0] for case in COMPARE_BAD])
def test_compare_needs_finished_runs(folders, expected, tmp_path, capsys):
    treatment, control = folders(tmp_path)
    capsys.readouterr()
    assert main(["compare", str(treatment), str(control), "--out", str(tmp_path / "e")]) == 2
    err = capsys.readouterr().err
    assert expected.format(tmp=tmp_path) in err
    assert err.count("\n") == 1 and "Traceback" not in err and not (tmp_path / "e").exists()


def test_second_writer_to_the_same_folder_is_refused(tmp_path, capsys):
    out = tmp_path / "busy"
    with output_lock(out):
        code = main(
            [
                "run",
                "single",
                "--items",
                "single-test",
                "--policy",
                "scripted:comply",
                "--out",
                str(out),
                "--no-progress",
            ]
        )
    assert code == 2
    assert "another tipping process" in capsys.readouterr().err
    assert not (out / "records.jsonl").exists()


def test_finished_run_leaves_no_lock_file(tmp_path):
    """A run folder holds only the declared run files (the lock file would be an undeclared output)."""
    out = tmp_path / "run"
    assert (
        main(
            [
                "run",
                "single",
                "--items",
                "single-test",
                "--limit",
                "1",
                "--rounds",
                "1",
                "--policy",
                "scripted:comply",
                "--cache-dir",
                str(tmp_path / "cache"),
                "--out",
                str(out),
                "--no-progress",
            ]
        )
        == 0
    )
    assert sorted(p.name for p in out.iterdir()) == sorted(paths.RUN_FILES)


def test_real_process_exit_code_and_no_traceback(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tipping",
            "run",
            "single",
            "--items",
            str(tmp_path / "none.jsonl"),
            "--policy",
            "scripted:comply",
            "--out",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert "none.jsonl" in proc.stderr and "Traceback" not in proc.stderr


def test_help_explains_every_command():
    for args in (["--help"], ["run", "single", "--help"], ["run", "multi", "--help"], ["compare", "--help"]):
        proc = subprocess.run([sys.executable, "-m", "tipping", *args], capture_output=True, text=True)
        assert proc.returncode == 0 and "usage:" in proc.stdout


@pytest.mark.parametrize("testbed", ["single", "multi", "population"])
def test_flag_defaults_are_the_settings_defaults(testbed):
    """One source per default: the flags read the testbed's settings, the batch size the engine's,
    and params.yaml's schema the same values."""
    import inspect
    from dataclasses import fields

    from tipping.cli import parse_args
    from tipping.config import ModelSettings, MultiParams, SingleParams
    from tipping.rollout import BATCH_SIZE, Engine
    from tipping.runs import execute
    from tipping.testbeds.multi import MultiSettings
    from tipping.testbeds.population import PopulationSettings
    from tipping.testbeds.single import SingleSettings

    settings = {"single": SingleSettings, "multi": MultiSettings, "population": PopulationSettings}[testbed]
    required = {"single": ["--items", "x"], "multi": ["--scenarios", "x"], "population": ["--scenarios", "x"]}
    args = parse_args(["run", testbed, *required[testbed], "--out", "o", "--policy", "scripted:comply"])
    # a flag left unset (None) means "the item's own value" (multi --agents): no default to repeat
    shared = [f for f in fields(settings) if getattr(args, f.name, None) is not None]
    assert shared and all(
        getattr(args, f.name) == (list(f.default) if isinstance(f.default, tuple) else f.default) for f in shared
    )
    assert args.batch_size == BATCH_SIZE == ModelSettings.model_fields["batch_size"].default
    for takes_batches in (Engine, execute):
        assert inspect.signature(takes_batches).parameters["batch_size"].default == BATCH_SIZE
    schema = {"single": SingleParams, "multi": MultiParams}.get(testbed)
    if schema:
        assert all(schema.model_fields[f.name].default == f.default for f in shared if f.name in schema.model_fields)
