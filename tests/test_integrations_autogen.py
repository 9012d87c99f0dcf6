"""AutoGen: the paid tools in an ``AssistantAgent``, driven by AutoGen's replay model.

``ReplayChatCompletionClient`` (autogen-ext's test model) answers with a
scripted function call; the agent runs the tool (which pays the embedded
server under the user's client) and, reflecting on the tool's result, calls
the model again: ``create_calls`` shows what the model was given. No network
beyond loopback, no API key.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from autogen_agentchat.agents import AssistantAgent
from autogen_agentchat.messages import ToolCallExecutionEvent
from autogen_core import CancellationToken, FunctionCall
from autogen_core.models import (
    CreateResult,
    FunctionExecutionResultMessage,
    ModelInfo,
    RequestUsage,
)
from autogen_ext.models.replay import ReplayChatCompletionClient

from mpp_client import AsyncClient, DevWallet, SimplePolicy
from mpp_client.integrations.autogen import PaidToolAnswer, mcp_tools, paid_request_tool
from mpp_client.integrations.mcp import PaidMcpSession
from mpp_client.testing import LocalServer, PaidServer
from mpp_client.testing.mcp import McpTool, PaidMcpServer

from .helpers import tool_payer as payer

INFO = ModelInfo(
    vision=False,
    function_calling=True,
    json_output=False,
    family="unknown",
    structured_output=False,
)


def replay(*calls: tuple[str, dict[str, Any]]) -> ReplayChatCompletionClient:
    ask = CreateResult(
        finish_reason="function_calls",
        content=[
            FunctionCall(id=f"call-{i}", name=name, arguments=json.dumps(args))
            for i, (name, args) in enumerate(calls)
        ],
        usage=RequestUsage(prompt_tokens=0, completion_tokens=0),
        cached=False,
    )
    return ReplayChatCompletionClient([ask, "done"], model_info=INFO)


def results_seen(model: ReplayChatCompletionClient) -> list[str]:
    """The tool results in the conversation the model was given on its second call."""
    second = model.create_calls[1]["messages"]
    return [
        r.content
        for m in second
        if isinstance(m, FunctionExecutionResultMessage)
        for r in m.content
    ]


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_the_agent_pays_and_the_model_sees_what_was_paid(
    kind: str, shop: tuple[PaidServer, str]
) -> None:
    server, url = shop
    model = replay(
        ("paid_http_request", {"url": url + "/weather", "max_amount": "0.30 USD", "purpose": "p"}),
        ("paid_http_request", {"url": url + "/report"}),
    )
    agent = AssistantAgent(
        "buyer",
        model_client=model,
        tools=[paid_request_tool(payer(kind))],
        reflect_on_tool_use=True,
    )
    result = await agent.run(task="weather and the report?")
    (executed,) = [m for m in result.messages if isinstance(m, ToolCallExecutionEvent)]
    paid, refused = (r.content for r in executed.content)
    assert paid.startswith("HTTP 200. Paid 0.25 USD to 'merchant-1' via dev")
    assert "Budget 'budget': 0.75 USD of 1.00 USD remains" in paid
    assert refused.startswith("NOT PAID: policy refused to pay 2.00 USD")
    assert "Price: 2.00 USD" in refused
    # The agent runs the two calls concurrently: the budget line is as the ledger stood.
    assert re.search(r"Budget 'budget': (1\.00|0\.75) USD of 1\.00 USD remains", refused)
    assert not any(r.is_error for r in executed.content)  # refusals are answers, not crashes
    assert results_seen(model) == [paid, refused]
    assert len(server.payments) == 1
    assert result.messages[-1].content == "done"


async def test_the_tool_answer_carries_the_payment_for_code() -> None:
    server = PaidServer({"/weather": "0.25 USD"})
    with LocalServer(server) as local:
        tool = paid_request_tool(payer("async"))
        answer = await tool.run_json({"url": local.url + "/weather"}, CancellationToken())
    assert isinstance(answer, PaidToolAnswer) and answer.paid and answer.status == "ok"
    assert answer.summary["payment"]["amount"] == "0.25 USD"
    assert tool.return_value_as_string(answer) == answer.text


async def test_paid_mcp_tools_work_through_autogen() -> None:
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
        tools = await mcp_tools(
            PaidMcpSession(session, client, name="weather"), max_amount="0.30 USD"
        )
        assert tools[0].schema["parameters"]["properties"] == {"city": {"type": "string"}}
        model = replay(("forecast", {"city": "Nice"}))
        agent = AssistantAgent("buyer", model_client=model, tools=tools, reflect_on_tool_use=True)
        result = await agent.run(task="weather in Nice?")
    (executed,) = [m for m in result.messages if isinstance(m, ToolCallExecutionEvent)]
    (answer,) = (r.content for r in executed.content)
    assert answer.startswith("Paid 0.25 USD to 'merchant-1' via dev") and answer.endswith(
        "sunny in Nice"
    )
    assert results_seen(model) == [answer]
    assert len(server.payments) == 1
