"""Pipeline options of the archive job; every flag has help text (`--help`).

    argv ─ check_flags (every flag some PipelineOptions class knows, well typed) ─┐
         ─ ArchiveOptions.check (values the job can run with) ─────────────────────┴─> UsageError: exit 2

A usage error is one line, found before any pipeline starts.
"""

from __future__ import annotations

import difflib
import json
import math
import os
import re

from apache_beam.options.pipeline_options import PipelineOptions, _BeamArgumentParser

from archive.archiver import ArchiverConfig, DEFAULT_TENANT
from archive.encoding import CODECS
from archive.envelope import DEFAULT_MAX_MESSAGE_BYTES
from archive.profiles import PROFILES
from archive.retry import RetryPolicy
from archive import direct, tenants
from archive.store import StoreSpec
from archive.batches import OBJECT_MODES, BatchLimits
from archive.runs import new_run_id  # noqa: F401  (re-exported: the pipeline's modules name runs through options)
from archive.keys import KeyTemplate, TemplateError
from archive.tenants import EMAIL_FORMATS, Destination, TenantDirectory, check_transport, check_url, redact_url

DEFAULT_DESTINATION = "local_run/archive"
DEFAULT_OUTCOMES = "local_run/outcomes"
DEFAULT_SPILL_DIR = "archive-spill"
# A run id is one file-name segment: no separator, no leading dot (hidden, and the
# input reader skips such files), short enough for every store's key limit.
_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


class UsageError(ValueError):
    """A command line the job cannot run with: exit 2, one line, nothing started."""


class ArchiveOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument(
            "--input", required=False,
            help="Outbound messages to archive: an fsspec URL or glob (file://, memory://, s3://, gs://, "
                 "abfs://, or a local path) of JSON Lines files (plain, .gz, .lz4 or .zst) or Parquet "
                 "files (.parquet). Several patterns may be given separated by commas.")
        parser.add_argument(
            "--input_format", default="records", choices=["records", "dead_letters"],
            help="records: outbound messages (default). dead_letters: --input names dead-letter files "
                 "of earlier runs, and the messages that FAILED to archive there (store down, refused, "
                 "outage longer than the hold) are archived again: the re-drive. INVALID letters are "
                 "skipped (they would only be INVALID again); objects already archived are found, "
                 "not duplicated.")
        parser.add_argument(
            "--destination", default=DEFAULT_DESTINATION,
            help="URL of the archive root (bucket or folder); objects go to <destination>/sent_messages/... "
                 f"Default: the local folder {DEFAULT_DESTINATION}.")
        parser.add_argument(
            "--storage_options", default="{}",
            help="JSON object of fsspec storage options for the destination and the input "
                 "(e.g. '{\"client_kwargs\": {\"endpoint_url\": \"http://127.0.0.1:9000\"}}'). "
                 "Credentials belong in each library's standard places, not here.")
        parser.add_argument(
            "--tenants", default=None,
            help="Tenant file (YAML or JSON, path or URL): per tenant its destinations with "
                 "compliance options, enabled channels, profile and compression. Without it, "
                 "--destination is the single tenant that receives every message.")
        parser.add_argument(
            "--allow_insecure_http", default=False, type=_flag,
            help="Accept a plain http:// storage endpoint that is not loopback (true/false). "
                 "Default: false, archives travel over HTTPS.")
        parser.add_argument(
            "--audit_index", default=True, type=_flag,
            help="Write the audit index: a Parquet row per archived object (ids, digests, key, size, "
                 "sha256; never a recipient) under <destination>/archive_index/, and the manifests' hash "
                 "chain under <destination>/archive_manifests/, which `message-archiver find`, `verify`, "
                 "`export` and `erase` read (true/false). Default: true.")
        parser.add_argument(
            "--audit_index_flush_seconds", type=float, default=60.0,
            help="Streaming: the longest an archived object waits for its index file (a file per "
                 "tenant, channel and day is written at least this often while rows arrive, or at "
                 "50,000 rows). Default: 60.")
        parser.add_argument(
            "--audit_manifest_seconds", type=float, default=3600.0,
            help="Streaming: the longest an archived object waits for its manifest, the hash-chained "
                 "list of keys and sha256s that `message-archiver verify` checks (one per tenant at "
                 "least this often while objects arrive, or per 100,000 objects). Default: 3600.")
        parser.add_argument(
            "--breaker_cooldown", type=float, default=30.0,
            help="Seconds a tenant's destination rests after it rejected our credentials before "
                 "one write probes it again (its other writes fail fast meanwhile). Default: 30.")
        parser.add_argument(
            "--outcomes", default=DEFAULT_OUTCOMES,
            help="URL of the folder that receives the archive outcomes as JSON Lines "
                 "(outcomes-<run_id>-NNNNN-of-NNNNN.jsonl): one record per input message. "
                 f"Default: {DEFAULT_OUTCOMES}.")
        parser.add_argument(
            "--dead_letters", default=None,
            help="URL of the folder that receives the original bytes of every message that was "
                 "not archived because of its content or its unknown tenant "
                 "(dead-letters-<run_id>-NNNNN-of-NNNNN.jsonl). They hold recipients' data, so the "
                 "default is inside the archive destination: <destination>/dead_letters; with "
                 "--tenants it must be given.")
        parser.add_argument(
            "--run_id", default=None,
            help="Name of this run, in every outcome and dead-letter file name (letters, digits, "
                 "_ . -; up to 64; not starting with . or -). Default: the UTC start time and a "
                 "random suffix, e.g. 20261202T053000Z-3f9a1c. A run id whose files already exist "
                 "is refused: no run overwrites another's outputs.")
        parser.add_argument(
            "--spill_dir", default=DEFAULT_SPILL_DIR,
            help="Local folder that keeps a run's outcomes and dead letters when their own folder "
                 "refuses the writes: <spill_dir>/<run_id>/<outcomes|dead-letters>/ (the job then "
                 f"exits 4). Default: ./{DEFAULT_SPILL_DIR}.")
        parser.add_argument(
            "--profile", default="clevertap", choices=sorted(PROFILES),
            help="Output contract: 'clevertap' (key sent_messages/<Channel>/<yyyymm>/<campaign_id>/"
                 "<md5>/<message_id>.json.lz4, sent_at in ms) or 'braze' (key sent_messages/<channel>/"
                 "<md5>/<campaign|canvas step|unassociated>/<dispatch_id>.json.gz, sent_at in s).")
        parser.add_argument(
            "--compression", default=None, choices=sorted(CODECS),
            help="Compression of each object; the key's suffix follows it (.json.lz4, .json.gz, "
                 ".json.zst, .json). Default: the profile's own (lz4 for clevertap, gzip for braze).")
        parser.add_argument(
            "--key_template", default=None,
            help="The archive's own key layout, instead of the profile's: named fields between "
                 "slashes, e.g. archive/{tenant}/{channel}/{yyyy}/{mm}/{dd}/{recipient_md5}/{message_id} "
                 "(fields: tenant profile channel channel_folder yyyy mm dd hh yyyymm yyyymmdd "
                 "campaign_id recipient_md5 message_id; .json and the compression suffix follow). With "
                 "--tenants, each tenant's key_template.")
        parser.add_argument(
            "--email_format", default="json", choices=list(EMAIL_FORMATS),
            help="Email as the profile's JSON (json), as an RFC 5322 message (eml: <key>.eml.lz4), or "
                 "both, under the same key. With --tenants, each tenant's email_format.")
        parser.add_argument(
            "--object_mode", default="message", choices=list(OBJECT_MODES),
            help="message: one object per message, the seeds' layout (default). batched (cost mode): "
                 "a tenant's messages of one channel and window in one object, sent_batches/<tenant>/"
                 "<channel>/<yyyy>/<mm>/<dd>/<hhmmss>-s<shard>-p<part>.jsonl.lz4, each message its own "
                 "compressed frame; delivery waits up to --batch_seconds. With --tenants, each tenant's "
                 "object_mode and batch.")
        parser.add_argument(
            "--batch_seconds", type=int, default=60,
            help="object_mode batched: the window of sent_at one object covers, and the longest a "
                 "stream holds a message before writing its object (divides a day; default 60).")
        parser.add_argument(
            "--batch_max_messages", type=int, default=10_000,
            help="object_mode batched: most messages in one object (default 10000).")
        parser.add_argument(
            "--batch_max_bytes", type=int, default=64 * 1024 * 1024,
            help="object_mode batched: most compressed bytes in one object (default 64 MiB).")
        parser.add_argument(
            "--batch_shards", type=int, default=1,
            help="object_mode batched: objects per tenant, channel and window, by message id (default 1).")
        parser.add_argument(
            "--default_region", default=None,
            help="ISO 3166 region (e.g. US, GB, IN) used to read phone numbers written without a "
                 "country code. Without it such numbers are INVALID.")
        parser.add_argument(
            "--tenant", default=DEFAULT_TENANT,
            help=f"Tenant of messages that do not name one (default: {DEFAULT_TENANT}).")
        parser.add_argument(
            "--max_message_bytes", type=int, default=DEFAULT_MAX_MESSAGE_BYTES,
            help="Largest input record accepted, in bytes; larger ones are INVALID. "
                 f"Default: {DEFAULT_MAX_MESSAGE_BYTES}.")
        parser.add_argument(
            "--max_in_flight", type=int, default=64,
            help="Object writes in flight at once per worker (bounded concurrency). Default: 64.")
        parser.add_argument(
            "--store_client", choices=direct.CLIENTS, default="auto",
            help="How objects reach S3 and Azure: 'direct' through obstore (Rust, about a fifth "
                 "of the CPU per object), 'fsspec' through s3fs/adlfs/gcsfs, or 'auto': direct "
                 "wherever the destination's options allow it (not with S3 Object Lock, an Azure "
                 "encryption scope, GCS, or credentials only the AWS SDK's chain finds), fsspec "
                 "elsewhere; each destination's choice and its reason are logged. Default: auto.")
        parser.add_argument(
            "--transient_retries", type=int, default=RetryPolicy.transient_retries,
            help="Retries of a write that failed with throttling (429, 503 SlowDown), a 5xx, a "
                 f"timeout or a connection error. Default: {RetryPolicy.transient_retries}.")
        parser.add_argument(
            "--other_retries", type=int, default=RetryPolicy.other_retries,
            help="Retries of a write that failed otherwise (AccessDenied/403, missing bucket). "
                 f"Default: {RetryPolicy.other_retries}, as both seeds promise.")
        parser.add_argument(
            "--retry_base_delay", type=float, default=RetryPolicy.base_delay,
            help="Seconds: cap of the first backoff; each retry doubles it (full jitter). "
                 f"Default: {RetryPolicy.base_delay}.")
        parser.add_argument(
            "--retry_max_delay", type=float, default=RetryPolicy.max_delay,
            help=f"Seconds: the longest single backoff. Default: {RetryPolicy.max_delay}.")
        parser.add_argument(
            "--hold_seconds", type=float, default=RetryPolicy.hold_seconds,
            help="Seconds an outage of a destination (nothing but throttling, 5xx, timeouts or "
                 "connection errors) is waited out: its writes keep retrying, holding their slots, so "
                 "the job stops reading (back-pressure) instead of failing message after message. "
                 "Past it the writes fail with the outage's reason; `--redrive` archives them later. "
                 f"0 turns the hold off. Default: {RetryPolicy.hold_seconds:.0f}.")
        parser.add_argument(
            "--overwrite", default=False, type=_flag,
            help="Replace an object whose key already holds other bytes (true/false). Default: false: "
                 "such a message is FAILED with error_class conflict and the object is left as it is; "
                 "the same bytes are ARCHIVED with existed=true.")
        # --- streaming -----------------------------------------------------------------
        parser.add_argument(
            "--kafka_topic", default=None,
            help="Stream outbound messages from this Kafka topic instead of reading --input "
                 "(runs on Prism locally, or see --local_runner; see the README).")
        parser.add_argument(
            "--local_runner", default="prism", choices=["prism", "flink"],
            help="The runner of a Kafka stream when no --runner is named. prism (default): Beam's "
                 "Prism, its workers in this process, ready in seconds. flink: Flink's mini-cluster "
                 "in Beam's Flink job server (Java; `python -m devservers install flink`), a Python "
                 "worker per core and 20 ms bundles: the faster of the two under load (README). "
                 "Its workers are other processes: no memory:// outputs.")
        parser.add_argument(
            "--pubsub_subscription", default=None,
            help="Stream outbound messages from this Pub/Sub subscription "
                 "(projects/P/subscriptions/S; runs on the DirectRunner's streaming mode locally).")
        parser.add_argument(
            "--kafka_bootstrap_servers", default="127.0.0.1:9092",
            help="Kafka bootstrap servers for the source and any kafka:// output. Default: 127.0.0.1:9092.")
        parser.add_argument(
            "--kafka_group", default="message-archiver",
            help="Consumer group whose committed offsets say where reading resumes; they advance "
                 "only past records whose delivery decision is durable. Default: message-archiver.")
        parser.add_argument(
            "--kafka_reader", default="python", choices=["python", "xlang"],
            help="python: our confluent-kafka splittable DoFn (any runner with Python SDFs: Prism, "
                 "Flink, Dataflow), with offsets committed past durable verdicts. xlang: Beam's "
                 "Java KafkaIO through an expansion service (--expansion_service), for Flink and "
                 "Dataflow; it commits offsets when its bundles finalize.")
        parser.add_argument(
            "--expansion_service", default=None,
            help="host:port of a Beam Java expansion service with KafkaIO, for --kafka_reader xlang "
                 "(`python -m devservers run expansion` starts one locally).")
        parser.add_argument(
            "--kafka_start", default="earliest", choices=["earliest", "latest"],
            help="Where a new consumer group starts. Default: earliest.")
        parser.add_argument(
            "--deliveries", default="local_run/deliveries",
            help="Streaming: where messages released for delivery go: kafka://TOPIC, "
                 "pubsub://projects/P/topics/T or a folder URL. "
                 "Each keeps its message id (Kafka key and header) for de-duplication after a replay.")
        parser.add_argument(
            "--failures", default="local_run/failures",
            help="Streaming: where messages held back by the gate go (failed to archive, invalid), "
                 "kafka://TOPIC, pubsub://projects/P/topics/T or a folder URL.")
        parser.add_argument(
            "--gate_policy", default="strict", choices=["strict", "best_effort"],
            help="strict (CleverTap): only archived messages are delivered; best_effort (Braze): a "
                 "message whose archive failed is delivered anyway and the failure recorded.")
        parser.add_argument(
            "--summary", default=True, type=_flag,
            help="Print a one-screen summary when the job ends (true/false). Default: true.")

    def archiver_config(self) -> ArchiverConfig:
        return ArchiverConfig(
            profile=self.profile, compression=self.compression,
            default_region=self.default_region.upper() if self.default_region else None,
            max_message_bytes=self.max_message_bytes, default_tenant=self.tenant,
            key_template=self.key_template, email_format=self.email_format, object_mode=self.object_mode,
            batch=self.batch_limits())

    def batch_limits(self) -> BatchLimits:
        return BatchLimits(self.batch_seconds, self.batch_max_messages, self.batch_max_bytes, self.batch_shards)

    def check(self) -> None:
        """Raise UsageError for the first value the job cannot run with."""
        if self.max_in_flight < 1:
            raise UsageError(f"--max_in_flight must be 1 or more, not {self.max_in_flight}")
        if self.max_message_bytes < 1:
            raise UsageError(f"--max_message_bytes must be 1 or more, not {self.max_message_bytes}")
        for flag in ("transient_retries", "other_retries"):
            if getattr(self, flag) < 0:
                raise UsageError(f"--{flag} must not be negative, not {getattr(self, flag)}")
        for flag in ("retry_base_delay", "retry_max_delay", "breaker_cooldown", "hold_seconds"):
            value = getattr(self, flag)
            if not math.isfinite(value) or value < 0:
                raise UsageError(f"--{flag} must be a number of seconds, 0 or more, not {value}")
        if self.retry_max_delay < self.retry_base_delay:
            raise UsageError(f"--retry_max_delay ({self.retry_max_delay}) must not be below "
                             f"--retry_base_delay ({self.retry_base_delay})")
        if self.default_region is not None:
            check_region(self.default_region)
        try:
            self.batch_limits().check()
        except ValueError as exc:
            raise UsageError(f"--{str(exc).replace('batch ', 'batch_', 1)}") from None
        if self.key_template is not None:
            try:
                KeyTemplate(self.key_template)
            except TemplateError as exc:
                raise UsageError(f"--key_template: {exc}") from None
        if self.object_mode == "batched" and (self.key_template or self.email_format != "json"):
            raise UsageError("--object_mode batched keys objects by window and shard and archives JSON "
                             "Lines: it takes no --key_template and only --email_format json")
        if self.run_id is not None:
            check_run_id(self.run_id)
        if "://" in self.spill_dir and not self.spill_dir.startswith("file://"):
            raise UsageError(f"--spill_dir must be a local folder, not {self.spill_dir.split('://')[0]}://...")
        if self.kafka_topic and self.kafka_reader == "xlang" and not self.expansion_service:
            raise UsageError("--kafka_reader xlang needs --expansion_service host:port")
        try:
            urls = [("--input", pattern) for pattern in (self.input or "").split(",")] + [
                ("--outcomes", self.outcomes), ("--dead_letters", self.dead_letters), ("--tenants", self.tenants)]
            for flag, url in urls:
                if url and url.strip():
                    check_url(url.strip(), flag)  # credentials never ride in a URL (nor in a log)
            spec = self.store_spec()
            if self.store_client == "direct":
                self._check_direct(spec)
            self.archiver_config()
            if not (self.kafka_topic or self.pubsub_subscription):
                self.dead_letters_url()
        except UsageError:
            raise
        except ValueError as exc:
            raise UsageError(str(exc)) from None

    def _check_direct(self, spec: StoreSpec) -> None:
        """--store_client direct: every destination must be able to have it (ValueError)."""
        directory = self.tenant_directory()
        destinations = ([t.destination for t in directory.tenants.values()] if directory is not None
                        else [spec.resolved()])
        for destination in destinations:
            try:
                direct.plan(destination, "direct")
            except ValueError as exc:
                raise ValueError(f"--store_client direct: {redact_url(destination.url)}: "
                                 f"{str(exc).split(': ', 1)[-1]}") from None

    def spill_folder(self, run_id: str) -> str:
        """The local folder this run's sinks spill into (absolute: workers share it)."""
        root = self.spill_dir[len("file://"):] if self.spill_dir.startswith("file://") else self.spill_dir
        return os.path.join(os.path.abspath(root), run_id)

    def input_patterns(self) -> list[str]:
        """--input's comma-separated patterns."""
        return [p.strip() for p in (self.input or "").split(",") if p.strip()]

    def parsed_storage_options(self) -> dict:
        try:
            value = json.loads(self.storage_options or "{}")
        except ValueError as exc:
            raise ValueError(f"--storage_options is not valid JSON: {exc}") from None
        if not isinstance(value, dict):
            raise ValueError("--storage_options must be a JSON object")
        return value

    def store_spec(self) -> StoreSpec:
        destination = Destination(self.destination, self.parsed_storage_options(), default=True,
                                  allow_insecure_http=self.allow_insecure_http)
        check_transport(destination, "--destination")
        return StoreSpec(
            destination=destination,
            max_in_flight=self.max_in_flight,
            retry=RetryPolicy(self.transient_retries, self.other_retries,
                              self.retry_base_delay, self.retry_max_delay, self.hold_seconds),
            breaker_cooldown=self.breaker_cooldown,
            overwrite=self.overwrite,
            client=self.store_client)

    def tenant_directory(self) -> TenantDirectory | None:
        """The tenant file's tenants, or None for the single --destination tenant."""
        if not self.tenants:
            return None
        try:
            return tenants.load(self.tenants)
        except OSError as exc:  # missing, a folder, unreadable, refused
            raise UsageError(f"cannot read the --tenants file {self.tenants}: {type(exc).__name__}") from None

    def dead_letters_url(self) -> str:
        if self.dead_letters:
            return self.dead_letters
        if self.tenants:
            raise ValueError("--dead_letters is required with --tenants (dead letters hold recipients' "
                             "data: give a location with the archive's access control)")
        return self.destination.rstrip("/") + "/dead_letters"


