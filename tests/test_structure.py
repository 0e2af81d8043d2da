"""The shape of the code: the layers import-linter checks (pyproject.toml), ruff's lint and format, no import cycle
inside babyjax/, functions that fit on a screen and modules a reader can hold in mind, all counted on formatted code
(ast)."""

from __future__ import annotations

import ast
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "babyjax"
MAX_FUNCTION_LINES = 60
MAX_MODULE_LINES = 500


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


def test_modules_fit_in_mind():
    sizes = {path.relative_to(ROOT): len(path.read_text().splitlines()) for path in _modules().values()}
    assert not {p: n for p, n in sizes.items() if n > MAX_MODULE_LINES}


def _tool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_ruff_lint_and_format():
    """`ruff check .` and `ruff format --check .` pass on the whole checkout (settings: pyproject.toml)."""
    lint = _tool("-m", "ruff", "check", ".")
    assert lint.returncode == 0, lint.stdout + lint.stderr
    fmt = _tool("-m", "ruff", "format", "--check", ".")
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr


def test_layers_hold():
    """import-linter's contracts (pyproject.toml) are kept, and its layers name every top-level part of babyjax/."""
    import tomllib

    result = _tool("-c", "import sys; from importlinter.cli import lint_imports; sys.exit(lint_imports(no_cache=True))")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout, result.stdout
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    layered = {
        part.strip() for c in contracts if c["type"] == "layers" for layer in c["layers"] for part in layer.split("|")
    }
    top = {
        p.stem
        for p in PACKAGE.iterdir()
        if (p.suffix == ".py" and p.stem != "__init__") or (p / "__init__.py").exists()
    }
    assert top == layered, (
        f"parts of babyjax/ outside the layers: {sorted(top - layered)}; unknown: {sorted(layered - top)}"
    )
