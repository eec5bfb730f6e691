"""The import graph of `tipping` between its top-level modules and packages, in layers.

    python scripts/import_graph.py            # layers, top first, and each unit's imports
    python scripts/import_graph.py --dot F    # also a Graphviz file of the same graph

grimp (import-linter's engine) reads every import, lazy ones inside functions included; networkx
orders the units: a unit sits one layer above the highest unit it imports, so the first line is
what nothing else imports (the entry point) and the last the modules that import no other unit.
`make lint` checks the rules themselves (pyproject.toml [tool.importlinter]: the CLI on top, no
cycle); this script shows the picture.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import grimp
import networkx as nx


def unit_graph(package: str = "tipping") -> nx.DiGraph:
    """importer -> imported between the package's direct children (submodules folded into them)."""
    graph = grimp.build_graph(package)
    unit = {m: m.split(".")[1] for m in graph.modules if m.count(".") >= 1}
    units = nx.DiGraph()
    units.add_nodes_from(sorted(set(unit.values())))
    for importer, name in unit.items():
        for imported in graph.find_modules_directly_imported_by(importer):
            if imported in unit and unit[imported] != name:
                units.add_edge(name, unit[imported])
    return units


def layers(units: nx.DiGraph) -> list[list[str]]:
    """Longest-path layering: a unit's layer = 1 + the highest layer among what it imports."""
    height: dict[str, int] = {}
    for node in reversed(list(nx.topological_sort(units))):  # raises on a cycle
        height[node] = 1 + max((height[n] for n in units.successors(node)), default=-1)
    top = max(height.values())
    return [sorted(n for n, h in height.items() if h == level) for level in range(top, -1, -1)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dot", type=Path, help="write the graph as a Graphviz file here too")
    args = parser.parse_args()
    units = unit_graph()
    for i, layer in enumerate(layers(units)):
        print(f"layer {i}: {', '.join(layer)}")
    print()
    for node in sorted(units):
        print(f"{node} -> {', '.join(sorted(units.successors(node))) or '(nothing)'}")
    if args.dot:
        edges = "".join(f'  "{a}" -> "{b}";\n' for a, b in sorted(units.edges))
        args.dot.write_text(f"digraph tipping {{\n  rankdir=TB;\n{edges}}}\n")


if __name__ == "__main__":
    main()
