"""A pydantic-ai agent with a paying tool, offline: pydantic-ai's ``FunctionModel``.

The model asks for two paid requests; the agent runs the tool, which pays one
under the owner's policy and answers the other with why nothing was paid.
The model sees the texts; each ``ToolReturn``'s metadata (kept in the run's
messages, never sent to the model) is the report with the ledger record.

    pip install "mpp-client[pydantic-ai,testing]"
    python examples/pydantic_ai_agent.py
"""

from __future__ import annotations

import asyncio

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

import mpp_client
from mpp_client.integrations.pydantic_ai import paid_request_tool
from mpp_client.testing import LocalServer, PaidServer


async def main() -> None:
    with LocalServer(PaidServer({"/weather": "0.25 USD", "/report": "2.00 USD"})) as shop:
        client = mpp_client.AsyncClient(
            methods=[mpp_client.DevWallet()],
            policy=mpp_client.SimplePolicy(max_per_call="0.50 USD", budget="1.00 USD"),
            ledger="memory:",
            allow_insecure_localhost=True,  # the demo server is plain HTTP on loopback
        )

        def llm(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
            if len(messages) == 1:
                return ModelResponse(
                    parts=[
                        ToolCallPart(
                            "paid_http_request", {"url": shop.url + "/weather"}, tool_call_id="1"
                        ),
                        ToolCallPart(
                            "paid_http_request", {"url": shop.url + "/report"}, tool_call_id="2"
                        ),
                    ]
                )
            return ModelResponse(parts=[TextPart("Sunny; the report is too dear.")])

        agent = Agent(FunctionModel(llm), tools=[paid_request_tool(client)])
        result = await agent.run("What is the weather, and the report?")
        for message in result.all_messages():
            if isinstance(message, ModelRequest):
                for part in message.parts:
                    if isinstance(part, ToolReturnPart):
                        report = part.metadata
                        print(f"{report.status.upper():8} {report.text.splitlines()[0]}")
        print("agent:", result.output)


if __name__ == "__main__":
    asyncio.run(main())
