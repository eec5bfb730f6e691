"""The episode viewer: its embedded data, and the page itself in a real headless Chromium.

The browser tests open the page from file:// with the filters in the URL hash (the page applies
them on load), then assert on the DOM Chromium dumps after the scripts ran. Screenshots go to
test-artifacts/ at the repo root. Chromium comes from Debian's package: installed with apt-get
when missing; the tests skip only where apt-get does not exist.
"""

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from tipping.analysis.viewer import build_data
from tipping.cli import main

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars"]
LONG = "THINK-HEAD " + "x" * 5000 + ' THINK-TAIL {"choice": "Route B"}'


def make(folder, args, policy, **tags):
    assert main([*args, "--policy", policy, "--out", str(folder), "--no-progress",
                 *[x for k, v in tags.items() for x in ("--tag", f"{k}={v}")]]) == 0
    return str(folder)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("viewer")
    single = ["run", "single", "--items", "single-test", "--limit", "6", "--rounds", "4"]
    runs = [make(root / "s-none", single, "scripted:flip@3", model="m", defence="none", evolution_round=0),
            make(root / "s-dpo", single, "scripted:flip@2", model="m", defence="dpo", evolution_round=1),
            make(root / "m", ["run", "multi", "--scenarios", "multi-games", "--limit", "2", "--thresholds", "2,6",
                              "--rounds", "2"], "scripted:collude:3", model="m", defence="none", evolution_round=0)]
    # one long "thinking" answer, to see the page cut it in the middle
    path = root / "s-dpo/records.jsonl"
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    lines[0]["response"] = LONG
    path.write_text("".join(json.dumps(r) + "\n" for r in lines))
    assert main(["tables", *runs, "--out", str(root / "tables")]) == 0
    page = root / "viewer/index.html"
    assert main(["viewer", "--tables", str(root / "tables"), "--out", str(page),
                 "--episodes-per-run", "4", "--max-chars", "1000"]) == 0
    return {"page": page, "tables": root / "tables", "runs": runs, "long_episode": lines[0]["episode"]}


def test_data_interns_texts_caps_episodes_and_cuts_long_messages(site):
    frames = [pd.read_parquet(site["tables"] / f"{name}.parquet") for name in ("records", "prompts", "messages")]
    data = build_data(*frames, episodes_per_run=4, max_chars=1000)
    assert data["limits"] == {"episodes_per_run": 4, "max_chars": 1000, "episodes_total": 6 + 6 + 4,
                              "episodes_shown": 12, "texts_cut": 1}
    assert len(data["texts"]) == len(set(data["texts"]))  # every text once
    cut = next(t for t in data["texts"] if "characters cut" in t)
    assert cut.startswith("THINK-HEAD") and cut.endswith('THINK-TAIL {"choice": "Route B"}') and len(cut) < 1100
    single = next(e for e in data["episodes"] if "options" in e)
    assert [t["r"] for t in single["turns"]] == [1, 2, 3, 4]
    last = data["prompts"][single["turns"][-1]["p"]]
    assert [m[0] for m in last] == ["s"] + ["u", "a", "u"] * 3 + ["u"]  # system, 3 past rounds, the question
    multi = next(e for e in data["episodes"] if "threshold" in e)
    assert len(multi["turns"]) == 2 * 8 and multi["rewards"] == "1.2/1.0/0.8"
    assert build_data(*frames, episodes_per_run=0, max_chars=0)["limits"]["episodes_shown"] == 16


def test_page_is_self_contained(site):
    html = site["page"].read_text()
    assert "__VIEWER_DATA__" not in html and "</script" not in html.split('type="application/json">')[1].split(
        "</script>")[0]
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)  # no network


@pytest.fixture(scope="module")
def chromium():
    path = shutil.which("chromium")
    if path:
        return path
    if not shutil.which("apt-get"):
        pytest.skip("chromium is missing and apt-get is not available to install it")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "-o", "DPkg::Lock::Timeout=600", "install", "-y", "chromium"]  # waits for a held lock
    for step in (install, ["apt-get", "update"], install):
        done = subprocess.run(step, env=env, capture_output=True, text=True)
        if done.returncode == 0 and shutil.which("chromium"):
            return shutil.which("chromium")
    pytest.fail(f"could not install chromium with apt-get (root needed):\n{done.stderr[-2000:]}")


def browse(chromium, tmp_path, page, hash_, *extra):
    profile = tmp_path / f"profile-{len(list(tmp_path.iterdir()))}"  # a fresh profile per launch
    done = subprocess.run([chromium, *FLAGS, f"--user-data-dir={profile}", *extra, f"{page.as_uri()}#{hash_}"],
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.split('<script id="data"')[0]  # the rendered page, without the data and code


def shown(dom):
    main_tag = re.search(r'<main id="episode"[^>]*>', dom).group(0)
    return dict(re.findall(r'data-([\w-]+)="([^"]*)"', main_tag))


def test_filters_from_the_hash_pick_a_matching_episode(chromium, site, tmp_path):
    dom = browse(chromium, tmp_path, site["page"], "testbed=single&defence=dpo&evolution_round=1", "--dump-dom")
    got = shown(dom)
    assert (got["testbed"], got["defence"], got["evolution-round"], got["model"]) == ("single", "dpo", "1", "m")
    assert len(re.findall(r'<section class="round" data-round="\d"', dom)) == 4
    assert "4 of 12 episodes match" in dom
    # flip@2: compliant in round 1, violating from round 2; the answer, choice and reward are shown
    rounds = dom.split('<section class="round"')[1:]
    assert 'data-kind="aligned"' in rounds[0] and 'data-kind="deviant"' in rounds[1]
    assert 'class="msg assistant"' in rounds[0] and "reward " in rounds[1]


def test_episode_and_agent_from_the_hash(chromium, site, tmp_path):
    dom = browse(chromium, tmp_path, site["page"], f"episode={site['long_episode']}&run={site['runs'][1]}",
                 "--dump-dom")
    assert shown(dom)["episode"] == site["long_episode"]
    assert "THINK-HEAD" in dom and "characters cut" in dom and "THINK-TAIL" in dom
    dom = browse(chromium, tmp_path, site["page"], "testbed=multi&agent=5", "--dump-dom")
    got = shown(dom)
    assert got["testbed"] == "multi" and got["agent"] == "5"
    assert re.search(r'<tr class="current"><td>5</td>', dom)
    assert dom.count("(confederate)") == 0 and dom.count('<tr class="') == 2 * 8  # 2 rounds x 8 agents


def test_no_match_says_so(chromium, site, tmp_path):
    dom = browse(chromium, tmp_path, site["page"], "testbed=multi&defence=dpo", "--dump-dom")
    assert "No episode matches these filters." in dom and "0 of 12 episodes match" in dom


def test_screenshots(chromium, site, tmp_path):
    ARTIFACTS.mkdir(exist_ok=True)
    for name, hash_ in (("viewer_single", "testbed=single&defence=dpo&evolution_round=1"),
                        ("viewer_multi", "testbed=multi&agent=1")):
        shot = ARTIFACTS / f"{name}.png"
        shot.unlink(missing_ok=True)
        browse(chromium, tmp_path, site["page"], hash_, f"--screenshot={shot}", "--window-size=1280,900")
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
