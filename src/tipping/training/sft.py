"""Fine-tuning on kept high-reward trajectories: the weight-level self-evolution step.

Round r continues round r-1's adapter (loaded trainable, trained further) on the turns that
`tipping evolve filter` kept. Each kept turn is a conversation ending in the agent's answer; the
loss covers that answer only (TRL's prompt-completion format with completion-only loss, which
works with any chat template, unlike assistant masks that need {% generation %} markers).
`--method dpo` trains reward-ranked pairs of the same round instead (tipping.training.dpo).
"""

from __future__ import annotations

from trl import SFTConfig, SFTTrainer

from tipping.config import SFTParams
from tipping.errors import InputError
from tipping.outputs import read_jsonl
from tipping.training.common import fit, load_tokenizer, resolve_device
from tipping.training.pairs import check_messages


def read_trajectories(path) -> list[dict]:
    """Kept turns ({"messages": [..., assistant answer], ...}) as prompt/completion rows."""
    rows = read_jsonl(path)
    if not rows:
        raise InputError(f"{path}: holds no trajectories (did `tipping evolve filter` keep none?)")
    out = []
    for line, row in enumerate(rows, 1):
        if not isinstance(row, dict) or "messages" not in row:
            raise InputError(f"{path} line {line}: missing field 'messages'")
        messages = row["messages"]
        check_messages(messages, f"{path} line {line} field 'messages'")
        if messages[-1]["role"] != "assistant" or len(messages) < 2:
            raise InputError(
                f"{path} line {line} field 'messages': must end with the assistant's answer "
                "after at least one prompt message"
            )
        out.append({"prompt": messages[:-1], "completion": messages[-1:]})
    return out


def within_length(rows: list[dict], tokenizer, max_length: int, data) -> tuple[list[dict], int]:
    """The rows whose whole conversation fits `max_length` tokens, and how many were skipped: TRL
    cuts longer rows at the end, which is the answer, so the model would learn a decision-less
    (or cut-off) answer."""
    kept = [
        r
        for r in rows
        if len(
            tokenizer(
                tokenizer.apply_chat_template(r["prompt"] + r["completion"], tokenize=False), add_special_tokens=False
            )["input_ids"]
        )
        <= max_length
    ]
    if not kept:
        raise InputError(
            f"{data}: every one of the {len(rows)} kept turns is longer than sft.max_length "
            f"{max_length} tokens; raise max_length"
        )
    return kept, len(rows) - len(kept)


def train_sft(
    model: str, data, out, params: SFTParams, *, device: str = "auto", init_adapter=None, save_steps: int = 50
) -> dict:
    tokenizer = load_tokenizer(model)
    rows, skipped = within_length(read_trajectories(data), tokenizer, params.max_length, data)
    return fit(
        "sft",
        model,
        rows,
        out,
        params,
        tokenizer,
        device=resolve_device(device),
        data=data,
        config_class=SFTConfig,
        trainer_class=SFTTrainer,
        lora=params.lora,
        init_adapter=init_adapter,
        save_steps=save_steps,
        config_fields={"max_length": params.max_length, "completion_only_loss": True},
        skipped_too_long=skipped,
    )
