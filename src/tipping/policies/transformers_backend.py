"""The transformers backend: CPU or GPU, packed prefill with prefix KV reuse, batched scoring and
decoding, seeded per turn.

Prefill (both modes): a prompt runs in canonical chunks on the KV of the chunks before it; chunks
end where the conversation's system prompt and earlier prompts end (`ChatTokenizer.chunk_ends`),
so round r's prompt starts with round r-1's chunks and finds their KV in a trie keyed by the
chunks' token ids (policies/prefix.py, LRU token budget). A round's missing chunks are computed
together, wave by wave, in packed passes of fixed shape (policies/packed.py), a chunk that several
prompts share once. A chunk's floats depend only on its tokens and its prefix: reused or
recomputed (a resumed run starts cold), in any batch and order, they are bitwise the same, and
records stay byte-identical. They differ from one standard pass over the whole prompt in the last
bits (other matrix shapes round differently), so the packed policy has its own id (".../packed");
in fp32 its P(deviant) agrees with one-pass scoring within 1e-6 on the tiny model
(tests/integration/test_prefix_cache.py). `prefix_cache=False` is that one-pass per-turn path:
the reference and the benchmark's baseline.

Scoring: every turn's two answers continue its prompt as one packed unit (each answer sees the
prompt and itself), all turns of a batch in one pass; log-probabilities are summed in float64.
Generation: the rows are prefilled (packed), then decode as one left-padded batch on a
preallocated cache; every turn samples from its own torch.Generator seeded with turn.seed with
one uniform draw per new token, so its random stream never depends on its batch. The decode
steps do share the batch: in fp32 (the CPU default) that changes a token only when a draw falls
within ~1e-5 of a token boundary (a turn alone and in a batch gave identical text in all our
checks, on CPU and on a GPU); in bf16 (the GPU default) it often does, so a resumed generate
run on a GPU matches an uninterrupted one only where the chunks match (the Engine keeps them
aligned) or with dtype="float32".
"""

from __future__ import annotations

import gc
from collections.abc import Sequence

from tipping.errors import InputError
from tipping.policies import packed
from tipping.policies.base import ChoiceScores, Completion, Policy, Sampling
from tipping.policies.local import (
    ChatTokenizer,
    check_model,
    choice_scores,
    model_sampling,
    policy_id,
    validate_adapter_dir,
)
from tipping.policies.packed import Segment
from tipping.policies.prefix import BUDGET_TOKENS, PrefixTrie
from tipping.turns import Turn


