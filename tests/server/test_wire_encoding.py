"""The service's JSON text (``wire.encoding.dumps``): what Starlette's JSONResponse wrote, faster."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest

from agentkeep.server.json_response import JSONResponse
from agentkeep.wire.encoding import dumps, loads


def starlette_text(value: Any, *, sort_keys: bool = False) -> bytes:
    """What ``JSONResponse.render`` wrote before (Starlette's options), and the fallback's."""
    text = json.dumps(
        value, ensure_ascii=False, allow_nan=False, separators=(",", ":"), sort_keys=sort_keys
    )
    return text.encode()


PAGE = {
    "object": "list",
    "data": [
        {
            "id": f"msg_{i}",
            "object": "thread.message",
            "created_at": 1796550891 + i,
            "assistant_id": None,
            "role": "user",
            "content": [
                {"type": "text", "text": {"value": f'héllo ✓ "{i}"\n\\', "annotations": []}}
            ],
            "metadata": {"k": "v", "empty": ""},
            "attachments": [],
            "truncated": False,
        }
        for i in range(3)
    ],
    "first_id": "msg_0",
    "last_id": "msg_2",
    "has_more": True,
}


def test_a_page_is_the_same_bytes_as_starlette_wrote() -> None:
    assert dumps(PAGE) == starlette_text(PAGE)
    assert JSONResponse(PAGE).body == starlette_text(PAGE)


def test_sorted_keys_are_sorted_at_every_level() -> None:
    value = {"b": {"z": 1, "a": [{"y": 2, "x": 3}]}, "a": None}
    assert dumps(value, sort_keys=True) == starlette_text(value, sort_keys=True)
    assert dumps(value, sort_keys=True).startswith(b'{"a":null,"b":{"a":[{"x":3,"y":2}]')


@pytest.mark.parametrize("number", [0.1, 1.5, -2.25, 1e20, 3e-7, 123456789.125])
def test_floats_read_back_as_the_same_number(number: float) -> None:
    assert json.loads(dumps({"n": number})) == {"n": number}


@pytest.mark.parametrize(
    "value",
    [
        {"n": 2**70},  # beyond 64 bits: orjson refuses, the standard library writes it
        {"n": -(2**64)},
        {1: "an int key", "s": "str"},  # non-string keys, as json.dumps turns them
        [{"deep": [2**65, "x"]}],
    ],
)
def test_what_orjson_refuses_is_written_as_the_standard_library_writes_it(value: Any) -> None:
    assert dumps(value) == starlette_text(value)


@dataclass
class Point:
    x: int


@pytest.mark.parametrize(
    "value", [{"at": datetime(2026, 1, 2, tzinfo=UTC)}, {"p": Point(1)}, {"s": {1, 2}}]
)
def test_what_the_standard_library_refuses_is_still_refused(value: Any) -> None:
    with pytest.raises(TypeError):
        starlette_text(value)
    with pytest.raises(TypeError, match="not JSON serializable"):
        dumps(value)


def test_a_float_that_is_not_a_number_is_null() -> None:
    assert dumps({"a": float("nan"), "b": float("inf")}) == b'{"a":null,"b":null}'


@pytest.mark.parametrize(
    "text",
    [
        json.dumps(PAGE),
        '{"choices":[{"delta":{"content":"h\\u00e9llo \\ud83d\\ude00"},"index":0}]}',
        "[1.5e300, -0.0, 12345678901234567890123, NaN, Infinity, -Infinity]",  # orjson refuses
        '  {"a": [null, true, false, "x"]}  ',
        '"just a string"',
    ],
)
def test_loads_reads_what_the_standard_library_reads(text: str) -> None:
    for given in (text, text.encode()):
        got, want = loads(given), json.loads(given)
        # NaN is not equal to itself: compare the texts both write back.
        assert json.dumps(got) == json.dumps(want)


@pytest.mark.parametrize("text", ["", "{", '{"a": 1} {"b": 2}', "[1,]", "{'a': 1}", "nul"])
def test_loads_refuses_what_the_standard_library_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        json.loads(text)
    with pytest.raises(ValueError):
        loads(text)


def test_an_sse_event_is_framed_as_every_stream_sends_it() -> None:
    from agentkeep.wire.sse import event

    assert event("done", "[DONE]") == b"event: done\ndata: [DONE]\n\n"
    assert (
        event("x", {"b": 1, "a": "é"}, 7) == 'event: x\ndata: {"b":1,"a":"é"}\nid: 7\n\n'.encode()
    )
    assert event("x", {"b": 1, "a": 2}, sort_keys=True) == b'event: x\ndata: {"a":2,"b":1}\n\n'
