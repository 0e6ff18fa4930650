"""Tenant files: parsing, the destination rule, validation, ${ENV} expansion, the HTTPS rule,
and no credentials inside a URL."""

from __future__ import annotations

import copy
import json
import re

import pytest
import yaml

from archive.envelope import CHANNELS
from archive.tenants import (
    AzureOptions, Destination, GCSOptions, S3Options, Tenant, TenantConfigError, TenantDirectory,
    check_transport, check_url, choose_destination, load, parse, redact_url,
)

# --- a full, valid file ---------------------------------------------------------------

FULL_YAML = """\
tenants:
  acme:
    profile: clevertap
    compression: lz4
    channels: [email, push, sms, whatsapp]
    destinations:
      - url: s3://acme-message-archive
        default: true
        storage_options: {profile: acme-archiver}
        s3:
          sse: aws:kms
          kms_key_id: arn:aws:kms:us-east-1:111122223333:key/1234abcd
          object_lock: {mode: COMPLIANCE, retain_days: 2555}
          storage_class: STANDARD_IA
      - url: abfs://archive
        storage_options: {account_name: acme}
        http_content_encoding: true
        azure: {encryption_scope: archive-scope, tier: Cool}
      - url: gs://acme-archive
        gcs: {kms_key_name: projects/p/locations/l/keyRings/r/cryptoKeys/k}
  globex:
    profile: braze
    compression: zstd
    channels: [email, mms]
    destinations:
      - url: gcs://globex-archive
        storage_options:
          token: anon
          endpoint_url: http://10.1.2.3:4443
        allow_insecure_http: true
        http_content_encoding: false
        gcs: {}
      - url: s3a://globex-archive
        default: false
        s3:
          sse: AES256
          object_lock: {mode: GOVERNANCE, retain_days: 1}
  initech:
    destinations:
      - url: az://initech
        azure: {tier: Archive}
  hooli.eu:prod@1_x-y:
    profile: braze
    compression: none
    channels: [sms]
    destinations:
      - url: file:///var/archive/hooli
      - url: memory://hooli
        default: true
      - url: abfss://hooli@hooli.dfs.core.windows.net
        azure: {encryption_scope: scope-1}
"""

FULL_EXPECTED = TenantDirectory({
    "acme": Tenant(
        "acme", "clevertap", "lz4", frozenset({"email", "push", "sms", "whatsapp"}), (
            Destination(
                "s3://acme-message-archive", {"profile": "acme-archiver"}, default=True,
                s3=S3Options("aws:kms", "arn:aws:kms:us-east-1:111122223333:key/1234abcd", "COMPLIANCE", 2555,
                             "STANDARD_IA")),
            Destination("abfs://archive", {"account_name": "acme"}, http_content_encoding=True,
                        azure=AzureOptions("archive-scope", "Cool")),
            Destination("gs://acme-archive", {},
                        gcs=GCSOptions("projects/p/locations/l/keyRings/r/cryptoKeys/k")),
        )),
    "globex": Tenant(
        "globex", "braze", "zstd", frozenset({"email", "mms"}), (
            Destination("gcs://globex-archive", {"token": "anon", "endpoint_url": "http://10.1.2.3:4443"},
                        allow_insecure_http=True),
            Destination("s3a://globex-archive", {}, s3=S3Options("AES256", None, "GOVERNANCE", 1)),
        )),
    # Defaults: the clevertap profile, its compression (None: decided by the profile), all its channels.
    "initech": Tenant(
        "initech", "clevertap", None, frozenset({"email", "push", "sms", "whatsapp"}), (
            Destination("az://initech", {}, azure=AzureOptions(None, "Archive")),
        )),
    "hooli.eu:prod@1_x-y": Tenant(
        "hooli.eu:prod@1_x-y", "braze", "none", frozenset({"sms"}), (
            Destination("file:///var/archive/hooli"),
            Destination("memory://hooli", default=True),
            Destination("abfss://hooli@hooli.dfs.core.windows.net", azure=AzureOptions("scope-1")),
        )),
})

FULL_CHOSEN = {
    "acme": "s3://acme-message-archive",       # marked
    "globex": "s3a://globex-archive",          # none marked, the one S3
    "initech": "az://initech",                 # the only one
    "hooli.eu:prod@1_x-y": "memory://hooli",   # marked
}


def _as_json(text: str) -> str:
    return json.dumps(yaml.safe_load(text), indent=2)


@pytest.mark.parametrize("text, source", [
    pytest.param(FULL_YAML, "tenants.yaml", id="yaml"),
    pytest.param(FULL_YAML, "<tenants>", id="yaml-no-suffix"),
    pytest.param(_as_json(FULL_YAML), "tenants.json", id="json"),
    pytest.param(_as_json(FULL_YAML), "tenants.yaml", id="json-read-as-yaml"),
])
def test_full_file_parses_to_the_expected_dataclasses(text, source):
    directory = parse(text, source, environ={})
    assert directory == FULL_EXPECTED
    assert list(directory.tenants) == list(FULL_EXPECTED.tenants)  # file order kept
    assert directory.catch_all is None
    assert {name: t.destination.url for name, t in directory.tenants.items()} == FULL_CHOSEN
    assert directory.tenants["globex"].destinations[0].protocol == "gcs"
    assert directory.tenants["hooli.eu:prod@1_x-y"].destinations[0].protocol == "file"


