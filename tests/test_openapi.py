"""The OpenAPI document at /schema tells the truth: every parameter it declares is checked as
declared, every answer has the declared shape, and the errors are the declared ErrorBody.

Driven by the document itself, so a route or parameter added later is covered without a new
test: for each GET operation of the native and console APIs, valid requests built from the
declared types, bounds and enums answer 200 (or the declared 404) with a body that validates
against the declared schema; each declared constraint, broken by one value, answers a 400 whose
body validates against ErrorBody and whose message names the parameter.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from typing import Any

import jsonschema
import psycopg
import pytest
from litestar.testing import TestClient

from app.config import load_settings
from app.core.measures import DAILY_MEASURES
from app.main import create_app
from app.stores.backend import Backend
from tests import examples
from tests.db import load_history
from tests.fake_dify import Account, serve_fake_dify

KEY = "openapi-key-0123456789"
DIFY_TOKEN = "a-dify-console-session"
ACCOUNT = Account(tenant_id=examples.T, timezone="Asia/Shanghai", apps=frozenset({examples.A}))
# Dify answers the advanced-chat routes for advanced-chat apps only, average interactions for
# workflow apps only: the same app, seen by a session to which Dify says it is a chatflow.
CHAT_TOKEN = "a-dify-console-session-of-a-chatflow"
CHAT_ACCOUNT = Account(
    tenant_id=examples.T, timezone="Asia/Shanghai", apps=frozenset({examples.A}),
    modes={examples.A: "advanced-chat"},
)  # fmt: skip
PATH_VALUES = {"tenant_id": examples.T, "app_id": examples.A, "run_id": examples.R1}
STATISTICS = tuple(f"/statistics{measure.native_path}" for measure in DAILY_MEASURES)


@pytest.fixture(scope="module")
def client(database_url: str) -> Iterator[TestClient[Any]]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        load_history(conn, examples.history())
    with serve_fake_dify({DIFY_TOKEN: ACCOUNT, CHAT_TOKEN: CHAT_ACCOUNT}) as (dify_url, _):
        settings = load_settings(
            {
                "STATS_DATABASE_URL": database_url,
                "STATS_API_KEYS": f"{KEY}=*",
                "DIFY_CONSOLE_API_URL": dify_url,
            }
        )
        with TestClient(app=create_app(settings, Backend(database_url, settings))) as test_client:
            yield test_client


@pytest.fixture(scope="module")
def document(client: TestClient[Any]) -> dict[str, Any]:
    answer = client.get("/schema/openapi.json")
    assert answer.status_code == 200
    found: dict[str, Any] = answer.json()
    return found


def _operations(document: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (path, item["get"])
        for path, item in document["paths"].items()
        if path.startswith(("/v1/tenants", "/console/")) and "get" in item
    ]


def _validator(document: dict[str, Any], schema: dict[str, Any]) -> jsonschema.Validator:
    """A validator for `schema` that resolves the document's #/components references."""
    root = {**schema, "components": document["components"]}
    return jsonschema.Draft202012Validator(root)


def _credentials(path: str) -> dict[str, str]:
    """A stats API key on native routes, a Dify session on console routes (one to which the app
    is a chatflow on the advanced-chat routes)."""
    if path.startswith("/v1/"):
        return {"Authorization": f"Bearer {KEY}"}
    return {"Authorization": f"Bearer {CHAT_TOKEN if '/advanced-chat/' in path else DIFY_TOKEN}"}


def _url(path: str, values: dict[str, str]) -> str:
    for name, value in values.items():
        path = path.replace("{" + name + "}", value)
    return path


def _valid_values(parameter: dict[str, Any]) -> list[Any]:
    """Values the declaration admits: each enum value, both integer bounds, or a known id."""
    schema = parameter["schema"]
    if parameter["in"] == "path":
        return [PATH_VALUES[parameter["name"]]]
    if "enum" in schema:
        return [value for value in schema["enum"] if value is not None]
    if schema.get("type") == "integer":
        return [int(schema["minimum"]), int(schema["maximum"])]
    return []


def _broken_values(parameter: dict[str, Any]) -> list[str]:
    """One value per declared constraint that the declaration refuses."""
    schema = parameter["schema"]
    broken = []
    if "enum" in schema:
        broken.append("not-a-" + parameter["name"])
    if schema.get("type") == "integer":
        broken += [str(int(schema["maximum"]) + 1), str(int(schema["minimum"]) - 1), "\u0661", "1.5"]
    if "pattern" in schema:
        broken.append(PATH_VALUES.get(parameter["name"], examples.R1) + "\n")  # a trailing newline
        broken.append("x" * int(schema.get("minLength", 1)))
    if "maxLength" in schema:
        broken.append("2" * (int(schema["maxLength"]) + 1))
    return broken


