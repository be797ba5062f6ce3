"""The rules for whole JSON answers (whole_answers.py) and the public model name on relayed
chunks (streaming.PublicModel), without a gateway."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest

from creditdash.proxy.streaming import PublicModel
from creditdash.proxy.whole_answers import completion_events, error_message, error_of, is_json


@pytest.mark.parametrize(
    ("body", "error"),
    [({"error": {"message": "boom"}}, {"message": "boom"}), ({"error": "boom"}, "boom"),
     ({"error": None, "choices": []}, None), ({"error": {"m": 1}, "choices": [{}]}, None),
     ({"object": "response", "error": None, "output": []}, None), ({"error": {}}, None),
     ([{"error": "x"}], None), (None, None)],
)  # fmt: skip
def test_only_a_body_that_is_just_an_error_is_an_error(body: Any, error: Any) -> None:
    assert error_of(body) == error


def test_an_error_message_is_its_text_on_one_line_and_bounded() -> None:
    assert error_message({"message": "over\nloaded"}) == "over loaded"
    assert error_message({"code": 7}) == '{"code":7}'
    assert len(error_message("x" * 2000)) == 503


class _Headers:
    def __init__(self, value: str) -> None:
        self.headers = {"content-type": value}


def test_json_is_told_by_the_content_type() -> None:
    assert is_json(_Headers("application/json; charset=utf-8"))
    assert not is_json(_Headers("text/event-stream"))
    assert not is_json(object())


def _events(raw: bytes) -> list[Any]:
    lines = [line[6:] for line in raw.decode().split("\n\n") if line]
    return [line if line == "[DONE]" else json.loads(line) for line in lines]


def test_a_completion_becomes_the_events_that_carry_it() -> None:
    completion = {"id": "c1", "created": 5, "model": "m", "usage": {"prompt_tokens": 1},
                  "choices": [{"index": 0, "finish_reason": "stop",
                               "message": {"role": "assistant", "content": "Hi"}}]}  # fmt: skip
    events = _events(completion_events("chat", completion))
    assert events[-1] == "[DONE]"
    first, end, usage = events[:-1]
    assert first["object"] == "chat.completion.chunk" and first["id"] == "c1"
    assert first["choices"] == [
        {"index": 0, "delta": {"role": "assistant", "content": "Hi"}, "finish_reason": None}
    ]
    assert end["choices"] == [{"index": 0, "delta": {}, "finish_reason": "stop"}]
    assert usage["choices"] == [] and usage["usage"] == {"prompt_tokens": 1}


def test_tool_calls_and_completions_text_are_streamed_too() -> None:
    call = {"id": "t1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    message = {"role": "assistant", "content": None, "tool_calls": [call]}
    events = _events(completion_events("chat", {"choices": [{"message": message}]}))
    assert events[1]["choices"][0]["delta"] == {"tool_calls": [{"index": 0, **call}]}
    text = _events(completion_events("completions", {"choices": [{"text": "ab"}]}))
    assert text[0]["object"] == "text_completion" and text[0]["choices"][0]["text"] == "ab"
    assert completion_events("chat", {"no": "choices"}) == b""


@pytest.mark.parametrize(
    "chunk",
    [{"id": "a", "model": "up/stream", "choices": [{"delta": {"content": '"model":"x"'}}]},
     {"id": "a", "model": 'we"ird', "choices": []}],
)  # fmt: skip
@pytest.mark.parametrize("spaced", [False, True])
def test_the_public_model_replaces_the_upstreams_in_a_chunk(
    chunk: dict[str, Any], spaced: bool
) -> None:
    payload = json.dumps(chunk).encode() if spaced else orjson.dumps(chunk)
    rename = PublicModel("pub\u00e9")
    parsed = orjson.loads(payload)
    out = rename(payload, parsed)
    assert orjson.loads(out) == {**chunk, "model": "pub\u00e9"}
    assert parsed["model"] == "pub\u00e9"


def test_a_nested_model_field_is_left_alone() -> None:
    chunk = {"model": "m", "choices": [{"delta": {}, "extra": {"model": "m"}}]}
    out = PublicModel("p")(orjson.dumps(chunk), dict(chunk))
    assert orjson.loads(out) == {**chunk, "model": "p"}


def test_a_chunk_already_named_or_unnamed_is_passed_on_as_is() -> None:
    payload = b'{"model":"p","choices":[]}'
    assert PublicModel("p")(payload, orjson.loads(payload)) is payload
    bare = b'{"choices":[]}'
    assert PublicModel("p")(bare, orjson.loads(bare)) is bare
