"""The transformers backend's token sampler draws from the distribution its settings define."""

import math

import pytest
import torch
from scipy.stats import chisquare

from tipping.policies.base import Sampling
from tipping.policies.transformers_backend import TransformersPolicy, nucleus

LOGITS = torch.tensor([1.0, -0.5, 2.0, 0.3, -2.0, 1.5, 0.0])
DRAWS = 20_000


def target(s: Sampling) -> list[float]:
    """The distribution by its definition, in plain Python: the k largest logits kept, softmax at
    the temperature over them, then the smallest most-likely-first head whose mass reaches top_p,
    renormalised (the order of transformers' and vLLM's samplers)."""
    ranked = sorted(range(len(LOGITS)), key=lambda i: -LOGITS[i].item())
    kept = ranked[: s.top_k] if s.top_k else ranked
    weights = {i: math.exp(LOGITS[i].item() / s.temperature) for i in kept}
    probs = {i: w / sum(weights.values()) for i, w in weights.items()}
    head, mass = [], 0.0
    for i in kept:
        if mass >= s.top_p:
            break
        head.append(i)
        mass += probs[i]
    return [probs[i] / mass if i in head else 0.0 for i in range(len(LOGITS))]


@pytest.mark.parametrize(
    "sampling",
    [
        Sampling(temperature=1.0, top_p=1.0),  # vocabulary-order CDF, no sort
        Sampling(temperature=0.5, top_p=1.0),
        Sampling(temperature=1.0, top_p=1.0, top_k=3),  # top-k without a sort
        Sampling(temperature=0.8, top_p=0.8),  # sorted: the nucleus
        Sampling(temperature=1.0, top_p=0.9, top_k=4),
    ],
    ids=["plain", "cold", "top-k", "top-p", "top-k+top-p"],
)
def test_draws_follow_the_distribution_and_never_pick_a_cut_token(sampling):
    expected = target(sampling)
    generators = [torch.Generator().manual_seed(seed) for seed in range(DRAWS)]
    picked = TransformersPolicy._pick(LOGITS.expand(DRAWS, -1), sampling, generators)
    counts = [picked.count(i) for i in range(len(LOGITS))]
    assert all(c == 0 for c, p in zip(counts, expected) if p == 0), counts
    kept = [i for i, p in enumerate(expected) if p > 0]
    result = chisquare([counts[i] for i in kept], [expected[i] * DRAWS for i in kept])
    assert result.pvalue > 1e-3, (counts, expected)


def test_a_row_draws_the_same_token_whatever_its_batch():
    sampling = Sampling(temperature=1.0, top_p=1.0)
    alone = [TransformersPolicy._pick(LOGITS[None], sampling, [torch.Generator().manual_seed(s)])[0] for s in range(50)]
    batch = TransformersPolicy._pick(
        LOGITS.expand(50, -1), sampling, [torch.Generator().manual_seed(s) for s in range(50)]
    )
    assert batch == alone
    assert len(set(alone)) > 3  # it does sample


def test_temperature_zero_is_greedy():
    assert TransformersPolicy._pick(LOGITS.expand(3, -1), Sampling(temperature=0.0), [None] * 3) == [2, 2, 2]


def topk_last_ids_first(probs, k, dim=-1):
    """A top-k as torch.topk's contract allows on other devices: among tied values, the highest ids
    first (the CPU kernel happens to take the lowest)."""
    values, flipped = probs.flip(-1).sort(dim=-1, descending=True, stable=True)
    return values[:, :k], probs.shape[-1] - 1 - flipped[:, :k]


@pytest.mark.parametrize("topk", ["cpu", "ties-reversed"])
@pytest.mark.parametrize("temperature", [0.3, 0.6, 1.0, 3.0])
def test_the_nucleus_equals_the_fully_sorted_vocabulary_bit_for_bit(temperature, topk, monkeypatch):
    """Rows whose heads are short, long (past the first candidates) and the whole vocabulary,
    with ties: the same probabilities and token ids as a stable sort of all 49k tokens."""
    if topk == "ties-reversed":
        monkeypatch.setattr(torch, "topk", topk_last_ids_first)
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(16, 49_152, generator=generator) * 4
    logits[3] = 0.0  # a flat row: every token tied, the head is most of the vocabulary
    logits[4, :600] = 30.0  # 600 tied leaders: the head ends inside the tie, past the first candidates
    logits[6, 1000:1200], logits[6, 20000:20100] = 30.0, 29.0  # at T = 1, top-p 0.9: the head ends in
    # the second tie group, which the 256th candidate splits: topk's pick among ties is not the id order
    logits[5] = torch.randn(49_152, generator=generator) * 0.1  # nearly flat: k grows twice
    probs = (logits / temperature).softmax(-1)
    for top_p in (0.5, 0.9, 0.95):
        values, ids = nucleus(probs, top_p)
        full, order = probs.sort(dim=-1, descending=True, stable=True)
        full = full * ((full.cumsum(-1) - full) < top_p)
        width = values.shape[-1]
        assert torch.equal(values, full[:, :width]) and not full[:, width:].any()
        kept = values > 0
        assert torch.equal(ids[kept], order[:, :width][kept])
        assert torch.equal(values.cumsum(-1), full.cumsum(-1)[:, :width])  # the CDF the draw reads


def test_a_row_gets_the_same_head_alone_and_in_any_batch():
    spread = torch.arange(1, 9)[:, None]  # from flat rows (long heads) to peaked ones
    probs = (torch.randn(8, 5_000, generator=torch.Generator().manual_seed(1)) * spread).softmax(-1)
    together = nucleus(probs, 0.95)
    for row in range(8):
        alone = nucleus(probs[row : row + 1], 0.95)
        width = alone[0].shape[-1]
        assert torch.equal(alone[0][0], together[0][row, :width]) and not together[0][row, width:].any()
        assert torch.equal(alone[1][0][alone[0][0] > 0], together[1][row, :width][alone[0][0] > 0])
