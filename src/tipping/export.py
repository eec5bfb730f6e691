"""`tipping export inspect`: finished run folders -> inspect_ai eval logs (`inspect view DIR`).

One log per run, one sample per episode. A sample's messages are the episode's conversation as
the agent lived it (multi: each agent's in turn, agent 0 first), every message tagged with its
agent and round; its score is the episode's violation (single) or collusion (multi) rate per
round; its metadata lists every turn's parsed choice, validity, reward and capital. The run's
config is the eval spec (task_args; the sampling as the generate config) and metrics.json's
per-round rates are the log's results. inspect_ai is imported here only (it is slow to import).
"""

from __future__ import annotations

import datetime
import json
import os
from collections.abc import Iterator
from pathlib import Path

from tipping.errors import InputError
from tipping.hashing import sha256_hex
from tipping.paths import METRICS_JSON, RECORDS_JSONL
from tipping.records import RunFolder

# record fields a sample's metadata keeps per turn (the rest is in the messages or the spec)
TURN_FIELDS = (
    "round",
    "agent",
    "choice",
    "valid",
    "deviant",
    "reward",
    "capital",
    "p_deviant",
    "shown_first",
    "supervision",
    "success",
    "confederate",
    "seed",
)


def _new_messages(prompt: list[dict], first: bool) -> list[dict]:
    """What a turn's prompt adds to the agent's conversation so far: everything on its first
    turn; later, what follows the last answer it shows (the feedback and the new question), or,
    with a window of 0, everything after the system prompt."""
    if first:
        return prompt
    answers = [i for i, m in enumerate(prompt) if m["role"] == "assistant"]
    start = answers[-1] + 1 if answers else next(i for i, m in enumerate(prompt) if m["role"] != "system")
    return prompt[start:]


def _messages(turns: list[dict], prompts: dict[str, list]) -> list:
    """Message ids name the agent, round and position, so an export is the same every time."""
    from inspect_ai.model import ChatMessageAssistant, ChatMessageSystem, ChatMessageUser

    kinds = {"system": ChatMessageSystem, "user": ChatMessageUser}
    out = []
    for agent in sorted({t["agent"] for t in turns if not t.get("confederate")}):
        for i, t in enumerate(sorted((t for t in turns if t["agent"] == agent), key=lambda t: t["round"])):
            tag = {"agent": agent, "round": t["round"]}
            new = _new_messages(prompts[t["prompt_sha"]], first=i == 0)
            out += [
                kinds[m["role"]](id=f"a{agent}-r{t['round']}-{k}", content=m["content"], metadata=tag)
                for k, m in enumerate(new)
            ]
            out.append(
                ChatMessageAssistant(
                    id=f"a{agent}-r{t['round']}-answer",
                    content=t["response"],
                    model=t["policy"],
                    source="generate",
                    metadata={**tag, "choice": t["choice"], "valid": t["valid"]},
                )
            )
    return out


def _score(turns: list[dict], testbed: str):
    """The episode's rate per round: deviant / valid answers (confederates excluded), None when
    no answer of the round was valid; the answer is the last round's choice(s)."""
    from inspect_ai.scorer import Score

    played = [t for t in turns if not t.get("confederate")]
    rounds = sorted({t["round"] for t in played})
    value = {}
    for r in rounds:
        valid = [t for t in played if t["round"] == r and t["valid"]]
        value[f"round_{r}"] = sum(t["deviant"] for t in valid) / len(valid) if valid else None
    last = [t for t in played if t["round"] == rounds[-1]]
    invalid = sum(not t["valid"] for t in played)
    return Score(
        value=value,
        answer="; ".join(str(t["choice"]) for t in last),
        explanation=f"{sum(t['valid'] and t['deviant'] for t in played)} of {len(played) - invalid} valid "
        f"answers {'violate the rule' if testbed == 'single' else 'are collective'}; "
        f"{invalid} unparseable",
    )


def _sample(episode: str, turns: list[dict], prompts: dict[str, list], testbed: str, run_id: str):
    from inspect_ai.log import EvalSample
    from inspect_ai.model import ChatCompletionChoice, ModelOutput

    first = min((t for t in turns if not t.get("confederate")), key=lambda t: (t["round"], t["agent"]))
    last = max((t for t in turns if not t.get("confederate")), key=lambda t: (t["round"], -t["agent"]))
    name = "violation" if testbed == "single" else "collusion"
    messages, prompt = _messages(turns, prompts), prompts[first["prompt_sha"]]
    answer = next(m for m in messages if m.id == f"a{last['agent']}-r{last['round']}-answer")
    meta = {k: first[k] for k in ("scenario", "item", "compliant", "violating", "threshold", "rewards") if k in first}
    return EvalSample(
        id=episode,
        epoch=1,
        uuid=sha256_hex(f"{run_id}/{episode}".encode())[:22],
        input=messages[: len(prompt)],
        target=first.get("compliant", ""),
        messages=messages,
        output=ModelOutput(model=last["policy"], choices=[ChatCompletionChoice(message=answer, stop_reason="stop")]),
        scores={name: _score(turns, testbed)},
        metadata={**meta, "turns": [{k: t[k] for k in TURN_FIELDS if k in t} for t in turns]},
    )


