"""The floor of scenario a: one process, a plain loop doing the archiver's work.

    python -m bench.floor INPUT_FOLDER DESTINATION

Parse, normalise, hash, compress (archive.Archiver.prepare) and write each
object to local disk, one after the other: what the work costs without Beam
and without concurrency.
"""

from __future__ import annotations

import gzip
import os
import sys

from archive.archiver import Archiver
from archive.envelope import InvalidMessage


def main(argv: list[str] | None = None) -> int:
    source, destination = (argv or sys.argv[1:])[:2]
    archiver = Archiver()
    made = set()
    for name in sorted(os.listdir(source)):
        with gzip.open(os.path.join(source, name), "rb") as lines:
            for line in lines:
                try:
                    request = archiver.prepare(line.rstrip(b"\n"))
                except InvalidMessage:
                    continue
                path = os.path.join(destination, request.key)
                parent = os.path.dirname(path)
                if parent not in made:
                    os.makedirs(parent, exist_ok=True)
                    made.add(parent)
                with open(path, "wb") as handle:
                    handle.write(request.data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
