"""How one object write reaches each cloud, with its metadata and compliance options.

fsspec gives one URL-first interface, but each backend takes object metadata
its own way: s3fs passes PutObject parameters through, gcsfs takes a content
type and fixed-key metadata, adlfs takes ContentSettings and the upload_blob
keywords. One class per backend translates our ObjectMetadata and the
destination's options into those, and asks the server to verify the bytes
where it can (S3 x-amz-checksum-sha256, Azure Content-MD5, GCS md5 check).

It also says which endpoint each client will use, for the HTTPS rule in
`archive.tenants.check_transport`: `s3_endpoint` asks botocore itself (which
reads AWS_ENDPOINT_URL[_S3], the AWS config file's profile and services
section, and use_ssl), and `check_client_transport` reads a built filesystem's
resolved endpoint (gcsfs' location, adlfs' service URL, s3fs' client).
"""

from __future__ import annotations

import base64
import datetime as _dt
import functools
import os
import threading
from typing import Any, Mapping

from archive.tenants import Destination, check_endpoint


def client_options(destination: Destination, max_in_flight: int = 10) -> dict[str, Any]:
    """fsspec options for the destination: the user's, over defaults that leave
    retrying to our RetryPolicy, so one policy (and one attempt count) governs,
    and that let `max_in_flight` requests be open at once.

    s3fs retries SlowDown itself and botocore retries throttling and 5xx; both
    are turned off unless the tenant's storage options say otherwise. botocore
    keeps 10 connections per client unless told more, which would cap the
    writes in flight at 10. (gcsfs retries 5xx and 429 inside every request and
    has no switch for it; Azure's per-call retries are turned off in
    AzureBackend.put. Both pool 100 connections.)
    """
    options = dict(destination.storage_options)
    if destination.protocol in ("s3", "s3a"):
        config = dict(options.get("config_kwargs") or {})
        config.setdefault("retries", {"total_max_attempts": 1})
        config.setdefault("max_pool_connections", max(10, max_in_flight))
        options["config_kwargs"] = config
    return options


class Backend:
    """A write through the filesystem's own async `_pipe_file`, without metadata."""

    def __init__(self, destination: Destination):
        self.destination = destination

    async def put(self, fs, path: str, data: bytes, metadata, create_only: bool = False) -> None:
        """Write the object. With `create_only`, FileExistsError when the key
        already holds an object (the store then compares the bytes)."""
        if create_only and await fs._exists(path):  # no conditional write here: check first
            raise FileExistsError(path)
        await fs._pipe_file(path, data)


class S3Backend(Backend):
    def __init__(self, destination: Destination, fs=None):
        super().__init__(destination)
        if fs is not None:
            fs.retries = 1  # s3fs' own SlowDown loop (a class attribute, no constructor option)

    async def put(self, fs, path: str, data: bytes, metadata, create_only: bool = False) -> None:
        args = self.put_object_args(metadata)
        if create_only:
            # A conditional PUT: S3 answers 412 when the key exists, which s3fs raises as FileExistsError.
            args["IfNoneMatch"] = "*"
        _send_body_at_once(await fs.set_session())
        await fs._pipe_file(path, data, **args)

    def put_object_args(self, metadata, now: _dt.datetime | None = None) -> dict[str, Any]:
        s3 = self.destination.s3
        args: dict[str, Any] = {"ContentType": metadata.content_type}
        if metadata.content_encoding:
            args["ContentEncoding"] = metadata.content_encoding
        user = _user_metadata(metadata)
        if user:
            args["Metadata"] = user
        if metadata.sha256:
            # S3 recomputes it and refuses the PUT on a mismatch; Object Lock requires a checksum.
            args["ChecksumAlgorithm"] = "SHA256"
            args["ChecksumSHA256"] = base64.b64encode(bytes.fromhex(metadata.sha256)).decode("ascii")
        if s3.sse:
            args["ServerSideEncryption"] = s3.sse
        if s3.kms_key_id:
            args["SSEKMSKeyId"] = s3.kms_key_id
        if s3.object_lock_mode:
            moment = now or _dt.datetime.now(_dt.timezone.utc)
            args["ObjectLockMode"] = s3.object_lock_mode
            args["ObjectLockRetainUntilDate"] = moment + _dt.timedelta(days=s3.object_lock_days)
        if s3.storage_class:
            args["StorageClass"] = s3.storage_class
        return args


