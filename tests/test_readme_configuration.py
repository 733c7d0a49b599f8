"""The README's configuration table is the settings the service reads: every variable it names is
read by app/config.py, every variable app/config.py reads is named there, and the default it
states is the one the code applies."""

from __future__ import annotations

import re
from pathlib import Path

import msgspec

from app.config import _Variables

ROOT = Path(__file__).resolve().parents[1]
NAME = re.compile(r"`((?:STATS|ALIYUN_SLS|DIFY)_[A-Z0-9_]+)(?:=[^`]*)?`")  # `NAME` or `NAME=value`


def _table() -> list[tuple[list[str], str, str]]:
    """(variables named in the first cell, the default cell, the meaning cell) of each row."""
    section = (ROOT / "README.md").read_text().split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("| `") and len(cells) == 3:
            rows.append((NAME.findall(cells[0]), cells[1], cells[2]))
    return rows


def test_the_table_names_every_variable_read_and_only_those() -> None:
    source = (ROOT / "app" / "config.py").read_text()
    read = set(re.findall(r'"((?:STATS|ALIYUN_SLS|DIFY)_[A-Z0-9_]+)"', source)) | set(
        _Variables.__struct_fields__
    )
    rows = _table()
    named = {name for names, _, meaning in rows for name in [*names, *NAME.findall(meaning)]}
    assert {"STATS_BODY_TIMEOUT", "STATS_METRICS_KEY", "STATS_API_KEYS"} <= named
    assert read == named, (sorted(read - named), sorted(named - read))


def test_the_stated_defaults_are_the_codes() -> None:
    defaults = {
        field.name: field.default
        for field in msgspec.structs.fields(_Variables)
        if field.default not in (None, msgspec.NODEFAULT)
    }
    checked = 0
    for names, default_cell, _ in _table():
        stated = re.findall(r"`([^`]*)`", default_cell)
        if default_cell == "—" or len(stated) < len(names):
            continue  # not set by default; or a default that depends on other settings, said in words
        for name, text in zip(names, stated, strict=False):
            if name in defaults:
                value = defaults[name]
                shown = str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)
                assert text.replace(",", "") == shown, (name, default_cell, value)
                checked += 1
    assert checked >= 25
