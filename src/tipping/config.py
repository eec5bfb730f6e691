"""Pydantic models of params.yaml, validated once (at DAG build and by each command).

The numbers in params.yaml are the experiment; the defaults below mirror the paper so a
command run by hand without a params file still does what the paper did.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tipping.errors import InputError


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LoraParams(_Section):
    r: int = Field(8, ge=1)
    alpha: int = Field(16, ge=1)
    dropout: float = Field(0.0, ge=0, lt=1)
    target_modules: str | list[str] = "all-linear"


class DPOParams(_Section):
    """LLaMA-Factory LoRA-DPO settings of the paper (upstream-protocol.md §5.4)."""

    beta: float = Field(0.1, gt=0)
    loss_type: str = "sigmoid"
    epochs: float = Field(12.0, gt=0)
    max_steps: int = -1  # > 0 overrides epochs
    learning_rate: float = Field(5e-6, gt=0)  # Qwen3; Llama-3.1 uses 1e-5 (params.yaml per model)
    batch_size: int = Field(1, ge=1)
    grad_accum: int = Field(8, ge=1)
    lr_scheduler: str = "cosine"
    warmup_ratio: float = Field(0.1, ge=0, le=1)
    max_length: int = Field(4096, ge=16)
    lora: LoraParams = LoraParams()
    seed: int = 0


class GRPOParams(_Section):
    """TRL GRPO settings of the paper (upstream-protocol.md §5.5), LoRA by default."""

    num_generations: int = Field(4, ge=2)
    beta: float = Field(0.04, ge=0)
    epsilon: float = Field(0.2, gt=0)
    loss_type: str = "dapo"
    scale_rewards: str = "group"
    epochs: float = Field(6.0, gt=0)
    max_steps: int = -1
    learning_rate: float = Field(1e-6, gt=0)  # single; multi uses 5e-6
    batch_size: int = Field(4, ge=1)  # completions per device step (a multiple of num_generations)
    grad_accum: int = Field(4, ge=1)
    max_prompt_length: int = Field(1024, ge=16)
    max_completion_length: int = Field(2048, ge=1)
    temperature: float = Field(1.0, gt=0)
    lr_scheduler: str = "linear"
    full_parameter: bool = False
    use_vllm: bool = False  # TRL's vLLM generation: GPU hosts only (its weight sync fails on CPU)
    rewards: tuple[float, float, float] = (1.0, 0.1, 0.0)  # aligned, deviant, unparseable
    lora: LoraParams = LoraParams()
    seed: int = 42


class SFTParams(_Section):
    """Fine-tuning on kept high-reward trajectories (the weight-level self-evolution step)."""

    epochs: float = Field(1.0, gt=0)
    max_steps: int = -1
    learning_rate: float = Field(1e-5, gt=0)
    batch_size: int = Field(1, ge=1)
    grad_accum: int = Field(8, ge=1)
    lr_scheduler: str = "cosine"
    warmup_ratio: float = Field(0.1, ge=0, le=1)
    max_length: int = Field(4096, ge=16)
    lora: LoraParams = LoraParams()
    seed: int = 0


Device = Literal["auto", "cpu", "cuda"]


def load_yaml(path: Path) -> dict:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" line {mark.line + 1}" if mark else ""
        raise InputError(f"{path}{at}: invalid YAML ({getattr(exc, 'problem', exc)})") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a mapping of sections at the top level")
    return data


def validation_message(source: str, exc: ValidationError) -> str:
    """A pydantic error as one line: 'FILE: field a.b: what is wrong'."""
    err = exc.errors()[0]
    field = ".".join(str(x) for x in err["loc"]) or "(top level)"
    extra = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{source}: field {field}: {err['msg']}{extra}"


def parse_section(model: type[BaseModel], data: dict, source: str):
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InputError(validation_message(source, exc)) from None
