"""GRPO with the testbeds' rule-based reward: the paper's second defence (upstream-protocol.md §5.5).

Defaults (tipping.config.GRPOParams): G 4 completions per prompt, beta 0.04, epsilon 0.2, loss
`dapo`, 6 epochs, completions up to 2048 tokens, lr 1e-6 (single) / 5e-6 (multi). LoRA by default
(upstream trained all parameters: `full_parameter: true`). Prompts are the system prompt plus
the plain item prompt; upstream appended a garbled "follow the rules half of the time" note that
contradicts the reward (§8.1 defect 12), we do not.
"""

from __future__ import annotations

from trl import GRPOConfig, GRPOTrainer

from tipping.config import GRPOParams
from tipping.errors import InputError
from tipping.testbeds.parsing import ParserMode
from tipping.training.common import fit, load_tokenizer, resolve_device
from tipping.training.pairs import Prompt
from tipping.training.rewards import ChoiceReward

PAPER_LR = {"single": 1e-6, "multi": 5e-6}  # the default when neither --params nor --lr sets one


def check_prompt_lengths(rows: list[dict], tokenizer, limit: int) -> None:
    """TRL 1.x dropped GRPO's prompt truncation; upstream cut prompts at 1024 tokens from the left,
    which would drop the system prompt. A prompt over the limit is refused instead."""
    for row in rows:
        text = tokenizer.apply_chat_template(row["prompt"], add_generation_prompt=True, tokenize=False)
        n = len(tokenizer(text, add_special_tokens=False)["input_ids"])
        if n > limit:
            raise InputError(f"item {row['item']}: prompt of {n} tokens exceeds grpo.max_prompt_length {limit}")


def train_grpo(
    model: str,
    prompts: list[Prompt],
    out,
    params: GRPOParams,
    *,
    device: str = "auto",
    init_adapter=None,
    parser: ParserMode = "robust",
    save_steps: int = 50,
    items=None,
) -> dict:
    device = resolve_device(device)
    if params.use_vllm and device != "cuda":
        raise InputError("grpo.use_vllm needs a CUDA host: TRL's vLLM weight sync fails on CPU; set use_vllm: false")
    if params.full_parameter and init_adapter:
        raise InputError("--init-adapter continues a LoRA adapter; it cannot be combined with grpo.full_parameter")
    if not prompts:
        raise InputError(f"{items}: no items to train on")
    rows = [{"prompt": list(p.messages), **p.meta()} for p in prompts]
    tokenizer = load_tokenizer(model)
    check_prompt_lengths(rows, tokenizer, params.max_prompt_length)
    return fit(
        "grpo",
        model,
        rows,
        out,
        params,
        tokenizer,
        device=device,
        data=items,
        config_class=GRPOConfig,
        trainer_class=GRPOTrainer,
        lora=None if params.full_parameter else params.lora,
        init_adapter=init_adapter,
        save_steps=save_steps,
        parser=parser,
        config_fields={
            "num_generations": params.num_generations,
            "beta": params.beta,
            "epsilon": params.epsilon,
            "loss_type": params.loss_type,
            "scale_rewards": params.scale_rewards,
            "max_completion_length": params.max_completion_length,
            "temperature": params.temperature,
            "use_vllm": params.use_vllm,
            "remove_unused_columns": False,
        },  # the reward reads the label columns
        trainer_fields={"reward_funcs": ChoiceReward(params.rewards, parser)},
    )
