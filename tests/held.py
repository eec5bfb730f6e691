"""Crash tests stop a process at an exact point, never after "sleep N and hope": `start_held` runs
`python -m tipping ARGV` with one method wrapped so that after its N-th call returns the process
writes a file and hangs; `wait_held` waits for that file (not for time to pass); the test then kills
the process exactly there. The wrapping lives only in this launcher, never in the package."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

LAUNCHER = """
import importlib, sys, threading
module, qualname, after, held = sys.argv[1:5]
owner_path, name = qualname.rsplit(".", 1)
owner = importlib.import_module(module)
for part in owner_path.split("."):
    owner = getattr(owner, part)
original, calls = getattr(owner, name), []

def wrapped(*args, **kwargs):
    result = original(*args, **kwargs)
    calls.append(1)
    if len(calls) == int(after):
        open(held, "w").close()
        threading.Event().wait()  # hang here until the test kills the process
    return result

setattr(owner, name, wrapped)
from tipping.cli import main
sys.exit(main(sys.argv[5:]))
"""


def start_held(target: str, after: int, held: Path, argv: list[str], **popen) -> subprocess.Popen:
    """target "module:Class.method"; the process hangs once that method has returned `after` times."""
    module, qualname = target.split(":")
    return subprocess.Popen([sys.executable, "-c", LAUNCHER, module, qualname, str(after), str(held), *argv], **popen)


def wait_held(proc: subprocess.Popen, held: Path, guard_s: float = 600) -> None:
    deadline = time.monotonic() + guard_s  # only a guard against a hung process
    while not held.exists():
        assert proc.poll() is None, f"the process ended (exit {proc.returncode}) before it reached the hold point"
        assert time.monotonic() < deadline, f"the hold point was not reached in {guard_s} s"
        time.sleep(0.05)
