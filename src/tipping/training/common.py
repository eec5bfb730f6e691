"""What the DPO, GRPO and SFT steps share: params, host switches, model + tokenizer loading,
LoRA, and the output folder (its contract is in tipping.training).

Crash safety: a run works in OUT.partial/ (checkpoints/, then final/) and OUT appears, complete,
by one rename. A rerun after a crash or `kill -9` resumes from the newest complete checkpoint
when its resolved config (params, model, data hash, ...) is unchanged, and starts afresh
otherwise; OUT.partial/ is removed once OUT is in place.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import torch
from datasets import Dataset
from peft import LoraConfig, PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

from tipping.config import LoraParams, load_yaml, parse_section
from tipping.errors import InputError
from tipping.hashing import sha256_json
from tipping.outputs import atomic_write_text, output_lock, versions, write_json, write_jsonl
from tipping.policies.local import check_model
from tipping.training import MARKER, check_adapter

# TRL switches per host kind (training-stack.md §6), picked by --device, never branched on in the
# trainers. CPU: fp32 (bitwise-reproducible; TRL's bf16 default fails without a GPU) and no
# activation checkpointing (it only costs time at CPU model sizes). GPU: the paper's bf16.
HOSTS = {
    "cpu": {
        "dtype": torch.float32,
        "args": {"use_cpu": True, "bf16": False, "gradient_checkpointing": False, "dataloader_pin_memory": False},
    },
    "cuda": {
        "dtype": torch.bfloat16,
        "args": {"use_cpu": False, "bf16": True, "gradient_checkpointing": True, "dataloader_pin_memory": True},
    },
}


# command-line flag -> params field; flags left unset (None) keep the --params / default value
def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda: no CUDA GPU visible on this host; use --device cpu")
    return device


def load_params(model, params_file, section: str, flags: dict, defaults: dict | None = None):
    """Params from params_file (a full params.yaml holding a `section:` mapping, or that section's
    fields at the top level), over `defaults`, under `flags` (field -> value, the command line's)."""
    data, source = dict(defaults or {}), "defaults"
    if params_file:
        raw = load_yaml(params_file)
        source = str(params_file)
        if section in raw:
            raw, source = raw[section], f"{params_file} ({section}:)"
            if not isinstance(raw, dict):
                raise InputError(f"{params_file}: section {section!r} must be a mapping of parameters")
        data.update(raw)
    return parse_section(model, {**data, **flags}, source + (" + flags" if flags else ""))


def load_tokenizer(model: str):
    """The model's tokenizer, with a chat template (training data is conversational)."""
    check_model(model)  # names what is missing: config, tokenizer, weights
    try:
        tokenizer = AutoTokenizer.from_pretrained(model)
    except (OSError, ValueError) as exc:
        raise InputError(f"{model}: cannot load the tokenizer ({str(exc).splitlines()[0]})") from None
    if not tokenizer.chat_template:
        raise InputError(f"{model}: the tokenizer has no chat template; the training data is conversational")
    if tokenizer.pad_token is None:  # e.g. Llama-3.1 ships none; padding is masked anyway
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def lora_config(lora: LoraParams) -> LoraConfig:
    return LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=lora.target_modules,
        task_type="CAUSAL_LM",
    )


def load_model(model: str, device: str, lora: LoraParams | None, init_adapter=None):
    """(model, peft_config) for a TRL trainer. With `init_adapter`, that adapter is loaded
    trainable and training continues it (its own rank/alpha apply; TRL's DPO and GRPO freeze a
    copy of it as the reference). Otherwise a fresh LoRA, or full-parameter when lora is None."""
    net = AutoModelForCausalLM.from_pretrained(model, dtype=HOSTS[device]["dtype"])
    if init_adapter:
        return PeftModel.from_pretrained(net, str(check_adapter(init_adapter)), is_trainable=True), None
    return net, lora_config(lora) if lora else None


def trl_args(config_class, params, device: str, out, save_steps: int, **method_fields):
    """A TRL config: the schedule from `params`, the host switches, the method's own fields.
    TRL's own checks (e.g. GRPO's batch divisibility) become one InputError line."""
    try:
        return config_class(
            output_dir=str(work_dir(out) / "checkpoints"),
            num_train_epochs=params.epochs,
            max_steps=params.max_steps,
            learning_rate=params.learning_rate,
            per_device_train_batch_size=params.batch_size,
            gradient_accumulation_steps=params.grad_accum,
            lr_scheduler_type=params.lr_scheduler,
            warmup_steps=getattr(params, "warmup_ratio", 0.0),  # a float < 1 is a fraction of the steps
            seed=params.seed,
            logging_steps=1,
            report_to="none",
            disable_tqdm=True,
            dataloader_num_workers=0,
            save_strategy="steps" if save_steps else "no",
            save_steps=save_steps or 1,
            save_total_limit=2,
            **HOSTS[device]["args"],
            **method_fields,
        )
    except ValueError as exc:
        shown = {k: getattr(params, k) for k in ("batch_size", "grad_accum", "num_generations") if hasattr(params, k)}
        raise InputError(
            f"TRL rejects these params ({', '.join(f'{k}={v}' for k, v in shown.items())}): "
            f"{' '.join(str(exc).split())}"
        ) from None


