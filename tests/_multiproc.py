"""Start several Python processes that do their work at the same instant.

Each child runs ``code`` (which defines ``work(arg)`` and does its imports at
top level), signals that it is ready, waits for a shared "go" file, then calls
``work(arg)`` and prints its JSON result. The parent releases every child at
once, so they race as hard as they can, and fails with the child's traceback
if any child fails.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["kill9", "run_together", "spawn_child"]

_CHILD = """
import json, os, sys, time
{code}
_arg = json.loads(sys.argv[1])
open(sys.argv[2], "w").close()
while not os.path.exists(sys.argv[3]):
    time.sleep(0.0005)
_result = work(_arg)
sys.stdout.write("\\nRESULT " + json.dumps(_result) + "\\n")
sys.stdout.flush()
"""


def _measured() -> bool:
    """Whether coverage.py measures the processes this one starts with the SIGUSR2 hook."""
    measured = "COVERAGE_PROCESS_CONFIG" in os.environ or "COVERAGE_PROCESS_START" in os.environ
    hook = str(Path(__file__).parent / "coverage_site")
    return measured and hook in os.environ.get("PYTHONPATH", "").split(os.pathsep)


def kill9(proc: subprocess.Popen[Any]) -> None:
    """SIGKILL ``proc``: a crash, nothing of its own shutdown runs; it is not waited for.

    Under ``make coverage`` it first asks the process (SIGUSR2, handled by
    ``tests/coverage_site/sitecustomize.py``) to save its coverage data and
    SIGKILL itself, and SIGKILLs it after 10 s if it has not; either way the
    process dies by SIGKILL.
    """
    if proc.poll() is not None:
        return
    if _measured():
        proc.send_signal(signal.SIGUSR2)
        try:
            proc.wait(10)
            return
        except subprocess.TimeoutExpired:
            pass
    proc.send_signal(signal.SIGKILL)


def spawn_child(code: str, *args: str, **popen: Any) -> subprocess.Popen[str]:
    """A Python child running ``code`` with ``args`` in ``sys.argv[1:]``."""
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        **popen,
    )


def run_together(code: str, args: list[Any], workdir: Path, *, timeout: float = 240) -> list[Any]:
    """Run ``work(arg)`` for each arg in its own process, all released at the same moment."""
    workdir.mkdir(parents=True, exist_ok=True)
    go = workdir / f"go-{os.getpid()}-{time.monotonic_ns()}"
    script = _CHILD.format(code=code)
    children = []
    for i, arg in enumerate(args):
        ready = workdir / f"{go.name}-ready-{i}"
        children.append((ready, spawn_child(script, json.dumps(arg), str(ready), str(go))))
    deadline = time.monotonic() + timeout
    try:
        while not all(ready.exists() for ready, _ in children):
            for _, proc in children:
                if proc.poll() is not None:
                    _, stderr = proc.communicate()
                    raise AssertionError(f"a child died before the start:\n{stderr}")
            if time.monotonic() > deadline:
                raise AssertionError("children did not get ready in time")
            time.sleep(0.005)
        go.touch()
        results = []
        for _, proc in children:
            stdout, stderr = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
            if proc.returncode != 0:
                raise AssertionError(f"a child failed (exit {proc.returncode}):\n{stderr}")
            line = [ln for ln in stdout.splitlines() if ln.startswith("RESULT ")][-1]
            results.append(json.loads(line[len("RESULT ") :]))
        return results
    finally:
        for _, proc in children:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
