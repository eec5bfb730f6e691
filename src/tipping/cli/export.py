"""`tipping export inspect`: run folders as inspect_ai eval logs (tipping.export)."""

from __future__ import annotations

from tipping.cli.options import command, verbs


def add(sub) -> None:
    export = verbs(sub, "export", "run folders in other tools' formats")
    i = command(
        export,
        "inspect",
        inspect,
        "inspect_ai eval logs (open with `inspect view --log-dir OUT`): one log per run, one sample per "
        "episode with its messages, parsed choices, rewards and per-round score",
    )
    i.add_argument("runs", nargs="+", metavar="RUN_DIR", help="finished `tipping run` folders")
    i.add_argument("--out", required=True, help="folder for the .eval logs")


def inspect(args) -> int:
    from pathlib import Path

    from tipping.export import write_logs

    for path, samples in write_logs(args.runs, Path(args.out)):
        print(f"wrote {path} ({samples} samples)")
    return 0
