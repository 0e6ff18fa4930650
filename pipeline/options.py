"""Pipeline options of the archive job; every flag has help text (`--help`)."""

from __future__ import annotations

import json

from apache_beam.options.pipeline_options import PipelineOptions

from archive.archiver import ArchiverConfig, DEFAULT_TENANT
from archive.encoding import CODECS
from archive.envelope import DEFAULT_MAX_MESSAGE_BYTES
from archive.profiles import PROFILES
from archive.retry import RetryPolicy
from archive import tenants
from archive.store import StoreSpec
from archive.tenants import Destination, TenantDirectory, check_transport

DEFAULT_DESTINATION = "local_run/archive"
DEFAULT_OUTCOMES = "local_run/outcomes"


class ArchiveOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument(
            "--input", required=False,
            help="Outbound messages to archive: an fsspec URL or glob (file://, memory://, s3://, gs://, "
                 "abfs://, or a local path) of JSON Lines files (plain, .gz, .lz4 or .zst) or Parquet "
                 "files (.parquet). Several patterns may be given separated by commas.")
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
            "--breaker_cooldown", type=float, default=30.0,
            help="Seconds a tenant's destination rests after it rejected our credentials before "
                 "one write probes it again (its other writes fail fast meanwhile). Default: 30.")
        parser.add_argument(
            "--outcomes", default=DEFAULT_OUTCOMES,
            help="URL of the folder that receives the archive outcomes as JSON Lines "
                 "(outcomes-NNNNN-of-NNNNN.jsonl): one record per input message. "
                 f"Default: {DEFAULT_OUTCOMES}.")
        parser.add_argument(
            "--dead_letters", default=None,
            help="URL of the folder that receives the original bytes of every message that was "
                 "not archived because of its content or its unknown tenant "
                 "(dead-letters-NNNNN-of-NNNNN.jsonl). They hold recipients' data, so the default "
                 "is inside the archive destination: <destination>/dead_letters; with --tenants "
                 "it must be given.")
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
        # --- streaming -----------------------------------------------------------------
        parser.add_argument(
            "--kafka_topic", default=None,
            help="Stream outbound messages from this Kafka topic instead of reading --input "
                 "(runs on Prism locally; see the README).")
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
            profile=self.profile, compression=self.compression, default_region=self.default_region,
            max_message_bytes=self.max_message_bytes, default_tenant=self.tenant)

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
                              self.retry_base_delay, self.retry_max_delay),
            breaker_cooldown=self.breaker_cooldown)

    def tenant_directory(self) -> TenantDirectory | None:
        """The tenant file's tenants, or None for the single --destination tenant."""
        return tenants.load(self.tenants) if self.tenants else None

    def dead_letters_url(self) -> str:
        if self.dead_letters:
            return self.dead_letters
        if self.tenants:
            raise ValueError("--dead_letters is required with --tenants (dead letters hold recipients' "
                             "data: give a location with the archive's access control)")
        return self.destination.rstrip("/") + "/dead_letters"


def _flag(text: str) -> bool:
    value = str(text).strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, not {text!r}")