class FlinkJobOptions(PipelineOptions):
    """The Flink runner's own options (Java's FlinkPipelineOptions) that this job's
    users set, declared so the strict flag check knows them and both `--flag=v` and
    `--flag v` reach the job server (Beam forwards an undeclared flag only in the
    `=` form). Beam's Python FlinkRunnerOptions declares --flink_master,
    --parallelism and --max_parallelism; these are the rest that matter for a
    streaming archive: checkpoints (how often, where, kept on cancel), restarts,
    bundle size and time, and restoring from a savepoint."""

    @classmethod
    def _add_argparse_args(cls, parser):
        for name, kind, text in _FLINK_OPTIONS:
            parser.add_argument(f"--{name}", type=kind, default=None, help=f"Flink runner: {text}")


def check_run_id(run_id: str) -> str:
    if not _RUN_ID.fullmatch(run_id or ""):
        raise UsageError(f"--run_id {run_id!r} is not a file-name segment: letters, digits, _ . - "
                         "only, at most 64, starting with a letter or digit")
    return run_id


def check_region(region: str) -> str:
    import phonenumbers

    if region.upper() not in phonenumbers.SUPPORTED_REGIONS:
        raise UsageError(f"--default_region {region!r} is not a region phone numbers are known for "
                         "(an ISO 3166 code such as US, GB, IN)")
    return region.upper()


