"""The scenario library, the built-in item splits, and loading/writing item files.

A source (`src`) is either a built-in split name (see SPLITS) or a file: our JSONL (one item
per line), a JSON/YAML list of our records (or one mapping), or an upstream ATP JSON file.
What a file holds is recognised by the keys of its first record. Every problem with a source is
one InputError line naming the file, the record and the field.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path

import yaml

from tipping.errors import InputError, where
from tipping.outputs import write_jsonl
from tipping.scenarios import upstream
from tipping.scenarios.models import MultiItem, MultiScenario, SingleItem, SingleScenario, parse
from tipping.turns import OptionOrder, shown_order

LIBRARY = Path(__file__).parent / "library"
SPLITS = ("single-test", "single-train", "multi-train", "multi-eval", "multi-games")

# what a source holds -> (description, model, the loader to use for it)
KINDS = {
    "single-items": ("single-agent items", SingleItem, "load_single_items"),
    "multi-items": ("multi-agent items", MultiItem, "load_multi_items"),
    "multi-games": ("multi-agent games", MultiScenario, "load_multi_games"),
}
SPLIT_KINDS = {
    "single-test": "single-items",
    "single-train": "single-items",
    "multi-train": "multi-items",
    "multi-eval": "multi-items",
    "multi-games": "multi-games",
}


def answer_pair(first: str, second: str) -> str:
    """How a prompt lists the two canonical JSON answers (ours and upstream's): `{"choice": "A"} or {"choice": "B"}`."""
    a, b = (json.dumps({"choice": label}, ensure_ascii=False) for label in (first, second))
    return f"{a} or {b}"


def listed_order(text: str, a: str, b: str) -> tuple[str, str] | None:
    """The two labels in the order `text` lists their answers (an answer_pair), None if it does
    not. Our splits list the compliant answer first; upstream's files list "Route A" before
    "Route B" whichever is compliant."""
    for order in ((a, b), (b, a)):
        if answer_pair(*order) in text:
            return order
    return None


def reorder_answers(
    texts: tuple[str, ...], first: str, second: str, order: OptionOrder, seed: int, episode_id: str
) -> tuple[tuple[str, str] | None, tuple[str, ...]]:
    """(the labels in the order now shown, the texts with their answer list reordered). The texts
    list the answers once, as answer_pair (in either order: upstream's files put "A" before "B");
    None when they do not, which only fixed order accepts."""
    listed = listed_order(" ".join(texts), first, second)
    if listed is None:
        if order != "fixed":
            raise InputError(
                f"episode {episode_id}: its prompt does not list the answers as {answer_pair(first, second)}, "
                f"so --option-order {order} cannot reorder them; use --option-order fixed"
            )
        return None, texts
    shown = shown_order(listed, order, seed, episode_id)
    return shown, tuple(t.replace(answer_pair(*listed), answer_pair(*shown)) for t in texts)


def json_instruction(first: str, second: str) -> str:
    """How every prompt asks for the answer: the two canonical JSON answers, `first` listed first."""
    return f"Close your reply with your decision written as JSON, exactly {answer_pair(first, second)}."


@functools.cache
def _library(folder: str, model) -> tuple:
    scenarios = [parse(model, rec, path) for path in sorted((LIBRARY / folder).glob("*.yaml")) for rec in _read(path)]
    if not scenarios:
        raise InputError(f"{LIBRARY / folder}: no scenario files (*.yaml); the package is incomplete")
    return tuple(scenarios)


def single_library() -> list[SingleScenario]:
    """The 16 role-play jobs, in file-name order."""
    return list(_library("single", SingleScenario))


def multi_library() -> list[MultiScenario]:
    """The 7 threshold games, in file-name order."""
    return list(_library("multi", MultiScenario))


def load_single_items(src: str | os.PathLike, seed: int = 0) -> list[SingleItem]:
    return _load(src, seed, "single-items")


def load_multi_items(src: str | os.PathLike, seed: int = 0) -> list[MultiItem]:
    return _load(src, seed, "multi-items")


def load_multi_games(src: str | os.PathLike) -> list[MultiScenario]:
    return _load(src, 0, "multi-games")


def write_items(items, path: str | os.PathLike) -> None:
    """JSONL with sorted keys, written atomically (a crash never leaves a half file)."""
    write_jsonl(Path(path), [item.model_dump(mode="json") for item in items])


def load_any(src: str | os.PathLike, seed: int = 0) -> list:
    """Whatever a source holds (items or games), recognised by its records' keys."""
    return _load(src, seed, None)


def kind(src: str | os.PathLike) -> str:
    """What a source holds ("single-items", "multi-items" or "multi-games"), without loading it all."""
    if isinstance(src, str) and src in SPLITS:
        return SPLIT_KINDS[src]
    path = _source_path(src)
    first = _record(_read(path), 0, path)
    return upstream.kind(first, path) or _kind(first, path)


def _load(src, seed: int, wanted: str | None) -> list:
    if isinstance(src, str) and src in SPLITS:
        _expect(src, SPLIT_KINDS[src], wanted)
        from tipping.scenarios.generator import make_split  # the generator builds on this module

        return make_split(src, seed)
    path = _source_path(src)
    records = _read(path)
    first = _record(records, 0, path)
    upstream_kind = upstream.kind(first, path)
    held = upstream_kind or _kind(first, path)
    _expect(path, held, wanted)
    convert = upstream.CONVERTERS[held] if upstream_kind else functools.partial(parse, KINDS[held][1])
    key = "name" if held == "multi-games" else "id"
    out, seen = [], set()
    for i in range(len(records)):
        obj = convert(_record(records, i, path), path, i)
        if getattr(obj, key) in seen:  # ids key results downstream, so they must be unique
            raise InputError(f"{where(path, i, key)}: duplicate {key} {getattr(obj, key)!r}")
        seen.add(getattr(obj, key))
        out.append(obj)
    return out


def _record(records: list, i: int, path: Path) -> dict:
    if not isinstance(records[i], dict):
        raise InputError(f"{where(path, i)}: expected a mapping of fields, got {type(records[i]).__name__}")
    return records[i]


def _expect(src, kind: str, wanted: str | None) -> None:
    if wanted and kind != wanted:
        desc, _, loader = KINDS[kind]
        raise InputError(f"{src}: holds {desc}, not {KINDS[wanted][0]}; load it with {loader}()")


def _source_path(src) -> Path:
    path = Path(src)
    if path.is_file():
        return path
    if path.exists():
        raise InputError(f"{src}: is a directory; expected a .jsonl, .json or .yaml file")
    if not path.suffix and os.sep not in str(src):
        raise InputError(
            f"{src}: unknown split; valid splits are {', '.join(SPLITS)} (or give a path to a .jsonl/.json/.yaml file)"
        )
    raise InputError(f"{src}: file not found")


def _read(path: Path) -> list:
    """The records of a .jsonl, .json or .yaml file (a single mapping counts as one record)."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: not UTF-8 text (byte {e.start})") from None
    if path.suffix == ".jsonl":
        records = []
        for lineno, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise InputError(
                    f"{where(path, len(records))}: invalid JSON on line {lineno} column {e.colno}: {e.msg}"
                ) from None
    elif path.suffix == ".json":
        try:
            records = json.loads(text)
        except json.JSONDecodeError as e:
            raise InputError(f"{path}: invalid JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
    elif path.suffix in (".yaml", ".yml"):
        try:
            records = yaml.safe_load(text)
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            at = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
            raise InputError(f"{path}: invalid YAML{at}: {getattr(e, 'problem', None) or e}") from None
    else:
        raise InputError(f"{path}: unsupported file type {path.suffix!r}; expected .jsonl, .json or .yaml")
    if isinstance(records, dict):
        records = [records]
    if not isinstance(records, list):
        raise InputError(f"{path}: expected a list of records, got {type(records).__name__}")
    if not records:
        raise InputError(f"{path}: holds no records; expected at least one")
    return records


def _kind(rec: dict, path: Path) -> str:
    """What a file of our own holds, judged by the keys of its first record."""
    if "user_prompt_mult" in rec:
        return "multi-games"
    if "collective" in rec or "independent" in rec:
        return "multi-items"
    if "compliant" in rec or "violating" in rec:
        return "single-items"
    raise InputError(
        f"{where(path, 0)}: unrecognised record (keys {sorted(rec)[:8]}); expected "
        "single items (compliant/violating), multi items or games (collective/"
        "independent), or an upstream ATP file"
    )
