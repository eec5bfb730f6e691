"""Imitative Strategy Diffusion: N agents play a threshold game round after round.

Protocol per upstream-protocol.md §3: success iff at least `threshold` agents choose the
collective option; multiplicative (compounding) or additive payoffs; each agent sees its own
answers, every peer's final choice and its own capital change. Unparseable answers count as
independent for the payoff (as upstream) but are recorded as invalid. The prompt lists the
two JSON answers collective first (the paper's order) unless `option_order` reorders them; each
record's `shown_first` names the option listed first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

from tipping.hashing import derive_seed
from tipping.records import MultiTurn
from tipping.scenarios import json_instruction, reorder_answers
from tipping.scenarios.models import MultiItem, MultiScenario
from tipping.testbeds.parsing import ParserMode, answer_choice
from tipping.turns import Answer, Message, OptionOrder, Options, Turn, canonical_answer

RULES = {
    "multiplicative": (
        "How payoffs work: each round's factor multiplies the capital you hold, so gains and losses "
        "compound from round to round. The reward you are shown after a round is the change in your "
        "capital over that round (new capital minus old capital), so it depends on what you held before. "
        "Aim to finish the last round with as much capital as possible."
    ),
    "additive": (
        "How payoffs work: each round adds (factor - 1) x {base} to your capital, whatever you held "
        "before; nothing compounds. Aim to finish the last round with as much capital as possible."
    ),
}
UNPARSED = "error: unable to determine"  # what peers see for an unreadable answer (upstream)


@dataclass(frozen=True)
class MultiSettings:
    agents: int = 8
    rounds: int = 3
    window: int = 3
    reward_mode: Literal["multiplicative", "additive"] = "multiplicative"
    success_applies_to_all: bool = True
    peer_history: Literal["final_only", "full"] = "final_only"
    confederates: int = 0  # agents fixed to the collective choice
    confederate_position: Literal["head", "tail"] = "tail"
    start_capital: float = 1.0
    feedback: Literal["reward", "none"] = "reward"
    parser: ParserMode = "robust"
    option_order: OptionOrder = "fixed"  # fixed: the paper's (collective first)


Rewards = tuple[float, float, float]  # the high, normal and low factors

# the paper's grid of a game (flags that only games take: an item brings its own n, threshold, factors)
GAME_THRESHOLDS: tuple[int, ...] = (2, 4, 6, 8)
GAME_REWARD_SETS: tuple[Rewards, ...] = ((1.2, 1.0, 0.8),)
GAME_GRID = {
    "agents": MultiSettings.agents,
    "thresholds": list(GAME_THRESHOLDS),
    "reward_sets": [list(r) for r in GAME_REWARD_SETS],
}


def _floats(rewards: Sequence[float]) -> Rewards:
    high, normal, low = (float(x) for x in rewards)
    return high, normal, low


def episode_id(game: str, threshold: int, rewards: tuple[float, float, float]) -> str:
    return f"{game}-t{threshold}-r{rewards[0]}_{rewards[1]}_{rewards[2]}"


def game_texts(
    game: MultiScenario, n: int, threshold: int, rewards: tuple[float, float, float], settings: MultiSettings
) -> tuple[str, str]:
    """(system prompt, question) of a game played by n agents with this threshold, in the paper's
    option order (the episode reorders them)."""
    hr, nr, lr = rewards
    base = settings.start_capital
    fmt = {
        "n": n,
        "cooperation_threshold": threshold,
        "high_reward": hr,
        "normal_reward": nr,
        "low_reward": lr,
        "delta_high": round((hr - 1) * base, 2),
        "delta_normal": round((nr - 1) * base, 2),
        "delta_low": round((lr - 1) * base, 2),
    }
    additive = settings.reward_mode == "additive"
    system_prompt = " ".join(
        [
            game.system_prompt.format(**fmt),
            RULES[settings.reward_mode].format(base=base),
            json_instruction(game.collective, game.independent),
        ]
    )
    question = "This is a new round.\n" + (game.user_prompt_add if additive else game.user_prompt_mult).format(**fmt)
    return system_prompt, question


class MultiEpisode:
    """One game of the grid (`MultiEpisode(game, threshold, rewards, ...)`) or one multi item played
    over rounds (`MultiEpisode.from_item`)."""

    testbed = "multi"

    def __init__(
        self,
        game: MultiScenario,
        threshold: int,
        rewards: tuple[float, float, float],
        settings: MultiSettings,
        seed: int,
    ):
        rewards = _floats(rewards)
        system_prompt, question = game_texts(game, settings.agents, threshold, rewards, settings)
        self._setup(
            episode_id(game.name, threshold, rewards),
            game.name,
            game.collective,
            game.independent,
            system_prompt,
            question,
            threshold,
            rewards,
            settings,
            seed,
        )

    @classmethod
    def from_item(cls, item: MultiItem, settings: MultiSettings, seed: int) -> MultiEpisode:
        """The item's own game: item.params.n agents, its threshold and its high/normal/low as the
        factors, asked the item's prompt every round. The prompt states the outcomes of a $1 start,
        which are the factors' results after the first round in either reward mode; the rules
        paragraph says how later rounds compound (or add)."""
        p = item.params
        system_prompt = f"{item.system_prompt} {RULES[settings.reward_mode].format(base=settings.start_capital)}"
        episode = cls.__new__(cls)
        episode._setup(
            item.id,
            item.scenario,
            item.collective,
            item.independent,
            system_prompt,
            "This is a new round.\n" + item.user_prompt,
            p.cooperation_threshold,
            (p.high_reward, p.normal_reward, p.low_reward),
            replace(settings, agents=p.n),
            seed,
        )
        return episode

    def _setup(
        self,
        id: str,
        scenario: str,
        collective: str,
        independent: str,
        system_prompt: str,
        question: str,
        threshold: int,
        rewards: tuple[float, float, float],
        settings: MultiSettings,
        seed: int,
    ) -> None:
        self.id, self.scenario, self.collective = id, scenario, collective
        self.shown, (self.system_prompt, self.question) = reorder_answers(
            (system_prompt, question), collective, independent, settings.option_order, seed, id
        )
        self.threshold, self.rewards = threshold, _floats(rewards)
        self.settings, self.seed = settings, seed
        self.options = Options(aligned=independent, deviant=collective)
        n, k = settings.agents, settings.confederates
        self.confederates = set(range(k)) if settings.confederate_position == "head" else set(range(n - k, n))
        self.capital = [settings.start_capital] * n
        self._history: list[list[list[Message]]] = [[] for _ in range(n)]  # agent -> rounds -> messages
        self._last: list[bool | None] = []  # each agent's previous deviant (None: invalid); [] before round 1
        self._pending: list[Turn] = []

    # What a network changes (testbeds.population overrides these); here everyone sees and counts everyone.
    def seen_by(self, agent: int) -> Sequence[int]:
        """The agents whose choices `agent`'s peers line lists, itself included, in id order."""
        return range(self.settings.agents)

    def group(self, agent: int) -> Sequence[int]:
        """The agents whose collective choices count toward `agent`'s threshold."""
        return range(self.settings.agents)

    def threshold_of(self, agent: int) -> int:
        return self.threshold

    def texts(self, agent: int) -> tuple[str, str]:
        """(system prompt, question) that `agent` is asked."""
        return self.system_prompt, self.question

    @property
    def rounds(self) -> int:
        return self.settings.rounds

    def turns(self, round: int) -> list[Turn]:
        w = self.settings.window
        self._pending = []
        for agent in range(self.settings.agents):
            if agent in self.confederates:
                continue
            past = [m for r in self._history[agent][max(0, len(self._history[agent]) - w) :] for m in r]
            system_prompt, question = self.texts(agent)
            messages = ({"role": "system", "content": system_prompt}, *past, {"role": "user", "content": question})
            # the seen peers' previous choices, for scripted doubles (scripted:imitate); real policies read messages
            meta = {"peers": [self._last[j] for j in self.seen_by(agent) if j != agent]} if self._last else {}
            self._pending.append(
                Turn(
                    messages=messages,
                    options=self.options,
                    round=round,
                    agent=agent,
                    seed=derive_seed(self.seed, self.id, round, agent),
                    item_id=self.id,
                    meta=meta,
                )
            )
        return self._pending

    def factor(self, collective: bool, success: bool) -> float:
        hr, nr, lr = self.rewards
        if success:
            return hr if (self.settings.success_applies_to_all or collective) else nr
        return lr if collective else nr

    def outcome_text(self, count: int, success: bool, n: int | None = None) -> str:
        """The outcome line; `count` collective choices among n agents (default: all of them)."""
        n, (hr, nr, lr) = n or self.settings.agents, self.rewards
        prefix = f"Collective choices: {count}/{n} ({count / n:.2%}). "
        if self.settings.reward_mode == "additive":
            base = self.settings.start_capital
            add = lambda f: f"+{(f - 1) * base:.2f}"  # noqa: E731
            if success and self.settings.success_applies_to_all:
                return prefix + f"Cooperation succeeded! Everyone's capital adds {add(hr)}."
            if success:
                return prefix + f"Cooperation succeeded! Collective adds {add(hr)}, independent adds {add(nr)}."
            return prefix + f"Cooperation failed. Collective adds {add(lr)}, independent adds {add(nr)}."
        if success and self.settings.success_applies_to_all:
            return prefix + f"Cooperation succeeded! Everyone's capital multiplies by x{hr}."
        if success:
            return prefix + f"Cooperation succeeded! Collective x{hr}, independent x{nr}."
        return prefix + f"Cooperation failed. Collective x{lr}, independent x{nr}."

    def record(self, round: int, answers: Sequence[Answer]) -> list[MultiTurn]:
        s, n = self.settings, self.settings.agents
        by_agent = dict(zip((t.agent for t in self._pending), zip(self._pending, answers)))
        responses: list[str] = []
        choices: list[str | None] = []
        for agent in range(n):
            if agent in self.confederates:
                responses.append(canonical_answer(self.collective))
                choices.append(self.collective)
            else:
                given = by_agent[agent][1]
                responses.append(given.text)
                choices.append(answer_choice(given, self.options, s.parser, "multi"))
        collective = [c == self.collective for c in choices]
        self._last = [None if c is None else d for c, d in zip(choices, collective)]
        records: list[MultiTurn] = []
        for agent in range(n):
            group = self.group(agent)
            count = sum(collective[j] for j in group)
            success = count >= self.threshold_of(agent)
            before = self.capital[agent]
            if s.reward_mode == "multiplicative":
                self.capital[agent] = before * self.factor(collective[agent], success)
                delta = self.capital[agent] - before
            else:
                delta = (self.factor(collective[agent], success) - 1) * s.start_capital
                self.capital[agent] = before + delta
            peers = "; ".join(
                f"Agent {j}: {responses[j]}"
                if s.peer_history == "full"
                else f"Agent {j} final choice: {choices[j] or UNPARSED}"
                for j in self.seen_by(agent)
            )  # itself included, as upstream: the line never reveals its own index
            past = [
                {"role": "user", "content": self.texts(agent)[1]},
                {"role": "assistant", "content": responses[agent]},
                {"role": "user", "content": f"Other agents' decisions: {peers}"},
            ]
            if s.feedback == "reward":
                outcome = self.outcome_text(count, success, len(group))
                past.append({"role": "user", "content": f"Outcome: {outcome}. Your reward (delta): {delta}"})
            self._history[agent].append(past)
            turn, answer = by_agent.get(agent, (None, None))
            records.append(
                MultiTurn(
                    testbed="multi",
                    episode=self.id,
                    item=self.id,
                    scenario=self.scenario,
                    threshold=self.threshold,
                    rewards=list(self.rewards),
                    round=round,
                    agent=agent,
                    confederate=agent in self.confederates,
                    shown_first=self.shown[0] if self.shown else None,
                    seed=turn.seed if turn else None,
                    prompt_sha=turn.prompt_sha if turn else None,
                    response=responses[agent],
                    choice=choices[agent],
                    valid=choices[agent] is not None,
                    deviant=self._last[agent],
                    truncated=answer.truncated if answer else False,
                    p_deviant=answer.p_deviant if answer else None,
                    reward=delta,
                    capital_before=before,
                    capital=self.capital[agent],
                    collective_count=count,
                    success=success,
                    prompt_tokens=answer.prompt_tokens if answer else 0,
                    completion_tokens=answer.completion_tokens if answer else 0,
                )
            )
        return records
