"""The layers of ARCHITECTURE.md hold: every import inside nanodet_deploy (lazy ones in functions and a package's
``_LAZY`` table included) goes to the same layer or one below, there is no import circle, and every module has its
place in the table."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "nanodet_deploy"


def modules() -> dict[str, Path]:
    """Module name inside the package ("runtimes.ncnn"; a package by its folder, the root as "nanodet_deploy")."""
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts) or "nanodet_deploy"] = path
    return found


def imports(name: str, path: Path, known: dict) -> set[str]:
    """The package's modules that ``name`` imports, resolved to modules (``from .x import y``: ``x.y`` when y is a
    module, else ``x``)."""
    package = name.split(".") if path.name == "__init__.py" and name != "nanodet_deploy" else \
        ([] if name == "nanodet_deploy" else name.split(".")[:-1])
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names if a.name.split(".")[0] == "nanodet_deploy"]
            targets = [t.split(".", 1)[1] if "." in t else "nanodet_deploy" for t in targets]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - (node.level - 1)] if node.level > 1 else package
            elif node.module and node.module.split(".")[0] == "nanodet_deploy":
                base, node = [], ast.ImportFrom(module=node.module.partition(".")[2] or None, names=node.names)
            else:
                continue
            stem = ".".join(base + ([node.module] if node.module else []))
            targets = [f"{stem}.{a.name}".lstrip(".") if f"{stem}.{a.name}".lstrip(".") in known
                       else (stem or "nanodet_deploy") for a in node.names]
        elif isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] == ["_LAZY"]:
            # a package's names loaded on first use (PEP 562, model/__init__.py): its modules are its imports
            targets = [".".join(package + [key.value]) for key in node.value.keys]
        else:
            continue
        for target in targets:
            while target not in known and "." in target:
                target = target.rsplit(".", 1)[0]
            if target in known and target != name:
                out.add(target)
    return out


def layers() -> dict[str, int]:
    """ARCHITECTURE.md's table: module pattern -> layer number."""
    text = (ROOT / "ARCHITECTURE.md").read_text()
    table = {}
    for number, cells in re.findall(r"^\| (\d+) [^|]+ \| ([^|]+) \|$", text, re.M):
        for pattern in cells.split(","):
            table[pattern.strip()] = int(number)
    return table


def layer_of(module: str, table: dict[str, int]) -> int | None:
    if module in table:
        return table[module]
    folder = module.rsplit(".", 1)[0] + ".*" if "." in module else None
    return table.get(folder)


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(name, path, known) for name, path in sorted(known.items())}


def test_every_module_has_a_layer():
    table = layers()
    assert len(table) > 30, "ARCHITECTURE.md's layer table was not found"
    missing = [m for m in modules() if layer_of(m, table) is None]
    assert not missing, f"modules without a layer in ARCHITECTURE.md: {missing}"


def test_imports_only_go_down():
    table = layers()
    upward = [f"{m} (layer {layer_of(m, table)}) imports {d} (layer {layer_of(d, table)})"
              for m, deps in graph().items() for d in sorted(deps)
              if layer_of(d, table) is not None and layer_of(m, table) is not None
              and layer_of(d, table) > layer_of(m, table)]
    assert not upward, "\n".join(upward)


def test_no_import_circle():
    edges = graph()
    state: dict[str, int] = {}
    circles = []

    def visit(node, trail):
        state[node] = 1
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                circles.append(" -> ".join(trail[trail.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, trail + [nxt])
        state[node] = 2

    for node in edges:
        if node not in state:
            visit(node, [node])
    assert not circles, "\n".join(circles)


@pytest.mark.parametrize("source, found", [
    ("from .errors import UsageError", {"errors"}),
    ("from . import bench as b", {"bench"}),
    ("from ..processing import preprocess", {"processing"}),
    ("import nanodet_deploy.report", {"report"}),
])
def test_the_import_reader_resolves_each_form(tmp_path, source, found):
    """The checks above are only as good as this reader: each import form resolves to the module it names."""
    path = tmp_path / ("x.py" if ".." not in source else "__init__.py")
    path.write_text(source + "\n")
    name = "cli" if ".." not in source else "runtimes"
    assert imports(name, path, modules()) == found


def print_graph() -> None:
    table = layers()
    for module, deps in graph().items():
        print(f"{layer_of(module, table):>2} {module} -> {', '.join(sorted(deps)) or '-'}")


if __name__ == "__main__":
    print_graph()