def test_json_source_is_read_as_json_only():
    with pytest.raises(TenantConfigError, match=r"^tenants\.json: not valid YAML/JSON"):
        parse(FULL_YAML, "tenants.json")


def test_load_reads_a_real_file(tmp_path):
    yaml_path, json_path = tmp_path / "tenants.yaml", tmp_path / "tenants.json"
    yaml_path.write_text(FULL_YAML, encoding="utf-8")
    json_path.write_text(_as_json(FULL_YAML), encoding="utf-8")
    assert load(str(yaml_path), environ={}) == FULL_EXPECTED
    assert load(f"file://{json_path}", environ={}) == FULL_EXPECTED


def test_load_names_the_file_in_errors(tmp_path):
    path = tmp_path / "tenants.yaml"
    path.write_text("tenants: {}\n", encoding="utf-8")
    with pytest.raises(TenantConfigError, match=f"^{re.escape(str(path))}: no tenants$"):
        load(str(path), environ={})


def test_load_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        load(str(tmp_path / "absent.yaml"))


# --- which destination archives ------------------------------------------------------------

def _d(url: str, default: bool = False) -> dict:
    return {"url": url, "default": True} if default else {"url": url}


CHOICES = [
    # (destinations, chosen url)
    pytest.param([_d("s3://a"), _d("abfs://b", default=True), _d("gs://c")], "abfs://b", id="marked-wins-over-s3"),
    pytest.param([_d("s3://a", default=True), _d("s3://b")], "s3://a", id="marked-among-two-s3"),
    pytest.param([_d("abfs://b"), _d("s3://a"), _d("gs://c")], "s3://a", id="none-marked-one-s3"),
    pytest.param([_d("gs://c"), _d("s3a://a")], "s3a://a", id="none-marked-one-s3a"),
    pytest.param([_d("gs://c")], "gs://c", id="single-gcs"),
    pytest.param([_d("file:///tmp/x")], "file:///tmp/x", id="single-local"),
    pytest.param([_d("s3://a")], "s3://a", id="single-s3"),
    pytest.param([_d("abfs://b", default=True)], "abfs://b", id="single-marked"),
]


@pytest.mark.parametrize("destinations, chosen", CHOICES)
def test_destination_rule(destinations, chosen):
    text = json.dumps({"tenants": {"acme": {"destinations": destinations}}})
    tenant = parse(text, "t.json").tenants["acme"]
    assert tenant.destination.url == chosen
    assert choose_destination(tenant.destinations, "acme").url == chosen


AMBIGUOUS = [
    pytest.param([_d("s3://a", default=True), _d("abfs://b", default=True)], "more than one destination is marked",
                 id="two-marked"),
    pytest.param([_d("abfs://b"), _d("gs://c")], "2 destinations and none is marked default", id="two-non-s3"),
    pytest.param([_d("s3://a"), _d("s3://b"), _d("gs://c")], "3 destinations and none is marked default",
                 id="two-s3"),
]


@pytest.mark.parametrize("destinations, message", AMBIGUOUS)
def test_ambiguous_destination_is_a_load_error(destinations, message):
    text = json.dumps({"tenants": {"ok": {"destinations": [_d("s3://ok")]},
                                   "acme": {"destinations": destinations}}})
    with pytest.raises(TenantConfigError, match=r"^tenant 'acme': " + message):
        parse(text, "t.json")


# --- invalid files: every error names the tenant and the field --------------------------------

def _base() -> dict:
    return {"profile": "clevertap", "compression": "gzip", "channels": ["email", "sms"],
            "destinations": [{"url": "s3://acme", "default": True, "s3": {}},
                             {"url": "abfs://archive", "azure": {}},
                             {"url": "gs://acme", "gcs": {}}]}


def _with(path: str, value=None, delete: bool = False):
    """The base tenant with one value set (or deleted) at a dotted path (list indexes as digits)."""
    body = _base()
    *parents, last = path.split(".")
    target = body
    for part in parents:
        target = target[int(part)] if part.isdigit() else target[part]
    if delete:
        del target[int(last) if last.isdigit() else last]
    else:
        target[int(last) if last.isdigit() else last] = value
    return body