def run_config(method: str, model: str, params, device: str, rows: list, *, data, init_adapter=None, **extra) -> dict:
    """The resolved config written to train_config.json; its hash decides whether a rerun may
    resume the checkpoints in OUT.partial."""
    return {
        "method": method,
        "model": str(model),
        "init_adapter": str(check_adapter(init_adapter)) if init_adapter else None,
        "data": str(data),
        "data_rows": len(rows),
        "data_sha256": sha256_json(rows),
        "device": device,
        "seed": params.seed,
        "params": params.model_dump(mode="json"),
        **extra,
    }


def fit(
    method: str,
    model: str,
    rows: list[dict],
    out,
    params,
    tokenizer,
    *,
    device: str,
    data,
    config_class,
    trainer_class,
    lora: LoraParams | None,
    init_adapter=None,
    save_steps: int = 50,
    config_fields: dict | None = None,
    trainer_fields: dict | None = None,
    **run_extra,
) -> dict:
    """One TRL training run into OUT: the config, the (resumable) trainer, the output contract."""
    args = trl_args(config_class, params, device, out, save_steps, **(config_fields or {}))
    config = run_config(method, model, params, device, rows, data=data, init_adapter=init_adapter, **run_extra)

    def make_trainer():
        net, peft_config = load_model(model, device, lora, init_adapter)
        return trainer_class(
            model=net,
            args=args,
            train_dataset=Dataset.from_list(rows),
            processing_class=tokenizer,
            peft_config=peft_config,
            **(trainer_fields or {}),
        )

    return train(out, config, make_trainer, tokenizer)


def work_dir(out) -> Path:
    out = Path(out)
    return out.with_name(out.name + ".partial")


@contextmanager
def staged(out):
    """Yield OUT.partial (locked); the caller writes OUT.partial/final, which then replaces OUT
    by one rename, so OUT is either absent, the previous version, or complete."""
    out = Path(out)
    work = work_dir(out)
    with output_lock(work):
        yield work
        previous = work / "previous"
        shutil.rmtree(previous, ignore_errors=True)
        if out.exists():
            os.replace(out, previous)
        os.replace(work / "final", out)
    shutil.rmtree(work)


def _resume_point(checkpoints: Path) -> Path | None:
    """The newest complete checkpoint. A kill while saving leaves one without trainer_state.json
    (the trainer's last write): such a folder is removed, never resumed."""
    complete = []
    for folder in checkpoints.glob("checkpoint-*"):
        if (folder / "trainer_state.json").is_file():
            complete.append(folder)
        else:
            shutil.rmtree(folder)
    return max(complete, key=lambda f: int(f.name.rsplit("-", 1)[1]), default=None)


def train(out, config: dict, make_trainer: Callable, tokenizer) -> dict:
    """Run a trainer into OUT (see the module docstring); returns train_config.json's content."""
    with staged(out) as work:
        stamp, key = work / "config.sha256", sha256_json(config)
        if not stamp.is_file() or stamp.read_text() != key:  # checkpoints of another config: start afresh
            for child in work.iterdir():
                if child.is_dir():
                    shutil.rmtree(child)
                elif child.name != ".lock":
                    child.unlink()
            atomic_write_text(stamp, key)
        resume = _resume_point(work / "checkpoints")
        trainer = make_trainer()
        started = time.perf_counter()
        trainer.train(resume_from_checkpoint=str(resume) if resume else None)
        final = work / "final"
        shutil.rmtree(final, ignore_errors=True)
        save(trainer.model, tokenizer, final)
        write_jsonl(final / "train_log.jsonl", trainer.state.log_history)
        result = {
            **config,
            "resumed_from": resume.name if resume else None,
            "global_step": trainer.state.global_step,
            "train_wall_s": round(time.perf_counter() - started, 3),
            "versions": versions(),
        }
        write_json(final / MARKER, result)  # last: the completion marker
    return result


def save(model, tokenizer, folder: Path) -> None:
    """The trained adapter only ('default'; TRL's frozen 'ref' copy is not part of the result) or
    the full model, plus the tokenizer so the folder is self-contained."""
    model.save_pretrained(folder, **({"selected_adapters": ["default"]} if isinstance(model, PeftModel) else {}))
    tokenizer.save_pretrained(folder)
    config = folder / "adapter_config.json"
    if config.is_file():  # PEFT writes target_modules from a set: sort it, so equal runs give equal files
        data = json.loads(config.read_text())
        if isinstance(data.get("target_modules"), list):
            data["target_modules"] = sorted(data["target_modules"])
        atomic_write_text(config, json.dumps(data, indent=2, sort_keys=True) + "\n")


def merge(model: str, adapter, out) -> Path:
    """Base + adapter -> a plain model folder (any backend serves it, vLLM included)."""
    tokenizer = load_tokenizer(model)
    check_adapter(adapter)
    base = AutoModelForCausalLM.from_pretrained(model, dtype="auto")  # keep the checkpoint's dtype
    merged = PeftModel.from_pretrained(base, str(adapter)).merge_and_unload()
    with staged(out) as work:
        final = work / "final"
        shutil.rmtree(final, ignore_errors=True)
        save(merged, tokenizer, final)
        write_json(final / "merge.json", {"model": str(model), "adapter": str(adapter), "versions": versions()})
    return Path(out)
