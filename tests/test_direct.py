"""The direct (obstore) write path: which destinations get it, and what it writes.

The choice (`archive.direct.plan`) is a pure function, tested with a table;
the writes go to moto and Azurite on 127.0.0.1 and are read back with boto3
and azure-storage-blob. tests/test_object_stores.py runs every cloud test over
this path and the fsspec one.
"""

from __future__ import annotations

import base64
import hashlib
import socket
import threading
import uuid

import pytest

from archive import direct
from archive.errors import ErrorClass, classify, describe
from archive.retry import RetryPolicy
from archive.store import ObjectMetadata, StoreSpec
from archive.tenants import AzureOptions, Destination, GCSOptions, S3Options
from devservers import azurite
from devservers.faultproxy import FaultProxy

S3_KEYS = {"key": "AKIDEXAMPLE", "secret": "wJalrXUtnFEMI"}
LOCAL = {**S3_KEYS, "client_kwargs": {"endpoint_url": "http://127.0.0.1:9000", "region_name": "eu-west-1"}}
AZURE = {"connection_string": azurite.connection_string("http://127.0.0.1:10000/devstoreaccount1")}
FAST = RetryPolicy(base_delay=0.001, max_delay=0.01, hold_seconds=0)


@pytest.fixture(autouse=True)
def no_aws_environment(monkeypatch):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                 "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)


def destination(url, options=None, **kwargs):
    return Destination(url, options if options is not None else LOCAL, default=True, **kwargs)


# --- the choice: hostile and unusual destinations first ------------------------------------

@pytest.mark.parametrize("dest, why", [
    (destination("s3://b", s3=S3Options(object_lock_mode="COMPLIANCE", object_lock_days=7)), "Object Lock"),
    (destination("s3://b", {}), "AWS SDK's chain"),                        # no keys: never guess (IMDS is off-host)
    (destination("s3://b", {"profile": "prod"}), "'profile'"),
    (destination("s3://b", {**LOCAL, "anon": True}), "'anon'"),
    (destination("s3://b", {**LOCAL, "client_kwargs": {"verify": False}}), "'verify'"),
    (destination("s3://b", {**LOCAL, "config_kwargs": {"retries": {"max_attempts": 5}}}), "retry"),
    (destination("s3://b", {**LOCAL, "config_kwargs": {"proxies": {"https": "p"}}}), "'proxies'"),
    (destination("s3://b/a b"), "escaped"),                                # obstore's Path would encode it
    (destination("s3://b/a/../c"), "escaped"),
    (destination("s3://b/a//c"), "escaped"),
    (destination("s3://b/caf\u00e9"), "escaped"),
    (destination("abfs://c", AZURE, azure=AzureOptions(encryption_scope="scope")), "encryption scope"),
    (destination("abfs://c", {"account_name": "a"}), "identity chain"),
    (destination("abfs://c", {"connection_string": "AccountName=a;AccountKey=k;Foo=1"}), "'foo'"),
    (destination("abfs://c", {"connection_string": "AccountName=a"}), "no key or SAS"),
    (destination("abfs://c", {**AZURE, "credential": "x"}), "'credential'"),
    (destination("gs://b", {"token": "anon"}), "XML API"),
    (destination("gs://b", {"token": "anon"}, gcs=GCSOptions(kms_key_name="k")), "XML API"),
    (destination("memory://b", {}), "no direct client"),
])
def test_destinations_that_keep_the_fsspec_path_say_why(dest, why):
    with pytest.raises(direct.NotDirect, match=why.replace("(", r"\(").replace(".", r"\.")):
        direct.plan(dest)
    with pytest.raises(ValueError, match="cannot write to this destination"):
        direct.plan(dest, "direct")


def test_the_fsspec_client_is_never_direct():
    with pytest.raises(direct.NotDirect, match="asked for"):
        direct.plan(destination("s3://b"), "fsspec")
    with pytest.raises(ValueError, match="one of"):
        direct.plan(destination("s3://b"), "boto")