def _send_body_at_once(client) -> None:
    """No `Expect: 100-continue` on this client's PUTs (botocore adds it to every
    PutObject). aiohttp waits for the "100 Continue" before sending the body, and
    starts the read timeout only once the body is out: on a connection that
    accepts but never answers, a PUT would wait forever, holding its slot. Without
    it, the read timeout (s3fs: 15 s) ends the attempt and the retry policy goes
    on; an object is small, so sending it before S3 could refuse it costs nothing."""
    if getattr(client, "_archive_body_at_once", False):
        return
    from botocore.handlers import add_expect_header

    client.meta.events.unregister("before-call.s3", add_expect_header)
    client._archive_body_at_once = True


class AzureBackend(Backend):
    async def put(self, fs, path: str, data: bytes, metadata, create_only: bool = False) -> None:
        from azure.core.exceptions import ResourceExistsError
        from azure.storage.blob import ContentSettings, StandardBlobTier

        container, blob, _ = fs.split_path(path)
        options: dict[str, Any] = {
            "overwrite": not create_only,  # without overwrite the service refuses an existing blob (409)
            "metadata": _user_metadata(metadata),
            "content_settings": ContentSettings(
                content_type=metadata.content_type, content_encoding=metadata.content_encoding),
            "validate_content": True,  # Content-MD5 per request, checked by the service
            "retry_total": 0,          # azure-core's own retries off: our RetryPolicy decides
        }
        azure = self.destination.azure
        if azure.encryption_scope:
            options["encryption_scope"] = azure.encryption_scope
        if azure.tier:
            options["standard_blob_tier"] = StandardBlobTier(azure.tier)
        # adlfs fixes the blob metadata to its own; the SDK client it holds takes ours.
        async with fs.service_client.get_blob_client(container=container, blob=blob) as client:
            try:
                await client.upload_blob(data, **options)
            except ResourceExistsError as exc:
                if getattr(exc, "error_code", None) in ("BlobAlreadyExists", None):
                    raise FileExistsError(path) from exc
                raise


class GCSBackend(Backend):
    async def put(self, fs, path: str, data: bytes, metadata, create_only: bool = False) -> None:
        from gcsfs.core import simple_upload

        bucket, key, _ = fs.split_path(path)
        fixed = {"content_encoding": metadata.content_encoding} if metadata.content_encoding else None
        # gcsfs' _pipe_file has no KMS key; its simple_upload (one request) does.
        await simple_upload(fs, bucket, key, data, _user_metadata(metadata) or None, "md5",
                            metadata.content_type, fixed_key_metadata=fixed,
                            kms_key_name=self.destination.gcs.kms_key_name,
                            # ifGenerationMatch=0: GCS answers 412 when the object exists, gcsfs raises FileExistsError
                            mode="create" if create_only else "overwrite")
        fs.invalidate_cache(fs._parent(path))


def _user_metadata(metadata) -> dict[str, str]:
    user = {}
    if metadata.sha256:
        user["sha256"] = metadata.sha256
    if metadata.compression:
        user["compression"] = metadata.compression
    return user


def for_filesystem(fs, destination: Destination) -> Backend:
    protocols = (fs.protocol,) if isinstance(fs.protocol, str) else tuple(fs.protocol)
    if {"s3", "s3a"} & set(protocols):
        return S3Backend(destination, fs)
    if {"abfs", "az", "abfss"} & set(protocols):
        return AzureBackend(destination)
    if {"gs", "gcs"} & set(protocols):
        return GCSBackend(destination)
    return Backend(destination)


# --- which endpoint each client will use ---------------------------------------------------

