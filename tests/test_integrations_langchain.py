"""LangChain: the paid tools on langchain-core's own tool-calling path, with its fake chat model.

The model (langchain-core's ``GenericFakeChatModel``, scripted, recording what
it is shown) asks for a tool call; the tool is invoked with that ``ToolCall``
as LangChain does, pays the embedded server under the user's client, and the
``ToolMessage`` (content for the model, artifact with the ledger record) goes
back to the model. No network beyond loopback, no API key.
"""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.tools import BaseTool
from pydantic import Field

from mpp_client import AsyncClient, Client, DevWallet, SimplePolicy
from mpp_client.integrations import ToolReport
from mpp_client.integrations.langchain import mcp_tools, paid_request_tool
from mpp_client.integrations.mcp import PaidMcpSession
from mpp_client.ledger import open_ledger
from mpp_client.testing import PaidServer
from mpp_client.testing.mcp import McpTool, PaidMcpServer


class RecordingModel(GenericFakeChatModel):
    """langchain-core's fake chat model, remembering every conversation it was given."""

    seen: list[list[BaseMessage]] = Field(default_factory=list)

    def _generate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> Any:
        self.seen.append(list(messages))
        return super()._generate(messages, *args, **kwargs)


def scripted(*calls: dict[str, Any]) -> RecordingModel:
    ask = AIMessage(
        content="",
        tool_calls=[
            {"name": c["name"], "args": c["args"], "id": f"call-{i}"} for i, c in enumerate(calls)
        ],
    )
    return RecordingModel(messages=iter([ask, AIMessage(content="done")]))


def turn(model: RecordingModel, tools: list[BaseTool], question: str) -> list[BaseMessage]:
    messages: list[BaseMessage] = [HumanMessage(question)]
    ai = model.invoke(messages)
    messages.append(ai)
    by_name = {t.name: t for t in tools}
    messages.extend(by_name[c["name"]].invoke({**c, "type": "tool_call"}) for c in ai.tool_calls)
    messages.append(model.invoke(messages))
    return messages


async def aturn(model: RecordingModel, tools: list[BaseTool], question: str) -> list[BaseMessage]:
    messages: list[BaseMessage] = [HumanMessage(question)]
    ai = await model.ainvoke(messages)
    messages.append(ai)
    by_name = {t.name: t for t in tools}
    for call in ai.tool_calls:  # one after another, as a simple agent loop does
        answer = await by_name[call["name"]].ainvoke({**call, "type": "tool_call"})
        messages.append(answer)
    messages.append(await model.ainvoke(messages))
    return messages


def clients(tmp_path: Any) -> tuple[Client, AsyncClient]:
    """A sync and an async client on one ledger: one budget."""
    ledger = open_ledger(tmp_path / "ledger.sqlite")
    options: dict[str, Any] = {
        "methods": [DevWallet()],
        "policy": SimplePolicy(max_per_call="0.50 USD", budget="1.00 USD"),
        "ledger": ledger,
        "allow_insecure_localhost": True,
    }
    return Client(**options), AsyncClient(**options)


def tool_messages(messages: list[BaseMessage]) -> list[ToolMessage]:
    return [m for m in messages if isinstance(m, ToolMessage)]


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_the_agent_pays_and_the_model_sees_what_was_paid(
    mode: str, shop: tuple[PaidServer, str], tmp_path: Any
) -> None:
    server, url = shop
    client, aclient = clients(tmp_path)
    tool = paid_request_tool(client, aclient)
    model = scripted(
        {
            "name": "paid_http_request",
            "args": {"url": url + "/weather", "max_amount": "0.30 USD", "purpose": "forecast"},
        }
    )
    messages = (
        turn(model, [tool], "weather?")
        if mode == "sync"
        else await aturn(model, [tool], "weather?")
    )
    (answer,) = tool_messages(messages)
    assert answer.content.startswith("HTTP 200. Paid 0.25 USD to 'merchant-1' via dev")
    assert "Budget 'budget': 0.75 USD of 1.00 USD remains" in answer.content
    report = answer.artifact
    assert isinstance(report, ToolReport) and report.status == "ok"
    assert report.record is not None and report.record.status == "committed"
    assert report.record.purpose == "forecast"
    assert [p.challenge_id for p in server.payments] == [report.record.challenge_id]
    # The model's second turn was shown the tool's report.
    assert model.seen[1][-1].content == answer.content


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_a_refusal_is_an_answer_the_model_can_act_on(
    mode: str, shop: tuple[PaidServer, str], tmp_path: Any
) -> None:
    server, url = shop
    client, aclient = clients(tmp_path)
    tool = paid_request_tool(client, aclient)
    model = scripted(
        {"name": "paid_http_request", "args": {"url": url + "/weather", "max_amount": "0.10 USD"}},
        {"name": "paid_http_request", "args": {"url": url + "/report"}},
    )
    messages = turn(model, [tool], "q") if mode == "sync" else await aturn(model, [tool], "q")
    capped, dear = tool_messages(messages)
    assert capped.content.startswith("NOT PAID: policy refused to pay 0.25 USD")
    assert "exceeds the call's max_amount 0.10 USD" in capped.content
    assert "Price: 0.25 USD" in capped.content and "1.00 USD of 1.00 USD remains" in capped.content
    assert "exceeds the per-call cap 0.50 USD" in dear.content and "Price: 2.00 USD" in dear.content
    assert capped.artifact.status == dear.artifact.status == "refused"
    assert not capped.artifact.paid
    assert server.payments == []
    assert model.seen[1][-2:] == [capped, dear]


async def test_paid_mcp_tools_work_through_langchain() -> None:
    server = PaidMcpServer({"forecast": McpTool("0.25 USD", lambda a: f"sunny in {a['city']}")})
    payer = AsyncClient(
        methods=[DevWallet()],
        policy=SimplePolicy(max_per_call="0.50 USD", budget="1.00 USD"),
        ledger="memory:",
    )
    async with server.connect() as session:
        tools = await mcp_tools(PaidMcpSession(session, payer, name="weather"), purpose="agent")
        model = scripted({"name": "forecast", "args": {"city": "Nice"}})
        messages = await aturn(model, tools, "weather in Nice?")
    (answer,) = tool_messages(messages)
    assert answer.content.startswith("Paid 0.25 USD to 'merchant-1' via dev")
    assert answer.content.endswith("sunny in Nice")
    record = answer.artifact.record
    assert record.status == "committed" and record.purpose == "agent"
    assert record.url == "mcp://weather#forecast"
    assert len(server.payments) == 1
    assert model.seen[1][-1].content == answer.content
