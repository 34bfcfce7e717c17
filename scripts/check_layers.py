"""Check the shape of the stt package: import loops, layering, import depth, long functions.

Reads every module of ``stt/`` (and the importers in ``scripts/*.py``) with :mod:`ast`, without
importing anything, and builds the graph of imports between stt modules: absolute ``stt.x``
imports and relative ones, at module level, under ``if TYPE_CHECKING:`` and inside functions (the
lazy imports usually placed there to dodge a loop are still dependencies, so they count, marked
as such). It reports:

1. import loops: strongly connected components of more than one module, with their edges and the
   names each edge imports;
2. layering violations: an import from a module to one in a higher layer of ``LAYERS`` below, or
   to or from a module that ``LAYERS`` does not list (so the table is kept up to date);
3. the import depth: the number of modules on the longest import chain, after condensing loops;
4. functions (and methods) of stt longer than ``MAX_FUNCTION_LINES`` lines;

and, as a by-product, imports of stt modules or names that do not exist (from stt or scripts),
which is what a module move breaks first.

    python scripts/check_layers.py                     # summary on stdout
    python scripts/check_layers.py --json bench/results/layers.json
    python scripts/check_layers.py --check             # exit 1 if a target is missed

The exit status is 0 unless ``--check`` is given and a target is missed. Standard library only.
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "stt"

# The intended layers, lowest first: a module may import from its own layer and the ones below,
# never from a higher one. Names are relative to the package; "__init__" is the package itself
# and "data.*" covers the data package and every module in it. A module that is not listed is a
# violation: add new modules here when you create them. Names listed here that do not exist
# (yet) are only noted, so the table can name a planned module before it lands.
LAYERS: list[tuple[str, list[str]]] = [
    ("foundations", ["errors", "atomic", "version"]),
    ("primitives", ["text", "audio", "config", "metrics"]),
    ("signal and data", ["features", "silence", "lm", "data.*"]),
    ("model", ["model"]),
    ("checkpoint", ["checkpoint"]),
    ("decoding", ["beam_search", "decoding"]),
    ("fusion", ["fusion", "portable"]),
    ("inference", ["inference", "exported"]),
    ("jobs", ["transcript", "transcribe", "streaming", "evaluate", "report", "export"]),
    ("training", ["training.*"]),
    ("front ends", ["demo", "writers"]),
    ("server", ["serve.*"]),
    ("command line", ["cli", "__main__", "__init__"]),
]

MAX_FUNCTION_LINES = 80
MAX_DEPTH = 10


@dataclass
class Import:
    """One import statement's edge from ``source`` to ``target`` (both dotted module names)."""

    source: str
    target: str
    names: list[str]
    file: str
    line: int
    kind: str  # "module", "type_checking" or "function"


@dataclass
class Module:
    name: str  # dotted, e.g. "stt.data.manifest"; "scripts/x.py" for a script
    file: str  # relative to the root
    is_package: bool
    tree: ast.Module
    defined: set[str] = field(default_factory=set)
    open_ended: bool = False  # defines __getattr__ or does `import *`: any name may exist


def short(name: str, package: str = PACKAGE) -> str:
    """``stt.data.manifest`` -> ``data.manifest``; the package itself -> ``__init__``."""
    if name == package:
        return "__init__"
    return name[len(package) + 1 :] if name.startswith(package + ".") else name


def discover(root: Path, package: str) -> dict[str, Module]:
    """Parse every module of ``root/package`` and every ``root/scripts/*.py``."""
    modules: dict[str, Module] = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        is_package = parts[-1] == "__init__"
        name = ".".join(parts[:-1] if is_package else parts)
        modules[name] = _parse(root, path, name, is_package)
    for path in sorted((root / "scripts").glob("*.py")):
        name = path.relative_to(root).as_posix()
        modules[name] = _parse(root, path, name, False)
    return modules


def _parse(root: Path, path: Path, name: str, is_package: bool) -> Module:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    module = Module(name, path.relative_to(root).as_posix(), is_package, tree)
    for node in _top_level(tree.body):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            module.defined.add(node.name)
            module.open_ended |= node.name == "__getattr__"
        elif isinstance(node, ast.Import | ast.ImportFrom):
            for alias in node.names:
                if alias.name == "*":
                    module.open_ended = True
                else:
                    module.defined.add(alias.asname or alias.name.split(".")[0])
        elif isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                for sub in ast.walk(target):
                    if isinstance(sub, ast.Name):
                        module.defined.add(sub.id)
    return module