INVALID = [
    # (tenant body, what the message must name besides the tenant)
    pytest.param(_with("region", "eu"), ["unknown key", "region"], id="unknown-tenant-key"),
    pytest.param(_with("destinations.0.bucket", "b"), ["destinations[0]", "unknown key", "bucket"],
                 id="unknown-destination-key"),
    pytest.param(_with("destinations.0.s3.encryption", "AES256"), ["destinations[0].s3", "encryption"],
                 id="unknown-s3-key"),
    pytest.param(_with("destinations.0.s3.object_lock", {"mode": "COMPLIANCE", "retain_days": 1, "legal_hold": True}),
                 ["destinations[0].s3.object_lock", "legal_hold"], id="unknown-object-lock-key"),
    pytest.param(_with("destinations.1.azure.access_tier", "Cool"), ["destinations[1].azure", "access_tier"],
                 id="unknown-azure-key"),
    pytest.param(_with("destinations.2.gcs.kms", "k"), ["destinations[2].gcs", "kms"], id="unknown-gcs-key"),
    pytest.param(_with("profile", "mailchimp"), ["profile"], id="unknown-profile"),
    pytest.param(_with("profile", ["braze"]), ["profile"], id="profile-a-list"),
    pytest.param(_with("profile", None), ["profile"], id="profile-null"),
    pytest.param(_with("compression", "brotli"), ["compression"], id="unknown-compression"),
    pytest.param(_with("compression", {"codec": "lz4"}), ["compression"], id="compression-a-mapping"),
    pytest.param(_with("compression", "LZ4"), ["compression"], id="compression-upper-case"),
    pytest.param(_with("channels", ["email", "fax"]), ["channels", "'fax'"], id="unknown-channel"),
    pytest.param(_with("channels", ["mms"]), ["channels", "clevertap", "mms"], id="channel-not-in-clevertap"),
    pytest.param({**_with("channels", ["email", "whatsapp"]), "profile": "braze"}, ["channels", "braze", "whatsapp"],
                 id="channel-not-in-braze"),
    pytest.param(_with("channels", []), ["channels"], id="channels-empty"),
    pytest.param(_with("channels", "email"), ["channels"], id="channels-a-string"),
    pytest.param(_with("channels", ["email", 3]), ["channels"], id="channel-not-a-string"),
    pytest.param(_with("destinations", []), ["destinations"], id="destinations-empty"),
    pytest.param(_with("destinations", delete=True), ["destinations"], id="destinations-missing"),
    pytest.param(_with("destinations", {"url": "s3://a"}), ["destinations"], id="destinations-a-mapping"),
    pytest.param(_with("destinations.0", "s3://acme"), ["destinations[0]", "mapping"],
                 id="destination-a-string"),
    pytest.param(_with("destinations.0.url", delete=True), ["destinations[0].url"], id="url-missing"),
    pytest.param(_with("destinations.0.url", "  "), ["destinations[0].url"], id="url-blank"),
    pytest.param(_with("destinations.0.url", 7), ["destinations[0].url"], id="url-a-number"),
    pytest.param(_with("destinations.0.url", "https://acme.s3.amazonaws.com/"), ["destinations[0].url", "'https'"],
                 id="url-https"),
    pytest.param(_with("destinations.0.url", "http://minio:9000/acme"), ["destinations[0].url", "'http'"],
                 id="url-http"),
    pytest.param(_with("destinations.0.url", "ftp://archive/acme"), ["destinations[0].url", "'ftp'"],
                 id="url-ftp"),
    pytest.param(_with("destinations.0.url", "hdfs://nn/acme"), ["destinations[0].url", "'hdfs'"], id="url-hdfs"),
    pytest.param(_with("destinations.0.storage_options", ["anon"]), ["destinations[0].storage_options"],
                 id="storage-options-a-list"),
    pytest.param(_with("destinations.0.storage_options", None), ["destinations[0].storage_options"],
                 id="storage-options-null"),
    pytest.param(_with("destinations.0.default", "yes"), ["destinations[0].default"], id="default-a-string"),
    pytest.param(_with("destinations.0.default", 1), ["destinations[0].default"], id="default-a-number"),
    pytest.param(_with("destinations.0.default", None), ["destinations[0].default"], id="default-null"),
    pytest.param(_with("destinations.0.allow_insecure_http", "true"), ["destinations[0].allow_insecure_http"],
                 id="allow-insecure-a-string"),
    pytest.param(_with("destinations.0.http_content_encoding", "gzip"), ["destinations[0].http_content_encoding"],
                 id="http-content-encoding-a-string"),
    pytest.param(_with("destinations.0.s3.sse", "aes256"), ["destinations[0].s3.sse"], id="sse-lower-case"),
    pytest.param(_with("destinations.0.s3.sse", "aws:kms:dsse"), ["destinations[0].s3.sse"], id="sse-dsse"),
    pytest.param(_with("destinations.0.s3.sse", "SSE-S3"), ["destinations[0].s3.sse"], id="sse-name"),
    pytest.param(_with("destinations.0.s3.sse", True), ["destinations[0].s3.sse"], id="sse-a-bool"),
    pytest.param(_with("destinations.0.s3", {"kms_key_id": "arn:k"}), ["destinations[0].s3.kms_key_id", "aws:kms"],
                 id="kms-key-without-sse"),
    pytest.param(_with("destinations.0.s3", {"sse": "AES256", "kms_key_id": "arn:k"}),
                 ["destinations[0].s3.kms_key_id", "aws:kms"], id="kms-key-with-sse-s3"),
    pytest.param(_with("destinations.0.s3", {"sse": "aws:kms", "kms_key_id": ""}),
                 ["destinations[0].s3.kms_key_id"], id="kms-key-empty"),
    pytest.param(_with("destinations.0.s3", {"sse": "aws:kms", "kms_key_id": 12}),
                 ["destinations[0].s3.kms_key_id"], id="kms-key-a-number"),
    pytest.param(_with("destinations.0.s3.storage_class", ""), ["destinations[0].s3.storage_class"],
                 id="storage-class-empty"),
    pytest.param(_with("destinations.0.s3.object_lock", "COMPLIANCE"), ["destinations[0].s3.object_lock"],
                 id="object-lock-a-string"),
    pytest.param(_with("destinations.0.s3.object_lock", {"retain_days": 30}), ["destinations[0].s3.object_lock.mode"],
                 id="object-lock-mode-missing"),
    pytest.param(_with("destinations.0.s3.object_lock", {"mode": "compliance", "retain_days": 30}),
                 ["destinations[0].s3.object_lock.mode"], id="object-lock-mode-lower-case"),
    pytest.param(_with("destinations.0.s3.object_lock", {"mode": "LEGAL_HOLD", "retain_days": 30}),
                 ["destinations[0].s3.object_lock.mode"], id="object-lock-mode-unknown"),
    pytest.param(_with("destinations.0.s3.object_lock", {"mode": "COMPLIANCE"}),
                 ["destinations[0].s3.object_lock.retain_days"], id="retain-days-missing"),
    *[pytest.param(_with("destinations.0.s3.object_lock", {"mode": "GOVERNANCE", "retain_days": days}),
                   ["destinations[0].s3.object_lock.retain_days"], id=f"retain-days-{label}")
      for label, days in [("0", 0), ("negative", -1), ("36501", 36501), ("true", True), ("false", False),
                          ("fraction", 1.5), ("string", "30"), ("null", None)]],
    pytest.param(_with("destinations.1.azure.tier", "cool"), ["destinations[1].azure.tier"], id="tier-lower-case"),
    pytest.param(_with("destinations.1.azure.tier", "Premium"), ["destinations[1].azure.tier"], id="tier-premium"),
    pytest.param(_with("destinations.1.azure.encryption_scope", ""), ["destinations[1].azure.encryption_scope"],
                 id="encryption-scope-empty"),
    pytest.param(_with("destinations.2.gcs.kms_key_name", ["k"]), ["destinations[2].gcs.kms_key_name"],
                 id="kms-key-name-a-list"),
    pytest.param(_with("destinations.1.s3", {}), ["destinations[1].s3", "abfs://"], id="s3-options-on-azure"),
    pytest.param(_with("destinations.0.azure", {"tier": "Cool"}), ["destinations[0].azure", "s3://"],
                 id="azure-options-on-s3"),
    pytest.param(_with("destinations.1.gcs", {}), ["destinations[1].gcs", "abfs://"], id="gcs-options-on-azure"),
    pytest.param(_with("destinations.2", {"url": "file:///x", "s3": {}}), ["destinations[2].s3", "file://"],
                 id="s3-options-on-local"),
    pytest.param(_with("destinations.0.s3", None), ["destinations[0].s3"], id="s3-options-null"),
]