class TransformersPolicy(Policy):
    def __init__(
        self,
        model: str,
        adapter: str | None = None,
        device: str = "auto",
        dtype: str | None = None,
        batch_size: int | None = None,
        prefix_cache: bool = True,
        prefix_budget_tokens: int = BUDGET_TOKENS,
        pass_tokens: int = 1024,
    ):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        model = check_model(model)
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        # bf16 halves memory on GPUs; CPU stays fp32 for exact, portable reproducibility
        self.dtype = getattr(torch, dtype) if dtype else torch.bfloat16 if self.device.type == "cuda" else torch.float32
        self.batch_size, self.pass_tokens = batch_size, pass_tokens
        if self.device.type == "cuda":
            # cuDNN attention builds an execution plan for every new shape, and decoding grows the
            # KV length each step: measured 3x slower generation on an H200 than the mem-efficient kernel
            torch.backends.cuda.enable_cudnn_sdp(False)
        try:
            tokenizer = AutoTokenizer.from_pretrained(model, padding_side="left")
            self.model = AutoModelForCausalLM.from_pretrained(model, dtype=self.dtype).to(self.device).eval()
        except OSError as exc:  # offline hub id, or a folder transformers cannot read
            raise InputError(
                f"{model}: cannot load the model ({str(exc).splitlines()[0]}); "
                "run `tipping model prepare NAME --out DIR` and pass DIR"
            ) from None
        if prefix_cache:
            packed.enable(self.model)
        if adapter:
            self.model = self._with_adapter(model, str(adapter))
        self.chat = ChatTokenizer(tokenizer)
        self.stop = self.chat.stop_ids(self.model.generation_config)
        self.default_sampling = model_sampling(self.model.config, model)
        self.prefix = PrefixTrie(prefix_budget_tokens) if prefix_cache else None
        # packed prefill gives other last-bit floats than one pass over the prompt: a separate identity
        # keeps the response cache from mixing the two in one run
        self.id = policy_id("transformers", model, adapter, self.dtype, *(["packed"] if prefix_cache else []))

    def _with_adapter(self, model: str, adapter: str):
        from peft import PeftModel

        config = validate_adapter_dir(adapter)
        try:
            # the base path is passed explicitly: adapter_config's base_model_name_or_path is
            # whatever (possibly relative) path the trainer loaded from
            return PeftModel.from_pretrained(self.model, adapter).eval()
        except (RuntimeError, ValueError, KeyError) as exc:
            lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
            detail = next((line for line in lines if "mismatch" in line), lines[0] if lines else type(exc).__name__)
            raise InputError(
                f"adapter {adapter} does not fit model {model}: it was trained on "
                f"{config.get('base_model_name_or_path')!r} ({detail[:200]})"
            ) from None

    # --- generate ----------------------------------------------------------------------------

    def generate(self, turns: Sequence[Turn], sampling: Sampling) -> list[Completion]:
        completions = []
        for batch in self._batches(turns):
            prompts = [self._prompt(t, sampling) for t in batch]
            for (prompt, _), tokens in zip(prompts, self._decode(prompts, [t.seed for t in batch], sampling)):
                text = self.chat.tok.decode([t for t in tokens if t not in self.stop], skip_special_tokens=True)
                completions.append(
                    Completion(text, len(prompt), len(tokens), truncated=not tokens or tokens[-1] not in self.stop)
                )
        return completions

    def _batches(self, turns: Sequence[Turn]) -> list[Sequence[Turn]]:
        step = self.batch_size or max(1, len(turns))
        return [turns[start : start + step] for start in range(0, len(turns), step)]

    def _decode(self, prompts: list[tuple[list[int], list[int]]], seeds: list[int], s: Sampling) -> list[list[int]]:
        """New tokens per (prompt, chunk ends) (ending with the stop token if one came): the prompts
        are prefilled (packed), then the rows decode as one batch on a preallocated cache (prompts
        left-padded, room for every new token: no copy of the cache per step; K is stored after
        RoPE, so padding under the mask changes nothing); finished rows leave the batch."""
        import torch
        from transformers import StaticCache

        n, width = len(prompts), max(len(prompt) for prompt, _ in prompts)
        mask = torch.zeros((n, width + s.max_new_tokens), dtype=torch.long, device=self.device)
        cache = StaticCache(config=self.model.config, max_cache_len=width + s.max_new_tokens)
        last = []
        with torch.inference_mode():
            for row, ((prompt, _), (pieces, logits)) in enumerate(zip(prompts, self._prefill(prompts))):
                offset = width - len(prompt)
                for keys, values in pieces:  # (layers, 1, kv_heads, length, head_dim)
                    length = keys.shape[-2]
                    for layer, k, v in zip(cache.layers, keys, values):
                        if not layer.is_initialized:
                            layer.lazy_initialization(k.expand(n, -1, -1, -1), v.expand(n, -1, -1, -1))
                        layer.keys[row, :, offset : offset + length] = k[0]
                        layer.values[row, :, offset : offset + length] = v[0]
                    offset += length
                mask[row, width - len(prompt) : width] = 1
                last.append(logits)
            for layer in cache.layers:
                layer.cumulative_length.fill_(width)
            logits = torch.stack(last)
            positions = torch.tensor([[len(prompt)] for prompt, _ in prompts], device=self.device)
            generators = [torch.Generator(device=self.device).manual_seed(seed) for seed in seeds]
            new: list[list[int]] = [[] for _ in prompts]
            active = list(range(n))  # rows still generating, in batch order
            picked: list[int] = []  # the active rows' last tokens, fed at the next step
            for step in range(s.max_new_tokens):
                if step:
                    mask[:, width + step - 1] = 1  # the token fed now
                    ids = torch.tensor([[token] for token in picked], device=self.device)
                    out = self.model(
                        input_ids=ids,
                        attention_mask=mask,
                        position_ids=positions,
                        past_key_values=cache,
                        use_cache=True,
                        logits_to_keep=1,
                    )
                    logits, positions = out.logits[:, -1], positions + 1
                picked = self._pick(logits.float(), s, [generators[row] for row in active])
                for row, token in zip(active, picked):
                    new[row].append(token)
                keep = [j for j, token in enumerate(picked) if token not in self.stop]
                if not keep:
                    break
                if len(keep) < len(active):
                    index = torch.tensor(keep, device=self.device)
                    for layer in cache.layers:
                        layer.keys, layer.values = layer.keys[index], layer.values[index]
                    mask, positions = mask[index], positions[index]
                    active, picked = [active[j] for j in keep], [picked[j] for j in keep]
        return new

    @staticmethod
    def _pick(logits, s: Sampling, generators) -> list[int]:
        """temperature -> top-k -> top-p, then inverse-CDF sampling with one uniform draw per row
        from the row's own generator (greedy at temperature 0). Only top-p needs the tokens in
        descending order, and only as far as its head (`nucleus`); without top-p the CDF runs in
        vocabulary order, which samples the same distribution."""
        import torch

        if s.temperature <= 0:
            return logits.argmax(-1).tolist()
        logits = logits / s.temperature
        if s.top_k:
            kth = logits.topk(min(s.top_k, logits.shape[-1]), dim=-1).values[:, -1:]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        probs, order = logits.softmax(-1), None
        if s.top_p < 1:
            probs, order = nucleus(probs, s.top_p)
        cdf = probs.cumsum(-1)
        u = torch.cat([torch.rand(1, generator=g, device=logits.device) for g in generators]) * cdf[:, -1]
        # the first token whose CDF passes u: a token of probability 0 never is, even at u = 0
        index = torch.searchsorted(cdf, u[:, None], right=True).clamp(max=cdf.shape[-1] - 1)
        return (index if order is None else order.gather(-1, index)).squeeze(-1).tolist()

    # --- score -------------------------------------------------------------------------------

    def score_choices(self, turns: Sequence[Turn], sampling: Sampling) -> list[ChoiceScores]:
        if not self.prefix:
            return [self._score_alone(t, sampling) for t in turns]
        return [score for batch in self._batches(turns) for score in self._score_packed(batch, sampling)]

    def _score_packed(self, turns: Sequence[Turn], s: Sampling) -> list[ChoiceScores]:
        """Summed log-probabilities of both canonical answers of every turn: the prompts are
        prefilled (packed), then every answer of every turn continues its prompt in one packed pass."""
        import torch

        prompts = [self._prompt(t, s) for t in turns]
        answers = [self.chat.answers(t, s) for t in turns]
        with torch.inference_mode():
            paths = self._prefill_paths(prompts)
            continuations = self._continuations(list(zip(paths, answers)))
            scores = []
            for (prompt, _), path, pair, rests in zip(prompts, paths, answers, continuations):
                first, rest = path[-1].logits.double().log_softmax(-1), iter(rests)
                totals = [(first[a[0]].item() if a else 0.0) + (next(rest) if len(a) > 1 else 0.0) for a in pair]
                scores.append(choice_scores(totals, len(prompt)))
        return scores

    def _continuations(self, items: list[tuple[list, list[list[int]]]]) -> list[list[float]]:
        """For each (prompt's trie path, answers): for every answer longer than one token, the
        summed log-probability of its tokens after the first. A turn's answers (but their last
        tokens) are one packed unit on the prompt's KV."""
        import torch

        units, targets = [], {}
        for path, answers in items:
            units.append([Segment(answer[:-1], path) for answer in answers if len(answer) > 1])
            targets.update((id(seg), answer[1:]) for seg, answer in zip(units[-1], (a for a in answers if len(a) > 1)))
        sums: dict[int, float] = {}
        for batch in packed.passes([unit for unit in units if unit], self.pass_tokens):
            hidden, _ = packed.forward(self.model, batch, self.pass_tokens)
            segments = [seg for unit in batch for seg in unit]
            rows = torch.cat([torch.arange(seg.start, seg.end) for seg in segments]).to(self.device)
            logp = packed.logits(self.model, hidden[rows]).double().log_softmax(-1)
            offset = 0
            for seg in segments:
                target = torch.tensor(targets[id(seg)], device=self.device)[:, None]
                sums[id(seg)] = logp[offset : offset + len(target)].gather(-1, target).sum().item()
                offset += len(target)
        return [[sums[id(seg)] for seg in unit] for unit in units]

    def _score_alone(self, turn: Turn, s: Sampling) -> ChoiceScores:
        """The reference (no prefix cache): the whole prompt in one standard forward pass, each
        answer continuing from its KV cache, cropped back to the prompt before the next."""
        import torch

        prompt, _ = self._prompt(turn, s)
        answers = self.chat.answers(turn, s)
        with torch.inference_mode():
            cache, last = self._prefill_alone(prompt)
            first = last.double().log_softmax(-1)
            totals = []
            for answer in answers:
                total = first[answer[0]].item() if answer else 0.0
                if len(answer) > 1:
                    rest = self.model(
                        input_ids=torch.tensor([answer[:-1]], device=self.device), past_key_values=cache, use_cache=True
                    )
                    cache.crop(1 - len(answer))
                    logp = rest.logits[0].double().log_softmax(-1)
                    total += logp.gather(-1, torch.tensor(answer[1:], device=self.device)[:, None]).sum().item()
                totals.append(total)
        return choice_scores(totals, len(prompt))

    # --- prefill -----------------------------------------------------------------------------

    def _prompt(self, turn: Turn, s: Sampling) -> tuple[list[int], list[int]]:
        """The prompt's token ids and where its chunks end (canonical chunks no longer than a packed
        pass; one chunk without the prefix cache)."""
        prompt = self.chat.prompt_ids(turn, s)
        if not self.prefix:
            return prompt, [len(prompt)]
        return prompt, packed.split(self.chat.chunk_ends(turn, s, prompt), self.pass_tokens)

    def _prefill(self, prompts: list[tuple[list[int], list[int]]]) -> list[tuple[list, object]]:
        """Per prompt: its KV as pieces (keys, values), each (layers, 1, kv_heads, length, head_dim),
        and its last position's logits."""
        import torch

        if self.prefix:
            return [
                ([(node.keys, node.values) for node in path], path[-1].logits) for path in self._prefill_paths(prompts)
            ]
        states = []
        for prompt, _ in prompts:
            cache, logits = self._prefill_alone(prompt)
            states.append(
                (
                    [
                        tuple(
                            torch.stack([getattr(layer, part) for layer in cache.layers]) for part in ("keys", "values")
                        )
                    ],
                    logits,
                )
            )
        return states

    def _prefill_alone(self, prompt: list[int]):
        """The reference prefill: the whole prompt in one standard forward pass; its KV cache (a
        DynamicCache the caller may extend) and its last position's logits."""
        import torch
        from transformers import DynamicCache

        cache = DynamicCache(config=self.model.config)
        out = self.model(
            input_ids=torch.tensor([prompt], device=self.device),
            past_key_values=cache,
            use_cache=True,
            logits_to_keep=1,
        )
        return cache, out.logits[0, -1]

    def _prefill_paths(self, prompts: list[tuple[list[int], list[int]]]) -> list[list]:
        """Every prompt's trie path, its missing chunks computed wave by wave: wave k packs each
        prompt's next missing chunk, and a chunk several prompts share (the system prompt of a
        round's first turns) is computed once (the others count it as served from the cache)."""
        paths = [self.prefix.walk(prompt, ends) for prompt, ends in prompts]
        computed = [0] * len(prompts)
        while True:
            wave: dict[tuple, tuple] = {}
            for i, ((prompt, ends), path) in enumerate(zip(prompts, paths)):
                if len(path) < len(ends):
                    parent = path[-1] if path else self.prefix.root
                    chunk = tuple(prompt[parent.end : ends[len(path)]])
                    wave.setdefault((id(parent), chunk), (parent, chunk, []))[2].append(i)
            if not wave:
                break
            for node, (_, chunk, members) in zip(
                self._add_chunks([(p, c) for p, c, _ in wave.values()]), wave.values()
            ):
                computed[members[0]] += len(chunk)
                for i in members:
                    paths[i].append(node)
        for (prompt, _), path, own in zip(prompts, paths, computed):
            self.prefix.used(path, len(prompt), len(prompt) - own)
        self.prefix.trim()
        return paths

    def _add_chunks(self, items: list[tuple]) -> list:
        """Compute each (parent node, chunk) on its parent's KV, packed, and add it to the trie."""
        import torch

        units = [[Segment(chunk, parent.path())] for parent, chunk in items]
        nodes = []
        for batch in packed.passes(units, self.pass_tokens):
            hidden, run = packed.forward(self.model, batch, self.pass_tokens)
            last = packed.logits(self.model, hidden[[seg.end - 1 for (seg,) in batch]])
            for (seg,), row in zip(batch, last):
                keys, values = (
                    torch.stack([kv[:, :, seg.start : seg.end] for kv in per_layer])
                    for per_layer in (run.keys, run.values)
                )
                parent, chunk = items[len(nodes)]
                nodes.append(self.prefix.add(parent, chunk, keys, values, row.clone()))
        return nodes

    def prefix_cache_stats(self) -> dict:
        return dict(self.prefix.stats, held_tokens=self.prefix.held) if self.prefix else {}

    def close(self) -> None:
        import torch

        self.model = None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