def s3_endpoint(options: Mapping[str, Any]) -> tuple[str, str | None] | None:
    """(endpoint URL, where it came from) that s3fs' botocore client will use with
    these storage options, resolved by botocore as s3fs would build it; no
    connection, no credential lookup. None when it cannot be known here: the
    options name an AWS profile this machine's config lacks (the worker, which
    has it, checks again when it opens the store). ValueError, naming no value,
    when botocore refuses the configuration."""
    import botocore.exceptions

    client_kwargs = options.get("client_kwargs")
    client_kwargs = dict(client_kwargs) if isinstance(client_kwargs, Mapping) else {}
    explicit = options.get("endpoint_url") or client_kwargs.get("endpoint_url")
    use_ssl = client_kwargs.get("use_ssl", options.get("use_ssl", True))  # s3fs' precedence
    config_kwargs = options.get("config_kwargs")
    ignore = config_kwargs.get("ignore_configured_endpoint_urls") if isinstance(config_kwargs, Mapping) else None
    region = client_kwargs.get("region_name")
    profile = options.get("profile") if isinstance(options.get("profile"), str) else None
    try:
        try:
            endpoint, session = _botocore_endpoint(profile, False, explicit, use_ssl, ignore, region)
        except botocore.exceptions.ProfileNotFound:
            # The profile is not here: what the environment alone says still counts.
            endpoint, session = _botocore_endpoint(None, True, explicit, use_ssl, ignore, region)
    except botocore.exceptions.ProfileNotFound:
        return None
    except botocore.exceptions.ConfigParseError:
        raise ValueError("the AWS config file cannot be read") from None
    except (botocore.exceptions.BotoCoreError, ValueError, TypeError) as exc:
        raise ValueError(f"the S3 client cannot be configured ({type(exc).__name__})") from None
    if explicit:
        return endpoint, None
    ignored = ignore if ignore is not None else session.get_config_variable("ignore_configured_endpoint_urls")
    if not ignored:
        for name in ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"):
            if os.environ.get(name):
                return endpoint, f"environment variable {name}"
    if not use_ssl and endpoint.lower().startswith("http://") and ".amazonaws.com" in endpoint.lower():
        return endpoint, "use_ssl: false"
    return endpoint, "the AWS config file's profile"


_SESSIONS_LOCK = threading.Lock()


def _botocore_endpoint(profile, config_less, explicit, use_ssl, ignore, region):
    from botocore.config import Config

    with _SESSIONS_LOCK:  # a botocore session is not safe to share across threads
        session = _session(profile, config_less, _config_stamp())
        client = session.create_client(
            "s3", region_name=region or None, endpoint_url=explicit or None, use_ssl=bool(use_ssl),
            aws_access_key_id="transport-check", aws_secret_access_key="transport-check",
            config=Config(ignore_configured_endpoint_urls=ignore))
    return client.meta.endpoint_url, session


def _config_stamp() -> tuple:
    """What a cached session depends on: the AWS_* variables and the config file's state."""
    variables = tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith("AWS_")))
    path = os.path.expanduser(os.environ.get("AWS_CONFIG_FILE", "~/.aws/config"))
    try:
        stat = os.stat(path)
        return variables, path, stat.st_mtime_ns, stat.st_size
    except OSError:
        return variables, path, None, None


@functools.lru_cache(maxsize=16)
def _session(profile, config_less, stamp):
    import botocore.session

    if not config_less:
        return botocore.session.Session(profile=profile)
    # AWS_PROFILE may name the missing profile too: read neither it nor the file.
    return botocore.session.Session(session_vars={
        "profile": (None, None, None, None), "config_file": (None, None, os.devnull, None)})


def client_endpoint(fs) -> str | None:
    """The endpoint a built filesystem's client resolved, where it can be read
    without a connection: gcsfs' location, adlfs' service URL, s3fs' client
    once it exists."""
    location = getattr(fs, "_location", None)  # gcsfs: endpoint_url, else STORAGE_EMULATOR_HOST, else Google
    if isinstance(location, str):
        return location
    service = getattr(fs, "service_client", None)  # adlfs
    if isinstance(getattr(service, "url", None), str):
        return service.url
    client = getattr(fs, "_s3", None)  # s3fs, after its first use
    endpoint = getattr(getattr(client, "meta", None), "endpoint_url", None)
    return endpoint if isinstance(endpoint, str) else None


def check_client_transport(fs, destination: Destination, where: str) -> None:
    """The HTTPS rule on what the filesystem will actually use (TenantConfigError)."""
    if destination.allow_insecure_http:
        return
    endpoint = client_endpoint(fs)
    if endpoint is not None:
        check_endpoint(endpoint, where, "the filesystem's resolved endpoint")
