"""SFT never trains on a kept turn cut by max_length: such turns are skipped and counted."""

from __future__ import annotations

import json

import pytest

from tipping.config import SFTParams
from tipping.errors import InputError
from tipping.training.common import load_tokenizer
from tipping.training.sft import train_sft, within_length


def _row(words: int) -> dict:
    return {
        "messages": [
            {"role": "system", "content": "You are an employee."},
            {"role": "user", "content": "Round 1 " * words + "Answer in JSON."},
            {"role": "assistant", "content": '{"choice": "comply"}'},
        ]
    }


def test_turns_longer_than_max_length_are_skipped_and_counted(tiny_model, tmp_path):
    data = tmp_path / "kept.jsonl"
    data.write_text("".join(json.dumps(_row(w)) + "\n" for w in (2, 3, 200)))
    tok = load_tokenizer(str(tiny_model))
    rows = [{"prompt": r["messages"][:-1], "completion": r["messages"][-1:]} for r in map(_row, (2, 3, 200))]
    lengths = [
        len(
            tok(tok.apply_chat_template(r["prompt"] + r["completion"], tokenize=False), add_special_tokens=False)[
                "input_ids"
            ]
        )
        for r in rows
    ]
    limit = lengths[1]  # the two short rows fit exactly, the long one does not
    assert lengths[2] > limit
    kept, skipped = within_length(rows, tok, limit, data)
    assert (kept, skipped) == (rows[:2], 1)
    result = train_sft(
        str(tiny_model),
        data,
        tmp_path / "adapter",
        SFTParams(max_length=limit, max_steps=1, grad_accum=1, warmup_ratio=0.0),
        device="cpu",
        save_steps=0,
    )
    assert (result["data_rows"], result["skipped_too_long"]) == (2, 1)
    with pytest.raises(InputError, match=r"every one of the 3 kept turns is longer than sft.max_length 16 tokens"):
        within_length(rows, tok, 16, data)
