"""The message-archiver command: the pipeline, or one of the retrieval subcommands.

    message-archiver [run] --input ... --destination ...   ──> pipeline.run.main
    message-archiver find | show | verify | export | erase | index ...  ──> retrieval.cli.main

Both are imported only when asked for: a retrieval command does not load Beam.
"""

from __future__ import annotations

import sys

RETRIEVAL = ("find", "show", "verify", "export", "erase", "index")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in RETRIEVAL:
        from retrieval.cli import main as retrieval_main
        return retrieval_main(argv)
    if argv and argv[0] == "run":
        argv = argv[1:]
    from pipeline.run import main as run_main
    return run_main(argv)
