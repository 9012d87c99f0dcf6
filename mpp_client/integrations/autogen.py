"""AutoGen tools that pay: ``pip install "mpp-client[autogen]"``.

:func:`paid_request_tool` is an ``autogen_core`` tool making HTTP requests
through the user's :class:`~mpp_client.AsyncClient` (or a
:class:`~mpp_client.Client`, run in a worker thread); :func:`mcp_tools` turns
the tools of a :class:`~mpp_client.integrations.mcp.PaidMcpSession` into
AutoGen tools that pay the same way. Use them with an ``AssistantAgent``::

    agent = AssistantAgent("buyer", model_client, tools=[paid_request_tool(client)])

A tool returns a :class:`PaidToolAnswer`; the model reads its text (what was
paid and what remains of the budget, or why nothing was paid). AutoGen passes
only that text on (its tool results carry no metadata): the records are in
the user's ledger. Refusals and failures never raise through the agent loop.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ._extras import require

require("autogen_core", "autogen", "mpp_client.integrations.autogen")

from autogen_core import CancellationToken  # noqa: E402
from autogen_core.tools import BaseTool, ToolSchema  # noqa: E402
from pydantic import BaseModel, ConfigDict  # noqa: E402

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

__all__ = ["mcp_tools", "paid_request_tool"]


class PaidToolAnswer(BaseModel):
    """What an AutoGen paid tool returns: the model reads ``text``; the rest is for code."""

    model_config = ConfigDict(frozen=True)

    text: str
    status: str
    paid: bool
    summary: dict[str, Any]

    @classmethod
    def of(cls, report: ToolReport) -> PaidToolAnswer:
        return cls(
            text=report.text, status=report.status, paid=report.paid, summary=report.to_dict()
        )


class _PaidTool(BaseTool[Any, PaidToolAnswer]):
    def return_value_as_string(self, value: Any) -> str:
        return value.text if isinstance(value, PaidToolAnswer) else str(value)


class PaidRequestTool(_PaidTool):
    """An HTTP request that may cost money, paid under the user's client."""

    def __init__(self, client: Client | AsyncClient, *, name: str, description: str) -> None:
        super().__init__(PaidRequestArgs, PaidToolAnswer, name, description)
        self._client = client

    async def run(self, args: Any, cancellation_token: CancellationToken) -> PaidToolAnswer:
        return PaidToolAnswer.of(await paid_request_with(self._client, args))


def paid_request_tool(
    client: Client | AsyncClient,
    *,
    name: str = "paid_http_request",
    description: str = PAID_REQUEST_DESCRIPTION,
) -> PaidRequestTool:
    """A tool for HTTP requests that may cost money, paid under the user's client."""
    if not isinstance(client, Client | AsyncClient):
        raise TypeError("paid_request_tool needs an mpp_client.Client or AsyncClient")
    return PaidRequestTool(client, name=name, description=description)


class _AnyArgs(BaseModel):
    """An MCP tool's arguments, passed through as given (the server validates them)."""

    model_config = ConfigDict(extra="allow")


class PaidMcpTool(_PaidTool):
    """One MCP tool of a :class:`PaidMcpSession`, advertised with the server's schema."""

    def __init__(
        self,
        session: PaidMcpSession,
        name: str,
        description: str,
        input_schema: Mapping[str, Any],
        options: Mapping[str, Any],
    ) -> None:
        super().__init__(_AnyArgs, PaidToolAnswer, name, description)
        self._session = session
        self._input_schema = dict(input_schema)
        self._options = dict(options)

    @property
    def schema(self) -> ToolSchema:
        schema = self._input_schema
        return ToolSchema(
            name=self.name,
            description=self.description,
            parameters={
                "type": "object",
                "properties": dict(schema.get("properties", {})),
                "required": list(schema.get("required", [])),
            },
        )

    async def run(self, args: Any, cancellation_token: CancellationToken) -> PaidToolAnswer:
        report = await paid_mcp_call(
            self._session, self.name, dict(args.model_extra or {}), **self._options
        )
        return PaidToolAnswer.of(report)


async def mcp_tools(
    session: PaidMcpSession,
    *,
    max_amount: Amount | str | None = None,
    payee: str | None = None,
    purpose: str | None = None,
    tags: Mapping[str, str] | None = None,
) -> list[PaidMcpTool]:
    """The session's MCP tools as AutoGen tools that pay per call (narrowed by these options)."""
    options = {"max_amount": max_amount, "payee": payee, "purpose": purpose, "tags": tags}
    return [
        PaidMcpTool(session, t.name, t.description or t.name, t.input_schema, options)
        for t in await session.tools()
    ]
