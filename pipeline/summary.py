"""The end-of-run summary: counts per channel and status, bytes, where things are."""

from __future__ import annotations

from apache_beam.metrics.metric import MetricsFilter

from archive.outcome import STATUSES
from transforms.archive import METRICS_NAMESPACE


def archive_counters(result) -> dict[str, int]:
    """The archive namespace's counters of a finished pipeline, by name."""
    query = result.metrics().query(MetricsFilter().with_namespace(METRICS_NAMESPACE))
    counters: dict[str, int] = {}
    for counter in query["counters"]:
        name = counter.key.metric.name
        counters[name] = counters.get(name, 0) + (counter.committed or counter.attempted or 0)
    return counters


def render(counters: dict[str, int], *, destination: str, outcomes: str, dead_letters: str,
           seconds: float) -> str:
    channels = sorted({name.split(".")[0] for name in counters if "." in name})
    width = max([len("channel")] + [len(c) for c in channels])
    header = f"{'channel':<{width}}  " + "  ".join(f"{s:>9}" for s in STATUSES) + f"  {'total':>9}"
    lines = ["", "Archive run summary", "=" * len(header), header, "-" * len(header)]
    totals = dict.fromkeys(STATUSES, 0)
    for channel in channels:
        row = [counters.get(f"{channel}.{s}", 0) for s in STATUSES]
        for status, value in zip(STATUSES, row):
            totals[status] += value
        lines.append(f"{channel:<{width}}  " + "  ".join(f"{v:>9,}" for v in row) + f"  {sum(row):>9,}")
    lines.append("-" * len(header))
    grand = sum(totals.values())
    lines.append(f"{'all':<{width}}  " + "  ".join(f"{totals[s]:>9,}" for s in STATUSES) + f"  {grand:>9,}")
    written = counters.get("bytes_written", 0)
    rate = grand / seconds if seconds > 0 else 0.0
    lines += [
        "",
        f"input records   {counters.get('input_records', grand):,}",
        f"bytes written   {written:,} ({written / 1048576:.1f} MiB)",
        f"elapsed         {seconds:.1f} s ({rate:,.0f} messages/s)",
        f"archive         {destination}",
        f"outcomes        {outcomes}",
        f"dead letters    {dead_letters}",
    ]
    return "\n".join(lines)
