"""CSV answers: every native answer that is a list of items (its `data`) as a table, for
spreadsheets, curl and notebooks.

One column per field of the item struct, in the struct's order; a nested struct's fields become
`<field>_<subfield>` columns; a list of structs is spread over columns named by one of its
fields (`Spread`: `costs` as `cost_USD`, `cost_RMB`, ...), which each route declares, since
nothing else says how to flatten one. Cells are written as the JSON answer writes the same
values: numbers in msgspec's JSON form, `true`/`false`, null as an empty cell. Text is always
quoted (RFC 4180: `"` doubled), and a text that a spreadsheet would run as a formula, one that
starts with `=`, `+`, `-`, `@`, a tab or a carriage return, gets a leading `'` (OWASP's advice
against CSV injection): ids, versions, titles and errors come from the store, where anyone who
can run a workflow can put text. Numbers are never quoted nor prefixed, so they stay numbers.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

import msgspec
from litestar import Request, Response
from litestar.datastructures import Accept
from msgspec import inspect

from app.core.days import from_epoch_us
from app.http.params import choice_param

CSV_MEDIA_TYPE = "text/csv"  # litestar adds `; charset=utf-8`, as to every text/* answer
JSON_MEDIA_TYPE = "application/json"
LINE_END = "\r\n"  # RFC 4180
# The first characters that make a spreadsheet read a cell as a formula (OWASP, CSV Injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
# Decimal strings the service writes (prices): numbers, written as they are.
_DECIMAL = re.compile(r"-?[0-9]{1,40}(\.[0-9]{1,40})?")
# Column names written bare; others (a spread column named by a value from the store) are text.
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_.]{1,200}")

AnswerFormat = Literal["json", "csv"]
ANSWER_FORMATS: tuple[AnswerFormat, ...] = ("json", "csv")


class Spread(msgspec.Struct, frozen=True):
    """How a list of structs becomes columns: one column per value of its `key` field in the
    answer (sorted), named `prefix + key value`, holding that item's `value` field.
    `decimal`: the values are decimal strings (prices), written as numbers."""

    key: str
    value: str
    prefix: str
    decimal: bool = True


# The node analytics' `costs` (`[{"currency": "USD", "total_price": "1.25"}]`): `cost_USD` columns.
PRICES = Spread(key="currency", value="total_price", prefix="cost_")


class _Field(msgspec.Struct, frozen=True):
    """One column: the attribute path to its value."""

    name: str
    path: tuple[str, ...]


class _Spread(msgspec.Struct, frozen=True):
    """The columns of one spread list field."""

    path: tuple[str, ...]
    spread: Spread


def text_cell(text: str) -> str:
    """A text cell: neutralised if a spreadsheet would run it, then quoted."""
    if text.startswith(FORMULA_STARTS):
        text = "'" + text
    return '"' + text.replace('"', '""') + '"'


def cell(value: Any) -> str:
    """A value as the JSON answer writes it; text as `text_cell`; null as nothing."""
    if value is None:
        return ""
    if isinstance(value, str):
        return text_cell(value)
    return msgspec.json.encode(value).decode()  # numbers and booleans exactly as in JSON


def _decimal_cell(value: Any) -> str:
    if isinstance(value, str) and _DECIMAL.fullmatch(value):
        return value
    return cell(value)


class CsvTable:
    """The columns of an item struct. Built once per route, when the routes are built, so that
    a field nothing says how to flatten fails at start-up, not on a request."""

    def __init__(self, item_type: type[msgspec.Struct], spreads: Mapping[str, Spread] | None = None) -> None:
        self.item_type = item_type
        self._spreads = dict(spreads or {})
        self._columns = list(self._flatten(item_type, (), ""))
        unused = set(self._spreads) - {c.path[-1] for c in self._columns if isinstance(c, _Spread)}
        if unused:
            raise TypeError(f"{item_type.__name__} has no list field {sorted(unused)} to spread")

    def _flatten(
        self, struct_type: type[msgspec.Struct], path: tuple[str, ...], prefix: str
    ) -> Iterable[_Field | _Spread]:
        info = inspect.type_info(struct_type)
        assert isinstance(info, inspect.StructType)
        for field in info.fields:
            kind = _unwrapped(field.type)
            here = (*path, field.name)
            if isinstance(kind, inspect.StructType):
                yield from self._flatten(kind.cls, here, f"{prefix}{field.name}_")
            elif isinstance(kind, inspect.ListType | inspect.VarTupleType | inspect.SetType):
                if field.name not in self._spreads:
                    raise TypeError(
                        f"{struct_type.__name__}.{field.name} is a list: declare a Spread for its columns"
                    )
                yield _Spread(here, self._spreads[field.name])
            elif isinstance(kind, inspect.DictType | inspect.AnyType | inspect.FrozenSetType):
                raise TypeError(f"{struct_type.__name__}.{field.name} has no columns: leave it out")
            else:
                yield _Field(prefix + field.name, here)

    def describe(self) -> str:
        """The columns, for the OpenAPI document: a spread list as `<prefix><key>` columns."""
        return ", ".join(
            column.name if isinstance(column, _Field) else f"{column.spread.prefix}<{column.spread.key}>"
            for column in self._columns
        )

    def _spread_keys(self, items: Sequence[Any]) -> dict[tuple[str, ...], list[str]]:
        keys: dict[tuple[str, ...], list[str]] = {}
        for column in self._columns:
            if isinstance(column, _Spread):
                found = {
                    str(getattr(entry, column.spread.key))
                    for item in items
                    for entry in _at(item, column.path) or ()
                }
                keys[column.path] = sorted(found)
        return keys

    def header(self, items: Sequence[Any] = ()) -> str:
        """The header line; a spread list's columns are those of `items`."""
        return self._header(self._spread_keys(items))

    def _header(self, keys: dict[tuple[str, ...], list[str]]) -> str:
        names: list[str] = []
        for column in self._columns:
            if isinstance(column, _Spread):
                names += [column.spread.prefix + key for key in keys[column.path]]
            else:
                names.append(column.name)
        return ",".join(name if _PLAIN_NAME.fullmatch(name) else text_cell(name) for name in names) + LINE_END

    def rows(self, items: Sequence[Any], keys: dict[tuple[str, ...], list[str]] | None = None) -> str:
        """The lines of `items` (the spread columns of `keys`, or of these items)."""
        keys = self._spread_keys(items) if keys is None else keys
        lines = []
        for item in items:
            cells: list[str] = []
            for column in self._columns:
                if isinstance(column, _Spread):
                    spread = column.spread
                    values = {
                        str(getattr(e, spread.key)): getattr(e, spread.value)
                        for e in _at(item, column.path) or ()
                    }
                    write = _decimal_cell if spread.decimal else cell
                    cells += [write(values.get(key)) for key in keys[column.path]]
                else:
                    cells.append(cell(_at(item, column.path)))
            lines.append(",".join(cells))
        return "".join(line + LINE_END for line in lines)

    def document(self, items: Sequence[Any]) -> bytes:
        """A whole CSV answer: the header, then one line per item."""
        keys = self._spread_keys(items)
        return (self._header(keys) + self.rows(items, keys)).encode()


