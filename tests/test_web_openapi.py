"""``/api/v1/openapi.json`` is a valid OpenAPI 3.1 document (checked by
openapi-spec-validator) and describes exactly the API the app serves: every route and method
is in the document, every documented operation is a route, and each declares its errors."""

from __future__ import annotations

from typing import Any

import pytest
from openapi_spec_validator import validate
from starlette.routing import Route
from starlette.testclient import TestClient

from raftq.web import asgi_app
from raftq.web.api import API_PREFIX

NOWHERE = "127.0.0.1:9"
"""The document needs no cluster: the app never connects for it."""


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    with TestClient(asgi_app(NOWHERE)) as http:
        response = http.get("/api/v1/openapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body: dict[str, Any] = response.json()
    return body


def test_the_document_is_valid_openapi_3_1(document: dict[str, Any]) -> None:
    assert document["openapi"].startswith("3.1")
    validate(document)  # raises OpenAPIValidationError with the path of the first problem


def test_the_validator_rejects_a_broken_document(document: dict[str, Any]) -> None:
    """So that the test above can fail: a response without its description is invalid."""
    from openapi_spec_validator.validation.exceptions import OpenAPIValidationError

    broken = {**document, "paths": {"/x": {"get": {"responses": {"200": {}}}}}}
    with pytest.raises(OpenAPIValidationError):
        validate(broken)


def served_operations() -> set[tuple[str, str]]:
    app = asgi_app(NOWHERE, metrics_registry=None)
    operations = set()
    for route in app.routes:
        if isinstance(route, Route) and route.path.startswith(API_PREFIX):
            path = route.path.replace(":path}", "}")  # a convertor is no part of the template
            for method in route.methods or ():
                if method != "HEAD":  # Starlette answers HEAD for every GET
                    operations.add((path, method.lower()))
    return operations


def test_every_route_is_documented_and_every_operation_is_a_route(
    document: dict[str, Any],
) -> None:
    documented = {
        (path, method) for path, operations in document["paths"].items() for method in operations
    }
    assert served_operations() == documented


def test_every_operation_declares_its_errors_with_the_error_schema(
    document: dict[str, Any],
) -> None:
    error_ref = {"$ref": "#/components/schemas/Error"}
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            if path.endswith("openapi.json"):
                continue
            assert "503" in responses, (path, method)  # every call may meet no quorum
            if method in ("post", "put", "delete"):  # actions: refused read-only or cross-site
                assert {"400", "403"} <= set(responses), (path, method)
            if "{job_id}" in path or method == "delete":
                assert "404" in responses, (path, method)
            for status, response in responses.items():
                if status.startswith(("4", "5")):
                    assert response["content"]["application/json"]["schema"] == error_ref
