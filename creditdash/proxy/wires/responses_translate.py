"""Pure translations between OpenAI's Responses API and the hub's chat shape.

A Responses request becomes a chat body (input items -> messages, function tools, the output
cap, reasoning effort and text format); a chat completion becomes a response object; and
ResponseEvents turns the relay's chat chunks into the Responses event stream. Nothing here
touches the network or the database: the wire (responses.py) and the routes compose these.
"""

from __future__ import annotations

import time
from typing import Any

from creditdash.core.ids import new_id
from creditdash.proxy import errors

# Request fields passed to the chat body under the same name.
_SAME_NAME = ("temperature", "top_p", "parallel_tool_calls", "user", "top_logprobs")
_ROLES = {"user": "user", "assistant": "assistant", "system": "system", "developer": "system"}


# ---------------------------------------------------------------------------------- request


def builtin_tools(body: dict[str, Any]) -> list[str]:
    """The types of the request's tools that are not function tools (web_search, mcp, ...):
    only a route that serves the Responses API itself can run them."""
    tools = body.get("tools")
    if tools is None:
        return []
    if not isinstance(tools, list):
        raise errors.bad_request("'tools' must be a list.")
    kinds = []
    for tool in tools:
        kind = tool.get("type") if isinstance(tool, dict) else None
        if kind == "namespace":  # a named group of function tools
            kinds += builtin_tools({"tools": tool.get("tools") or []})
        elif kind != "function":
            kinds.append(str(kind))
    return kinds


def _functions(tools: Any) -> list[tuple[str | None, dict[str, Any]]]:
    """The function tools, namespaces flattened: (namespace or None, tool)."""
    found: list[tuple[str | None, dict[str, Any]]] = []
    for tool in tools if isinstance(tools, list) else []:
        if not isinstance(tool, dict):
            continue
        if tool.get("type") == "namespace":
            found += [(tool.get("name"), inner) for _, inner in _functions(tool.get("tools"))]
        elif tool.get("type") == "function":
            found.append((None, tool))
    return found


def namespaces(tools: Any) -> dict[str, str]:
    """Function name -> the namespace it was declared in, for the calls the model makes."""
    return {str(tool.get("name")): ns for ns, tool in _functions(tools) if ns is not None}


