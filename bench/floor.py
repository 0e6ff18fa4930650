"""The floor of scenario a: a plain loop doing the archiver's work, no Beam.

    python -m bench.floor INPUT_FOLDER DESTINATION [--processes N]

Parse, normalise, hash and compress each message (`Archiver.prepare`) and
write its object (`ObjectStore.write`: the same local write as the pipeline,
aside then renamed), one after the other: what the work costs without Beam,
without outcomes and without concurrency. With `--processes N`, N such loops
run side by side on disjoint shares of the input files, with nothing shared:
the most any N-process pipeline could get out of N cores on this machine.
"""

from __future__ import annotations

import argparse
import gzip
import os
import sys

from archive.archiver import Archiver
from archive.envelope import InvalidMessage
from archive.store import StoreSpec
from bench.measure import in_processes


def archive_files(paths: list[str], destination: str) -> int:
    """Archive every line of `paths`; returns the number of failed writes."""
    archiver = Archiver()
    store = StoreSpec(destination).open()
    failed = 0
    for path in paths:
        with gzip.open(path, "rb") as lines:
            for line in lines:
                try:
                    request = archiver.prepare(line.rstrip(b"\n"))
                except InvalidMessage:
                    continue
                failed += not store.write(request.key, request.data, request.metadata).ok
    store.close()
    return failed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.floor", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", help="folder of gzipped JSON Lines files")
    parser.add_argument("destination", help="folder to archive into")
    parser.add_argument("--processes", type=int, default=1, help="loops side by side (default 1)")
    args = parser.parse_args(argv)
    paths = [os.path.join(args.source, name) for name in sorted(os.listdir(args.source))]
    if args.processes == 1:
        failed = archive_files(paths, args.destination)
    else:
        failed = sum(in_processes(archive_files, [(paths[i::args.processes], args.destination)
                                                  for i in range(args.processes)]))
    if failed:
        print(f"floor: {failed} writes failed", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
