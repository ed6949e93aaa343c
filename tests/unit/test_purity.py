"""Pure core: no I/O, clocks or global randomness; imports flow node -> fl -> consensus.

Walks the AST of every module of the pure packages and fails on a forbidden import, so a
violation is caught by the tests rather than by a non-deterministic chain.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Modules that read the world: time, randomness, processes, files, sockets, event loops.
IO_MODULES = frozenset(
    {
        "asyncio",
        "socket",
        "time",
        "os",
        "random",
        "datetime",
        "threading",
        "subprocess",
        "selectors",
        "secrets",
        "uvloop",
        "aiohttp",
        "sqlite3",
        "signal",
        "multiprocessing",
        "shutil",
        "tempfile",
        "pathlib",
        "io",
        "logging",
    }
)

# (package, sub-paths exempt from the I/O rule, packages it must never import)
PURE_PACKAGES = [
    ("consensus", ("consensus/sim",), {"fl", "node"}),
    ("fl", ("fl/client",), {"node"}),
]


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


def _violations(package: str, exempt: tuple[str, ...], forbidden_packages: set[str]) -> list[str]:
    problems = []
    for path in sorted((ROOT / package).rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        io_allowed = rel.startswith(exempt)
        for lineno, module in _imports(path):
            top = module.split(".")[0]
            if top in forbidden_packages:
                problems.append(
                    f"{rel}:{lineno} imports {module} (imports flow node -> fl -> consensus)"
                )
            if top in IO_MODULES and not io_allowed:
                problems.append(f"{rel}:{lineno} imports {module} (pure core must not do I/O)")
    return problems


@pytest.mark.parametrize(("package", "exempt", "forbidden"), PURE_PACKAGES)
def test_pure_packages_import_no_io_and_flow_one_way(
    package: str, exempt: tuple[str, ...], forbidden: set[str]
) -> None:
    assert _violations(package, exempt, forbidden) == []


def test_checker_flags_a_forbidden_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import time\nfrom node.cli import main\n")
    assert [m for _, m in _imports(bad)] == ["time", "node.cli"]
