"""The pure Messages <-> chat translations."""

from __future__ import annotations

from creditdash.proxy.wires import anthropic_translate as t


def test_stop_reasons_map_both_ways() -> None:
    reasons = ("end_turn", "stop_sequence", "max_tokens", "tool_use")
    assert [t.finish_reason(r) for r in reasons] == ["stop", "stop", "length", "tool_calls"]
    assert t.finish_reason(None) == "stop"
    assert [t.stop_reason(f) for f in ("stop", "length", "tool_calls", None)] == [
        "end_turn", "max_tokens", "tool_use", "end_turn"
    ]  # fmt: skip


def test_error_types_by_status() -> None:
    assert t.error_type(400) == "invalid_request_error"
    assert t.error_type(401) == "authentication_error"
    assert t.error_type(402) == "billing_error"
    assert t.error_type(404) == "not_found_error"
    assert t.error_type(429) == "rate_limit_error"
    assert t.error_type(529) == "overloaded_error"
    assert t.error_type(502) == "api_error"
    assert t.error_type(422) == "invalid_request_error"


def test_usage_round_trips_with_cache_counts() -> None:
    anthropic = {"input_tokens": 100, "cache_read_input_tokens": 400,
                 "cache_creation_input_tokens": 50, "output_tokens": 30}  # fmt: skip
    hub = t.hub_usage(anthropic)
    assert hub["prompt_tokens"] == 550
    assert hub["prompt_tokens_details"] == {"cached_tokens": 400, "cache_write_tokens": 50}
    assert hub["completion_tokens"] == 30
    assert t.messages_usage(hub) == anthropic


def test_chat_request_becomes_a_messages_request() -> None:
    body = {
        "model": "m", "max_tokens": 50, "stop": "END", "tool_choice": "required",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "hi"}, {"type": "image_url",
             "image_url": {"url": "data:image/png;base64,AAAA"}}]},
            {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "type": "function",
             "function": {"name": "f", "arguments": '{"x": 1}'}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "42"},
            {"role": "user", "content": "thanks"},
        ],
        "tools": [{"type": "function",
                   "function": {"name": "f", "parameters": {"type": "object"}}}],
    }  # fmt: skip
    out = t.chat_to_messages_request(body)
    assert out["system"] == "Be brief." and out["max_tokens"] == 50
    assert out["stop_sequences"] == ["END"] and out["tool_choice"] == {"type": "any"}
    assert [turn["role"] for turn in out["messages"]] == ["user", "assistant", "user"]
    assert out["messages"][0]["content"][1]["source"] == {
        "type": "base64", "media_type": "image/png", "data": "AAAA"
    }  # fmt: skip
    assert out["messages"][1]["content"] == [{"type": "tool_use", "id": "c1", "name": "f",
                                              "input": {"x": 1}}]  # fmt: skip
    assert out["messages"][2]["content"][0]["type"] == "tool_result"
    assert out["messages"][2]["content"][1] == {"type": "text", "text": "thanks"}
    assert out["tools"][0]["input_schema"] == {"type": "object"}


def test_a_messages_answer_becomes_a_chat_completion() -> None:
    answer = {"id": "msg_1", "model": "m", "stop_reason": "tool_use",
              "content": [{"type": "text", "text": "Let me check."},
                          {"type": "tool_use", "id": "t1", "name": "f", "input": {"x": 1}}],
              "usage": {"input_tokens": 10, "cache_read_input_tokens": 5,
                        "output_tokens": 3}}  # fmt: skip
    chat = t.messages_to_chat_completion(answer)
    choice = chat["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] == "Let me check."
    assert choice["message"]["tool_calls"][0]["function"] == {"name": "f", "arguments": '{"x":1}'}
    assert chat["usage"]["prompt_tokens"] == 15 and chat["usage"]["completion_tokens"] == 3
