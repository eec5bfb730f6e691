"""Population measurements: per-episode summaries on hand-made records, the critical-mass rule, the
response-function probe against scripted:imitate, the mean-field recursion, and the report command."""

import json
import re

import pandas as pd
import pytest

from tipping import scenarios
from tipping.analysis.population import (
    adoption_curve,
    critical_mass,
    episodes,
    mean_field,
    per_round,
    predicted_critical_mass,
    predicted_curve,
    probe,
)
from tipping.cli import main
from tipping.policies.base import Sampling
from tipping.policies.scripted import ScriptedPolicy
from tipping.testbeds.multi import MultiSettings
from tipping.testbeds.population import probe_turns

RUN = {
    "run": "r",
    "network": "ring:k=2",
    "payoff": "global",
    "placement": "clustered",
    "agents": 4,
    "confederates": 1,
    "fraction": 0.25,
    "seed": 0,
    "policy": "p",
    "threshold": 2,
    "episode": "e",
}


def records(choices, successes):
    """choices[round][agent] (agent 0 the confederate), successes[round][agent]."""
    return pd.DataFrame(
        [
            {
                **RUN,
                "round": r + 1,
                "agent": a,
                "confederate": a == 0,
                "valid": c is not None,
                "deviant": c,
                "success": successes[r][a],
            }
            for r, row in enumerate(choices)
            for a, c in enumerate(row)
        ]
    )


def test_episode_summary_by_hand():
    df = records(
        [[True, False, False, True], [True, True, None, True], [True, True, True, False]],
        [[True, False, False, True], [True, True, True, True], [True, True, True, False]],
    )
    rounds = per_round(df)
    assert rounds["adoption"].tolist() == pytest.approx([1 / 3, 1.0, 2 / 3])  # the invalid answer is left out
    (ep,) = episodes(df).to_dict("records")
    assert ep["final_adoption"] == pytest.approx(2 / 3)
    assert ep["rounds_to_majority"] == 2
    # collective and successful, next answer valid: agent 3 in round 1 (colludes again), agents 1 and 3 in
    # round 2 (1 does, 3 does not); agent 1 in round 1 did not collude, agent 2's round-2 answer is invalid
    assert (ep["recollude_k"], ep["recollude_n"]) == (2, 3)


def test_never_a_majority():
    df = records([[True, False, False, False]] * 2, [[False] * 4] * 2)
    (ep,) = episodes(df).to_dict("records")
    assert ep["rounds_to_majority"] is None and ep["final_adoption"] == 0 and ep["recollude_n"] == 0


def test_critical_mass_is_the_first_fraction_whose_interval_is_above_one_half():
    rows = []
    for fraction, values in [
        (0.1, [0.1, 0.2, 0.15]),
        (0.2, [0.3, 0.95, 0.9]),
        (0.3, [0.7, 0.8, 0.9]),
        (0.4, [1.0, 1.0, 1.0]),
    ]:
        for seed, v in enumerate(values):
            for episode in range(2):  # two episodes per seed: the seed is the cluster
                rows.append(
                    {
                        **RUN,
                        "fraction": fraction,
                        "seed": seed,
                        "episode": f"e{episode}",
                        "final_adoption": v,
                        "rounds_to_majority": None,
                        "recollude_k": 0,
                        "recollude_n": 0,
                    }
                )
    curve = adoption_curve(pd.DataFrame(rows))
    assert curve["episodes"].tolist() == [6] * 4 and curve["seeds"].tolist() == [3] * 4
    at = curve.set_index("fraction")
    assert at.loc[0.2, "ci_low"] < 0.5 < at.loc[0.2, "final_adoption"]  # mean above 1/2, interval not
    assert at.loc[0.3, "ci_low"] > 0.5
    assert [c["critical_mass"] for c in critical_mass(curve)] == [0.3]


@pytest.mark.parametrize("theta", [0.25, 0.5])
def test_probe_shows_the_grid_and_recovers_the_imitate_rule(theta):
    games = scenarios.load_multi_games("multi-games")[:2]
    degree = 8
    for f, own, turn in probe_turns(games[0], 0.5, (1.2, 1.0, 0.8), MultiSettings(), 0, degree):
        if f is None:
            assert len(turn.messages) == 2  # first round: no history
            continue
        peers = next(m["content"] for m in turn.messages if m["content"].startswith("Other agents' decisions:"))
        choices = dict(re.findall(r"Agent (\d+) final choice: ([^;]+)", peers))
        assert len(choices) == degree + 1
        assert sum(c == games[0].collective for a, c in choices.items() if int(a) != degree) == round(f * degree)
        assert (choices[str(degree)] == games[0].collective) == own
    response = probe(
        ScriptedPolicy(f"imitate@{theta}"),
        games,
        0.5,
        (1.2, 1.0, 0.8),
        MultiSettings(),
        Sampling(temperature=0.6),
        0,
        degree,
    )
    step = [float(f >= theta) for f in response["f"]]
    assert response["f"] == [k / degree for k in range(degree + 1)]
    assert response["g_i"] == pytest.approx(step, abs=1e-12) and response["g_c"] == pytest.approx(step, abs=1e-12)
    assert response["g1"] == pytest.approx(0, abs=1e-12)


