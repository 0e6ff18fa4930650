"""Plots of benchmark reports (PNG, matplotlib's Agg backend: no display needed)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

VARIANTS = ("pipeline", "floor", "naive")
COLORS = {"pipeline": "#2a7ab0", "floor": "#7a7a7a", "naive": "#c8553d"}


def throughput_bars(report: dict, path: str, title: str) -> str:
    """Messages per second of each variant, grouped by mix, peak RSS written on each bar."""
    mixes = list(report["mixes"])
    figure, axes = plt.subplots(figsize=(7, 4), dpi=110)
    width = 0.8 / len(VARIANTS)
    for index, variant in enumerate(VARIANTS):
        xs = [m + (index - 1) * width for m in range(len(mixes))]
        values = [report["mixes"][mix][variant]["messages_per_second"] for mix in mixes]
        bars = axes.bar(xs, values, width, label=variant, color=COLORS[variant])
        for bar, mix in zip(bars, mixes):
            rss = report["mixes"][mix][variant]["peak_rss_mb"]
            axes.annotate(f"{bar.get_height():,.0f}/s\n{rss:,.0f} MB", (bar.get_x() + bar.get_width() / 2,
                          bar.get_height()), ha="center", va="bottom", fontsize=7)
    axes.set_xticks(range(len(mixes)), [f"{mix} ({report['mixes'][mix]['pipeline']['messages']:,} msgs)"
                                        for mix in mixes])
    axes.set_ylabel("messages per second")
    axes.set_title(title, fontsize=10)
    axes.legend(frameon=False)
    axes.spines[["top", "right"]].set_visible(False)
    axes.margins(y=0.2)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path
