"""The one error body every route sends, shaped as Dify's own errors."""

from __future__ import annotations

from typing import Annotated

import msgspec


class ErrorBody(msgspec.Struct, frozen=True):
    code: Annotated[str, msgspec.Meta(examples=["invalid_param", "backend_unavailable", "unauthorized"])]
    message: Annotated[str, msgspec.Meta(examples=["limit: Expected `int` <= 100"])]
    status: Annotated[int, msgspec.Meta(examples=[400])]
