"""What a `tipping` command can execute, and a content hash of it (a Snakemake rerun trigger).

The files of a command are the modules of its import closure, walked in the source: `python -m
tipping` (tipping.__main__, tipping.cli), the command's handler module (from cli.py, the one
place that maps commands to modules), every `tipping` module they import, at the top or lazily
inside a function, the `__init__` of each package on the way, and the package data a module names
next to itself (scenarios/library, the viewer template). Rules pass `code_hash(...)` through
`params:`, so an edit reruns exactly the jobs whose code it touches (params are compared by
content, unlike mtimes). Hashed is this installed copy of the package, the one the rules'
`python -m tipping` imports.
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
FILE_NAME = re.compile(r"[A-Za-z0-9][\w.-]{0,99}")  # a string that could name a file beside the module


@functools.lru_cache(maxsize=None)
def _cli():
    from tipping.cli import build_parser

    return build_parser()


def handler_module(*command: str) -> str:
    """("run", "single") -> "tipping.commands": the module cli.py names as that command's handler."""
    parser = _cli()
    for word in command:
        sub = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
        if sub is None or word not in sub.choices:
            raise ValueError(f"`tipping {' '.join(command)}` is not a command")
        parser = sub.choices[word]
    handler = parser.get_default("handler")
    if handler is None:
        raise ValueError(f"`tipping {' '.join(command)}` is not a complete command")
    return handler.split(":")[0]


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


def _imports(module: str, tree: ast.AST, is_package: bool) -> set[str]:
    """Every module an import statement anywhere in the tree may load (`from a import b`: a, and a.b
    when b is a submodule); relative imports resolved against `module`."""
    found = set()
    for node in ast.walk(tree):
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


@functools.lru_cache(maxsize=None)
def _module(module: str) -> tuple[set[Path], set[str]]:
    """(the module's own files: source and named data, the modules it may import); empty if not ours."""
    source = _source(module)
    if source is None:
        return set(), set()
    parts = module.split(".")
    tree = ast.parse(source.read_bytes(), filename=str(source))
    parents = {".".join(parts[:i]) for i in range(1, len(parts))}  # importing a.b.c runs a and a.b first
    return {source} | _data_files(source, tree), parents | _imports(module, tree, source.name == "__init__.py")


@functools.lru_cache(maxsize=None)
def code_files(*command: str) -> tuple[Path, ...]:
    """Every file `tipping COMMAND ...` can execute or read from the package, sorted."""
    todo, seen, files = [*ENTRY, handler_module(*command)], set(), set()
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            own, imports = _module(module)
            files |= own
            todo += sorted(imports)
    return tuple(sorted(files))


@functools.lru_cache(maxsize=None)
def code_hash(*command: str) -> str:
    """sha256 over the relative paths and contents of code_files(*command) (16 hex digits)."""
    digest = hashlib.sha256()
    for path in code_files(*command):
        digest.update(path.relative_to(PACKAGE_DIR).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:16]
