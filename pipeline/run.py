"""Entry point of the archive job: `python -m pipeline.run --input ... [Beam flags]`.

Batch backfill: read historical sends from files, archive each one, and write
the outcomes (one per message) and the dead letters (INVALID inputs, whole),
in files named after the run (`--run_id`).

    argv ─ usage checks (flags, values, inputs, tenant file, run id) ─ pipeline ─ summary ─ exit status

Exit status:
  0  every message was archived, skipped or rejected as INVALID (dead-lettered)
  2  usage error (one line on stderr; nothing ran)
  3  some message FAILED to archive (see the FAILED outcomes)
  4  the outcomes or dead-letter folder refused a write: those records are in the
     local spill folder, <spill_dir>/<run_id>/<outcomes|dead-letters>/ (takes
     precedence over 3)
"""

from __future__ import annotations

import logging
import os
import re
import signal
import sys
import time

# Importing Beam warns that Google's apitools are missing (BigQuery, unused
# here) before logging is set up; main() sets the level it wants.
logging.getLogger().setLevel(logging.ERROR)

import apache_beam as beam  # noqa: E402
import fsspec  # noqa: E402
from apache_beam.options.pipeline_options import (  # noqa: E402
    FlinkRunnerOptions, GoogleCloudOptions, PipelineOptions, StandardOptions, TestOptions)
from apache_beam.runners.runner import PipelineResult  # noqa: E402

from archive.errors import classify  # noqa: E402
from archive.tenants import protocol_of, redact_url  # noqa: E402
from pipeline import flink, localflink  # noqa: E402
from pipeline.options import ArchiveOptions, UsageError, check_flags, new_run_id  # noqa: E402
from pipeline.sinks import WriteJsonLines  # noqa: E402
from pipeline.sources import ReadOutboundMessages, match_files  # noqa: E402
from pipeline.streaming import build_streaming  # noqa: E402
from pipeline.summary import archive_counters, refused_sinks, render, sink_counters  # noqa: E402
from transforms.archive import ArchiveMessages  # noqa: E402
from transforms.index import METRICS_NAMESPACE as INDEX_METRICS, WriteAuditIndex  # noqa: E402

_LOG = logging.getLogger("pipeline.run")
FNAPI_RUNNER = "apache_beam.runners.portability.fn_api_runner.FnApiRunner"
EXIT_USAGE = 2
EXIT_FAILED_MESSAGES = 3
EXIT_SINK_SPILLED = 4
OUTPUT_NAMES = ("outcomes", "dead-letters")


def build(pipeline: beam.Pipeline, options: ArchiveOptions, tenants=None):
    """Add the backfill graph to `pipeline`; returns the ArchiveResult. `tenants`: the
    tenant file already loaded (it is loaded from --tenants when not given)."""
    storage_options = options.parsed_storage_options()
    tenants = tenants if tenants is not None else options.tenant_directory()
    result = (
        pipeline
        | "ReadMessages" >> ReadOutboundMessages(options.input_patterns(), storage_options, options.input_format)
        | "Archive" >> ArchiveMessages(options.store_spec(), options.archiver_config(), tenants,
                                       index=options.audit_index)
    )
    run_id = options.run_id or new_run_id()
    if options.audit_index:
        result.index_rows | "WriteAuditIndex" >> WriteAuditIndex(
            options.store_spec(), tenants, run_id)
    spill = options.spill_folder(run_id)
    result.outcomes | "WriteOutcomes" >> WriteJsonLines(
        options.outcomes, "outcomes", storage_options, run_id=run_id, spill_folder=spill)
    result.dead_letters | "WriteDeadLetters" >> WriteJsonLines(
        options.dead_letters_url(), "dead-letters", storage_options, run_id=run_id, spill_folder=spill)
    return result


PRISM_BINARY = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                            ".cache", "devservers", "bin", "prism")


# Beam's Flink runner otherwise finishes a bundle that is open when a checkpoint
# barrier arrives inside snapshotState, after the barrier has gone downstream, and
# holds what that bundle outputs until the step's next input or watermark. The
# Kafka reader's first step (one impulse in, the partitions out) gets no next
# input: when the first checkpoint caught its bundle, which it does while the
# Python workers start, the partitions were held for good and the stream read
# nothing (DoFnOperator.BufferedOutputManager; docs/reliability.md). With this
# flag the bundle is finished before the barrier, its outputs sent ahead of it.
FINISH_BUNDLES = "--finish_bundle_before_checkpointing"


