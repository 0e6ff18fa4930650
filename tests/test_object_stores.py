"""Archiving into real object stores: moto (S3), Azurite (Blob) and fake-gcs-server (GCS).

Each server runs on 127.0.0.1 (devservers/); every test runs twice, once with
the store client chosen as by default (`auto`: obstore directly on S3 and
Azure wherever the destination allows, archive.direct) and once through fsspec
(s3fs, adlfs, gcsfs), and every object is read back with the cloud's own SDK
(boto3, azure-storage-blob, google-cloud-storage) to check bytes, checksum and
metadata.
"""

import datetime as dt
import gzip
import hashlib
import json
import logging
import uuid

import lz4.frame
import pytest

from archive.schemas import validator
from devservers.faultproxy import FaultProxy
from pipeline import run
from tests.test_pipeline import braze_records, clevertap_records, read_outcomes


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


class Cloud:
    """One backend, seen from a test: create a bucket, read an object back with its SDK."""

    def __init__(self, name, server):
        self.name, self.server = name, server

    def create(self, bucket, **kwargs):
        if self.name == "azure":
            return self.server.create_container(bucket)
        return self.server.create_bucket(bucket, **kwargs)

    def url(self, bucket):
        return {"s3": "s3://", "azure": "abfs://", "gcs": "gs://"}[self.name] + bucket

    def options(self, endpoint_url=None):
        return self.server.storage_options(endpoint_url)

    @property
    def origin(self):
        """scheme://host:port of the server, what a FaultProxy forwards to."""
        if self.name == "azure":  # the blob endpoint ends in the account's path
            return self.server.blob_endpoint.rsplit("/", 1)[0]
        return self.server.endpoint_url

    def read(self, bucket, key):
        """(bytes, content type, content encoding, user metadata), as the SDK sees them."""
        if self.name == "s3":
            got = self.server.boto3_client().get_object(Bucket=bucket, Key=key)
            return (got["Body"].read(), got["ContentType"], got.get("ContentEncoding"), got["Metadata"])
        if self.name == "azure":
            blob = self.server.blob_service_client().get_blob_client(bucket, key)
            props = blob.get_blob_properties()
            data = blob.download_blob(decompress=False).readall()
            return (data, props.content_settings.content_type, props.content_settings.content_encoding,
                    props.metadata)
        blob = self.server.client().bucket(bucket).get_blob(key)
        data = blob.download_as_bytes(raw_download=True)
        return data, blob.content_type, blob.content_encoding, blob.metadata or {}

    def keys(self, bucket):
        """The archive objects (the audit index and manifests beside them: tests/test_retrieval.py)."""
        return [key for key in self.all_keys(bucket) if not key.startswith(("archive_index/", "archive_manifests/"))]

    def all_keys(self, bucket):
        if self.name == "s3":
            pages = self.server.boto3_client().get_paginator("list_objects_v2").paginate(Bucket=bucket)
            return sorted(o["Key"] for page in pages for o in page.get("Contents", []))
        if self.name == "azure":
            return sorted(b.name for b in self.server.blob_service_client()
                          .get_container_client(bucket).list_blobs())
        return sorted(b.name for b in self.server.client().list_blobs(bucket))


@pytest.fixture(params=["s3", "azure", "gcs"])
def cloud(request):
    fixture = {"s3": "s3_server", "azure": "azurite_server", "gcs": "gcs_server"}[request.param]
    return Cloud(request.param, request.getfixturevalue(fixture))


@pytest.fixture(autouse=True, params=["auto", "fsspec"])
def store_client(request, caplog):
    """Which store client the test's runs use; with `auto`, S3 and Azure writes must
    have gone through obstore unless the destination asked for what it cannot do."""
    global _CLIENT
    _CLIENT = request.param
    caplog.set_level(logging.INFO, logger="archive.store")
    yield request.param
    _CLIENT = None


_CLIENT = None


def client_log(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "archive.store" and "writes through" in r.getMessage()]


