"""The OpenAPI document: valid 3.1, exactly the app's routes, schemas as strict as the
server. (That real answers validate against it is checked on every response of the
integration tests: see `RestServer.client`.)"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from openapi_spec_validator import OpenAPIV31SpecValidator, validate

from cj.auth import Authenticator
from cj.config import AuthConfig
from cj.errors import ErrorCode
from cj_api.metrics import ApiMetrics
from cj_api.openapi import document
from cj_api.rest import create_rest_app
from tests.api.openapi_check import ResponseChecker, pointer
from tests.api.test_rest_calls import call_json

PUBLIC = {"/healthz", "/readyz", "/metrics", "/api/v1/openapi.json"}


def app_operations() -> set[tuple[str, str, str]]:
    """(method, OpenAPI path, endpoint) of every route of the app (no service needed to
    build it: routes do not touch the service until called). The web console's files
    are not API operations (tests/api/test_console_files.py)."""
    app = create_rest_app(
        None,  # type: ignore[arg-type]
        Authenticator(AuthConfig()),
        ApiMetrics(),
        max_recording_bytes=1024,
        console=False,
    )
    operations = set()
    for rule in app.url_map.iter_rules():
        path = re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule.rule)
        for method in rule.methods or ():
            operations.add((method.lower(), path, rule.endpoint))
    return operations


def doc_operations(doc: dict[str, Any]) -> set[tuple[str, str, str]]:
    return {
        (method, path, operation["operationId"])
        for path, item in doc["paths"].items()
        for method, operation in item.items()
    }


def test_document_is_valid_openapi_3_1() -> None:
    doc = document()
    validate(doc, cls=OpenAPIV31SpecValidator)
    assert doc["openapi"].startswith("3.1")
    json.dumps(doc)  # served as JSON as it is


def test_document_lists_exactly_the_apps_routes() -> None:
    doc = document()
    documented = doc_operations(doc)
    served = app_operations()
    # Werkzeug answers HEAD on every GET route (as HTTP says); the document lists HEAD
    # where it is an operation of its own (recording downloads).
    implicit_head = {
        ("head", path, endpoint)
        for method, path, endpoint in served
        if method == "get" and ("head", path) not in {(m, p) for m, p, _ in documented}
    }
    served_explicit = {
        (m, p, "headRecording" if m == "head" else e) for m, p, e in served - implicit_head
    }
    assert served_explicit == documented


def test_security_is_bearer_except_on_public_routes() -> None:
    doc = document()
    assert doc["security"] == [{"bearer": []}]
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            public = operation.get("security") == []
            assert public == (path in PUBLIC), (method, path)
            if not public:
                assert {"401", "403"} <= set(operation["responses"]), (method, path)


def test_every_error_answer_is_the_error_schema() -> None:
    doc = document()
    error_codes = doc["components"]["schemas"]["Error"]["properties"]["error"]["properties"]
    assert error_codes["code"]["enum"] == [code.value for code in ErrorCode]
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            for status, response in operation["responses"].items():
                if int(status) >= 400 and method != "head":
                    schema = response["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/Error"}, (path, status)


CALL_INPUT = pointer("components", "schemas", "CallInput")


@pytest.mark.parametrize(
    ("overrides", "valid"),
    [
        ({}, True),
        ({"sip_code": None, "answered_at": None, "raw": None, "recording_name": ""}, True),
        ({"colour": "blue"}, False),  # additionalProperties: false, as the server
        ({"uuid": "not-a-uuid"}, False),
        ({"started_at": "2026-03-02 06:00"}, False),
        ({"direction": "sideways"}, False),
        ({"sip_code": 700}, False),
        ({"duration_s": -1}, False),
        ({"caller_name": "x" * 300}, False),
    ],
)
def test_call_input_schema_matches_the_server(overrides: dict[str, Any], valid: bool) -> None:
    checker = ResponseChecker()
    body = call_json(**overrides)
    if valid:
        checker.validate(CALL_INPUT, body)
    else:
        with pytest.raises(AssertionError):
            checker.validate(CALL_INPUT, body)
