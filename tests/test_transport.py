"""Data in transit: no plain-HTTP route off loopback, whichever way the endpoint is given.

A destination's endpoint can come from its URL, its storage options, the
environment (AWS_ENDPOINT_URL, STORAGE_EMULATOR_HOST, AZURE_STORAGE_CONNECTION_STRING,
...) or the AWS config file's profile. Each route is refused at configuration
time, BEFORE any connection: every test here runs under a guard that fails it
if anything tries to resolve or connect to an address off loopback. Nothing
here listens or sends off loopback; the positive test talks to moto on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import asyncio.base_events
import asyncio.selector_events
import ipaddress
import json
import socket
import uuid

import pytest

from archive import backends
from archive.store import ObjectStore, StoreSpec
from archive.tenants import Destination, TenantConfigError, TenantDirectory, check_transport, parse
from pipeline import run
from tests.test_pipeline import clevertap_records, read_outcomes

# Every variable a client reads an endpoint (or the file holding one) from.
_ENDPOINT_VARIABLES = (
    "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE", "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "STORAGE_EMULATOR_HOST",
    "AZURE_STORAGE_CONNECTION_STRING",
)


def _loopback(host) -> bool:
    if host is None:
        return True  # a wildcard lookup (bind) asks no one
    if isinstance(host, bytes):
        host = host.decode()
    host = str(host).strip("[]").split("%", 1)[0]
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@pytest.fixture
def loopback_only(monkeypatch):
    """Fails the test on any lookup of, or connection to, a host off loopback; raises
    before the real call, so nothing ever leaves the machine."""
    attempts = []

    def guard(what, host):
        if not _loopback(host):
            attempts.append((what, str(host)))
            raise AssertionError(f"{what} to a non-loopback address {host!r} was attempted")

    def address_host(address):
        return address[0] if isinstance(address, tuple) else address

    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex
    real_create, real_getaddrinfo = socket.create_connection, socket.getaddrinfo
    real_loop_create = asyncio.base_events.BaseEventLoop.create_connection
    real_sock_connect = asyncio.selector_events.BaseSelectorEventLoop.sock_connect

    def connect(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6):
            guard("socket.connect", address_host(address))
        return real_connect(self, address)

    def connect_ex(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6):
            guard("socket.connect_ex", address_host(address))
        return real_connect_ex(self, address)

    def create_connection(address, *args, **kwargs):
        guard("socket.create_connection", address_host(address))
        return real_create(address, *args, **kwargs)

    def getaddrinfo(host, *args, **kwargs):
        guard("socket.getaddrinfo", host)
        return real_getaddrinfo(host, *args, **kwargs)

    async def loop_create_connection(self, protocol_factory, host=None, port=None, *args, **kwargs):
        if kwargs.get("sock") is None:
            guard("loop.create_connection", host)
        return await real_loop_create(self, protocol_factory, host, port, *args, **kwargs)

    async def sock_connect(self, sock, address):
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            guard("loop.sock_connect", address_host(address))
        return await real_sock_connect(self, sock, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    monkeypatch.setattr(socket, "create_connection", create_connection)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(asyncio.base_events.BaseEventLoop, "create_connection", loop_create_connection)
    monkeypatch.setattr(asyncio.selector_events.BaseSelectorEventLoop, "sock_connect", sock_connect)
    yield attempts
    assert not attempts, f"connections off loopback were attempted: {attempts}"


@pytest.fixture
def environment(monkeypatch, tmp_path):
    """A clean endpoint environment with an empty AWS config file; returns a setter
    taking the variables and the AWS config text."""
    for name in _ENDPOINT_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    config = tmp_path / "aws-config"
    config.write_text("")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))

    def apply(variables=None, aws_config=None):
        for name, value in (variables or {}).items():
            monkeypatch.setenv(name, value)
        if aws_config is not None:
            config.write_text(aws_config)
    return apply


def test_the_guard_trips_before_any_packet_leaves(loopback_only):
    """The guard is the proof of every test below: it must fail a non-loopback attempt."""
    with pytest.raises(AssertionError, match="non-loopback"):
        socket.create_connection(("192.0.2.1", 9))  # TEST-NET-1: never reached, the guard raises first
    with pytest.raises(AssertionError, match="non-loopback"):
        socket.getaddrinfo("archive.example.com", 443)

    async def attempt():
        await asyncio.get_running_loop().create_connection(asyncio.Protocol, "192.0.2.1", 9)
    with pytest.raises(AssertionError, match="non-loopback"):
        asyncio.run(attempt())
    assert len(loopback_only) == 3
    loopback_only.clear()  # seen, and expected


# --- which protocols a destination may have -------------------------------------------------

REFUSED_PROTOCOLS = [
    pytest.param("http://10.0.0.5:8080/archive", "'http'", id="http"),
    pytest.param("HTTP://archive.example.com/archive", "'http'", id="http-upper-case"),
    pytest.param("https://archive.example.com/archive", "'https'", id="https"),
    pytest.param("http://127.0.0.1:8080/archive", "'http'", id="http-even-on-loopback"),
    pytest.param("ftp://ftp.example.com/archive", "'ftp'", id="ftp"),
    pytest.param("sftp://files.example.com/archive", "'sftp'", id="sftp"),
    pytest.param("ssh://files.example.com/archive", "'ssh'", id="ssh"),
    pytest.param("hdfs://namenode/archive", "'hdfs'", id="hdfs"),
    pytest.param("webhdfs://namenode/archive", "'webhdfs'", id="webhdfs"),
    pytest.param("smb://server/share", "'smb'", id="smb"),
    pytest.param("github://org:repo@main/", "'github'", id="github"),
    pytest.param("dropbox://archive", "'dropbox'", id="dropbox"),
    pytest.param("simplecache::s3://bucket", "chain", id="chained-cache"),
    pytest.param("s3://bucket::http://10.0.0.5/x", "chain", id="chained-http-target"),
    pytest.param("zip://archive.zip::file:///tmp/a.zip", "chain", id="chained-zip"),
]
ALLOWED_PROTOCOLS = ["local_run/archive", "/var/archive", "file:///var/archive", "local:///var/archive",
                     "memory://archive", "s3://bucket", "s3a://bucket/prefix", "gs://bucket", "gcs://bucket",
                     "abfs://container", "abfss://container", "az://container", "C:\\archive"]


@pytest.mark.parametrize("url, named", REFUSED_PROTOCOLS)
@pytest.mark.parametrize("allow", [False, True], ids=["default", "allow_insecure_http"])
def test_destination_protocol_outside_the_allow_list_is_refused(loopback_only, environment, url, named, allow):
    # allow_insecure_http accepts a plain-http *endpoint* of an object store, never an HTTP filesystem
    with pytest.raises(TenantConfigError) as caught:
        check_transport(Destination(url, {}, allow_insecure_http=allow), "--destination")
    message = str(caught.value)
    assert message.startswith("--destination: ") and named in message, message


@pytest.mark.parametrize("url", ALLOWED_PROTOCOLS)
def test_object_store_and_local_protocols_are_allowed(loopback_only, environment, url):
    check_transport(Destination(url, {"anon": True} if url.startswith("s3") else {}), "--destination")


def test_an_in_process_memory_filesystem_is_allowed(loopback_only, environment):
    from tests.faultfs import FaultyFileSystem  # registers faulty://, a MemoryFileSystem

    assert FaultyFileSystem.protocol == "faulty"
    check_transport(Destination("faulty://archive", {}), "--destination")


@pytest.mark.parametrize("url, named", REFUSED_PROTOCOLS)
def test_tenant_file_refuses_the_protocol(loopback_only, environment, url, named):
    text = json.dumps({"tenants": {"acme": {"destinations": [{"url": url}]}}})
    with pytest.raises(TenantConfigError) as caught:
        parse(text, "t.json", environ={})
    assert str(caught.value).startswith("tenant 'acme': destinations[0]") and named in str(caught.value)


# --- every way an endpoint reaches the client ---------------------------------------------------

_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="

REFUSED_ROUTES = [
    # (destination, storage options, environment, AWS config file, where the refusal says it came from)
    pytest.param("s3://bucket", {}, {"AWS_ENDPOINT_URL": "http://10.0.0.5:9000"}, None, "AWS_ENDPOINT_URL",
                 id="env-AWS_ENDPOINT_URL"),
    pytest.param("s3://bucket", {}, {"AWS_ENDPOINT_URL_S3": "http://minio.internal:9000"}, None,
                 "AWS_ENDPOINT_URL_S3", id="env-AWS_ENDPOINT_URL_S3"),
    pytest.param("s3a://bucket", {}, {"AWS_ENDPOINT_URL_S3": "http://10.0.0.5"}, None, "AWS_ENDPOINT_URL_S3",
                 id="env-s3a"),
    pytest.param("s3://bucket", {"key": "k", "secret": "s"}, {"AWS_ENDPOINT_URL": "HTTP://Minio.Internal"}, None,
                 "AWS_ENDPOINT_URL", id="env-with-keys-in-options"),
    pytest.param("s3://bucket", {}, {}, "[default]\nendpoint_url = http://10.0.0.5:9000\n", "AWS config",
                 id="config-default-profile"),
    pytest.param("s3://bucket", {"profile": "archiver"}, {},
                 "[profile archiver]\nendpoint_url = http://10.0.0.5:9000\n", "AWS config",
                 id="config-profile-from-storage-options"),
    pytest.param("s3://bucket", {}, {"AWS_PROFILE": "archiver"},
                 "[profile archiver]\nendpoint_url = http://10.0.0.5:9000\n", "AWS config",
                 id="config-profile-from-AWS_PROFILE"),
    pytest.param("s3://bucket", {}, {},
                 "[default]\nservices = archive\n[services archive]\ns3 =\n  endpoint_url = http://10.0.0.5\n",
                 "AWS config", id="config-services-section"),
    pytest.param("s3://bucket", {"use_ssl": False}, {}, None, "use_ssl", id="s3fs-use_ssl-false"),
    pytest.param("s3://bucket", {"client_kwargs": {"use_ssl": False}}, {}, None, "use_ssl",
                 id="client_kwargs-use_ssl-false"),
    pytest.param("s3://bucket", {"endpoint_url": "10.0.0.5:9000"}, {}, None, "", id="endpoint-without-scheme"),
    pytest.param("s3://bucket", {"client_kwargs": {"endpoint_url": "ftp://10.0.0.5"}}, {}, None, "",
                 id="endpoint-other-scheme"),
    pytest.param("gs://bucket", {}, {"STORAGE_EMULATOR_HOST": "10.0.0.5:4443"}, None, "STORAGE_EMULATOR_HOST",
                 id="env-STORAGE_EMULATOR_HOST-bare"),
    pytest.param("gcs://bucket", {}, {"STORAGE_EMULATOR_HOST": "http://fake-gcs.internal:4443"}, None,
                 "STORAGE_EMULATOR_HOST", id="env-STORAGE_EMULATOR_HOST-http"),
    pytest.param("gs://bucket", {"endpoint_url": "http://10.0.0.5:4443"}, {}, None, "", id="gcsfs-endpoint_url"),
    pytest.param("abfs://container", {}, {"AZURE_STORAGE_CONNECTION_STRING":
                 f"AccountName=acct;AccountKey={_KEY};BlobEndpoint=http://10.0.0.5:10000/acct"}, None,
                 "AZURE_STORAGE_CONNECTION_STRING", id="env-azure-BlobEndpoint"),
    pytest.param("az://container", {"account_name": "acct"}, {"AZURE_STORAGE_CONNECTION_STRING":
                 f"DefaultEndpointsProtocol=http;AccountName=acct;AccountKey={_KEY};EndpointSuffix=core.windows.net"},
                 None, "AZURE_STORAGE_CONNECTION_STRING", id="env-azure-DefaultEndpointsProtocol"),
]

ACCEPTED_ROUTES = [
    pytest.param("s3://bucket", {}, {"AWS_ENDPOINT_URL": "http://127.0.0.1:9000"}, None, id="env-loopback"),
    pytest.param("s3://bucket", {}, {"AWS_ENDPOINT_URL_S3": "http://[::1]:9000"}, None, id="env-loopback-v6"),
    pytest.param("s3://bucket", {}, {"AWS_ENDPOINT_URL": "https://minio.internal:9000"}, None, id="env-https"),
    # botocore ignores configured endpoints when told to: what the client uses is what counts
    pytest.param("s3://bucket", {}, {"AWS_ENDPOINT_URL": "http://10.0.0.5",
                                     "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS": "true"}, None, id="env-ignored"),
    pytest.param("s3://bucket", {"client_kwargs": {"endpoint_url": "https://minio.internal"}},
                 {"AWS_ENDPOINT_URL": "http://10.0.0.5"}, None, id="option-overrides-env"),
    pytest.param("s3://bucket", {"profile": "other"}, {},
                 "[profile archiver]\nendpoint_url = http://10.0.0.5\n[profile other]\nregion = eu-west-1\n",
                 id="config-other-profile-chosen"),
    pytest.param("s3://bucket", {}, {}, "[default]\nendpoint_url = http://127.0.0.1:9000\n", id="config-loopback"),
    # a profile this machine lacks holds no endpoint here; the worker checks again with its own config
    pytest.param("s3://bucket", {"profile": "elsewhere"}, {}, None, id="config-profile-absent-here"),
    pytest.param("gs://bucket", {"token": "anon"}, {"STORAGE_EMULATOR_HOST": "default"}, None,
                 id="gcs-emulator-default"),
    pytest.param("gs://bucket", {}, {"STORAGE_EMULATOR_HOST": "http://127.0.0.1:4443"}, None,
                 id="gcs-emulator-loopback"),
    pytest.param("gs://bucket", {"endpoint_url": "https://storage.example.com"},
                 {"STORAGE_EMULATOR_HOST": "http://10.0.0.5:4443"}, None, id="gcs-option-overrides-env"),
    pytest.param("gs://bucket", {}, {"AWS_ENDPOINT_URL": "http://10.0.0.5"}, None, id="aws-env-on-gcs-ignored"),
    pytest.param("abfs://container", {"connection_string": f"AccountName=acct;AccountKey={_KEY}"},
                 {"AZURE_STORAGE_CONNECTION_STRING": "BlobEndpoint=http://10.0.0.5:10000/acct"}, None,
                 id="azure-option-overrides-env"),
    pytest.param("abfs://container", {}, {"AZURE_STORAGE_CONNECTION_STRING": "UseDevelopmentStorage=true"}, None,
                 id="azure-development-storage"),
    pytest.param("memory://archive", {}, {"AWS_ENDPOINT_URL": "http://10.0.0.5",
                                          "STORAGE_EMULATOR_HOST": "10.0.0.5"}, None, id="memory-ignores-env"),
]


@pytest.mark.parametrize("url, options, variables, aws_config, source", REFUSED_ROUTES)
def test_plain_http_route_is_refused_before_any_connection(loopback_only, environment, url, options, variables,
                                                             aws_config, source):
    environment(variables, aws_config)
    with pytest.raises(TenantConfigError) as caught:
        check_transport(Destination(url, options), "--destination")
    message = str(caught.value)
    assert message.startswith("--destination: endpoint ") and "HTTPS" in message, message
    assert source in message
    assert _KEY not in message


@pytest.mark.parametrize("url, options, variables, aws_config, source", REFUSED_ROUTES)
def test_plain_http_route_passes_the_check_when_allowed(loopback_only, environment, url, options, variables,
                                                         aws_config, source):
    environment(variables, aws_config)
    check_transport(Destination(url, options, allow_insecure_http=True), "--destination")
    # the single-tenant directory and a tenant file take the same switch
    TenantDirectory.single(url, options, allow_insecure_http=True)
    text = json.dumps({"tenants": {"acme": {"destinations": [
        {"url": url, "storage_options": options, "allow_insecure_http": True}]}}})
    assert parse(text, "t.json", environ={}).tenants["acme"].destination.allow_insecure_http is True


@pytest.mark.parametrize("url, options, variables, aws_config", ACCEPTED_ROUTES)
def test_loopback_https_and_unused_routes_are_accepted(loopback_only, environment, url, options, variables,
                                                      aws_config):
    environment(variables, aws_config)
    check_transport(Destination(url, options), "--destination")


@pytest.mark.parametrize("url, options, variables, aws_config, source", REFUSED_ROUTES)
def test_the_entry_point_refuses_each_route_with_exit_2(loopback_only, environment, tmp_path, capsys, url, options,
                                                        variables, aws_config, source):
    environment(variables, aws_config)
    code = run.main(["--input", str(tmp_path), "--destination", url, "--storage_options", json.dumps(options)])
    assert code == 2
    assert "HTTPS" in capsys.readouterr().err
    tenants = tmp_path / "tenants.json"
    tenants.write_text(json.dumps({"tenants": {"acme": {"destinations": [{"url": url, "storage_options": options}]}}}))
    code = run.main(["--input", str(tmp_path), "--tenants", str(tenants), "--dead_letters", str(tmp_path / "dead")])
    assert code == 2
    err = capsys.readouterr().err
    assert "tenant 'acme': destinations[0]: endpoint" in err and _KEY not in err


@pytest.mark.parametrize("url, named", REFUSED_PROTOCOLS[:6])
def test_the_entry_point_refuses_a_non_object_store_destination(loopback_only, environment, tmp_path, capsys, url,
                                                                 named):
    assert run.main(["--input", str(tmp_path), "--destination", url, "--allow_insecure_http", "true"]) == 2
    assert named in capsys.readouterr().err


# --- the worker checks again, on what its client resolved -----------------------------------

@pytest.mark.parametrize("url, options, variables, aws_config, source", REFUSED_ROUTES)
def test_the_object_store_refuses_a_route_that_appeared_after_configuration(loopback_only, environment, url, options,
                                                                             variables, aws_config, source):
    spec = StoreSpec(Destination(url, options))  # configured in a clean environment ...
    environment(variables, aws_config)           # ... opened on a worker whose environment differs
    with pytest.raises(TenantConfigError, match="HTTPS"):
        ObjectStore(spec)


def _gcsfs(**kwargs):
    import gcsfs
    return gcsfs.GCSFileSystem(token="anon", skip_instance_cache=True, **kwargs)


def _adlfs(**kwargs):
    import adlfs
    return adlfs.AzureBlobFileSystem(skip_instance_cache=True, **kwargs)


@pytest.mark.parametrize("make, refused", [
    pytest.param(lambda: _gcsfs(endpoint_url="http://10.0.0.5:4443"), True, id="gcsfs-http"),
    pytest.param(lambda: _gcsfs(endpoint_url="http://127.0.0.1:4443"), False, id="gcsfs-loopback"),
    pytest.param(lambda: _gcsfs(), False, id="gcsfs-default"),
    pytest.param(lambda: _adlfs(connection_string=f"AccountName=a;AccountKey={_KEY};"
                                                  f"BlobEndpoint=http://10.0.0.5:10000/a"), True, id="adlfs-http"),
    pytest.param(lambda: _adlfs(account_name="acct"), False, id="adlfs-default"),
])
def test_client_transport_reads_what_the_filesystem_resolved(loopback_only, environment, make, refused):
    fs = make()
    destination = Destination("gs://b" if "gcs" in type(fs).__module__ else "abfs://c", {})
    if refused:
        with pytest.raises(TenantConfigError, match="^somewhere: endpoint http://10.0.0.5"):
            backends.check_client_transport(fs, destination, "somewhere")
    else:
        backends.check_client_transport(fs, destination, "somewhere")
    backends.check_client_transport(fs, Destination(destination.url, {}, allow_insecure_http=True), "somewhere")


# --- loopback endpoints still work, end to end ----------------------------------------------

def test_a_loopback_endpoint_from_the_environment_archives(loopback_only, environment, s3_server, tmp_path):
    bucket = s3_server.create_bucket(f"env-endpoint-{uuid.uuid4().hex[:8]}")
    environment({"AWS_ENDPOINT_URL_S3": s3_server.endpoint_url, "AWS_ACCESS_KEY_ID": s3_server.access_key,
                 "AWS_SECRET_ACCESS_KEY": s3_server.secret_key, "AWS_DEFAULT_REGION": s3_server.region})
    source = tmp_path / "in.jsonl"
    source.write_text("\n".join(json.dumps(r) for r in clevertap_records()[:2]) + "\n")
    code = run.main(["--input", str(source), "--destination", f"s3://{bucket}", "--outcomes",
                     str(tmp_path / "outcomes"), "--dead_letters", str(tmp_path / "dead"), "--summary", "false",
                     "--retry_base_delay", "0.01"])
    outcomes = read_outcomes(tmp_path / "outcomes")
    assert code == 0, outcomes
    assert [o["status"] for o in outcomes] == ["ARCHIVED", "ARCHIVED"]
    stored = [o["Key"] for o in s3_server.boto3_client().list_objects_v2(Bucket=bucket)["Contents"]]
    archived = sorted(key for key in stored if key.startswith("sent_messages/"))
    assert archived == sorted(o["url"].split(f"{bucket}/", 1)[1] for o in outcomes)
    # the audit index and its manifest went the same way, beside them
    assert {key.split("/", 1)[0] for key in stored} == {"sent_messages", "archive_index", "archive_manifests"}


# --- credentials inside a destination URL never reach the log --------------------------------

@pytest.mark.parametrize("url, secret", [
    pytest.param("s3://AKIAIOSFODNN7EXAMPLE:wJalrXUtnFEMIK7MDENG@bucket", "wJalrXUtnFEMIK7MDENG", id="s3"),
    pytest.param("abfs://user:hunter2pass@container", "hunter2pass", id="abfs"),
    pytest.param("https://user:hunter2pass@archive.example.com/x", "hunter2pass", id="https"),
    pytest.param("memory://user:hunter2pass@archive", "hunter2pass", id="memory"),
])
def test_a_destination_url_with_credentials_exits_2_and_prints_no_secret(loopback_only, environment, tmp_path,
                                                                        capsys, caplog, url, secret):
    code = run.main(["--input", str(tmp_path), "--destination", url, "--summary", "true"])
    captured = capsys.readouterr()
    assert code == 2
    for text in (captured.out, captured.err, caplog.text):
        assert secret not in text
    assert "error: --destination" in captured.err