@pytest.mark.parametrize("dest, expected", [
    (destination("s3://b/pre/fix", s3=S3Options(sse="aws:kms", kms_key_id="key-1", storage_class="GLACIER_IR")),
     {"bucket": "b", "region": "eu-west-1", "endpoint": "http://127.0.0.1:9000", "access_key_id": "AKIDEXAMPLE",
      "checksum_algorithm": "sha256", "virtual_hosted_style_request": False,
      "server_side_encryption": "aws:kms", "sse_kms_key_id": "key-1"}),
    (destination("s3://b", S3_KEYS),  # AWS itself: virtual-hosted, no endpoint override
     {"bucket": "b", "region": "us-east-1", "virtual_hosted_style_request": True}),
    (destination("s3://b", {**LOCAL, "config_kwargs": {"s3": {"addressing_style": "virtual"}}}),
     {"virtual_hosted_style_request": True}),
    (destination("abfs://c/p", AZURE, azure=AzureOptions(tier="Cool")),
     {"container_name": "c", "account_name": "devstoreaccount1", "endpoint": "http://127.0.0.1:10000/devstoreaccount1"}),
    (destination("az://c", {"account_name": "acct", "sas_token": "?sv=1&sig=2"}),
     {"account_name": "acct", "sas_key": "sv=1&sig=2", "endpoint": "https://acct.blob.core.windows.net"}),
])
def test_destinations_that_go_direct_carry_every_option(dest, expected):
    got = direct.plan(dest)
    assert {k: got.config.get(k) for k in expected} == expected
    if dest.storage_options is S3_KEYS:  # AWS itself: obstore builds the regional endpoint
        assert "endpoint" not in got.config
    assert got.prefix == dest.url.split("://", 1)[1].partition("/")[2]
    assert got.client_options["allow_http"] == got.config.get("endpoint", "https").startswith("http://")
    assert "secret" not in repr(got) and "wJalr" not in repr(got)


def test_credentials_from_the_environment_go_direct(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDENV")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret-env")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "token-env")
    got = direct.plan(destination("s3://b", {"client_kwargs": LOCAL["client_kwargs"]}))
    assert (got.config["access_key_id"], got.config["session_token"]) == ("AKIDENV", "token-env")
    monkeypatch.setenv("AWS_PROFILE", "prod")
    with pytest.raises(direct.NotDirect, match="AWS_PROFILE"):
        direct.plan(destination("s3://b", {"client_kwargs": LOCAL["client_kwargs"]}))


# --- obstore's errors, as the retry policy sees them -----------------------------------------

@pytest.mark.parametrize("text, status, error_class", [
    ("Generic S3 error: Error performing PUT http://127.0.0.1:1/b/k in 2ms - Server returned non-2xx status "
     "code: 503 Service Unavailable: <Error><Code>SlowDown</Code></Error>", 503, ErrorClass.THROTTLED),
    ("Generic S3 error: ... Server returned non-2xx status code: 500 Internal Server Error: ", 500, ErrorClass.SERVER),
    ("Generic S3 error: ... status code: 403 Forbidden: <Code>SignatureDoesNotMatch</Code>", 403, ErrorClass.AUTH),
    ("Generic MicrosoftAzure error: ... status code: 403 Forbidden: <Code>AuthorizationFailure</Code>", 403,
     ErrorClass.AUTH),
    ("Generic S3 error: ... status code: 404 Not Found: <Code>NoSuchBucket</Code>", 404, ErrorClass.NOT_FOUND),
    ("Generic S3 error: ... status code: 400 Bad Request: <Code>InvalidRequest</Code>", 400, ErrorClass.CLIENT),
    ("Generic S3 error: ... HTTP error: error sending request\n\nDebug source:\n  kind: Connect,", None,
     ErrorClass.CONNECTION),
    ("Generic S3 error: ... HTTP error: error sending request\n\nDebug source:\n  kind: Timeout,", None,
     ErrorClass.TIMEOUT),
    ("Generic S3 error: ... HTTP error: connection closed\n\nDebug source:\n  kind: Interrupted,", None,
     ErrorClass.CONNECTION),
])
def test_obstore_errors_are_classified_from_their_text(text, status, error_class):
    from obstore.exceptions import GenericError

    translated = direct.translate(GenericError(text))
    assert getattr(translated, "status", None) == status
    assert classify(translated) is error_class
    assert "Debug source" not in str(translated)