def backfill(tmp_path, records, *args):
    source = tmp_path / f"in-{uuid.uuid4().hex[:6]}.jsonl"
    source.write_bytes(b"\n".join(json.dumps(r).encode() for r in records) + b"\n")
    outcomes = tmp_path / f"outcomes-{uuid.uuid4().hex[:6]}"
    code = run.main(["--input", str(source), "--outcomes", str(outcomes),
                     "--dead_letters", str(tmp_path / "dead"), "--summary", "false",
                     "--retry_base_delay", "0.01", "--retry_max_delay", "0.05",
                     *(("--store_client", _CLIENT) if _CLIENT else ()), *args])
    return code, read_outcomes(outcomes)


DECOMPRESS = {"lz4": lz4.frame.decompress, "gzip": gzip.decompress}


@pytest.mark.parametrize("profile, records, codec, media_type", [
    ("clevertap", clevertap_records, "lz4", "application/x-lz4"),
    ("braze", braze_records, "gzip", "application/gzip"),
])
def test_every_channel_lands_byte_exact_with_its_metadata(cloud, tmp_path, profile, records, codec,
                                                          media_type, store_client, caplog):
    bucket = cloud.create(unique("archive"))
    code, outcomes = backfill(tmp_path, records(), "--profile", profile, "--destination", cloud.url(bucket),
                              "--storage_options", json.dumps(cloud.options()))
    assert code == 0, outcomes
    direct = store_client == "auto" and cloud.name in ("s3", "azure")
    chosen = client_log(caplog)
    assert chosen and all(("through obstore directly" in line) == direct for line in chosen), chosen
    assert [o["status"] for o in outcomes] == ["ARCHIVED"] * len(records())
    assert {o["channel"] for o in outcomes} == {json.loads(json.dumps(r))["channel"].lower()
                                                .replace("android_push", "push") for r in records()}
    check = validator(profile)
    for outcome in outcomes:
        key = outcome["url"].split(bucket + "/", 1)[1]
        data, content_type, content_encoding, metadata = cloud.read(bucket, key)
        assert hashlib.sha256(data).hexdigest() == outcome["sha256"] == metadata["sha256"]
        assert len(data) == outcome["bytes"]
        assert (content_type, content_encoding) == (media_type, None)
        assert metadata["compression"] == codec
        payload = json.loads(DECOMPRESS[codec](data))
        check.validate(payload)
        assert outcome["url"] == f"{cloud.url(bucket)}/{key}"
    assert len(cloud.keys(bucket)) == len(records())


def test_http_content_encoding_is_opt_in_per_destination(cloud, tmp_path):
    bucket = cloud.create(unique("coded"))
    tenants = tmp_path / "tenants.yaml"
    tenants.write_text(json.dumps({"tenants": {"default": {"profile": "braze", "destinations": [
        {"url": cloud.url(bucket), "storage_options": cloud.options(), "http_content_encoding": True}]}}}))
    code, outcomes = backfill(tmp_path, braze_records()[:1], "--tenants", str(tenants))
    assert code == 0, outcomes
    key = outcomes[0]["url"].split(bucket + "/", 1)[1]
    data, content_type, content_encoding, _ = cloud.read(bucket, key)
    assert (content_type, content_encoding) == ("application/json", "gzip")
    assert hashlib.sha256(data).hexdigest() == outcomes[0]["sha256"]  # raw download: the stored bytes


def test_a_missing_bucket_is_failed_as_not_found_after_three_retries(cloud, tmp_path):
    code, outcomes = backfill(tmp_path, clevertap_records()[:1], "--destination", cloud.url(unique("absent")),
                              "--storage_options", json.dumps(cloud.options()))
    assert code == run.EXIT_FAILED_MESSAGES
    [outcome] = outcomes
    assert (outcome["status"], outcome["error_class"], outcome["attempts"]) == ("FAILED", "not_found", 4)
    assert outcome["error"].startswith("failed to archive:")