def _message(body: dict, fmt: str, name: str = "acme") -> str:
    document = {"tenants": {"fine": {"destinations": [{"url": "s3://fine"}]}, name: body}}
    text, source = ((json.dumps(document), "tenants.json") if fmt == "json"
                    else (yaml.safe_dump(document), "tenants.yaml"))
    with pytest.raises(TenantConfigError) as caught:
        parse(text, source, environ={})
    return str(caught.value)


def test_the_base_tenant_is_valid():
    assert parse(json.dumps({"tenants": {"acme": _base()}}), "t.json").tenants["acme"].profile == "clevertap"


@pytest.mark.parametrize("fmt", ["yaml", "json"])
@pytest.mark.parametrize("body, names", INVALID)
def test_invalid_tenant(body, names, fmt):
    message = _message(body, fmt)
    assert message.startswith("tenant 'acme': "), message
    for name in names:
        assert name in message, message


@pytest.mark.parametrize("name", ["acme corp", "-acme", "acme/eu", "", "a" * 129])
def test_invalid_tenant_name(name):
    message = _message(_base(), "json", name)
    assert message.startswith(f"tenant {name!r}: a tenant name"), message


@pytest.mark.parametrize("body", [None, [], "s3://acme"], ids=["null", "list", "string"])
def test_tenant_body_not_a_mapping(body):
    assert _message(body, "json") == "tenant 'acme': expected a mapping"


FILE_ERRORS = [
    pytest.param("tenants: {}\n", "t.yaml: no tenants", id="no-tenants"),
    pytest.param("[]\n", "t.yaml: expected a mapping with a 'tenants' mapping", id="a-list"),
    pytest.param("", "t.yaml: expected a mapping with a 'tenants' mapping", id="empty"),
    pytest.param("tenant: {}\n", "t.yaml: expected a mapping with a 'tenants' mapping", id="misspelt"),
    pytest.param("tenants: [acme]\n", "t.yaml: expected a mapping with a 'tenants' mapping", id="tenants-a-list"),
    pytest.param("tenants: {a: {destinations: [{url: 's3://a'}]}}\nversion: 2\n",
                 "t.yaml: unknown top-level key(s) ['version']", id="unknown-top-level-key"),
    pytest.param("tenants: {a: [}\n", "t.yaml: not valid YAML/JSON", id="bad-yaml"),
]


@pytest.mark.parametrize("text, message", FILE_ERRORS)
def test_invalid_file(text, message):
    with pytest.raises(TenantConfigError) as caught:
        parse(text, "t.yaml")
    assert str(caught.value).startswith(message)


