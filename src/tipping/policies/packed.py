"""Packed forward passes: many token segments in one pass, each on its own cached prefix.

The transformers backend prefills and scores a whole round at once. Every segment (a prompt chunk,
or an answer continuing a prompt) is a run of new tokens that attends to its own past KV (prefix
trie nodes) and, causally, to itself. Segments are packed into passes of one sequence (batch 1, no
padding between them), so the linear layers run on many at once: one weight read per pass instead
of one per chunk and answer. The attention function registered here splits them back and attends
each unit (a segment, or the segments on one past: a turn's two answers) alone, on its past read
straight from the trie. Outside a packed pass (generation's decode steps) it is plain SDPA on the
grouped KV heads.

Batch invariance: a pass always has exactly `size` token rows (padded), and the LM head runs on
tiles of exactly HEAD_ROWS rows, so every matrix product has one shape whatever else is in the
pass; a row of a fixed-shape product depends only on its own content (CPU BLAS blocks by shape,
not by content: tests/integration/test_prefix_cache.py checks it end to end), and each unit's
attention has the shapes it would have alone. So a segment's floats do not depend on its batch,
order or pass: records are the same after a resume and across batch sizes.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

NAME = "tipping-packed"
HEAD_ROWS = 64
_PASS: contextvars.ContextVar[_Pass | None] = contextvars.ContextVar("tipping_packed_pass", default=None)


@dataclass
class Segment:
    tokens: Sequence[int]
    past: Sequence  # prefix-trie nodes whose KV precede the tokens, root side first
    start: int = field(default=0, init=False)  # offset in its pass

    @property
    def past_len(self) -> int:
        return self.past[-1].end if self.past else 0

    @property
    def end(self) -> int:
        return self.start + len(self.tokens)


Unit = Sequence[Segment]  # segments on one past, attended together (each sees the past and itself)


class _Pass:
    def __init__(self, units: Sequence[Unit], layers: int, device):
        self.units = units
        self.masks = [_unit_mask(unit, device) for unit in units]  # the same in every layer
        self.keys: list = [None] * layers  # per layer: the pass's new K and V, (1, kv_heads, size, head_dim)
        self.values: list = [None] * layers


def _attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    import torch

    run = _PASS.get()
    if run is None:  # decoding: SDPA on the grouped KV heads (transformers' CPU path copies them per step)
        if attention_mask is not None:
            attention_mask = attention_mask[:, :, :, : key.shape[-2]]
        causal = attention_mask is None and query.shape[2] > 1
        o = torch.nn.functional.scaled_dot_product_attention(
            query, key, value, attn_mask=attention_mask, is_causal=causal, scale=scaling, enable_gqa=True
        )
        return o.transpose(1, 2).contiguous(), None
    if kwargs.get("sliding_window"):
        raise NotImplementedError("packed passes do not support sliding-window attention layers")
    layer = module.layer_idx
    run.keys[layer], run.values[layer] = key, value
    out = query.new_zeros(query.shape[0], query.shape[2], query.shape[1], query.shape[3])  # padding rows stay 0
    for unit, mask in zip(run.units, run.masks):
        start, end, past = unit[0].start, unit[-1].end, unit[0].past
        keys = torch.cat([node.keys[layer] for node in past] + [key[:, :, start:end]], dim=-2)
        values = torch.cat([node.values[layer] for node in past] + [value[:, :, start:end]], dim=-2)
        o = torch.nn.functional.scaled_dot_product_attention(
            query[:, :, start:end], keys, values, attn_mask=mask, scale=scaling, enable_gqa=True
        )
        out[:, start:end] = o.transpose(1, 2)
    return out, None


def _unit_mask(unit: Unit, device):
    """Each token sees the whole past and the tokens of its own segment up to itself, never
    another segment's (the answers of one turn)."""
    import torch

    past, start = unit[0].past_len, unit[0].start
    mask = torch.zeros(unit[-1].end - start, past + unit[-1].end - start, dtype=torch.bool, device=device)
    mask[:, :past] = True
    for seg in unit:
        a, b = seg.start - start, seg.end - start
        mask[a:b, past + a : past + b] = torch.ones(b - a, b - a, dtype=torch.bool, device=device).tril()
    return mask


def _mask(*args, **kwargs):
    """No mask inside a packed pass (the attention builds each unit's); SDPA's outside."""
    from transformers.masking_utils import sdpa_mask

    return None if _PASS.get() is not None else sdpa_mask(*args, **kwargs)


def enable(model) -> None:
    """Switch a transformers model (before any PEFT wrapping) to the packed-capable attention."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(NAME, _attention)
    AttentionMaskInterface.register(NAME, _mask)
    model.set_attn_implementation(NAME)


def split(ends: Sequence[int], size: int) -> list[int]:
    """Chunk ends with every chunk longer than `size` cut into pieces of `size` from its start
    (canonical: the cuts depend only on the prompt)."""
    out, start = [], 0
    for end in ends:
        out.extend(range(start + size, end, size))
        out.append(end)
        start = end
    return out


def passes(units: Sequence[Unit], size: int) -> Iterator[list[Unit]]:
    """Units in order, packed into passes of at most `size` tokens; a unit never straddles two."""
    batch: list[Unit] = []
    used = 0
    for unit in units:
        n = sum(len(seg.tokens) for seg in unit)
        if n > size:
            raise ValueError(f"a unit of {n} tokens exceeds the pass size {size}: split chunks at the pass size")
        if batch and used + n > size:
            yield batch
            batch, used = [], 0
        batch.append(unit)
        used += n
    if batch:
        yield batch


def forward(model, units: Sequence[Unit], size: int):
    """One packed pass of exactly `size` token rows: the last hidden states of all rows, (size,
    hidden), and the pass (its `keys`/`values` per layer hold the new tokens' KV). Each segment's
    `start` is set to its rows."""
    import torch

    ids, positions = [], []
    for seg in (seg for unit in units for seg in unit):
        seg.start = len(ids)
        ids.extend(seg.tokens)
        positions.extend(range(seg.past_len, seg.past_len + len(seg.tokens)))
    pad = size - len(ids)
    ids, positions = ids + [0] * pad, positions + list(range(pad))  # padding rows: attended by nobody
    device = model.device
    run = _Pass(units, model.config.num_hidden_layers, device)
    token = _PASS.set(run)
    try:
        out = model.get_decoder()(
            input_ids=torch.tensor([ids], device=device),
            position_ids=torch.tensor([positions], device=device),
            use_cache=False,
        )
    finally:
        _PASS.reset(token)
    return out.last_hidden_state[0], run


def logits(model, hidden):
    """The LM head on `hidden` rows, in tiles of exactly HEAD_ROWS rows (one product shape)."""
    import torch

    head = model.get_output_embeddings()
    pad = -len(hidden) % HEAD_ROWS
    rows = torch.cat([hidden, hidden.new_zeros(pad, hidden.shape[1])]) if pad else hidden
    return torch.cat([head(tile) for tile in rows.split(HEAD_ROWS)])[: len(hidden)]
