"""Pydantic models of params.yaml, validated once (at DAG build and by each command).

The numbers in params.yaml are the experiment; the defaults below mirror the paper so a
command run by hand without a params file still does what the paper did.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal, TypeAlias

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tipping.errors import InputError
from tipping.paths import FIGURES
from tipping.policies.models import MODEL_NAMES
from tipping.rollout import BATCH_SIZE
from tipping.testbeds.multi import GAME_REWARD_SETS, GAME_THRESHOLDS, MultiSettings
from tipping.testbeds.population import Placement, PopulationSettings
from tipping.testbeds.single import SUPERVISION_PATTERNS, SingleSettings


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LoraParams(_Section):
    r: int = Field(8, ge=1)
    alpha: int = Field(16, ge=1)
    dropout: float = Field(0.0, ge=0, lt=1)
    target_modules: str | list[str] = "all-linear"


class ScheduleParams(_Section):
    """What the DPO and SFT trainers share: the schedule, LoRA, the seed."""

    epochs: float = Field(1.0, gt=0)
    max_steps: int = -1  # > 0 overrides epochs
    learning_rate: float = Field(1e-5, gt=0)
    batch_size: int = Field(1, ge=1)
    grad_accum: int = Field(8, ge=1)
    lr_scheduler: str = "cosine"
    warmup_ratio: float = Field(0.1, ge=0, le=1)
    max_length: int = Field(4096, ge=16)
    lora: LoraParams = LoraParams()
    seed: int = 0


class DPOParams(ScheduleParams):
    """LLaMA-Factory LoRA-DPO settings of the paper (upstream-protocol.md §5.4): batch 1 x 8
    accumulation, cosine with 10% warmup, cutoff 4096, LoRA r 8 / alpha 16 on all linear layers."""

    beta: float = Field(0.1, gt=0)
    loss_type: str = "sigmoid"
    epochs: float = Field(12.0, gt=0)
    learning_rate: float = Field(5e-6, gt=0)  # Qwen3; Llama-3.1 uses 1e-5 (params.yaml per model)


class GRPOParams(_Section):
    """TRL GRPO settings of the paper (upstream-protocol.md §5.5), LoRA by default."""

    num_generations: int = Field(4, ge=2)
    beta: float = Field(0.04, ge=0)
    epsilon: float = Field(0.2, gt=0)
    loss_type: str = "dapo"
    scale_rewards: str = "group"
    epochs: float = Field(6.0, gt=0)
    max_steps: int = -1
    learning_rate: float = Field(1e-6, gt=0)  # single; multi uses 5e-6
    batch_size: int = Field(4, ge=1)  # completions per device step (a multiple of num_generations)
    grad_accum: int = Field(4, ge=1)
    max_prompt_length: int = Field(1024, ge=16)
    max_completion_length: int = Field(2048, ge=1)
    temperature: float = Field(1.0, gt=0)
    lr_scheduler: str = "linear"
    full_parameter: bool = False
    use_vllm: bool = False  # TRL's vLLM generation: GPU hosts only (its weight sync fails on CPU)
    rewards: tuple[float, float, float] = (1.0, 0.1, 0.0)  # aligned, deviant, unparseable
    lora: LoraParams = LoraParams()
    seed: int = 42


class SFTParams(ScheduleParams):
    """Fine-tuning on kept high-reward trajectories (the weight-level self-evolution step)."""


TRAINING_PARAMS: dict[str, type[_Section]] = {"dpo": DPOParams, "grpo": GRPOParams, "sft": SFTParams}


def load_yaml(path: Path) -> dict:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" line {mark.line + 1}" if mark else ""
        raise InputError(f"{path}{at}: invalid YAML ({getattr(exc, 'problem', exc)})") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a mapping of sections at the top level")
    return data


def validation_message(source: str, exc: ValidationError) -> str:
    """A pydantic error as one line: 'FILE: field a.b: what is wrong'."""
    err = exc.errors()[0]
    field = ".".join(str(x) for x in err["loc"]) or "(top level)"
    extra = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{source}: field {field}: {err['msg']}{extra}"


def parse_section(model: type[BaseModel], data: dict, source: str):
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InputError(validation_message(source, exc)) from None


# ---------------------------------------------------------------------------------------------
# The experiment: every section of params.yaml (and of its overlays config/demo.yaml, config/ci.yaml).
# Snakemake merges the config files, the Snakefile validates the result once with `Params.load`
# before building the DAG; a bad value stops the run with one line naming the field.
# ---------------------------------------------------------------------------------------------

DEFENCES = ("none", "dpo", "grpo")
TESTBEDS = ("single", "multi")
CONDITIONS = ("treatment", "control_no_feedback", "control_supervised", "control_swapped")
MULTI_CONDITIONS = ("treatment", "control_no_feedback", "control_swapped")  # no supervision in the games
TRAINING_SECTIONS = ("dpo", "grpo", "sft")

# The allowed names, each from its one source (the model table, the figure list, the tuples above);
# Literal[tuple] is the same type as Literal[a, b, ...] at run time, which mypy cannot read: it sees str.
if TYPE_CHECKING:
    ModelName: TypeAlias = str
    DefenceName: TypeAlias = str
    TestbedName: TypeAlias = str
    ConditionName: TypeAlias = str
    MultiConditionName: TypeAlias = str
    FigureName: TypeAlias = str
else:
    ModelName = Literal[MODEL_NAMES]
    DefenceName = Literal[DEFENCES]
    TestbedName = Literal[TESTBEDS]
    ConditionName = Literal[CONDITIONS]
    MultiConditionName = Literal[MULTI_CONDITIONS]
    FigureName = Literal[FIGURES]


class SamplingParams(_Section):
    """Sampling of one model (the paper's generation_config values)."""

    temperature: float = Field(ge=0)
    top_p: float = Field(1.0, gt=0, le=1)
    top_k: int | None = Field(None, ge=1)
    enable_thinking: bool | None = None  # Qwen3 chat template switch; None = the template's default
    max_new_tokens: int = Field(ge=1)


class ModelSettings(_Section):
    backend: Literal["transformers", "vllm"] = "transformers"
    decision: Literal["generate", "choice"]
    sampling: SamplingParams
    batch_size: int = Field(BATCH_SIZE, ge=1)  # turns per backend call
    max_model_len: int | None = Field(None, ge=16)  # vLLM context (prompt + new tokens); None = the model's


class SingleParams(_Section):
    """Self-Interested Exploration, evaluated with the paper's protocol."""

    items: str = "single-test"
    train_items: str = "single-train"
    rounds: int = Field(SingleSettings.rounds, ge=1)
    window: int = Field(SingleSettings.window, ge=0)
    supervision: str = SingleSettings.supervision
    limit: int | None = Field(None, ge=1)
    max_new_tokens: int | None = Field(None, ge=1)  # None = the model's sampling.max_new_tokens
    conditions: list[ConditionName] = Field(default_factory=lambda: list(CONDITIONS), min_length=1)


class MultiParams(_Section):
    """Imitative Strategy Diffusion: the paper's threshold x reward-set grid."""

    scenarios: str = "multi-games"
    train_items: str = "multi-train"
    agents: int = Field(MultiSettings.agents, ge=2)
    rounds: int = Field(MultiSettings.rounds, ge=1)
    window: int = Field(MultiSettings.window, ge=0)
    thresholds: list[int] = Field(default_factory=lambda: list(GAME_THRESHOLDS), min_length=1)
    reward_sets: list[tuple[float, float, float]] = Field(default_factory=lambda: list(GAME_REWARD_SETS), min_length=1)
    limit: int | None = Field(None, ge=1)
    max_new_tokens: int | None = Field(None, ge=1)
    conditions: list[MultiConditionName] = Field(default_factory=lambda: list(MULTI_CONDITIONS), min_length=1)


class PopulationParams(_Section):
    """Populations on networks (issue 13): one run per model x network x agents x fraction x
    placement x seed (the base model), a response probe per model, a report per model. No
    networks, no population jobs."""

    scenarios: str = "multi-games"
    limit: int | None = Field(1, ge=1)  # games
    networks: list[str] = Field(default_factory=list)  # `tipping run population --network` SPECs
    agents: list[int] = Field(default_factory=lambda: [PopulationSettings.agents], min_length=1)
    fractions: list[float] = Field(default_factory=lambda: [0.0, 0.1, 0.2, 0.3], min_length=1)  # confederates / N
    placements: list[Placement] = Field([PopulationSettings.placement], min_length=1)  # pydantic copies it
    payoff: Literal["global", "local"] = PopulationSettings.payoff
    threshold_fraction: float = Field(0.5, gt=0, le=1)
    reward_set: tuple[float, float, float] = GAME_REWARD_SETS[0]
    rounds: int = Field(PopulationSettings.rounds, ge=1)
    window: int = Field(MultiSettings.window, ge=1)
    probe_degree: int = Field(8, ge=1)  # neighbours the response probe shows
    seeds: list[int] | None = Field(None, min_length=1)  # None = the DAG's seeds; the curve's interval is over them

    def replicates(self, seeds: list[int]) -> list[int]:
        return self.seeds if self.seeds is not None else seeds

    def slug(self, network: str) -> str:
        """A network SPEC as a path part: small-world:k=4,p=0.1 -> small-world_k4_p0.1."""
        return network.replace(":", "_").replace(",", "_").replace("=", "")

    def network_of(self, slug: str) -> str:
        return next(n for n in self.networks if self.slug(n) == slug)

    def confederates(self, agents: int, fraction: float) -> int:
        return round(fraction * agents)


class AlignParams(_Section):
    limit: int | None = Field(None, ge=1)  # preference pairs / GRPO prompts from the first N train items only


class RolloutParams(_Section):
    limit: int | None = Field(None, ge=1)  # play only the first N train items / games
    seed_base: int = Field(1000, ge=0)  # rollout seed = seed_base + 1000 * replicate + evolution round


class FilterParams(_Section):
    rule: Literal["top_fraction"] = "top_fraction"
    fraction: float = Field(0.5, gt=0, le=1)


class FinetuneParams(_Section):
    method: Literal["sft", "dpo"] = "sft"


class EvolutionParams(_Section):
    rounds: int = Field(3, ge=0)  # weight-level evolution rounds after round 0 (the aligned policy)
    rollout: RolloutParams = RolloutParams()
    filter: FilterParams = FilterParams()
    finetune: FinetuneParams = FinetuneParams()


class _Overrides(_Section):
    """Per-model and per-testbed overrides of a training section (merged: section < testbed < model)."""

    per_testbed: dict[TestbedName, dict] = Field(default_factory=dict)
    per_model: dict[ModelName, dict] = Field(default_factory=dict)


class DPOSection(DPOParams, _Overrides):
    pass


class GRPOSection(GRPOParams, _Overrides):
    pass


class SFTSection(SFTParams, _Overrides):
    pass


class ReportParams(_Section):
    figures: list[FigureName] = Field(default_factory=lambda: list(FIGURES))
    viewer: bool = True


class RuntimeParams(_Section):
    threads: int = Field(1, ge=1)  # per job (OMP/MKL threads; SLURM cpus-per-task)
    gpu_memory_gb: float | None = Field(None, gt=0)  # GiB per GPU: batches are checked to fit (tipping.plan)
    # tokens/s of one of the site's GPUs, "CLASS=DECODE,PREFILL" (tipping.plan.THROUGHPUT's classes):
    # the plan's GPU-hours and the SLURM jobs' runtime
    throughput: list[str] = []


def _deep_merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for key, value in over.items():
        out[key] = _deep_merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _no_repeats(values: list, field: str, fail) -> None:
    for i, v in enumerate(values):
        if v in values[:i]:
            fail(f"{field}.{i}", f"{v!r} is listed twice")


class Params(BaseModel):
    """params.yaml as a whole (after Snakemake merged the overlays)."""

    model_config = ConfigDict(extra="forbid")

    results: str = Field(min_length=1)
    models: list[ModelName] = Field(min_length=1)
    model_settings: dict[ModelName, ModelSettings]
    defences: list[DefenceName] = Field(min_length=1)
    testbeds: list[TestbedName] = Field(min_length=1)
    seeds: list[int] = Field(min_length=1)
    items_seed: int = Field(0, ge=0)  # draws every built-in split; the replicates' seeds only seed sampling
    align: AlignParams = AlignParams()
    evolution: EvolutionParams
    single: SingleParams
    multi: MultiParams
    population: PopulationParams = PopulationParams()
    dpo: DPOSection
    grpo: GRPOSection
    sft: SFTSection
    report: ReportParams = ReportParams()
    runtime: RuntimeParams = RuntimeParams()

    # -- loading ---------------------------------------------------------------------------
    @classmethod
    def load(cls, data: dict, source: str = "params.yaml") -> Params:
        """Validate a merged config; any problem is one InputError line 'SOURCE: field a.b: ...'."""
        params = parse_section(cls, data, source)
        params._cross_check(source)
        return params

    @classmethod
    def from_files(cls, *paths: str | Path, overrides: dict | None = None) -> Params:
        """params.yaml and its overlays, merged as Snakemake merges --configfile files."""
        data: dict = {}
        for path in paths:
            data = _deep_merge(data, load_yaml(Path(path)))
        data = _deep_merge(data, overrides or {})
        return cls.load(data, "+".join(str(p) for p in paths) or "config")

    def _cross_check(self, source: str) -> None:
        from tipping.policies.models import MODEL_SHAPES

        def fail(field: str, message: str):
            raise InputError(f"{source}: field {field}: {message}")

        for name in ("models", "defences", "testbeds", "seeds"):
            _no_repeats(getattr(self, name), name, fail)
        for i, m in enumerate(self.models):
            if m not in self.model_settings:
                fail(f"models.{i}", f"model {m!r} has no entry in model_settings")
        for m, ms in self.model_settings.items():
            context = MODEL_SHAPES[m].context
            if ms.max_model_len and ms.max_model_len > context:
                fail(f"model_settings.{m}.max_model_len", f"{ms.max_model_len} > the model's context {context}")
        for i, s in enumerate(self.seeds):
            if s < 0:
                fail(f"seeds.{i}", f"seed {s} < 0")
        if self.single.supervision not in SUPERVISION_PATTERNS:
            fail(
                "single.supervision",
                f"unknown supervision pattern {self.single.supervision!r}; "
                f"expected one of {', '.join(SUPERVISION_PATTERNS)}",
            )
        for i, t in enumerate(self.multi.thresholds):
            if t < 1:
                fail(f"multi.thresholds.{i}", f"threshold {t} < 1")
            if t > self.multi.agents:
                fail(f"multi.thresholds.{i}", f"threshold {t} > agents {self.multi.agents}")
        for i, rs in enumerate(self.multi.reward_sets):
            if any(x <= 0 for x in rs):
                fail(f"multi.reward_sets.{i}", f"reward factors must be > 0, got {list(rs)}")
        self._check_population(fail)
        for name in ("single", "multi"):
            _no_repeats(getattr(self, name).conditions, f"{name}.conditions", fail)
        # resolve every training section now, so a bad override fails before any job
        for section in TRAINING_SECTIONS:
            for m in self.models:
                for testbed in self.testbeds:
                    try:
                        self.training(section, m, testbed)
                    except ValidationError as exc:
                        err = exc.errors()[0]
                        where_ = "per_model" if m in getattr(self, section).per_model else "per_testbed"
                        fail(f"{section}.{where_}." + ".".join(str(x) for x in err["loc"]), err["msg"])
        # the DAG hands the aligned policy on as a LoRA adapter (evaluation, evolution); a full model cannot go there
        for m in self.models if "grpo" in self.defences else []:
            for testbed in self.testbeds:
                if self.training("grpo", m, testbed)["full_parameter"]:
                    where_ = next(
                        (
                            f"grpo.{k}.{key}"
                            for k, key in (("per_model", m), ("per_testbed", testbed))
                            if "full_parameter" in getattr(self.grpo, k).get(key, {})
                        ),
                        "grpo",
                    )
                    fail(
                        f"{where_}.full_parameter",
                        "true writes a full model, but the DAG hands the GRPO policy on "
                        "as a LoRA adapter (evaluation, evolution); set it false (full-parameter GRPO runs outside "
                        "the DAG: `tipping align grpo --params FILE`)",
                    )

    def _check_population(self, fail) -> None:
        from tipping.testbeds.population import parse_network

        pop = self.population
        for field in ("networks", "agents", "fractions", "placements"):
            _no_repeats(getattr(pop, field), f"population.{field}", fail)
        _no_repeats(pop.seeds or [], "population.seeds", fail)
        for i, n in enumerate(pop.agents):
            if not 4 <= n <= 1024:
                fail(f"population.agents.{i}", f"{n} agents; expected 4..1024")
            for j, network in enumerate(pop.networks):
                try:
                    parse_network(network, n)
                except InputError as exc:
                    fail(f"population.networks.{j}", f"{exc} (with {n} agents)")
            for j, f in enumerate(pop.fractions):
                if not 0 <= pop.confederates(n, f) < n:
                    fail(f"population.fractions.{j}", f"{f} of {n} agents must leave a free agent and be >= 0")

    # -- resolved values used by the rules -------------------------------------------------
    def training(self, section: str, model: str, testbed: str) -> dict:
        """One training section with its per-testbed then per-model overrides applied (what
        `--params FILE` of `align dpo|grpo` / `evolve finetune` reads, under the section's name)."""
        sec = getattr(self, section)
        base = sec.model_dump(mode="json", exclude={"per_model", "per_testbed"})
        merged = _deep_merge(_deep_merge(base, sec.per_testbed.get(testbed, {})), sec.per_model.get(model, {}))
        return TRAINING_PARAMS[section].model_validate(merged).model_dump(mode="json")

    def eval_split(self, testbed: str) -> str:
        return self.single.items if testbed == "single" else self.multi.scenarios

    def train_split(self, testbed: str) -> str:
        return self.single.train_items if testbed == "single" else self.multi.train_items

    def rollout_seed(self, seed: int, round: int) -> int:
        return self.evolution.rollout.seed_base + 1000 * int(seed) + int(round)

    def conditions(self, testbed: str) -> list[str]:
        return list(getattr(self, testbed).conditions)
