"""LoRA-DPO on preference pairs: the paper's defence (upstream-protocol.md §5.4, in TRL).

Defaults (tipping.config.DPOParams): LoRA r 8 / alpha 16 / dropout 0 on all linear layers,
sigmoid loss with beta 0.1, batch 1 x 8 accumulation, 12 epochs, cosine schedule with 10%
warmup. The reference is the frozen base (adapter disabled), or, when continuing an adapter,
a frozen copy of it. Also the `--method dpo` step of weight-level self-evolution.
"""

from __future__ import annotations

from datasets import Dataset
from trl import DPOConfig, DPOTrainer

from tipping.config import DPOParams
from tipping.training.common import (load_model, load_params, load_tokenizer, report, resolve_device, run_config,
                                     train, trl_args)
from tipping.training.pairs import PAIR_FIELDS, read_pairs


def train_dpo(model: str, pairs, out, params: DPOParams, *, device: str = "auto", init_adapter=None,
              save_steps: int = 50) -> dict:
    rows = [{k: r[k] for k in PAIR_FIELDS} for r in read_pairs(pairs)]  # metadata columns stay out of TRL
    tokenizer = load_tokenizer(model)
    device = resolve_device(device)
    args = trl_args(DPOConfig, params, device, out, save_steps, beta=params.beta, loss_type=[params.loss_type],
                    max_length=params.max_length)
    config = run_config("dpo", model, params, device, rows, data=pairs, init_adapter=init_adapter)

    def make_trainer():
        net, peft_config = load_model(model, device, params.lora, init_adapter)
        return DPOTrainer(model=net, args=args, train_dataset=Dataset.from_list(rows), processing_class=tokenizer,
                          peft_config=peft_config)

    return train(out, config, make_trainer, tokenizer)


def dpo_command(args) -> int:
    params = load_params(DPOParams, args, args.section or "dpo")
    report(train_dpo(args.model, args.pairs, args.out, params, device=args.device, init_adapter=args.init_adapter,
                     save_steps=args.save_steps), args.out)
    return 0