def test_error_in_a_later_destination_names_its_index():
    body = _base()
    body["destinations"].append({"url": "s3://late", "s3": {"sse": "none"}})
    assert _message(body, "yaml").startswith("tenant 'acme': destinations[3].s3.sse must be")


def test_retain_days_bounds_are_inclusive():
    for days in (1, 36500):
        body = _with("destinations.0.s3.object_lock", {"mode": "COMPLIANCE", "retain_days": days})
        tenant = parse(json.dumps({"tenants": {"acme": body}}), "t.json").tenants["acme"]
        assert tenant.destination.s3 == S3Options(object_lock_mode="COMPLIANCE", object_lock_days=days)


def test_config_error_is_a_value_error():
    assert issubclass(TenantConfigError, ValueError)


# --- ${ENV} in storage_options -------------------------------------------------------------

ENV_YAML = """\
tenants:
  acme:
    destinations:
      - url: abfs://archive
        storage_options:
          account_name: ${ACCOUNT}
          account_key: "${ACCOUNT_KEY}"
          sas_token: literal-s3cr3t-in-the-file
          literal: "$HOME, {PLAIN}, ${1X} and ${not-a-var}"
          joined: ${ACCOUNT}.${SUFFIX}
          client_kwargs: {headers: ["x-${ACCOUNT}", "${SUFFIX}"]}
          retries: 3
"""
ENV = {"ACCOUNT": "acmearchive", "ACCOUNT_KEY": "c2VjcmV0LWtleQ==", "SUFFIX": "blob.core.windows.net"}


def test_env_expansion_in_storage_options():
    destination = parse(ENV_YAML, environ=ENV).tenants["acme"].destination
    assert destination.storage_options == {
        "account_name": "acmearchive",
        "account_key": "c2VjcmV0LWtleQ==",
        "sas_token": "literal-s3cr3t-in-the-file",
        "literal": "$HOME, {PLAIN}, ${1X} and ${not-a-var}",
        "joined": "acmearchive.blob.core.windows.net",
        "client_kwargs": {"headers": ["x-acmearchive", "blob.core.windows.net"]},
        "retries": 3,
    }


def test_env_expansion_reads_the_process_environment_by_default(monkeypatch):
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    assert parse(ENV_YAML).tenants["acme"].destination.storage_options["account_key"] == "c2VjcmV0LWtleQ=="


def test_env_expansion_is_not_recursive():
    text = "tenants: {a: {destinations: [{url: 's3://a', storage_options: {key: '${OUTER}'}}]}}"
    options = parse(text, environ={"OUTER": "${INNER}", "INNER": "no"}).tenants["a"].destination.storage_options
    assert options == {"key": "${INNER}"}


def test_env_expansion_only_in_storage_options():
    text = "tenants: {a: {destinations: [{url: 's3://${BUCKET}', s3: {storage_class: '${CLASS}'}}]}}"
    destination = parse(text, environ={"BUCKET": "b", "CLASS": "GLACIER"}).tenants["a"].destination
    assert destination.url == "s3://${BUCKET}" and destination.s3.storage_class == "${CLASS}"


@pytest.mark.parametrize("missing", ["ACCOUNT", "ACCOUNT_KEY", "SUFFIX"])
def test_missing_env_variable_is_named_and_no_value_is_printed(missing):
    env = {name: value for name, value in ENV.items() if name != missing}
    with pytest.raises(TenantConfigError) as caught:
        parse(ENV_YAML, environ=env)
    message = str(caught.value)
    assert message.startswith("tenant 'acme': destinations[0].storage_options"), message
    assert message.endswith(f"environment variable {missing} is not set"), message
    for value in [*env.values(), "literal-s3cr3t-in-the-file"]:
        assert value not in message


def test_expanded_http_endpoint_is_checked():
    text = "tenants: {a: {destinations: [{url: 's3://a', storage_options: {endpoint_url: '${EP}'}}]}}"
    with pytest.raises(TenantConfigError, match="plain http"):
        parse(text, environ={"EP": "http://minio.internal:9000"})
    assert parse(text, environ={"EP": "https://minio.internal:9000"}).tenants["a"].destination.storage_options == {
        "endpoint_url": "https://minio.internal:9000"}


# --- data in transit: HTTPS unless loopback or allowed -----------------------------------------

_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def _conn(**parts) -> str:
    return ";".join(f"{k}={v}" for k, v in parts.items()) + ";"


def _endpoint_options(endpoint: str) -> list:
    """The places an endpoint can be given, each as one param."""
    return [
        pytest.param({"client_kwargs": {"endpoint_url": endpoint}}, id=f"client_kwargs.endpoint_url={endpoint}"),
        pytest.param({"endpoint_url": endpoint}, id=f"endpoint_url={endpoint}"),
        pytest.param({"account_url": endpoint}, id=f"account_url={endpoint}"),
        pytest.param({"endpoint": endpoint}, id=f"endpoint={endpoint}"),
        pytest.param({"connection_string": _conn(DefaultEndpointsProtocol="https", AccountName="acct",
                                                 AccountKey=_KEY, BlobEndpoint=f"{endpoint}/acct")},
                     id=f"BlobEndpoint={endpoint}"),
    ]


