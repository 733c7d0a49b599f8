"""A stand-in for SLS's PostgreSQL endpoint: a protocol-3.0 proxy in front of the test PostgreSQL.

SLS cannot run here, so its documented limits are enforced on the wire, in front of the real
database, instead of trusting a friendlier PostgreSQL:

- only the simple query protocol: Parse (and the rest of the extended protocol) is refused;
- no transactions: BEGIN/COMMIT/ROLLBACK are answered without reaching the database;
- an empty query is an error;
- a top-level SELECT without LIMIT gets SLS's default `LIMIT 100`;
- OFFSET, LIMIT inside a subquery or CTE, and a SELECT without FROM are refused: SLS documents
  none of them (LIMIT "obtains final results, not intermediate ones");
- Presto's semantics where PostgreSQL's differ are emulated: a `DESC` sort puts NULLs last
  (PostgreSQL: first), `concat` is NULL when any argument is (queries/sls_compat.sql), and
  `TRY(f(...))` is NULL when f fails (rewritten to f's `try_` shim, since PostgreSQL evaluates a
  function's arguments before the function; a TRY over anything without such a shim is refused);
- text values longer than 2,048 characters are cut to 2,048;
- at most 15 queries run at once across all connections (a project quota); the next is refused;
- a result whose statement has no top-level ORDER BY comes back in no promised order, so its rows
  are permuted (seeded, and never left in the database's own order when that can be avoided).

The proxy runs its own event loop in a daemon thread; `SlsStandIn.counters` is read from tests.
One client statement per Query message: SLS runs one statement at a time, so several statements in
one message are refused rather than guessed at. COPY is refused: SLS has no COPY.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import re
import socket
import threading
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Literal
from urllib.parse import quote

import psycopg

SSL_REQUEST = 80877103
GSSENC_REQUEST = 80877104
CANCEL_REQUEST = 80877102
PROTOCOL_3 = 196608
TEXT_OIDS = frozenset({25, 1043})  # text, varchar
EXTENDED_MESSAGES = frozenset(b"PBDECH")  # Parse, Bind, Describe, Execute, Close, Flush
TRANSACTION_TAGS = {
    "BEGIN": "BEGIN",
    "START": "START TRANSACTION",
    "COMMIT": "COMMIT",
    "END": "COMMIT",
    "ROLLBACK": "ROLLBACK",
    "ABORT": "ROLLBACK",
}

Outcome = Literal[
    "forwarded",
    "refused_empty",
    "refused_concurrency",
    "refused_statement",
    "ignored_transaction",
]


# --- SQL scanning -------------------------------------------------------------------------------

_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*")
_DOLLAR_TAG = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)?\$")


@dataclass(frozen=True)
class Word:
    """An unquoted keyword or identifier, upper-cased, with its parenthesis depth, the parenthesis
    group it is in (0: the top level; each `(` opens a new one) and where it ends in the text."""

    text: str
    depth: int
    group: int = 0
    end: int = 0


@dataclass
class Scanned:
    """One statement's words, its parentheses (each `(`'s offset -> its `)`'s) and where its text
    ends (without trailing `;`, blanks, comments)."""

    words: list[Word] = field(default_factory=list)
    parens: dict[int, int] = field(default_factory=dict)
    tokens: int = 0
    end: int = 0


def _skip_quoted(sql: str, start: int, quote: str, backslash: bool) -> int:
    """Offset just after the literal opened at `start` (doubled quotes escape; E'' also backslash)."""
    i = start + 1
    while i < len(sql):
        char = sql[i]
        if backslash and char == "\\":
            i += 2
            continue
        if char == quote:
            if i + 1 < len(sql) and sql[i + 1] == quote:
                i += 2
                continue
            return i + 1
        i += 1
    return len(sql)


def _skip_block_comment(sql: str, start: int) -> int:
    """Offset just after a (nestable, as in PostgreSQL) /* */ comment."""
    depth, i = 0, start
    while i < len(sql):
        if sql.startswith("/*", i):
            depth, i = depth + 1, i + 2
        elif sql.startswith("*/", i):
            depth, i = depth - 1, i + 2
            if depth == 0:
                return i
        else:
            i += 1
    return len(sql)


def split_statements(sql: str) -> list[tuple[str, Scanned]]:
    """The statements of a Query message, each with its words; literals and comments are skipped,
    so a keyword inside a string or comment is never mistaken for one of the statement's own."""
    found: list[tuple[str, Scanned]] = []
    begin, depth, i = 0, 0, 0
    groups: list[tuple[int, int]] = [(0, -1)]  # (group, offset of its `(`), innermost last
    next_group = 1
    current = Scanned()
    while i < len(sql):
        char = sql[i]
        if char.isspace():
            i += 1
        elif sql.startswith("--", i):
            newline = sql.find("\n", i)
            i = len(sql) if newline < 0 else newline + 1
        elif sql.startswith("/*", i):
            i = _skip_block_comment(sql, i)
        elif char in "'\"":
            i = _skip_quoted(sql, i, char, backslash=False)
            current.tokens, current.end = current.tokens + 1, i
        elif char == "$" and (tag := _DOLLAR_TAG.match(sql, i)):
            close = sql.find(tag.group(0), tag.end())
            i = len(sql) if close < 0 else close + len(tag.group(0))
            current.tokens, current.end = current.tokens + 1, i
        elif word := _WORD.match(sql, i):
            i = word.end()
            if word.group(0) in ("E", "e") and i < len(sql) and sql[i] == "'":
                i = _skip_quoted(sql, i, "'", backslash=True)
            else:
                current.words.append(Word(word.group(0).upper(), depth, groups[-1][0], i))
            current.tokens, current.end = current.tokens + 1, i
        elif char == ";" and depth == 0:
            found.append((sql[begin : current.end], current))
            i += 1
            begin, current = i, Scanned(end=i)
        else:
            if char == "(":
                groups.append((next_group, i))
                next_group += 1
            elif char == ")" and len(groups) > 1:
                current.parens[groups.pop()[1]] = i
            depth += {"(": 1, ")": -1}.get(char, 0)
            i += 1
            current.tokens, current.end = current.tokens + 1, i
    found.append((sql[begin : current.end], current))
    return [(text.strip(), scanned) for text, scanned in found if scanned.tokens]


