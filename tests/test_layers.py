"""The layers a reader sees in the tree hold: a request flows down from the HTTP edge to the core,
the stores and the SQL, never back up; only app/fleet knows whether there is a Redis."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _imports(path: Path) -> set[str]:
    """Every module a file imports (absolute names), wherever in it."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module is not None and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def _files(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize(
    ("package", "below"),
    [
        ("queries", ("app", "schemas")),  # pure SQL builders
        ("app/core", ("app.http", "app.fleet", "app.main", "app.cli")),
        ("app/stores", ("app.http", "app.fleet", "app.core.service", "app.core.daily", "app.main")),
    ],
)
def test_a_layer_imports_nothing_above_it(package: str, below: tuple[str, ...]) -> None:
    upward = {
        f"{path.relative_to(ROOT)}: {module}"
        for path in _files(package)
        for module in _imports(path)
        if any(module == name or module.startswith(f"{name}.") for name in below)
    }
    assert upward == set()


def test_only_the_fleet_knows_whether_there_is_a_redis() -> None:
    """Outside app/fleet (and the settings that read STATS_REDIS_*), no module reads the Redis
    settings or reaches into the Redis modules: they get the fleet's stores through Protocols."""
    asking = set()
    for path in _files("app"):
        relative = path.relative_to(ROOT).as_posix()
        if relative.startswith("app/fleet/") or relative == "app/config.py":
            continue
        text = path.read_text()
        if "settings.redis" in text or ".link" in text.replace(".linkedin", ""):
            asking.add(relative)
        asking.update(
            f"{relative}: {module}"
            for module in _imports(path)
            if module.startswith("app.fleet.") or module == "redis" or module.startswith("redis.")
        )
    assert asking == set()
