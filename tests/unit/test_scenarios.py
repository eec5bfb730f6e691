"""The scenario contract over every library scenario, the seeded split generator, the upstream
importer, and the one-line errors for bad sources."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest
from fixtures_upstream import UPSTREAM

import tipping.scenarios
from tipping.errors import InputError
from tipping.scenarios import (
    SPLITS,
    json_instruction,
    load_multi_games,
    load_multi_items,
    load_single_items,
    multi_library,
    single_library,
    write_items,
)
from tipping.scenarios.generator import PER_SCENARIO, fmt_num, make_split, slug
from tipping.scenarios.models import GAME_FIELDS

LIBRARY = Path(tipping.scenarios.__file__).parent / "library"
needs_upstream = pytest.mark.usefixtures("upstream")  # skips, or fails under CI, without the paper's files

JOBS, GAMES = single_library(), multi_library()
ITEM_SPLITS = tuple(PER_SCENARIO)
GAME_VALUES = {
    "n": 8,
    "cooperation_threshold": 3,
    "high_reward": 1.2,
    "normal_reward": 1,
    "low_reward": 0.8,
    "delta_high": 0.2,
    "delta_normal": 0,
    "delta_low": -0.2,
}


def _upstream(rel: str) -> list[dict]:
    return json.loads((UPSTREAM / rel).read_text())


def _error(call, *args) -> str:
    with pytest.raises(InputError) as e:
        call(*args)
    msg = str(e.value)
    assert "\n" not in msg, "input errors are one line"
    return msg


# --- the library ------------------------------------------------------------------------


def test_library_sizes_names_and_files():
    assert len(JOBS) == 16 and len(GAMES) == 7
    for folder, scenarios in (("single", JOBS), ("multi", GAMES)):
        stems = [p.stem for p in sorted((LIBRARY / folder).glob("*.yaml"))]
        assert stems == [slug(s.name) for s in scenarios]  # one file per scenario, named after it
        assert len({s.name for s in scenarios}) == len(scenarios)


@pytest.mark.parametrize("job", JOBS, ids=lambda j: j.name)
def test_job_contract(job):
    assert job.compliant.lower() != job.violating.lower()
    for label in (job.compliant, job.violating):
        assert label.lower() in job.user_prompt.lower(), "the situation names both options"
        assert json.dumps({"choice": label}) in json_instruction(job.compliant, job.violating)
    assert "{compliant_reward}" in job.user_prompt and "{violating_reward}" in job.user_prompt
    rendered = job.user_prompt.format(compliant_reward="2", violating_reward="3")
    assert not re.search(r"[{}]", rendered + job.system_prompt)
    for text in (job.supervised_text, job.unsupervised_text, job.neutral_text):
        # the testbed writes "This week, {text}. "
        assert text and text[0].islower() and not text.endswith("."), text


@pytest.mark.parametrize("game", GAMES, ids=lambda g: g.name)
def test_game_contract(game):
    assert game.collective.lower() != game.independent.lower()
    for label in (game.collective, game.independent):
        assert label in game.system_prompt, "the role sentence names both options"
        assert json.dumps({"choice": label}) in json_instruction(game.collective, game.independent)
    for template in (game.system_prompt, game.user_prompt_mult, game.user_prompt_add, game.user_prompt_train):
        assert not re.search(r"[{}]", template.format(**GAME_VALUES))
    assert "x{high_reward}" in game.user_prompt_mult
    assert re.search(r"\+\$?\{delta_high\}", game.user_prompt_add)
    p = game.params
    assert p.high_reward > p.normal_reward > p.low_reward and 2 <= p.cooperation_threshold <= p.n


@needs_upstream
def test_library_keeps_upstream_facts():
    jobs = {j.name: j for j in JOBS}
    for rec in _upstream("sa/templates.json"):
        job, t, p = jobs[rec["environment"]], rec["template"], rec["params"]
        assert (job.compliant, job.violating) == (t["supervised_choice"], t["better_choice"])
        assert (job.payoff.violating_ratio, job.payoff.compliant_ratio, job.payoff.base) == (
            p["high_radio"],
            p["low_radio"],
            p["base"],
        )
    games = {g.name: g for g in GAMES}
    for rec in _upstream("ma/templates.json"):
        game, t = games[rec["environment"]], rec["template"]
        assert (game.collective, game.independent) == (t["collective_choice"], t["independent_choice"])
        assert game.params.model_dump() == rec["params"]


@needs_upstream
def test_library_shares_no_upstream_sentence():
    ours = " ".join(p.read_text() for p in LIBRARY.rglob("*.yaml"))
    ours = re.sub(r"\s+", " ", ours)
    for rel in ("sa/templates.json", "ma/templates.json"):
        for rec in _upstream(rel):
            for text in rec["template"].values():
                for sentence in re.split(r"(?<=[.;:])\s+", text):
                    assert len(sentence) < 40 or sentence.rstrip(".") not in ours, sentence


# --- the generator ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def splits():
    return {name: make_split(name, 0) for name in ITEM_SPLITS}


@pytest.mark.parametrize("name", ITEM_SPLITS)
def test_split_sizes_ids_and_unique_prompts(splits, name):
    items = splits[name]
    scenarios = JOBS if name.startswith("single") else GAMES
    assert len(items) == PER_SCENARIO[name] * len(scenarios)
    assert Counter(it.scenario for it in items) == {s.name: PER_SCENARIO[name] for s in scenarios}
    assert len({it.id for it in items}) == len(items)
    assert len({(it.system_prompt, it.user_prompt) for it in items}) == len(items)
    assert items[0].id == f"{name}-{slug(scenarios[0].name)}-00"


@pytest.mark.parametrize(("train", "test"), [("single-train", "single-test"), ("multi-train", "multi-eval")])
def test_no_train_test_prompt_overlap(splits, train, test):
    assert not {it.user_prompt for it in splits[train]} & {it.user_prompt for it in splits[test]}


@pytest.mark.parametrize("name", ["single-test", "single-train"])
def test_single_items(splits, name):
    jobs = {j.name: j for j in JOBS}
    for it in splits[name]:
        job = jobs[it.scenario]
        assert it.violating_reward > it.compliant_reward > 0
        assert 1 < it.violating_reward / it.compliant_reward <= 5  # ratios live in [1, 5]
        assert it.user_prompt == job.user_prompt.format(
            compliant_reward=fmt_num(it.compliant_reward), violating_reward=fmt_num(it.violating_reward)
        ) + " " + json_instruction(job.compliant, job.violating)
        assert (it.compliant, it.violating, it.neutral_text) == (job.compliant, job.violating, job.neutral_text)


@pytest.mark.parametrize("name", ["multi-train", "multi-eval"])
def test_multi_items(splits, name):
    games = {g.name: g for g in GAMES}
    for it in splits[name]:
        game, p = games[it.scenario], it.params
        assert 5 <= p.n <= 15 and 2 <= p.cooperation_threshold <= p.n
        assert 1 <= p.high_reward <= 2 and p.normal_reward >= 0.3 and p.low_reward >= 0
        assert p.high_reward > p.normal_reward > p.low_reward
        fmt = {
            "n": p.n,
            "cooperation_threshold": p.cooperation_threshold,
            "high_reward": fmt_num(p.high_reward),
            "normal_reward": fmt_num(p.normal_reward),
            "low_reward": fmt_num(p.low_reward),
        }
        assert it.system_prompt == game.system_prompt.format(**fmt)
        instruction = json_instruction(it.collective, it.independent)
        assert it.user_prompt.endswith(game.user_prompt_train.format(**fmt) + " " + instruction)
        assert f'"{it.collective}"' in it.user_prompt and f'"{it.independent}"' in it.user_prompt


@pytest.mark.parametrize("name", ITEM_SPLITS)
def test_same_seed_byte_identical_and_seeds_differ(tmp_path, name):
    write_items(make_split(name, 7), tmp_path / "a.jsonl")
    write_items(make_split(name, 7), tmp_path / "b.jsonl")
    write_items(make_split(name, 8), tmp_path / "c.jsonl")
    a, b, c = ((tmp_path / f).read_bytes() for f in ("a.jsonl", "b.jsonl", "c.jsonl"))
    assert a == b and a != c
    assert not list(tmp_path.glob("*.tmp"))


def test_builtin_splits_and_written_files_load_back(tmp_path):
    items = load_single_items("single-test", seed=3)
    assert items == make_split("single-test", 3)
    write_items(items, tmp_path / "single.jsonl")
    assert load_single_items(tmp_path / "single.jsonl") == items
    write_items(load_multi_items("multi-eval"), tmp_path / "multi.jsonl")
    assert load_multi_items(str(tmp_path / "multi.jsonl")) == make_split("multi-eval", 0)
    assert load_multi_games("multi-games") == GAMES
    write_items(GAMES, tmp_path / "games.jsonl")
    assert load_multi_games(tmp_path / "games.jsonl") == GAMES
    fund = [g for g in GAMES if g.name == "PublicFund"]
    assert load_multi_games(LIBRARY / "multi" / "public-fund.yaml") == fund
    assert set(SPLITS) == {*ITEM_SPLITS, "multi-games"}


# --- the upstream importer ----------------------------------------------------------------


@needs_upstream
@pytest.mark.parametrize(("rel", "count"), [("sa/question_64.json", 64), ("sa/question_160.json", 160)])
def test_import_upstream_single(rel, count):
    items, raw = load_single_items(UPSTREAM / rel), _upstream(rel)
    assert len(items) == count
    first = items[0]
    assert (first.scenario, first.compliant, first.violating) == ("delivery worker", "Route A", "Route B")
    rec, params = raw[0], raw[0]["params"]
    assert (first.compliant_reward, first.violating_reward) == (params["low_reward"], params["high_reward"])
    assert (first.id, first.system_prompt, first.user_prompt) == (rec["id"], rec["system_prompt"], rec["user_prompt"])
    assert first.neutral_text == raw[0].get("neutral_text", "")  # question_160 has none
    taxi = next(it for it in items if it.scenario == "taxi driver")
    assert (taxi.compliant, taxi.violating) == ("Route B", "Route A")


@needs_upstream
def test_import_upstream_games():
    games = load_multi_games(UPSTREAM / "ma/templates.json")
    assert {g.name: (g.collective, g.independent) for g in games} == {
        "PublicFund": ("invest", "keep money"),
        "CommonsPasture": ("follow the quota", "overgraze"),
        "TeamProject": ("work all-out", "do the minimum"),
        "RedBlueButton": ("press red", "press blue"),
        "HuntingGame": ("hunt deer", "hunt rabbits"),
        "InfoSharing": ("share information", "keep information"),
        "PriceAlliance": ("maintain high prices", "cut prices"),
    }
    raw = _upstream("ma/templates.json")[0]["template"]
    assert (games[0].user_prompt_train, games[0].user_prompt_mult) == (raw["user_prompt"], raw["user_prompt_mult"])


@needs_upstream
@pytest.mark.parametrize(("rel", "count"), [("ma/question_70.json", 70), ("ma/question_350.json", 350)])
def test_import_upstream_multi_items(rel, count):
    items, raw = load_multi_items(UPSTREAM / rel), _upstream(rel)
    assert len(items) == count
    first = items[0]
    assert first.id == f"{Path(rel).stem}-0"  # upstream MA items carry no id
    assert (first.collective, first.independent) == (raw[0]["cooperative_choice"], raw[0]["independent_choice"])
    assert first.user_prompt == raw[0]["user_prompt"] and first.params.n == raw[0]["params"]["n"]


@needs_upstream
def test_upstream_sa_templates_are_refused():
    assert "generating" in _error(load_single_items, UPSTREAM / "sa/templates.json")


# --- bad sources ----------------------------------------------------------------------------


@pytest.fixture
def item():
    return make_split("single-test", 0)[0].model_dump(mode="json")


def _jsonl(path: Path, records) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_invalid_json(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('[{"id": "a",\n ]')
    msg = _error(load_single_items, bad)
    assert "bad.json" in msg and "invalid JSON at line 2" in msg


def test_invalid_jsonl_line(tmp_path, item):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(item) + "\n{not json}\n")
    msg = _error(load_single_items, bad)
    assert "bad.jsonl record 1" in msg and "line 2" in msg


def test_invalid_yaml(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nsystem_prompt: [unclosed\n")
    msg = _error(load_multi_games, bad)
    assert "bad.yaml" in msg and "invalid YAML at line" in msg


def test_missing_field(tmp_path, item):
    del item["violating"]
    msg = _error(load_single_items, _jsonl(tmp_path / "items.jsonl", [item, item]))
    assert "items.jsonl record 0 field 'violating'" in msg and "required" in msg


def test_wrong_type(tmp_path, item):
    second = {**item, "id": "other", "compliant_reward": "lots"}
    msg = _error(load_single_items, _jsonl(tmp_path / "items.jsonl", [item, second]))
    assert "items.jsonl record 1 field 'compliant_reward'" in msg and "'lots'" in msg


def test_identical_labels(tmp_path, item):
    same = {**item, "violating": item["compliant"]}
    msg = _error(load_single_items, _jsonl(tmp_path / "items.jsonl", [same]))
    assert "items.jsonl record 0" in msg and "must differ" in msg


@needs_upstream
def test_identical_labels_in_upstream_file(tmp_path):
    records = _upstream("sa/question_64.json")[:3]
    records[2]["better_choice"] = records[2]["supervised_choice"]
    bad = tmp_path / "question_bad.json"
    bad.write_text(json.dumps(records))
    msg = _error(load_single_items, bad)
    assert "question_bad.json record 2 field 'better_choice'" in msg


@needs_upstream
def test_missing_field_in_upstream_file(tmp_path):
    records = _upstream("ma/question_70.json")[:2]
    del records[1]["params"]["low_reward"]
    bad = tmp_path / "q.json"
    bad.write_text(json.dumps(records))
    assert "q.json record 1 field 'params.low_reward'" in _error(load_multi_items, bad)


def test_unknown_placeholder_in_game(tmp_path):
    game = GAMES[0].model_dump(mode="json")
    game["user_prompt_mult"] += " Bonus: {bonus}."
    msg = _error(load_multi_games, _jsonl(tmp_path / "games.jsonl", [game]))
    assert "games.jsonl record 0 field 'user_prompt_mult'" in msg and "'bonus'" in msg
    assert all(repr(f) in msg for f in GAME_FIELDS), "the message lists what is allowed"


def test_duplicate_id(tmp_path, item):
    msg = _error(load_single_items, _jsonl(tmp_path / "items.jsonl", [item, item]))
    assert "items.jsonl record 1 field 'id'" in msg and "duplicate" in msg


def test_empty_list(tmp_path):
    empty = tmp_path / "empty.json"
    empty.write_text("[]")
    assert "empty.json" in _error(load_multi_items, empty)


def test_unknown_split_lists_the_valid_ones():
    msg = _error(load_single_items, "single-tset")
    assert "unknown split" in msg and all(s in msg for s in SPLITS)


def test_missing_file(tmp_path):
    assert "not found" in _error(load_single_items, tmp_path / "nope.jsonl")


def test_wrong_kind(tmp_path, item):
    assert "load_multi_items" in _error(load_single_items, "multi-train")
    assert "load_multi_games" in _error(load_multi_items, "multi-games")
    msg = _error(load_multi_items, _jsonl(tmp_path / "single.jsonl", [item]))
    assert "single.jsonl" in msg and "load_single_items" in msg
