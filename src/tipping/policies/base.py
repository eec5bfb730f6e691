"""One interface for every generation backend.

`generate` answers in free text (the paper's decision mode); `score_choices` returns the
log-likelihood of the two canonical answers `{"choice": "<label>"}` after the conversation
(forced-choice mode). Both take whole rounds of turns at once: batching is the backend's job.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from tipping.turns import Turn


@dataclass(frozen=True)
class Sampling:
    """Recorded with every turn. `enable_thinking` is passed to chat templates that know it
    (Qwen3); None leaves the template's default."""

    temperature: float = 0.6
    top_p: float = 0.95
    top_k: int | None = None
    max_new_tokens: int = 512
    enable_thinking: bool | None = None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int
    truncated: bool = False  # cut by max_new_tokens (or the context) before the answer ended


@dataclass(frozen=True)
class ChoiceScores:
    """Summed log-probabilities of the aligned and the deviant canonical answer."""

    aligned: float
    deviant: float
    prompt_tokens: int


class Policy(ABC):
    #: identity for the response cache: backend + model (+ adapter content hash)
    id: str
    #: per-model sampling defaults (the paper's: Qwen3 0.6/0.95/20 with thinking, Llama 0.6/0.9)
    default_sampling: Sampling = Sampling()

    @abstractmethod
    def generate(self, turns: Sequence[Turn], sampling: Sampling) -> list[Completion]:
        """One completion per turn, in order."""

    def score_choices(self, turns: Sequence[Turn], sampling: Sampling) -> list[ChoiceScores]:
        raise NotImplementedError(f"{type(self).__name__} cannot score choices; use --decision generate")

    def prefix_cache_stats(self) -> dict:
        """Prompt tokens served from the backend's prefix cache vs computed, for benchmarks:
        {"prompt_tokens": N, "cached_tokens": M}; empty where the backend keeps none."""
        return {}

    def close(self) -> None:  # noqa: B027 (a hook: engines that hold resources override it)
        """Free the engine (vLLM workers, HTTP sessions)."""
