"""Bar charts drawn on the server as SVG: tokens by kind per group, cost beside each bar.

No chart library and no script: the numbers come from ``store.usage.rollup``
and each bar is a ``<rect>`` whose ``data-*`` attributes carry its exact values.
"""

from __future__ import annotations

from dataclasses import dataclass

from agentkeep.models import UsageRollup

__all__ = ["KINDS", "ChartRow", "chart_rows"]

# Token kinds as stacked segments: input splits into uncached and cached,
# output into visible and reasoning (OpenAI counts the second inside the first).
KINDS = ("input", "cached", "output", "reasoning")
LABEL_W = 150
BAR_W = 360
ROW_H = 20


@dataclass(frozen=True)
class Segment:
    kind: str
    tokens: int
    x: float
    width: float


@dataclass(frozen=True)
class ChartRow:
    label: str
    y: int
    segments: list[Segment]
    total: int
    rollup: UsageRollup


def _split(r: UsageRollup) -> dict[str, int]:
    return {
        "input": max(r.input_tokens - r.cached_tokens, 0),
        "cached": r.cached_tokens,
        "output": max(r.output_tokens - r.reasoning_tokens, 0),
        "reasoning": r.reasoning_tokens,
    }


def chart_rows(rollups: list[UsageRollup], none_label: str = "(none)") -> list[ChartRow]:
    """One stacked bar per group, scaled to the largest group's tokens."""
    largest = max((r.input_tokens + r.output_tokens for r in rollups), default=0) or 1
    rows = []
    for i, r in enumerate(rollups):
        x = float(LABEL_W)
        segments = []
        for kind, tokens in _split(r).items():
            width = tokens / largest * BAR_W
            segments.append(Segment(kind, tokens, round(x, 2), round(width, 2)))
            x += width
        rows.append(
            ChartRow(
                label=r.key if r.key is not None else none_label,
                y=i * ROW_H,
                segments=segments,
                total=r.input_tokens + r.output_tokens,
                rollup=r,
            )
        )
    return rows
