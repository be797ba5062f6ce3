"""The pure Responses <-> chat translations: requests, completions and the event stream."""

from __future__ import annotations

from typing import Any

import pytest

from creditdash.proxy import errors
from creditdash.proxy.wires.responses_translate import (
    ResponseEvents,
    builtin_tools,
    chat_body,
    chat_messages,
    chat_tool_choice,
    input_items,
    response_format,
    response_object,
    response_shell,
    response_usage,
)

TOOL = {"type": "function", "name": "f", "parameters": {"type": "object"}}


def test_a_string_input_is_one_user_message() -> None:
    items = input_items({"input": "hi"})
    assert items == [{"type": "message", "role": "user",
                      "content": [{"type": "input_text", "text": "hi"}]}]  # fmt: skip
    assert chat_messages(items, "Be kind.") == [
        {"role": "system", "content": "Be kind."},
        {"role": "user", "content": [{"type": "text", "text": "hi"}]},
    ]


@pytest.mark.parametrize("given", [None, 3, {"a": 1}, ["text"]])
def test_other_inputs_are_refused(given: Any) -> None:
    with pytest.raises(errors.GatewayError) as caught:
        input_items({"input": given})
    assert caught.value.status == 400


def test_function_calls_join_the_assistant_message_and_outputs_become_tool_messages() -> None:
    items = [
        {"role": "user", "content": "go"},
        {"type": "message", "role": "assistant",
         "content": [{"type": "output_text", "text": "Looking."}]},
        {"type": "reasoning", "summary": []},
        {"type": "function_call", "call_id": "c1", "name": "f", "arguments": '{"x":1}'},
        {"type": "function_call", "call_id": "c2", "name": "g", "arguments": ""},
        {"type": "function_call_output", "call_id": "c1",
         "output": [{"type": "input_text", "text": "one"}]},
        {"type": "function_call_output", "call_id": "c2", "output": "two"},
    ]  # fmt: skip
    assert chat_messages(items) == [
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": "Looking.", "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"x":1}'}},
            {"id": "c2", "type": "function", "function": {"name": "g", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "one"},
        {"role": "tool", "tool_call_id": "c2", "content": "two"},
    ]  # fmt: skip


def test_unknown_items_roles_and_parts_are_refused() -> None:
    for items in (
        [{"type": "computer_call_output", "call_id": "x"}],
        [{"type": "message", "role": "tool", "content": "x"}],
        [{"type": "message", "role": "user", "content": [{"type": "input_audio"}]}],
        [{"type": "message", "role": "user", "content": [{"type": "input_image", "file_id": "f"}]}],
    ):
        with pytest.raises(errors.GatewayError):
            chat_messages(items)


def test_builtin_tools_are_named_and_namespaces_looked_into() -> None:
    namespace = {"type": "namespace", "name": "ns", "tools": [TOOL, {"type": "web_search"}]}
    assert builtin_tools({"tools": [TOOL, namespace, {"type": "mcp"}]}) == ["web_search", "mcp"]
    assert builtin_tools({}) == []
    with pytest.raises(errors.GatewayError):
        builtin_tools({"tools": "web_search"})


def test_the_chat_body_carries_tools_cap_effort_and_format() -> None:
    namespace = {"type": "namespace", "name": "ns", "tools": [{**TOOL, "name": "inner"}]}
    body = {
        "model": "m", "stream": True, "tools": [{**TOOL, "strict": True}, namespace],
        "tool_choice": {"type": "function", "name": "f"}, "max_output_tokens": 9,
        "reasoning": {"effort": "high", "summary": "auto"},
        "text": {"format": {"type": "json_object"}},
        "top_p": 0.5, "store": False, "include": ["x"], "metadata": {"a": "b"},
    }  # fmt: skip
    chat = chat_body(body, input_items({"input": "hi"}))
    assert chat["tools"] == [
        {"type": "function", "function": {"name": "f", "parameters": {"type": "object"},
                                          "strict": True}},
        {"type": "function", "function": {"name": "inner", "parameters": {"type": "object"}}},
    ]  # fmt: skip
    assert chat["tool_choice"] == {"type": "function", "function": {"name": "f"}}
    assert chat["max_completion_tokens"] == 9 and chat["reasoning_effort"] == "high"
    assert chat["response_format"] == {"type": "json_object"}
    assert (chat["stream"], chat["top_p"], chat["model"]) == (True, 0.5, "m")
    assert not {"store", "include", "metadata", "input", "text"} & set(chat)
    assert chat_body({"model": "m", "max_output_tokens": 5}, [])["max_tokens"] == 5
    assert chat_tool_choice("none") == "none"
    assert response_format({"format": {"type": "text"}}) is None


