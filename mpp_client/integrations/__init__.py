"""Pay where agents work: an MCP client and agent-framework tools, one extra each.

Nothing here is imported by ``import mpp_client``, and each module imports
its framework only when used, so a missing extra fails with the
``pip install`` that brings it:

==================================  ===============================  ======================
module                              what                             extra
==================================  ===============================  ======================
``mpp_client.integrations.mcp``     paid MCP tool calls              ``mpp-client[mcp]``
``...integrations.langchain``       LangChain tools                  ``[langchain]``
``...integrations.autogen``         AutoGen function tools           ``[autogen]``
``...integrations.openai_agents``   OpenAI Agents SDK function tools ``[openai-agents]``
``...integrations.pydantic_ai``     pydantic-ai tools and toolset    ``[pydantic-ai]``
==================================  ===============================  ======================

Every tool is built from the user's :class:`~mpp_client.Client` or
:class:`~mpp_client.AsyncClient`, so the policy, mandate, ledger and approver
are theirs; see ``docs/integrations.md``.
"""

from ._tools import ToolReport, budget_left

__all__ = ["ToolReport", "budget_left"]
