"""The OpenAPI schema is the service's contract (issue 26): generated requests (schemathesis, bounded) get responses
whose status, content type and body the schema declares; errors are the `{"error"}` body; the schema says what it
means by exactly one of `customer_ids` and `rows`."""

from __future__ import annotations

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from test_serve_target import bundles  # noqa: F401  (the targeting bundles fixture)

from conftest import KEY
from mapwise.params import ServeParams
from mapwise.serving.app import create_app
from mapwise.serving.keepers import FolderSource, Keeper
from mapwise.serving.target_keeper import TargetKeeper

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def app(exported_root, bundles):  # noqa: F811
    keeper = Keeper(FolderSource(exported_root / "models/export/sasrec"))
    assert keeper.refresh()
    targets = TargetKeeper({"propensity/buy": FolderSource(bundles["root"] / "buy"),
                            "uplift": FolderSource(bundles["root"] / "uplift")})
    assert targets.refresh()
    return create_app(keeper, KEY, ServeParams(max_list_items=20, max_explain_rows=5, max_k=20), targets)


OPERATIONS = ["GET /health", "GET /ready", "GET /model", "GET /targets", "POST /recommendations",
              "POST /scores/propensity", "POST /next-best-action"]


@pytest.fixture(scope="module")
def api_schema(app):
    return schemathesis.openapi.from_asgi("/openapi.json", app)


def test_the_contract_lists_every_route(api_schema):
    assert sorted(op.ok().label for op in api_schema.get_all_operations()) == sorted(OPERATIONS)


@pytest.mark.parametrize("label", OPERATIONS)
def test_every_answer_is_what_the_schema_declares(api_schema, label):
    operation = next(op.ok() for op in api_schema.get_all_operations() if op.ok().label == label)

    @given(case=operation.as_strategy())
    @settings(max_examples=25, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
    def answers(case):
        case.call_and_validate(checks=CHECKS)

    answers()


def test_errors_are_documented_as_the_error_body(app):
    spec = TestClient(app).get("/openapi.json").json()
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            assert responses["200"]["content"]["application/json"]["schema"] != {"type": "string"}, (method, path)
            for code in ("408", "431", "500", *(("413", "422") if method == "post" else ())):
                assert responses[code]["content"]["application/json"]["schema"] == {
                    "$ref": "#/components/schemas/ErrorBody"}, (method, path, code)


def test_the_schema_says_exactly_one_of_ids_and_rows(app):
    spec = TestClient(app).get("/openapi.json").json()
    for name in ("PropensityRequest", "NextBestActionRequest"):
        body = spec["components"]["schemas"][name]
        assert body["oneOf"] == [{"required": ["customer_ids"]}, {"required": ["rows"]}]
        assert all("null" not in str(body["properties"][key]) for key in ("customer_ids", "rows"))


def test_an_id_ingest_accepts_is_one_the_service_accepts(app):
    client = TestClient(app)
    for spelled in ("café", "ＡＢＣ１２３", "José María", "\ufeffalice", "Zoë\u200b"):
        done = client.post("/recommendations", json={"customer_id": spelled, "k": 3})
        assert done.status_code == 200, (spelled, done.text)
    assert client.post("/recommendations", json={"customer_id": " \t", "k": 3}).status_code == 422