def input_items(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The request's input as a list of items (a string is one user message)."""
    given = body.get("input")
    if isinstance(given, str):
        return [{"type": "message", "role": "user",
                 "content": [{"type": "input_text", "text": given}]}]  # fmt: skip
    if not isinstance(given, list) or not all(isinstance(item, dict) for item in given):
        raise errors.bad_request("'input' must be a string or a list of input items.")
    return [dict(item) for item in given]


def chat_messages(items: list[dict[str, Any]], instructions: Any = None) -> list[dict[str, Any]]:
    """Responses items as chat messages: function_call items join the assistant message before
    them, function_call_output items become tool messages; reasoning items are dropped."""
    messages: list[dict[str, Any]] = []
    if isinstance(instructions, str) and instructions:
        messages.append({"role": "system", "content": instructions})
    for item in items:
        kind = item.get("type", "message")
        if kind == "message":
            messages.append(_chat_message(item))
        elif kind == "function_call":
            call = {"id": item.get("call_id") or item.get("id"), "type": "function",
                    "function": {"name": item.get("name"),
                                 "arguments": item.get("arguments") or "{}"}}  # fmt: skip
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant":
                last.setdefault("tool_calls", []).append(call)
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            messages.append({"role": "tool", "tool_call_id": item.get("call_id"),
                             "content": _text_of(item.get("output"))})  # fmt: skip
        elif kind in ("reasoning", "item_reference"):
            continue
        else:
            raise errors.bad_request(f"Input items of type '{kind}' are not supported here.")
    return messages


def _chat_message(item: dict[str, Any]) -> dict[str, Any]:
    role = _ROLES.get(item.get("role", ""))
    if role is None:
        raise errors.bad_request("A message item's role must be user, assistant, system or "
                                 "developer.")  # fmt: skip
    content = item.get("content")
    if isinstance(content, str):
        return {"role": role, "content": content}
    if not isinstance(content, list):
        raise errors.bad_request("A message item's content must be a string or a list.")
    if role != "user":  # only user messages take images in chat
        return {"role": role, "content": _text_of(content)}
    parts: list[dict[str, Any]] = []
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("input_text", "output_text", "text"):
            parts.append({"type": "text", "text": part.get("text", "")})
        elif kind == "input_image":
            url = part.get("image_url")
            if not isinstance(url, str):
                raise errors.bad_request("input_image parts must carry an image_url.",
                                         "unsupported_file_reference")  # fmt: skip
            image = {"url": url, **({"detail": part["detail"]} if "detail" in part else {})}
            parts.append({"type": "image_url", "image_url": image})
        else:
            raise errors.bad_request(f"Content parts of type '{kind}' are not supported here.")
    return {"role": role, "content": parts}


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return "" if content is None else str(content)


def chat_tools(tools: Any) -> list[dict[str, Any]]:
    out = []
    for _, tool in _functions(tools):
        function = {"name": tool.get("name"), "parameters": tool.get("parameters") or {}}
        for name in ("description", "strict"):
            if tool.get(name) is not None:
                function[name] = tool[name]
        out.append({"type": "function", "function": function})
    return out


def chat_tool_choice(choice: Any) -> Any:
    if isinstance(choice, dict) and choice.get("type") == "function":
        return {"type": "function", "function": {"name": choice.get("name")}}
    if isinstance(choice, dict) and choice.get("type") == "allowed_tools":
        return choice.get("mode", "auto")
    return choice


def response_format(text: Any) -> dict[str, Any] | None:
    """text.format as the chat response_format (None for plain text)."""
    shape = text.get("format") if isinstance(text, dict) else None
    if not isinstance(shape, dict):
        return None
    if shape.get("type") == "json_schema":
        schema = {k: shape[k] for k in ("name", "schema", "strict", "description") if k in shape}
        return {"type": "json_schema", "json_schema": schema}
    if shape.get("type") == "json_object":
        return {"type": "json_object"}
    return None


def chat_body(body: dict[str, Any], items: list[dict[str, Any]]) -> dict[str, Any]:
    """The chat body of a Responses request whose conversation (history first) is items."""
    chat: dict[str, Any] = {
        "model": body.get("model"),
        "messages": chat_messages(items, body.get("instructions")),
    }
    if body.get("stream") is not None:
        chat["stream"] = body["stream"]
    for name in _SAME_NAME:
        if body.get(name) is not None:
            chat[name] = body[name]
    if body.get("tools"):
        chat["tools"] = chat_tools(body["tools"])
        if body.get("tool_choice") is not None:
            chat["tool_choice"] = chat_tool_choice(body["tool_choice"])
    reasoning = body.get("reasoning")
    effort = reasoning.get("effort") if isinstance(reasoning, dict) else None
    if effort is not None:
        chat["reasoning_effort"] = effort
    cap = body.get("max_output_tokens")
    if cap is not None:
        # The current field name (reasoning models require it); the core validates the value.
        chat["max_completion_tokens" if effort is not None else "max_tokens"] = cap
    shape = response_format(body.get("text"))
    if shape is not None:
        chat["response_format"] = shape
    return chat


# --------------------------------------------------------------------------------- response


def response_usage(usage: dict[str, Any], cost: Any) -> dict[str, Any]:
    """Chat usage (as charged) in the Responses shape, with the cost beside it."""
    prompt = _int(usage.get("prompt_tokens"))
    output = _int(usage.get("completion_tokens"))
    cached = _int((usage.get("prompt_tokens_details") or {}).get("cached_tokens"))
    reasoning = _int((usage.get("completion_tokens_details") or {}).get("reasoning_tokens"))
    shown: dict[str, Any] = {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": cached},
        "output_tokens": output,
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": prompt + output,
        "cost": cost,
    }
    if usage.get("estimated"):
        shown["estimated"] = True
    return shown


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def message_item(text: str, status: str = "completed") -> dict[str, Any]:
    return {"id": new_id("msg"), "type": "message", "status": status, "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": []}]}  # fmt: skip


