"""`tipping plan`: what the configured DAG costs before it runs, and the memory check at DAG build.

Per rule and per (model, testbed): jobs, turns, prompt and new tokens, KV-cache memory at the
configured batch, the batch that fits, and GPU-hours at an assumed throughput (THROUGHPUT, printed
with the table). How the numbers are made, so that each can be checked by hand:

- turns (tipping.plan_turns): the rule's episodes, built from params as the rules build them
  (items, limits, grid), played round by round with the short JSON answer of the aligned option
  every turn; a population job's episodes are built by `tipping run population`'s own code from
  the rule's arguments (confederates answer no turns), the probe's turns by the probe's (always
  forced choice);
- prompt tokens: no tokenizer (the models may not be on this host): the prompt's characters / 4
  plus 5 tokens per message (role markers of the chat template). Lower bound: the played prompts,
  whose history holds short JSON answers. Upper bound: every past answer visible in the prompt
  (its assistant messages) at the full max_new_tokens;
- new tokens: at most max_new_tokens per turn (a bound: thinking models use part of it);
  forced choice (`decision: choice`) generates none and scores two sequences per turn;
- KV cache per token: 2 (K and V) x layers x KV heads x head dim x dtype bytes (bf16 on GPU);
  a turn holds min(context, prompt upper bound + max_new_tokens) tokens, so a batch needs
  batch x that x bytes/token (Qwen3-8B: 36 x 8 x 128 x 2 x 2 = 147,456 B/token);
- the transformers backend also holds prompts' KV in its prefix trie (policies/prefix.py): up to
  BUDGET_TOKENS, plus the batch in hand's prompts until it trims (its decode cache copies them);
- memory: weights (params x 2 bytes) + KV cache must fit in VLLM_MEMORY_SHARE of the GPU
  (vLLM's default gpu_memory_utilization; the rest is activations and the CUDA context);
- training (align_policy, finetune_policy): tokens processed x 3 (forward + backward) at the
  prefill rate; rows at most max_length tokens;
- a job's SLURM resources (job_resources, the rules' `resources:`): one GPU; host memory
  HOST_BASE_GIB + twice the bf16 weights (the loader's copy and the model); runtime
  STARTUP_MINUTES + the row's GPU-hours per job; both x the attempt, so a retry asks for more.

The site's GPU memory and throughput: params `runtime.gpu_memory_gb` / `runtime.throughput`,
which a Snakemake profile sets for its site under its `config:` key (workflow/profiles/slurm);
`tipping plan --profile NAME` reads the same key, so the plan and the DAG-build check agree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import yaml

from tipping import pipeline
from tipping.config import Params
from tipping.errors import InputError
from tipping.pipeline import Parse
from tipping.plan_turns import (
    CHARS_PER_TOKEN,
    POPULATION_PROBE,
    TOKENS_PER_MESSAGE,
    played,
    population_key,
    population_played,
    probed,
    tokens,
)
from tipping.policies.models import MODEL_SHAPES
from tipping.policies.prefix import BUDGET_TOKENS
from tipping.turns import canonical_answer

GPU_DTYPE_BYTES = 2  # bf16, the GPU dtype of every backend
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
HOST_BASE_GIB = 8  # a model job's host memory besides the weights: Python, torch/vLLM, CUDA context, records
STARTUP_MINUTES = 10  # per job: engine start, weights load
PROFILES = Path("workflow/profiles")  # `tipping plan --profile NAME`, relative to the repository root
VLLM_MEMORY_SHARE = 0.9
GIB = 2**30
PAIR_TRIES = 5  # `tipping align pairs --tries` default (the rule passes none)
STEERING_TOKENS = 25  # the steering message of a preference-pair prompt
# Assumed tokens/s of one GPU (H100-class, vLLM, batched), per size class: decode = new tokens,
# prefill = prompt tokens (and training at a third of it). Override with --throughput.
THROUGHPUT = {
    "<1B": {"max_params": 1e9, "decode": 5000, "prefill": 50000},
    "1-10B": {"max_params": 1e10, "decode": 1500, "prefill": 10000},
}


def kv_bytes_per_token(model: str, dtype_bytes: int = GPU_DTYPE_BYTES) -> int:
    s = MODEL_SHAPES[model]
    return 2 * s.layers * s.kv_heads * s.head_dim * dtype_bytes


def memory_bound_bytes(model: str, batch: int, tokens: int, dtype: str = "bfloat16", trie: int = 0) -> int:
    """What the plan counts for a batch of `batch` sequences of `tokens` tokens (prompt + new) at
    `dtype`: the weights plus their KV cache, plus `trie` tokens of prefix KV (`trie_tokens`).
    Activations are not in it: the plan leaves them the (1 - VLLM_MEMORY_SHARE) of the device, so
    a measured peak should stay below this / VLLM_MEMORY_SHARE (benchmarks/rollout.py prints
    SmolLM2's against its peak)."""
    size = DTYPE_BYTES[dtype]
    return MODEL_SHAPES[model].params * size + (batch * tokens + trie) * kv_bytes_per_token(model, size)


def trie_tokens(backend: str, batch: int, prompt: int) -> int:
    """Prompt tokens of KV the transformers backend's prefix trie can hold at once: its budget,
    exceeded by at most the batch in hand's prompts until it trims after their prefill (its decode
    cache holds a copy besides). vLLM's prefix cache lives in its KV share: none."""
    return BUDGET_TOKENS + batch * prompt if backend == "transformers" else 0


def _batch_bytes(backend: str, model: str, per_turn: int, prompt: int) -> tuple[int, int]:
    """(fixed, per turn) bytes of KV of a batch: per turn, its scored or decoded sequences
    (`per_turn` tokens) and its prompt's share of the trie; fixed, the trie's budget."""
    kv, fixed = kv_bytes_per_token(model), trie_tokens(backend, 0, prompt)
    return fixed * kv, (per_turn + trie_tokens(backend, 1, prompt) - fixed) * kv


def size_class(model: str, throughput: dict = THROUGHPUT) -> str:
    params = MODEL_SHAPES[model].params
    return next((name for name, t in throughput.items() if params < t["max_params"]), list(throughput)[-1])


# --- per rule -------------------------------------------------------------------------------------


@dataclass
class Row:
    rule: str
    model: str
    testbed: str
    jobs: int
    turns: int  # per job
    prompt_tokens: tuple[int, int]  # per job: lower, upper bound
    new_tokens: int  # per job, upper bound
    kv_gib: float | None = None  # KV cache at the configured batch (generation rules)
    batch: int | None = None
    fits: int | None = None  # the largest batch whose KV cache fits next to the weights
    train_tokens: int = 0  # per job (training rules)
    gpu_hours: float = 0.0  # all jobs, upper bound

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self.__dict__.items()}