def _results(metrics: dict, testbed: str, n_samples: int):
    """metrics.json's per-round rates (single: the run's; multi: one score per threshold x
    reward-set cell), rounds whose rate is undefined left out."""
    from inspect_ai.log import EvalMetric, EvalResults, EvalScore

    def score(name: str, series: dict, rate: str) -> EvalScore:
        values = {f"round_{r}": v for r, v in zip(series["rounds"], series[rate]) if v is not None}
        values |= {f"invalid_round_{r}": v for r, v in zip(series["rounds"], series["invalid_rate"])}
        return EvalScore(
            name=name, scorer="tipping", metrics={k: EvalMetric(name=k, value=v) for k, v in values.items()}
        )

    if testbed == "single":
        scores = [score("violation_rate", metrics, "violation_rate")]
    else:
        scores = [
            score(f"collusion_rate t={c['threshold']} rewards={','.join(map(str, c['rewards']))}", c, "collusion_rate")
            for c in metrics["cells"]
        ]
    return EvalResults(total_samples=n_samples, completed_samples=n_samples, scores=scores)


def run_log(folder: Path):
    """The EvalLog of one finished run folder."""
    from inspect_ai.log import EvalConfig, EvalDataset, EvalLog, EvalSpec, EvalStats
    from inspect_ai.model import GenerateConfig

    run_folder = RunFolder(folder)
    run, metrics, records, prompts = run_folder.run, run_folder.metrics, run_folder.records, run_folder.prompts
    config = run["config"]
    testbed = config["testbed"]
    by_episode: dict[str, list[dict]] = {}
    for r in records:
        by_episode.setdefault(r["episode"], []).append(r)
    # ids and the time come from the run itself (its config too: runs that differ only in their
    # tags have the same records), so exporting a run twice gives the same log
    digest = sha256_hex(json.dumps(config, sort_keys=True).encode(), run_folder.file(RECORDS_JSONL).read_bytes())
    try:
        samples = [_sample(e, turns, prompts, testbed, digest) for e, turns in by_episode.items()]
    except KeyError as exc:
        raise InputError(
            f"{folder}: records.jsonl names a prompt or field that prompts.jsonl/records lack ({exc}); rerun the run"
        ) from None
    finished = datetime.datetime.fromtimestamp(run_folder.file(METRICS_JSON).stat().st_mtime, datetime.UTC)
    sampling = config.get("sampling", {})
    spec = EvalSpec(
        eval_id=digest[:22],
        run_id=digest[22:44],
        task_id=f"{testbed}-{digest[:8]}",
        created=finished.isoformat(),
        task=f"tipping/{testbed}",
        task_version=0,
        task_args=config,
        dataset=EvalDataset(
            name=str(config.get("items") or config.get("scenarios")), samples=len(samples), sample_ids=list(by_episode)
        ),
        model=config["policy"],
        model_generate_config=GenerateConfig(
            temperature=sampling.get("temperature"),
            top_p=sampling.get("top_p"),
            top_k=sampling.get("top_k"),
            max_tokens=sampling.get("max_new_tokens"),
            seed=config.get("seed"),
        ),
        config=EvalConfig(epochs=1),
        packages=run.get("versions", {}),
        metadata={"run_dir": str(folder), "tags": config.get("tags", {}), "stats": run.get("stats", {})},
    )
    return EvalLog(
        eval=spec,
        status="success",
        samples=samples,
        results=_results(metrics, testbed, len(samples)),
        stats=EvalStats(started_at=finished.isoformat(), completed_at=finished.isoformat()),
    )


def write_logs(run_dirs, out: Path) -> Iterator[tuple[Path, int]]:
    """One inspect_ai .eval log per run folder in OUT, yielded as written: (its path, its samples)."""
    from inspect_ai.log import write_eval_log

    for run_dir in run_dirs:
        log = run_log(Path(run_dir))
        created = log.eval.created[:19].replace(":", "-")
        path = out / f"{created}_tipping-{log.eval.task.split('/')[1]}_{log.eval.eval_id}.eval"
        out.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")  # renamed when complete: a killed export leaves no log
        write_eval_log(log, tmp, format="eval")
        os.replace(tmp, path)
        yield path, len(log.samples)
