"""Direct object writes through obstore (Rust's object_store), for S3 and Azure.

    Destination ──plan()──> DirectPlan (what obstore is given)  or  the reason it cannot
    DirectPlan.open() ──> DirectBackend: put(path, data, metadata, create_only) ─ obstore.put_async ─> cloud
                                          cat(path)                              ─ obstore.get_async ─┤
                                          list(prefix)                           ─ obstore.list ──────┘
    obstore's error ──> DirectStoreError(status, error_code, kind), which archive.errors classifies

The fsspec clients (s3fs, adlfs) spend most of a small PUT's CPU in Python:
signing, building and parsing the request (bench/README.md: about 1.2 ms per
object for s3fs, against 0.25 ms for obstore). obstore does all of it in Rust,
outside the GIL, so the store uses it wherever it can honour everything the
destination asks for, and keeps the fsspec path for the rest. `plan` is that
decision, a pure function of the destination and the environment: it returns
the obstore configuration, or the sentence that says why not, which the store
logs. What needs the fsspec path:

- per-object S3 Object Lock (a retain-until date per object: obstore sets
  headers only store-wide, and a date fixed when the store is built would be
  wrong by the end of a long stream), Azure encryption scopes, and every GCS
  destination (obstore's GCS client uses the XML API, which fake-gcs-server
  does not serve, so it cannot be tested here; untested, it is not used);
- a storage option obstore has no equivalent of, and credentials that only
  the AWS SDK's chain finds (profiles, the config file): obstore would look
  for them elsewhere, or at an instance-metadata address off this machine.

On this path, as on the other: no retries inside the client (`max_retries`
0: our RetryPolicy decides), the same conditional create (If-None-Match: *,
412 or 409 when the key exists), the same metadata (Content-Type,
Content-Encoding, the sha256 and compression as user metadata, the storage
class or tier), S3's SHA-256 checksum verified by the server (obstore
computes it, the same digest as ours) and the SSE/KMS settings. Azure's
per-request Content-MD5 is the one check this path does not make (obstore
has no option for it); TLS covers the transfer and the sha256 in the
object's metadata is what `verify` reads.
"""

from __future__ import annotations

import datetime as _dt
import os
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from archive.tenants import Destination

CLIENTS = ("auto", "direct", "fsspec")
# a key prefix obstore stores exactly as written (its Path percent-encodes other characters)
_PATH_SAFE = re.compile(r"[A-Za-z0-9_.~=+@,:-]+")
_S3_OPTIONS = {"key", "secret", "token", "endpoint_url", "client_kwargs", "config_kwargs", "use_ssl"}
_S3_CLIENT_KWARGS = {"endpoint_url", "region_name", "use_ssl"}
_S3_CONFIG_KWARGS = {"retries", "max_pool_connections", "connect_timeout", "read_timeout", "s3"}
_AZURE_OPTIONS = {"connection_string", "account_name", "account_key", "sas_token"}
_READ_TIMEOUT_S = 15     # s3fs' read timeout: a connection that never answers ends the attempt
_CONNECT_TIMEOUT_S = 5


class NotDirect(Exception):
    """The destination needs the fsspec path; the message says why."""


@dataclass(frozen=True)
class DirectPlan:
    """What obstore is built with: picklable, holds secrets (never printed)."""

    kind: str                                    # "s3" | "azure"
    container: str                               # bucket or container
    prefix: str                                  # key prefix inside it, "" or "a/b"
    config: Mapping[str, Any] = field(repr=False)
    client_options: Mapping[str, Any] = field(default_factory=dict)
    storage_class: str | None = None

    def open(self) -> "DirectBackend":
        return DirectBackend(self)


