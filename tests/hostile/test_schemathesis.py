"""Schemathesis against the live API's own `/api/v1/openapi.json`.

The schema is loaded from `cj_api.openapi.document()` when this module is imported
(schemathesis' fixture-based lazy loading does not work with pytest 9: it sets the
removed `Node._nodeid`), and `test_served_document_is_the_one_tested` holds the
served document to it; the cases are sent to the live server in a thread
(`hostile_api`).

Every operation gets schema-valid and schema-invalid requests (with a token holding
both roles, so requests get past authentication); every answer must be a non-5xx,
documented status with the documented media type and a body valid against its schema,
and schema-invalid input must be refused.

`positive_data_acceptance` is excluded on purpose: the server refuses some inputs the
JSON schema cannot rule out, deliberately (cross-field rules such as billsec ≤
duration_s or `from` < `to`; a `page_token` that is not ours: 400; a batch over 10,000
calls: 413; `X-Content-Length` disagreeing with `Content-Length`: 400; an upload to a
call that does not exist: 409).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, reject, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from cj_api.openapi import document
from tests.fixtures.api import ADMIN_TOKEN
from tests.hostile.conftest import ThreadedApi

# The server thread's libraries (psycopg_pool's jitter) use the global `random` while
# Hypothesis draws examples in this thread; Hypothesis notices the shared state moving
# and warns, although its own generation does not depend on it.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Do not use the `random` module inside strategies"
    ":hypothesis.errors.HypothesisDeprecationWarning"
)
QUICK_EXAMPLES = 25
THOROUGH_EXAMPLES = 300

# Refusals that are not in schemathesis' default list but are the documented answer:
# 411 (an upload without a size), 413 (over a limit), 416 (a range past the end).
REJECTIONS = ["400", "401", "403", "404", "405", "406", "409", "411", "413", "415", "416", "422"]
CONFIG = {
    "cache": {"enabled": False},  # no .schemathesis/ directory in the working tree
    "generation": {"mode": "all"},
    "checks": {"negative_data_rejection": {"expected-statuses": REJECTIONS}},
}
# Recordings are sent as raw bytes, whatever audio/* type the document lists.
schemathesis.serializer.alias(
    ["audio/wav", "audio/x-wav", "audio/wave", "audio/vnd.wave"], "application/octet-stream"
)


schema = schemathesis.openapi.from_dict(document(), config=schemathesis.Config.from_dict(CONFIG))


def test_served_document_is_the_one_tested(hostile_api: ThreadedApi) -> None:
    served = httpx.get(f"{hostile_api.rest_url}/api/v1/openapi.json", timeout=10).json()
    assert json.dumps(served, sort_keys=True) == json.dumps(document(), sort_keys=True)


SETTINGS: dict[str, Any] = {
    "deadline": None,
    "derandomize": True,  # the same cases every run: a failure is reproducible
    "database": None,
    "phases": [Phase.explicit, Phase.generate],  # no shrinking: report the case as found
    "suppress_health_check": list(HealthCheck),
}


@pytest.fixture(scope="module")
def tally() -> Iterator[dict[str, int]]:
    counts: dict[str, int] = {"cases": 0}
    yield counts


def violates_nothing_on_the_wire(case: Any) -> bool:
    """A negative case whose only query violation is an undeclared parameter with no
    value (`{"": []}`): the request sends nothing of it, so it is a valid request
    (schemathesis 4.32 generates these; its Authorization mutation we undo ourselves)."""
    meta = case.meta
    if meta is None or not meta.generation.mode.is_negative or case.query is None:
        return False
    mutations = getattr(meta.phase.data, "mutations", ())
    query_keywords = {
        keyword
        for mutation in mutations
        if str(getattr(mutation, "parameter_location", "")).lower().endswith("query")
        for keyword in mutation.keywords
    }
    if query_keywords != {"additionalProperties"}:
        return False
    declared = {parameter.name for parameter in case.operation.query}
    extra = {name: value for name, value in case.query.items() if name not in declared}
    return all(value in ([], None) for value in extra.values())


def call(case: Any, api: ThreadedApi, tally: dict[str, int]) -> None:
    if violates_nothing_on_the_wire(case):
        reject()
    tally["cases"] += 1
    tally[case.operation.label] = tally.get(case.operation.label, 0) + 1
    case.call_and_validate(
        base_url=api.rest_url,
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        excluded_checks=[positive_data_acceptance],
        timeout=30,
    )


@schema.parametrize()
@settings(max_examples=QUICK_EXAMPLES, **SETTINGS)
def test_api_conforms_to_its_openapi_document(
    case: Any, hostile_api: ThreadedApi, tally: dict[str, int]
) -> None:
    call(case, hostile_api, tally)


@pytest.mark.slow
@schema.parametrize()
@settings(max_examples=THOROUGH_EXAMPLES, **SETTINGS)
def test_api_conforms_to_its_openapi_document_thoroughly(
    case: Any, hostile_api: ThreadedApi, tally: dict[str, int]
) -> None:
    call(case, hostile_api, tally)


@pytest.mark.slow
def test_thorough_run_is_reported(tally: dict[str, int], reliability: Any) -> None:
    """Runs after the thorough test in this module; records how many cases it made."""
    outcomes = reliability.outcomes("test_api_conforms_to_its_openapi_document_thoroughly")
    failed = sorted(nodeid for nodeid, outcome in outcomes.items() if outcome != "passed")
    operations = len([k for k in tally if k != "cases"])
    assert tally["cases"] > 0 and operations >= 10 and outcomes
    assert not failed, f"operations that failed: {failed}"
    reliability.record(
        "schemathesis against /api/v1/openapi.json",
        kind="hostile",
        summary=(
            "schema-valid and schema-invalid requests to every operation: no 5xx, every "
            "status, media type, header and body as documented, invalid input refused"
        ),
        cases=tally["cases"],
        operations=operations,
        failures=0,
    )
