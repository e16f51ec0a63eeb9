"""Contract testing of the live service against OpenAI's published OpenAPI documents (schemathesis).

One :class:`Contract` per document: the file, the deviations where OpenAI's
real API (and so agentkeep) differs from the document, and how a test gets
the ids its paths need. ``run_operation`` drives one operation: bounded
positive and negative examples, each sent to the live service and checked:

- ``not_a_server_error``: no 5xx;
- ``negative_data_rejection``: a request that breaks the schema is refused (4xx);
- ``response_schema_conformance``: a response matches its schema.

To cover another document (e.g. the Responses API), add a ``Contract`` with
its file and deviations and parametrize a test over ``contract.operations()``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import schemathesis
import yaml
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    negative_data_rejection,
    response_schema_conformance,
)

__all__ = ["Contract", "Deviation", "discriminator_by_type", "nullable", "run_operation"]

HERE = Path(__file__).resolve().parent
CHECKS = [not_a_server_error, negative_data_rejection, response_schema_conformance]


@dataclass(frozen=True)
class Deviation:
    """A documented difference between the published document and OpenAI's real API.

    ``apply`` edits the (copied) document in place; ``why`` says what the real API does.
    """

    why: str
    apply: Callable[[dict[str, Any]], None]


def nullable(schema: str, *properties: str) -> Callable[[dict[str, Any]], None]:
    """Let ``properties`` of the component ``schema`` be null."""

    def apply(document: dict[str, Any]) -> None:
        props = document["components"]["schemas"][schema]["properties"]
        for name in properties:
            props[name] = {"anyOf": [props[name], {"type": "null"}]}

    return apply


def discriminator_by_type(schema: str) -> Callable[[dict[str, Any]], None]:
    """Map the ``type`` values of ``schema``'s ``oneOf`` members to them.

    Without a mapping a discriminator's values are the member schemas' names
    (``Message``); the objects themselves say ``"type": "message"``.
    """

    def apply(document: dict[str, Any]) -> None:
        schemas = document["components"]["schemas"]
        union = schemas[schema]
        mapping: dict[str, str] = {}
        for member in union["oneOf"]:
            ref = member["$ref"]
            kind = schemas[ref.rsplit("/", 1)[1]].get("properties", {}).get("type", {})
            for value in kind.get("enum", []):
                mapping[value] = ref
        union["discriminator"] = {"propertyName": "type", "mapping": mapping}

    return apply


def error_responses(document: dict[str, Any]) -> None:
    """Every operation may answer an error status with OpenAI's ``ErrorResponse``."""
    ref = {"$ref": "#/components/schemas/ErrorResponse"}
    for operations in document["paths"].values():
        for op in operations.values():
            if isinstance(op, dict) and "responses" in op:
                op["responses"].setdefault(
                    "default",
                    {"description": "An error", "content": {"application/json": {"schema": ref}}},
                )


@dataclass
class Contract:
    """An OpenAPI document, its deviations, and the base path the service serves it under."""

    path: Path
    deviations: list[Deviation] = field(default_factory=list)
    base_path: str = "/v1"

    @cached_property
    def document(self) -> dict[str, Any]:
        document: dict[str, Any] = yaml.safe_load(self.path.read_text())
        document = copy.deepcopy(document)
        document["servers"] = [{"url": self.base_path}]
        error_responses(document)
        for deviation in self.deviations:
            deviation.apply(document)
        return document

    @cached_property
    def schema(self) -> Any:
        return schemathesis.openapi.from_dict(self.document)

    def operations(self) -> list[str]:
        """``"METHOD /path"`` of every operation in the document."""
        return [
            f"{method.upper()} {path}"
            for path, ops in self.document["paths"].items()
            for method in ops
            if method in ("get", "post", "put", "patch", "delete")
        ]

    def operation(self, label: str) -> Any:
        method, path = label.split(" ", 1)
        return self.schema[path][method]


def run_operation(
    contract: Contract,
    label: str,
    *,
    base_url: str,
    key: str,
    path_parameters: dict[str, str],
    examples: int,
) -> list[str]:
    """Send ``examples`` positive and negative cases of one operation; the failures found."""
    operation = contract.operation(label)
    names = {p.name for p in operation.path_parameters}
    ids = {k: v for k, v in path_parameters.items() if k in names}
    headers = {"Authorization": f"Bearer {key}"}
    failures: list[str] = []
    strategies = [
        operation.as_strategy(mode, path_parameters=ids or None)
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    ]

    @given(case=st.one_of(*strategies))
    @settings(
        max_examples=examples * 2,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def send(case: Any) -> None:
        case.headers = {**(case.headers or {}), **headers}
        response = case.call(base_url=base_url, timeout=30)
        # 413: the body is over the service's size limit (AGENTKEEP_MAX_BODY_BYTES), a
        # rejection schemathesis does not count as one.
        checks = [not_a_server_error] if response.status_code == 413 else CHECKS
        try:
            case.validate_response(response, checks=checks, headers=headers)
        except Exception as exc:  # collect every failure, not only the first
            failures.append(f"{label}: {exc}\n  -> {response.status_code} {response.text[:300]}")

    send()
    return failures
