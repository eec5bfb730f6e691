"""The two ATP testbeds as pure code (no model inside): prompts, rounds, rewards, parsing."""

from tipping.testbeds.base import Options, Turn, canonical_answer

__all__ = ["Options", "Turn", "canonical_answer"]