NUCLEUS_CANDIDATES = 256  # first guess at a top-p head's length; x16 for the rows whose head is longer
_SLACK = 1e-6  # a few float32 ulps at 1.0: more than a cumulative sum's rounding


def nucleus(probs, top_p: float):
    """Each row's smallest most-likely-first head whose mass reaches top_p, as (probabilities in
    descending order, stable among ties, zero past the head; their token ids), both cut to the
    candidates' width. What sorting the whole vocabulary gives (49k-152k tokens: on CPU a quarter
    of a decode step at batch 64), found among the top k tokens instead: a head whose every token
    is above the k-th value holds the same tokens in the same order with the same prefix sums
    (the CPU cumsum adds left to right in double), and nothing past the candidates can join it
    once their mass before the last exceeds top_p by more than rounding. A row's k depends only on
    the row, so its draw never depends on its batch."""
    import torch

    vocab, k = probs.shape[-1], NUCLEUS_CANDIDATES
    rows, heads = torch.arange(len(probs), device=probs.device), []
    while len(rows):
        k = min(k, vocab)
        values, ids = _descending(probs[rows], k)
        before = values.cumsum(-1) - values
        keep = before < top_p
        fits = (before[:, -1] >= top_p + _SLACK) & ~(keep & (values <= values[:, -1:])).any(-1) | (k == vocab)
        heads.append((rows[fits], values[fits] * keep[fits], ids[fits]))
        rows, k = rows[~fits], k * 16
    width = heads[-1][1].shape[-1]
    values, ids = probs.new_zeros(len(probs), width), probs.new_zeros(len(probs), width, dtype=torch.long)
    for members, head, head_ids in heads:
        values[members, : head.shape[-1]], ids[members, : head.shape[-1]] = head, head_ids
    return values, ids


def _descending(probs, k: int):
    """The k largest of each row in a stable descending sort's order (ties by token id)."""
    import torch

    if k == probs.shape[-1]:
        return probs.sort(dim=-1, descending=True, stable=True)
    values, ids = torch.topk(probs, k, dim=-1)
    ids, by_id = ids.sort(dim=-1)
    values, by_value = values.gather(-1, by_id).sort(dim=-1, descending=True, stable=True)
    return values, ids.gather(-1, by_value)
