"""`tipping population probe|report`: population measurements (tipping.analysis.population, issue 13)."""

from __future__ import annotations

from tipping.cli.options import add_policy_options, command, csv, defaults, verbs
from tipping.cli.run import GRID
from tipping.testbeds.multi import MultiSettings

MULTI = defaults(MultiSettings)


def add(sub) -> None:
    pop = verbs(sub, "population", "population measurements: response-function probe, adoption report")
    p = command(
        pop,
        "probe",
        probe,
        "the response function: P(collude | a share f of the neighbours colluded last round), from "
        "forced-choice scores of synthetic peer lines on the grid f = 0, 1/D, ..., 1",
    )
    p.add_argument("--scenarios", required=True, help="games (multi-games, a game file); P is averaged over them")
    p.add_argument("--degree", type=int, default=8, help="D neighbours shown")
    p.add_argument("--threshold-fraction", type=float, default=0.5)
    p.add_argument("--reward-set", type=csv(float), default=GRID["reward_sets"][0], help="HIGH,NORMAL,LOW")
    p.add_argument("--reward-mode", choices=("multiplicative", "additive"), default=MULTI["reward_mode"])
    p.add_argument("--window", type=int, default=MULTI["window"])
    p.add_argument("--limit", type=int, default=None, help="only the first N games")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="response JSON")
    add_policy_options(p)
    r = command(
        pop,
        "report",
        report,
        "population run folders -> adoption per round (overall, by degree), per-episode summaries, the "
        "adoption curve with the critical mass, the mean-field prediction, figures",
    )
    r.add_argument("runs", nargs="*", metavar="RUN_DIR", help="finished `tipping run population` folders")
    r.add_argument("--runs-file", default=None, help="a file listing run folders, one per line (# comments)")
    r.add_argument("--response", default=None, help="a `tipping population probe` JSON: adds the prediction")
    r.add_argument(
        "--network-run",
        default=None,
        help="the run whose first episode network_rounds draws; unset: the first run folder",
    )
    r.add_argument("--out", required=True, help="report folder")


def probe(args) -> int:
    from pathlib import Path

    import numpy as np

    from tipping import scenarios
    from tipping.analysis.population import probe
    from tipping.cli.policy import policy_from_args, resolve_sampling
    from tipping.errors import InputError
    from tipping.outputs import write_json

    if not (1 <= args.degree <= 1023 and 0 < args.threshold_fraction <= 1 and len(args.reward_set) == 3):
        raise InputError(
            "--degree must be in 1..1023, --threshold-fraction in (0, 1] and --reward-set three factors HIGH,NORMAL,LOW"
        )
    games = scenarios.load_multi_games(args.scenarios)[: args.limit]
    settings = MultiSettings(window=args.window, reward_mode=args.reward_mode)
    policy = policy_from_args(args)
    try:
        response = probe(
            policy,
            games,
            args.threshold_fraction,
            tuple(args.reward_set),
            settings,
            resolve_sampling(policy, args),
            args.seed,
            args.degree,
            args.batch_size,
        )
    finally:
        policy.close()
    write_json(Path(args.out), response)
    print(f"wrote {args.out}: g1 {response['g1']:.3f}, g_i {np.round(response['g_i'], 3).tolist()}")
    return 0


def report(args) -> int:
    from pathlib import Path

    from tipping.analysis.population_plots import report
    from tipping.analysis.run_records import read_run_dirs

    folders = read_run_dirs(args.runs, args.runs_file)
    summary = report(folders, Path(args.out), args.response, args.network_run)
    print(
        f"wrote {args.out}: {len(folders)} runs; critical mass {summary['critical_mass']}"
        + (f"; predicted {summary['predicted_critical_mass']}" if "predicted_critical_mass" in summary else "")
    )
    return 0
