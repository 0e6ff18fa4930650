"""The object-store emulators speak the real protocols to the real clients.

Each server is a real process on a 127.0.0.1 port (devservers/), started once per
module here. A server that cannot be installed or started errors its fixture: the
tests fail, they never skip.
"""

import datetime
import sys
import time
import uuid

import botocore.exceptions
import fsspec
import pytest
from botocore.config import Config

from devservers import DevServerError
from devservers._process import launch, tcp_probe
from devservers.faultproxy import FaultProxy

NO_RETRIES = Config(retries={"total_max_attempts": 1})


def _key() -> str:
    return f"devservers/{uuid.uuid4().hex}.jsonl"


# The servers are the session's own (tests/conftest.py): started once for every test.


@pytest.fixture
def proxy(s3_server):
    with FaultProxy(s3_server.endpoint_url) as running:
        yield running


# -- S3 (s3_server) -------------------------------------------------------------------------

def test_boto3_writes_and_s3fs_reads_the_same_object(s3_server):
    bucket = s3_server.create_bucket("archive-plain")
    key = _key()
    s3_server.boto3_client().put_object(
        Bucket=bucket, Key=key, Body=b'{"a": 1}\n', ContentType="application/x-ndjson",
        Metadata={"record-count": "1"})
    fs = fsspec.filesystem("s3", skip_instance_cache=True, **s3_server.storage_options())
    assert fs.cat(f"{bucket}/{key}") == b'{"a": 1}\n'

    fs.pipe(f"{bucket}/from-s3fs.txt", b"written by s3fs")
    got = s3_server.boto3_client().get_object(Bucket=bucket, Key="from-s3fs.txt")
    assert got["Body"].read() == b"written by s3fs"
    head = s3_server.boto3_client().head_object(Bucket=bucket, Key=key)
    assert head["Metadata"] == {"record-count": "1"}
    assert head["ContentType"] == "application/x-ndjson"


def test_moto_echoes_server_side_encryption_headers(s3_server):
    bucket = s3_server.create_bucket("archive-sse")
    client = s3_server.boto3_client()
    client.put_object(Bucket=bucket, Key="aes", Body=b"x", ServerSideEncryption="AES256")
    kms_key = "arn:aws:kms:us-east-1:123456789012:key/not-checked-by-s3_server"
    client.put_object(Bucket=bucket, Key="kms", Body=b"x", ServerSideEncryption="aws:kms",
                      SSEKMSKeyId=kms_key)
    assert client.head_object(Bucket=bucket, Key="aes")["ServerSideEncryption"] == "AES256"
    kms = client.head_object(Bucket=bucket, Key="kms")
    assert (kms["ServerSideEncryption"], kms["SSEKMSKeyId"]) == ("aws:kms", kms_key)


def test_moto_refuses_deleting_a_locked_object_version(s3_server):
    bucket = s3_server.create_bucket("archive-locked", object_lock=True)
    client = s3_server.boto3_client()
    until = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=1)
    put = client.put_object(Bucket=bucket, Key="locked", Body=b"x",
                            ObjectLockMode="COMPLIANCE", ObjectLockRetainUntilDate=until)
    assert client.head_object(Bucket=bucket, Key="locked")["ObjectLockMode"] == "COMPLIANCE"
    with pytest.raises(botocore.exceptions.ClientError) as refused:
        client.delete_object(Bucket=bucket, Key="locked", VersionId=put["VersionId"])
    assert refused.value.response["Error"]["Code"] == "AccessDenied"


def test_moto_with_auth_rejects_unknown_keys_and_wrong_secrets(s3_auth_server):
    bucket = s3_auth_server.create_bucket("archive-auth")
    s3_auth_server.boto3_client().put_object(Bucket=bucket, Key="k", Body=b"x")
    unknown = s3_auth_server.boto3_client(aws_access_key_id="AKIAUNKNOWN0000000000",
                                     config=NO_RETRIES)
    wrong_secret = s3_auth_server.boto3_client(aws_secret_access_key="wrong", config=NO_RETRIES)
    for client, code in [(unknown, "InvalidAccessKeyId"), (wrong_secret, "SignatureDoesNotMatch")]:
        with pytest.raises(botocore.exceptions.ClientError) as refused:
            client.put_object(Bucket=bucket, Key="k2", Body=b"x")
        assert refused.value.response["Error"]["Code"] == code
        assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


# -- Azure Blob (Azurite) ----------------------------------------------------------------