def test_every_operation_declares_its_errors_and_native_ones_their_key(document: dict[str, Any]) -> None:
    operations = _operations(document)
    # 4 measures and 4 run routes, native and console; the operators' 2 measures, the tenants, a
    # tenant's apps and the run export, native only; the 2 advanced-chat run routes, console only.
    assert len(operations) == 23
    for path, operation in operations:
        assert {"200", "400", "401", "403", "404", "503"} <= set(operation["responses"]), path
        error = operation["responses"]["400"]["content"]["application/json"]["schema"]
        assert error == {"$ref": "#/components/schemas/ErrorBody"}, path
        assert (operation.get("security") == [{"bearer": []}]) == path.startswith("/v1/"), path
    assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"


def _check_declared_body(document: dict[str, Any], declared: dict[str, Any], answer: Any) -> None:
    """The answer's media type is one the operation declares, and its body has that shape: JSON
    by the schema, NDJSON line by line, CSV a header row and rows of as many cells."""
    media_type = answer.headers["content-type"].split(";")[0]
    assert media_type in {name.split(";")[0] for name in declared}, (media_type, list(declared))
    schema = next(value["schema"] for name, value in declared.items() if name.split(";")[0] == media_type)
    if media_type == "application/json":
        _validator(document, schema).validate(answer.json())
    elif media_type == "application/x-ndjson":
        for line in answer.text.splitlines():
            _validator(document, {"$ref": schema["$ref"]}).validate(json.loads(line))
    else:
        assert media_type == "text/csv" and answer.headers["content-disposition"].startswith("attachment;")
        header, *rows = list(csv.reader(io.StringIO(answer.text, newline="")))
        assert header and all(len(row) == len(header) for row in rows)


def test_valid_requests_answer_the_declared_shape(client: TestClient[Any], document: dict[str, Any]) -> None:
    checked = 0
    for path, operation in _operations(document):
        url = _url(path, PATH_VALUES)
        declared = operation["responses"]["200"]["content"]
        requests: list[dict[str, Any]] = [{}]
        for parameter in operation.get("parameters", []):
            if parameter["in"] == "query":
                requests += [{parameter["name"]: value} for value in _valid_values(parameter)]
        for params in requests:
            answer = client.get(url, params=params, headers=_credentials(path))
            assert answer.status_code == 200, (path, params, answer.text)
            _check_declared_body(document, declared, answer)
            checked += 1
    assert checked > 50


def test_list_answers_declare_csv_and_the_export_its_two_media_types(document: dict[str, Any]) -> None:
    """Native lists are JSON or CSV; the console's stay Dify's JSON; the export is NDJSON or CSV."""
    for path, operation in _operations(document):
        media_types = set(operation["responses"]["200"]["content"])
        if path.endswith("/runs/export"):
            assert media_types == {"application/x-ndjson", "text/csv"}, path
            assert operation["responses"]["200"]["content"]["application/x-ndjson"]["schema"]["$ref"] == (
                "#/components/schemas/RunSummary"
            )
        elif path.startswith("/v1/tenants/{tenant_id}/apps/") and path.endswith(("/runs", *STATISTICS)):
            assert media_types == {"application/json", "text/csv"}, path
            assert "Content-Disposition" in operation["responses"]["200"]["headers"], path
        else:
            assert media_types == {"application/json"}, path


def test_each_declared_constraint_is_enforced_with_the_declared_error(
    client: TestClient[Any], document: dict[str, Any]
) -> None:
    error_schema = {"$ref": "#/components/schemas/ErrorBody"}
    checked = 0
    for path, operation in _operations(document):
        for parameter in operation.get("parameters", []):
            name = parameter["name"]
            for value in _broken_values(parameter):
                if parameter["in"] == "path":
                    url, params = _url(path, {**PATH_VALUES, name: value.replace("\n", "%0A")}), {}
                else:
                    url, params = _url(path, PATH_VALUES), {name: value}
                answer = client.get(url, params=params, headers=_credentials(path))
                assert answer.status_code == 400, (path, name, value, answer.text)
                body = answer.json()
                _validator(document, error_schema).validate(body)
                assert body["code"] == "invalid_param" and body["status"] == 400
                assert body["message"].startswith(f"{name}: "), (path, name, body)
                checked += 1
    assert checked > 60


def test_the_document_is_served_without_a_cdn(client: TestClient[Any]) -> None:
    assert client.get("/schema/openapi.yaml").status_code == 200
    for path in ("/schema", "/schema/swagger", "/schema/redoc", "/schema/elements"):
        answer = client.get(path)
        assert "<script" not in answer.text, path