REFUSED_ENDPOINTS = ["http://10.0.0.5:9000", "http://minio.internal", "HTTP://Minio.Internal:9000",
                     "http://localhost.example.com", "http://127.0.0.1.nip.io:9000", "http://[2001:db8::1]:9000",
                     "http://0.0.0.0:9000"]
LOOPBACK_ENDPOINTS = ["http://127.0.0.1:9000", "http://127.5.5.5", "http://[::1]:10000", "http://localhost:4443",
                      "http://LocalHost:4443"]
HTTPS_ENDPOINTS = ["https://s3.eu-west-1.amazonaws.com", "https://10.0.0.5:9000", "HTTPS://minio.internal"]

REFUSED = [p for e in REFUSED_ENDPOINTS for p in _endpoint_options(e)] + [
    pytest.param({"connection_string": _conn(DefaultEndpointsProtocol="http", AccountName="acct", AccountKey=_KEY,
                                             EndpointSuffix="core.windows.net")},
                 id="DefaultEndpointsProtocol=http"),
    pytest.param({"connection_string": _conn(DefaultEndpointsProtocol="http", AccountName="acct", AccountKey=_KEY)},
                 id="DefaultEndpointsProtocol=http-no-suffix"),
    pytest.param({"connection_string": " defaultendpointsprotocol = HTTP ; AccountName=acct;AccountKey=k"},
                 id="DefaultEndpointsProtocol=http-spelt-loosely"),
    pytest.param({"connection_string": "AccountName=acct;AccountKey=k;blobendpoint=http://10.0.0.5:10000/acct"},
                 id="blobendpoint-lower-case"),
]
ACCEPTED = [p for e in LOOPBACK_ENDPOINTS + HTTPS_ENDPOINTS for p in _endpoint_options(e)] + [
    pytest.param({}, id="no-endpoint"),
    pytest.param({"anon": True, "client_kwargs": {"region_name": "eu-west-1"}}, id="no-endpoint-client-kwargs"),
    pytest.param({"connection_string": _conn(DefaultEndpointsProtocol="https", AccountName="acct", AccountKey=_KEY,
                                             EndpointSuffix="core.windows.net")},
                 id="DefaultEndpointsProtocol=https"),
    pytest.param({"connection_string": "UseDevelopmentStorage=true"}, id="UseDevelopmentStorage"),
    # Azurite's own connection string: with a BlobEndpoint the SDK ignores DefaultEndpointsProtocol.
    pytest.param({"connection_string": _conn(DefaultEndpointsProtocol="http", AccountName="devstoreaccount1",
                                             AccountKey=_KEY,
                                             BlobEndpoint="http://127.0.0.1:10000/devstoreaccount1")},
                 id="azurite-connection-string"),
    pytest.param({"connection_string": _conn(DefaultEndpointsProtocol="http", AccountName="acct", AccountKey=_KEY,
                                             BlobEndpoint="https://acct.blob.core.windows.net")},
                 id="DefaultEndpointsProtocol=http-with-https-BlobEndpoint"),
    pytest.param({"endpoint_url": None, "account_url": 7, "client_kwargs": "http://10.0.0.5"},
                 id="non-string-values-ignored"),
]


@pytest.mark.parametrize("options", REFUSED)
def test_plain_http_endpoint_is_refused(options):
    with pytest.raises(TenantConfigError) as caught:
        check_transport(Destination("s3://a", options), "somewhere")
    message = str(caught.value)
    assert message.startswith("somewhere: endpoint http://") and "HTTPS" in message, message
    assert _KEY not in message


@pytest.mark.parametrize("options", REFUSED)
def test_plain_http_endpoint_is_allowed_when_asked(options):
    check_transport(Destination("s3://a", options, allow_insecure_http=True), "somewhere")


@pytest.mark.parametrize("options", ACCEPTED)
def test_loopback_and_https_endpoints_are_accepted(options):
    check_transport(Destination("s3://a", options), "somewhere")


def test_refusal_names_the_host_but_not_credentials_or_path():
    endpoint = "http://AKIAEXAMPLE:wJalrXUtnFEMI-secret@10.0.0.5:9000/bucket?X-Amz-Signature=sig-secret"
    with pytest.raises(TenantConfigError) as caught:
        check_transport(Destination("s3://a", {"endpoint_url": endpoint}), "destination s3://a")
    message = str(caught.value)
    assert message.startswith("destination s3://a: endpoint http://10.0.0.5:9000 is plain http"), message
    for secret in ("AKIAEXAMPLE", "wJalrXUtnFEMI-secret", "sig-secret", "/bucket"):
        assert secret not in message


def test_refusal_with_a_malformed_port_is_still_a_config_error():
    with pytest.raises(TenantConfigError, match="somewhere: endpoint http://minio"):
        check_transport(Destination("s3://a", {"endpoint_url": "http://minio:90O0"}), "somewhere")


def test_parse_refuses_plain_http_naming_tenant_and_destination():
    text = json.dumps({"tenants": {"acme": {"destinations": [
        {"url": "s3://a", "default": True},
        {"url": "s3://b", "storage_options": {"client_kwargs": {"endpoint_url": "http://minio.internal:9000"}}}]}}})
    with pytest.raises(TenantConfigError) as caught:
        parse(text, "t.json")
    assert str(caught.value).startswith(
        "tenant 'acme': destinations[1]: endpoint http://minio.internal:9000 is plain http")