def test_a_completion_becomes_a_response_object() -> None:
    shell = response_shell("resp_1", "public", {"tools": [TOOL]}, created_at=5)
    completion = {
        "choices": [
            {
                "finish_reason": "tool_calls",
                "message": {
                    "content": "Calling.",
                    "tool_calls": [
                        {
                            "id": "c1",
                            "type": "function",
                            "function": {"name": "f", "arguments": "{}"},
                        }
                    ],
                },
            }
        ]
    }
    usage = {"prompt_tokens": 10, "completion_tokens": 4,
             "prompt_tokens_details": {"cached_tokens": 3},
             "completion_tokens_details": {"reasoning_tokens": 2}}  # fmt: skip
    response = response_object(shell, completion, usage, "COST")
    assert (response["id"], response["model"], response["status"]) == ("resp_1", "public",
                                                                       "completed")  # fmt: skip
    message, call = response["output"]
    assert message["content"][0] == {"type": "output_text", "text": "Calling.", "annotations": []}
    assert (call["type"], call["call_id"], call["name"]) == ("function_call", "c1", "f")
    assert response["usage"] == {
        "input_tokens": 10, "input_tokens_details": {"cached_tokens": 3}, "output_tokens": 4,
        "output_tokens_details": {"reasoning_tokens": 2}, "total_tokens": 14, "cost": "COST",
    }  # fmt: skip
    assert shell["output"] == []  # the shell is not changed


def test_a_completion_cut_by_its_cap_is_incomplete() -> None:
    shell = response_shell("resp_1", "m", {})
    completion = {"choices": [{"finish_reason": "length", "message": {"content": "Hal"}}]}
    response = response_object(shell, completion, {}, 0)
    assert response["status"] == "incomplete"
    assert response["incomplete_details"] == {"reason": "max_output_tokens"}
    assert response_usage({"estimated": True}, 1)["estimated"] is True


def _chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


def test_the_event_stream_of_text_then_a_tool_call() -> None:
    events = ResponseEvents(response_shell("resp_1", "m", {}))
    out = events.start()
    out += events.chunk(_chunk({"content": "Hi"}))
    out += events.chunk(_chunk({"content": " there"}))
    out += events.chunk(_chunk({"tool_calls": [{"index": 0, "id": "c1", "function": {
        "name": "f", "arguments": '{"a"'}}]}))  # fmt: skip
    out += events.chunk(_chunk({"tool_calls": [{"index": 0, "function": {"arguments": ":1}"}}]}))
    out += events.chunk(_chunk({}, "tool_calls"))
    out += events.close()
    out.append(events.completed({"prompt_tokens": 1, "completion_tokens": 2}, "C"))
    assert [e["type"] for e in out] == [
        "response.created", "response.in_progress",
        "response.output_item.added", "response.content_part.added",
        "response.output_text.delta", "response.output_text.delta",
        "response.output_item.added", "response.function_call_arguments.delta",
        "response.function_call_arguments.delta",
        "response.output_text.done", "response.content_part.done", "response.output_item.done",
        "response.function_call_arguments.done", "response.output_item.done",
        "response.completed",
    ]  # fmt: skip
    assert [e["sequence_number"] for e in out] == list(range(len(out)))
    assert out[0]["response"]["output"] == [] and out[0]["response"]["status"] == "in_progress"
    assert out[9]["text"] == "Hi there" and out[12]["arguments"] == '{"a":1}'
    assert out[7]["output_index"] == 1 and out[4]["output_index"] == 0
    final = out[-1]["response"]
    assert [i["type"] for i in final["output"]] == ["message", "function_call"]
    assert all(i["status"] == "completed" for i in final["output"])
    assert final["usage"]["total_tokens"] == 3 and final["usage"]["cost"] == "C"


def test_a_stream_cut_by_its_cap_ends_incomplete_and_a_failure_failed() -> None:
    events = ResponseEvents(response_shell("resp_1", "m", {}))
    events.chunk(_chunk({"content": "x"}, "length"))
    events.close()
    assert events.completed({}, 0)["type"] == "response.incomplete"
    failing = ResponseEvents(response_shell("resp_2", "m", {}))
    ended = failing.failed({"message": "gone", "type": "upstream_error", "code": "upstream_failed"})
    assert ended["type"] == "response.failed"
    assert ended["response"]["error"] == {"code": "upstream_failed", "message": "gone"}