class _StrictParser(_BeamArgumentParser):
    """Beam's parser, with argparse's errors raised instead of printed with the usage."""

    def error(self, message):
        raise UsageError(message)


def options_parser() -> _StrictParser:
    """A parser of every flag any PipelineOptions class defines: Beam's own, any
    runner's, this job's (Beam's get_all_options builds its parser the same way)."""
    parser = _StrictParser(allow_abbrev=False, add_help=False, conflict_handler="resolve")
    seen, pending = set(), list(PipelineOptions.__subclasses__())
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        if "_add_argparse_args" in cls.__dict__ and str(cls) not in seen:
            seen.add(str(cls))
            cls._add_argparse_args(parser)
    return parser


def unknown_flags(argv: list[str]) -> list[tuple[str, str | None]]:
    """(flag, the closest known flag or None) for each argument no options class
    knows: a misspelled flag, a single-dash flag, a stray word."""
    parser = options_parser()
    _, unknown = parser.parse_known_args(argv)
    known = [option for action in parser._actions for option in action.option_strings]
    found, after_flag = [], False
    for arg in unknown:
        if arg.startswith("-") and arg != "-":
            name = arg.split("=", 1)[0]
            close = difflib.get_close_matches(name, known, n=1)
            found.append((name, close[0] if close else None))
            after_flag = "=" not in arg
        elif after_flag:  # the value of the unknown flag before it
            after_flag = False
        else:
            found.append((arg, None))
    return found


