"""How one object write reaches each cloud, with its metadata and compliance options.

fsspec gives one URL-first interface, but each backend takes object metadata
its own way: s3fs passes PutObject parameters through, gcsfs takes a content
type and fixed-key metadata, adlfs takes ContentSettings and the upload_blob
keywords. One class per backend translates our ObjectMetadata and the
destination's options into those, and asks the server to verify the bytes
where it can (S3 x-amz-checksum-sha256, Azure Content-MD5, GCS md5 check).
"""

from __future__ import annotations

import base64
import datetime as _dt
from typing import Any

from archive.tenants import Destination


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

    async def put(self, fs, path: str, data: bytes, metadata) -> None:
        await fs._pipe_file(path, data)


class S3Backend(Backend):
    def __init__(self, destination: Destination, fs=None):
        super().__init__(destination)
        if fs is not None:
            fs.retries = 1  # s3fs' own SlowDown loop (a class attribute, no constructor option)

    async def put(self, fs, path: str, data: bytes, metadata) -> None:
        await fs._pipe_file(path, data, **self.put_object_args(metadata))

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


class AzureBackend(Backend):
    async def put(self, fs, path: str, data: bytes, metadata) -> None:
        from azure.storage.blob import ContentSettings, StandardBlobTier

        container, blob, _ = fs.split_path(path)
        options: dict[str, Any] = {
            "overwrite": True,
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
            await client.upload_blob(data, **options)


class GCSBackend(Backend):
    async def put(self, fs, path: str, data: bytes, metadata) -> None:
        from gcsfs.core import simple_upload

        bucket, key, _ = fs.split_path(path)
        fixed = {"content_encoding": metadata.content_encoding} if metadata.content_encoding else None
        # gcsfs' _pipe_file has no KMS key; its simple_upload (one request) does.
        await simple_upload(fs, bucket, key, data, _user_metadata(metadata) or None, "md5",
                            metadata.content_type, fixed_key_metadata=fixed,
                            kms_key_name=self.destination.gcs.kms_key_name)
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