@pytest.mark.parametrize("endpoint, allow, ok", [
    pytest.param("http://minio.internal:9000", False, False, id="http-refused"),
    pytest.param("http://minio.internal:9000", True, True, id="http-allowed"),
    pytest.param("http://127.0.0.1:9000", False, True, id="loopback"),
    pytest.param("https://minio.internal:9000", False, True, id="https"),
])
def test_parse_transport(endpoint, allow, ok):
    text = json.dumps({"tenants": {"acme": {"destinations": [
        {"url": "s3://a", "allow_insecure_http": allow, "storage_options": {"endpoint_url": endpoint}}]}}})
    if ok:
        assert parse(text, "t.json").tenants["acme"].destination.allow_insecure_http is allow
    else:
        with pytest.raises(TenantConfigError, match="^tenant 'acme': destinations\\[0\\]: endpoint"):
            parse(text, "t.json")


def test_single_tenant_directory_checks_transport():
    with pytest.raises(TenantConfigError, match="^destination s3://a: endpoint http://10.0.0.5:9000"):
        TenantDirectory.single("s3://a", {"endpoint_url": "http://10.0.0.5:9000"})
    directory = TenantDirectory.single("s3://a", {"endpoint_url": "http://10.0.0.5:9000"}, allow_insecure_http=True)
    assert directory.tenants["default"].destination.allow_insecure_http is True


# --- the directory ---------------------------------------------------------------------------

def test_lookup_without_catch_all():
    directory = parse(FULL_YAML, environ={})
    assert directory.lookup("acme") is directory.tenants["acme"]
    assert directory.lookup("hooli.eu:prod@1_x-y").profile == "braze"
    assert directory.lookup("nobody") is None
    assert directory.lookup("ACME") is None  # names are exact


def test_lookup_with_catch_all():
    directory = TenantDirectory.single("s3://archive", {"anon": True}, profile="braze", compression="gzip",
                                       name="solo")
    solo = directory.tenants["solo"]
    assert directory.catch_all == "solo" and list(directory.tenants) == ["solo"]
    assert solo == Tenant("solo", "braze", "gzip", frozenset(CHANNELS),
                          (Destination("s3://archive", {"anon": True}, default=True),))
    assert directory.lookup("solo") is solo
    assert directory.lookup("anyone") is solo
    assert directory.lookup("") is solo


def test_lookup_prefers_a_named_tenant_over_the_catch_all():
    parsed = parse(FULL_YAML, environ={})
    directory = TenantDirectory(parsed.tenants, catch_all="initech")
    assert directory.lookup("acme").name == "acme"
    assert directory.lookup("nobody").name == "initech"


def test_single_defaults():
    directory = TenantDirectory.single("gs://archive")
    tenant = directory.lookup("whoever")
    assert (tenant.name, tenant.profile, tenant.compression, tenant.channels) == (
        "default", "clevertap", None, frozenset(CHANNELS))
    assert tenant.destination == Destination("gs://archive", {}, default=True)


# --- secrets stay out of reprs -----------------------------------------------------------------

SECRET = "FAKE-SECRET-wJalrXUtnFEMI/K7MDENG"


def test_destination_repr_hides_storage_options():
    destination = Destination("abfs://archive", {"account_key": SECRET, "connection_string": f"AccountKey={SECRET}"},
                              s3=S3Options(), azure=AzureOptions(tier="Cool"))
    for text in (repr(destination), str(destination)):
        assert SECRET not in text and "account_key" not in text and "storage_options" not in text
        assert "abfs://archive" in text and "Cool" in text
    assert destination.storage_options["account_key"] == SECRET


def test_parsed_directory_repr_hides_expanded_secrets():
    directory = parse(ENV_YAML, environ={**ENV, "ACCOUNT_KEY": SECRET})
    assert directory.tenants["acme"].destination.storage_options["account_key"] == SECRET
    assert SECRET not in repr(directory)
    assert SECRET not in repr(directory.tenants["acme"])
    assert SECRET not in repr(directory.tenants["acme"].destinations)


def test_parse_does_not_mutate_or_share_the_document():
    document = {"tenants": {"acme": _base()}}
    document["tenants"]["acme"]["destinations"][0]["storage_options"] = {"client_kwargs": {"region_name": "x"}}
    before = copy.deepcopy(document)
    text = json.dumps(document)
    first, second = parse(text, "t.json"), parse(text, "t.json")
    assert json.loads(text) == before
    assert first == second
    assert first.tenants["acme"].destination.storage_options is not second.tenants["acme"].destination.storage_options


# --- credentials never ride in a URL ----------------------------------------------------------

