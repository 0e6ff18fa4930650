"""Plots of benchmark reports (PNG, matplotlib's Agg backend: no display needed)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

VARIANTS = ("pipeline", "floor", "two_floors", "naive")
COLORS = {"pipeline": "#2a7ab0", "floor": "#7a7a7a", "two_floors": "#b5b5b5", "naive": "#c8553d",
          "pipeline_fsspec": "#8cb8d8", "floor_aiobotocore": "#b5b5b5", "prism": "#8cb8d8"}
LABELS = {"a": {"floor": "floor (1 process)", "two_floors": "two floors side by side"},
          "b": {"floor": "raw PUT loop (obstore)", "pipeline_fsspec": "pipeline, fsspec path",
                "floor_aiobotocore": "raw PUT loop (aiobotocore)"}}


def plot(report: dict, path: str) -> str:
    if report["scenario"] == "c":
        return latency_panels(report, path)
    if report["scenario"] == "d":
        return retrieval_bars(report, path)
    if report["scenario"] == "e":
        return cost_bars(report, path)
    return throughput_bars(report, path)


def cost_bars(report: dict, path: str) -> str:
    """PUTs and request dollars per million messages in each mode (log scale), and throughput."""
    modes = report["modes"]
    figure, (puts, rates) = plt.subplots(1, 2, figsize=(10, 4), dpi=110)
    names = ("message", "batched")
    values = [modes[n]["puts_per_million_messages"] for n in names]
    puts.bar(range(2), values, color=["#c8553d", "#2a7ab0"])
    puts.set_yscale("log")
    for x, name in enumerate(names):
        dollars = modes[name]["dollars_per_million_messages"]["STANDARD"]["requests"]
        puts.annotate(f"{values[x]:,} PUTs\n${dollars:,.4f}", (x, values[x]), ha="center", va="bottom", fontsize=8)
    puts.set_xticks(range(2), ["one object per message", "batched objects"], fontsize=8)
    puts.set_ylabel("PUT requests per million messages (log)", fontsize=8)
    labels = ("message", "batched", "floor", "prepare_ceiling")
    shown = ("one per message", "batched", "raw PUT loop", "prepare-only ceiling")
    values = [modes[n]["messages_per_second"] for n in labels]
    rates.bar(range(4), values, color=["#c8553d", "#2a7ab0", "#7a7a7a", "#b5b5b5"])
    rates.set_yscale("log")
    for x, value in enumerate(values):
        rates.annotate(f"{value:,.0f}/s", (x, value), ha="center", va="bottom", fontsize=8)
    rates.set_xticks(range(4), shown, fontsize=8)
    rates.set_ylabel(f"messages per second, end to end (log; {report['settings']['messages']:,} messages)",
                     fontsize=8)
    return _save(figure, (puts, rates), report, path, margin=0.25)


def retrieval_bars(report: dict, path: str) -> str:
    """Objects per second of verify, the raw GET loop and rebuild; find's time beside."""
    store, find = report["store"], report["find"]
    figure, (rates, seconds) = plt.subplots(1, 2, figsize=(10, 4), dpi=110, gridspec_kw={"width_ratios": [3, 1]})
    names = ("verify", "raw_get_loop", "index_rebuild")
    labels = ("message-archiver verify", "raw GET loop (obstore)", "message-archiver index rebuild")
    values = [store[name]["objects_per_second"] for name in names]
    rates.bar(range(3), values, color=["#2a7ab0", "#7a7a7a", "#8cb8d8"])
    for x, value in enumerate(values):
        rates.annotate(f"{value:,.0f}/s", (x, value), ha="center", va="bottom", fontsize=8)
    rates.set_xticks(range(3), labels, fontsize=8)
    rates.set_ylabel(f"objects per second ({report['settings']['objects']:,} objects, "
                     f"{report['settings']['latency_ms']} ms away)", fontsize=8)
    seconds.bar([0, 1], [find["cli_seconds"], find["query_seconds_warm"]], color=["#2a7ab0", "#8cb8d8"])
    seconds.axhline(1.0, color="#c8553d", linestyle="--", linewidth=1)
    seconds.set_xticks([0, 1], ["find (CLI)", "query (warm)"], fontsize=8)
    seconds.set_ylabel(f"seconds, one person among {find['rows']:,}", fontsize=8)
    return _save(figure, (rates, seconds), report, path, margin=0.2)


def _save(figure, axes, report: dict, path: str, margin: float) -> str:
    """Bare axes, the scenario's title, and the PNG written."""
    for ax in axes:
        ax.spines[["top", "right"]].set_visible(False)
        ax.margins(y=margin)
    figure.suptitle(_title(report), fontsize=9)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path


def _title(report: dict) -> str:
    machine = report["machine"]
    return f"Scenario {report['scenario']}: {report['title']}\n({machine['cpus']} cores, {machine['memory_gb']} GB)"


