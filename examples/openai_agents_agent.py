"""An OpenAI Agents SDK agent with a paying tool, offline: a scripted model.

The SDK ships no fake model, so a ten-line ``Model`` plays the LLM: it asks
for two paid requests, then answers. The runner executes the tool, which pays
one under the owner's policy and answers the other with why nothing was paid;
each ``ToolCallOutputItem.output`` is the report with the ledger record.

    pip install "mpp-client[openai-agents,testing]"
    python examples/openai_agents_agent.py
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from agents import Agent, ModelResponse, Runner, ToolCallOutputItem, Usage, set_tracing_disabled
from agents.models.interface import Model
from openai.types.responses import (
    ResponseFunctionToolCall,
    ResponseOutputMessage,
    ResponseOutputText,
)

import mpp_client
from mpp_client.integrations.openai_agents import paid_request_tool
from mpp_client.testing import LocalServer, PaidServer


class ScriptedModel(Model):
    def __init__(self, *urls: str) -> None:
        self.urls = urls
        self.turn = 0

    async def get_response(self, *args: Any, **kwargs: Any) -> ModelResponse:
        self.turn += 1
        if self.turn == 1:
            output: list[Any] = [
                ResponseFunctionToolCall(
                    type="function_call",
                    call_id=str(i),
                    name="paid_http_request",
                    arguments=json.dumps({"url": url}),
                )
                for i, url in enumerate(self.urls)
            ]
        else:
            text = ResponseOutputText(
                type="output_text", text="Sunny; the report is too dear.", annotations=[]
            )
            output = [
                ResponseOutputMessage(
                    id="m", type="message", role="assistant", status="completed", content=[text]
                )
            ]
        return ModelResponse(output=output, usage=Usage(), response_id=None)

    def stream_response(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError


async def main() -> None:
    set_tracing_disabled(True)  # offline: no traces to export
    with LocalServer(PaidServer({"/weather": "0.25 USD", "/report": "2.00 USD"})) as shop:
        client = mpp_client.AsyncClient(
            methods=[mpp_client.DevWallet()],
            policy=mpp_client.SimplePolicy(max_per_call="0.50 USD", budget="1.00 USD"),
            ledger="memory:",
            allow_insecure_localhost=True,  # the demo server is plain HTTP on loopback
        )
        model = ScriptedModel(shop.url + "/weather", shop.url + "/report")
        agent = Agent(name="buyer", model=model, tools=[paid_request_tool(client)])
        result = await Runner.run(agent, "What is the weather, and the report?")
        for item in result.new_items:
            if isinstance(item, ToolCallOutputItem):
                report = item.output
                print(f"{report.status.upper():8} {report.text.splitlines()[0]}")
        print("agent:", result.final_output)


if __name__ == "__main__":
    asyncio.run(main())