def test_throttling_is_retried_until_it_clears(cloud, tmp_path):
    bucket = cloud.create(unique("throttled"))
    with FaultProxy(cloud.origin) as proxy:
        rule = {"s3": lambda: proxy.slow_down(2, method="PUT"),
                "azure": lambda: proxy.azure_error(503, "ServerBusy", "busy", 2, method="PUT"),
                "gcs": lambda: proxy.gcs_error(429, "rateLimitExceeded", "slow down", 2, method="POST")}
        rule[cloud.name]()
        code, outcomes = backfill(tmp_path, clevertap_records()[:1], "--destination", cloud.url(bucket),
                                  "--storage_options", json.dumps(cloud.options(proxy.url)))
    assert code == 0, outcomes
    [outcome] = outcomes
    assert outcome["status"] == "ARCHIVED"
    # s3fs/botocore and azure-core retries are off, so our policy made every attempt;
    # gcsfs retries 429 inside the request, out of our sight.
    assert outcome["attempts"] == (1 if cloud.name == "gcs" else 3)
    key = outcome["url"].split(bucket + "/", 1)[1]
    assert hashlib.sha256(cloud.read(bucket, key)[0]).hexdigest() == outcome["sha256"]


def test_throttling_that_never_clears_fails_as_throttled(s3_server, tmp_path):
    bucket = s3_server.create_bucket(unique("busy"))
    with FaultProxy(s3_server.endpoint_url) as proxy:
        proxy.slow_down(None, method="PUT")
        code, outcomes = backfill(tmp_path, clevertap_records()[:1], "--destination", f"s3://{bucket}",
                                  "--storage_options", json.dumps(s3_server.storage_options(proxy.url)),
                                  "--transient_retries", "4", "--hold_seconds", "0")
        puts = proxy.count("PUT")
    [outcome] = outcomes
    assert (outcome["status"], outcome["error_class"], outcome["attempts"]) == ("FAILED", "throttled", 5)
    assert puts == 5


def test_invalid_s3_credentials_fail_as_auth_trip_the_breaker_and_leak_nothing(s3_auth_server, tmp_path):
    bucket = s3_auth_server.create_bucket(unique("locked-out"))
    options = s3_auth_server.storage_options()
    options["secret"] = "wrong-secret-" + uuid.uuid4().hex
    records = clevertap_records()
    code, outcomes = backfill(tmp_path, records, "--destination", f"s3://{bucket}",
                              "--storage_options", json.dumps(options), "--max_in_flight", "1")
    assert code == run.EXIT_FAILED_MESSAGES
    assert {(o["status"], o["error_class"]) for o in outcomes} == {("FAILED", "auth")}
    attempts = sorted(o["attempts"] for o in outcomes)
    # the first write spends its 3 retries; the open breaker fails the rest without a request
    assert attempts == [0] * (len(records) - 1) + [4]
    assert any("SignatureDoesNotMatch" in o["error"] for o in outcomes)
    assert any("circuit open" in o["error"] for o in outcomes)
    text = json.dumps(outcomes)
    assert options["secret"] not in text and options["key"] not in text


def test_invalid_azure_credentials_fail_as_auth(azurite_server, tmp_path):
    container = azurite_server.create_container(unique("locked"))
    options = azurite_server.storage_options()
    wrong_key = "d3Jvbmcta2V5LW5vdC10aGUtZGV2LWtleQ=="
    options["connection_string"] = options["connection_string"].replace(
        azurite_server.account_key, wrong_key)
    code, outcomes = backfill(tmp_path, clevertap_records()[:1], "--destination", f"abfs://{container}",
                              "--storage_options", json.dumps(options))
    [outcome] = outcomes
    assert (outcome["status"], outcome["error_class"]) == ("FAILED", "auth")
    assert "AuthorizationFailure" in outcome["error"] or "AuthenticationFailed" in outcome["error"]
    assert wrong_key not in json.dumps(outcome)


