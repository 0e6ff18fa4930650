"""Per-cloud write arguments, and which backend a filesystem gets."""

from __future__ import annotations

import base64
import datetime as _dt
import hashlib
import socket

import adlfs
import fsspec
import gcsfs
import pytest
import s3fs
from fsspec.implementations.local import LocalFileSystem
from fsspec.implementations.memory import MemoryFileSystem

from archive.backends import AzureBackend, Backend, GCSBackend, S3Backend, client_options, for_filesystem
from archive.store import ObjectMetadata
from archive.tenants import AzureOptions, Destination, GCSOptions, S3Options
from tests.faultfs import FaultyFileSystem

NOW = _dt.datetime(2024, 7, 31, 16, 28, 2, 680000, tzinfo=_dt.timezone.utc)
DATA = b'\x04"M\x18 lz4 frame of a message'
SHA = hashlib.sha256(DATA).hexdigest()
CHECKSUM = base64.b64encode(hashlib.sha256(DATA).digest()).decode("ascii")
KMS = "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"

PLAIN = ObjectMetadata()
LZ4 = ObjectMetadata("application/json", None, SHA, "lz4")
GZIP = ObjectMetadata("application/json", "gzip", SHA, "gzip")


def _s3(**options) -> Destination:
    return Destination("s3://archive", s3=S3Options(**options))


PUT_OBJECT_ARGS = [
    # (destination, metadata, expected arguments, all of them)
    pytest.param(_s3(), PLAIN, {"ContentType": "application/json"}, id="nothing-configured"),
    pytest.param(_s3(), ObjectMetadata("application/x-ndjson"), {"ContentType": "application/x-ndjson"},
                 id="content-type"),
    pytest.param(_s3(), LZ4, {"ContentType": "application/json",
                              "Metadata": {"sha256": SHA, "compression": "lz4"}, "ChecksumAlgorithm": "SHA256", "ChecksumSHA256": CHECKSUM},
                 id="lz4-no-content-encoding"),
    pytest.param(_s3(), GZIP, {"ContentType": "application/json", "ContentEncoding": "gzip",
                               "Metadata": {"sha256": SHA, "compression": "gzip"}, "ChecksumAlgorithm": "SHA256", "ChecksumSHA256": CHECKSUM},
                 id="gzip"),
    pytest.param(_s3(), ObjectMetadata(sha256=SHA), {"ContentType": "application/json", "Metadata": {"sha256": SHA},
                                                     "ChecksumAlgorithm": "SHA256", "ChecksumSHA256": CHECKSUM}, id="sha256-only"),
    pytest.param(_s3(), ObjectMetadata(compression="zstd", content_encoding="zstd"),
                 {"ContentType": "application/json", "ContentEncoding": "zstd", "Metadata": {"compression": "zstd"}},
                 id="compression-only"),
    pytest.param(_s3(sse="AES256"), PLAIN, {"ContentType": "application/json", "ServerSideEncryption": "AES256"},
                 id="sse-s3"),
    pytest.param(_s3(sse="aws:kms"), PLAIN, {"ContentType": "application/json", "ServerSideEncryption": "aws:kms"},
                 id="sse-kms-aws-managed-key"),
    pytest.param(_s3(sse="aws:kms", kms_key_id=KMS), PLAIN,
                 {"ContentType": "application/json", "ServerSideEncryption": "aws:kms", "SSEKMSKeyId": KMS},
                 id="sse-kms-with-key"),
    pytest.param(_s3(object_lock_mode="COMPLIANCE", object_lock_days=2555), GZIP,
                 {"ContentType": "application/json", "ContentEncoding": "gzip",
                  "Metadata": {"sha256": SHA, "compression": "gzip"}, "ChecksumAlgorithm": "SHA256", "ChecksumSHA256": CHECKSUM,
                  "ObjectLockMode": "COMPLIANCE",
                  "ObjectLockRetainUntilDate": _dt.datetime(2031, 7, 30, 16, 28, 2, 680000, tzinfo=_dt.timezone.utc)},
                 id="object-lock-compliance-7y"),
    pytest.param(_s3(object_lock_mode="GOVERNANCE", object_lock_days=1), PLAIN,
                 {"ContentType": "application/json", "ObjectLockMode": "GOVERNANCE",
                  "ObjectLockRetainUntilDate": NOW + _dt.timedelta(days=1)},
                 id="object-lock-governance-1d"),
    pytest.param(_s3(storage_class="GLACIER_IR"), PLAIN,
                 {"ContentType": "application/json", "StorageClass": "GLACIER_IR"}, id="storage-class"),
    pytest.param(_s3(sse="aws:kms", kms_key_id=KMS, object_lock_mode="COMPLIANCE", object_lock_days=365,
                     storage_class="STANDARD_IA"), LZ4,
                 {"ContentType": "application/json", "Metadata": {"sha256": SHA, "compression": "lz4"},
                  "ChecksumAlgorithm": "SHA256", "ChecksumSHA256": CHECKSUM, "ServerSideEncryption": "aws:kms", "SSEKMSKeyId": KMS,
                  "ObjectLockMode": "COMPLIANCE", "ObjectLockRetainUntilDate": NOW + _dt.timedelta(days=365),
                  "StorageClass": "STANDARD_IA"},
                 id="everything"),
]


