"""What the training commands (align dpo/grpo, evolve finetune) share: flags -> parameters, the closing line."""

from __future__ import annotations

from tipping.training import MARKER
from tipping.training.common import load_params

# training flags -> the parameter fields they override (tipping.config's DPOParams, GRPOParams, SFTParams)
FLAGS = {
    "epochs": "epochs",
    "max_steps": "max_steps",
    "lr": "learning_rate",
    "beta": "beta",
    "batch_size": "batch_size",
    "grad_accum": "grad_accum",
    "seed": "seed",
    "num_generations": "num_generations",
    "max_completion_length": "max_completion_length",
}


def training_params(model, args, section: str, defaults: dict | None = None):
    """--params FILE's section (or --section's), over `defaults`, under the flags given."""
    flags = {field: getattr(args, flag) for flag, field in FLAGS.items() if getattr(args, flag, None) is not None}
    return load_params(model, args.params, args.section or section, flags, defaults)


def report(result: dict, out) -> None:
    resumed = f", resumed from {result['resumed_from']}" if result["resumed_from"] else ""
    print(
        f"{result['method']}: {result['global_step']} steps on {result['data_rows']} rows{resumed}; "
        f"wrote {out} (adapter, train_log.jsonl, {MARKER})"
    )
