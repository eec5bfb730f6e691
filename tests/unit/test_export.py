"""`tipping export inspect`: the logs read back with inspect_ai's own reader, one sample per episode,
every turn's conversation and answer intact, scores equal to the records and to metrics.json."""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from inspect_ai.log import read_eval_log

from tipping.cli import main
from tipping.outputs import read_jsonl


def play(tmp_path, name, *args):
    out = tmp_path / name
    assert main(["run", *args, "--out", str(out), "--no-progress"]) == 0
    return out


def export(tmp_path, *runs):
    logs = tmp_path / "logs"
    assert main(["export", "inspect", *map(str, runs), "--out", str(logs)]) == 0
    return {read_eval_log(p).eval.task: read_eval_log(p) for p in sorted(logs.glob("*.eval"))}


def check_conversations(log, run):
    """Every non-confederate turn's prompt is exactly the agent's messages before its answer in the
    sample (the window covers every round here), and its answer follows, tagged with agent and round."""
    prompts = {p["prompt_sha"]: p["messages"] for p in read_jsonl(run / "prompts.jsonl")}
    records = read_jsonl(run / "records.jsonl")
    samples = {s.id: s for s in log.samples}
    assert sorted(samples) == sorted({r["episode"] for r in records})  # one sample per episode
    for r in records:
        if r.get("confederate"):
            continue
        mine = [m for m in samples[r["episode"]].messages if m.metadata["agent"] == r["agent"]]
        answer = next(i for i, m in enumerate(mine) if m.role == "assistant" and m.metadata["round"] == r["round"])
        assert [{"role": m.role, "content": m.content} for m in mine[:answer]] == prompts[r["prompt_sha"]]
        assert mine[answer].text == r["response"] and mine[answer].metadata["choice"] == r["choice"]
    assert sum(m.role == "assistant" for s in log.samples for m in s.messages) == sum(
        not r.get("confederate") for r in records
    )


def test_single_run_exports_one_sample_per_episode_with_its_rounds(tmp_path):
    run = play(
        tmp_path,
        "s",
        "single",
        "--items",
        "single-test",
        "--limit",
        "3",
        "--rounds",
        "3",
        "--policy",
        "scripted:flip@2",
        "--tag",
        "condition=treatment",
    )
    log = export(tmp_path, run)["tipping/single"]
    config = json.loads((run / "run.json").read_text())["config"]
    assert log.status == "success" and log.eval.model == "scripted:flip@2"
    assert log.eval.task_args == config and log.eval.metadata["tags"] == {"condition": "treatment"}
    assert log.eval.model_generate_config.temperature == config["sampling"]["temperature"]
    assert len(log.samples) == 3 and log.eval.dataset.samples == 3
    check_conversations(log, run)
    for sample in log.samples:
        assert sample.scores["violation"].value == {"round_1": 0.0, "round_2": 1.0, "round_3": 1.0}
        assert [t["choice"] for t in sample.metadata["turns"]] == [sample.target] + [sample.metadata["violating"]] * 2
        assert [t["reward"] for t in sample.metadata["turns"]][1:] == [sample.metadata["turns"][1]["reward"]] * 2
        assert sample.output.completion == '{{"choice": "{}"}}'.format(sample.metadata["violating"])
    rates = json.loads((run / "metrics.json").read_text())["violation_rate"]
    metrics = log.results.scores[0].metrics
    assert [metrics[f"round_{r}"].value for r in (1, 2, 3)] == rates


