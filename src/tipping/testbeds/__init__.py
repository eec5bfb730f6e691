"""The two ATP testbeds as pure code (no model inside): prompts, rounds, rewards, parsing."""
