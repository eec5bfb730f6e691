"""What a `tipping` command can execute, and a content hash of it (a Snakemake rerun trigger).

The files of a command are the modules of its import closure, walked in the source: `python -m
tipping` (tipping.__main__, tipping.cli and what they import at module level), the command's
module in tipping.cli (its module-level imports, and the imports inside its handler function and
the functions of that module the handler calls: tables and plot share cli/analysis.py, yet an edit
to the plot code reruns no tables job), every `tipping` module reached from there, at the top or
lazily inside a function, the `__init__` of each package on the way, and the package data a module
names next to itself (scenarios/library, the viewer template). The other verbs' modules only
declare their arguments and are left out. Rules pass `code_hash(...)` through `params:`, so an
edit reruns exactly the jobs whose code it touches (params are compared by content, unlike
mtimes). Hashed is this installed copy of the package, the one the rules' `python -m tipping`
imports.
"""

from __future__ import annotations

import argparse
import ast
import functools
import hashlib
import re
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
ENTRY = ("tipping.__main__", "tipping.cli")
CLI = "tipping.cli"
TOP = "<module>"  # the scope of a module's module-level statements (a function name: that handler's too)
FILE_NAME = re.compile(r"[A-Za-z0-9][\w.-]{0,99}")  # a string that could name a file beside the module


@functools.cache
def _cli():
    from tipping.cli import build_parser

    return build_parser()


def handler(*command: str) -> tuple[str, str]:
    """("run", "single") -> ("tipping.cli.run", "run_single"): the module and function of the command's handler."""
    parser = _cli()
    for word in command:
        sub = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
        if sub is None or word not in sub.choices:
            raise ValueError(f"`tipping {' '.join(command)}` is not a command")
        parser = sub.choices[word]
    function = parser.get_default("handler")
    if function is None:
        raise ValueError(f"`tipping {' '.join(command)}` is not a complete command")
    return function.__module__, function.__name__


def _source(module: str) -> Path | None:
    """The file of a `tipping` module (a package's __init__.py), None if it is not one."""
    parts = module.split(".")
    if parts[0] != "tipping":
        return None
    base = PACKAGE_DIR.joinpath(*parts[1:])
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _imports(module: str, nodes: list[ast.AST], is_package: bool) -> set[str]:
    """Every module an import statement anywhere in the nodes may load (`from a import b`: a, and a.b
    when b is a submodule); relative imports resolved against `module`."""
    found = set()
    for node in (n for top in nodes for n in ast.walk(top)):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")[: len(module.split(".")) - node.level + is_package]
                base = ".".join(anchor + ([base] if base else []))
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}
    return found


def _data_files(source: Path, tree: ast.AST) -> set[Path]:
    """Non-Python files and folders next to the module whose name the module spells out."""
    names = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)}
    found = set()
    for name in names:
        if not FILE_NAME.fullmatch(name) or name.endswith(".py"):
            continue
        path = source.parent / name
        if path.is_file():
            found.add(path)
        elif path.is_dir() and not (path / "__init__.py").exists():  # a data folder, not a subpackage
            found |= {p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    return found


def _functions(tree: ast.Module, handler: str) -> list[ast.AST]:
    """The handler function and the functions of its module it calls by name, transitively."""
    functions = {n.name: n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
    todo, called = [handler], set()
    while todo:
        name = todo.pop()
        if name in functions and name not in called:
            called.add(name)
            todo += [n.id for n in ast.walk(functions[name]) if isinstance(n, ast.Name)]
    return [functions[name] for name in sorted(called)]


@functools.cache
def _module(module: str, scope: str | None = None) -> tuple[set[Path], set[str], set[str]]:
    """(the module's own files: source and named data, the modules its module level imports, the modules
    imported inside the functions the scope runs); empty if not ours. Scope None: the whole module, every
    import counted as one inside a function; TOP: the module level only; a name: that handler function too."""
    source = _source(module)
    if source is None:
        return set(), set(), set()
    parts = module.split(".")
    tree = ast.parse(source.read_bytes(), filename=str(source))
    parents = {".".join(parts[:i]) for i in range(1, len(parts))}  # importing a.b.c runs a and a.b first
    is_package = source.name == "__init__.py"
    if scope is None:
        top, inner = set(), _imports(module, [tree], is_package)
    else:
        top = _imports(
            module, [n for n in tree.body if not isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))], is_package
        )
        inner = set() if scope == TOP else _imports(module, _functions(tree, scope), is_package)
    return {source} | _data_files(source, tree), top, parents | inner


def _scope(imported: str, importer: str, at_top: bool, own: str, handler: str) -> str | bool | None:
    """The scope to walk an imported module in; False: not at all."""
    if imported == own:
        return handler
    if imported == CLI:
        return TOP
    if not imported.startswith(CLI + "."):
        return None
    if not at_top:  # tipping.cli.policy imported by a handler, tipping.cli.run by the leakage audit: all of it
        return None
    # a cli module imported at module level runs its module level; the other verbs, which the package
    # imports only to declare their arguments, are left out
    return False if importer == CLI and imported != f"{CLI}.options" else TOP


@functools.cache
def code_files(*command: str) -> tuple[Path, ...]:
    """Every file `tipping COMMAND ...` can execute or read from the package, sorted."""
    own, function = handler(*command)
    todo, seen, files = [(ENTRY[0], None), (CLI, TOP), (own, function)], set(), set()
    while todo:
        module, scope = item = todo.pop()
        if item in seen:
            continue
        seen.add(item)
        own_files, top, inner = _module(module, scope)
        files |= own_files
        for imported, at_top in sorted({(m, True) for m in top} | {(m, False) for m in inner}):
            scoped = _scope(imported, module, at_top, own, function)
            if scoped is not False:
                todo.append((imported, scoped))
    return tuple(sorted(files))


@functools.cache
def code_hash(*command: str) -> str:
    """sha256 over the relative paths and contents of code_files(*command) (16 hex digits)."""
    digest = hashlib.sha256()
    for path in code_files(*command):
        digest.update(path.relative_to(PACKAGE_DIR).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:16]
