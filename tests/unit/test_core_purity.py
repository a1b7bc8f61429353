"""The core stays pure: no I/O library, web framework, database driver or outer layer imports."""

from __future__ import annotations

import ast
import pathlib

CORE = pathlib.Path(__file__).resolve().parents[2] / "src" / "tiergate" / "core"
FORBIDDEN = {
    "asyncio", "socket", "sqlite3", "psycopg", "psycopg_pool", "aiohttp", "httpx", "fastapi",
    "starlette", "uvicorn", "requests", "urllib", "http", "subprocess", "threading", "os", "time",
    "typer", "rich", "prometheus_client",
}
FORBIDDEN_TIERGATE = ("tiergate.adapters", "tiergate.service", "tiergate.api", "tiergate.cli")


def _imports(path: pathlib.Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_core_imports_no_io_and_no_outer_layer() -> None:
    files = sorted(CORE.rglob("*.py"))
    assert files, "the core package has modules"
    for path in files:
        for name in _imports(path):
            top = name.split(".")[0]
            assert top not in FORBIDDEN, f"{path.name} imports {name}: the core must stay free of I/O"
            assert not name.startswith(FORBIDDEN_TIERGATE), f"{path.name} imports an outer layer: {name}"
