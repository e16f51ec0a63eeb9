"""The live service against OpenAI's published Responses document.

Every operation of ``openai-openapi.responses.yaml`` (a copy of the shared
cut, see ``openai-openapi.SOURCE.md``) gets bounded positive and negative
examples (schemathesis, derandomized) against a real ``agentkeep serve`` (SQLite and PostgreSQL) with
the scripted upstream; paths point at a real stored response of the test's
own tenant. Expected: no 5xx, no invalid request accepted, no response that
breaks the document, apart from the deviations listed in ``RESPONSES``.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from contract import HERE, Contract, Deviation, run_operation
from live import LiveService

Document = dict[str, Any]


def _answered_user_may_be_null(document: Document) -> None:
    """``Response`` takes ``ModelResponseProperties`` with a ``user`` that may be null.

    Only the answer: the request's ``user`` stays a string.
    """
    schemas = document["components"]["schemas"]
    answered = copy.deepcopy(schemas["ModelResponseProperties"])
    answered["properties"]["user"] = {"anyOf": [answered["properties"]["user"], {"type": "null"}]}
    schemas["ModelResponsePropertiesAnswered"] = answered
    for part in schemas["Response"]["allOf"]:
        if part.get("$ref") == "#/components/schemas/ModelResponseProperties":
            part["$ref"] = "#/components/schemas/ModelResponsePropertiesAnswered"


def _not_found_is_an_error_envelope(document: Document) -> None:
    envelope = {"$ref": "#/components/schemas/ErrorResponse"}
    for operations in document["paths"].values():
        for op in operations.values():
            if isinstance(op, dict) and "404" in op.get("responses", {}):
                op["responses"]["404"] = {
                    "description": "Not found",
                    "content": {"application/json": {"schema": envelope}},
                }


def _plain_one_of(schema: str) -> Any:
    def apply(document: Document) -> None:
        document["components"]["schemas"][schema].pop("discriminator", None)

    return apply


pytestmark = pytest.mark.slow

EXAMPLES = 4

RESPONSES = Contract(
    HERE / "openai-openapi.responses.yaml",
    deviations=[
        Deviation(
            "OpenAI answers `user: null` on a response created without one; the document says "
            "string (the request's `user` stays a string)",
            _answered_user_may_be_null,
        ),
        Deviation(
            "The document gives 404 the bare `Error`; OpenAI's real 404 is the error envelope "
            '(`{"error": {...}}`) like every other error status',
            _not_found_is_an_error_envelope,
        ),
        Deviation(
            "ItemResource's discriminator has no mapping and two members share `type: message` "
            "(input and output messages): validated as a plain oneOf, which tells them apart by role",
            _plain_one_of("ItemResource"),
        ),
    ],
)


def _world(service: LiveService) -> tuple[str, dict[str, str]]:
    tenant = service.new_tenant()
    http = tenant.http()
    response = http.post("/v1/responses", json={"model": "contract-model", "input": "hello"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "completed", body
    return tenant.key, {"response_id": body["id"], "model": "contract-model"}


@pytest.mark.parametrize("service", ["sqlite", "postgres"], indirect=True)
@pytest.mark.parametrize("operation", RESPONSES.operations())
def test_responses_operation_keeps_the_contract(service: LiveService, operation: str) -> None:
    key, ids = _world(service)
    failures = run_operation(
        RESPONSES,
        operation,
        base_url=service.base_url + RESPONSES.base_path,
        key=key,
        path_parameters=ids,
        examples=EXAMPLES,
    )
    assert failures == [], "\n\n".join(failures)
