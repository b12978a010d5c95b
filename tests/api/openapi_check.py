"""Checks real HTTP answers against the OpenAPI document of `cj_api.openapi`.

`ResponseChecker.check(response)` fails the test when the status is not documented for
the operation, the media type is not one the document lists, or a JSON body does not
validate against its schema (formats uuid and date-time included). The REST test client
runs it on every response (an httpx event hook), so each integration test is also a
conformance test of the document.
"""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
from jsonschema import Draft202012Validator
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from cj_api.openapi import document

_ROOT = "urn:cj:openapi"


def pointer(*parts: str) -> str:
    return "/" + "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)


class ResponseChecker:
    def __init__(self, doc: dict[str, Any] | None = None) -> None:
        self.doc = doc or document()
        self._registry: Registry[Any] = Registry().with_resource(
            _ROOT, DRAFT202012.create_resource(self.doc)
        )
        self._paths = [
            (re.compile("^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(p)) + "$"), p)
            for p in self.doc["paths"]
        ]
        self.checked = 0

    def validate(self, location: str, instance: Any) -> None:
        """Validate `instance` against the schema at JSON pointer `location`."""
        validator = Draft202012Validator(
            {"$ref": f"{_ROOT}#{location}"},
            registry=self._registry,
            format_checker=Draft202012Validator.FORMAT_CHECKER,
        )
        errors = sorted(validator.iter_errors(instance), key=lambda e: list(e.path))
        assert not errors, f"{location}: {[f'{list(e.path)}: {e.message}' for e in errors[:5]]}"

    def error_body(self, instance: Any) -> None:
        self.validate(pointer("components", "schemas", "Error"), instance)

    def check(self, response: httpx.Response) -> None:
        """Assert that `response` (already read) is what the document promises."""
        method = response.request.method.lower()
        path = response.request.url.path
        template = next((t for pattern, t in self._paths if pattern.match(path)), None)
        status = response.status_code
        self.checked += 1
        operations = self.doc["paths"][template] if template is not None else {}
        if method == "head" and "head" not in operations and "get" in operations:
            method = "get"  # HTTP: HEAD is GET without the body (RFC 9110 §9.3.2)
            head = True
        else:
            head = method == "head"
        if template is None or method not in operations:
            assert status in (404, 405), f"{method.upper()} {path}: undocumented, got {status}"
            if not head:
                self.error_body(response.json())
            return
        responses = operations[method]["responses"]
        key = str(status) if str(status) in responses else "default"
        assert key in responses, f"{method.upper()} {template}: status {status} not documented"
        spec = responses[key]
        content = spec.get("content")
        if head or status == 304:
            assert not response.content, f"{method.upper()} {template}: a body with {status}"
            return
        if not content:
            assert not response.content, f"{method.upper()} {template} {status}: unexpected body"
            return
        media = response.headers.get("content-type", "").split(";", 1)[0].strip()
        assert media in content, f"{method.upper()} {template} {status}: media {media!r}"
        if media == "application/json":
            where = ["paths", template, method, "responses", key, "content", media, "schema"]
            self.validate(pointer(*where), json.loads(response.content))
