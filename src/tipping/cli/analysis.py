"""`tipping tables|plot|viewer`: tables, figures and the episode viewer (tipping.analysis)."""

from __future__ import annotations

from tipping.cli.options import command
from tipping.paths import FIGURES


def add(sub) -> None:
    t = command(
        sub,
        "tables",
        tables,
        "run folders -> records.parquet, rates, effects, tipping rounds, paper comparison (CSV + Markdown)",
    )
    t.add_argument("runs", nargs="*", metavar="RUN_DIR", help="finished `tipping run` folders")
    t.add_argument("--runs-file", default=None, help="a file listing run folders, one per line (# comments)")
    t.add_argument("--out", required=True, help="tables folder")

    p = command(sub, "plot", plot, "one figure from a tables folder: FIG.png and FIG.pdf")
    p.add_argument("figure", choices=FIGURES)
    p.add_argument("--tables", required=True, help="folder written by `tipping tables`")
    p.add_argument("--out", required=True, help="FIG.png (the PDF goes next to it)")

    v = command(sub, "viewer", viewer, "a self-contained HTML page to browse episodes round by round, with filters")
    v.add_argument("--tables", required=True, help="folder written by `tipping tables`")
    v.add_argument("--out", required=True, help="the page, e.g. results/viewer/index.html")
    v.add_argument(
        "--episodes-per-run",
        type=int,
        default=10,
        help="episodes embedded per run (the first ones in play order); 0 = all",
    )
    v.add_argument(
        "--max-chars",
        type=int,
        default=2000,
        help="longer messages keep only their first and last MAX_CHARS/2 characters (a thinking "
        "trace keeps its final answer); 0 = no cut",
    )


def tables(args) -> int:
    from pathlib import Path

    from tipping.analysis.run_records import read_run_dirs
    from tipping.analysis.tables import build, write

    built = build(read_run_dirs(args.runs, args.runs_file))
    write(built, Path(args.out))
    print(f"{built['summary']['turns']} turns from {built['summary']['runs']} runs; wrote tables to {args.out}")
    return 0


def plot(args) -> int:
    from pathlib import Path

    from tipping.analysis.plots import DRAW, read_table, save
    from tipping.errors import InputError

    function, table = DRAW[args.figure]
    path = Path(args.tables) / f"{table}.csv"
    if not path.is_file():
        raise InputError(f"{path}: not found; run `tipping tables ... --out {args.tables}` first")
    pdf = save(function(read_table(args.tables, table)), args.out)
    print(f"wrote {args.out} and {pdf}")
    return 0


def viewer(args) -> int:
    from pathlib import Path

    import pandas as pd

    from tipping import paths
    from tipping.analysis.viewer import build_data, render
    from tipping.errors import InputError
    from tipping.outputs import atomic_write_text

    folder = Path(args.tables)
    for name in paths.ROW_TABLES:
        if not (folder / name).is_file():
            raise InputError(f"{folder / name}: not found; run `tipping tables ... --out {folder}` first")
    if args.episodes_per_run < 0 or args.max_chars < 0:
        raise InputError("--episodes-per-run and --max-chars must be >= 0")
    data = build_data(
        *(pd.read_parquet(folder / name) for name in paths.ROW_TABLES), args.episodes_per_run, args.max_chars
    )
    page = render(data)
    atomic_write_text(Path(args.out), page)
    lim = data["limits"]
    print(
        f"wrote {args.out}: {lim['episodes_shown']} of {lim['episodes_total']} episodes, "
        f"{len(page.encode()) / 1e6:.1f} MB"
    )
    return 0
