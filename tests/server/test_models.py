"""``GET /v1/models``: the configured models, else the upstream's; and what the service logs at start."""

from __future__ import annotations

import openai
import pytest
from live import LiveService, StartService


def test_models_come_from_the_upstream(service: LiveService) -> None:
    service.upstream.models = ["llama3.1", "qwen2.5"]  # type: ignore[union-attr]
    client = service.client()
    listed = client.models.list()
    assert [m.id for m in listed.data] == ["llama3.1", "qwen2.5"]
    assert all(m.object == "model" and m.owned_by == "upstream" for m in listed.data)
    assert client.models.retrieve("qwen2.5").id == "qwen2.5"
    with pytest.raises(openai.NotFoundError) as caught:
        client.models.retrieve("gpt-nope")
    assert caught.value.body["code"] == "model_not_found"  # type: ignore[index]
    anonymous = service.http(key="")
    assert anonymous.get("/v1/models").status_code == 401


def test_configured_models_and_the_start_log_without_upstream(
    start_service: StartService,
) -> None:
    service = start_service(
        "sqlite", AGENTKEEP_LLM_BASE_URL="", AGENTKEEP_LLM_MODELS="house-1, house-2"
    )
    listed = service.client().models.list()
    assert [m.id for m in listed.data] == ["house-1", "house-2"]
    assert all(m.owned_by == "agentkeep" for m in listed.data)
    log = service.log()
    assert f"agentkeep service ready on {service.database_url}" in log
    assert "no upstream configured" in log and "AGENTKEEP_LLM_BASE_URL" in log
