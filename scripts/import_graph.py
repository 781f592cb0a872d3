"""Print which exporter module imports which, read from the source (not drawn by hand).

    python scripts/import_graph.py           # the graph, top (cli) to bottom (no imports)
    python scripts/import_graph.py --check   # fail when README.md's copy differs
    python scripts/import_graph.py --write   # update README.md's copy

Each line is a module and the modules of the package it imports (imports done
inside a function, or for type checking only, included). The README carries
this output between ``<!-- import-graph -->`` markers.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "exporter"
MARKER = "<!-- import-graph -->"


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(PACKAGE).with_suffix("").parts)


def imports(path: Path, modules: set[str]) -> set[str]:
    """The modules of *modules* that *path* imports."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module.removeprefix("exporter.")]
            if node.module == "exporter":
                names = [alias.name for alias in node.names]
        elif isinstance(node, ast.Import):
            names = [alias.name.removeprefix("exporter.") for alias in node.names]
        else:
            continue
        found.update(name for name in names if name in modules)
    return found


def graph() -> dict[str, set[str]]:
    paths = {module_name(p): p for p in PACKAGE.rglob("*.py")
             if p.name not in ("__init__.py", "__main__.py")}
    return {name: imports(path, set(paths) - {name}) for name, path in paths.items()}


def render(edges: dict[str, set[str]]) -> str:
    """Modules by height (longest import chain below them), highest first."""
    height: dict[str, int] = {}

    def measure(name: str) -> int:
        if name not in height:
            height[name] = 0  # a cycle would stop here; there is none
            height[name] = 1 + max((measure(d) for d in edges[name]), default=-1)
        return height[name]

    order = sorted(edges, key=lambda name: (-measure(name), name))
    width = max(len(name) for name in edges)
    lines = [f"{name:<{width}}  -> {' '.join(sorted(edges[name]))}".rstrip(" ->")
             for name in order]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    text = render(graph())
    if "--check" not in argv and "--write" not in argv:
        sys.stdout.write(text)
        return 0
    readme_path = ROOT / "README.md"
    readme = readme_path.read_text(encoding="utf-8")
    parts = readme.split(MARKER)
    if "--write" in argv and len(parts) == 3:
        readme_path.write_text(f"{parts[0]}{MARKER}\n```\n{text}```\n{MARKER}{parts[2]}",
                               encoding="utf-8")
        return 0
    if len(parts) != 3 or parts[1].strip().removeprefix("```").removesuffix("```").strip() \
            != text.strip():
        sys.stdout.write("README.md's import graph is out of date (update it with "
                         "python scripts/import_graph.py --write); it should read:\n" + text)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
