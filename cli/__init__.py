"""The message-archiver command: the pipeline, or one of the retrieval subcommands.

    message-archiver [run] --input ... --destination ...   ──> pipeline.run.main
    message-archiver find | show | verify | export | erase | hold | release | index ...  ──> retrieval.cli.main

A retrieval command does not load Beam; the pipeline is imported only to run it.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    from retrieval import cli as retrieval

    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in retrieval.COMMANDS:
        return retrieval.main(argv)
    if argv and argv[0] == "run":
        argv = argv[1:]
    from pipeline.run import main as run_main
    return run_main(argv)
