"""Structured JSON logs (structlog), one format for every line the process writes.

Query values and credentials are never logged: requests are logged by route and status only,
and the backend logs timings and error types. Lines of other libraries (uvicorn, psycopg_pool,
httpx, asyncio) go through the same renderer via structlog's stdlib bridge, with any URL's
password hidden, and an error line repeated in a burst (a full accept queue, "Too many open
files") is written once per interval with a count instead of flooding stderr.
"""

from __future__ import annotations

import logging
import re
import sys
import time
from urllib.parse import unquote

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

# scheme://user:password@ -> scheme://user:***@ (a password holds no unescaped `@` or `/`).
_URL_CREDENTIALS = re.compile(r"(?P<prefix>[A-Za-z][A-Za-z0-9+.-]*://[^\s:@/]*):[^\s@/]*@")
# A URL's ?name=value or &name=value (possessive: no backtracking on long text).
_URL_PARAMETER = re.compile(r"(?P<name>[?&][^\s=&#?\"']++)=(?P<value>[^\s&#\"']*+)")
# Connection parameters whose value is a credential: libpq's and redis-py's `password`, libpq's
# `sslpassword`, and whatever else is named like a secret or a token.
SECRET_NAME_PARTS = ("password", "secret", "token")
REPEAT_INTERVAL = 5.0
# Numbers and addresses in a line (a timer's due time, an object's id) do not make it a new line.
_VARYING = re.compile(r"0x[0-9a-fA-F]+|\d+(?:\.\d+)?")
# Loggers whose repeated error lines are thinned (asyncio logs the accept() failures).
THINNED_LOGGERS = ("uvicorn.error", "asyncio")


def names_a_secret(name: str) -> bool:
    return any(part in unquote(name).lower() for part in SECRET_NAME_PARTS)


def redact_credentials(text: str) -> str:
    """Free text with any URL's password hidden: in its user information, or a parameter named
    like a secret (`?password=...`)."""
    text = _URL_CREDENTIALS.sub(r"\g<prefix>:***@", text)
    return _URL_PARAMETER.sub(
        lambda found: found["name"] + "=" + ("***" if names_a_secret(found["name"][1:]) else found["value"]),
        text,
    )


def _redact(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    return {
        key: redact_credentials(value) if isinstance(value, str) else value
        for key, value in event_dict.items()
    }


def _error_type_only(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """A traceback's text may carry values; a line names the exception's type instead."""
    exc_info = event_dict.pop("exc_info", None)
    if exc_info is True:
        exc_info = sys.exc_info()
    if isinstance(exc_info, BaseException):
        exc_info = (type(exc_info), exc_info, exc_info.__traceback__)
    if isinstance(exc_info, tuple) and exc_info[0] is not None:
        event_dict.setdefault("error_type", exc_info[0].__name__)
    return event_dict


def _logger_name(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    record = event_dict.get("_record")
    if record is not None:
        event_dict["logger"] = record.name
    return event_dict


class RepeatFilter(logging.Filter):
    """Lets a line (level and text, numbers aside) through once per `interval` seconds; the next
    one let through carries `repeated`, how many were held back in between."""

    def __init__(self, interval: float = REPEAT_INTERVAL) -> None:
        super().__init__()
        self.interval = interval
        self.seen: dict[tuple[int, str], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.levelno, _VARYING.sub("#", record.getMessage()))
        now = time.monotonic()
        last, held = self.seen.get(key, (float("-inf"), 0))
        if now - last < self.interval:
            self.seen[key] = (last, held + 1)
            return False
        if len(self.seen) > 1000:  # a burst of distinct lines must not grow this without bound
            self.seen.clear()
        self.seen[key] = (now, 0)
        if held:
            record.repeated = held
        return True


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to the current sys.stderr, so a replaced stream (tests, reloaders) is honoured."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def _one_plain_line(_: WrappedLogger, __: str, event_dict: EventDict) -> str:
    """A line for a person at a terminal (the CLI's commands other than `serve`):
    `dify-stats: warning: event (key=value, ...)`."""
    level = event_dict.pop("level", "info")
    event = (str(event_dict.pop("event", "")).strip().splitlines() or [""])[0]  # a warning's first line
    for key in ("timestamp", "logger", "_record", "_from_structlog"):
        event_dict.pop(key, None)
    details = ", ".join(f"{key}={value}" for key, value in event_dict.items())
    return f"dify-stats: {level}: {event}" + (f" ({details})" if details else "")


def configure_logging(level: str = "info", *, plain: bool = False) -> None:
    """JSON lines at `level` (the service); `plain`: one plain line per record (the CLI)."""
    numeric = logging.getLevelName(level.upper())
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    handler = _StderrHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, _logger_name, structlog.stdlib.ExtraAdder(allow=["repeated"])],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                _error_type_only,
                _redact,
                _one_plain_line if plain else structlog.processors.JSONRenderer(),
            ],
        )
    )
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(numeric)
    for name in ("uvicorn", "uvicorn.error"):  # undo uvicorn's own dictConfig, if it ran before
        logging.getLogger(name).handlers = []
        logging.getLogger(name).propagate = True
    logging.captureWarnings(True)  # Python warnings (a library's) become lines of this format too
    logging.getLogger("pgserver").setLevel(logging.WARNING)  # its start-up chatter is not ours
    # httpx writes a line per call to Dify's console at INFO: a debugging detail here.
    logging.getLogger("httpx").setLevel(logging.DEBUG if numeric <= logging.DEBUG else logging.WARNING)
    for name in THINNED_LOGGERS:
        thinned = logging.getLogger(name)
        thinned.filters = [f for f in thinned.filters if not isinstance(f, RepeatFilter)]
        thinned.addFilter(RepeatFilter())
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=False,
    )
