"""The OpenAI Agents SDK's default Agent and Runner (Responses API) against the rig: one tool
call, then the answer, each turn metered exactly."""

from __future__ import annotations

import asyncio

import openai
from agents import Agent, Runner, function_tool, set_default_openai_client, set_tracing_disabled

from creditdash.catalog.prices import cost_micros
from tests.proxy.conftest import GatewayRig
from tests.proxy.fake_upstream import TOOL_ARGUMENT
from tests.proxy.test_gateway import FAKE_USAGE, PRICE, assert_ledger_ok, balance, records


@function_tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"sunny in {city}"


async def _run(rig: GatewayRig) -> str:
    client = openai.AsyncOpenAI(api_key=rig.key, base_url=rig.base_url + "/v1", max_retries=0)
    set_default_openai_client(client, use_for_tracing=False)
    set_tracing_disabled(True)
    agent = Agent(name="Weather", instructions="Use the tool.", model="tools",
                  tools=[get_weather])  # fmt: skip
    try:
        result = await Runner.run(agent, "What is the weather in Paris?")
    finally:
        await client.close()
    return str(result.final_output)


def test_agent_calls_a_tool_then_answers(rig: GatewayRig) -> None:
    before = balance(rig).posted_micros
    seen = len(rig.upstream.seen)
    answer = asyncio.run(_run(rig))
    assert answer == f"The tool said: sunny in {TOOL_ARGUMENT}."
    turns = rig.upstream.seen[seen:]
    assert len(turns) == 2
    # The second turn carried the tool call and its result back to the chat upstream.
    last = turns[1].body["messages"]
    assert last[-2]["tool_calls"][0]["function"]["name"] == "get_weather"
    assert last[-1] == {"role": "tool", "tool_call_id": "call_fake_1",
                        "content": f"sunny in {TOOL_ARGUMENT}"}  # fmt: skip
    made = records(rig)
    assert [(r.endpoint, r.status) for r in made] == [("responses", "ok")] * 2
    spent = before - balance(rig).posted_micros
    assert spent == sum(r.price_micros for r in made) == 2 * cost_micros(PRICE, FAKE_USAGE)
    assert_ledger_ok(rig)
