"""Content hashes and seed derivation, all sha256: never hash() (str hashes are salted per process)
or process order, so prompt hashes, cache keys, policy ids, seeds and item splits are the same on
every machine and in every version (tests/unit/test_hashing.py pins them)."""

from __future__ import annotations

import hashlib
import json
import random


def sha256_hex(*chunks: bytes) -> str:
    """sha256 of the chunks in order (as if concatenated)."""
    digest = hashlib.sha256()
    for chunk in chunks:
        digest.update(chunk)
    return digest.hexdigest()


def sha256_json(obj) -> str:
    """A JSON value's content hash (keys sorted, UTF-8 as is): prompt hashes, cache keys, data stamps."""
    return sha256_hex(json.dumps(obj, sort_keys=True, ensure_ascii=False).encode())


def _digest64(parts) -> int:
    # parts joined by a separator, not concatenated: (7, "i1", 1) and (7, "i11") differ
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "big")


def derive_seed(*parts) -> int:
    """Seed from (global seed, item, round, agent, ...). 31 bits, so every backend (torch, vLLM,
    OpenAI servers) accepts it."""
    return _digest64(parts) % (2**31 - 1)


def derive_rng(*parts) -> random.Random:
    """A random.Random seeded with derive_seed(*parts) (networks, confederates, mixed groups)."""
    return random.Random(derive_seed(*parts))


def split_rng(*parts) -> random.Random:
    """The item split generator's random.Random: seeded with the digest's full 64 bits (the
    splits predate the 31-bit cap of derive_seed; kept so the committed splits stay the same)."""
    return random.Random(_digest64(parts))
