"""The benchmark's picture: one panel per scenario, the requests the server answered in each
second (server-side times) against ChartMogul's 40/s ceiling, 429s and 503s marked."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from _harness import CEILING_PER_SECOND

COLOURS = ("#3b7dd8", "#8fb3e8", "#5fa55a", "#b0b0b0")
PUSHBACK = {"429": ("#d62728", "429 (rate limit)"), "503": ("#ff9f1c", "503")}


def write_picture(panels: Sequence[dict[str, Any]], path: Path, subtitle: str) -> bool:
    """Draw ``panels`` into a PNG at ``path``; False when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    columns = 2 if len(panels) > 1 else 1
    rows = math.ceil(len(panels) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(7.5 * columns, 3.0 * rows), squeeze=False)
    for ax, data in zip(axes.flat, panels, strict=False):
        _draw(ax, data)
    for ax in list(axes.flat)[len(panels) :]:
        ax.set_visible(False)
    figure.suptitle(f"Requests answered per second (server time)\n{subtitle}", fontsize=11)
    figure.tight_layout(rect=(0, 0, 1, 0.95))
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return True


def _draw(ax: Any, data: dict[str, Any]) -> None:
    seconds = int(data.get("seconds") or 0)
    ax.set_title(data["title"], fontsize=10)
    ax.set_xlabel("seconds since the first request", fontsize=8)
    ax.set_ylabel("requests / s", fontsize=8)
    ax.tick_params(labelsize=8)
    ax.axhline(CEILING_PER_SECOND, color="black", linestyle="--", linewidth=1, label="40/s ceiling")
    if seconds == 0:
        ax.set_ylim(0, CEILING_PER_SECOND * 1.35)
        ax.set_xlim(0, 60)
        ax.text(30, CEILING_PER_SECOND / 2, data.get("note") or "no requests", ha="center", fontsize=9)
        return
    x = list(range(seconds))
    bottom = [0] * seconds
    for index, (name, counts) in enumerate(data["series"].items()):
        ax.bar(x, counts, width=1.0, align="edge", bottom=bottom, color=COLOURS[index % 4], label=name)
        bottom = [b + c for b, c in zip(bottom, counts, strict=True)]
    for kind, (colour, label) in PUSHBACK.items():
        counts = data.get(kind) or [0] * seconds
        if any(counts):
            ax.bar(x, counts, width=1.0, align="edge", bottom=bottom, color=colour, label=label)
            bottom = [b + c for b, c in zip(bottom, counts, strict=True)]
            marked = [s + 0.5 for s, c in enumerate(counts) if c]
            ax.plot(marked, [CEILING_PER_SECOND * 1.28] * len(marked), "v", color=colour, markersize=4)
    top = max(CEILING_PER_SECOND * 1.35, max(bottom, default=0) * 1.1)
    ax.set_ylim(0, top)
    for line in ax.lines[1:]:
        line.set_ydata([top * 0.95] * len(line.get_xdata()))
    for start, end, label in data.get("spans") or []:
        ax.axvspan(start, max(end, start + 0.3), color="#9467bd", alpha=0.25, label=label)
    ax.set_xlim(0, max([seconds, *(end for _, end, _ in data.get("spans") or [])]))
    if data.get("note"):
        ax.text(0.99, 0.97, data["note"], transform=ax.transAxes, ha="right", va="top", fontsize=8)
    ax.legend(fontsize=7, loc="lower right", ncol=2, framealpha=0.8)
