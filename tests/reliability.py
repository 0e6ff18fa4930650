"""The fault suite's figures: each scenario test records one row, and
`python -m tests.reliability` renders them as the table in docs/reliability.md.

A row is appended (JSON Lines) to $RELIABILITY_ROWS, by default
.cache/reliability/rows.jsonl; a later row of the same scenario replaces an
earlier one when the table is rendered, so the table shows the last run.
"""

from __future__ import annotations

import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROWS = os.environ.get("RELIABILITY_ROWS", os.path.join(ROOT, ".cache", "reliability", "rows.jsonl"))
COLUMNS = ("scenario", "injected", "messages", "lost", "duplicates", "failed",
           "delivered_without_archive", "recovery_s")
HEADERS = ("scenario", "what was injected", "messages", "lost", "duplicates", "FAILED",
           "delivered without archive", "recovery time")


def record_row(scenario: str, injected: str, messages: int, lost: int, duplicates: int, failed: int,
               delivered_without_archive: int | None, recovery_s: float | None, **extra) -> dict:
    """Append one scenario's figures. `delivered_without_archive` is None for a batch
    scenario (there is no delivery); `recovery_s`: from the end of the fault to the
    first message archived after it (or None when nothing had to recover)."""
    row = dict(scenario=scenario, injected=injected, messages=messages, lost=lost, duplicates=duplicates,
               failed=failed, delivered_without_archive=delivered_without_archive,
               recovery_s=None if recovery_s is None else round(recovery_s, 1),
               at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **extra)
    os.makedirs(os.path.dirname(ROWS), exist_ok=True)
    with open(ROWS, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(row) + "\n")
    return row


def render(rows_path: str = ROWS) -> str:
    latest: dict[str, dict] = {}
    with open(rows_path, encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            latest[row["scenario"]] = row
    lines = ["| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    for row in latest.values():
        cells = []
        for name in COLUMNS:
            value = row.get(name)
            if value is None:
                cells.append("n/a" if name == "delivered_without_archive" else "–")
            elif name == "recovery_s":
                cells.append(f"{value} s")
            elif isinstance(value, int):
                cells.append(f"{value:,}")
            else:
                cells.append(str(value))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(render(sys.argv[1] if len(sys.argv) > 1 else ROWS))
