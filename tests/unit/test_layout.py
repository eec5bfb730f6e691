"""The README's Layout section names every module and package of src/tipping, and nothing else."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _layout_units() -> set[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
    block = section.split("    src/tipping/", 1)[1].split("\n    tests/", 1)[0]
    # an entry line: six spaces, the unit (module.py or package/), two or more spaces, its description
    return {m.group(1) for m in re.finditer(r"^ {6}(\S+?)(?: {2,}|$)", block, re.M)}


def test_the_layout_lists_the_tree():
    package = ROOT / "src" / "tipping"
    tree = {
        p.name + ("/" if p.is_dir() else "")
        for p in package.iterdir()
        if p.name not in ("__init__.py", "__pycache__") and (p.is_dir() or p.suffix == ".py")
    }
    assert _layout_units() == tree
