"""An AutoGen ``AssistantAgent`` with a paying tool, offline: autogen-ext's replay model.

The replayed model asks for two paid requests; the agent runs the tool, which
pays one under the owner's policy and answers the other with why nothing was
paid, then reflects on the results.

    pip install "mpp-client[autogen,testing]" autogen-ext
    python examples/autogen_agent.py
"""

from __future__ import annotations

import asyncio
import json

from autogen_agentchat.agents import AssistantAgent
from autogen_agentchat.messages import ToolCallExecutionEvent
from autogen_core import FunctionCall
from autogen_core.models import CreateResult, ModelInfo, RequestUsage
from autogen_ext.models.replay import ReplayChatCompletionClient

import mpp_client
from mpp_client.integrations.autogen import paid_request_tool
from mpp_client.testing import LocalServer, PaidServer


async def main() -> None:
    with LocalServer(PaidServer({"/weather": "0.25 USD", "/report": "2.00 USD"})) as shop:
        client = mpp_client.AsyncClient(
            methods=[mpp_client.DevWallet()],
            policy=mpp_client.SimplePolicy(max_per_call="0.50 USD", budget="1.00 USD"),
            ledger="memory:",
            allow_insecure_localhost=True,  # the demo server is plain HTTP on loopback
        )
        calls = [
            FunctionCall(
                id="1",
                name="paid_http_request",
                arguments=json.dumps({"url": shop.url + "/weather"}),
            ),
            FunctionCall(
                id="2",
                name="paid_http_request",
                arguments=json.dumps({"url": shop.url + "/report"}),
            ),
        ]
        model = ReplayChatCompletionClient(
            [
                CreateResult(
                    finish_reason="function_calls",
                    content=calls,
                    usage=RequestUsage(prompt_tokens=0, completion_tokens=0),
                    cached=False,
                ),
                "Sunny; the report is too dear.",
            ],
            model_info=ModelInfo(
                vision=False,
                function_calling=True,
                json_output=False,
                family="unknown",
                structured_output=False,
            ),
        )
        agent = AssistantAgent(
            "buyer", model_client=model, tools=[paid_request_tool(client)], reflect_on_tool_use=True
        )
        result = await agent.run(task="What is the weather, and the report?")
        for message in result.messages:
            if isinstance(message, ToolCallExecutionEvent):
                for answer in message.content:
                    print(answer.content.splitlines()[0])
        print("agent:", result.messages[-1].content)


if __name__ == "__main__":
    asyncio.run(main())