def _unwrapped(kind: inspect.Type) -> inspect.Type:
    """The type under metadata and an optional's None."""
    if isinstance(kind, inspect.Metadata):
        return _unwrapped(kind.type)
    if isinstance(kind, inspect.UnionType):
        others = [member for member in kind.types if not isinstance(member, inspect.NoneType)]
        if len(others) == 1:
            return _unwrapped(others[0])
    return kind


def _at(item: Any, path: tuple[str, ...]) -> Any:
    for name in path:
        if item is None:
            return None
        item = getattr(item, name)
    return item


def wanted_format(
    request: Request[Any, Any, Any], asked: str | None, formats: Sequence[str], media_types: Sequence[str]
) -> str:
    """The `format` parameter if given (one of `formats`, else a 400 naming it), else the one the
    Accept header prefers among `media_types` (in `formats`' order; the first when it says
    nothing, or `*/*`)."""
    if asked is not None:
        return choice_param("format", asked, tuple(formats))
    accept = Accept(request.headers.get("accept", ""))
    best = accept.best_match(list(media_types), default=media_types[0])
    return formats[list(media_types).index(best)] if best in media_types else formats[0]


def range_label(start_us: int | None, end_us: int | None, zone: str) -> str:
    """A range in a file name: each bound as its local date (a midnight) or date and time in
    `zone`; `earliest` and `latest` for open bounds."""

    def bound(us: int | None, open_name: str) -> str:
        if us is None:
            return open_name
        local: datetime = from_epoch_us(us, ZoneInfo(zone))
        if local.time() == datetime.min.time():
            return local.date().isoformat()
        return local.strftime("%Y-%m-%dT%H%M%S")

    return f"{bound(start_us, 'earliest')}_{bound(end_us, 'latest')}"


def attachment(filename: str) -> dict[str, str]:
    """Content-Disposition for a file name made of ids, dates and route names (no quoting needed)."""
    return {"Content-Disposition": f'attachment; filename="{filename}"'}


def csv_response(
    table: CsvTable, items: Sequence[Any], filename: str, headers: Mapping[str, str]
) -> Response[Any]:
    """A list answer as a CSV download."""
    return Response(
        table.document(items),
        media_type=CSV_MEDIA_TYPE,
        headers={**headers, **attachment(filename)},
    )
