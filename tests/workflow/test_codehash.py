"""tipping.codehash: the files each command can execute (its import closure + package data) and a
hash that moves exactly when one of them changes. Fast: no Snakemake, no model."""

from __future__ import annotations

import shutil

import pytest

from tipping import codehash

COMMANDS = (
    ("model", "prepare"),
    ("run", "single"),
    ("run", "multi"),
    ("align", "pairs"),
    ("align", "dpo"),
    ("align", "grpo"),
    ("evolve", "score"),
    ("evolve", "filter"),
    ("evolve", "finetune"),
    ("tables",),
    ("plot",),
    ("viewer",),
)


def _names(*command) -> set[str]:
    return {p.relative_to(codehash.PACKAGE_DIR).as_posix() for p in codehash.code_files(*command)}


@pytest.fixture
def package(tmp_path, monkeypatch):
    """A copy of the package that codehash reads instead of the real one (the tests edit it)."""
    copy = tmp_path / "tipping"
    shutil.copytree(codehash.PACKAGE_DIR, copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(codehash, "PACKAGE_DIR", copy)
    for cached in (codehash._module, codehash.code_files, codehash.code_hash):
        cached.cache_clear()
    yield copy
    for cached in (codehash._module, codehash.code_files, codehash.code_hash):
        cached.cache_clear()


def test_handler_modules_come_from_the_cli():
    assert codehash.handler("run", "single") == ("tipping.cli.run", "run_single")
    assert codehash.handler("tables") == ("tipping.cli.analysis", "tables")
    assert codehash.handler("evolve", "finetune") == ("tipping.cli.evolve", "finetune")
    for bad in (("run",), ("run", "triple"), ("nope",)):
        with pytest.raises(ValueError, match="command"):
            codehash.handler(*bad)


def test_closures_follow_imports_lazy_ones_and_package_data():
    every = {
        "__init__.py",
        "__main__.py",
        "cli/__init__.py",
        "cli/options.py",
        "errors.py",
    }  # `python -m tipping` itself
    for command in COMMANDS:
        assert every <= _names(*command), command
    run = _names("run", "single")
    assert {
        "cli/run.py",
        "runs.py",
        "testbeds/single.py",
        "testbeds/parsing.py",
        "testbeds/__init__.py",
        "scenarios/generator.py",
    } <= run  # generator: imported inside a function only
    assert any(n.startswith("scenarios/library/single/") and n.endswith(".yaml") for n in run)  # data it reads
    assert "training/dpo.py" in _names("evolve", "finetune")  # its handler imports it inside a branch
    assert "testbeds/parsing.py" in _names("align", "pairs")  # pairs validate answers with the testbeds' parser
    assert "analysis/viewer_template.html" in _names("viewer")
    prepare = _names("model", "prepare")
    assert "policies/models.py" in prepare and not any(
        n.startswith(("testbeds/single", "scenarios/", "analysis/")) for n in prepare
    )
    tables = _names("tables")
    assert "analysis/tables.py" in tables and not tables & {"analysis/plots.py", "testbeds/single.py", "cli/run.py"}


def test_hash_moves_exactly_with_the_files_of_the_command(package):
    before = {c: codehash.code_hash(*c) for c in COMMANDS}
    assert len(set(before.values())) > 5 and all(len(h) == 16 for h in before.values())

    def changed_after(edit_path, text) -> set:
        path = package / edit_path
        path.write_text(path.read_text() + text)
        for cached in (codehash._module, codehash.code_files, codehash.code_hash):
            cached.cache_clear()
        now = {c: codehash.code_hash(*c) for c in COMMANDS}
        changed = {c for c in COMMANDS if now[c] != before[c]}
        before.update(now)
        return changed

    changed = changed_after("testbeds/single.py", "\n# edited\n")
    assert {("run", "single"), ("run", "multi")} <= changed
    # scoring reads records and pairs parse answers: neither runs the single testbed (since the cli package)
    assert not changed & {
        ("model", "prepare"),
        ("tables",),
        ("plot",),
        ("viewer",),
        ("evolve", "score"),
        ("align", "pairs"),
    }
    assert changed_after("analysis/tables.py", "\nEDITED = 1\n") == {("tables",), ("plot",)}
    assert changed_after("analysis/viewer_template.html", "<!-- edited -->") == {("viewer",)}
    library = sorted((package / "scenarios" / "library" / "single").glob("*.yaml"))[0]
    changed = changed_after(library.relative_to(package), "\n# edited\n")
    assert ("run", "single") in changed and ("tables",) not in changed


def test_handlers_sharing_a_cli_module_keep_their_own_closures(package):
    """tables, plot and viewer handlers all live in cli/analysis.py: each command's code is that module's
    module level plus its own handler's imports, so a plot edit reruns no tables job, and the reverse
    only where plot really imports the tables code."""
    assert "cli/analysis.py" in _names("tables") & _names("plot") & _names("viewer")
    assert "analysis/plots.py" in _names("plot") and "analysis/plots.py" not in _names("tables")
    assert "analysis/viewer.py" not in _names("tables") | _names("plot")
    assert not _names("tables") & {"cli/align.py", "cli/run.py", "cli/evolve.py"}  # other verbs: arguments only
    before = {c: codehash.code_hash(*c) for c in COMMANDS}
    path = package / "analysis" / "plots.py"
    path.write_text(path.read_text() + "\nEDITED = 1\n")
    for cached in (codehash._module, codehash.code_files, codehash.code_hash):
        cached.cache_clear()
    assert {c for c in COMMANDS if codehash.code_hash(*c) != before[c]} == {("plot",)}
    path = package / "cli" / "analysis.py"
    path.write_text(path.read_text() + "\n# edited\n")
    for cached in (codehash._module, codehash.code_files, codehash.code_hash):
        cached.cache_clear()
    assert {c for c in COMMANDS if codehash.code_hash(*c) != before[c]} == {("tables",), ("plot",), ("viewer",)}
