"""Entry point of the archive job: `python -m pipeline.run --input ... [Beam flags]`.

Batch backfill: read historical sends from files, archive each one, and write
the outcomes (one per message) and the dead letters (INVALID inputs, whole).
Exit status: 0 when every message was archived or rejected as INVALID, 3 when
any message FAILED to archive, 2 on a usage error.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time

# Importing Beam warns that Google's apitools are missing (BigQuery, unused
# here) before logging is set up; main() sets the level it wants.
logging.getLogger().setLevel(logging.ERROR)

import apache_beam as beam  # noqa: E402
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions  # noqa: E402

from pipeline.options import ArchiveOptions  # noqa: E402
from pipeline.sinks import WriteJsonLines  # noqa: E402
from pipeline.sources import ReadOutboundMessages  # noqa: E402
from pipeline.streaming import build_streaming  # noqa: E402
from pipeline.summary import archive_counters, render  # noqa: E402
from transforms.archive import ArchiveMessages  # noqa: E402

_LOG = logging.getLogger("pipeline.run")
FNAPI_RUNNER = "apache_beam.runners.portability.fn_api_runner.FnApiRunner"
EXIT_FAILED_MESSAGES = 3


def build(pipeline: beam.Pipeline, options: ArchiveOptions, tenants=None):
    """Add the backfill graph to `pipeline`; returns the ArchiveResult. `tenants`: the
    tenant file already loaded (it is loaded from --tenants when not given)."""
    storage_options = options.parsed_storage_options()
    patterns = [p.strip() for p in options.input.split(",") if p.strip()]
    result = (
        pipeline
        | "ReadMessages" >> ReadOutboundMessages(patterns, storage_options)
        | "Archive" >> ArchiveMessages(options.store_spec(), options.archiver_config(),
                                       tenants if tenants is not None else options.tenant_directory())
    )
    result.outcomes | "WriteOutcomes" >> WriteJsonLines(options.outcomes, "outcomes", storage_options)
    result.dead_letters | "WriteDeadLetters" >> WriteJsonLines(
        options.dead_letters_url(), "dead-letters", storage_options)
    return result


PRISM_BINARY = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                            ".cache", "devservers", "bin", "prism")


def streaming_options(argv: list[str], kafka: bool = True) -> list[str]:
    """The local streaming runner, unless one is named. A Kafka stream runs on Prism,
    Beam's local portable runner: the DirectRunner cannot run an unbounded splittable
    DoFn as a stream (offline, Prism is the binary `python -m devservers install
    prism` builds). A Pub/Sub stream runs on the DirectRunner's streaming mode,
    which implements ReadFromPubSub natively."""
    extra = ["--streaming"]
    named = {a.split("=", 1)[0] for a in argv if a.startswith("--")}
    if "--runner" not in named and not kafka:
        extra.append("--runner=DirectRunner")
    elif "--runner" not in named:
        extra += ["--runner=PrismRunner", "--environment_type=LOOPBACK"]
        if "--prism_location" not in named:
            location = os.environ.get("PRISM_LOCATION", PRISM_BINARY)
            if not os.path.exists(location):
                raise ValueError(f"no Prism runner at {location}: run `python -m devservers install prism` "
                                 "(or set PRISM_LOCATION, or name a --runner)")
            extra.append(f"--prism_location={location}")
    return extra


def local_runner(options: PipelineOptions):
    """The runner to use: as given, except that a batch job on the DirectRunner
    goes straight to its FnApiRunner instead of first trying to download Prism,
    so local runs behave the same with or without a network."""
    standard = options.view_as(StandardOptions)
    runner = standard.runner
    prism_location = options.get_all_options().get("prism_location")
    if runner in (None, "DirectRunner") and not standard.streaming and not prism_location:
        return FNAPI_RUNNER
    return runner


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("apache_beam", "urllib3", "botocore", "aiobotocore", "azure", "google"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    argv = list(argv if argv is not None else sys.argv[1:])
    if "-h" in argv or "--help" in argv:
        print_help()
        return 0
    archive = PipelineOptions(argv).view_as(ArchiveOptions)
    if archive.kafka_topic or archive.pubsub_subscription:
        return stream(argv, kafka=bool(archive.kafka_topic))
    options = PipelineOptions(argv)
    archive = options.view_as(ArchiveOptions)
    if not archive.input:
        print("error: --input is required (a file, folder or glob URL of outbound messages)", file=sys.stderr)
        return 2
    try:  # configuration errors are usage errors, reported before anything runs
        archive.store_spec()
        archive.archiver_config()
        tenants = archive.tenant_directory()  # loaded once: validated here, used below
        archive.dead_letters_url()
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    started = time.monotonic()
    pipeline = beam.Pipeline(runner=local_runner(options), options=options)
    build(pipeline, archive, tenants)
    result = pipeline.run()
    result.wait_until_finish()
    counters = archive_counters(result)
    if archive.summary:
        where = f"per tenant, as {archive.tenants} says" if archive.tenants else archive.destination
        print(render(counters, destination=where, outcomes=archive.outcomes,
                     dead_letters=archive.dead_letters_url(), seconds=time.monotonic() - started))
    failed = sum(v for k, v in counters.items() if k.endswith(".FAILED"))
    if failed:
        _LOG.error("%d message(s) failed to archive; see FAILED records in %s", failed, archive.outcomes)
        return EXIT_FAILED_MESSAGES
    return 0


def print_help() -> None:
    """The archive job's flags, then the Beam flags it uses most."""
    import argparse

    from apache_beam.options.pipeline_options import DirectOptions, PortableOptions

    parser = argparse.ArgumentParser(
        prog="python -m pipeline.run", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Any other Beam pipeline option is accepted too (see Beam's documentation).")
    ArchiveOptions._add_argparse_args(parser.add_argument_group("archive"))
    for beam_options in (StandardOptions, DirectOptions, PortableOptions):
        beam_options._add_argparse_args(parser.add_argument_group(beam_options.__name__))
    parser.print_help()


def stream(argv: list[str], kafka: bool = True) -> int:
    """Run the streaming job until it is cancelled (Ctrl-C or SIGTERM)."""
    try:
        options = PipelineOptions(argv + streaming_options(argv, kafka))
        archive = options.view_as(ArchiveOptions)
        archive.store_spec()
        tenants = archive.tenant_directory()
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    pipeline = beam.Pipeline(options=options)
    build_streaming(pipeline, archive, tenants)
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM stops like Ctrl-C
    result = pipeline.run()
    _LOG.info("streaming from %s; Ctrl-C stops", archive.kafka_topic or archive.pubsub_subscription)
    try:
        result.wait_until_finish()
    except KeyboardInterrupt:
        _LOG.info("stopping")
        try:
            result.cancel()
        except Exception:  # the runner may already be gone with the same signal
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