def test_s3_encryption_object_lock_and_storage_class_reach_every_object(s3_server, tmp_path):
    bucket = s3_server.create_bucket(unique("worm"), object_lock=True)
    tenants = tmp_path / "tenants.yaml"
    tenants.write_text(f"""
tenants:
  acme:
    profile: clevertap
    destinations:
      - url: s3://{bucket}
        storage_options: {json.dumps(s3_server.storage_options())}
        s3:
          sse: aws:kms
          kms_key_id: arn:aws:kms:us-east-1:123456789012:key/archive
          object_lock: {{mode: COMPLIANCE, retain_days: 30}}
          storage_class: STANDARD_IA
""")
    records = [{**r, "tenant": "acme"} for r in clevertap_records()]
    before = dt.datetime.now(dt.timezone.utc)
    code, outcomes = backfill(tmp_path, records, "--tenants", str(tenants))
    assert code == 0, outcomes
    client = s3_server.boto3_client()
    for outcome in outcomes:
        key = outcome["url"].split(bucket + "/", 1)[1]
        head = client.head_object(Bucket=bucket, Key=key)
        assert head["ServerSideEncryption"] == "aws:kms"
        assert head["SSEKMSKeyId"].endswith("key/archive")
        assert head["ObjectLockMode"] == "COMPLIANCE"
        retain = head["ObjectLockRetainUntilDate"]
        # S3 keeps whole seconds
        assert before.replace(microsecond=0) + dt.timedelta(days=30) <= retain \
            <= dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=30)
        assert head["StorageClass"] == "STANDARD_IA"
        # a locked version cannot be deleted: the archive is write-once
        with pytest.raises(client.exceptions.ClientError) as refused:
            client.delete_object(Bucket=bucket, Key=key, VersionId=head["VersionId"])
        assert refused.value.response["Error"]["Code"] == "AccessDenied"


def test_azure_tier_reaches_every_blob(azurite_server, tmp_path):
    container = azurite_server.create_container(unique("tiered"))
    tenants = tmp_path / "tenants.json"
    tenants.write_text(json.dumps({"tenants": {"acme": {"destinations": [{
        "url": f"abfs://{container}", "storage_options": azurite_server.storage_options(),
        "azure": {"tier": "Cool"}}]}}}))
    code, outcomes = backfill(tmp_path, [{**r, "tenant": "acme"} for r in clevertap_records()],
                              "--tenants", str(tenants))
    assert code == 0, outcomes
    service = azurite_server.blob_service_client()
    for outcome in outcomes:
        key = outcome["url"].split(container + "/", 1)[1]
        assert service.get_blob_client(container, key).get_blob_properties().blob_tier == "Cool"


def test_two_tenants_land_only_in_their_own_buckets(s3_server, azurite_server, tmp_path):
    bucket_a = s3_server.create_bucket(unique("tenant-a"))
    container_b = azurite_server.create_container(unique("tenant-b"))
    bucket_b_s3 = s3_server.create_bucket(unique("tenant-b-s3"))
    tenants = tmp_path / "tenants.yaml"
    tenants.write_text(json.dumps({"tenants": {
        "acme": {"profile": "clevertap", "channels": ["email", "push", "sms"],
                 "destinations": [{"url": f"s3://{bucket_a}", "storage_options": s3_server.storage_options()}]},
        "globex": {"profile": "braze", "destinations": [
            {"url": f"s3://{bucket_b_s3}", "storage_options": s3_server.storage_options()},
            {"url": f"abfs://{container_b}", "storage_options": azurite_server.storage_options(),
             "default": True}]},
    }}))
    acme = [{**r, "tenant": "acme"} for r in clevertap_records()]        # whatsapp is not enabled
    globex = [{**r, "tenant": "globex"} for r in braze_records()]
    stranger = [{**clevertap_records()[0], "tenant": "initech"}]
    code, outcomes = backfill(tmp_path, acme + globex + stranger, "--tenants", str(tenants))
    assert code == run.EXIT_FAILED_MESSAGES  # the stranger's message
    by_tenant = {}
    for outcome in outcomes:
        by_tenant.setdefault(outcome["tenant"], []).append(outcome)
    assert sorted(o["status"] for o in by_tenant["acme"]) == ["ARCHIVED"] * 3 + ["SKIPPED"]
    skipped = [o for o in by_tenant["acme"] if o["status"] == "SKIPPED"][0]
    assert skipped["channel"] == "whatsapp" and "not enabled" in skipped["reason"]
    assert [o["status"] for o in by_tenant["globex"]] == ["ARCHIVED"] * len(globex)
    assert [(o["status"], o["error_class"]) for o in by_tenant["initech"]] == [("FAILED", "unknown_tenant")]

    acme_keys = {o["url"].split(bucket_a + "/", 1)[1] for o in by_tenant["acme"] if o["status"] == "ARCHIVED"}
    globex_keys = {o["url"].split(container_b + "/", 1)[1] for o in by_tenant["globex"]}
    assert set(Cloud("s3", s3_server).keys(bucket_a)) == acme_keys
    assert set(Cloud("azure", azurite_server).keys(container_b)) == globex_keys
    assert Cloud("s3", s3_server).keys(bucket_b_s3) == []  # not the default destination
    # the unknown tenant's message is kept whole, and written to nobody's bucket
    dead = read_outcomes(tmp_path / "dead")
    assert [json.loads(d["input"])["tenant"] for d in dead] == ["initech"]


