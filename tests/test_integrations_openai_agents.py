"""OpenAI Agents SDK: the paid function tools in ``Runner.run``, with a scripted model.

The SDK ships no fake model in the package, so ``ScriptedModel`` implements
its public ``agents.models.interface.Model``: the first turn asks for function
calls, the second answers in text, and every input it was given is kept. The
runner executes the tools (which pay the embedded server under the user's
client) and feeds their output back to the model. No network beyond
loopback, no API key.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
from agents import (
    Agent,
    ModelResponse,
    Runner,
    ToolCallOutputItem,
    Usage,
    set_tracing_disabled,
)
from agents.models.interface import Model
from openai.types.responses import (
    ResponseFunctionToolCall,
    ResponseOutputMessage,
    ResponseOutputText,
)

from mpp_client import AsyncClient, DevWallet, SimplePolicy
from mpp_client.integrations import ToolReport
from mpp_client.integrations.mcp import PaidMcpSession
from mpp_client.integrations.openai_agents import mcp_tools, paid_request_tool
from mpp_client.testing import PaidServer
from mpp_client.testing.mcp import McpTool, PaidMcpServer

from .helpers import tool_payer as payer

# Traces would go to OpenAI's service: none in tests.
set_tracing_disabled(True)


class ScriptedModel(Model):
    """A model that calls the given tools, then says "done"; it records every input."""

    def __init__(self, *calls: tuple[str, dict[str, Any]]) -> None:
        self.calls = calls
        self.inputs: list[Any] = []

    async def get_response(
        self, system_instructions: Any, input: Any, *args: Any, **kwargs: Any
    ) -> ModelResponse:
        self.inputs.append(input)
        if len(self.inputs) == 1:
            output: list[Any] = [
                ResponseFunctionToolCall(
                    type="function_call",
                    call_id=f"call-{i}",
                    name=name,
                    arguments=json.dumps(args_),
                )
                for i, (name, args_) in enumerate(self.calls)
            ]
        else:
            output = [
                ResponseOutputMessage(
                    id="msg-1",
                    type="message",
                    role="assistant",
                    status="completed",
                    content=[ResponseOutputText(type="output_text", text="done", annotations=[])],
                )
            ]
        return ModelResponse(output=output, usage=Usage(), response_id=None)

    def stream_response(self, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:  # pragma: no cover
        raise NotImplementedError


def outputs_seen(model: ScriptedModel) -> list[str]:
    """The tool outputs in the model's second input."""
    return [
        i["output"]
        for i in model.inputs[1]
        if isinstance(i, dict) and i.get("type") == "function_call_output"
    ]


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_the_agent_pays_and_the_model_sees_what_was_paid(
    kind: str, shop: tuple[PaidServer, str]
) -> None:
    server, url = shop
    model = ScriptedModel(
        ("paid_http_request", {"url": url + "/weather", "max_amount": "0.30 USD"}),
        ("paid_http_request", {"url": url + "/weather", "max_amount": "0.10 USD"}),
    )
    agent = Agent(name="buyer", model=model, tools=[paid_request_tool(payer(kind))])
    result = await Runner.run(agent, "weather?")
    assert result.final_output == "done"
    items = [i for i in result.new_items if isinstance(i, ToolCallOutputItem)]
    reports = [i.output for i in items]
    assert all(isinstance(r, ToolReport) for r in reports)
    paid, capped = reports
    assert paid.status == "ok" and paid.record is not None and paid.record.status == "committed"
    assert paid.text.startswith("HTTP 200. Paid 0.25 USD to 'merchant-1' via dev")
    assert capped.status == "refused" and not capped.paid
    assert (
        "exceeds the call's max_amount 0.10 USD" in capped.text and "Price: 0.25 USD" in capped.text
    )
    # The runner calls the two tools concurrently: the budget line is as the ledger stood.
    assert re.search(r"Budget 'budget': (1\.00|0\.75) USD of 1\.00 USD remains", capped.text)
    assert outputs_seen(model) == [paid.text, capped.text]
    assert len(server.payments) == 1


async def test_bad_arguments_are_an_answer_not_a_crash(shop: tuple[PaidServer, str]) -> None:
    server, url = shop
    model = ScriptedModel(("paid_http_request", {"url": url + "/weather", "method": "BREW"}))
    agent = Agent(name="buyer", model=model, tools=[paid_request_tool(payer("async"))])
    result = await Runner.run(agent, "weather?")
    (seen,) = outputs_seen(model)
    assert seen.startswith("ERROR: bad tool arguments (method)") and "Nothing was paid" in seen
    assert result.final_output == "done" and server.payments == []


async def test_paid_mcp_tools_work_through_the_agents_sdk() -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    server = PaidMcpServer(
        {"forecast": McpTool("0.25 USD", lambda a: f"sunny in {a['city']}", input_schema=schema)}
    )
    client = AsyncClient(
        methods=[DevWallet()],
        policy=SimplePolicy(max_per_call="0.50 USD", budget="1.00 USD"),
        ledger="memory:",
    )
    async with server.connect() as session:
        tools = await mcp_tools(PaidMcpSession(session, client, name="weather"), purpose="agent")
        assert tools[0].params_json_schema == schema
        model = ScriptedModel(("forecast", {"city": "Nice"}))
        result = await Runner.run(Agent(name="buyer", model=model, tools=tools), "weather in Nice?")
    (item,) = [i for i in result.new_items if isinstance(i, ToolCallOutputItem)]
    report = item.output
    assert isinstance(report, ToolReport) and report.record is not None
    assert report.record.purpose == "agent" and report.record.url == "mcp://weather#forecast"
    assert outputs_seen(model) == [report.text]
    assert report.text.endswith("sunny in Nice") and len(server.payments) == 1
