"""Content-addressed response cache: reruns are free and a killed run resumes per turn.

Key = sha256 of (policy id, decision mode, conversation hash, options, sampling, seed). One small JSON
file per entry, written to a temporary name and renamed, so a crash never leaves a torn entry
that reads as valid. A corrupt entry (disk trouble, a hand edit) is ignored with a warning and
recomputed.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from tipping.hashing import sha256_json
from tipping.outputs import atomic_write_text
from tipping.turns import Turn

if TYPE_CHECKING:
    from tipping.policies.base import Sampling


class ResponseCache:
    def __init__(self, root: Path):
        self.root = Path(root)

    @staticmethod
    def key(policy: str, decision: str, turn: Turn, sampling: Sampling) -> str:
        """Everything that decides a turn's answer: who answers, how, to what, drawn with which seed."""
        return sha256_json(
            {
                "policy": policy,
                "decision": decision,
                "prompt": turn.prompt_sha,
                "options": turn.options.labels(),
                "sampling": sampling.to_dict(),
                "seed": turn.seed,
            }
        )

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict | None:
        path = self._path(key)
        try:
            entry = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            warnings.warn(f"ignoring corrupt cache entry {path} ({exc}); recomputing", stacklevel=2)
            return None
        if not isinstance(entry, dict) or entry.get("key") != key or "value" not in entry:
            warnings.warn(f"ignoring corrupt cache entry {path} (wrong content); recomputing", stacklevel=2)
            return None
        return entry["value"]

    def put(self, key: str, value: dict) -> None:
        atomic_write_text(self._path(key), json.dumps({"key": key, "value": value}, sort_keys=True))