def test_plain_http_endpoints_are_refused_unless_loopback_or_allowed(tmp_path, capsys):
    remote = json.dumps({"client_kwargs": {"endpoint_url": "http://archive.example.com:9000"}})
    code = run.main(["--input", str(tmp_path), "--destination", "s3://bucket", "--storage_options", remote])
    assert code == 2
    assert "HTTPS" in capsys.readouterr().err
    tenants = tmp_path / "tenants.yaml"
    tenants.write_text(json.dumps({"tenants": {"acme": {"destinations": [
        {"url": "s3://bucket", "storage_options": {"endpoint_url": "http://10.9.9.9"}}]}}}))
    assert run.main(["--input", str(tmp_path), "--tenants", str(tenants), "--dead_letters", str(tmp_path)]) == 2
    assert "tenant 'acme': destinations[0]" in capsys.readouterr().err


def test_azure_encryption_scope_and_gcs_kms_key_are_sent_on_every_write(azurite_server, gcs_server, tmp_path):
    """Neither emulator enforces these, so the proof is on the wire: each upload carries them."""
    container = azurite_server.create_container(unique("scoped"))
    bucket = gcs_server.create_bucket(unique("kms"))
    kms = "projects/p/locations/global/keyRings/archive/cryptoKeys/messages"
    with FaultProxy(azurite_server.blob_endpoint.rsplit("/", 1)[0]) as azure_proxy, \
            FaultProxy(gcs_server.endpoint_url) as gcs_proxy:
        tenants = tmp_path / "tenants.json"
        tenants.write_text(json.dumps({"tenants": {
            "acme": {"destinations": [{"url": f"abfs://{container}",
                                       "storage_options": azurite_server.storage_options(azure_proxy.url),
                                       "azure": {"encryption_scope": "archive-scope"}}]},
            "globex": {"destinations": [{"url": f"gs://{bucket}",
                                         "storage_options": gcs_server.storage_options(gcs_proxy.url),
                                         "gcs": {"kms_key_name": kms}}]}}}))
        records = [{**r, "tenant": t} for t in ("acme", "globex") for r in clevertap_records()]
        code, outcomes = backfill(tmp_path, records, "--tenants", str(tenants))
        azure_puts = [r for r in azure_proxy.requests if r.method == "PUT"]
        gcs_uploads = [r for r in gcs_proxy.requests if r.method == "POST" and "/upload/" in r.path]
    assert code == 0, outcomes
    # every object, and the audit index and manifests written beside them, with the scope and the key
    assert len([r for r in azure_puts if "/sent_messages/" in r.path]) == len(clevertap_records())
    assert len(gcs_uploads) > len(clevertap_records())
    assert all(r.headers.get("x-ms-encryption-scope") == "archive-scope" for r in azure_puts)
    assert all(r.headers.get("Content-MD5") for r in azure_puts)  # the service checks our bytes
    assert all("kmsKeyName=" in r.query for r in gcs_uploads)