@dataclass(frozen=True)
class Statement:
    """What the proxy needs to know of one statement."""

    text: str
    first_word: str
    is_select: bool
    has_limit: bool
    has_order_by: bool
    undocumented: str | None = None  # why SLS would not take it, if it would not

    @classmethod
    def of(cls, text: str, scanned: Scanned) -> Statement:
        words = scanned.words
        top = [w.text for w in words if w.depth == 0]
        first = words[0].text if words else ""
        return cls(
            text=text,
            first_word=first,
            is_select=first in ("SELECT", "WITH"),  # `(SELECT ...)` too: the first word at any depth
            has_limit="LIMIT" in top or "FETCH" in top,
            has_order_by=any(a == "ORDER" and b == "BY" for a, b in itertools.pairwise(top)),
            undocumented=_undocumented(words),
        )


def _undocumented(words: list[Word]) -> str | None:
    """What in a statement SLS documents no support for: OFFSET (it pages with `LIMIT y, x`),
    LIMIT below the top level ("LIMIT obtains final results, not intermediate ones"; "you cannot
    use LIMIT clauses in subqueries"), and a SELECT without FROM in its own parentheses."""
    if any(word.text == "OFFSET" for word in words):
        return "SLS does not support OFFSET"
    if any(word.text in ("LIMIT", "FETCH") and word.depth > 0 for word in words):
        return "SLS does not support LIMIT in a subquery or CTE (only on the final result)"
    selecting = {word.group for word in words if word.text == "SELECT"}
    reading = {word.group for word in words if word.text == "FROM"}
    if selecting - reading:
        return "SLS needs a FROM in every SELECT"
    return None


