"""Prefix KV reuse for the transformers backend: a trie of prompt chunks with an LRU token budget.

A prompt is computed in CANONICAL chunks whose boundaries depend only on its conversation (see
`ChatTokenizer.chunk_ends`), each on the KV of the chunks before it, in fixed-shape packed passes
whose floats do not depend on what else is in the pass (policies/packed.py). The trie's edges are
the chunks' token ids, so a node holds exactly the KV (and the last position's logits) that
computing its path of chunks gives: reusing it yields the same floats as recomputing it, in any
batch, in any order, before or after a kill. Correctness never rests on a key: a node is reached
only through token-by-token equal chunks.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

BUDGET_TOKENS = 1 << 17  # prompt tokens of KV held between batches (the plan counts it: tipping/plan.py)


class Node:
    __slots__ = ("children", "chunk", "end", "keys", "logits", "parent", "values")

    def __init__(self, chunk: tuple[int, ...], parent: Node | None, keys=None, values=None, logits=None):
        self.chunk, self.parent, self.children = chunk, parent, {}
        # keys/values: (layers, 1, kv_heads, len(chunk), head_dim), cloned so they own their memory
        self.keys, self.values, self.logits = keys, values, logits
        self.end = (parent.end if parent else 0) + len(chunk)  # prompt position after this chunk

    def path(self) -> list[Node]:
        """The nodes from the root's child down to this one (empty for the root)."""
        path, node = [], self
        while node.parent is not None:
            path.append(node)
            node = node.parent
        return path[::-1]


class PrefixTrie:
    def __init__(self, budget_tokens: int):
        self.budget = budget_tokens
        self.root = Node((), None)
        # least recently used first; a parent is always more recent than its children, so the
        # first entry is a leaf and eviction never orphans a node
        self.lru: OrderedDict[int, Node] = OrderedDict()
        self.held = 0
        self.stats = {"prompt_tokens": 0, "cached_tokens": 0, "evicted_tokens": 0, "peak_held_tokens": 0}

    def walk(self, ids: Sequence[int], bounds: Sequence[int]) -> list[Node]:
        """The cached nodes along the prompt's chunks, longest first match (no chunk, no nodes)."""
        path, node, start = [], self.root, 0
        for end in bounds:
            node = node.children.get(tuple(ids[start:end]))
            if node is None:
                break
            path.append(node)
            start = end
        return path

    def add(self, parent: Node, chunk: Sequence[int], keys, values, logits) -> Node:
        node = Node(tuple(chunk), parent, keys, values, logits)
        parent.children[node.chunk] = node
        self.lru[id(node)] = node
        self.held += len(node.chunk)
        self.stats["peak_held_tokens"] = max(self.stats["peak_held_tokens"], self.held)
        return node

    def used(self, path: list[Node], prompt_tokens: int, cached_tokens: int) -> None:
        """Count a prompt and mark its path as just used (leaf first, so parents stay more recent)."""
        self.stats["prompt_tokens"] += prompt_tokens
        self.stats["cached_tokens"] += cached_tokens
        for node in reversed(path):
            self.lru.move_to_end(id(node))

    def trim(self) -> None:
        """Evict least recently used leaves down to the budget (after a batch's prompts are done:
        their nodes are held while it runs)."""
        while self.held > self.budget and self.lru:
            _, node = self.lru.popitem(last=False)
            del node.parent.children[node.chunk]
            self.held -= len(node.chunk)
            self.stats["evicted_tokens"] += len(node.chunk)
