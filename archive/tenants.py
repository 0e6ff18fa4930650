"""Tenants: whose bucket a message goes to, with which profile, for which channels.

A tenant file (YAML or JSON) lists each tenant's destinations, enabled
channels, profile and compression, and each destination's compliance
options. It is validated whole on load; an error names the tenant and the
field. Without a file, `--destination` is the single default tenant and
receives every message, as a one-tenant deployment expects.

    tenants:
      acme:
        profile: clevertap            # or braze
        compression: lz4              # lz4 | gzip | zstd | none (default: the profile's)
        channels: [email, push, sms, whatsapp]
        key_template: archive/{tenant}/{channel}/{yyyy}/{mm}/{dd}/{recipient_md5}/{message_id}
                                      # optional: the tenant's own key layout (archive.keys.KeyTemplate)
        email_format: json            # json | eml | both: email as the profile's JSON, RFC 5322 .eml, or both
        object_mode: message          # message (one object each, the seeds' layout) | batched (cost mode)
        batch: {seconds: 60, max_messages: 10000, max_bytes: 67108864, shards: 1}  # object_mode: batched
        destinations:
          - url: s3://acme-message-archive
            default: true
            storage_options: {profile: acme-archiver}   # fsspec options; ${ENV} expanded
            http_content_encoding: false  # true: application/json + Content-Encoding gzip
            s3:
              sse: aws:kms                # AES256 | aws:kms
              kms_key_id: arn:aws:kms:...
              object_lock: {mode: COMPLIANCE, retain_days: 2555}
              storage_class: STANDARD_IA
          - url: abfs://archive
            storage_options: {account_name: acme}
            azure: {encryption_scope: archive-scope, tier: Cool}
          - url: gs://acme-archive
            gcs: {kms_key_name: projects/p/locations/l/keyRings/r/cryptoKeys/k}

Which destination archives (the Braze rule): the one marked `default: true`;
if none is marked and one is S3, that one; a tenant with a single destination
uses it. Anything else is a configuration error, not a guess.

What a destination may be (`check_transport`, for the tenant file and for
`--destination` alike, at configuration time and again when a worker opens the
store): an object store (s3, s3a, gs, gcs, abfs, abfss, az), a local folder or
memory://; its URL carries no credentials; and every endpoint its client will
use is HTTPS, or plain http on loopback, or explicitly allowed:

    storage options  (endpoint_url, client_kwargs.endpoint_url, account_url,
                      endpoint, connection_string, use_ssl)
    environment      (AWS_ENDPOINT_URL[_S3], STORAGE_EMULATOR_HOST,
                      AZURE_STORAGE_CONNECTION_STRING)
    AWS config file  (the profile's endpoint_url, its services section)
        -> the endpoint the client resolves -> https, loopback http, or refused
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
from dataclasses import dataclass, field
from typing import Any, Mapping
from urllib.parse import urlsplit

from archive.batches import OBJECT_MODES, BatchLimits
from archive.encoding import CODECS
from archive.envelope import CHANNELS
from archive.keys import KeyTemplate, TemplateError
from archive.profiles import PROFILES

EMAIL_FORMATS = ("json", "eml", "both")

_S3_PROTOCOLS = ("s3", "s3a")
_AZURE_PROTOCOLS = ("abfs", "abfss", "az")
_GCS_PROTOCOLS = ("gs", "gcs")
_LOCAL_PROTOCOLS = ("file", "local", "memory")
DESTINATION_PROTOCOLS = _S3_PROTOCOLS + _AZURE_PROTOCOLS + _GCS_PROTOCOLS + _LOCAL_PROTOCOLS
# Query parameters that carry a credential: SAS tokens, presigned URLs, API keys.
_CREDENTIAL_PARAMETERS = re.compile(
    r"(?i)(^|[?&;])(sig|signature|x-amz-signature|x-amz-credential|x-amz-security-token|awsaccesskeyid|"
    r"access_token|sas_token|token|password|passwd|secret|key|api_key|apikey)=([^&;#]*)")
_TENANT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}")
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class TenantConfigError(ValueError):
    """The tenant file is wrong; the message names the tenant and the field."""


@dataclass(frozen=True)
class S3Options:
    sse: str | None = None                 # "AES256" (SSE-S3) or "aws:kms" (SSE-KMS)
    kms_key_id: str | None = None
    object_lock_mode: str | None = None    # GOVERNANCE | COMPLIANCE
    object_lock_days: int | None = None
    storage_class: str | None = None


@dataclass(frozen=True)
class AzureOptions:
    encryption_scope: str | None = None
    tier: str | None = None                # Hot | Cool | Cold | Archive


@dataclass(frozen=True)
class GCSOptions:
    kms_key_name: str | None = None


@dataclass(frozen=True)
class Destination:
    url: str
    storage_options: Mapping[str, Any] = field(default_factory=dict, repr=False)  # may hold secrets
    default: bool = False
    allow_insecure_http: bool = False
    http_content_encoding: bool = False    # describe objects as JSON + Content-Encoding (see encoding)
    s3: S3Options = S3Options()
    azure: AzureOptions = AzureOptions()
    gcs: GCSOptions = GCSOptions()

    @property
    def protocol(self) -> str:
        return protocol_of(self.url)


@dataclass(frozen=True)
class Tenant:
    name: str
    profile: str
    compression: str | None
    channels: frozenset[str]
    destinations: tuple[Destination, ...]
    key_template: KeyTemplate | None = None  # None: the profile's own layout
    email_format: str = "json"               # json | eml | both
    object_mode: str = "message"             # message | batched
    batch: BatchLimits = BatchLimits()       # object_mode batched

    @property
    def destination(self) -> Destination:
        """The destination that receives archives (see the module's rule)."""
        return choose_destination(self.destinations, self.name)


@dataclass(frozen=True)
class TenantDirectory:
    tenants: Mapping[str, Tenant]
    # Without a tenant file every message goes to the one tenant, whatever it names.
    catch_all: str | None = None

    def lookup(self, name: str) -> Tenant | None:
        tenant = self.tenants.get(name)
        if tenant is None and self.catch_all is not None:
            return self.tenants[self.catch_all]
        return tenant

    @classmethod
    def single(cls, destination: str, storage_options: Mapping[str, Any] | None = None,
               profile: str = "clevertap", compression: str | None = None,
               name: str = "default", allow_insecure_http: bool = False, key_template: str | None = None,
               email_format: str = "json", object_mode: str = "message",
               batch: BatchLimits = BatchLimits()) -> "TenantDirectory":
        dest = Destination(destination, dict(storage_options or {}), True, allow_insecure_http)
        check_transport(dest, f"destination {redact_url(destination)}")
        tenant = Tenant(name, profile, compression, frozenset(CHANNELS), (dest,),
                        *_layout(key_template, email_format, object_mode, batch, "the run's options"))
        return cls({name: tenant}, catch_all=name)


def protocol_of(url: str) -> str:
    scheme = urlsplit(url).scheme.lower()
    return scheme if scheme and len(scheme) > 1 else "file"  # "C:\..." is not a scheme


def choose_destination(destinations: tuple[Destination, ...], tenant: str) -> Destination:
    marked = [d for d in destinations if d.default]
    if len(marked) == 1:
        return marked[0]
    if len(marked) > 1:
        raise TenantConfigError(f"tenant {tenant!r}: more than one destination is marked default")
    s3 = [d for d in destinations if d.protocol in _S3_PROTOCOLS]
    if len(s3) == 1:
        return s3[0]
    if len(destinations) == 1:
        return destinations[0]
    raise TenantConfigError(
        f"tenant {tenant!r}: {len(destinations)} destinations and none is marked default "
        f"(and there is not exactly one S3 destination to fall back on): mark one `default: true`")


def check_url(url: str, where: str) -> None:
    """Refuse a URL that carries credentials: user:password@ in its authority, or a
    signature, token or key in its query. Such a URL ends up in logs, outcomes and
    error text; credentials belong in storage options or the environment. The
    error names `where`, never the URL.

    Azure's "abfs://container@account.dfs.core.windows.net" names a container,
    not a user, and is accepted (no ":" before its "@"). A local path is never
    refused ("/data/user@example.com/in.jsonl" is a folder name).
    """
    if not isinstance(url, str):
        raise TenantConfigError(f"{where}: a URL must be a string")
    parts = _url_parts(url)
    if parts is None:
        return  # a local path: nothing in it reaches a server
    protocol, authority, userinfo, query = parts
    refusal = f"{where}: the URL holds credentials; give them in storage options or the environment, never in a URL"
    if userinfo is not None and not (protocol in _AZURE_PROTOCOLS and ":" not in userinfo):
        raise TenantConfigError(refusal + " (user:password@)")
    if _CREDENTIAL_PARAMETERS.search(query):
        raise TenantConfigError(refusal + " (a signature, token or key in its query)")


def _url_parts(url: str):
    """(protocol, authority, userinfo or None, query) of a URL with a scheme, else None.

    The userinfo is what stands before the authority's "@"; and when the
    authority holds a ":" that is no port (a bucket or container name never
    holds one), a secret with a "/" in it has cut the authority short
    ("s3://KEY:SE/CRET@bucket"), so the userinfo runs to the last "@" before
    the query, or is the authority itself.
    """
    scheme, separator, rest = url.partition("://")
    if not separator or not scheme:
        return None
    head, _, query = rest.partition("?")
    head = head.partition("#")[0]
    authority = head.split("/", 1)[0]
    protocol = scheme.lower()
    userinfo = None
    if "@" in authority:
        userinfo = authority.rpartition("@")[0]
    else:
        host_port = authority.rpartition("]")[2]  # an IPv6 literal's colons are not a port
        object_store = protocol in _S3_PROTOCOLS + _GCS_PROTOCOLS + _AZURE_PROTOCOLS
        if (":" in host_port and object_store) or (":" in host_port and not host_port.rpartition(":")[2].isdigit()):
            userinfo = head.rpartition("@")[0] if "@" in head else authority
    return protocol, authority, userinfo, query


def redact_url(url: str) -> str:
    """The URL with any user:password@ and credential query values replaced by ***,
    fit for a log line."""
    if not isinstance(url, str):
        return "***"
    parts = _url_parts(url)
    if parts is None:
        return url
    scheme, _, rest = url.partition("://")
    _, _, userinfo, _ = parts
    if userinfo is not None:
        rest = "***" + rest[len(userinfo):]
    head, question, query = rest.partition("?")
    query = _CREDENTIAL_PARAMETERS.sub(lambda m: f"{m.group(1)}{m.group(2)}=***", query)
    return f"{scheme}://{head}{question}{query}"


def check_protocol(url: str, where: str) -> None:
    """A destination is an object store, a local folder or memory://: never an HTTP,
    FTP or SSH filesystem (fsspec would PUT archives there in the clear or with
    no object-store semantics), nor a chained URL whose inner target is hidden."""
    if "::" in url:
        raise TenantConfigError(
            f"{where}: a chained URL (with '::') is not a destination: give the bucket or folder itself")
    protocol = protocol_of(url)
    if protocol not in DESTINATION_PROTOCOLS and not _in_process(protocol):
        raise TenantConfigError(
            f"{where}: unsupported scheme {protocol!r}: a destination is an object store "
            f"(s3, s3a, gs, gcs, abfs, abfss, az), a local folder (a path or file://) or memory://")


def _in_process(protocol: str) -> bool:
    """A registered in-memory filesystem (memory:// and test doubles built on it)
    keeps every byte in this process, so no transport rule applies to it."""
    import fsspec
    from fsspec.implementations.memory import MemoryFileSystem

    try:
        return issubclass(fsspec.get_filesystem_class(protocol), MemoryFileSystem)
    except Exception:  # unknown, or its package is not installed: not a destination
        return False


def check_transport(destination: Destination, where: str) -> None:
    """The destination's URL and every endpoint its client will use, checked at
    configuration time (see the module docstring). The URL's protocol and
    credentials are checked always; a plain http:// endpoint is refused unless it
    is loopback (an emulator on this machine) or the destination sets
    allow_insecure_http. Reads the environment and, for S3, the AWS config file
    (through botocore), as the client itself will."""
    check_protocol(destination.url, where)
    check_url(destination.url, where)
    if destination.allow_insecure_http:
        return
    for endpoint, source in _endpoints_in_use(destination, where):
        check_endpoint(endpoint, where, source)


def check_endpoint(endpoint: str, where: str, source: str | None = None) -> None:
    """HTTPS, or plain http on loopback; anything else is a TenantConfigError that
    names the host (never user:password, path or query) and where it came from."""
    text = endpoint.strip()
    if "://" not in text:
        text = "http://" + text  # a bare host:port is plain http to every client here
    scheme, _, rest = text.partition("://")
    scheme = scheme.lower()
    netloc = re.split(r"[/?#]", rest, maxsplit=1)[0].rpartition("@")[2]
    try:
        host = urlsplit(f"{scheme}://{netloc}").hostname or ""
    except ValueError:
        host = ""
    if scheme == "https" or (scheme == "http" and _is_loopback(host)):
        return
    origin = f" (from {source})" if source else ""
    what = "is plain http" if scheme == "http" else "is not HTTPS"
    raise TenantConfigError(
        f"{where}: endpoint {scheme}://{netloc}{origin} {what}; archives must travel over HTTPS "
        f"(set allow_insecure_http: true to accept it)")


def _endpoints_in_use(destination: Destination, where: str):
    """(endpoint, where it came from) for each endpoint the destination's client may use."""
    options = destination.storage_options
    for endpoint in _endpoints(options):
        yield endpoint, None
    protocol = destination.protocol
    if protocol in _S3_PROTOCOLS:
        from archive.backends import s3_endpoint  # botocore's own resolution (backends imports us)
        try:
            resolved = s3_endpoint(options)
        except ValueError as exc:  # its message names no secret (see s3_endpoint)
            raise TenantConfigError(f"{where}: {exc}") from None
        if resolved is not None:
            yield resolved
    elif protocol in _GCS_PROTOCOLS and not options.get("endpoint_url"):
        emulator = os.environ.get("STORAGE_EMULATOR_HOST", "")
        if emulator not in ("", "default"):  # gcsfs' own rule: no scheme means http
            yield emulator, "environment variable STORAGE_EMULATOR_HOST"
    elif protocol in _AZURE_PROTOCOLS and not options.get("connection_string"):
        connection = os.environ.get("AZURE_STORAGE_CONNECTION_STRING")
        if connection:  # adlfs prefers it to account_name
            for endpoint in _connection_endpoints(connection):
                yield endpoint, "environment variable AZURE_STORAGE_CONNECTION_STRING"


def _endpoints(options: Mapping[str, Any]):
    for key in ("endpoint_url", "account_url", "endpoint"):
        if isinstance(options.get(key), str):
            yield options[key]
    client = options.get("client_kwargs")
    if isinstance(client, Mapping) and isinstance(client.get("endpoint_url"), str):
        yield client["endpoint_url"]
    connection = options.get("connection_string")
    if isinstance(connection, str):
        yield from _connection_endpoints(connection)


def _connection_endpoints(connection: str):
    """The blob endpoint an Azure connection string makes the SDK use, when it may be http."""
    for part in connection.split(";"):
        name, _, value = part.partition("=")
        if name.strip().lower() == "blobendpoint":
            yield value.strip()
        if name.strip().lower() == "defaultendpointsprotocol" and value.strip().lower() == "http" \
                and _connection_value(connection, "BlobEndpoint") is None:  # else the SDK ignores it
            yield "http://" + (_connection_value(connection, "AccountName") or "unknown") \
                + ".blob.core.windows.net"


def _connection_value(connection: str, key: str) -> str | None:
    for part in connection.split(";"):
        name, _, value = part.partition("=")
        if name.strip().lower() == key.lower():
            return value.strip()
    return None


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# --- loading ---------------------------------------------------------------------------

def load(url: str, environ: Mapping[str, str] | None = None) -> TenantDirectory:
    """Read and validate a tenant file (YAML or JSON) from a path or fsspec URL."""
    import fsspec

    with fsspec.open(url, "rt", encoding="utf-8") as handle:
        text = handle.read()
    return parse(text, url, environ)


def parse(text: str, source: str = "<tenants>", environ: Mapping[str, str] | None = None) -> TenantDirectory:
    try:
        if source.endswith(".json"):
            document = json.loads(text)
        else:
            import yaml
            document = yaml.safe_load(text)
    except Exception as exc:  # yaml and json errors both
        raise TenantConfigError(f"{source}: not valid YAML/JSON: {_syntax_error(exc)}") from None
    if not isinstance(document, Mapping) or not isinstance(document.get("tenants"), Mapping):
        raise TenantConfigError(f"{source}: expected a mapping with a 'tenants' mapping")
    unknown = set(document) - {"tenants"}
    if unknown:
        raise TenantConfigError(f"{source}: unknown top-level key(s) {sorted(unknown)}")
    if not document["tenants"]:
        raise TenantConfigError(f"{source}: no tenants")
    env = os.environ if environ is None else environ
    tenants = {}
    for name, body in document["tenants"].items():
        tenants[str(name)] = _tenant(str(name), body, env)
    return TenantDirectory(tenants)


def _syntax_error(exc: Exception) -> str:
    """What is wrong and where, without the file's text: YAML's message quotes the lines
    around the error, and those may hold a key or a secret."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    if mark is not None:  # yaml.MarkedYAMLError
        problem = getattr(exc, "problem", None) or getattr(exc, "context", None) or "syntax error"
        return f"{problem} at line {mark.line + 1}, column {mark.column + 1}"
    if isinstance(exc, json.JSONDecodeError):  # its message is a position, never the text
        return f"{exc.msg} at line {exc.lineno}, column {exc.colno}"
    return type(exc).__name__


def _tenant(name: str, body: Any, env: Mapping[str, str]) -> Tenant:
    where = f"tenant {name!r}"
    if not _TENANT_NAME.fullmatch(name):
        raise TenantConfigError(f"{where}: a tenant name holds letters, digits and _ . : @ - only")
    if not isinstance(body, Mapping):
        raise TenantConfigError(f"{where}: expected a mapping")
    _only(body, {"profile", "compression", "channels", "destinations", "key_template", "email_format",
                 "object_mode", "batch"}, where)
    profile = body.get("profile", "clevertap")
    if not isinstance(profile, str) or profile not in PROFILES:
        raise TenantConfigError(f"{where}: profile must be one of {sorted(PROFILES)}")
    compression = body.get("compression")
    if compression is not None and (not isinstance(compression, str) or compression not in CODECS):
        raise TenantConfigError(f"{where}: compression must be one of {sorted(CODECS)}")
    channels = body.get("channels", list(PROFILES[profile].channels))
    if not isinstance(channels, list) or not channels or not all(isinstance(c, str) for c in channels):
        raise TenantConfigError(f"{where}: channels must be a non-empty list of channel names")
    for channel in channels:
        if channel not in CHANNELS:
            raise TenantConfigError(f"{where}: channels: unknown channel {channel!r} (expected {list(CHANNELS)})")
        if channel not in PROFILES[profile].channels:
            raise TenantConfigError(f"{where}: channels: the {profile} profile does not archive {channel}")
    destinations = body.get("destinations")
    if not isinstance(destinations, list) or not destinations:
        raise TenantConfigError(f"{where}: destinations must be a non-empty list")
    parsed = tuple(_destination(d, f"{where}: destinations[{i}]", env) for i, d in enumerate(destinations))
    batch = _mapping(body.get("batch", {}), f"{where}: batch")
    _only(batch, {"seconds", "max_messages", "max_bytes", "shards"}, f"{where}: batch")
    try:
        limits = BatchLimits(**batch)
    except TypeError:
        raise TenantConfigError(f"{where}: batch: expected seconds, max_messages, max_bytes, shards") from None
    if batch and body.get("object_mode") != "batched":
        raise TenantConfigError(f"{where}: batch limits are for object_mode: batched")
    tenant = Tenant(name, profile, compression, frozenset(channels), parsed,
                    *_layout(body.get("key_template"), body.get("email_format", "json"),
                             body.get("object_mode", "message"), limits, where))
    tenant.destination  # choose now: an ambiguous choice is a load error
    return tenant


def _layout(key_template: Any, email_format: Any, object_mode: Any, batch: BatchLimits, where: str):
    """(KeyTemplate or None, email format, object mode, batch limits), checked together."""
    template = None
    if key_template is not None:
        try:
            template = KeyTemplate(key_template)
        except TemplateError as exc:
            raise TenantConfigError(f"{where}: key_template: {exc}") from None
    if email_format not in EMAIL_FORMATS:
        raise TenantConfigError(f"{where}: email_format must be one of {list(EMAIL_FORMATS)}")
    if object_mode not in OBJECT_MODES:
        raise TenantConfigError(f"{where}: object_mode must be one of {list(OBJECT_MODES)}")
    try:
        batch.check()
    except ValueError as exc:
        raise TenantConfigError(f"{where}: {exc}") from None
    if object_mode == "batched" and template is not None:
        raise TenantConfigError(f"{where}: key_template lays out one object per message; a batched "
                                "tenant's objects are keyed by window and shard (see archive.batches)")
    if object_mode == "batched" and email_format != "json":
        raise TenantConfigError(f"{where}: email_format {email_format} writes one .eml per message; "
                                "a batched tenant archives JSON Lines")
    return template, email_format, object_mode, batch


def _destination(body: Any, where: str, env: Mapping[str, str]) -> Destination:
    if not isinstance(body, Mapping):
        raise TenantConfigError(f"{where}: expected a mapping")
    _only(body, {"url", "default", "storage_options", "allow_insecure_http", "http_content_encoding",
                 "s3", "azure", "gcs"}, where)
    url = body.get("url")
    if not isinstance(url, str) or not url.strip():
        raise TenantConfigError(f"{where}.url is required")
    check_protocol(url, f"{where}.url")
    check_url(url, f"{where}.url")
    protocol = protocol_of(url)
    options = _expand(body.get("storage_options", {}), env, f"{where}.storage_options")
    if not isinstance(options, Mapping):
        raise TenantConfigError(f"{where}.storage_options must be a mapping")
    for flag in ("default", "allow_insecure_http", "http_content_encoding"):
        if not isinstance(body.get(flag, False), bool):
            raise TenantConfigError(f"{where}.{flag} must be true or false")
    for section, protocols in (("s3", _S3_PROTOCOLS), ("azure", _AZURE_PROTOCOLS), ("gcs", _GCS_PROTOCOLS)):
        if section in body and protocol not in protocols:
            raise TenantConfigError(f"{where}.{section}: options for {section} on a {protocol}:// destination")
    destination = Destination(
        url=url.strip(), storage_options=dict(options), default=body.get("default", False),
        allow_insecure_http=body.get("allow_insecure_http", False),
        http_content_encoding=body.get("http_content_encoding", False),
        s3=_s3_options(body.get("s3", {}), f"{where}.s3"),
        azure=_azure_options(body.get("azure", {}), f"{where}.azure"),
        gcs=_gcs_options(body.get("gcs", {}), f"{where}.gcs"))
    check_transport(destination, where)
    return destination


def _s3_options(body: Any, where: str) -> S3Options:
    body = _mapping(body, where)
    _only(body, {"sse", "kms_key_id", "object_lock", "storage_class"}, where)
    sse = body.get("sse")
    if sse is not None and sse not in ("AES256", "aws:kms"):
        raise TenantConfigError(f"{where}.sse must be AES256 (SSE-S3) or aws:kms (SSE-KMS)")
    kms = _optional_str(body, "kms_key_id", where)
    if kms and sse != "aws:kms":
        raise TenantConfigError(f"{where}.kms_key_id needs sse: aws:kms")
    lock = _mapping(body.get("object_lock", {}), f"{where}.object_lock")
    _only(lock, {"mode", "retain_days"}, f"{where}.object_lock")
    mode, days = lock.get("mode"), lock.get("retain_days")
    if lock:
        if mode not in ("GOVERNANCE", "COMPLIANCE"):
            raise TenantConfigError(f"{where}.object_lock.mode must be GOVERNANCE or COMPLIANCE")
        if not isinstance(days, int) or isinstance(days, bool) or not 1 <= days <= 36500:
            raise TenantConfigError(f"{where}.object_lock.retain_days must be a whole number of days, 1 to 36500")
    return S3Options(sse, kms, mode, days, _optional_str(body, "storage_class", where))


def _azure_options(body: Any, where: str) -> AzureOptions:
    body = _mapping(body, where)
    _only(body, {"encryption_scope", "tier"}, where)
    tier = _optional_str(body, "tier", where)
    if tier is not None and tier not in ("Hot", "Cool", "Cold", "Archive"):
        raise TenantConfigError(f"{where}.tier must be Hot, Cool, Cold or Archive")
    return AzureOptions(_optional_str(body, "encryption_scope", where), tier)


def _gcs_options(body: Any, where: str) -> GCSOptions:
    body = _mapping(body, where)
    _only(body, {"kms_key_name"}, where)
    return GCSOptions(_optional_str(body, "kms_key_name", where))


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise TenantConfigError(f"{where} must be a mapping")
    return value


def _optional_str(body: Mapping[str, Any], key: str, where: str) -> str | None:
    value = body.get(key)
    if value is not None and (not isinstance(value, str) or not value.strip()):
        raise TenantConfigError(f"{where}.{key} must be a non-empty string")
    return value


def _only(body: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise TenantConfigError(f"{where}: unknown key(s) {unknown} (allowed: {sorted(allowed)})")


def _expand(value: Any, env: Mapping[str, str], where: str) -> Any:
    """${NAME} in string values reads the environment, so secrets stay out of the file."""
    if isinstance(value, str):
        def replace(match):
            if match.group(1) not in env:
                raise TenantConfigError(f"{where}: environment variable {match.group(1)} is not set")
            return env[match.group(1)]
        return _ENV.sub(replace, value)
    if isinstance(value, Mapping):
        return {k: _expand(v, env, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, env, where) for v in value]
    return value