def function_call_item(
    call_id: str, name: str, arguments: str, status: str = "completed", namespace: Any = None
) -> dict[str, Any]:
    item = {"id": new_id("fc"), "type": "function_call", "status": status, "call_id": call_id,
            "name": name, "arguments": arguments}  # fmt: skip
    if isinstance(namespace, str):
        item["namespace"] = namespace
    return item


def output_items(message: dict[str, Any], tools: Any = None) -> list[dict[str, Any]]:
    """A chat completion's assistant message as Responses output items (tools: the request's,
    whose namespaces the calls are named in)."""
    grouped = namespaces(tools)
    items = []
    text = _text_of(message.get("content"))
    if text:
        items.append(message_item(text))
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {}
        name = str(function.get("name") or "")
        items.append(function_call_item(str(call.get("id") or new_id("call")), name,
                                        str(function.get("arguments") or ""),
                                        namespace=grouped.get(name)))  # fmt: skip
    return items


def response_shell(
    response_id: str, model: str, request: dict[str, Any], created_at: int | None = None
) -> dict[str, Any]:
    """A response object without output or usage yet (status in_progress)."""
    return {
        "id": response_id,
        "object": "response",
        "created_at": created_at if created_at is not None else int(time.time()),
        "status": "in_progress",
        "error": None,
        "incomplete_details": None,
        "instructions": request.get("instructions"),
        "max_output_tokens": request.get("max_output_tokens"),
        "model": model,
        "output": [],
        "parallel_tool_calls": request.get("parallel_tool_calls", True),
        "previous_response_id": request.get("previous_response_id"),
        "reasoning": request.get("reasoning"),
        "store": request.get("store", True) is not False,
        "temperature": request.get("temperature"),
        "text": request.get("text") or {"format": {"type": "text"}},
        "tool_choice": request.get("tool_choice", "auto"),
        "tools": request.get("tools") or [],
        "top_p": request.get("top_p"),
        "truncation": request.get("truncation", "disabled"),
        "usage": None,
        "metadata": request.get("metadata") or {},
    }


def finish(response: dict[str, Any], finish_reason: Any) -> dict[str, Any]:
    """The response's ending status from the chat finish_reason."""
    if finish_reason == "length":
        response["status"] = "incomplete"
        response["incomplete_details"] = {"reason": "max_output_tokens"}
    elif finish_reason == "content_filter":
        response["status"] = "incomplete"
        response["incomplete_details"] = {"reason": "content_filter"}
    else:
        response["status"] = "completed"
    return response


def response_object(
    shell: dict[str, Any], completion: dict[str, Any], usage: dict[str, Any], cost: Any
) -> dict[str, Any]:
    """A chat completion (first choice) as the response object; usage as charged."""
    choices = completion.get("choices") or [{}]
    choice = choices[0] if isinstance(choices[0], dict) else {}
    response = dict(shell)
    response["output"] = output_items(choice.get("message") or {}, shell.get("tools"))
    response["usage"] = response_usage(usage, cost)
    return finish(response, choice.get("finish_reason"))


# ----------------------------------------------------------------------------------- stream