def test_azure_sdk_writes_and_adlfs_reads_the_same_blob(azurite_server):
    container = azurite_server.create_container("archive")
    from azure.storage.blob import ContentSettings

    azurite_server.blob_service_client().get_blob_client(container, "a/b.jsonl").upload_blob(
        b'{"a": 1}\n', metadata={"records": "1"},
        content_settings=ContentSettings(content_type="application/x-ndjson"))
    fs = fsspec.filesystem("abfs", skip_instance_cache=True, **azurite_server.storage_options())
    assert fs.cat(f"{container}/a/b.jsonl") == b'{"a": 1}\n'

    fs.pipe(f"{container}/from-adlfs.txt", b"written by adlfs")
    client = azurite_server.blob_service_client().get_blob_client(container, "from-adlfs.txt")
    assert client.download_blob().readall() == b"written by adlfs"
    props = azurite_server.blob_service_client().get_blob_client(container, "a/b.jsonl").get_blob_properties()
    assert props.metadata == {"records": "1"}
    assert props.content_settings.content_type == "application/x-ndjson"


def test_azurite_rejects_a_wrong_account_key(azurite_server):
    from azure.core.exceptions import HttpResponseError
    from azure.storage.blob import BlobServiceClient

    container = azurite_server.create_container("archive-auth")
    wrong = azurite_server.connection_string.replace(azurite_server.account_key, "A" * 86 + "==")
    client = BlobServiceClient.from_connection_string(wrong, retry_total=0)
    with pytest.raises(HttpResponseError) as refused:
        client.get_blob_client(container, "x").upload_blob(b"x")
    assert refused.value.status_code == 403


# -- GCS (fake-gcs-server) ---------------------------------------------------------------

def test_gcs_client_writes_and_gcsfs_reads_the_same_object(gcs_server):
    bucket = gcs_server.create_bucket("archive")
    gcs_blob = gcs_server.client().bucket(bucket).blob("a/b.jsonl")
    gcs_blob.metadata = {"records": "1"}
    gcs_blob.upload_from_string(b'{"a": 1}\n', content_type="application/x-ndjson")
    fs = fsspec.filesystem("gcs", skip_instance_cache=True, **gcs_server.storage_options())
    assert fs.cat(f"{bucket}/a/b.jsonl") == b'{"a": 1}\n'

    fs.pipe(f"{bucket}/from-gcsfs.txt", b"written by gcsfs")
    assert gcs_server.client().bucket(bucket).blob("from-gcsfs.txt").download_as_bytes() \
        == b"written by gcsfs"
    stored = gcs_server.client().bucket(bucket).get_blob("a/b.jsonl")
    assert stored.metadata == {"records": "1"}
    assert stored.content_type == "application/x-ndjson"


# -- Fault proxy in front of s3_server ------------------------------------------------------

def test_proxy_throttles_n_puts_with_slowdown_then_lets_them_through(s3_server, proxy):
    bucket = s3_server.create_bucket("archive-throttled")
    client = s3_server.boto3_client(endpoint_url=proxy.url, config=NO_RETRIES)
    proxy.slow_down(count=2, method="PUT", path=rf"^/{bucket}/")
    for _ in range(2):
        with pytest.raises(botocore.exceptions.ClientError) as throttled:
            client.put_object(Bucket=bucket, Key="k", Body=b"payload")
        assert throttled.value.response["Error"]["Code"] == "SlowDown"
        assert throttled.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
    client.put_object(Bucket=bucket, Key="k", Body=b"payload")

    assert s3_server.boto3_client().get_object(Bucket=bucket, Key="k")["Body"].read() == b"payload"
    assert proxy.count("PUT", rf"^/{bucket}/k$") == 3
    assert [r.status for r in proxy.requests if r.path == f"/{bucket}/k"] == [503, 503, 200]


def test_proxy_answers_only_matching_requests(s3_server, proxy):
    bucket = s3_server.create_bucket("archive-denied")
    client = s3_server.boto3_client(endpoint_url=proxy.url, config=NO_RETRIES)
    client.put_object(Bucket=bucket, Key="k", Body=b"x")
    proxy.s3_error(403, "AccessDenied", "Access Denied", count=None, method="GET")
    client.put_object(Bucket=bucket, Key="k2", Body=b"y")  # PUTs still pass
    for _ in range(3):
        with pytest.raises(botocore.exceptions.ClientError) as denied:
            client.get_object(Bucket=bucket, Key="k")
        assert denied.value.response["Error"]["Code"] == "AccessDenied"
    proxy.clear_rules()
    assert client.get_object(Bucket=bucket, Key="k")["Body"].read() == b"x"


