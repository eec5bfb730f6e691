"""Everything derived from sha256 is pinned: seeds, split RNGs, item splits and policy ids are written
into records, run folders, cache keys and cache file names, so a changed derivation would silently
change every sampled answer, every split and every cache (values computed before the hashing module
gathered them; test_testbed_protocol.py and test_cache_key.py pin the turn seeds and cache keys)."""

from __future__ import annotations

import pytest

from tipping.hashing import derive_rng, derive_seed, sha256_hex, sha256_json, split_rng
from tipping.policies.local import policy_id
from tipping.scenarios.generator import make_split

SPLITS = {
    "single-test": "7a5847d7bc98ad34ad6bcab79ad384f9b1cf913377e2511ff00ad8cc817d8f2b",
    "single-train": "b2ea09dcf2cf544f3d0917428574385c9b241d65c2c3c58c9014a733cddd52e5",
    "multi-eval": "635db1576e7974e3d66b9b006b46c2a4f60fd269c6b87cd9465b76d64e5c1ba1",
    "multi-train": "12eee4c7a9e232cfc6784e35b10d9a9dfe4d4465d8fa3aa2e512d61ef2d882af",
}


def test_digests_are_sha256_of_the_chunks_in_order():
    assert sha256_hex(b"run/", b"episode") == sha256_hex(b"run/episode")
    assert sha256_hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert sha256_json({"b": "caf\u00e9", "a": 1}) == "8d6facd61fc966b6ad219afcb605319c28593f4cf08b92d7f362ec8150201766"


def test_seeded_generators_are_pinned():
    assert derive_seed(7, "i1", 1, 0) == 1429780589
    assert derive_rng(3, "confederates").sample(range(20), 4) == [1, 16, 3, 8]
    # the split generator's RNG takes the digest's full 64 bits, not derive_seed's 31
    rng = split_rng(0, "single-test", "x", 1, 0)
    assert rng.getrandbits(64) == 13374747389965964048
    assert split_rng(0, "single-test", "x", 1, 0).random() == 0.5136882716793306


@pytest.mark.parametrize("name", SPLITS)
def test_item_splits_are_pinned(name):
    assert sha256_json([item.model_dump(mode="json") for item in make_split(name, 0)]) == SPLITS[name]


def test_policy_ids_are_pinned(tmp_path):
    model, adapter = tmp_path / "tiny-model", tmp_path / "dpo-round1"
    model.mkdir()
    adapter.mkdir()
    (model / "config.json").write_text('{"model_type": "llama"}')
    (model / "model.safetensors").write_bytes(b"\0" * 1000)  # only its name and size count
    (adapter / "adapter_config.json").write_text('{"r": 8}')
    (adapter / "adapter_model.safetensors").write_bytes(b"\1" * 100)
    (adapter / "README.md").write_text("not hashed")
    assert (
        policy_id("transformers", str(model), str(adapter), "torch.float32", "packed")
        == "transformers:tiny-model@0fb15fd46e89+dpo-round1@598f857da2bd/float32/packed"
    )
    assert (
        policy_id("vllm", "HuggingFaceTB/SmolLM2-135M-Instruct", None, "bfloat16", "ctx8192")
        == "vllm:HuggingFaceTB/SmolLM2-135M-Instruct@b68b303bbb4c/bfloat16/ctx8192"
    )
