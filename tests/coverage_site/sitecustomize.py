"""``make coverage`` only (it puts this directory on PYTHONPATH): a crash that keeps its data.

A process that coverage.py measures writes its data when it exits; a SIGKILL
leaves none. The crash tests kill with ``_multiproc.kill9``, which under
coverage sends SIGUSR2 first: this handler saves the data, then the process
SIGKILLs itself. It dies by SIGKILL as before (no shutdown, no flush of
agentkeep's), at a bytecode boundary of its main thread instead of anywhere.
"""

from __future__ import annotations

import os
import signal
from types import FrameType


def _save_then_die(signum: int, frame: FrameType | None) -> None:
    try:
        import coverage

        current = coverage.Coverage.current()
        if current is not None:
            current.stop()
            current.save()
    finally:
        os.kill(os.getpid(), signal.SIGKILL)


if os.environ.get("COVERAGE_PROCESS_CONFIG") or os.environ.get("COVERAGE_PROCESS_START"):
    signal.signal(signal.SIGUSR2, _save_then_die)