def test_s3_compatible_endpoint_with_path_style_addressing_and_the_az_alias(s3_server, azurite_server, tmp_path):
    bucket = s3_server.create_bucket(unique("minio-like"))
    options = {**s3_server.storage_options(), "config_kwargs": {"s3": {"addressing_style": "path"}}}
    code, outcomes = backfill(tmp_path, clevertap_records()[:1], "--destination", f"s3://{bucket}",
                              "--storage_options", json.dumps(options))
    assert code == 0 and outcomes[0]["status"] == "ARCHIVED"
    container = azurite_server.create_container(unique("alias"))
    code, outcomes = backfill(tmp_path, clevertap_records()[:1], "--destination", f"az://{container}",
                              "--storage_options", json.dumps(azurite_server.storage_options()))
    assert code == 0 and outcomes[0]["status"] == "ARCHIVED"
    assert outcomes[0]["url"].startswith(("az://", "abfs://"))
    assert Cloud("azure", azurite_server).keys(container) == [outcomes[0]["url"].split(container + "/", 1)[1]]


def test_an_unreachable_endpoint_is_failed_as_a_connection_error_after_the_transient_retries(tmp_path):
    from devservers._process import free_port

    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    options = {"key": "k", "secret": "s", "client_kwargs": {"endpoint_url": closed, "region_name": "us-east-1"}}
    code, outcomes = backfill(tmp_path, clevertap_records()[:1], "--destination", "s3://nowhere",
                              "--storage_options", json.dumps(options), "--transient_retries", "2",
                              "--hold_seconds", "0")
    [outcome] = outcomes
    assert (outcome["status"], outcome["error_class"], outcome["attempts"]) == ("FAILED", "connection", 3)


def test_a_rerun_finds_its_objects_and_a_changed_message_is_a_conflict(cloud, tmp_path):
    """Create-only writes on each cloud's own conditional request (S3 If-None-Match,
    GCS ifGenerationMatch=0, Azure without overwrite): a re-run is ARCHIVED with
    existed=true, a different message under the same key is FAILED conflict and
    the stored object is left exactly as it was."""
    bucket = cloud.create(unique("create-only"))
    args = ("--destination", cloud.url(bucket), "--storage_options", json.dumps(cloud.options()))
    # with their own ids: a derived id follows the content, so an edit would get a new key
    records = [r for r in clevertap_records() if r.get("message_id")]
    assert len(records) >= 3
    code, first = backfill(tmp_path, records, *args)
    assert code == 0 and all(o["status"] == "ARCHIVED" and "existed" not in o for o in first)
    stored = {o["url"]: cloud.read(bucket, o["url"].split(bucket + "/", 1)[1])[0] for o in first}

    code, again = backfill(tmp_path, records, *args)
    assert code == 0
    assert sorted((o["url"], o["status"], o.get("existed"), o["sha256"]) for o in again) == sorted(
        (o["url"], "ARCHIVED", True, o["sha256"]) for o in first)

    changed = [dict(r, campaign_name=r["campaign_name"] + " (edited)") for r in records]
    code, conflicts = backfill(tmp_path, changed, *args)
    assert code == run.EXIT_FAILED_MESSAGES
    assert {(o["status"], o.get("error_class"), o.get("attempts")) for o in conflicts} == {("FAILED", "conflict", 1)}, conflicts
    for url, data in stored.items():
        assert cloud.read(bucket, url.split(bucket + "/", 1)[1])[0] == data

    code, replaced = backfill(tmp_path, changed, *args, "--overwrite", "true")
    assert code == 0 and {o["status"] for o in replaced} == {"ARCHIVED"}
    assert all(cloud.read(bucket, url.split(bucket + "/", 1)[1])[0] != data for url, data in stored.items())
