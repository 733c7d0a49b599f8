"""JSON from outside (stored documents, request bodies) held to a nesting depth that every later
step can follow.

msgspec and Python's json give up (RecursionError) near Python's recursion limit less the frames
already on the stack, so where a value nested ~1000 deep fails depends on who decodes it: the
reader of the store, litestar encoding the answer, Redis's copy decoded on another replica. A
value deeper than MAX_DEPTH is therefore refused where it enters, the same way everywhere.
Dify's own documents nest a few dozen levels; deeper ones are hostile or cut (an SLS-cut value
that is all `[[[[` runs into the decoder's limit before it reaches the cut).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

MAX_DEPTH = 256


class NestedTooDeeply(ValueError):
    def __init__(self) -> None:
        super().__init__(f"JSON nested more than {MAX_DEPTH} levels deep")


def decode_within_depth(data: str | bytes, decode: Callable[[Any], Any]) -> Any:
    """`decode(data)`, or NestedTooDeeply where its value nests containers more than MAX_DEPTH
    levels (also where the decoder itself gave up); the decoder's own errors pass through."""
    try:
        value = decode(data)
    except RecursionError:
        raise NestedTooDeeply from None
    if _opening_brackets(data) > MAX_DEPTH and _deeper_than(value, MAX_DEPTH):
        raise NestedTooDeeply
    return value


def _opening_brackets(data: str | bytes) -> int:
    """A bound on the nesting depth that costs two C-level scans, so the walk runs only on values
    that might be too deep."""
    if isinstance(data, str):
        return data.count("[") + data.count("{")
    return data.count(b"[") + data.count(b"{")


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether lists and dicts nest more than `limit` levels: walked a level at a time, without
    recursion (decoders build plain lists and dicts, so their exact types are checked)."""
    level = [value] if type(value) in (list, dict) else []
    for _ in range(limit):
        level = [
            child
            for container in level
            for child in (container.values() if type(container) is dict else container)
            if type(child) in (list, dict)
        ]
        if not level:
            return False
    return True