def _top_level(body: Iterable[ast.stmt]) -> Iterable[ast.stmt]:
    """Module-level statements, looking into if/try/with blocks but not functions or classes."""
    for node in body:
        yield node
        if isinstance(node, ast.If | ast.Try | ast.With):
            for block in ("body", "orelse", "finalbody", "handlers"):
                for child in getattr(node, block, []):
                    if isinstance(child, ast.ExceptHandler):
                        yield from _top_level(child.body)
                    else:
                        yield from _top_level([child])


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(tree: ast.Module) -> Iterable[tuple[ast.Import | ast.ImportFrom, str]]:
    """Every import statement of a module with its kind: module, type_checking or function."""

    def visit(node: ast.AST, kind: str) -> Iterable[tuple[ast.Import | ast.ImportFrom, str]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import | ast.ImportFrom):
                yield child, kind
            elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                yield from visit(child, "function")
            elif isinstance(child, ast.If) and kind == "module" and _is_type_checking(child.test):
                for stmt in child.body:
                    yield from visit(ast.Module(body=[stmt], type_ignores=[]), "type_checking")
                for stmt in child.orelse:
                    yield from visit(ast.Module(body=[stmt], type_ignores=[]), "module")
            else:
                yield from visit(child, kind)

    yield from visit(tree, "module")


def collect_imports(modules: dict[str, Module], package: str) -> list[Import]:
    """The edges between modules: one per (statement, imported module)."""
    edges: list[Import] = []
    for module in modules.values():
        for node, kind in _import_nodes(module.tree):
            targets: dict[str, list[str]] = {}
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name == package or alias.name.startswith(package + "."):
                        targets.setdefault(alias.name, [])
            else:
                base = _absolute_base(module, node)
                if base is None or not (base == package or base.startswith(package + ".")):
                    continue
                for alias in node.names:
                    submodule = f"{base}.{alias.name}"
                    if submodule in modules:  # `from stt import text`: the module stt.text
                        targets.setdefault(submodule, [])
                    else:
                        targets.setdefault(base, []).append(alias.name)
            for target, names in targets.items():
                edges.append(Import(module.name, target, names, module.file, node.lineno, kind))
    return edges


def _absolute_base(module: Module, node: ast.ImportFrom) -> str | None:
    if not node.level:
        return node.module
    if module.name.startswith("scripts/"):
        return None
    parts = module.name.split(".")
    if not module.is_package:
        parts = parts[:-1]
    if node.level > 1:
        parts = parts[: len(parts) - (node.level - 1)]
    if not parts:
        return None
    return ".".join(parts + ([node.module] if node.module else []))


def unresolved_imports(modules: dict[str, Module], edges: list[Import]) -> list[dict]:
    """Imports of a module that does not exist, or of a name its module does not define."""
    found = []
    for edge in edges:
        target = modules.get(edge.target)
        if target is None:
            missing = [edge.target]
        elif target.open_ended:
            continue
        else:
            missing = [f"{edge.target}.{n}" for n in edge.names if n not in target.defined]
        for what in missing:
            found.append({"import": what, "at": f"{edge.file}:{edge.line}", "kind": edge.kind})
    return found