def streaming_options(argv: list[str], kafka: bool = True) -> list[str]:
    """The local streaming runner, unless one is named. A Kafka stream runs on Prism,
    Beam's local portable runner: the DirectRunner cannot run an unbounded splittable
    DoFn as a stream (offline, Prism is the binary `python -m devservers install
    prism` builds). A Pub/Sub stream runs on the DirectRunner's streaming mode,
    which implements ReadFromPubSub natively. On Flink, bundles finish before each
    checkpoint barrier (FINISH_BUNDLES)."""
    extra = ["--streaming"]
    named = {a.split("=", 1)[0] for a in argv if a.startswith("--")}
    runner = _flag_value(argv, "--runner") or ""
    if "--runner" not in named and not kafka:
        extra.append("--runner=DirectRunner")
    elif "--runner" not in named and (_flag_value(argv, "--local_runner") or "prism") == "flink":
        extra += localflink.flags(named)
        runner = "FlinkRunner"
    elif "--runner" not in named:
        extra += ["--runner=PrismRunner", "--environment_type=LOOPBACK"]
        if "--prism_location" not in named:
            location = os.environ.get("PRISM_LOCATION", PRISM_BINARY)
            if not os.path.exists(location):
                raise ValueError(f"no Prism runner at {location}: run `python -m devservers install prism` "
                                 "(or set PRISM_LOCATION, or name a --runner)")
            extra.append(f"--prism_location={location}")
    if runner.endswith("FlinkRunner") and FINISH_BUNDLES not in named:
        extra.append(FINISH_BUNDLES + "=true")
    return extra


