"""What several commands share: the parser class, comma lists, and the policy, option-order, items-seed
and training flags. Argparse only: every verb module imports this, so it must stay import-light."""

from __future__ import annotations

import argparse
from dataclasses import fields

from tipping.errors import InputError
from tipping.rollout import BATCH_SIZE


class Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2, like every other input error
        raise InputError(f"{self.prog}: {message} (see --help)")


def csv(kind):
    def parse(text: str):
        try:
            return [kind(x) for x in text.split(",") if x.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated {kind.__name__}s, got {text!r}") from None

    return parse


def defaults(settings) -> dict:
    """A settings dataclass's field defaults: the one source of the testbed flags' defaults."""
    return {f.name: f.default for f in fields(settings)}


def verbs(sub, name: str, help: str) -> argparse._SubParsersAction:
    """A command with subcommands (`tipping run single`, `tipping align dpo`, ...)."""
    return sub.add_parser(name, help=help).add_subparsers(
        dest="testbed" if name == "run" else "action", required=True, parser_class=Parser
    )


def command(sub, name: str, handler, help: str, description: str | None = None) -> argparse.ArgumentParser:
    p = sub.add_parser(
        name, help=help, description=description or help, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.set_defaults(handler=handler)
    return p


def add_policy_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("policy and sampling (defaults per model, as in the paper)")
    g.add_argument(
        "--policy",
        required=True,
        help="transformers:PATH_OR_ID[@ADAPTER] | vllm:PATH_OR_ID[@ADAPTER] | openai:BASE_URL#MODEL | "
        "scripted:comply|violate|flip@K|collude:K|first|imitate@THETA",
    )
    g.add_argument(
        "--decision",
        choices=("generate", "choice"),
        default="generate",
        help="generate: free text parsed by the testbed (the paper's); choice: score the two "
        "canonical JSON answers and sample from P(deviant)",
    )
    g.add_argument("--temperature", type=float, default=None)
    g.add_argument("--top-p", type=float, default=None)
    g.add_argument("--top-k", type=int, default=None)
    g.add_argument("--max-new-tokens", type=int, default=None)
    g.add_argument(
        "--enable-thinking",
        choices=("true", "false"),
        default=None,
        help="passed to chat templates that know it (Qwen3)",
    )
    g.add_argument(
        "--dtype",
        choices=("float32", "bfloat16", "float16"),
        default=None,
        help="weights of local engines (default: bf16 on GPU, fp32 on CPU)",
    )
    g.add_argument(
        "--max-model-len",
        type=int,
        default=None,
        help="vLLM context length, prompt + new tokens (default: the model's max_position_embeddings)",
    )
    g.add_argument("--batch-size", type=int, default=BATCH_SIZE, help="turns per backend call")
    g.add_argument("--cache-dir", default=None, help="response cache (default: OUT/cache)")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    g.add_argument(
        "--tag",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="label stored in run.json (model, defence, evolution_round, condition...); "
        "the tables carry tags as columns",
    )


def add_option_order(p: argparse.ArgumentParser, first: str, default: str) -> None:
    p.add_argument(
        "--option-order",
        choices=("fixed", "swapped", "balanced"),
        default=default,
        help=f"the order the prompt lists the two JSON answers in: fixed = the paper's ({first} "
        "first), swapped = reversed, balanced = per episode, seeded by --seed and the episode id "
        "(records say which: shown_first)",
    )


def add_items_seed(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--items-seed", type=int, default=0, help="draws a built-in split's items (the same for every sampling --seed)"
    )


def add_training_options(p: argparse.ArgumentParser, section: str) -> argparse._ArgumentGroup:
    """Flags shared by every training command (tipping.training.common reads them)."""
    p.add_argument("--model", required=True, help="base model folder (or a hub id on hosts that reach the hub)")
    p.add_argument(
        "--out",
        required=True,
        help="adapter folder; written atomically, and a rerun after a crash resumes from OUT.partial",
    )
    p.add_argument("--init-adapter", default=None, help="continue training this adapter instead of a fresh LoRA")
    g = p.add_argument_group("parameters (the paper's defaults; --params, then these flags, override them)")
    g.add_argument(
        "--params",
        default=None,
        help="YAML: a params.yaml holding the parameters under --section, or one section's fields at the top level",
    )
    g.add_argument("--section", default=None, help=f"the section of --params to read; unset: {section}")
    g.add_argument("--epochs", type=float, default=None)
    g.add_argument("--max-steps", type=int, default=None, help="> 0 overrides --epochs")
    g.add_argument("--lr", type=float, default=None, help="learning rate")
    g.add_argument("--batch-size", type=int, default=None, help="per device step")
    g.add_argument("--grad-accum", type=int, default=None)
    g.add_argument("--seed", type=int, default=None)
    g.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default="auto",
        help="cpu: fp32, no activation checkpointing; cuda: bf16 (the paper's)",
    )
    g.add_argument("--save-steps", type=int, default=50, help="checkpoint (resume point) every N steps; 0 = none")
    return g
