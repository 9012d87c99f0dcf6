"""pydantic-ai tools that pay: ``pip install "mpp-client[pydantic-ai]"``.

:func:`paid_request_tool` is a pydantic-ai ``Tool`` making HTTP requests
through the user's :class:`~mpp_client.AsyncClient` (or a
:class:`~mpp_client.Client`, run in a worker thread); :func:`mcp_toolset`
turns the tools of a :class:`~mpp_client.integrations.mcp.PaidMcpSession` into
a ``FunctionToolset`` whose tools pay the same way::

    agent = Agent(model, tools=[paid_request_tool(client)])

Each tool returns a ``ToolReturn``: the model reads the report's text (what
was paid and what remains of the budget, or why nothing was paid), and its
``metadata`` (not sent to the model, kept in the run's messages) is the
:class:`~mpp_client.integrations.ToolReport` with the ledger record. Refusals
and failures never raise through the agent loop.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

from ._extras import require

require("pydantic_ai", "pydantic-ai", "mpp_client.integrations.pydantic_ai")

from pydantic_ai import FunctionToolset, Tool, ToolReturn  # noqa: E402

from ..client import AsyncClient, Client  # noqa: E402
from ..money import Amount  # noqa: E402
from ._args import PaidRequestArgs  # noqa: E402
from ._tools import (  # noqa: E402
    PAID_REQUEST_DESCRIPTION,
    ToolReport,
    paid_mcp_call,
    paid_request_with,
)

if TYPE_CHECKING:
    from .mcp import PaidMcpSession

__all__ = ["mcp_toolset", "paid_request_tool"]


def _returned(report: ToolReport) -> ToolReturn:
    return ToolReturn(return_value=report.text, metadata=report)


def paid_request_tool(
    client: Client | AsyncClient,
    *,
    name: str = "paid_http_request",
    description: str = PAID_REQUEST_DESCRIPTION,
) -> Tool[Any]:
    """A tool for HTTP requests that may cost money, paid under the user's client."""
    if not isinstance(client, Client | AsyncClient):
        raise TypeError("paid_request_tool needs an mpp_client.Client or AsyncClient")

    async def paid_http_request(
        url: str,
        *,
        method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "GET",
        body: str | None = None,
        max_amount: str | None = None,
        payee: str | None = None,
        purpose: str | None = None,
        tags: dict[str, str] | None = None,
    ) -> ToolReturn:
        """Make an HTTP request that may cost money, paid within the owner's policy.

        Args:
            url: The URL to request (https).
            method: HTTP method.
            body: Request body (JSON text), if any.
            max_amount: Refuse to pay more than this for this call, e.g. '0.50 USD'.
            payee: Refuse to pay anyone but this payee.
            purpose: Why this is paid (recorded).
            tags: Labels recorded with the payment.
        """
        args = PaidRequestArgs(
            url=url,
            method=method,
            body=body,
            max_amount=max_amount,
            payee=payee,
            purpose=purpose,
            tags=tags,
        )
        return _returned(await paid_request_with(client, args))

    return Tool(paid_http_request, name=name, description=description, takes_ctx=False)


async def mcp_toolset(
    session: PaidMcpSession,
    *,
    max_amount: Amount | str | None = None,
    payee: str | None = None,
    purpose: str | None = None,
    tags: Mapping[str, str] | None = None,
) -> FunctionToolset[Any]:
    """The session's MCP tools as a toolset whose tools pay per call (narrowed by these options)."""
    tools: list[Tool[Any]] = []
    for listed in await session.tools():

        async def call(__name: str = listed.name, **arguments: Any) -> ToolReturn:
            report = await paid_mcp_call(
                session,
                __name,
                arguments,
                max_amount=max_amount,
                payee=payee,
                purpose=purpose,
                tags=tags,
            )
            return _returned(report)

        tools.append(
            Tool.from_schema(
                call,
                name=listed.name,
                description=listed.description or listed.name,
                json_schema=dict(listed.input_schema),
            )
        )
    return FunctionToolset(tools)
