"""Rate limits: what one request counted against its key's window."""

from __future__ import annotations

import math
from datetime import datetime

from agentkeep.models.common import Model

__all__ = ["RateLimitHit"]


class RateLimitHit(Model):
    """One request counted in a fixed window of ``window_ms`` for ``key``.

    ``count`` includes this request; it is ``allowed`` while ``count <= limit``.
    """

    key: str
    limit: int
    window_ms: int
    count: int
    window_start: datetime
    reset_at: datetime
    now: datetime

    @property
    def allowed(self) -> bool:
        return self.count <= self.limit

    @property
    def remaining(self) -> int:
        return max(0, self.limit - self.count)

    @property
    def reset_seconds(self) -> float:
        """Seconds until the window ends (and the count starts again)."""
        return max(0.0, (self.reset_at - self.now).total_seconds())

    @property
    def retry_after(self) -> int:
        """Whole seconds to wait before a refused request may be sent again (at least 1)."""
        return max(1, math.ceil(self.reset_seconds))