# Functions whose failure TRY(...) turns into NULL, each with its shim's `try_` twin
# (queries/sls_compat.sql).
TRY_TWINS = frozenset({"FROM_ISO8601_TIMESTAMP"})


class Unemulated(ValueError):
    """A construct whose Presto semantics the stand-in cannot reproduce on PostgreSQL."""


def with_presto_semantics(text: str) -> str:
    """The statement as PostgreSQL must run it to answer as Presto would: `DESC` without NULLS
    becomes `DESC NULLS LAST` (Presto sorts NULLs last either way), and `TRY(f(args))` becomes
    `try_f(args)`, f's shim that answers NULL where f fails."""
    found = split_statements(text)
    if not found:
        return text
    scanned = found[0][1]
    words = scanned.words
    edits: list[tuple[int, int, str]] = []  # (start, end, replacement), applied right to left
    for position, word in enumerate(words):
        following = words[position + 1] if position + 1 < len(words) else None
        if word.text == "DESC" and (following is None or following.text != "NULLS"):
            edits.append((word.end, word.end, " NULLS LAST"))
        if word.text == "TRY":
            inner, closing = _try_twin_call(text, scanned, word, following)
            edits.append((word.end - len(word.text), inner.end, f"try_{inner.text.lower()}"))
            edits.append((closing, closing + 1, ""))
    for start, end, replacement in sorted(edits, reverse=True):
        text = text[:start] + replacement + text[end:]
    return text


def _try_twin_call(text: str, scanned: Scanned, word: Word, inner: Word | None) -> tuple[Word, int]:
    """f and the offset of the `)` closing `TRY(f(...))`, when that call is all the TRY holds and
    f has a try_ twin; Unemulated otherwise."""
    opening = _next_char(text, word.end)
    if opening is not None and text[opening] == "(" and inner is not None and inner.text in TRY_TWINS:
        call = _next_char(text, inner.end)
        starts_right = _next_char(text, opening + 1) == inner.end - len(inner.text)
        if starts_right and call is not None and text[call] == "(" and call in scanned.parens:
            closing = scanned.parens.get(opening)
            if closing is not None and _next_char(text, scanned.parens[call] + 1) == closing:
                return inner, closing
    raise Unemulated("the stand-in emulates TRY only around one call of a function with a try_ shim")


def _next_char(text: str, at: int) -> int | None:
    """Offset of the first non-blank character at or after `at`."""
    while at < len(text) and text[at].isspace():
        at += 1
    return at if at < len(text) else None


# --- counters -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Seen:
    """One Query message as the proxy received it, and what it did with it."""

    sql: str
    outcome: Outcome
    limit_appended: bool = False
    shuffled: bool = False
    truncated: int = 0
    rows: int = 0


COUNTER_NAMES = (
    "queries",
    "default_limit_appended",
    "truncated_values",
    "refused_parse",
    "refused_empty",
    "refused_concurrency",
    "refused_statement",
    "ignored_transaction",
    "shuffled_results",
)