CREDENTIAL_URLS = [
    # (url, the secret that must not be echoed)
    pytest.param("s3://AKIAIOSFODNN7EXAMPLE:wJalrXUtnFEMIK7MDENG@bucket/archive", "wJalrXUtnFEMIK7MDENG",
                 id="s3-key-secret"),
    pytest.param("s3://AKIAIOSFODNN7EXAMPLE:wJalr/XUtnFEMI+K7MDENG@bucket", "XUtnFEMI", id="s3-secret-with-slash"),
    pytest.param("s3://AKIAIOSFODNN7EXAMPLE@bucket", "AKIAIOSFODNN7EXAMPLE", id="s3-key-only"),
    pytest.param("s3a://k:s3cr3t@bucket", "s3cr3t", id="s3a"),
    pytest.param("gs://user:s3cr3t@bucket", "s3cr3t", id="gs"),
    pytest.param("abfs://user:s3cr3t@container", "s3cr3t", id="abfs-user-pass"),
    pytest.param("abfss://user:s3cr3t@container@account.dfs.core.windows.net/x", "s3cr3t", id="abfss-user-pass"),
    pytest.param("az://acct:Eby8vdM02xNOcqFlqUwJ@container", "Eby8vdM02xNOcqFlqUwJ", id="az-account-key"),
    pytest.param("https://user:hunter2@files.example.com/in.jsonl", "hunter2", id="https-user-pass"),
    pytest.param("http://user:hunter2@127.0.0.1:8080/in.jsonl", "hunter2", id="http-loopback-user-pass"),
    pytest.param("ftp://anonymous:me%40example.com@ftp.example.com/in", "me%40example.com", id="ftp"),
    pytest.param("memory://user:hunter2@archive", "hunter2", id="memory"),
    pytest.param("file://user:hunter2@localhost/tmp/in", "hunter2", id="file"),
    pytest.param("https://acct.blob.core.windows.net/c/in.jsonl?sv=2022-11-02&sig=Zm9vYmFy%3D", "Zm9vYmFy",
                 id="sas-token"),
    pytest.param("https://b.s3.amazonaws.com/in.jsonl?X-Amz-Credential=AKIA%2F1&X-Amz-Signature=abc123def",
                 "abc123def", id="presigned-s3"),
    pytest.param("gs://bucket/in.jsonl?access_token=ya29.s3cr3t", "ya29.s3cr3t", id="access-token"),
    pytest.param("s3://bucket/in?AWSAccessKeyId=AKIA&Signature=s3cr3t", "s3cr3t", id="legacy-presigned"),
]


@pytest.mark.parametrize("url, secret", CREDENTIAL_URLS)
def test_check_url_refuses_credentials_without_echoing_them(url, secret):
    with pytest.raises(TenantConfigError) as caught:
        check_url(url, "--input")
    message = str(caught.value)
    assert message.startswith("--input: the URL holds credentials"), message
    assert secret not in message and url not in message


@pytest.mark.parametrize("url", [
    "s3://bucket/archive", "s3://bucket", "gs://bucket/in/*.jsonl", "abfs://container/archive",
    "abfs://container@account.dfs.core.windows.net/archive",  # Azure's container@account form
    "az://container@account.blob.core.windows.net", "https://files.example.com:8443/in.jsonl",
    "http://127.0.0.1:9000/in", "http://[::1]:9000/in", "memory://archive", "file:///tmp/in.jsonl",
    "local_run/archive", "/data/in-?.jsonl", "/data/user@example.com/in.jsonl", "C:\\data\\in.jsonl",
    "s3://bucket/archive@2024/", "gs://bucket/in.jsonl?generation=1",
])
def test_check_url_accepts_urls_without_credentials(url):
    check_url(url, "--input")


@pytest.mark.parametrize("url, redacted", [
    pytest.param("s3://AKIA:wJalrXUtnFEMI@bucket/archive", "s3://***@bucket/archive", id="userinfo"),
    pytest.param("s3://AKIA:wJalr/XUtn@bucket/archive", "s3://***@bucket/archive", id="secret-with-slash"),
    pytest.param("s3://AKIA:wJalrXUtn/archive", "s3://***/archive", id="colon-without-at"),
    pytest.param("https://u:p@h.example.com/x?sig=abc&sv=1&X-Amz-Signature=def",
                 "https://***@h.example.com/x?sig=***&sv=1&X-Amz-Signature=***", id="userinfo-and-query"),
    pytest.param("https://h.example.com:8443/x?token=t0k3n", "https://h.example.com:8443/x?token=***", id="token"),
    pytest.param("s3://bucket/archive", "s3://bucket/archive", id="clean-kept"),
    pytest.param("local_run/archive", "local_run/archive", id="path-kept"),
    pytest.param("abfs://container@account.dfs.core.windows.net/a", "abfs://***@account.dfs.core.windows.net/a",
                 id="azure-container-at-account"),
])
def test_redact_url(url, redacted):
    assert redact_url(url) == redacted


@pytest.mark.parametrize("url, secret", CREDENTIAL_URLS[:8])
def test_tenant_file_refuses_a_destination_url_with_credentials(url, secret):
    text = json.dumps({"tenants": {"acme": {"destinations": [{"url": url}]}}})
    with pytest.raises(TenantConfigError) as caught:
        parse(text, "t.json", environ={})
    assert str(caught.value).startswith("tenant 'acme': destinations[0].url: the URL holds credentials")
    assert secret not in str(caught.value)


@pytest.mark.parametrize("url, secret", CREDENTIAL_URLS[:8])
def test_single_destination_with_credentials_is_refused_without_echo(url, secret):
    with pytest.raises(TenantConfigError) as caught:
        TenantDirectory.single(url, {})
    assert secret not in str(caught.value)
