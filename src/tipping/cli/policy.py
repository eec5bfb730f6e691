"""The policy and sampling that --policy and the sampling flags name (run, align pairs, population probe)."""

from __future__ import annotations

from dataclasses import replace

from tipping.errors import check
from tipping.policies import Policy, Sampling, load_policy


def resolve_sampling(policy: Policy, args) -> Sampling:
    """The model's paper defaults, overridden by whatever flags were given."""
    overrides = {
        k: getattr(args, k)
        for k in ("temperature", "top_p", "top_k", "max_new_tokens")
        if getattr(args, k, None) is not None
    }
    if getattr(args, "enable_thinking", None) is not None:
        overrides["enable_thinking"] = args.enable_thinking == "true"
    sampling = replace(policy.default_sampling, **overrides)
    check(sampling.temperature >= 0, f"--temperature must be >= 0, got {sampling.temperature}")
    check(0 < sampling.top_p <= 1, f"--top-p must be in (0, 1], got {sampling.top_p}")
    check(sampling.max_new_tokens >= 1, f"--max-new-tokens must be >= 1, got {sampling.max_new_tokens}")
    return sampling


def parse_tags(pairs: list[str]) -> dict[str, str]:
    tags = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        check(bool(sep and key), f"--tag {pair!r}: expected KEY=VALUE, e.g. --tag defence=dpo")
        tags[key] = value
    return tags


def policy_from_args(args) -> Policy:
    """The --policy with the engine flags every policy-taking command shares."""
    return load_policy(args.policy, dtype=args.dtype, max_model_len=args.max_model_len)