def test_an_existing_key_is_file_exists():
    from obstore.exceptions import AlreadyExistsError, PreconditionError

    for error in (AlreadyExistsError("Object at location k already exists"), PreconditionError("412")):
        assert isinstance(direct.translate(error), FileExistsError)


# --- real writes, read back with the cloud's own SDK -----------------------------------------

# every character a key segment may hold (archive.keys), in a prefix and in the key
ODD_KEY = "sent_messages/Email/202407/a_b.c~d=e+f@g,h:i-j/0123456789abcdef/m-1.json.lz4"


@pytest.fixture
def s3_bucket(s3_server):
    bucket = f"direct-{uuid.uuid4().hex[:10]}"
    s3_server.create_bucket(bucket)
    return bucket


def test_s3_direct_write_lands_byte_exact_with_its_metadata(s3_server, s3_bucket):
    dest = destination(f"s3://{s3_bucket}/pre.fix=1+2", s3_server.storage_options(),
                       s3=S3Options(sse="AES256", storage_class="STANDARD_IA"))
    store = StoreSpec(dest, retry=FAST).open()
    assert store.direct is not None
    data = b"\x04\x22\x4d\x18" + bytes(range(256)) * 4
    digest = hashlib.sha256(data).hexdigest()
    result = store.write(ODD_KEY, data, ObjectMetadata("application/x-lz4", None, digest, "lz4"))
    assert result.ok and result.attempts == 1 and not result.existed
    assert result.url == f"s3://{s3_bucket}/pre.fix=1+2/{ODD_KEY}"
    client = s3_server.boto3_client()
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=s3_bucket)["Contents"]]
    assert keys == [f"pre.fix=1+2/{ODD_KEY}"]  # exactly as written: nothing percent-encoded
    got = client.get_object(Bucket=s3_bucket, Key=keys[0], ChecksumMode="ENABLED")
    assert got["Body"].read() == data
    assert got["ContentType"] == "application/x-lz4" and "ContentEncoding" not in got
    assert got["Metadata"] == {"sha256": digest, "compression": "lz4"}
    assert got["ServerSideEncryption"] == "AES256" and got["StorageClass"] == "STANDARD_IA"
    again = store.write(ODD_KEY, data, ObjectMetadata("application/x-lz4", None, digest, "lz4"))
    assert again.ok and again.existed
    changed = store.write(ODD_KEY, data + b"!", ObjectMetadata("application/x-lz4"))
    assert changed.error_class is ErrorClass.CONFLICT
    assert client.get_object(Bucket=s3_bucket, Key=keys[0])["Body"].read() == data  # never replaced
    store.close()


