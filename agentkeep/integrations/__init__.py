"""Drop-in persistence for the agent frameworks, each an optional extra.

``agentkeep.track`` (``openai_client``) records the usage of any ``openai``
client; it needs nothing beyond agentkeep. Each other module imports its
framework lazily; importing one without its extra
raises ``ImportError`` naming the extra to install:

- ``agentkeep.integrations.langgraph``: ``AgentkeepSaver``, a LangGraph
  checkpointer, and ``AgentkeepStore``, a LangGraph store for long-term
  memory (``pip install 'agentkeep[langgraph]'``).
- ``agentkeep.integrations.adk``: ``AgentkeepSessionService``, a Google ADK
  session service (``pip install 'agentkeep[adk]'``).
- ``agentkeep.integrations.langchain``: ``AgentkeepChatMessageHistory``, a
  LangChain chat message history (``pip install 'agentkeep[langchain]'``).
- ``agentkeep.integrations.openai_agents``: ``AgentkeepSession``, an OpenAI
  Agents SDK session (``pip install 'agentkeep[openai-agents]'``).
"""
