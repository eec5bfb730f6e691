"""Write docs/mutation-report.md from the last `mutmut run` (the `make mutation` target).

Every surviving mutant must be listed in tests/mutation/equivalent.yaml (function, the changed
line before and after, and why no test can tell the difference); a survivor that is not listed
fails the run (exit 1) and is printed with its diff. Entries are matched by function and by the
changed text, not by mutmut's numbers, which shift whenever the code changes.
Run from the repository root after `mutmut run` (mutmut reads pyproject.toml and mutants/).
"""

from __future__ import annotations

import re
import sys
from collections import Counter, defaultdict
from importlib.metadata import version
from pathlib import Path

import yaml

# mutmut's own reading of its results (pinned in envs/cpu.txt): one process instead of a
# `mutmut show` per survivor, which costs seconds each
from mutmut.mutation.data import SourceFileMutationData
from mutmut.mutation.diff_apply import get_diff_for_mutant
from mutmut.stats import status_by_exit_code
from mutmut.utils.file_utils import walk_mutatable_files

REGISTRY = Path("tests/mutation/equivalent.yaml")
REPORT = Path("docs/mutation-report.md")
COMMAND = "make mutation"


def statuses() -> dict[str, tuple[str, Path]]:
    """mutant name -> (status, source file), as `mutmut results --all true` lists them."""
    out = {}
    for path in walk_mutatable_files():
        data = SourceFileMutationData(path=path)
        data.load()
        out.update({name: (status_by_exit_code[code], path) for name, code in data.exit_code_by_key.items()})
    return out


def change(name: str, path: Path) -> tuple[str, str]:
    """The mutated lines of a mutant's diff: (before, after), stripped, joined by newlines."""
    diff = get_diff_for_mutant(name, path=path).splitlines()
    before = [line[1:].strip() for line in diff if line.startswith("-") and not line.startswith("---")]
    after = [line[1:].strip() for line in diff if line.startswith("+") and not line.startswith("+++")]
    return "\n".join(before), "\n".join(after)


def function(name: str) -> str:
    return re.sub(r"__mutmut_\d+$", "", name)


def module(name: str) -> str:
    return function(name).rsplit(".", 1)[0]


def main() -> int:
    found = statuses()
    status = {name: st for name, (st, _) in found.items()}
    registry = yaml.safe_load(REGISTRY.read_text(encoding="utf-8")) or []
    known = {(e["function"], e["from"].strip(), e["to"].strip()): e for e in registry}
    used, equivalent, unexplained = set(), [], []
    for name, st in sorted(status.items()):
        if st != "survived":
            continue
        before, after = change(name, found[name][1])
        entry = known.get((function(name), before, after))
        if entry:
            used.add(id(entry))
            equivalent.append((name, entry))
        else:
            unexplained.append((name, before, after))
    stale = [e for e in registry if id(e) not in used]

    per_module: dict[str, Counter] = defaultdict(Counter)
    for name, st in status.items():
        per_module[module(name)][st] += 1
    for name, _ in equivalent:  # an equivalent mutant is a survivor: count it once, as equivalent
        per_module[module(name)]["survived"] -= 1
        per_module[module(name)]["equivalent"] += 1
    total = Counter()
    for c in per_module.values():
        total.update(c)
    scored = sum(total.values()) - total["equivalent"]
    score = total["killed"] / scored if scored else 0.0

    lines = [
        "# Mutation testing report",
        "",
        f"Written by `scripts/mutation_report.py` after `{COMMAND}` (mutmut {version('mutmut')}, "
        "config in `pyproject.toml` "
        "`[tool.mutmut]`: the mutated modules and the unit tests that check them).",
        "",
        f"**Score: {total['killed']} killed of {scored} non-equivalent mutants = {score:.1%}** "
        f"({sum(total.values())} mutants, {total['equivalent']} equivalent, "
        f"{len(unexplained)} unexplained survivors, {total['timeout']} timeouts, {total['no tests']} without tests).",
        "",
        "A timeout counts as not killed. Equivalent mutants are survivors that no test can tell from the",
        "original, each listed in `tests/mutation/equivalent.yaml` with the reason.",
        "",
        "| module | mutants | killed | equivalent | unexplained | timeout | no tests |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for mod, c in sorted(per_module.items()):
        lines.append(
            f"| `{mod}` | {sum(c.values())} | {c['killed']} | "
            f"{c['equivalent']} | {c['survived']} | {c['timeout']} | {c['no tests']} |"
        )
    lines += ["", "## Equivalent mutants", "", "| mutant | change | why no test can see it |", "| --- | --- | --- |"]
    for name, e in equivalent:
        lines.append(
            f"| `{name.split('.', 2)[-1]}` | `{_cell(e['from'])}` → `{_cell(e['to'])}` | {_cell(e['reason'])} |"
        )
    if unexplained:
        lines += ["", "## Unexplained survivors (add a test, or list as equivalent with the reason)", ""]
        lines += [f"- `{n}`: `{_cell(b)}` → `{_cell(a)}`" for n, b, a in unexplained]
    if stale:
        lines += ["", "## Registry entries that matched no survivor (remove them)", ""]
        lines += [f"- `{e['function']}`: `{_cell(e['from'])}` → `{_cell(e['to'])}`" for e in stale]
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(
        f"{REPORT}: score {score:.1%} ({total['killed']}/{scored}), {len(unexplained)} unexplained survivors, "
        f"{len(stale)} stale registry entries"
    )
    for n, b, a in unexplained:
        print(f"  survived: {n}\n    - {b}\n    + {a}")
    return 1 if unexplained or stale or total["not checked"] else 0


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ⏎ ")


if __name__ == "__main__":
    sys.exit(main())