@pytest.mark.parametrize("destination, metadata, expected", PUT_OBJECT_ARGS)
def test_put_object_args(destination, metadata, expected):
    assert S3Backend(destination).put_object_args(metadata, now=NOW) == expected


def test_checksum_is_base64_of_the_raw_digest():
    args = S3Backend(_s3()).put_object_args(GZIP, now=NOW)
    assert base64.b64decode(args["ChecksumSHA256"]) == hashlib.sha256(DATA).digest()
    assert len(args["ChecksumSHA256"]) == 44  # 32 bytes, not the 64-character hex text
    assert args["Metadata"]["sha256"] == SHA


def test_retain_until_defaults_to_now_in_utc():
    backend = S3Backend(_s3(object_lock_mode="GOVERNANCE", object_lock_days=10))
    before = _dt.datetime.now(_dt.timezone.utc)
    until = backend.put_object_args(PLAIN)["ObjectLockRetainUntilDate"]
    after = _dt.datetime.now(_dt.timezone.utc)
    assert until.tzinfo is not None
    assert before + _dt.timedelta(days=10) <= until <= after + _dt.timedelta(days=10)


def test_put_object_args_are_fresh_each_call():
    backend = S3Backend(_s3())
    first = backend.put_object_args(LZ4, now=NOW)
    first["Metadata"]["sha256"] = "tampered"
    assert backend.put_object_args(LZ4, now=NOW)["Metadata"]["sha256"] == SHA


# --- which backend for which filesystem --------------------------------------------------------

@pytest.fixture
def no_network(monkeypatch):
    """Building a filesystem must not touch the network."""
    def refuse(*args, **kwargs):
        raise AssertionError(f"network call while building a filesystem: {args!r}")
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)


FILESYSTEMS = [
    # (a function that builds the filesystem, the backend class)
    pytest.param(lambda: s3fs.S3FileSystem(anon=True, skip_instance_cache=True), S3Backend, id="s3fs"),
    pytest.param(lambda: adlfs.AzureBlobFileSystem(account_name="dummyaccount", skip_instance_cache=True),
                 AzureBackend, id="adlfs"),
    pytest.param(lambda: gcsfs.GCSFileSystem(token="anon", skip_instance_cache=True), GCSBackend, id="gcsfs"),
    pytest.param(lambda: LocalFileSystem(), Backend, id="local"),
    pytest.param(lambda: MemoryFileSystem(), Backend, id="memory"),
    pytest.param(lambda: FaultyFileSystem(), Backend, id="faulty"),
    *[pytest.param(lambda p=protocol, kw=kwargs: fsspec.filesystem(p, skip_instance_cache=True, **kw), backend,
                   id=f"fsspec-{protocol}")
      for protocol, kwargs, backend in [
          ("s3", {"anon": True}, S3Backend), ("s3a", {"anon": True}, S3Backend),
          ("abfs", {"account_name": "dummyaccount"}, AzureBackend),
          ("abfss", {"account_name": "dummyaccount"}, AzureBackend),
          ("az", {"account_name": "dummyaccount"}, AzureBackend),
          ("gs", {"token": "anon"}, GCSBackend), ("gcs", {"token": "anon"}, GCSBackend),
          ("file", {}, Backend), ("local", {}, Backend), ("memory", {}, Backend)]],
]


@pytest.mark.parametrize("make, backend_class", FILESYSTEMS)
def test_for_filesystem(no_network, make, backend_class):
    destination = Destination("s3://archive", {"secret": "x"}, s3=S3Options(sse="AES256"),
                              azure=AzureOptions(tier="Cool"), gcs=GCSOptions("k"))
    backend = for_filesystem(make(), destination)
    assert type(backend) is backend_class
    assert backend.destination is destination


@pytest.mark.parametrize("url, storage_options, max_in_flight, expected", [
    ("s3://archive", {}, 64,
     {"config_kwargs": {"retries": {"total_max_attempts": 1}, "max_pool_connections": 64}}),
    # botocore's own pool of 10 is the floor; the user's settings win
    ("s3://archive", {}, 4, {"config_kwargs": {"retries": {"total_max_attempts": 1}, "max_pool_connections": 10}}),
    ("s3://archive", {"config_kwargs": {"max_pool_connections": 7, "retries": {"max_attempts": 5}}}, 64,
     {"config_kwargs": {"retries": {"max_attempts": 5}, "max_pool_connections": 7}}),
    ("s3://archive", {"key": "k", "client_kwargs": {"endpoint_url": "http://127.0.0.1:9"}}, 32,
     {"key": "k", "client_kwargs": {"endpoint_url": "http://127.0.0.1:9"},
      "config_kwargs": {"retries": {"total_max_attempts": 1}, "max_pool_connections": 32}}),
    ("gs://archive", {"token": "anon"}, 64, {"token": "anon"}),
    ("abfs://archive", {"account_name": "a"}, 64, {"account_name": "a"}),
    ("/tmp/archive", {}, 64, {}),
], ids=["s3", "s3-small", "s3-user-wins", "s3-keeps-options", "gcs", "azure", "local"])
def test_client_options_let_every_write_in_flight_have_a_connection(url, storage_options, max_in_flight, expected):
    assert client_options(Destination(url, storage_options), max_in_flight) == expected
