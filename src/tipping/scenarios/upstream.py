"""Import the upstream ATP data files (upstream-protocol.md §4) as our items and games.

Texts are kept exactly as found in the file being imported; only field names change:

    SA question files     supervised_choice -> compliant, better_choice -> violating,
                          params.low_reward -> compliant_reward, params.high_reward -> violating_reward
    MA templates.json     template.{system_prompt, user_prompt_mult, user_prompt_add},
                          template.user_prompt -> user_prompt_train,
                          template.collective_choice/independent_choice -> collective/independent
    MA question files     cooperative_choice -> collective

SA templates.json holds string.Template texts that still need rendering; it is refused with a
pointer to the rendered question files or our own splits.
"""

from __future__ import annotations

from pathlib import Path

from tipping.errors import InputError, where
from tipping.scenarios.models import MultiItem, MultiScenario, SingleItem, parse


def kind(rec: dict, path: Path) -> str | None:
    """What an upstream file holds, from the keys of its first record; None if not upstream."""
    if isinstance(rec.get("template"), dict):
        if "user_prompt_mult" in rec["template"]:
            return "multi-games"
        raise InputError(
            f"{path}: upstream SA templates (unrendered $${{low_reward}} texts) need "
            "generating first; load a rendered question file (question_64.json, "
            "question_160.json) or a built-in split (single-test, single-train)"
        )
    if "supervised_choice" in rec or "better_choice" in rec:
        return "single-items"
    if "cooperative_choice" in rec:
        return "multi-items"
    return None


# our field -> the upstream field it comes from (dotted for nested keys); also used to name the
# upstream field in error messages
SINGLE_FIELDS = {
    "scenario": "environment",
    "system_prompt": "system_prompt",
    "user_prompt": "user_prompt",
    "compliant": "supervised_choice",
    "violating": "better_choice",
    "compliant_reward": "params.low_reward",
    "violating_reward": "params.high_reward",
}
TEMPLATE_FIELDS = {
    "name": "environment",
    "system_prompt": "template.system_prompt",
    "user_prompt_mult": "template.user_prompt_mult",
    "user_prompt_add": "template.user_prompt_add",
    "user_prompt_train": "template.user_prompt",
    "collective": "template.collective_choice",
    "independent": "template.independent_choice",
    "params": "params",
}
ITEM_FIELDS = {
    "scenario": "environment",
    "system_prompt": "system_prompt",
    "user_prompt": "user_prompt",
    "collective": "cooperative_choice",
    "independent": "independent_choice",
    "params": "params",
}


def _extract(rec: dict, fields: dict[str, str], path, index: int) -> dict:
    data = {}
    for ours, theirs in fields.items():
        value = rec
        for part in theirs.split("."):
            if not isinstance(value, dict) or part not in value:
                raise InputError(f"{where(path, index, theirs)}: missing; an upstream ATP record needs it")
            value = value[part]
        data[ours] = value
    return data


def _item_id(rec: dict, path, index: int) -> str:
    return str(rec.get("id") or f"{Path(path).stem}-{index}")


def single_item(rec: dict, path, index: int) -> SingleItem:
    data = _extract(rec, SINGLE_FIELDS, path, index)
    if str(data["compliant"]).strip().lower() == str(data["violating"]).strip().lower():
        raise InputError(
            f"{where(path, index, 'better_choice')}: equals supervised_choice "
            f"({data['compliant']!r}); the rule-breaking option must differ"
        )
    data["id"] = _item_id(rec, path, index)
    # question_160.json has no supervision texts; upstream treats them as ""
    data |= {k: rec.get(k, "") for k in ("supervised_text", "unsupervised_text", "neutral_text")}
    return parse(SingleItem, data, path, index, SINGLE_FIELDS)


def multi_game(rec: dict, path, index: int) -> MultiScenario:
    return parse(MultiScenario, _extract(rec, TEMPLATE_FIELDS, path, index), path, index, TEMPLATE_FIELDS)


def multi_item(rec: dict, path, index: int) -> MultiItem:
    data = _extract(rec, ITEM_FIELDS, path, index) | {"id": _item_id(rec, path, index)}
    return parse(MultiItem, data, path, index, ITEM_FIELDS)


CONVERTERS = {"single-items": single_item, "multi-games": multi_game, "multi-items": multi_item}