class ResponseEvents:
    """The Responses event stream of one streamed answer, built from its chat chunks.

    Each method returns the events (dicts) to send, numbered by sequence_number from 0. The
    text becomes one message item, each tool call a function_call item, in the order they
    started; all are closed at the end, before the ending event (completed, incomplete or
    failed).
    """

    def __init__(self, shell: dict[str, Any], first_sequence: int = 0) -> None:
        self.response = shell
        self._next = first_sequence
        self._text: dict[str, Any] | None = None  # the open message item
        self._calls: dict[int, dict[str, Any]] = {}  # chat tool-call index -> its item
        self._open: list[dict[str, Any]] = []
        self.finish_reason: Any = None
        self._namespaces = namespaces(shell.get("tools"))

    def _event(self, kind: str, **fields: Any) -> dict[str, Any]:
        event = {"type": kind, "sequence_number": self._next, **fields}
        self._next += 1
        return event

    def _snapshot(self) -> dict[str, Any]:
        return {**self.response, "output": list(self.response["output"])}

    def start(self) -> list[dict[str, Any]]:
        return [self._event("response.created", response=self._snapshot()),
                self._event("response.in_progress", response=self._snapshot())]  # fmt: skip

    def _add(self, item: dict[str, Any]) -> tuple[int, list[dict[str, Any]]]:
        index = len(self.response["output"])
        self.response["output"].append(item)
        self._open.append(item)
        return index, [self._event("response.output_item.added", output_index=index,
                                   item={**item})]  # fmt: skip

    def chunk(self, chunk: dict[str, Any]) -> list[dict[str, Any]]:
        """The events of one chat chunk (its first choice)."""
        choices = chunk.get("choices") or []
        choice = choices[0] if choices and isinstance(choices[0], dict) else {}
        delta = choice.get("delta") or {}
        out: list[dict[str, Any]] = []
        text = delta.get("content")
        if isinstance(text, str) and text:
            out += self._text_delta(text)
        for call in delta.get("tool_calls") or []:
            if isinstance(call, dict):
                out += self._call_delta(call)
        if choice.get("finish_reason") is not None:
            self.finish_reason = choice["finish_reason"]
        return out

    def _text_delta(self, text: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        if self._text is None:
            item = message_item("", status="in_progress")
            item["content"] = []
            index, out = self._add(item)
            self._text = item
            part = {"type": "output_text", "text": "", "annotations": []}
            out.append(self._event("response.content_part.added", item_id=item["id"],
                                   output_index=index, content_index=0, part=part))  # fmt: skip
            item["content"].append(dict(part))
        item = self._text
        item["content"][0]["text"] += text
        out.append(self._event("response.output_text.delta", item_id=item["id"],
                               output_index=self._index(item), content_index=0, delta=text,
                               logprobs=[]))  # fmt: skip
        return out

    def _call_delta(self, call: dict[str, Any]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        position = call.get("index", 0)
        function = call.get("function") or {}
        item = self._calls.get(position)
        if item is None:
            name = str(function.get("name") or "")
            item = function_call_item(str(call.get("id") or new_id("call")), name, "",
                                      status="in_progress",
                                      namespace=self._namespaces.get(name))  # fmt: skip
            _, out = self._add(item)
            self._calls[position] = item
        arguments = function.get("arguments")
        if isinstance(arguments, str) and arguments:
            item["arguments"] += arguments
            out.append(self._event("response.function_call_arguments.delta",
                                   item_id=item["id"], output_index=self._index(item),
                                   delta=arguments))  # fmt: skip
        return out

    def _index(self, item: dict[str, Any]) -> int:
        return next(i for i, x in enumerate(self.response["output"]) if x is item)

    def close(self, status: str = "completed") -> list[dict[str, Any]]:
        """Close every open item: completed, or incomplete when the stream failed."""
        out: list[dict[str, Any]] = []
        for item in self._open:
            index = self._index(item)
            if item["type"] == "message":
                part = item["content"][0]
                out.append(self._event("response.output_text.done", item_id=item["id"],
                                       output_index=index, content_index=0,
                                       text=part["text"], logprobs=[]))  # fmt: skip
                out.append(self._event("response.content_part.done", item_id=item["id"],
                                       output_index=index, content_index=0,
                                       part=dict(part)))  # fmt: skip
            else:
                out.append(self._event("response.function_call_arguments.done",
                                       item_id=item["id"], output_index=index,
                                       arguments=item["arguments"]))  # fmt: skip
            item["status"] = status
            out.append(self._event("response.output_item.done", output_index=index,
                                   item={**item}))  # fmt: skip
        self._open = []
        return out

    def completed(self, usage: dict[str, Any], cost: Any) -> dict[str, Any]:
        """The ending event: response.completed, or response.incomplete when the output was
        cut by its cap."""
        finish(self.response, self.finish_reason)
        self.response["usage"] = response_usage(usage, cost)
        kind = "response.completed" if self.response["status"] == "completed" else (
            "response.incomplete")  # fmt: skip
        return self._event(kind, response=self._snapshot())

    def failed(self, error: dict[str, Any]) -> dict[str, Any]:
        """The ending event of a stream that failed (the relay's error event)."""
        self.response["status"] = "failed"
        self.response["error"] = {"code": error.get("code") or "server_error",
                                  "message": error.get("message") or ""}  # fmt: skip
        return self._event("response.failed", response=self._snapshot())