class Counters:
    """Thread-safe counts of what the stand-in enforced, and the last statements it saw."""

    def __init__(self, history: int = 500) -> None:
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(COUNTER_NAMES, 0)
        self._seen: deque[Seen] = deque(maxlen=history)

    def add(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self._counts[name] += amount

    def record(self, seen: Seen) -> None:
        with self._lock:
            self._seen.append(seen)

    def reset(self) -> None:
        with self._lock:
            self._counts = dict.fromkeys(COUNTER_NAMES, 0)
            self._seen.clear()

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def __getitem__(self, name: str) -> int:
        with self._lock:
            return self._counts[name]

    def statements(self, last: int | None = None) -> list[Seen]:
        """The last `last` statements seen (all kept ones when None), oldest first."""
        with self._lock:
            kept = list(self._seen)
        return kept if last is None else kept[-last:]


# --- wire messages ------------------------------------------------------------------------------


def message(kind: bytes, body: bytes) -> bytes:
    return kind + (len(body) + 4).to_bytes(4, "big") + body


def error_response(sqlstate: str, text: str) -> bytes:
    fields = b"".join(
        code + value.encode() + b"\0"
        for code, value in ((b"S", "ERROR"), (b"V", "ERROR"), (b"C", sqlstate), (b"M", text))
    )
    return message(b"E", fields + b"\0")


def ready_for_query() -> bytes:
    return message(b"Z", b"I")


def command_complete(tag: str) -> bytes:
    return message(b"C", tag.encode() + b"\0")


def text_columns(row_description: bytes) -> set[int]:
    """Indexes of the text-format columns whose type is text or varchar."""
    count = int.from_bytes(row_description[:2], "big")
    found, at = set(), 2
    for index in range(count):
        at = row_description.index(b"\0", at) + 1  # the column name
        type_oid = int.from_bytes(row_description[at + 6 : at + 10], "big")
        format_code = int.from_bytes(row_description[at + 16 : at + 18], "big")
        if type_oid in TEXT_OIDS and format_code == 0:
            found.add(index)
        at += 18
    return found


def truncate_row(data_row: bytes, columns: set[int], limit: int) -> tuple[bytes, int]:
    """The DataRow with the chosen columns cut to `limit` characters, and how many were cut."""
    if not columns:
        return data_row, 0
    count = int.from_bytes(data_row[:2], "big")
    parts, at, cut = [data_row[:2]], 2, 0
    for index in range(count):
        size = int.from_bytes(data_row[at : at + 4], "big", signed=True)
        at += 4
        value = data_row[at : at + size] if size > 0 else b""
        at += max(size, 0)
        if index in columns and size > limit:  # a character is at least one byte
            text = value.decode()
            if len(text) > limit:
                value, cut = text[:limit].encode(), cut + 1
        parts.append((-1 if size < 0 else len(value)).to_bytes(4, "big", signed=True) + value)
    return (b"".join(parts), cut) if cut else (data_row, 0)


def permuted(rows: list[bytes], key: str) -> list[bytes]:
    """`rows` in a seeded-random order that differs from the given one whenever it can."""
    order = list(range(len(rows)))
    random.Random(key).shuffle(order)
    if order == sorted(order):
        order.reverse()
    return [rows[i] for i in order]


async def read_message(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    header = await reader.readexactly(5)
    body = await reader.readexactly(int.from_bytes(header[1:5], "big") - 4)
    return header[:1], body


# --- the proxy ----------------------------------------------------------------------------------


class SlsStandIn:
    """The proxy; `start()` it, connect to `.url`, read `.counters`, `stop()` it."""

    def __init__(
        self,
        backend_url: str,
        *,
        max_concurrency: int = 15,
        default_limit: int = 100,
        max_text: int = 2048,
        seed: int = 0,
        search_path: str = "sls_compat,pg_catalog,public",
    ) -> None:
        self.backend_url = backend_url
        self.max_concurrency = max_concurrency
        self.default_limit = default_limit
        self.max_text = max_text
        self.seed = seed
        self.search_path = search_path
        self.counters = Counters()
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="sls-standin", daemon=True)
        self._server: asyncio.Server | None = None
        self._sessions: set[asyncio.Task[None]] = set()
        self._in_flight = 0
        with psycopg.connect(backend_url) as probe:  # where the backend really listens
            self._backend_host, self._backend_port = probe.info.host, probe.info.port
            self._dbname, self._user = probe.info.dbname, probe.info.user

    @property
    def url(self) -> str:
        """A postgresql:// URL to the proxy, for the backend's database and user."""
        return f"postgresql://{quote(self._user)}@127.0.0.1:{self.port}/{quote(self._dbname)}"

    def start(self) -> SlsStandIn:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(timeout=10)
        return self

    def stop(self) -> None:
        """Close the listener and every session; the thread and its loop end with them."""
        if not self._thread.is_alive():
            if not self._loop.is_closed():
                self._loop.close()
            return
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def __enter__(self) -> SlsStandIn:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0, family=socket.AF_INET)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._sessions):
            task.cancel()
        await asyncio.gather(*self._sessions, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._sessions.add(task)
        try:
            await _Session(self, reader, writer).run()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # a peer went away: nothing to answer
        except asyncio.CancelledError:
            pass  # stop(): the session ends with the proxy
        finally:
            self._sessions.discard(task)
            writer.close()

    async def open_backend(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        host = self._backend_host
        if host.startswith("/"):
            return await asyncio.open_unix_connection(f"{host}/.s.PGSQL.{self._backend_port}")
        return await asyncio.open_connection(host, self._backend_port)


class _Session:
    """One client connection and its own backend connection."""

    def __init__(self, proxy: SlsStandIn, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.proxy = proxy
        self.counters = proxy.counters
        self.client_reader, self.client = reader, writer
        self.backend_reader: asyncio.StreamReader | None = None
        self.backend: asyncio.StreamWriter | None = None

    async def run(self) -> None:
        try:
            if await self._startup():
                await self._serve()
        finally:
            if self.backend is not None:  # a Terminate, so the database logs no lost connection
                if not self.backend.is_closing():
                    self.backend.write(message(b"X", b""))
                self.backend.close()

    async def _startup(self) -> bool:
        """SSL and GSS encryption are declined; a CancelRequest is passed on; a StartupMessage gets
        the shims' search_path, then authentication is relayed until the backend is ready."""
        while True:
            length = int.from_bytes(await self.client_reader.readexactly(4), "big")
            packet = await self.client_reader.readexactly(length - 4)
            code = int.from_bytes(packet[:4], "big")
            if code in (SSL_REQUEST, GSSENC_REQUEST):
                self.client.write(b"N")
                await self.client.drain()
                continue
            if code == CANCEL_REQUEST:
                _, cancel = await self.proxy.open_backend()
                cancel.write(length.to_bytes(4, "big") + packet)
                await cancel.drain()
                cancel.close()
                return False
            if code != PROTOCOL_3:
                self.client.write(
                    error_response("08P01", f"unsupported protocol {code >> 16}.{code & 0xFFFF}")
                )
                await self.client.drain()
                return False
            break
        pairs = packet[4:].split(b"\0")
        params = dict(zip(pairs[0:-2:2], pairs[1:-2:2], strict=True))
        options = f"-c search_path={self.proxy.search_path} " + params.get(b"options", b"").decode()
        params[b"options"] = options.strip().encode()
        startup = PROTOCOL_3.to_bytes(4, "big") + b"".join(k + b"\0" + v + b"\0" for k, v in params.items())
        self.backend_reader, self.backend = await self.proxy.open_backend()
        self.backend.write((len(startup) + 5).to_bytes(4, "big") + startup + b"\0")
        while True:
            kind, body = await read_message(self.backend_reader)
            self.client.write(message(kind, body))
            await self.client.drain()
            if kind == b"Z":
                return True
            if kind == b"E":
                return False
            if kind == b"R" and int.from_bytes(body[:4], "big") not in (0, 12):  # needs an answer
                reply_kind, reply = await read_message(self.client_reader)
                self.backend.write(message(reply_kind, reply))

    async def _serve(self) -> None:
        refusing_extended = False
        while True:
            kind, body = await read_message(self.client_reader)
            if kind == b"X":  # run() passes the Terminate on
                return
            if kind == b"Q":
                await self._query(body[:-1].decode())
            elif kind == b"S":  # ends an extended-protocol batch: one ReadyForQuery per Sync
                refusing_extended = False
                self.client.write(ready_for_query())
            elif kind[0] in EXTENDED_MESSAGES:
                if not refusing_extended:  # as PostgreSQL: one error, then skip until Sync
                    refusing_extended = True
                    self.counters.add("refused_parse")
                    self.client.write(
                        error_response("0A000", "SLS supports only the simple query protocol (no Parse)")
                    )
            else:  # FunctionCall, or COPY data outside a COPY
                self.client.write(error_response("0A000", f"message {kind!r} is not supported by SLS"))
                self.client.write(ready_for_query())
            await self.client.drain()

    def _refuse(self, sql: str, outcome: Outcome, sqlstate: str, text: str) -> None:
        self.counters.add(outcome)
        self.counters.record(Seen(sql, outcome))
        self.client.write(error_response(sqlstate, text))
        self.client.write(ready_for_query())

    async def _query(self, sql: str) -> None:
        self.counters.add("queries")
        statements = split_statements(sql)
        if not statements:
            return self._refuse(sql, "refused_empty", "42601", "empty query: SLS needs a statement")
        if len(statements) > 1:
            return self._refuse(sql, "refused_statement", "0A000", "SLS runs one statement per query")
        statement = Statement.of(*statements[0])
        if statement.first_word == "COPY":
            return self._refuse(sql, "refused_statement", "0A000", "SLS does not support COPY")
        if statement.first_word in TRANSACTION_TAGS:  # SLS has no transactions: nothing to do
            self.counters.add("ignored_transaction")
            self.counters.record(Seen(sql, "ignored_transaction"))
            self.client.write(command_complete(TRANSACTION_TAGS[statement.first_word]))
            self.client.write(ready_for_query())
            return None
        if statement.undocumented is not None:
            return self._refuse(sql, "refused_statement", "0A000", statement.undocumented)
        try:
            statement = replace(statement, text=with_presto_semantics(statement.text))
        except Unemulated as problem:
            return self._refuse(sql, "refused_statement", "0A000", str(problem))
        limit = self.proxy.max_concurrency
        if self.proxy._in_flight >= limit:
            return self._refuse(
                sql,
                "refused_concurrency",
                "53300",
                f"ExceedQuota: too many concurrent queries (limit {limit}) in this project",
            )
        self.proxy._in_flight += 1
        try:
            await self._forward(sql, statement)
        finally:
            self.proxy._in_flight -= 1
        return None

    async def _forward(self, sql: str, statement: Statement) -> None:
        assert self.backend is not None and self.backend_reader is not None
        text = statement.text
        append_limit = statement.is_select and not statement.has_limit
        if append_limit:
            text = f"{text}\nLIMIT {self.proxy.default_limit}"
            self.counters.add("default_limit_appended")
        self.backend.write(message(b"Q", text.encode() + b"\0"))
        await self.backend.drain()
        shuffle = statement.is_select and not statement.has_order_by
        columns: set[int] = set()
        held: list[bytes] | None = None
        rows = truncated = 0
        shuffled = False
        while True:
            kind, body = await read_message(self.backend_reader)
            if kind == b"T":
                columns = text_columns(body)
                held = [] if shuffle else None
            elif kind == b"D":
                body, cut = truncate_row(body, columns, self.proxy.max_text)
                rows, truncated = rows + 1, truncated + cut
                if held is not None:
                    held.append(body)
                    continue
            elif held is not None:  # the result ended (CommandComplete or an error)
                if len(held) > 1:
                    held = permuted(held, f"{self.proxy.seed}\0{text}")
                    shuffled = True
                    self.counters.add("shuffled_results")
                for row in held:
                    self.client.write(message(b"D", row))
                held = None
            if kind == b"Z":  # counted before the client can see the answer and read the counters
                self.counters.add("truncated_values", truncated)
                self.counters.record(Seen(sql, "forwarded", append_limit, shuffled, truncated, rows))
                self.client.write(message(kind, body))
                return
            self.client.write(message(kind, body))
            if self.client.transport.get_write_buffer_size() > 65536:
                await self.client.drain()
