"""The agentkeep service: OpenAI-compatible Assistants and Conversations APIs over the store.

``create_app()`` builds the ASGI app (FastAPI); ``serve()`` upgrades the
schema and runs it under uvicorn (``agentkeep serve``, or
``python -m agentkeep.server``).
"""

from agentkeep.server.app import create_app
from agentkeep.server.serving import serve

__all__ = ["create_app", "serve"]
