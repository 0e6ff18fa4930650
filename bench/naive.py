"""The naive pipeline: Beam, with one blocking fsspec write per element.

    python -m bench.naive INPUT_FOLDER DESTINATION_URL [STORAGE_OPTIONS_JSON]

What a first attempt looks like: read lines, and in a Map prepare the object
and `fsspec.open(url, "wb").write(...)` it before taking the next element. The
archiver is built once; only the write is naive.
"""

from __future__ import annotations

import json
import sys

import apache_beam as beam
import fsspec

from archive.archiver import Archiver
from archive.envelope import InvalidMessage
from pipeline.run import FNAPI_RUNNER
from pipeline.sources import ReadOutboundMessages

_ARCHIVER = Archiver()


def _archive_one(record, destination: str, storage_options: dict):
    try:
        request = _ARCHIVER.prepare(record.data)
    except InvalidMessage:
        return
    with fsspec.open(f"{destination}/{request.key}", "wb", **storage_options) as handle:
        handle.write(request.data)


def main(argv: list[str] | None = None) -> int:
    args = argv or sys.argv[1:]
    source, destination = args[:2]
    storage_options = json.loads(args[2]) if len(args) > 2 else {}
    with beam.Pipeline(runner=FNAPI_RUNNER) as pipeline:
        (pipeline
         | ReadOutboundMessages(source)
         | beam.Map(_archive_one, destination.rstrip("/"), storage_options))
    return 0


if __name__ == "__main__":
    sys.exit(main())