def test_multi_run_exports_every_agents_conversation_and_skips_confederates_in_scores(tmp_path):
    single = play(
        tmp_path,
        "s",
        "single",
        "--items",
        "single-test",
        "--limit",
        "1",
        "--rounds",
        "1",
        "--policy",
        "scripted:comply",
    )
    multi = play(
        tmp_path,
        "m",
        "multi",
        "--scenarios",
        "multi-games",
        "--limit",
        "2",
        "--agents",
        "3",
        "--thresholds",
        "2,3",
        "--rounds",
        "2",
        "--confederates",
        "1",
        "--policy",
        "scripted:collude:1",
    )
    logs = export(tmp_path, single, multi)  # several runs into one folder: one log each
    assert sorted(logs) == ["tipping/multi", "tipping/single"]
    log = logs["tipping/multi"]
    assert len(log.samples) == 4  # 2 games x 2 thresholds
    check_conversations(log, multi)
    for sample in log.samples:
        # agent 0 colludes, agent 1 does not, agent 2 is a confederate (not a decision of the model)
        assert sample.scores["collusion"].value == {"round_1": 0.5, "round_2": 0.5}
        assert {m.metadata["agent"] for m in sample.messages} == {0, 1}
        assert len(sample.metadata["turns"]) == 3 * 2
    cells = json.loads((multi / "metrics.json").read_text())["cells"]
    assert [s.name for s in log.results.scores] == [
        f"collusion_rate t={c['threshold']} rewards=1.2,1.0,0.8" for c in cells
    ]
    for score, cell in zip(log.results.scores, cells):
        assert [score.metrics[f"round_{r}"].value for r in cell["rounds"]] == cell["collusion_rate"]


def test_exporting_twice_gives_the_same_log_and_runs_that_differ_only_in_tags_get_their_own(tmp_path):
    args = ("single", "--items", "single-test", "--limit", "2", "--rounds", "2", "--policy", "scripted:comply")
    run = play(tmp_path, "s", *args)
    first = export(tmp_path / "a", run)["tipping/single"]
    again = export(tmp_path / "b", run)["tipping/single"]
    assert first.eval.eval_id == again.eval.eval_id
    assert first.model_dump(exclude={"location", "etag"}) == again.model_dump(exclude={"location", "etag"})
    tagged = play(tmp_path, "t", *args, "--tag", "condition=control")  # the same records.jsonl
    assert (tagged / "records.jsonl").read_bytes() == (run / "records.jsonl").read_bytes()
    stat = (run / "metrics.json").stat()
    os.utime(tagged / "metrics.json", ns=(stat.st_atime_ns, stat.st_mtime_ns))  # finished in the same second
    assert main(["export", "inspect", str(run), str(tagged), "--out", str(tmp_path / "both")]) == 0
    assert len(list((tmp_path / "both").glob("*.eval"))) == 2


def test_inspect_view_serves_the_exported_logs(tmp_path):
    """`inspect view` (its own server, the one the browser app reads) lists the logs and returns
    each one whole."""
    run = play(
        tmp_path,
        "s",
        "single",
        "--items",
        "single-test",
        "--limit",
        "2",
        "--rounds",
        "2",
        "--policy",
        "scripted:flip@2",
    )
    export(tmp_path, run)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    inspect = Path(sys.executable).parent / "inspect"
    server = subprocess.Popen(
        [str(inspect), "view", "--log-dir", str(tmp_path / "logs"), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    api = f"http://127.0.0.1:{port}/api"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                files = json.load(urllib.request.urlopen(f"{api}/log-files", timeout=5))["files"]
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, "inspect view did not start"
                time.sleep(0.5)
        assert [f["task"] for f in files] == ["tipping-single"]
        log = json.load(urllib.request.urlopen(f"{api}/logs/{files[0]['name']}", timeout=30))
        assert log["status"] == "success" and len(log["samples"]) == 2
        assert log["samples"][0]["scores"]["violation"]["value"] == {"round_1": 0.0, "round_2": 1.0}
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_a_folder_that_is_not_a_finished_run_gives_one_line(tmp_path, capsys):
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "records.jsonl").write_text("")
    assert main(["export", "inspect", str(tmp_path / "half"), "--out", str(tmp_path / "logs")]) == 2
    err = capsys.readouterr().err
    assert "run.json: not found" in err and err.count("\n") == 1
    assert not (tmp_path / "logs").exists()
