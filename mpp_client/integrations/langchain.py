"""LangChain tools that pay: ``pip install "mpp-client[langchain]"``.

:func:`paid_request_tool` is a structured tool (sync and async) making HTTP
requests through the user's :class:`~mpp_client.Client` /
:class:`~mpp_client.AsyncClient`; :func:`mcp_tools` turns the tools of a
:class:`~mpp_client.integrations.mcp.PaidMcpSession` into LangChain tools that
pay the same way. Each answers with ``response_format="content_and_artifact"``:
the model reads the short report (what was paid and what remains of the
budget, or why nothing was paid), and the ``ToolMessage.artifact`` carries the
:class:`~mpp_client.integrations.ToolReport` with the ledger record. Refusals
and failures never raise through the agent loop::

    tool = paid_request_tool(mpp_client.Client(methods=[wallet], policy=policy))
    model.bind_tools([tool])
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ._extras import require

require("langchain_core", "langchain", "mpp_client.integrations.langchain")

from langchain_core.tools import BaseTool, StructuredTool  # noqa: E402

from ..client import AsyncClient, Client  # noqa: E402
from ..money import Amount  # noqa: E402
from ._tools import (  # noqa: E402
    PAID_REQUEST_DESCRIPTION,
    PAID_REQUEST_SCHEMA,
    ToolReport,
    paid_mcp_call,
    paid_request,
    paid_request_async,
)

if TYPE_CHECKING:
    from .mcp import PaidMcpSession

__all__ = ["mcp_tools", "paid_request_tool"]


def paid_request_tool(
    client: Client | None = None,
    async_client: AsyncClient | None = None,
    *,
    name: str = "paid_http_request",
    description: str = PAID_REQUEST_DESCRIPTION,
) -> BaseTool:
    """A tool for HTTP requests that may cost money, paid under the user's client.

    Give a :class:`~mpp_client.Client` for ``invoke``, an
    :class:`~mpp_client.AsyncClient` for ``ainvoke``, or both (they should
    share one ledger, so one budget holds).
    """
    if client is None and async_client is None:
        raise TypeError("paid_request_tool needs a Client, an AsyncClient, or both")

    def run(
        url: str,
        *,
        method: str = "GET",
        body: str | None = None,
        max_amount: str | None = None,
        payee: str | None = None,
        purpose: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> tuple[str, ToolReport]:
        if client is None:
            raise NotImplementedError("this tool was built with an AsyncClient: use ainvoke")
        report = paid_request(
            client,
            url,
            method,
            body,
            max_amount=max_amount,
            payee=payee,
            purpose=purpose,
            tags=tags,
        )
        return report.text, report

    async def arun(
        url: str,
        *,
        method: str = "GET",
        body: str | None = None,
        max_amount: str | None = None,
        payee: str | None = None,
        purpose: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> tuple[str, ToolReport]:
        if async_client is None:
            raise NotImplementedError("this tool was built with a Client: use invoke")
        report = await paid_request_async(
            async_client,
            url,
            method,
            body,
            max_amount=max_amount,
            payee=payee,
            purpose=purpose,
            tags=tags,
        )
        return report.text, report

    return StructuredTool(
        name=name,
        description=description,
        args_schema=PAID_REQUEST_SCHEMA,
        func=run if client is not None else None,
        coroutine=arun if async_client is not None else None,
        response_format="content_and_artifact",
    )


async def mcp_tools(
    session: PaidMcpSession,
    *,
    max_amount: Amount | str | None = None,
    payee: str | None = None,
    purpose: str | None = None,
    tags: Mapping[str, str] | None = None,
) -> list[BaseTool]:
    """The session's MCP tools as async LangChain tools that pay per call.

    ``max_amount``, ``payee``, ``purpose`` and ``tags`` narrow every call
    (the policy still decides); the model's arguments go to the tool as they are.
    """
    tools: list[BaseTool] = []
    for listed in await session.tools():

        async def arun(__name: str = listed.name, **arguments: Any) -> tuple[str, ToolReport]:
            report = await paid_mcp_call(
                session,
                __name,
                arguments,
                max_amount=max_amount,
                payee=payee,
                purpose=purpose,
                tags=tags,
            )
            return report.text, report

        tools.append(
            StructuredTool(
                name=listed.name,
                description=listed.description or listed.name,
                args_schema=dict(listed.input_schema),
                coroutine=arun,
                response_format="content_and_artifact",
            )
        )
    return tools
