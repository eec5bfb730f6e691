"""The README's Results section is written from the committed study (results/study) by
scripts/results_section.py: the README agrees with the tables, and a changed number fails the check."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "results_section.py"
COPIED = [
    "README.md",
    "config/study.yaml",
    "results/study/tables",
    "results/study/population_report",
    "results/study/figures",
]


def results_section(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=120)


def test_the_readme_results_match_the_committed_study():
    proc = results_section("--check")
    assert proc.returncode == 0, proc.stderr


def test_a_changed_table_number_fails_the_check_until_rewritten(tmp_path):
    for rel in COPIED:
        src, dst = ROOT / rel, tmp_path / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, dst)
    assert results_section("--check", "--root", str(tmp_path)).returncode == 0
    rates_csv = tmp_path / "results/study/tables/rates.csv"
    rates = pd.read_csv(rates_csv, dtype=str)
    row = rates.index[
        (rates["testbed"] == "single")
        & (rates["defence"] == "none")
        & (rates["evolution_round"] == "0")
        & (rates["condition"] == "treatment")
        & (rates["threshold"] == "all")
        & (rates["round"] == "1")
    ][0]
    old = float(rates.at[row, "rate"])
    new = 0.123 if abs(old - 0.123) > 0.01 else 0.456
    rates.at[row, "rate"] = str(new)
    rates.to_csv(rates_csv, index=False)

    proc = results_section("--check", "--root", str(tmp_path))
    assert proc.returncode == 1
    assert "disagrees with results/study/tables" in proc.stderr and f"{new:.2f} [" in proc.stderr
    assert results_section("--write", "--root", str(tmp_path)).returncode == 0
    assert results_section("--check", "--root", str(tmp_path)).returncode == 0
    assert f"from {new:.2f} [" in (tmp_path / "README.md").read_text()


def test_a_readme_without_the_markers_is_a_clear_error(tmp_path):
    shutil.copytree(ROOT / "results/study/tables", tmp_path / "results/study/tables")
    (tmp_path / "config").mkdir()
    shutil.copy2(ROOT / "config/study.yaml", tmp_path / "config/study.yaml")
    (tmp_path / "README.md").write_text("# a README with no Results markers\n")
    proc = results_section("--check", "--root", str(tmp_path))
    assert proc.returncode != 0 and "README.md: no results markers" in proc.stderr and "Traceback" not in proc.stderr
