"""The episode viewer: its embedded data, and the page itself in a real headless Chromium.

The browser tests open the page from file:// with the filters in the URL hash (the page applies
them on load), then assert on the DOM Chromium dumps after the scripts ran. Screenshots go to
test-artifacts/ at the repo root. Chromium comes from Debian's package: installed with apt-get
when missing; the tests skip only where apt-get does not exist.
"""

import re
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from tipping.analysis.viewer import build_data
from tipping.cli import main

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]


@pytest.fixture(scope="module")
def site(scripted_runs, tmp_path_factory):
    """The viewer page of the shared scripted run set (tests/scripted_runs.py: single s-t0 flip@4,
    s-c0 control without feedback, s-t1 flip@1 at evolution round 1 with one long answer; multi m-t0)."""
    page = tmp_path_factory.mktemp("viewer") / "index.html"
    assert (
        main(
            [
                "viewer",
                "--tables",
                str(scripted_runs["tables"]),
                "--out",
                str(page),
                "--episodes-per-run",
                "4",
                "--max-chars",
                "1000",
            ]
        )
        == 0
    )
    return {**scripted_runs, "page": page}


def test_data_interns_texts_caps_episodes_and_cuts_long_messages(site):
    frames = [pd.read_parquet(site["tables"] / f"{name}.parquet") for name in ("records", "prompts", "messages")]
    data = build_data(*frames, episodes_per_run=4, max_chars=1000)
    assert data["limits"] == {
        "episodes_per_run": 4,
        "max_chars": 1000,
        "episodes_total": 3 * 64 + 7 * 2,
        "episodes_shown": 4 * 4,
        "texts_cut": 1,
    }
    assert len(data["texts"]) == len(set(data["texts"]))  # every text once
    cut = next(t for t in data["texts"] if "characters cut" in t)
    assert cut.startswith("THINK-HEAD") and cut.endswith('THINK-TAIL {"choice": "Route B"}') and len(cut) < 1100
    run = {r["run"]: i for i, r in enumerate(data["runs"])}

    def first_single(name):
        return next(e for e in data["episodes"] if e["run"] == run[site["named"][name]] and "options" in e)

    single = first_single("s-t0")
    assert [t["r"] for t in single["turns"]] == [1, 2, 3, 4, 5, 6]
    last = data["prompts"][single["turns"][-1]["p"]]
    assert [m[0] for m in last] == ["s"] + ["u", "a", "u"] * 5 + ["u"]  # system, 5 past rounds, the question
    control = data["prompts"][first_single("s-c0")["turns"][-1]["p"]]
    assert [m[0] for m in control] == ["s"] + ["u", "a"] * 5 + ["u"]  # --feedback none: no feedback messages
    multi = next(e for e in data["episodes"] if "threshold" in e)
    assert len(multi["turns"]) == 3 * 8 and multi["rewards"] == "1.2/1.0/0.8"
    assert build_data(*frames, episodes_per_run=0, max_chars=0)["limits"]["episodes_shown"] == 3 * 64 + 7 * 2


def test_page_is_self_contained(site):
    html = site["page"].read_text()
    assert (
        "__VIEWER_DATA__" not in html
        and "</script" not in html.split('type="application/json">')[1].split("</script>")[0]
    )
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)  # no network


VIEWER_BAD = [  # (case, arguments after `viewer --out PAGE` given the shared tables folder, error text)
    (
        "no-tables-folder",
        lambda tables, tmp: ["--tables", str(tmp / "nothing")],
        "records.parquet: not found; run `tipping tables ... --out",
    ),
    (
        "negative-episodes-per-run",
        lambda tables, tmp: ["--tables", str(tables), "--episodes-per-run", "-1"],
        "--episodes-per-run and --max-chars must be >= 0",
    ),
    (
        "negative-max-chars",
        lambda tables, tmp: ["--tables", str(tables), "--max-chars", "-1"],
        "--episodes-per-run and --max-chars must be >= 0",
    ),
]


@pytest.mark.parametrize("args,expected", [case[1:] for case in VIEWER_BAD], ids=[case[0] for case in VIEWER_BAD])
def test_bad_input_is_one_line_and_writes_no_page(args, expected, scripted_runs, tmp_path, capsys):
    page = tmp_path / "viewer/index.html"
    assert main(["viewer", "--out", str(page), *args(scripted_runs["tables"], tmp_path)]) == 2
    err = capsys.readouterr().err
    assert expected in err and err.count("\n") == 1 and "Traceback" not in err
    assert not page.exists()


def browse(chromium, tmp_path, page, hash_, *extra):
    profile = tmp_path / f"profile-{len(list(tmp_path.iterdir()))}"  # a fresh profile per launch
    done = subprocess.run(
        [chromium, *FLAGS, f"--user-data-dir={profile}", *extra, f"{page.as_uri()}#{hash_}"],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.split('<script id="data"')[0]  # the rendered page, without the data and code


def shown(dom):
    main_tag = re.search(r'<main id="episode"[^>]*>', dom).group(0)
    return dict(re.findall(r'data-([\w-]+)="([^"]*)"', main_tag))


def test_filters_from_the_hash_pick_a_matching_episode(chromium, site, tmp_path):
    dom = browse(chromium, tmp_path, site["page"], "testbed=single&condition=treatment&evolution_round=0", "--dump-dom")
    got = shown(dom)
    assert (got["testbed"], got["condition"], got["evolution-round"], got["model"]) == ("single", "treatment", "0", "m")
    assert len(re.findall(r'<section class="round" data-round="\d"', dom)) == 6
    assert "4 of 16 episodes match" in dom  # s-t0 only: s-c0 is a control, s-t1 is evolution round 1
    # flip@4: compliant in rounds 1-3, violating from round 4; the answer, choice and reward are shown
    rounds = dom.split('<section class="round"')[1:]
    assert 'data-kind="aligned"' in rounds[2] and 'data-kind="deviant"' in rounds[3]
    assert 'class="msg assistant"' in rounds[2] and "reward " in rounds[3]


def test_episode_and_agent_from_the_hash(chromium, site, tmp_path):
    dom = browse(
        chromium, tmp_path, site["page"], f"episode={site['long_episode']}&run={site['named']['s-t1']}", "--dump-dom"
    )
    assert shown(dom)["episode"] == site["long_episode"]
    assert "THINK-HEAD" in dom and "characters cut" in dom and "THINK-TAIL" in dom
    dom = browse(chromium, tmp_path, site["page"], "testbed=multi&agent=5", "--dump-dom")
    got = shown(dom)
    assert got["testbed"] == "multi" and got["agent"] == "5"
    assert re.search(r'<tr class="current"><td>5</td>', dom)
    assert dom.count("(confederate)") == 0 and dom.count('<tr class="') == 3 * 8  # 3 rounds x 8 agents


def test_no_match_says_so(chromium, site, tmp_path):
    dom = browse(chromium, tmp_path, site["page"], "testbed=multi&condition=control_no_feedback", "--dump-dom")
    assert "No episode matches these filters." in dom and "0 of 16 episodes match" in dom


def test_screenshots(chromium, site, tmp_path):
    ARTIFACTS.mkdir(exist_ok=True)
    for name, hash_ in (
        ("viewer_single", "testbed=single&condition=treatment&evolution_round=0"),
        ("viewer_multi", "testbed=multi&agent=1"),
    ):
        shot = ARTIFACTS / f"{name}.png"
        shot.unlink(missing_ok=True)
        browse(chromium, tmp_path, site["page"], hash_, f"--screenshot={shot}", "--window-size=1280,900")
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
