"""A LangChain agent step with a paying tool, offline: langchain-core's fake chat model.

The model asks for two paid requests; the tool pays one under the owner's
policy and answers the other with why nothing was paid. The model reads the
short reports; the program reads the ledger record on ``ToolMessage.artifact``.
With a real chat model, ``model.bind_tools([tool])`` and the same loop.

    pip install "mpp-client[langchain,testing]"
    python examples/langchain_agent.py
"""

from __future__ import annotations

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage

import mpp_client
from mpp_client.integrations.langchain import paid_request_tool
from mpp_client.testing import LocalServer, PaidServer


def main() -> None:
    with LocalServer(PaidServer({"/weather": "0.25 USD", "/report": "2.00 USD"})) as shop:
        client = mpp_client.Client(
            methods=[mpp_client.DevWallet()],
            policy=mpp_client.SimplePolicy(max_per_call="0.50 USD", budget="1.00 USD"),
            ledger="memory:",
            allow_insecure_localhost=True,  # the demo server is plain HTTP on loopback
        )
        tool = paid_request_tool(client)
        ask = AIMessage(
            content="",
            tool_calls=[
                {
                    "name": tool.name,
                    "args": {"url": shop.url + "/weather", "max_amount": "0.30 USD"},
                    "id": "1",
                },
                {"name": tool.name, "args": {"url": shop.url + "/report"}, "id": "2"},
            ],
        )
        model = GenericFakeChatModel(
            messages=iter([ask, AIMessage(content="Sunny; the report is too dear.")])
        )
        messages: list[BaseMessage] = [HumanMessage("What is the weather, and the report?")]
        reply = model.invoke(messages)
        messages.append(reply)
        for call in reply.tool_calls:
            answer = tool.invoke({**call, "type": "tool_call"})
            messages.append(answer)
            record = answer.artifact.record
            print(f"{answer.artifact.status.upper():8} {answer.content.splitlines()[0]}")
            if record is not None:
                print(f"         ledger record {record.id}: {record.status}")
        print("model:", model.invoke(messages).content)


if __name__ == "__main__":
    main()
