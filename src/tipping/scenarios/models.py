"""Pydantic models of the scenario library and of concrete items.

Vocabulary: a *scenario* is a template (a job or a game, with its labels, payoffs and texts);
an *item* is one concrete instance of it, ready to be played.
"""

from __future__ import annotations

import string
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tipping.errors import InputError, where


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _distinct_labels(a: str, b: str, names: tuple[str, str]) -> None:
    if not a.strip() or not b.strip():
        raise ValueError(f"{names[0]} and {names[1]} must be non-empty labels")
    if a.strip().lower() == b.strip().lower():
        raise ValueError(f"{names[0]} and {names[1]} must differ, both are {a!r}")


def _check_fields(text: str, required: set[str], allowed: set[str]) -> str:
    """A str.format template must use every required field and no field outside `allowed`:
    a stray or misspelt placeholder would otherwise only fail when a prompt is rendered."""
    try:
        used = {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}
    except ValueError as e:  # unbalanced braces
        raise ValueError(f"not a valid str.format template ({e}); write literal braces as {{{{ }}}}") from None
    if required - used:
        raise ValueError(f"missing placeholder(s) {sorted(required - used)}")
    if used - allowed:
        raise ValueError(f"unknown placeholder(s) {sorted(used - allowed)}; allowed: {sorted(allowed)}")
    return text


def parse(model: type[BaseModel], data, path, index=None, names: dict[str, str] | None = None):
    """Validate one record; a ValidationError becomes a one-line InputError naming file, record
    and field (`names` maps our field names back to the source's, e.g. for upstream files)."""
    try:
        return model.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        field = ".".join(str(p) for p in err["loc"]) or None
        if field is not None and names:
            field = names.get(field, field)
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] not in ("missing", "value_error"):
            msg += f" (got {str(err['input'])[:60]!r})"
        raise InputError(f"{where(path, index, field)}: {msg}") from None


# --- Self-Interested Exploration ("single") ----------------------------------------------


class JobPayoff(_Strict):
    """Payoffs are ratio x base; violating_ratio > compliant_ratio after normalisation."""

    compliant_ratio: float = Field(gt=0)
    violating_ratio: float = Field(gt=0)
    base: float = Field(gt=0)


class SingleScenario(_Strict):
    """A role-play job: a rule that pays less than breaking it."""

    name: str
    system_prompt: str
    # str.format template with {compliant_reward} and {violating_reward}
    user_prompt: str
    compliant: str
    violating: str
    supervised_text: str
    unsupervised_text: str
    neutral_text: str
    payoff: JobPayoff

    @field_validator("user_prompt")
    @classmethod
    def _template(cls, text: str) -> str:
        rewards = {"compliant_reward", "violating_reward"}
        return _check_fields(text, rewards, rewards)

    @model_validator(mode="after")
    def _check(self):
        _distinct_labels(self.compliant, self.violating, ("compliant", "violating"))
        return self


class SingleItem(_Strict):
    """One concrete single-agent dilemma; user_prompt already ends with the JSON instruction."""

    id: str
    scenario: str
    system_prompt: str
    user_prompt: str
    compliant: str
    violating: str
    compliant_reward: float
    violating_reward: float
    supervised_text: str = ""
    unsupervised_text: str = ""
    neutral_text: str = ""

    @model_validator(mode="after")
    def _check(self):
        _distinct_labels(self.compliant, self.violating, ("compliant", "violating"))
        return self


# --- Imitative Strategy Diffusion ("multi") -------------------------------------------------


class GameParams(_Strict):
    n: int = Field(ge=2)
    cooperation_threshold: int = Field(ge=1)
    high_reward: float
    normal_reward: float
    low_reward: float

    @model_validator(mode="after")
    def _check(self):
        if self.cooperation_threshold > self.n:
            raise ValueError(f"cooperation_threshold {self.cooperation_threshold} > n {self.n}")
        return self


GAME_FIELDS = {
    "n",
    "cooperation_threshold",
    "high_reward",
    "normal_reward",
    "low_reward",
    "delta_high",
    "delta_normal",
    "delta_low",
}
# the placeholders each game template must use (any of GAME_FIELDS may appear)
GAME_TEMPLATES = {
    "system_prompt": {"n"},
    "user_prompt_mult": {"cooperation_threshold", "high_reward", "normal_reward", "low_reward"},
    "user_prompt_add": {"cooperation_threshold", "delta_high", "delta_normal", "delta_low"},
    "user_prompt_train": {"cooperation_threshold", "high_reward", "normal_reward", "low_reward"},
}


class MultiScenario(_Strict):
    """A threshold game. Templates use str.format fields: {n}, {cooperation_threshold},
    {high_reward}, {normal_reward}, {low_reward} and, for additive texts, {delta_high},
    {delta_normal}, {delta_low}."""

    name: str
    system_prompt: str  # {n}
    user_prompt_mult: str  # multiplicative framing (evaluation)
    user_prompt_add: str  # additive framing
    user_prompt_train: str  # one-shot framing of training items ("$X million")
    collective: str
    independent: str
    params: GameParams

    @field_validator(*GAME_TEMPLATES)
    @classmethod
    def _template(cls, text: str, info) -> str:
        return _check_fields(text, GAME_TEMPLATES[info.field_name], GAME_FIELDS)

    @model_validator(mode="after")
    def _check(self):
        _distinct_labels(self.collective, self.independent, ("collective", "independent"))
        return self


class MultiItem(_Strict):
    """One concrete one-shot game prompt (training split / eval split)."""

    id: str
    scenario: str
    system_prompt: str
    user_prompt: str
    collective: str
    independent: str
    params: GameParams

    @model_validator(mode="after")
    def _check(self):
        _distinct_labels(self.collective, self.independent, ("collective", "independent"))
        return self


Testbed = Literal["single", "multi"]
