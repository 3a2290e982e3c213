"""House rules checked on every run: lint, format, types, and the layering of DESIGN.md."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)


def test_ruff_lint_and_format() -> None:
    lint = run(str(BIN / "ruff"), "check", ".")
    assert lint.returncode == 0, lint.stdout + lint.stderr
    fmt = run(str(BIN / "ruff"), "format", "--check", ".")
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr


def test_mypy() -> None:
    result = run(str(BIN / "mypy"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_pure_packages_import_no_database_or_web() -> None:
    """probe/, simulator/, scoring/ and the shared domain types never import the database or the web layer."""
    forbidden = (
        "app.db",
        "app.models",
        "app.web",
        "app.api",
        "app.services",
        "app.deps",
        "sqlalchemy",
        "fastapi",
    )
    pure = [ROOT / "app" / "domain.py", ROOT / "app" / "summary.py"]
    for package in ("probe", "simulator", "scoring"):
        pure += (ROOT / "app" / package).rglob("*.py")
    for path in pure:
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert not name.startswith(forbidden), f"{path.relative_to(ROOT)} imports {name}"


def test_routers_hold_no_queries() -> None:
    """Routers parse, delegate and shape the answer: no SQL in app/api or app/web."""
    for folder in ("api", "web"):
        for path in (ROOT / "app" / folder).rglob("*.py"):
            source = path.read_text()
            for needle in ("select(", "session.execute(", "session.scalar", "from sqlalchemy import"):
                assert needle not in source, f"{path.relative_to(ROOT)} contains {needle!r}"


def _imports(path: Path) -> list[str]:
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
    return names


def test_the_other_layers_keep_to_their_rooms() -> None:
    """importers/ are pure and never pull in the load loop for a type; the probe and the simulator
    it is checked against share nothing of each other's; services never reach up into the web."""
    rules = {
        "importers": ("app.db", "app.models", "app.services", "app.web", "app.api", "sqlalchemy", "fastapi",
                      "app.probe.runner", "app.simulator"),
        "probe": ("app.simulator",),
        "simulator": ("app.probe",),
        "services": ("app.web", "app.api"),
    }  # fmt: skip
    for package, forbidden in rules.items():
        for path in (ROOT / "app" / package).rglob("*.py"):
            for name in _imports(path):
                assert not name.startswith(forbidden), f"{path.relative_to(ROOT)} imports {name}"


def test_no_two_modules_import_each_other() -> None:
    """No import cycle in app/, direct or in a loop, counting imports inside functions and under
    TYPE_CHECKING (a package's import of a submodule counts as importing that submodule)."""
    modules: dict[str, Path] = {}
    for path in (ROOT / "app").rglob("*.py"):
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        modules[name.removesuffix(".__init__")] = path
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                deps |= {alias.name for alias in node.names if alias.name in modules}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                for alias in node.names:
                    full = f"{node.module}.{alias.name}"
                    deps.add(full if full in modules else node.module)
        graph[name] = (deps & modules.keys()) - {name}

    def reaches(start: str, goal: str) -> bool:
        seen, todo = set(), [start]
        while todo:
            here = todo.pop()
            if here == goal:
                return True
            if here not in seen:
                seen.add(here)
                todo.extend(graph[here])
        return False

    loops = sorted(f"{a} -> {b}" for a, deps in graph.items() for b in deps if reaches(b, a))
    assert not loops, loops


def test_the_design_lists_every_module() -> None:
    """docs/DESIGN.md's module list names every module in app/, each under its own folder, and
    nothing that is not there."""
    design = (ROOT / "docs" / "DESIGN.md").read_text()
    listed: set[str] = set()
    folder = ""
    for line in design[design.index("### Modules") :].splitlines()[1:]:
        if line.startswith("#"):
            break
        if found := re.match(r"- `(app/[\w/]*)`", line):
            folder = found.group(1)
        elif found := re.match(r"  - `([\w.]+\.py)`", line):
            listed.add(folder + found.group(1))
    present = {str(path.relative_to(ROOT)) for path in (ROOT / "app").rglob("*.py")}
    unlisted = {path for path in present - listed if not path.endswith("__init__.py")}
    assert not unlisted, sorted(unlisted)
    assert not listed - present, sorted(listed - present)  # a package's __init__ may be listed