def _context(p: Params, model: str) -> int:
    return p.model_settings[model].max_model_len or MODEL_SHAPES[model].context


def max_new_tokens(p: Params, model: str, testbed: str) -> int:
    return getattr(p, testbed).max_new_tokens or p.model_settings[model].sampling.max_new_tokens


def kv_room_gib(model: str, gpu_gib: float) -> float:
    return VLLM_MEMORY_SHARE * gpu_gib - weights_gib(model)


def weights_gib(model: str) -> float:
    return MODEL_SHAPES[model].params * GPU_DTYPE_BYTES / GIB


def _generation_row(
    p: Params,
    rule: str,
    model: str,
    testbed: str,
    jobs: int,
    seen,
    gpu_gib: float,
    throughput: dict,
    section: str | None = None,
    decision: str | None = None,
) -> Row:
    """`section`: the params section whose max_new_tokens the rule passes (default: the testbed's);
    `decision`: the rule's, if not the model's."""
    ms = p.model_settings[model]
    decision = decision or ms.decision
    new = max_new_tokens(p, model, section or testbed)
    answer = tokens(canonical_answer("comply")) + TOKENS_PER_MESSAGE
    lo = sum(t for *_, t, _ in seen)
    hi = sum(t + a * (new - answer) for *_, t, a in seen) if decision == "generate" else lo
    longest = max((t + a * (new - answer) if decision == "generate" else t for *_, t, a in seen), default=0)
    if decision == "choice":  # two scored sequences per turn, nothing generated
        lo, hi, new_total, per_seq, seqs = 2 * lo, 2 * hi, 0, longest + answer, 2
    else:
        new_total, per_seq, seqs = len(seen) * new, longest + new, 1
    per_seq = min(per_seq, _context(p, model))
    fixed, per_turn = _batch_bytes(ms.backend, model, seqs * per_seq, min(longest, _context(p, model)))
    t = throughput[size_class(model, throughput)]
    hours = jobs * (hi / t["prefill"] + new_total / t["decode"]) / 3600
    return Row(
        rule,
        model,
        testbed,
        jobs,
        len(seen),
        (lo, hi),
        new_total,
        kv_gib=(fixed + ms.batch_size * per_turn) / GIB,
        batch=ms.batch_size,
        fits=max(0, int((kv_room_gib(model, gpu_gib) * GIB - fixed) // per_turn)),
        gpu_hours=hours,
    )


def _training_hours(model: str, train_tokens: int, jobs: int, throughput: dict) -> float:
    return jobs * 3 * train_tokens / throughput[size_class(model, throughput)]["prefill"] / 3600


def _steps_rows(params: dict, rows: int) -> int:
    """Rows a trainer processes: epochs x rows, or max_steps x batch x accumulation."""
    if params["max_steps"] > 0:
        return params["max_steps"] * params["batch_size"] * params["grad_accum"]
    return math.ceil(params["epochs"] * rows)


def rows(p: Params, gpu_gib: float = 80.0, throughput: dict = THROUGHPUT, *, parse: Parse) -> list[Row]:
    out = []
    rounds, seeds, defences = p.evolution.rounds, len(p.seeds), p.defences
    for model in p.models:
        for testbed in p.testbeds:
            sec, train = getattr(p, testbed), p.train_split(testbed)
            evaluated = played(p, testbed, p.eval_split(testbed), sec.limit)
            out.append(
                _generation_row(
                    p,
                    "evaluate_policy",
                    model,
                    testbed,
                    len(defences) * seeds * (rounds + 1) * len(p.conditions(testbed)),
                    evaluated,
                    gpu_gib,
                    throughput,
                )
            )
            rolled = played(p, testbed, train, p.evolution.rollout.limit)
            if rounds:
                out.append(
                    _generation_row(
                        p,
                        "rollout_episodes",
                        model,
                        testbed,
                        len(defences) * seeds * rounds,
                        rolled,
                        gpu_gib,
                        throughput,
                    )
                )
            # a pair prompt: an item's first prompt (one per item) and a steering message
            first = [
                (1, 0, t + STEERING_TOKENS, 0)
                for r, agent, t, _ in played(p, testbed, train, p.align.limit)
                if r == 1 and agent == 0
            ]
            items = len(first)
            if "dpo" in defences:  # upper bound: PAIR_TRIES tries for each side
                out.append(
                    _generation_row(
                        p, "make_preference_pairs", model, testbed, 1, first * 2 * PAIR_TRIES, gpu_gib, throughput
                    )
                )
                dpo = p.training("dpo", model, testbed)
                seen = _steps_rows(dpo, items) * 2 * dpo["max_length"]  # chosen and rejected
                out.append(
                    Row(
                        "align_policy (dpo)",
                        model,
                        testbed,
                        1,
                        0,
                        (0, 0),
                        0,
                        train_tokens=seen,
                        gpu_hours=_training_hours(model, seen, 1, throughput),
                    )
                )
            if "grpo" in defences:
                g = p.training("grpo", model, testbed)
                completions = _steps_rows(g, items * g["num_generations"])
                seen = completions * (g["max_prompt_length"] + g["max_completion_length"])
                t = throughput[size_class(model, throughput)]
                hours = completions * g["max_completion_length"] / t["decode"] / 3600 + _training_hours(
                    model, seen, 1, throughput
                )
                out.append(
                    Row(
                        "align_policy (grpo)",
                        model,
                        testbed,
                        1,
                        completions,
                        (0, 0),
                        completions * g["max_completion_length"],
                        train_tokens=seen,
                        gpu_hours=hours,
                    )
                )
            if rounds:
                method = p.evolution.finetune.method
                f = p.training(method, model, testbed)
                kept = math.ceil(p.evolution.filter.fraction * len(rolled))
                seen = _steps_rows(f, kept) * f["max_length"] * (2 if method == "dpo" else 1)
                out.append(
                    Row(
                        f"finetune_policy ({method})",
                        model,
                        testbed,
                        len(defences) * seeds * rounds,
                        0,
                        (0, 0),
                        0,
                        train_tokens=seen,
                        gpu_hours=_training_hours(model, seen, len(defences) * seeds * rounds, throughput),
                    )
                )
        out += _population_rows(p, model, gpu_gib, throughput, parse)
    return out


def _population_rows(p: Params, model: str, gpu_gib: float, throughput: dict, parse: Parse) -> list[Row]:
    """population_run per (network, agents, fraction), its jobs the placements x seeds, played at the
    first of each: a job's turns are (N - confederates) x games x rounds whatever the placement and
    seed, its prompts as long on the complete graph (elsewhere the degrees vary a little with them).
    population_probe: forced choice (the probe scores, whatever the model's decision)."""
    pop = p.population
    if not pop.networks:
        return []
    seeds = pop.replicates(p.seeds)
    out = []
    for network in pop.networks:
        for agents in pop.agents:
            for fraction in pop.fractions:
                argv = (
                    *pipeline.population_args(p, pop.slug(network), agents, fraction),
                    "--placement",
                    pop.placements[0],
                    "--seed",
                    str(seeds[0]),
                )
                out.append(
                    _generation_row(
                        p,
                        "population_run",
                        model,
                        population_key(pop.slug(network), agents, f"{fraction:g}"),
                        len(pop.placements) * len(seeds),
                        population_played(argv, parse),
                        gpu_gib,
                        throughput,
                        section="multi",
                    )
                )
    out.append(
        _generation_row(
            p,
            "population_probe",
            model,
            POPULATION_PROBE,
            1,
            probed(tuple(pipeline.population_probe_args(p)), parse),
            gpu_gib,
            throughput,
            section="multi",
            decision="choice",
        )
    )
    return out


# --- the check at DAG build -----------------------------------------------------------------------


def check_fits(p: Params, source: str = "params.yaml") -> None:
    """Refuse a configuration whose batch cannot hold its KV cache next to the weights on a GPU
    of runtime.gpu_memory_gb (unset: no check, e.g. a CPU-only site): one InputError line naming
    the model, the rules and the batch that would fit. Every turn is taken at the longest the
    engine admits (max_model_len, else the model's context): no episode is played, so the check
    costs nothing at DAG build, and a batch that passes fits whatever the answers' lengths."""
    gpu = p.runtime.gpu_memory_gb
    if gpu is None:
        return
    for model in p.models:
        ms, context = p.model_settings[model], _context(p, model)
        fixed, per_turn = _batch_bytes(ms.backend, model, context * (2 if ms.decision == "choice" else 1), context)
        fits = max(0, int((kv_room_gib(model, gpu) * GIB - fixed) // per_turn))
        if ms.batch_size > fits:
            trie = f" (with the transformers backend's prefix trie: {BUDGET_TOKENS:,} tokens + the batch's prompts)"
            raise InputError(
                f"{source}: model_settings.{model}.batch_size {ms.batch_size}: evaluate_policy, rollout_episodes and "
                f"make_preference_pairs need {(fixed + ms.batch_size * per_turn) / GIB:,.0f} GiB of KV cache"
                f"{trie if fixed else ''} at {context:,} "
                f"tokens a turn (max_model_len, else the model's context); at most {fits} fit next to the "
                f"{weights_gib(model):.0f} GiB of weights in {VLLM_MEMORY_SHARE:.0%} of {gpu:g} GiB "
                "(runtime.gpu_memory_gb)"
            )


# --- per job: the rules' resources ----------------------------------------------------------------


def row_of(table: list[Row], rule: str, model: str, testbed: str, defence: str | None = None) -> Row:
    """The plan's row of a job: align_policy's by its defence, finetune_policy's by its method."""
    for r in table:
        name, _, method = r.rule.partition(" (")
        if (name, r.model, r.testbed) == (rule, model, testbed) and (rule != "align_policy" or method == f"{defence})"):
            return r
    raise KeyError(f"no plan row for {rule} {model} {testbed} {defence or ''}")


def job_row(table: list[Row], rule: str, wildcards: dict) -> Row:
    """The plan's row of a DAG job, from its rule and wildcards."""
    if rule == "population_run":
        testbed = population_key(wildcards["network"], wildcards["agents"], wildcards["fraction"])
    else:
        testbed = POPULATION_PROBE if rule == "population_probe" else wildcards["testbed"]
    return row_of(table, rule, wildcards["model"], testbed, wildcards.get("defence"))


def job_resources(row: Row, attempt: int = 1) -> dict:
    """SLURM resources of one job of `row` (see the module docstring), scaled by the attempt."""
    mem_gib = HOST_BASE_GIB + 2 * weights_gib(row.model)
    minutes = STARTUP_MINUTES + 60 * row.gpu_hours / max(1, row.jobs)
    return {"mem_mb": math.ceil(mem_gib * GIB / 1e6) * attempt, "gpu": 1, "runtime": math.ceil(minutes) * attempt}


def site(p: Params) -> tuple[float, dict]:
    """(GPU GiB, throughput table) of the site: runtime.gpu_memory_gb (else 80) and runtime.throughput."""
    return p.runtime.gpu_memory_gb or 80.0, parse_throughput(p.runtime.throughput, "runtime.throughput")


def profile_config(name: str, profiles: Path = PROFILES) -> dict:
    """The `config:` overrides of Snakemake profile NAME (workflow/profiles/NAME/config.yaml), as
    snakemake applies them on top of params.yaml."""
    path = profiles / name / "config.yaml"
    if not path.is_file():
        known = sorted(d.name for d in profiles.iterdir() if (d / "config.yaml").is_file()) if profiles.is_dir() else []
        raise InputError(
            f"--profile {name}: no {path} (run from the repository root; profiles: {', '.join(known) or 'none'})"
        )
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: not YAML ({str(exc).splitlines()[0]})") from None
    config = data.get("config") or {}
    if not isinstance(config, dict):
        raise InputError(f"{path}: field config: expected a mapping such as {{runtime: {{gpu_memory_gb: 80}}}}")
    return config


# --- output ---------------------------------------------------------------------------------------


def estimate(p: Params, gpu_gib: float, throughput: dict = THROUGHPUT, *, parse: Parse) -> dict:
    table = rows(p, gpu_gib, throughput, parse=parse)
    return {
        "assumptions": {
            "prompt_tokens": f"characters / {CHARS_PER_TOKEN} + {TOKENS_PER_MESSAGE} per message",
            "kv_dtype_bytes": GPU_DTYPE_BYTES,
            "gpu_memory_gib": gpu_gib,
            "usable_share": VLLM_MEMORY_SHARE,
            "throughput_tokens_per_s": throughput,
        },
        "models": {
            m: {
                **MODEL_SHAPES[m].__dict__,
                "kv_bytes_per_token": kv_bytes_per_token(m),
                "weights_gib": round(weights_gib(m), 2),
                "size_class": size_class(m, throughput),
                "context_used": _context(p, m),
            }
            for m in p.models
        },
        "rules": [{**r.to_dict(), "job_resources": job_resources(r)} for r in table],
        "total": {
            "jobs": sum(r.jobs for r in table),
            "turns": sum(r.jobs * r.turns for r in table),
            "prompt_tokens": [sum(r.jobs * r.prompt_tokens[i] for r in table) for i in (0, 1)],
            "new_tokens": sum(r.jobs * r.new_tokens for r in table),
            "gpu_hours": round(sum(r.gpu_hours for r in table), 1),
            "gpu_hours_by_rule": {
                rule: round(sum(r.gpu_hours for r in table if r.rule == rule), 1)
                for rule in dict.fromkeys(r.rule for r in table)
            },
        },
    }


def _n(x: float) -> str:
    return (
        f"{x / 1e9:.1f}G"
        if x >= 1e9
        else f"{x / 1e6:.1f}M"
        if x >= 1e6
        else f"{x / 1e3:.1f}k"
        if x >= 1e4
        else f"{x:,.0f}"
    )


def render(plan: dict) -> str:
    lines = ["models (GiB = 2^30 bytes; KV per token = 2 x layers x KV heads x head dim x 2 bytes, bf16)"]
    for name, m in plan["models"].items():
        lines.append(
            f"  {name}: {m['layers']} layers, {m['kv_heads']} KV heads x {m['head_dim']}, "
            f"{m['params'] / 1e9:.2f}B params ({m['weights_gib']} GiB), context {m['context']:,} "
            f"(used {m['context_used']:,}), KV {m['kv_bytes_per_token']:,} B/token, class {m['size_class']}"
        )
    head = (
        "rule",
        "model",
        "testbed",
        "jobs",
        "turns/job",
        "prompt tok/job",
        "new tok/job<=",
        "KV GiB@batch",
        "fits",
        "GPU-h",
        "job: mem_mb, min",
    )
    body = [
        (
            r["rule"],
            r["model"],
            r["testbed"],
            str(r["jobs"]),
            f"{r['turns']:,}",
            f"{_n(r['prompt_tokens'][0])}-{_n(r['prompt_tokens'][1])}"
            if r["prompt_tokens"][1]
            else f"train {_n(r['train_tokens'])}",
            _n(r["new_tokens"]),
            f"{r['kv_gib']:.1f}@{r['batch']}" if r["batch"] else "",
            "" if r["fits"] is None else str(r["fits"]),
            f"{r['gpu_hours']:.1f}",
            f"{r['job_resources']['mem_mb']}, {r['job_resources']['runtime']}",
        )
        for r in plan["rules"]
    ]
    widths = [max(len(x) for x in col) for col in zip(head, *body)]
    lines += ["", *("  ".join(x.ljust(w) for x, w in zip(row, widths)).rstrip() for row in [head, *body])]
    t, a = plan["total"], plan["assumptions"]
    lines += [
        "",
        f"total: {t['jobs']} jobs, {t['turns']:,} turns, prompt tokens {_n(t['prompt_tokens'][0])}-"
        f"{_n(t['prompt_tokens'][1])}, new tokens <= {_n(t['new_tokens'])}, {t['gpu_hours']:,} GPU-hours",
        "GPU-hours by rule: " + ", ".join(f"{k} {v:,}" for k, v in t["gpu_hours_by_rule"].items()),
        f"assumed: prompt tokens = {a['prompt_tokens']} (no tokenizer); new tokens = max_new_tokens per turn; "
        f"KV fits in {a['usable_share']:.0%} of {a['gpu_memory_gib']:g} GiB minus the weights; a job (SLURM, "
        f"1 GPU) asks for {HOST_BASE_GIB} GiB + twice the weights of host memory and {STARTUP_MINUTES} min + "
        "its GPU-hours of runtime, x the attempt",
        "assumed throughput per GPU (tokens/s; training at prefill / 3): "
        + "; ".join(
            f"{k}: decode {v['decode']:,}, prefill {v['prefill']:,}" for k, v in a["throughput_tokens_per_s"].items()
        ),
    ]
    return "\n".join(lines)


def parse_throughput(specs: list[str], source: str = "--throughput", base: dict = THROUGHPUT) -> dict:
    """`base` with the rates that CLASS=DECODE,PREFILL specs give."""
    table = {k: dict(v) for k, v in base.items()}
    for spec in specs:
        name, _, rates = spec.partition("=")
        try:
            decode, prefill = (float(x) for x in rates.split(","))
        except ValueError:
            raise InputError(
                f"{source} {spec!r}: expected CLASS=DECODE,PREFILL tokens/s, e.g. 1-10B=1500,10000"
            ) from None
        if name not in table or min(decode, prefill) <= 0:
            raise InputError(f"{source} {spec!r}: CLASS is one of {', '.join(table)}, rates > 0")
        table[name].update(decode=decode, prefill=prefill)
    return table
