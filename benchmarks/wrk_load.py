"""One throughput phase driven by ``wrk`` (C, event-driven) instead of Python clients.

``benchmarks.service``'s own asyncio + httpx generator spends several
milliseconds of CPU per request: on a two-core machine it used a whole core
and became the limit, so both servers were measured at the speed of the
client (the faster server the more so). ``wrk`` costs tens of microseconds a
request. One wrk thread holds ``clients`` keep-alive connections; a Lua
script sends the phase's request, cycling through its paths (the clients'
own threads, or the one shared thread), and counts every status.
"""

from __future__ import annotations

import json
import resource
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["available", "wrk_phase"]

_SCRIPT = """
local paths = {%(paths)s}
local method, body = %(method)s, %(body)s
local headers = {["Authorization"] = %(auth)s, ["Content-Type"] = "application/json"}
local n = 0
-- Globals of each thread's Lua state, read back by done() in the main one.
statuses = {}
sample = nil
local threads = {}
setup = function(thread) threads[#threads + 1] = thread end
request = function()
  n = n + 1
  return wrk.format(method, paths[(n %% #paths) + 1], headers, body)
end
response = function(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
  if status >= 300 and sample == nil then sample = status .. ": " .. string.sub(body, 1, 200) end
end
done = function(summary, latency, requests)
  local total, first = {}, nil
  for _, thread in ipairs(threads) do
    for status, count in pairs(thread:get("statuses")) do
      total[status] = (total[status] or 0) + count
    end
    first = first or thread:get("sample")
  end
  local parts = {}
  for status, count in pairs(total) do parts[#parts + 1] = '"' .. status .. '":' .. count end
  io.write("STATUSES {" .. table.concat(parts, ",") .. "}\\n")
  io.write(string.format("LATENCY %%d %%d %%d\\n", latency:percentile(50), latency:percentile(99), latency.max))
  io.write(string.format("SUMMARY %%d %%d %%d %%d %%d %%d %%d\\n", summary.requests, summary.duration,
    summary.errors.connect, summary.errors.read, summary.errors.write, summary.errors.status,
    summary.errors.timeout))
  if first then io.write("SAMPLE " .. first .. "\\n") end
end
"""


def available() -> bool:
    return shutil.which("wrk") is not None


def _lua(value: str | None) -> str:
    return "nil" if value is None else json.dumps(value)  # a JSON string is a Lua string here


def _run(base: str, script: Path, clients: int, seconds: float) -> tuple[str, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    command = ["wrk", "-t1", f"-c{clients}", f"-d{max(1, round(seconds))}s", "--timeout", "60s"]
    done = subprocess.run(
        [*command, "-s", str(script), base],
        capture_output=True,
        text=True,
        check=True,
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return done.stdout, cpu


def wrk_phase(
    base: str,
    name: str,
    paths: Sequence[str],
    method: str,
    body: dict[str, Any] | None,
    *,
    api_key: str,
    clients: int,
    seconds: float,
    warmup: float,
) -> dict[str, Any]:
    """The phase's figures, with the keys of ``benchmarks.service._phase``'s."""
    text = _SCRIPT % {
        "paths": ", ".join(json.dumps(p) for p in paths),
        "method": json.dumps(method),
        "body": _lua(json.dumps(body) if body is not None else None),
        "auth": json.dumps(f"Bearer {api_key}"),
    }
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "phase.lua"
        script.write_text(text)
        if warmup > 0:
            _run(base, script, clients, warmup)
        out, cpu = _run(base, script, clients, seconds)
    lines = {
        line.split(" ", 1)[0]: line.split(" ", 1)[1] for line in out.splitlines() if " " in line
    }
    statuses = {str(k): int(v) for k, v in json.loads(lines["STATUSES"]).items()}
    p50_us, p99_us, max_us = (int(v) for v in lines["LATENCY"].split())
    requests, duration_us, *errors = (int(v) for v in lines["SUMMARY"].split())
    elapsed = duration_us / 1e6
    ok = sum(n for s, n in statuses.items() if 200 <= int(s) < 300)
    failed = sum(errors[:3]) + errors[4]  # connect, read, write, timeout (status is counted)
    if failed:
        statuses["socket errors"] = failed
    samples = [lines["SAMPLE"]] if "SAMPLE" in lines else []
    return {
        "phase": name,
        "requests": requests,
        "ok": ok,
        "seconds": elapsed,
        "rps": ok / elapsed,
        "p50_ms": p50_us / 1000,
        "p99_ms": p99_us / 1000,
        "max_ms": max_us / 1000,
        "non_2xx": requests - ok + failed,
        "server_errors": sum(n for s, n in statuses.items() if s.startswith("5")),
        "statuses": statuses,
        "error_samples": samples,
        "client_cpu": cpu / elapsed,
    }
