"""The shape of the code (issue 9): no import cycles inside babyjax/, short functions, modules a reader can hold in
mind, and a package no bigger than before the redesign for the same features. Counted from the source (ast)."""

from __future__ import annotations

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "babyjax"
MAX_FUNCTION_LINES = 60
MAX_MODULE_LINES = 500
MAX_PACKAGE_LINES = 10_300  # 5,969 before the redesign, 6,000 after; issue 10: +1,200 (sigmoid fit and its streaming
# driver, effects, regressions, runs at equal perplexity); issue 14: +600 (the BabyLM 2025 sentence, reading, AoA
# tasks); issue 11: +1,200 (encoders, objectives and masking, PLL and MNTP scoring, the masked exports); issue 12:
# +1,100 (studies: spec, runner, launchers; the cross-run report); stop 22: +100 (one-line refusals of bad input that
# lost data)


def _modules() -> dict[str, pathlib.Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _imports(path: pathlib.Path, name: str, known: set[str]) -> set[str]:
    """babyjax modules `name` imports anywhere in its file (functions included), as written."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else [])
                )
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)  # `from pkg import module`
    return {m for m in found if m in known and m != name}


def test_no_import_cycles():
    modules = _modules()
    graph = {name: _imports(path, name, set(modules)) for name, path in modules.items()}
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        for dep in sorted(graph[name]):
            assert state.get(dep) != 1, f"import cycle: {' -> '.join(path[path.index(dep) :] + [dep])}"
            if dep not in state:
                visit(dep, path + [dep])
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert graph["babyjax.errors"] == set() and graph["babyjax.distributed"] <= {"babyjax.errors"}


def test_functions_fit_on_a_screen():
    """Every function outside tests: the package, the launchers, the benchmarks and the configs."""
    long = []
    for folder in ("babyjax", "launch", "benchmarks", "configs"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    lines = node.end_lineno - node.lineno + 1
                    if lines > MAX_FUNCTION_LINES:
                        long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({lines} lines)")
    assert not long, "functions over 60 lines:\n" + "\n".join(long)


def test_modules_and_package_size():
    sizes = {path.relative_to(ROOT): len(path.read_text().splitlines()) for path in _modules().values()}
    assert not {p: n for p, n in sizes.items() if n > MAX_MODULE_LINES}
    assert sum(sizes.values()) <= MAX_PACKAGE_LINES, f"babyjax/ holds {sum(sizes.values())} lines"