def throughput_bars(report: dict, path: str) -> str:
    """Per mix and variant: the steady rate (solid) beside the end-to-end rate
    (hatched), peak RSS written over each pair. Log scale when the naive
    pipeline is far below the others."""
    mixes = list(report["mixes"])
    labels = LABELS.get(report["scenario"], {})
    variants = [v for v in VARIANTS if v in report["mixes"][mixes[0]]]
    figure, axes = plt.subplots(figsize=(9, 4.4), dpi=110)
    width = 0.84 / len(variants)
    spread = []
    for index, variant in enumerate(variants):
        for m, mix in enumerate(mixes):
            result = report["mixes"][mix][variant]
            x = m + (index - (len(variants) - 1) / 2) * width
            steady = result.get("steady_messages_per_second") or 0
            whole = result["messages_per_second"]
            spread += [steady, whole]
            axes.bar(x - width / 4, steady, width / 2, color=COLORS[variant],
                     label=labels.get(variant, variant) if m == 0 else None)
            axes.bar(x + width / 4, whole, width / 2, color=COLORS[variant], alpha=0.45, hatch="//")
            axes.annotate(f"{steady:,.0f}/s\n{result['peak_rss_mb']:,.0f} MB", (x, max(steady, whole)),
                          ha="center", va="bottom", fontsize=7)
    positive = [v for v in spread if v > 0]
    if positive and max(positive) / min(positive) > 30:
        axes.set_yscale("log")
    axes.set_xticks(range(len(mixes)), [f"{mix} ({report['mixes'][mix]['pipeline']['messages']:,} msgs)"
                                        for mix in mixes])
    axes.set_ylabel("messages per second (solid: steady, hatched: end to end)", fontsize=8)
    axes.set_title(_title(report), fontsize=9)
    axes.legend(frameon=False, fontsize=8)
    axes.spines[["top", "right"]].set_visible(False)
    axes.margins(y=0.25)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path


def latency_panels(report: dict, path: str) -> str:
    """Latency percentiles with the 250 ms target; p50 and p99 per second of load;
    latency against offered rate; memory over time."""
    figure, (bars, timeline, load, memory) = plt.subplots(1, 4, figsize=(15, 4), dpi=110)
    latency = report["latency_ms"]
    others = [(name, report[name]) for name in ("prism", "floor") if report.get(name)]
    names = [k for k in ("p50", "p95", "p99", "max") if latency.get(k) is not None]
    width = 0.8 / (1 + len(others))
    systems = [("pipeline", latency, 0.0)] + [(name, other["latency_ms"], width * (index + 1))
                                              for index, (name, other) in enumerate(others)]
    for system, values, shift in systems:
        places = [i + shift for i in range(len(names))]
        bars.bar(places, [values[k] or 0 for k in names], width=width, label=system,
                 color=COLORS.get(system, "#7a7a7a"))
        for place, name in zip(places, names):
            bars.annotate(f"{values[name] or 0:,.0f}", (place, values[name] or 0), ha="center", va="bottom",
                          fontsize=7)
    bars.set_xticks([i + width * len(others) / 2 for i in range(len(names))], names)
    bars.set_yscale("log")
    bars.axhline(250, color="#c8553d", linestyle="--", linewidth=1, label="p99 target 250 ms")
    bars.set_ylabel("publish to delivery (ms)")
    bars.set_title(f"{report['offered_rate']:,.0f} msgs/s offered: {report['delivered']:,} delivered, "
                   f"{report['lost']} lost", fontsize=9)
    bars.legend(frameon=False, fontsize=8)
    seconds = report["latency_by_second"]
    if seconds:
        timeline.plot([s["second"] for s in seconds], [s["p50"] for s in seconds], label="p50")
        timeline.plot([s["second"] for s in seconds], [s["p99"] for s in seconds], label="p99")
    timeline.set_xlabel("second of load (by publish time)")
    timeline.set_ylabel("ms")
    timeline.set_title("latency through the run", fontsize=9)
    timeline.legend(frameon=False, fontsize=8)
    series = [("pipeline", report.get("sweep") or [report], report.get("max_sustained_rate"))]
    for name, other in others:
        series.append((name, other.get("sweep") or [other], report.get(f"{name}_max_sustained_rate")))
    for system, points, best in series:
        points = sorted(points, key=lambda p: p["offered_rate"])
        for key, style in (("p50", "--"), ("p99", "-")):
            load.plot([p["offered_rate"] for p in points], [p["latency_ms"][key] or 0 for p in points],
                      style, marker="o", color=COLORS.get(system, "#7a7a7a"), label=f"{system} {key}")
        if best:
            load.axvline(best, color=COLORS.get(system, "#7a7a7a"), linestyle=":", linewidth=1)
            load.annotate(f"{system} sustains {best:,.0f}/s", (best, 250), fontsize=7, rotation=90,
                          va="bottom", ha="right")
    load.axhline(250, color="#c8553d", linestyle="--", linewidth=1)
    load.set_yscale("log")
    load.set_xlabel("offered messages per second")
    load.set_ylabel("ms (log)")
    load.set_title("latency against load", fontsize=9)
    load.legend(frameon=False, fontsize=8)
    if report.get("rss_mb"):
        memory.plot([t for t, _ in report["rss_mb"]], [mb for _, mb in report["rss_mb"]], color="#7a7a7a")
    memory.set_xlabel("seconds since the main load started")
    memory.set_ylabel("RSS of the job (MB)")
    memory.set_title(f"growth after 10 s: {report.get('rss_growth_after_10s_mb')} MB", fontsize=9)
    for axes in (bars, timeline, load, memory):
        axes.spines[["top", "right"]].set_visible(False)
    figure.suptitle(_title(report).replace("\n", " "), fontsize=9)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path