def _flag_value(argv: list[str], flag: str) -> str | None:
    """The value given to `flag` in either form (the last one wins, as in argparse)."""
    value = None
    for index, arg in enumerate(argv):
        if arg.startswith(flag + "="):
            value = arg.split("=", 1)[1]
        elif arg == flag and index + 1 < len(argv):
            value = argv[index + 1]
    return value


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
    # Beam's import-time warning already gave the root logger a handler, which makes
    # basicConfig a no-op: without this the level stays ERROR and warnings go unprinted.
    logging.getLogger().setLevel(logging.INFO)
    for noisy in ("apache_beam", "urllib3", "botocore", "aiobotocore", "azure", "google"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    argv = list(argv if argv is not None else sys.argv[1:])
    if "-h" in argv or "--help" in argv:
        print_help()
        return 0
    try:  # every usage error is found here, before anything runs
        pipeline, archive, streaming = job_pipeline(argv)
    except ValueError as exc:  # UsageError, and a tenant file's or Beam's own complaints
        print(f"error: {one_line(str(exc))}", file=sys.stderr)
        return EXIT_USAGE
    if streaming:
        return run_streaming(pipeline, archive)
    run_id = archive.run_id
    spill = archive.spill_folder(run_id)

    started = time.monotonic()
    result = pipeline.run()
    if translated_only(result, archive):
        return 0
    result.wait_until_finish()
    counters = archive_counters(result)
    refused = refused_sinks(sink_counters(result))
    if archive.summary:
        where = f"per tenant, as {archive.tenants} says" if archive.tenants else archive.destination
        print(render(counters, destination=where, outcomes=f"{archive.outcomes} (outcomes-{run_id}-*)",
                     dead_letters=f"{archive.dead_letters_url()} (dead-letters-{run_id}-*)",
                     seconds=time.monotonic() - started, run_id=run_id, refused=refused, spill_folder=spill,
                     index=archive_counters(result, INDEX_METRICS) if archive.audit_index else None))
    failed = sum(v for k, v in counters.items() if k.endswith(".FAILED"))
    if failed:
        _LOG.error("%d message(s) failed to archive; see FAILED records in %s", failed,
                   os.path.join(spill, "outcomes") if any(r.name == "outcomes" for r in refused)
                   else redact_url(archive.outcomes))
    if refused:
        targets = {"outcomes": archive.outcomes, "dead-letters": archive.dead_letters_url()}
        for sink in refused:
            print(f"error: the {sink.name} sink could not write to {redact_url(targets.get(sink.name, '?'))} "
                  f"({', '.join(sink.errors)}); {sink.records} record(s) kept in "
                  f"{os.path.join(spill, sink.name)}", file=sys.stderr)
        return EXIT_SINK_SPILLED
    return EXIT_FAILED_MESSAGES if failed else 0


def one_line(message: str) -> str:
    """A usage error is one line, even when a parser's message spans several (YAML's do)."""
    return " / ".join(" ".join(line.split()) for line in message.splitlines() if line.strip())


def check_batch(archive: ArchiveOptions):
    """The batch job's usage checks beyond the flags' values; returns the tenant file."""
    if not archive.input:
        raise UsageError("--input is required (a file, folder or glob URL of outbound messages)")
    storage_options = archive.parsed_storage_options()
    for pattern in archive.input_patterns():
        check_input(pattern, storage_options)
    tenants = archive.tenant_directory()
    if archive.run_id:
        check_run_id_unused(archive, storage_options)
    return tenants


def check_input(pattern: str, storage_options: dict) -> None:
    """A pattern that matches no file is a typo far more often than an empty backfill."""
    try:  # the job's own matching: the same files, or none
        match_files(pattern, storage_options)
    except FileNotFoundError:
        raise UsageError(f"--input: no input files match {redact_url(pattern)}") from None
    except Exception as exc:  # unreachable, refused, a bad URL
        raise UsageError(f"--input: cannot list {redact_url(pattern)} "
                         f"({classify(exc).value}: {type(exc).__name__})") from None


def check_run_id_unused(archive: ArchiveOptions, storage_options: dict) -> None:
    """A run id whose files exist is refused: no run overwrites another's outputs."""
    for name, folder in zip(OUTPUT_NAMES, (archive.outcomes, archive.dead_letters_url())):
        mine = re.compile(rf"{re.escape(name)}-{re.escape(archive.run_id)}-\d{{5}}-of-\d{{5}}\.jsonl")
        try:
            fs, path = fsspec.core.url_to_fs(folder, **storage_options)
            names = [entry.rstrip("/").rsplit("/", 1)[-1] for entry in fs.ls(path, detail=False)]
        except Exception:  # no folder yet, or it cannot be listed: the sink never overwrites anyway
            continue
        if any(mine.fullmatch(n) for n in names):
            raise UsageError(f"--run_id {archive.run_id}: {name} files of that run already exist in "
                             f"{redact_url(folder)}; give a new run id")


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


def job_pipeline(argv: list[str]) -> tuple[beam.Pipeline, ArchiveOptions, bool]:
    """The job `argv` asks for, checked (ValueError: a usage error) and built but not
    run: (pipeline, its options, whether it is a stream)."""
    check_flags(argv)
    archive = PipelineOptions(argv).view_as(ArchiveOptions)
    archive.check()
    check_outputs_outlive_workers(archive)
    if on_flink(archive):
        flink.check_master(archive.view_as(FlinkRunnerOptions).flink_master, archive.allow_insecure_http)
    if archive.kafka_topic or archive.pubsub_subscription:
        return (*streaming_pipeline(argv, kafka=bool(archive.kafka_topic)), True)
    return (*batch_pipeline(argv), False)


_WORKER_LOCAL = ("file", "local", "memory")


def check_outputs_outlive_workers(archive: ArchiveOptions) -> None:
    """On Dataflow a local folder (or memory://) is on a worker's disk and goes with
    the worker: every output must be a bucket or, for a stream, a topic. (With
    --tenants, --destination is unused; the tenant file's destinations are its own.)"""
    if not str(archive.view_as(StandardOptions).runner or "").endswith("DataflowRunner"):
        return
    streaming = bool(archive.kafka_topic or archive.pubsub_subscription)
    outputs = ([] if archive.tenants else [("--destination", archive.destination)]) + [
        ("--outcomes", archive.outcomes)] + (
        [("--deliveries", archive.deliveries), ("--failures", archive.failures)] if streaming
        else [("--dead_letters", archive.dead_letters_url())])
    for flag, url in outputs:
        if protocol_of(url) in _WORKER_LOCAL:
            topics = streaming and flag != "--destination"
            raise UsageError(f"{flag} {redact_url(url)} is on the workers' local disks, which Dataflow "
                             "discards with each worker: give a bucket URL (gs://, s3://, abfs://"
                             + (", or kafka://TOPIC, pubsub://projects/P/topics/T)" if topics else ")"))


def check_outputs_outside_memory(archive: ArchiveOptions) -> None:
    """--local_runner flink: memory:// is this process's own, and the workers are others."""
    outputs = ([] if archive.tenants else [("--destination", archive.destination)]) + [
        ("--outcomes", archive.outcomes), ("--deliveries", archive.deliveries), ("--failures", archive.failures)]
    for flag, url in outputs:
        if protocol_of(url) == "memory":
            raise UsageError(f"{flag} {redact_url(url)} is in this process's memory, which the Flink workers "
                             "of --local_runner flink do not share: give a folder, a bucket or a topic")


def batch_pipeline(argv: list[str]):
    """The backfill's pipeline and options, checked (ValueError: a usage error) and
    built but not run; the tenant file is loaded once, validated here and used by the graph."""
    options = PipelineOptions(argv)
    archive = options.view_as(ArchiveOptions)
    tenants = check_batch(archive)
    archive.run_id = archive.run_id or new_run_id()
    # Built here, so a runner's own complaint about its options (Dataflow's project id,
    # temp location) is a usage error too.
    pipeline = beam.Pipeline(runner=local_runner(options), options=options)
    build(pipeline, archive, tenants)
    return pipeline, archive


def translated_only(result, options: PipelineOptions) -> bool:
    """--dry_run on Dataflow: the job was translated and validated, nothing submitted
    (the runner returns a bare PipelineResult: no job, no metrics)."""
    if not (options.view_as(TestOptions).dry_run and type(result) is PipelineResult):
        return False
    print("dry run: the job was translated and validated, not submitted")
    return True


def submitted_to_dataflow(result, options: PipelineOptions) -> bool:
    """A stream on Dataflow runs there, not in this process: once it is submitted we
    return (waiting would only tie a terminal to it, and Ctrl-C would cancel it)."""
    if not str(options.view_as(StandardOptions).runner or "").endswith("DataflowRunner"):
        return False
    job_id = result.job_id() if hasattr(result, "job_id") else "?"
    _LOG.info("streaming job %s submitted to Dataflow; stop it with "
              "`gcloud dataflow jobs drain %s --region REGION`", job_id, job_id)
    return True


def streaming_pipeline(argv: list[str], kafka: bool = True):
    """The streaming job's pipeline and options, built (ValueError: a usage error) but not run."""
    options = PipelineOptions(argv + streaming_options(argv, kafka))
    archive = options.view_as(ArchiveOptions)
    archive.store_spec()
    if kafka and archive.local_runner == "flink" and _flag_value(argv, "--runner") is None:
        check_outputs_outside_memory(archive)
    tenants = archive.tenant_directory()
    archive.run_id = archive.run_id or new_run_id()
    cloud = options.view_as(GoogleCloudOptions)
    if on_flink(archive) and not cloud.job_name:
        cloud.job_name = flink.job_name(archive.run_id)  # so a stop can find the cluster's job
    pipeline = beam.Pipeline(options=options)
    build_streaming(pipeline, archive, tenants)
    return pipeline, archive


def run_streaming(pipeline: beam.Pipeline, archive: ArchiveOptions) -> int:
    """Run the streaming job until it is cancelled (Ctrl-C or SIGTERM)."""
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM stops like Ctrl-C
    result = pipeline.run()
    if translated_only(result, archive) or submitted_to_dataflow(result, archive):
        return 0
    _LOG.info("streaming from %s (run %s); Ctrl-C stops", archive.kafka_topic or archive.pubsub_subscription,
              archive.run_id)
    try:
        result.wait_until_finish()
    except KeyboardInterrupt:
        _LOG.info("stopping")
        try:
            result.cancel()
        except Exception:  # the runner may already be gone with the same signal
            pass
        if on_flink(archive):  # the job server's cancel leaves the cluster's job running
            master = archive.view_as(FlinkRunnerOptions).flink_master
            try:
                for jid in flink.cancel_job(master, archive.view_as(GoogleCloudOptions).job_name):
                    _LOG.info("cancelled Flink job %s", jid)
            except (OSError, TimeoutError) as exc:
                _LOG.error("could not cancel the Flink job %s: %s; cancel it in the cluster's web UI",
                           archive.view_as(GoogleCloudOptions).job_name, exc)
                return 1
    return 0


def on_flink(options: PipelineOptions) -> bool:
    return str(options.view_as(StandardOptions).runner or "").endswith("FlinkRunner")


if __name__ == "__main__":
    sys.exit(main())