def strongly_connected(nodes: Sequence[str], graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iteratively; components in reverse topological order."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0
    for start in nodes:
        if start in index:
            continue
        work = [(start, iter(sorted(graph.get(start, ()))))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    components.append(sorted(component))
            elif child not in index:
                index[child] = low[child] = counter
                counter += 1
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(graph.get(child, ())))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return components


def longest_chain(components: list[list[str]], graph: dict[str, set[str]]) -> list[list[str]]:
    """The longest chain of components (importer first) in the condensed graph."""
    owner = {m: i for i, comp in enumerate(components) for m in comp}
    best: dict[int, list[int]] = {}
    # Tarjan emits a component after everything it imports, so one pass in order suffices.
    for i, comp in enumerate(components):
        below = {owner[t] for m in comp for t in graph.get(m, ()) if owner[t] != i}
        tail = max((best[j] for j in below), key=len, default=[])
        best[i] = [i, *tail]
    chain = max(best.values(), key=len, default=[])
    return [components[i] for i in chain]


def edge_record(edge: Import, package: str) -> dict:
    return {
        "from": short(edge.source, package),
        "to": short(edge.target, package),
        "names": edge.names,
        "at": f"{edge.file}:{edge.line}",
        "kind": edge.kind,
    }


def layer_of(name: str, layers: list[tuple[str, list[str]]], package: str) -> int | None:
    rel = short(name, package)
    for level, (_, patterns) in enumerate(layers):
        for pattern in patterns:
            if rel == pattern or (
                pattern.endswith(".*") and (rel == pattern[:-2] or rel.startswith(pattern[:-1]))
            ):
                return level
    return None


def layer_violations(
    edges: list[Import],
    modules: Iterable[str],
    layers: list[tuple[str, list[str]]],
    package: str,
) -> list[dict]:
    """Upward imports, and modules missing from the table (one entry each)."""
    found: list[dict] = []
    for name in sorted(modules):
        if layer_of(name, layers, package) is None:
            found.append({"module": short(name, package), "problem": "not in LAYERS"})
    for edge in edges:
        low, high = layer_of(edge.source, layers, package), layer_of(edge.target, layers, package)
        if low is not None and high is not None and high > low:
            record = edge_record(edge, package)
            found.append(record | {"from_layer": layers[low][0], "to_layer": layers[high][0]})
    return found


def stale_layer_entries(
    modules: Iterable[str], layers: list[tuple[str, list[str]]], package: str
) -> list[str]:
    present = {short(m, package) for m in modules}
    stale = []
    for _, patterns in layers:
        for pattern in patterns:
            prefix = pattern[:-2] if pattern.endswith(".*") else None
            if prefix is not None:
                hit = any(p == prefix or p.startswith(prefix + ".") for p in present)
            else:
                hit = pattern in present
            if not hit:
                stale.append(pattern)
    return stale


def long_functions(modules: Iterable[Module], limit: int) -> list[dict]:
    """Functions and methods longer than ``limit`` lines, decorators and docstring included."""
    found = []

    def visit(node: ast.AST, prefix: str, module: Module) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                name = f"{prefix}{child.name}"
                if not isinstance(child, ast.ClassDef):
                    first = min([child.lineno, *(d.lineno for d in child.decorator_list)])
                    length = child.end_lineno - first + 1
                    if length > limit:
                        where = {"file": module.file, "line": child.lineno}
                        found.append({"name": name, **where, "lines": length})
                visit(child, name + ".", module)
            else:
                visit(child, prefix, module)

    for module in modules:
        visit(module.tree, "", module)
    return sorted(found, key=lambda f: -f["lines"])


def analyse(
    root: Path = ROOT,
    package: str = PACKAGE,
    layers: list[tuple[str, list[str]]] | None = None,
    max_function_lines: int = MAX_FUNCTION_LINES,
    max_depth: int = MAX_DEPTH,
) -> dict:
    """All the figures for ``root/package`` as plain data (what ``--json`` writes)."""
    layers = LAYERS if layers is None else layers
    modules = discover(root, package)
    package_modules = [m for m in modules if not m.startswith("scripts/")]
    edges = collect_imports(modules, package)
    inner = [e for e in edges if e.source in package_modules and e.target in package_modules]
    graph: dict[str, set[str]] = {m: set() for m in package_modules}
    for edge in inner:
        if edge.source != edge.target:
            graph[edge.source].add(edge.target)
    components = strongly_connected(sorted(package_modules), graph)
    loops = []
    for comp in components:
        if len(comp) > 1:
            members = set(comp)
            loop_edges = [
                edge_record(e, package)
                for e in inner
                if e.source in members and e.target in members and e.source != e.target
            ]
            loops.append({"modules": [short(m, package) for m in comp], "edges": loop_edges})
    chain = longest_chain(components, graph)
    violations = layer_violations(inner, package_modules, layers, package)
    functions = long_functions((modules[m] for m in package_modules), max_function_lines)
    unresolved = unresolved_imports(modules, edges)
    figures = {
        "loops": len(loops),
        "violations": len(violations),
        "depth": len(chain),
        "long_functions": len(functions),
        "unresolved_imports": len(unresolved),
    }
    limits = {
        "loops": 0,
        "violations": 0,
        "depth": max_depth,
        "long_functions": 0,
        "unresolved_imports": 0,
    }
    return {
        "package": package,
        "modules": len(package_modules),
        "imports": len(inner),
        "lazy_imports": sum(e.kind == "function" for e in inner),
        "figures": figures,
        "targets": {
            "loops": 0,
            "violations": 0,
            "max_depth": max_depth,
            "long_functions": 0,
            "unresolved_imports": 0,
            "max_function_lines": max_function_lines,
        },
        "met": {k: figures[k] <= v for k, v in limits.items()},
        "loops": loops,
        "violations": violations,
        "depth_chain": [[short(m, package) for m in comp] for comp in chain],
        "long_functions": functions,
        "unresolved_imports": unresolved,
        "layers": [{"name": n, "modules": p} for n, p in layers],
        "stale_layer_entries": stale_layer_entries(package_modules, layers, package),
    }


def summary(report: dict) -> str:
    """The human-readable report."""
    fig, met = report["figures"], report["met"]

    def mark(key: str) -> str:
        return "ok" if met[key] else "MISSED"

    lines = [
        f"{report['package']}: {report['modules']} modules, {report['imports']} imports between "
        f"them ({report['lazy_imports']} inside functions)",
        f"import loops:        {fig['loops']:4d}   (target 0)   {mark('loops')}",
        f"layer violations:    {fig['violations']:4d}   (target 0)   {mark('violations')}",
        f"import depth:        {fig['depth']:4d}   (target <= {report['targets']['max_depth']})"
        f" {mark('depth')}",
        f"functions > {report['targets']['max_function_lines']} lines: {fig['long_functions']:4d}"
        f"   (target 0)   {mark('long_functions')}",
        f"unresolved imports:  {fig['unresolved_imports']:4d}   (target 0)   "
        f"{mark('unresolved_imports')}",
    ]
    for i, loop in enumerate(report["loops"], 1):
        lines.append(f"\nloop {i}: {' <-> '.join(loop['modules'])}")
        for e in loop["edges"]:
            lines.append(f"  {_edge(e)}")
    if report["violations"]:
        lines.append("\nlayer violations (lower layer importing a higher one):")
        for v in report["violations"]:
            if "problem" in v:
                lines.append(f"  {v['module']}: {v['problem']}")
            else:
                lines.append(f"  {_edge(v)}   [{v['from_layer']} -> {v['to_layer']}]")
    steps = ("{" + ", ".join(c) + "}" if len(c) > 1 else c[0] for c in report["depth_chain"])
    chain = " -> ".join(steps)
    lines.append(f"\nlongest import chain ({fig['depth']}): {chain}")
    if report["long_functions"]:
        lines.append(f"\nfunctions over {report['targets']['max_function_lines']} lines:")
        for f in report["long_functions"]:
            lines.append(f"  {f['lines']:4d}  {f['name']}  ({f['file']}:{f['line']})")
    if report["unresolved_imports"]:
        lines.append("\nunresolved imports:")
        for u in report["unresolved_imports"]:
            lines.append(f"  {u['import']}  ({u['at']}, {u['kind']})")
    if report["stale_layer_entries"]:
        stale = ", ".join(report["stale_layer_entries"])
        lines.append(f"\nnote: LAYERS names modules that do not exist (yet): {stale}")
    return "\n".join(lines)


def _edge(e: dict) -> str:
    names = f" ({', '.join(e['names'])})" if e["names"] else ""
    lazy = {"function": "  [in a function]", "type_checking": "  [TYPE_CHECKING]"}.get(
        e["kind"], ""
    )
    return f"{e['from']} -> {e['to']}{names}  at {e['at']}{lazy}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, metavar="PATH", help="write the figures as JSON")
    parser.add_argument("--check", action="store_true", help="exit 1 if a target is missed")
    parser.add_argument(
        "--root", type=Path, default=ROOT, help="repository root (default: this one)"
    )
    parser.add_argument("--package", default=PACKAGE, help="package folder under the root")
    args = parser.parse_args(argv)
    report = analyse(args.root, args.package)
    print(summary(report))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 1 if args.check and not all(report["met"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
