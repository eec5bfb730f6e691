"""Model folders: the deterministic tiny build, folder checks, names, sampling defaults."""

import hashlib
import json

import pytest

from tipping.cli import main
from tipping.errors import InputError
from tipping.policies.models import (
    HUB_MODELS,
    MODEL_NAMES,
    build_tiny_qwen3,
    prepare,
    sampling_defaults,
    validate_model_dir,
)


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_tiny_build_is_bitwise_deterministic(tmp_path):
    a, b = build_tiny_qwen3(tmp_path / "a"), build_tiny_qwen3(tmp_path / "b")
    for name in ("model.safetensors", "tokenizer.json", "config.json", "chat_template.jinja"):
        assert sha256(a / name) == sha256(b / name), name
    assert validate_model_dir(a) == a


def test_tiny_template_handles_thinking_like_qwen3(tmp_path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(build_tiny_qwen3(tmp_path / "m"))
    messages = [{"role": "user", "content": 'Answer {"choice": "comply"}'}]
    plain = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    off = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, enable_thinking=False)
    assert plain.endswith("<|im_start|>assistant\n")
    assert off == plain + "<think>\n\n</think>\n\n"


def test_prepare_keeps_a_complete_folder_and_leaves_no_partial(tmp_path):
    (tmp_path / ".tiny.partial-999999999" / "half").mkdir(parents=True)  # a killed prepare's leftovers
    out = prepare("tiny-qwen3", tmp_path / "tiny")
    before = sha256(out / "model.safetensors")
    assert prepare("tiny-qwen3", out) == out and sha256(out / "model.safetensors") == before
    assert json.loads((out / "config.json").read_text())["tipping_model"] == "tiny-qwen3"
    assert [p.name for p in tmp_path.iterdir()] == ["tiny"]  # the temporary build folder is gone
    with pytest.raises(InputError, match=r"tiny already holds another model \(tiny-qwen3\), not smollm2"):
        prepare("smollm2-135m-instruct", out)


def test_prepare_refuses_an_incomplete_folder(tmp_path):
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "config.json").write_text("{}")
    with pytest.raises(InputError, match=r"half exists but is not a complete model folder.*tokenizer"):
        prepare("tiny-qwen3", tmp_path / "half")


def test_unknown_name_lists_the_valid_ones(tmp_path):
    with pytest.raises(InputError) as exc:
        prepare("gpt-5", tmp_path / "x")
    assert all(name in str(exc.value) for name in MODEL_NAMES)
    assert main(["model", "prepare", "gpt-5", "--out", str(tmp_path / "x")]) == 2


def test_hub_model_offline_names_the_hub_id(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(InputError, match=r"Qwen/Qwen3-8B: cannot download, this host can't reach"):
        prepare("qwen3-8b", tmp_path / "qwen3-8b")
    assert list(tmp_path.iterdir()) == []


def test_validate_missing_folder(tmp_path):
    with pytest.raises(InputError, match=rf"{tmp_path / 'nope'}: no such model folder; run `tipping model prepare"):
        validate_model_dir(tmp_path / "nope")


@pytest.mark.parametrize(
    "drop, missing", [("tokenizer.json", "tokenizer"), ("model.safetensors", "weights"), ("config.json", "config.json")]
)
def test_validate_names_the_missing_part(tmp_path, drop, missing):
    out = build_tiny_qwen3(tmp_path / "m")
    (out / drop).unlink()
    with pytest.raises(InputError) as exc:
        validate_model_dir(out)
    assert str(out) in str(exc.value) and missing in str(exc.value) and "tipping model prepare" in str(exc.value)


def test_sampling_defaults_follow_the_paper(tmp_path):
    qwen = sampling_defaults("qwen3-8b")
    assert (qwen.temperature, qwen.top_p, qwen.top_k, qwen.enable_thinking) == (0.6, 0.95, 20, True)
    assert qwen.max_new_tokens == 32768
    assert sampling_defaults(HUB_MODELS["qwen3-8b"]) == qwen
    llama = sampling_defaults("meta-llama/Llama-3.1-8B-Instruct")
    assert (llama.temperature, llama.top_p, llama.top_k) == (0.6, 0.9, None)
    # the tiny model is a Qwen3 by architecture, but its stamp makes it a short-answer test model
    tiny = sampling_defaults(build_tiny_qwen3(tmp_path / "m"))
    assert (tiny.temperature, tiny.top_p, tiny.max_new_tokens, tiny.enable_thinking) == (0.6, 0.95, 256, None)
    assert sampling_defaults({"model_type": "qwen3"}) == qwen  # an unstamped (e.g. downloaded) Qwen3
    assert sampling_defaults({"model_type": "gpt2"}).max_new_tokens == 256
