"""The naive pipeline of scenario a: Beam, with one blocking fsspec write per element.

    python -m bench.naive INPUT_FOLDER DESTINATION

What a first attempt looks like: read lines, and in a Map prepare the object
and `fsspec.open(...).write(...)` it before taking the next element.
"""

from __future__ import annotations

import sys

import apache_beam as beam
import fsspec

from archive.archiver import Archiver
from archive.envelope import InvalidMessage
from pipeline.run import FNAPI_RUNNER
from pipeline.sources import ReadOutboundMessages


def _archive_one(record, destination):
    try:
        request = Archiver().prepare(record.data)
    except InvalidMessage:
        return
    with fsspec.open(f"{destination}/{request.key}", "wb", auto_mkdir=True) as handle:
        handle.write(request.data)


def main(argv: list[str] | None = None) -> int:
    source, destination = (argv or sys.argv[1:])[:2]
    with beam.Pipeline(runner=FNAPI_RUNNER) as pipeline:
        (pipeline
         | ReadOutboundMessages(source)
         | beam.Map(_archive_one, destination))
    return 0


if __name__ == "__main__":
    sys.exit(main())