def test_proxy_latency_delays_each_request(s3_server, proxy):
    bucket = s3_server.create_bucket("archive-slow")
    client = s3_server.boto3_client(endpoint_url=proxy.url, config=NO_RETRIES)
    client.put_object(Bucket=bucket, Key="k", Body=b"x")
    proxy.set_latency(0.3)
    started = time.monotonic()
    client.head_object(Bucket=bucket, Key="k")
    assert time.monotonic() - started >= 0.3


def test_proxy_keeps_sigv4_valid_for_signed_uploads(s3_auth_server):
    # s3_server with auth recomputes each signature: the proxy must forward Host, raw path and
    # body as sent. A multipart upload through s3fs and an odd key through boto3.
    bucket = s3_auth_server.create_bucket("archive-signed")
    with FaultProxy(s3_auth_server.endpoint_url) as proxy:
        client = s3_auth_server.boto3_client(endpoint_url=proxy.url, config=NO_RETRIES)
        odd_key = "a b/ü+x%=&?.jsonl"
        client.put_object(Bucket=bucket, Key=odd_key, Body=b"odd")
        assert client.get_object(Bucket=bucket, Key=odd_key)["Body"].read() == b"odd"
        fs = fsspec.filesystem("s3", skip_instance_cache=True,
                               **s3_auth_server.storage_options(endpoint_url=proxy.url))
        with fs.open(f"{bucket}/big.bin", "wb", block_size=5 * 2**20) as out:
            out.write(b"z" * (11 * 2**20))
        assert fs.size(f"{bucket}/big.bin") == 11 * 2**20
        assert proxy.count("POST", rf"^/{bucket}/big\.bin$") >= 2  # create + complete


def test_proxy_fronts_azurite_and_fake_gcs_too(azurite_server, gcs_server):
    from azure.core.exceptions import HttpResponseError
    from google.api_core.exceptions import TooManyRequests

    container = azurite_server.create_container("archive-busy")
    with FaultProxy(azurite_server.blob_endpoint.rsplit("/", 1)[0]) as proxy:
        client = azurite_server.blob_service_client(endpoint_url=proxy.url, retry_total=0)
        proxy.azure_error(503, "ServerBusy", "The server is busy.", method="PUT")
        with pytest.raises(HttpResponseError) as busy:
            client.get_blob_client(container, "k").upload_blob(b"x")
        assert (busy.value.status_code, busy.value.error_code) == (503, "ServerBusy")
        client.get_blob_client(container, "k").upload_blob(b"x")  # SharedKey still valid
        assert proxy.count("PUT", rf"/{container}/k$") == 2

    bucket = gcs_server.create_bucket("archive-busy")
    gcs_server.client().bucket(bucket).blob("k").upload_from_string(b"x")
    with FaultProxy(gcs_server.endpoint_url) as proxy:
        client = gcs_server.client(endpoint_url=proxy.url)
        # Only the object's GET: the client first GETs the bucket and shrugs off errors there.
        proxy.gcs_error(429, "rateLimitExceeded", "Rate limit exceeded.", method="GET",
                        path=rf"^/storage/v1/b/{bucket}/o/k$")
        with pytest.raises(TooManyRequests):
            client.bucket(bucket).get_blob("k", retry=None)
        assert client.bucket(bucket).get_blob("k", retry=None).size == 1


# -- The process helpers -----------------------------------------------------------------

def test_a_server_that_exits_fails_with_its_log():
    script = "import sys; print('boom: cannot bind'); sys.exit(3)"
    with pytest.raises(DevServerError, match=r"(?s)exited with code 3.*boom: cannot bind"):
        launch("doomed", lambda port: [sys.executable, "-c", script],
               probe_for_port=lambda port: tcp_probe("127.0.0.1", port), timeout=10)


def test_a_server_that_never_answers_times_out_and_is_stopped():
    script = "import time; print('still starting', flush=True); time.sleep(60)"
    started = time.monotonic()
    with pytest.raises(DevServerError, match=r"(?s)did not answer.*still starting"):
        launch("mute", lambda port: [sys.executable, "-c", script],
               probe_for_port=lambda port: tcp_probe("127.0.0.1", port), timeout=1)
    assert time.monotonic() - started < 10
