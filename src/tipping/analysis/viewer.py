"""The episode viewer: one self-contained HTML page (no server, no network) to browse episodes
round by round, built from a tables folder (records, prompts and messages .parquet).

Size: a round's prompt repeats every earlier message, so every text (message or answer) is
stored once and prompts are lists of text ids; only the first `episodes_per_run` episodes of each
run are embedded, and messages longer than `max_chars` keep their head and tail (a thinking
trace's final JSON answer stays visible). The page states both limits.

The page reads its filters from location.hash (e.g. #defence=dpo&evolution_round=1&episode=ID),
so a link (or a headless browser in the tests) opens a chosen view.

Multi-agent episodes are browsed agent by agent (#agent=17): the page shows that agent's turns,
round by round. A population run (N agents on a graph) also gets its graph once per run (agent ->
neighbour ids, from the tables' `neighbours` column): the page lists the shown agent's neighbours
as links and each round's table only the agents it sees (itself and its neighbours); each turn
adds its payoff group's collective count and whether the threshold was met. An episode of 256
agents x 10 rounds (small-world k=4, scripted answers) is about 0.6 MB: about 0.35 MB of turns,
0.25 MB of prompts as id lists, a few hundred distinct texts; model answers add their own
length (at most max_chars each), and a complete graph's neighbour lists about 0.23 MB per run.
"""

from __future__ import annotations

import json
from importlib import resources

import pandas as pd

RUN_FIELDS = ("testbed", "condition", "model", "defence", "evolution_round", "decision", "policy")
ROLES = {"system": "s", "user": "u", "assistant": "a"}


class _Texts:
    """Every distinct (cut) text once; messages and answers refer to it by index."""

    def __init__(self, max_chars: int):
        self.max_chars, self.index, self.items, self.cut = max_chars, {}, [], 0

    def __call__(self, text: str) -> int:
        if text not in self.index:
            self.index[text] = len(self.items)
            self.items.append(self._cut(text))
        return self.index[text]

    def _cut(self, text: str) -> str:
        if not self.max_chars or len(text) <= self.max_chars:
            return text
        self.cut += 1
        half = self.max_chars // 2
        return f"{text[:half]}\n[… {len(text) - 2 * half} characters cut …]\n{text[-half:]}"


def _value(v):
    """JSON-ready scalar: pandas NA / NaN -> None, numpy scalars -> Python."""
    if v is None or (not isinstance(v, (str, list, dict)) and pd.isna(v)):
        return None
    return v.item() if hasattr(v, "item") else v


def build_data(
    records: pd.DataFrame, prompts: pd.DataFrame, messages: pd.DataFrame, episodes_per_run: int, max_chars: int
) -> dict:
    message_ids = dict(zip(prompts["prompt_sha"], prompts["message_ids"]))
    by_id = dict(zip(messages["message_id"], zip(messages["role"], messages["content"])))
    texts = _Texts(max_chars)
    prompt_ids: dict[str, int] = {}
    prompt_list: list[list] = []

    def prompt(sha) -> int | None:
        if _value(sha) is None:  # confederates answer without a prompt
            return None
        if sha not in prompt_ids:
            prompt_ids[sha] = len(prompt_list)
            prompt_list.append([[ROLES.get(by_id[i][0], by_id[i][0]), texts(by_id[i][1])] for i in message_ids[sha]])
        return prompt_ids[sha]

    runs, episodes, total = [], [], 0
    for run, rows in records.groupby("run", sort=True):
        first = rows.iloc[0]
        runs.append({"run": run, **{f: _value(first.get(f)) for f in RUN_FIELDS}})
        population = first["testbed"] == "population"
        if population:  # the run's graph, once: agent -> neighbour ids (tables' `neighbours` column)
            graph = rows.drop_duplicates("agent").set_index("agent")["neighbours"]
            runs[-1]["neighbours"] = [[int(j) for j in graph[a]] for a in range(int(graph.index.max()) + 1)]
        by_episode = dict(tuple(rows.groupby("episode", sort=False)))  # in play order
        total += len(by_episode)
        keep = list(by_episode)[:episodes_per_run] if episodes_per_run else list(by_episode)
        for episode_id in keep:
            ep = by_episode[episode_id].sort_values(["round", "agent"], kind="mergesort")
            head = ep.iloc[0]
            episode = {
                "run": len(runs) - 1,
                "id": episode_id,
                "scenario": head["scenario"],
                "turns": [
                    {
                        "r": int(t["round"]),
                        "a": int(t["agent"]),
                        "p": prompt(t["prompt_sha"]),
                        "t": texts(t["response"]),
                        "c": _value(t["choice"]),
                        "v": bool(t["valid"]),
                        "d": _value(t["deviant"]),
                        "rw": _value(t["reward"]),
                        "k": _value(t.get("capital")),
                        "pd": _value(t["p_deviant"]),
                        "cf": bool(_value(t.get("confederate")) or False),
                        "s": _value(t.get("supervision")),
                        **({"n": int(t["collective_count"]), "ok": bool(t["success"])} if population else {}),
                    }
                    for t in ep.to_dict("records")
                ],
            }
            if head["testbed"] == "single":
                episode["options"] = [head["compliant"], head["violating"]]
                episode["payoffs"] = [_value(head["compliant_reward"]), _value(head["violating_reward"])]
            else:
                episode["threshold"], episode["rewards"] = int(head["threshold"]), head["rewards"]
            episodes.append(episode)
    return {
        "runs": runs,
        "episodes": episodes,
        "prompts": prompt_list,
        "texts": texts.items,
        "limits": {
            "episodes_per_run": episodes_per_run,
            "max_chars": max_chars,
            "episodes_total": total,
            "episodes_shown": len(episodes),
            "texts_cut": texts.cut,
        },
    }


def render(data: dict) -> str:
    template = resources.files("tipping.analysis").joinpath("viewer_template.html").read_text(encoding="utf-8")
    payload = json.dumps(data, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    # inside <script> only "</" can end the element early; "<\/" is the same JSON string
    return template.replace("__VIEWER_DATA__", payload.replace("</", "<\\/"))
