"""Requests and answers of the Grafana JSON datasource protocol (simPod/grafana-json-datasource).

Shapes follow the plugin's protocol (restated in tests/data/grafana_json_datasource.yaml); unknown
fields are ignored (Grafana sends more than it documents).
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

PayloadType = Literal["select", "multi-select", "input", "textarea"]


class Option(msgspec.Struct, frozen=True, omit_defaults=True):
    value: str
    label: str | None = None


class PayloadConfig(msgspec.Struct, frozen=True, omit_defaults=True, rename="camel"):
    name: str
    label: str | None = None
    type: PayloadType = "select"
    placeholder: str | None = None
    reload_metric: bool = False
    width: int | None = None
    options: list[Option] | None = None


class MetricInfo(msgspec.Struct, frozen=True, omit_defaults=True):
    value: str
    payloads: list[PayloadConfig]
    label: str | None = None


class MetricsRequest(msgspec.Struct, frozen=True):
    metric: str | None = None
    payload: dict[str, Any] | None = None


class PayloadOptionsRequest(msgspec.Struct, frozen=True):
    metric: str
    payload: dict[str, Any]
    name: str


class TimeRange(msgspec.Struct, frozen=True):
    from_: str = msgspec.field(name="from", default="")
    to: str = ""
    raw: Any = None


class Target(msgspec.Struct, frozen=True, rename="camel"):
    target: str
    ref_id: str | None = None
    payload: dict[str, Any] | None = None
    hide: bool = False


class Filter(msgspec.Struct, frozen=True):
    key: str
    value: str
    operator: str = "="


class QueryRequest(msgspec.Struct, frozen=True, rename="camel"):
    range: TimeRange
    targets: list[Target]
    filters: list[Filter] | None = None
    adhoc_filters: list[Filter] | None = None  # the plugin's older name for `filters`
    panel_id: int | str | None = None
    max_data_points: float | None = None
    interval_ms: float | None = None


class TimeSeries(msgspec.Struct, frozen=True):
    target: str
    # [value, epoch ms of the local midnight]; a null value is a gap (Grafana's TimeSeriesValue is
    # `number | null`), for days on which a rate or a percentile has no value
    datapoints: list[tuple[float | None, int]]


class Column(msgspec.Struct, frozen=True):
    text: str
    type: str


class Table(msgspec.Struct, frozen=True):
    columns: list[Column]
    rows: list[list[Any]]
    type: Literal["table"] = "table"


class VariablePayload(msgspec.Struct, frozen=True):
    target: str = ""
    variables: dict[str, Any] | None = None


class VariableRequest(msgspec.Struct, frozen=True):
    payload: VariablePayload | None = None
    range: TimeRange | None = None


class VariableItem(msgspec.Struct, frozen=True):
    """The reference requires `text`/`value` and documents `__text`/`__value`; plugin versions read
    one or the other, so both are sent."""

    text: str
    value: str
    dunder_text: str = msgspec.field(name="__text", default="")
    dunder_value: str = msgspec.field(name="__value", default="")


class TagKey(msgspec.Struct, frozen=True):
    text: str
    type: str = "string"


class TagValuesRequest(msgspec.Struct, frozen=True):
    key: str


class TagValue(msgspec.Struct, frozen=True):
    text: str
