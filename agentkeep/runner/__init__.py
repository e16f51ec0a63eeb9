"""The run engine: a worker that executes Assistants runs against an upstream LLM.

``RunWorker(store, settings)`` is started and stopped by the service
(``await worker.start()`` / ``await worker.stop()``; ``worker.wake()`` when a
run is queued). See :mod:`agentkeep.runner.worker` for the execution and the
events it emits, :mod:`agentkeep.runner.liveness` for crash recovery.
"""

from __future__ import annotations

from agentkeep.runner.upstream import ChatClient, UpstreamError
from agentkeep.runner.worker import RunWorker

__all__ = ["ChatClient", "RunWorker", "UpstreamError"]
