"""Statements with their values written in, for SLS's endpoint.

SLS has no server-side binding, and how it reads a backslash escape (`E'...'`) is undocumented,
so values reach it in one form only: integers as digits, text in single quotes with each quote
doubled, NULL. Every other type is refused here rather than guessed at. Values were validated by
the app before they got here; this makes the quoting itself, too, unable to change a statement.
"""

from __future__ import annotations

import re

from queries.scope import Query

_PLACEHOLDER = re.compile(r"%\((\w+)\)s")


def sql_literal(value: object) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        raise TypeError("booleans are not bound into statements")
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError("text with a NUL character cannot be sent")
        return "'" + value.replace("'", "''") + "'"
    raise TypeError(f"{type(value).__name__} values are not bound into SLS statements")


def with_literals(query: Query) -> str:
    """The statement's text with every `%(name)s` replaced by its value's literal."""
    return _PLACEHOLDER.sub(lambda found: sql_literal(query.params[found.group(1)]), query.sql)