def plan(destination: Destination, client: str = "auto") -> DirectPlan:
    """The obstore configuration for `destination`, or NotDirect saying why it
    needs fsspec (also when `client` is "fsspec"). ValueError when `client`
    is "direct" and the destination cannot have it."""
    if client not in CLIENTS:
        raise ValueError(f"store client must be one of {', '.join(CLIENTS)}, not {client!r}")
    if client == "fsspec":
        raise NotDirect("the fsspec client was asked for")
    try:
        import obstore  # noqa: F401
    except ImportError:
        return _refuse(client, "obstore is not installed")
    try:
        protocol = destination.protocol
        if protocol in ("s3", "s3a"):
            return _s3_plan(destination)
        if protocol in ("abfs", "abfss", "az"):
            return _azure_plan(destination)
        if protocol in ("gs", "gcs"):
            raise NotDirect("obstore's GCS client writes through the XML API, which fake-gcs-server "
                            "does not serve: untested here, it is not used")
        raise NotDirect(f"{protocol}:// has no direct client")
    except NotDirect as why:
        return _refuse(client, str(why))


def _refuse(client: str, why: str):
    if client == "direct":
        raise ValueError(f"the direct store client cannot write to this destination: {why}")
    raise NotDirect(why)


def _split(destination: Destination) -> tuple[str, str]:
    rest = destination.url.split("://", 1)[1]
    container, _, prefix = rest.partition("/")
    prefix = prefix.strip("/")
    if not container:
        raise NotDirect("the URL names no bucket or container")
    for part in prefix.split("/") if prefix else ():
        if part in ("", ".", "..") or not _PATH_SAFE.fullmatch(part):
            raise NotDirect("the URL's path holds characters obstore would store escaped")
    return container, prefix