def test_mean_field_recursion():
    a, b = 0.2, 0.7  # constant responses: x' = x b + (1 - x) a, fixed point a / (1 - b + a)
    response = {"g1": 0.1, "f": [0.0, 1.0], "g_i": [a, a], "g_c": [b, b]}
    xs = mean_field(response, 0.3, 40)
    x = 0.1
    for got in xs[1:4]:
        x = x * b + (1 - x) * a
        assert got == pytest.approx(x)
    assert xs[-1] == pytest.approx(a / (1 - b + a))
    # a step response (imitate@0.4 with persistence): tips iff rho reaches 0.4
    step = {"g1": 0.0, "f": [0.0, 0.39, 0.4, 1.0], "g_i": [0, 0, 1, 1], "g_c": [1, 1, 1, 1]}
    assert predicted_critical_mass(predicted_curve(step, 5)) == pytest.approx(0.39, abs=0.006)
    assert mean_field(step, 0.45, 3) == [0.0, 1.0, 1.0] and mean_field(step, 0.2, 3)[-1] == 0.0


def test_report_on_imitate_populations(tmp_path):
    """Complete graph, imitate@0.3, N = 20: 4 confederates (4/19 < 0.3) never tip, 8 (8/19) tip in round 2."""
    runs = []
    for m in (4, 8):
        for seed in (0, 1):
            out = tmp_path / f"m{m}s{seed}"
            assert (
                main(
                    [
                        "run",
                        "population",
                        "--scenarios",
                        "multi-games",
                        "--limit",
                        "1",
                        "--threshold-fractions",
                        "0.5",
                        "--agents",
                        "20",
                        "--confederates",
                        str(m),
                        "--policy",
                        "scripted:imitate@0.3",
                        "--rounds",
                        "4",
                        "--seed",
                        str(seed),
                        "--out",
                        str(out),
                        "--no-progress",
                    ]
                )
                == 0
            )
            runs.append(str(out))
    response = tmp_path / "response.json"
    assert (
        main(
            [
                "population",
                "probe",
                "--scenarios",
                "multi-games",
                "--limit",
                "1",
                "--degree",
                "10",
                "--policy",
                "scripted:imitate@0.3",
                "--out",
                str(response),
                "--no-progress",
            ]
        )
        == 0
    )
    report = tmp_path / "report"
    assert main(["population", "report", *runs, "--response", str(response), "--out", str(report)]) == 0
    summary = json.loads((report / "summary.json").read_text())
    assert [c["critical_mass"] for c in summary["critical_mass"]] == [0.4]
    assert summary["predicted_critical_mass"] is not None and 0.2 < summary["predicted_critical_mass"] <= 0.3
    curve = pd.read_csv(report / "curve.csv")
    assert curve["final_adoption"].tolist() == [0.0, 1.0] and curve["rounds_to_majority"].tolist()[1] == 2
    by_degree = pd.read_csv(report / "rounds_by_degree.csv")
    assert set(by_degree["degree"]) == {19}
    for name in ("adoption_curves", "adoption_rounds", "network_rounds"):
        assert (report / f"{name}.png").stat().st_size > 1000 and (report / f"{name}.pdf").is_file()
    assert main(["population", "report", runs[0], "--network-run", "elsewhere", "--out", str(report)]) == 2


def test_report_splits_a_mixed_population_by_policy_group(tmp_path):
    out = tmp_path / "mixed"
    assert (
        main(
            [
                "run",
                "population",
                "--scenarios",
                "multi-games",
                "--limit",
                "1",
                "--threshold-fractions",
                "0.5",
                "--agents",
                "16",
                "--policy",
                "scripted:comply",
                "--mix-policy",
                "scripted:violate",
                "--mix-fraction",
                "0.5",
                "--rounds",
                "2",
                "--out",
                str(out),
                "--no-progress",
            ]
        )
        == 0
    )
    assert main(["population", "report", str(out), "--out", str(tmp_path / "report")]) == 0
    by_group = pd.read_csv(tmp_path / "report" / "rounds_by_group.csv")
    assert by_group.groupby("group")["adoption"].mean().to_dict() == {"scripted:comply": 0.0, "scripted:violate": 1.0}
    assert set(pd.read_csv(tmp_path / "report" / "curve_by_group.csv")["group"]) == {
        "scripted:comply",
        "scripted:violate",
    }
    assert pd.read_csv(tmp_path / "report" / "curve.csv")["final_adoption"].tolist() == [0.5]
