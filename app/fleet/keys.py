"""How the fleet names what it keeps in Redis: one place for every key's parts.

- Data keys (answers, settled days, kept runs) carry the *release*: the service's version and a
  digest of the SQL it sends (every file of `queries/`, and the measures' declarations in
  app/core/measures.py). A rollout that changes a statement or a measure therefore reads and writes
  keys of its own, and never serves an older release's answers beside its own. They also carry a
  tag of the value's type (`schema_tag`), and a digest of the cache key (`key_digest`).
- Coordination keys (the query budget, the replica heartbeat) carry only FORMAT: old and new
  replicas of a rolling deploy must share one budget, since they share one store.
"""

from __future__ import annotations

import hashlib
from collections.abc import Hashable
from functools import cache
from pathlib import Path
from typing import Any

import msgspec

import queries
from app import __version__
from app.core import measures

FORMAT = "v2"  # bumped when the layout of keys changes (v2: budget queue by tenant, chunked kept runs)


@cache
def schema_tag(value_type: Any) -> str:
    """Changes whenever the value type's shape does (field added, renamed, retyped)."""
    schema = msgspec.json.encode(msgspec.json.schema(value_type))
    return hashlib.sha256(schema).hexdigest()[:10]


def key_digest(key: Hashable) -> str:
    """A cache key (tuples of strings, numbers and request structs) as a short fixed-length name."""
    return hashlib.sha256(msgspec.msgpack.encode(key)).hexdigest()[:32]


def sql_digest(files: list[Path]) -> str:
    """A digest of the files' names and contents: any change to what is sent changes it."""
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:10]


def sql_files() -> list[Path]:
    """The statements' sources: every module and SQL file of `queries/`, and the measures'
    declarations (their SQL aggregates and how points are made of them)."""
    root = Path(queries.__file__).parent
    found = sorted(path for path in root.rglob("*") if path.suffix in (".py", ".sql"))
    return [*found, Path(measures.__file__)]


@cache
def release() -> str:
    """This release's tag: `<version>-<digest of its SQL>` (no `:`, so keys stay parseable)."""
    return f"{__version__}-{sql_digest(sql_files())}".replace(":", "_")
