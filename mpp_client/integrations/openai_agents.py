"""OpenAI Agents SDK tools that pay: ``pip install "mpp-client[openai-agents]"``.

:func:`paid_request_tool` is a ``FunctionTool`` making HTTP requests through
the user's :class:`~mpp_client.AsyncClient` (or a :class:`~mpp_client.Client`,
run in a worker thread); :func:`mcp_tools` turns the tools of a
:class:`~mpp_client.integrations.mcp.PaidMcpSession` into function tools that
pay the same way::

    agent = Agent(name="buyer", tools=[paid_request_tool(client)])

A tool returns a :class:`~mpp_client.integrations.ToolReport`: the model reads
its text (what was paid and what remains of the budget, or why nothing was
paid), and the run's ``ToolCallOutputItem.output`` is the report itself, with
the ledger record. Refusals and failures never raise through the agent loop.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ._extras import require

require("agents", "openai-agents", "mpp_client.integrations.openai_agents")

from agents import FunctionTool, RunContextWrapper  # noqa: E402
from pydantic import ValidationError  # noqa: E402

from ..client import AsyncClient, Client  # noqa: E402
from ..money import Amount  # noqa: E402
from ._args import PaidRequestArgs  # noqa: E402
from ._tools import (  # noqa: E402
    PAID_REQUEST_DESCRIPTION,
    PAID_REQUEST_SCHEMA,
    ToolReport,
    paid_mcp_call,
    paid_request_with,
)

if TYPE_CHECKING:
    from .mcp import PaidMcpSession

__all__ = ["mcp_tools", "paid_request_tool"]


def _arguments(text: str) -> dict[str, Any] | ToolReport:
    try:
        value = json.loads(text) if text else {}
    except ValueError:
        return ToolReport("error", "ERROR: the tool arguments are not JSON. Nothing was paid.")
    if not isinstance(value, dict):
        return ToolReport("error", "ERROR: the tool arguments must be an object. Nothing was paid.")
    return value


def paid_request_tool(
    client: Client | AsyncClient,
    *,
    name: str = "paid_http_request",
    description: str = PAID_REQUEST_DESCRIPTION,
) -> FunctionTool:
    """A function tool for HTTP requests that may cost money, paid under the user's client."""
    if not isinstance(client, Client | AsyncClient):
        raise TypeError("paid_request_tool needs an mpp_client.Client or AsyncClient")

    async def invoke(context: RunContextWrapper[Any], text: str) -> ToolReport:
        raw = _arguments(text)
        if isinstance(raw, ToolReport):
            return raw
        try:
            args = PaidRequestArgs.model_validate(raw)
        except ValidationError as exc:
            fields = ", ".join(".".join(str(p) for p in e["loc"]) for e in exc.errors())
            return ToolReport("error", f"ERROR: bad tool arguments ({fields}). Nothing was paid.")
        return await paid_request_with(client, args)

    return FunctionTool(
        name=name,
        description=description,
        params_json_schema=PAID_REQUEST_SCHEMA,
        on_invoke_tool=invoke,
        strict_json_schema=False,
    )


async def mcp_tools(
    session: PaidMcpSession,
    *,
    max_amount: Amount | str | None = None,
    payee: str | None = None,
    purpose: str | None = None,
    tags: Mapping[str, str] | None = None,
) -> list[FunctionTool]:
    """The session's MCP tools as function tools that pay per call (narrowed by these options)."""
    tools: list[FunctionTool] = []
    for listed in await session.tools():

        async def invoke(
            context: RunContextWrapper[Any], text: str, __name: str = listed.name
        ) -> ToolReport:
            raw = _arguments(text)
            if isinstance(raw, ToolReport):
                return raw
            return await paid_mcp_call(
                session,
                __name,
                raw,
                max_amount=max_amount,
                payee=payee,
                purpose=purpose,
                tags=tags,
            )

        tools.append(
            FunctionTool(
                name=listed.name,
                description=listed.description or listed.name,
                params_json_schema=dict(listed.input_schema),
                on_invoke_tool=invoke,
                strict_json_schema=False,
            )
        )
    return tools