def test_the_direct_s3_put_asks_s3_to_verify_its_sha256():
    """moto stores no checksum it was not told the algorithm of, so the request itself is
    read, on a loopback listener that answers like S3."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    seen = []

    def answer():
        conn, _ = listener.accept()
        with conn:
            request = b""
            while b"\r\n\r\n" not in request:
                request += conn.recv(65536)
            seen.append(request.decode("latin-1"))
            conn.sendall(b'HTTP/1.1 200 OK\r\nContent-Length: 0\r\nETag: "e"\r\n\r\n')

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    endpoint = f"http://127.0.0.1:{listener.getsockname()[1]}"
    store = StoreSpec(destination("s3://b", {**S3_KEYS, "client_kwargs": {"endpoint_url": endpoint}}),
                      retry=FAST).open()
    data = b"payload"
    assert store.write("k/x.json", data, ObjectMetadata(sha256=hashlib.sha256(data).hexdigest())).ok
    thread.join(5)
    listener.close()
    headers = dict(line.split(": ", 1) for line in seen[0].split("\r\n")[1:] if ": " in line)
    assert headers["x-amz-checksum-sha256"] == base64.b64encode(hashlib.sha256(data).digest()).decode()
    assert headers["if-none-match"] == "*"
    assert "expect" not in {name.lower() for name in headers}  # the body goes with the headers
    store.close()


def test_azure_direct_write_lands_byte_exact_with_its_metadata(azurite_server):
    container = f"direct-{uuid.uuid4().hex[:10]}"
    azurite_server.create_container(container)
    dest = destination(f"abfs://{container}/pre", azurite_server.storage_options(), azure=AzureOptions(tier="Cool"))
    store = StoreSpec(dest, retry=FAST).open()
    assert store.direct is not None
    data = b"\x1f\x8b" + bytes(range(256))
    digest = hashlib.sha256(data).hexdigest()
    assert store.write(ODD_KEY, data, ObjectMetadata("application/json", "gzip", digest, "gzip")).ok
    client = azurite_server.blob_service_client().get_container_client(container)
    assert [b.name for b in client.list_blobs()] == [f"pre/{ODD_KEY}"]
    blob = client.get_blob_client(f"pre/{ODD_KEY}")
    props = blob.get_blob_properties()
    assert blob.download_blob(decompress=False).readall() == data
    assert (props.content_settings.content_type, props.content_settings.content_encoding) == (
        "application/json", "gzip")
    assert props.metadata == {"sha256": digest, "compression": "gzip"} and props.blob_tier == "Cool"
    assert store.write(ODD_KEY, data, ObjectMetadata()).existed
    assert store.write(ODD_KEY, b"other", ObjectMetadata()).error_class is ErrorClass.CONFLICT
    store.close()


def test_s3_direct_retries_throttling_itself_and_hides_no_retry_in_the_client(s3_server, s3_bucket):
    """Each 503 SlowDown is one of our attempts: obstore retries nothing on its own."""
    with FaultProxy(s3_server.endpoint_url) as proxy:
        proxy.slow_down(2)
        store = StoreSpec(destination(f"s3://{s3_bucket}", s3_server.storage_options(proxy.url)),
                          retry=FAST).open()
        result = store.write("k/one.json", b"{}", ObjectMetadata())
        assert result.ok and result.attempts == 3
        proxy.slow_down(100)
        failed = store.write("k/two.json", b"{}", ObjectMetadata())
        assert failed.error_class is ErrorClass.THROTTLED
        assert failed.attempts == FAST.transient_retries + 1
        assert "SlowDown" in describe(failed.error)
        store.close()


def test_s3_direct_never_leaks_credentials_in_errors(s3_auth_server, s3_bucket_auth=None):
    bucket = f"direct-{uuid.uuid4().hex[:10]}"
    s3_auth_server.create_bucket(bucket)
    options = {**s3_auth_server.storage_options(), "secret": "wrong-secret-value-123"}
    store = StoreSpec(destination(f"s3://{bucket}", options), retry=FAST).open()
    result = store.write("k/x.json", b"{}", ObjectMetadata())
    assert result.error_class is ErrorClass.AUTH
    text = describe(result.error) + repr(result.error)
    assert "wrong-secret-value-123" not in text and s3_auth_server.access_key not in describe(result.error)
    store.close()


def test_a_direct_store_without_keys_never_reaches_for_instance_metadata(monkeypatch):
    """No keys anywhere: the fsspec path is chosen, and building the store opens no connection."""
    def refuse(self, address):
        raise AssertionError(f"a connection was attempted to {address}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    store = StoreSpec(destination("s3://b", {"client_kwargs": LOCAL["client_kwargs"]})).open()
    assert store.direct is None
    store.close()
