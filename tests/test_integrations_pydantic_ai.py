"""pydantic-ai: the paid tool and the MCP toolset in an ``Agent`` run with ``FunctionModel``.

pydantic-ai's own test model (``FunctionModel``) asks for the tool calls on
its first turn and, on the second, answers with the tool results it was
given; the agent runs the tools (which pay the embedded server under the
user's client). The ``ToolReturn`` metadata (the report with the ledger
record) stays in the run's messages and never reaches the model. No network
beyond loopback, no API key.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from pydantic_ai import Agent
from pydantic_ai.messages import (
    ModelMessage,
    ModelRequest,
    ModelResponse,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
)
from pydantic_ai.models.function import AgentInfo, FunctionModel

from mpp_client import AsyncClient, DevWallet, SimplePolicy
from mpp_client.integrations import ToolReport
from mpp_client.integrations.mcp import PaidMcpSession
from mpp_client.integrations.pydantic_ai import mcp_toolset, paid_request_tool
from mpp_client.testing import PaidServer
from mpp_client.testing.mcp import McpTool, PaidMcpServer

from .helpers import tool_payer as payer


def scripted(*calls: tuple[str, dict[str, Any]]) -> tuple[FunctionModel, list[list[str]]]:
    """A model that calls ``calls``, then answers with the tool results it sees."""
    seen: list[list[str]] = []

    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        returns = [
            part
            for message in messages
            if isinstance(message, ModelRequest)
            for part in message.parts
            if isinstance(part, ToolReturnPart)
        ]
        if not returns:
            return ModelResponse(
                parts=[
                    ToolCallPart(name, args, tool_call_id=f"call-{i}")
                    for i, (name, args) in enumerate(calls)
                ]
            )
        texts = [str(part.content) for part in returns]
        seen.append(texts)
        return ModelResponse(parts=[TextPart("\n---\n".join(texts))])

    return FunctionModel(respond), seen


def reports(result: Any) -> list[ToolReport]:
    return [
        part.metadata
        for message in result.all_messages()
        if isinstance(message, ModelRequest)
        for part in message.parts
        if isinstance(part, ToolReturnPart)
    ]


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_the_agent_pays_and_the_model_sees_what_was_paid(
    kind: str, shop: tuple[PaidServer, str]
) -> None:
    server, url = shop
    model, seen = scripted(
        ("paid_http_request", {"url": url + "/weather", "purpose": "forecast"}),
        ("paid_http_request", {"url": url + "/report"}),
    )
    agent = Agent(model, tools=[paid_request_tool(payer(kind))])
    result = await agent.run("weather and the report?")
    paid, refused = reports(result)
    assert isinstance(paid, ToolReport) and paid.record is not None
    assert paid.record.status == "committed" and paid.record.purpose == "forecast"
    assert paid.text.startswith("HTTP 200. Paid 0.25 USD to 'merchant-1' via dev")
    assert refused.status == "refused" and "Price: 2.00 USD" in refused.text
    # Tools may run concurrently: the budget line is as the ledger stood then.
    assert re.search(r"Budget 'budget': (1\.00|0\.75) USD of 1\.00 USD remains", refused.text)
    # The model saw the texts (not the metadata), and answered with them.
    assert seen == [[paid.text, refused.text]]
    assert result.output == f"{paid.text}\n---\n{refused.text}"
    assert len(server.payments) == 1


async def test_paid_mcp_tools_work_through_pydantic_ai() -> None:
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
        toolset = await mcp_toolset(
            PaidMcpSession(session, client, name="weather"), tags={"a": "b"}
        )
        model, seen = scripted(("forecast", {"city": "Nice"}))
        result = await Agent(model, toolsets=[toolset]).run("weather in Nice?")
    (report,) = reports(result)
    assert report.record is not None and report.record.tags == {"a": "b"}
    assert report.text.endswith("sunny in Nice")
    assert seen == [[report.text]]
    assert len(server.payments) == 1