def _s3_plan(destination: Destination) -> DirectPlan:
    from archive.backends import s3_endpoint

    s3 = destination.s3
    if s3.object_lock_mode:
        raise NotDirect("Object Lock sets a retain-until date on each object, which obstore cannot")
    options = dict(destination.storage_options)
    _only(options, _S3_OPTIONS, "storage option")
    client_kwargs = dict(options.get("client_kwargs") or {})
    config_kwargs = dict(options.get("config_kwargs") or {})
    _only(client_kwargs, _S3_CLIENT_KWARGS, "client_kwargs option")
    _only(config_kwargs, _S3_CONFIG_KWARGS, "config_kwargs option")
    s3_config = dict(config_kwargs.get("s3") or {})
    _only(s3_config, {"addressing_style"}, "config_kwargs.s3 option")
    retries = config_kwargs.get("retries")
    if retries not in (None, {"total_max_attempts": 1}, {"max_attempts": 0}):
        raise NotDirect("the storage options ask botocore to retry")
    container, prefix = _split(destination)

    key = options.get("key") or os.environ.get("AWS_ACCESS_KEY_ID")
    secret = options.get("secret") or os.environ.get("AWS_SECRET_ACCESS_KEY")
    token = options.get("token") or (None if options.get("key") else os.environ.get("AWS_SESSION_TOKEN"))
    if not (key and secret):
        raise NotDirect("the credentials come from the AWS SDK's chain (a profile or the config file)")
    if os.environ.get("AWS_PROFILE") and not options.get("key"):
        raise NotDirect("AWS_PROFILE names the credentials")
    resolved = s3_endpoint(options)
    if resolved is None:
        raise NotDirect("the endpoint depends on an AWS profile this machine lacks")
    endpoint, _ = resolved
    region = (client_kwargs.get("region_name") or os.environ.get("AWS_REGION")
              or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1")
    # AWS itself (obstore builds the regional endpoint), or an S3-compatible server named by the
    # options, AWS_ENDPOINT_URL[_S3] or the config file: that endpoint, path-style unless asked.
    host = endpoint.split("://", 1)[-1].split("/", 1)[0].lower()
    custom = not host.endswith(".amazonaws.com")
    style = s3_config.get("addressing_style", "path" if custom else "virtual")
    if style not in ("path", "virtual", "auto"):
        raise NotDirect(f"addressing style {style!r} has no direct equivalent")
    config: dict[str, Any] = {
        "bucket": container, "region": region, "access_key_id": key, "secret_access_key": secret,
        "checksum_algorithm": "sha256",  # S3 verifies it; Object Lock and our metadata want it
        "virtual_hosted_style_request": style == "virtual",
    }
    if custom:
        config["endpoint"] = endpoint
    if token:
        config["session_token"] = token
    if s3.sse:
        config["server_side_encryption"] = s3.sse
    if s3.kms_key_id:
        config["sse_kms_key_id"] = s3.kms_key_id
    return DirectPlan("s3", container, prefix, config,
                      _client_options(endpoint, config_kwargs), s3.storage_class)


def _azure_plan(destination: Destination) -> DirectPlan:
    azure = destination.azure
    if azure.encryption_scope:
        raise NotDirect("obstore cannot send an encryption scope")
    options = dict(destination.storage_options)
    _only(options, _AZURE_OPTIONS, "storage option")
    container, prefix = _split(destination)
    config: dict[str, Any] = {"container_name": container}
    endpoint = None
    if options.get("connection_string"):
        fields = _connection_string(options["connection_string"])
        _only(fields, {"defaultendpointsprotocol", "accountname", "accountkey", "blobendpoint",
                       "endpointsuffix", "sharedaccesssignature"}, "connection string field")
        name = fields.get("accountname")
        if not name:
            raise NotDirect("the connection string names no account")
        config["account_name"] = name
        if fields.get("accountkey"):
            config["account_key"] = fields["accountkey"]
        elif fields.get("sharedaccesssignature"):
            config["sas_key"] = fields["sharedaccesssignature"]
        else:
            raise NotDirect("the connection string holds no key or SAS")
        endpoint = fields.get("blobendpoint")
        if not endpoint:
            scheme = fields.get("defaultendpointsprotocol", "https")
            endpoint = f"{scheme}://{name}.blob.{fields.get('endpointsuffix', 'core.windows.net')}"
    else:
        name = options.get("account_name")
        if not name or not (options.get("account_key") or options.get("sas_token")):
            raise NotDirect("the credentials come from Azure's identity chain")
        config["account_name"] = name
        if options.get("account_key"):
            config["account_key"] = options["account_key"]
        else:
            config["sas_key"] = options["sas_token"].lstrip("?")
        endpoint = f"https://{name}.blob.core.windows.net"
    config["endpoint"] = endpoint.rstrip("/")
    return DirectPlan("azure", container, prefix, config, _client_options(endpoint, {}), azure.tier)


def _only(options: Mapping[str, Any], known: set[str], what: str) -> None:
    unknown = sorted(set(options) - known)
    if unknown:
        raise NotDirect(f"{what} {unknown[0]!r} has no direct equivalent")


def _connection_string(text: str) -> dict[str, str]:
    fields = {}
    for part in text.split(";"):
        if part.strip():
            name, _, value = part.partition("=")
            fields[name.strip().lower()] = value.strip()
    return fields


def _client_options(endpoint: str, config_kwargs: Mapping[str, Any]) -> dict[str, Any]:
    # HTTP is allowed only where archive.tenants.check_transport let it through (loopback, or asked for).
    read = config_kwargs.get("read_timeout", _READ_TIMEOUT_S)
    connect = config_kwargs.get("connect_timeout", _CONNECT_TIMEOUT_S)
    return {"allow_http": endpoint.lower().startswith("http://"),
            "connect_timeout": _dt.timedelta(seconds=float(connect)),
            "timeout": _dt.timedelta(seconds=float(read) + float(connect)),
            "pool_idle_timeout": _dt.timedelta(seconds=30)}


class DirectBackend:
    """Writes one object with obstore; awaited on any asyncio loop (obstore's
    futures resolve there, its I/O runs on its own Rust threads)."""

    def __init__(self, plan: DirectPlan):
        import obstore
        from obstore.store import AzureStore, S3Store

        self.plan = plan
        self._obstore = obstore
        retry = {"max_retries": 0, "retry_timeout": _dt.timedelta(seconds=1)}
        make = S3Store if plan.kind == "s3" else AzureStore
        self._store = make(config=dict(plan.config), client_options=dict(plan.client_options),
                           retry_config=retry)
        self._prefix = f"{plan.prefix}/" if plan.prefix else ""

    def location(self, key: str) -> str:
        return self._prefix + key

    def attributes(self, metadata) -> dict[str, str]:
        attributes = {"Content-Type": metadata.content_type}
        if metadata.content_encoding:
            attributes["Content-Encoding"] = metadata.content_encoding
        if self.plan.storage_class:
            attributes["Storage-Class"] = self.plan.storage_class
        if metadata.sha256:
            attributes["sha256"] = metadata.sha256
        if metadata.compression:
            attributes["compression"] = metadata.compression
        return attributes

    async def put(self, key: str, data: bytes, metadata, create_only: bool) -> None:
        """FileExistsError when `create_only` and the key holds an object."""
        try:
            await self._obstore.put_async(self._store, self.location(key), data,
                                          attributes=self.attributes(metadata),
                                          mode="create" if create_only else "overwrite", use_multipart=False)
        except Exception as exc:
            raise translate(exc) from None

    def list(self, prefix: str):
        """(key, size) of every object under a key prefix, a page of 1,000 at a time
        (the listing is parsed in Rust: botocore's XML parser costs more than the GETs)."""
        try:
            for page in self._obstore.list(self._store, prefix=self.location(prefix).rstrip("/") + "/",
                                           chunk_size=1000):
                for entry in page:
                    yield entry["path"][len(self._prefix):], int(entry["size"])
        except Exception as exc:
            raise translate(exc) from None

    async def cat(self, key: str) -> bytes:
        try:
            got = await self._obstore.get_async(self._store, self.location(key))
            return bytes(await got.bytes_async())
        except Exception as exc:
            raise translate(exc) from None


class DirectStoreError(OSError):
    """An obstore failure, with what archive.errors reads: the HTTP status, the
    service's error code and the transport failure's kind, and one line of text."""

    def __init__(self, text: str, status: int | None = None, error_code: str | None = None,
                 kind: str | None = None):
        super().__init__(text)
        self.status, self.error_code, self.kind = status, error_code, kind


class DirectTimeout(DirectStoreError, TimeoutError):
    pass


class DirectConnectionError(DirectStoreError, ConnectionError):
    pass


_STATUS = re.compile(r"(?:status code: |status: )(\d{3})")
_CODE = re.compile(r"<Code>([A-Za-z]+)</Code>")
_KIND = re.compile(r"kind: (\w+)")


def translate(exc: BaseException) -> BaseException:
    """obstore's exception as FileExistsError (the key exists), FileNotFoundError,
    or a DirectStoreError carrying the status, code and kind its text holds (obstore
    exposes them only in the message). The text kept is its first line, without
    the debug dump."""
    from obstore.exceptions import AlreadyExistsError, PreconditionError

    if isinstance(exc, (AlreadyExistsError, PreconditionError)):
        return FileExistsError("an object already exists at this key")
    text = str(exc)
    status = _STATUS.search(text)
    code = _CODE.search(text)
    kind = _KIND.search(text)
    line = text.split("\n", 1)[0].strip()
    status_value = int(status.group(1)) if status else None
    if status_value is None and code is None:
        if isinstance(exc, FileNotFoundError):
            return FileNotFoundError(line)
        found = kind.group(1).lower() if kind else ""
        if found == "timeout" or "timed out" in text.lower():
            return DirectTimeout(line, kind="timeout")
        if found in ("connect", "request", "body", "decode", "interrupted") or "error sending request" in text:
            return DirectConnectionError(line, kind=found or "connect")
    return DirectStoreError(line, status_value, code.group(1) if code else None, kind.group(1) if kind else None)