def check_flags(argv: list[str]) -> None:
    """Raise UsageError for an unknown flag or a value of the wrong type or choice."""
    wrong = unknown_flags(argv)  # parses too: a bad value raises here
    if wrong:
        flag, close = wrong[0]
        what = f"unknown flag {flag}" if flag.startswith("-") else f"unexpected argument {flag!r}"
        raise UsageError(what + (f" (did you mean {close}?)" if close else "") + " (see --help)")


def _flag(text: str) -> bool:
    value = str(text).strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, not {text!r}")


_FLINK_OPTIONS = (
    ("checkpointing_interval", int, "milliseconds between checkpoints (a streaming job on Flink "
                                    "commits what it read only through checkpoints: set it)"),
    ("checkpointing_mode", str, "EXACTLY_ONCE or AT_LEAST_ONCE"),
    ("checkpoint_timeout_millis", int, "a checkpoint not done in this long is abandoned"),
    ("min_pause_between_checkpoints", int, "milliseconds from one checkpoint's end to the next's start"),
    ("num_concurrent_checkpoints", int, "checkpoints in flight at once"),
    ("fail_on_checkpointing_errors", _flag, "fail the job when a checkpoint fails"),
    ("finish_bundle_before_checkpointing", _flag, "finish the open bundle before each checkpoint"),
    ("state_backend", str, "rocksdb, or hashmap (the default)"),
    ("state_backend_storage_path", str, "where the state backend writes checkpoints (a URL)"),
    ("externalized_checkpoints_enabled", _flag, "keep checkpoints outside the job"),
    ("retain_externalized_checkpoints_on_cancellation", _flag, "keep them when the job is cancelled"),
    ("number_of_execution_retries", int, "restarts after a failure (-1: the cluster's strategy)"),
    ("execution_retry_delay", int, "milliseconds before a restart"),
    ("max_bundle_size", int, "elements per bundle at most"),
    ("max_bundle_time_mills", int, "milliseconds a bundle stays open at most (latency on a thin stream)"),
    ("auto_watermark_interval", int, "milliseconds between watermark updates"),
    ("latency_tracking_interval", int, "milliseconds between latency markers (0: off)"),
    ("savepoint_path", str, "restore the job from this savepoint or retained checkpoint"),
    ("allow_non_restored_state", _flag, "restore even if some saved state has no operator"),
    ("shutdown_sources_after_idle_ms", int, "stop idle sources after this long (-1: never)"),
)
