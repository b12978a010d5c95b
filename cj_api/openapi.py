"""The OpenAPI 3.1 description of the REST API, as Python data (`document()`).

Served at `/api/v1/openapi.json`. This module assembles the document; its paths are in
`cj_api.openapi_paths`, its schemas in `cj_api.openapi_schemas`, the pieces both use in
`cj_api.openapi_blocks`. Schemas are as strict as the server: unknown fields are refused
(`additionalProperties: false`), formats are given (uuid, date-time), enums and bounds
match the validation in the REST codecs and `cj.model`. Tests check the document with
openapi-spec-validator, that it lists exactly the app's routes, and that the
integration tests' responses validate against it.
"""

from __future__ import annotations

import importlib.metadata
from typing import Any

from cj_api.openapi_paths import paths
from cj_api.openapi_schemas import schemas

__all__ = ["document"]


def document() -> dict[str, Any]:
    """The whole OpenAPI 3.1 document (a fresh copy each call)."""
    try:
        version = importlib.metadata.version("calljournal")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - running from a tree
        version = "0.0.0"
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Call Journal",
            "version": version,
            "description": "Stores call metadata (CDRs) and recordings from PBXs and finds "
            "them by phone number and date. Errors are JSON "
            '`{"error": {"code", "message", "field"}}`. The gRPC service '
            "calljournal.v1.CallJournal offers the same operations.",
        },
        "tags": [
            {"name": "ingest", "description": "for agents (role agent)"},
            {"name": "search", "description": "for readers (role reader)"},
            {"name": "admin", "description": "deliberate, audited changes (role admin)"},
            {"name": "operations", "description": "probes and metadata, no token"},
        ],
        "security": [{"bearer": []}],
        "paths": paths(),
        "components": {
            "schemas": schemas(),
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A token from the server's auth.tokens configuration",
                }
            },
        },
    }
