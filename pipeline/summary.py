"""The end-of-run summary: counts per channel and status, bytes, where things are,
and which sink had to spill its records (`refused_sinks`)."""

from __future__ import annotations

from typing import NamedTuple

from apache_beam.metrics.metric import MetricsFilter

from archive.outcome import STATUSES
from pipeline.sinks import SINKS_NAMESPACE
from transforms.archive import METRICS_NAMESPACE


def archive_counters(result, namespace: str = METRICS_NAMESPACE) -> dict[str, int]:
    """One namespace's counters of a finished pipeline, by name."""
    query = result.metrics().query(MetricsFilter().with_namespace(namespace))
    counters: dict[str, int] = {}
    for counter in query["counters"]:
        name = counter.key.metric.name
        counters[name] = counters.get(name, 0) + (counter.committed or counter.attempted or 0)
    return counters


def sink_counters(result) -> dict[str, int]:
    return archive_counters(result, SINKS_NAMESPACE)


class RefusedSink(NamedTuple):
    name: str                 # outcomes, dead-letters
    records: int              # kept in the spill folder
    errors: tuple[str, ...]   # "<error class>: <exception type>", e.g. "auth: PermissionError"


def refused_sinks(counters: dict[str, int]) -> list[RefusedSink]:
    """The sinks whose folder refused a write, from the `sinks` counters
    ("<name>.spilled_records", "<name>.refused.<class>.<exception>"), by name."""
    errors: dict[str, set[str]] = {}
    for key, value in counters.items():
        name, _, rest = key.partition(".refused.")
        if rest and value:
            error_class, _, exception = rest.partition(".")
            errors.setdefault(name, set()).add(f"{error_class}: {exception}")
    return [RefusedSink(name, counters.get(f"{name}.spilled_records", 0), tuple(sorted(found)))
            for name, found in sorted(errors.items(), key=lambda item: (item[0] != "outcomes", item[0]))]


def render(counters: dict[str, int], *, destination: str, outcomes: str, dead_letters: str,
           seconds: float, run_id: str | None = None, refused: list[RefusedSink] = (),
           spill_folder: str | None = None, index: dict[str, int] | None = None) -> str:
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
    lines += [""]
    if run_id:
        lines.append(f"run id          {run_id}")
    lines.append(f"input records   {counters.get('input_records', grand):,}")
    if counters.get("blank_lines"):
        lines.append(f"blank lines     {counters['blank_lines']:,} (skipped)")
    batches = counters.get("batch_objects_written", 0)
    if batches:  # cost mode: many messages per object
        lines.append(f"batch objects   {batches:,} ({totals['ARCHIVED'] / batches:,.0f} messages per object)")
    lines += [
        f"bytes written   {written:,} ({written / 1048576:.1f} MiB)",
        f"elapsed         {seconds:.1f} s ({rate:,.0f} messages/s)",
        f"archive         {destination}",
        f"outcomes        {outcomes}",
        f"dead letters    {dead_letters}",
    ]
    if index is not None:  # the audit index's counters (transforms.index)
        lines.append(f"audit index     {index.get('rows_written', 0):,} row(s) in {index.get('files_written', 0):,} "
                     f"file(s), {index.get('manifests_written', 0):,} manifest(s)")
        failed = {name: index[name] for name in ("files_failed", "rows_failed", "manifests_failed") if index.get(name)}
        if failed:
            lines.append("INDEX FAILED    " + ", ".join(f"{name.replace('_', ' ')} {value:,}"
                                                        for name, value in failed.items())
                         + " (the objects are archived: `message-archiver index rebuild` recreates the rows)")
    for sink in refused:
        lines.append(f"SPILLED         {sink.name}: {sink.records:,} record(s) in {spill_folder}/{sink.name} "
                     f"({', '.join(sink.errors)})")
    return "\n".join(lines)
