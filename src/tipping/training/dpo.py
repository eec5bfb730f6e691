"""LoRA-DPO on preference pairs: the paper's defence (upstream-protocol.md §5.4, in TRL).

Defaults (tipping.config.DPOParams): LoRA r 8 / alpha 16 / dropout 0 on all linear layers,
sigmoid loss with beta 0.1, batch 1 x 8 accumulation, 12 epochs, cosine schedule with 10%
warmup. The reference is the frozen base (adapter disabled), or, when continuing an adapter,
a frozen copy of it. Also the `--method dpo` step of weight-level self-evolution.
"""

from __future__ import annotations

from trl import DPOConfig, DPOTrainer

from tipping.config import DPOParams
from tipping.training.common import fit, load_tokenizer, resolve_device
from tipping.training.pairs import PAIR_FIELDS, read_pairs


def train_dpo(
    model: str, pairs, out, params: DPOParams, *, device: str = "auto", init_adapter=None, save_steps: int = 50
) -> dict:
    rows = [{k: r[k] for k in PAIR_FIELDS} for r in read_pairs(pairs)]  # metadata columns stay out of TRL
    return fit(
        "dpo",
        model,
        rows,
        out,
        params,
        load_tokenizer(model),
        device=resolve_device(device),
        data=pairs,
        config_class=DPOConfig,
        trainer_class=DPOTrainer,
        lora=params.lora,
        init_adapter=init_adapter,
        save_steps=save_steps,
        config_fields={"beta": params.beta, "loss_type": [params.loss_type], "max_length": params.max_length},
    )
