"""What an archive says about itself: its keys read back, its index rows, who a search means.

    object key ──parse_key──> KeyFields (profile, channel folder, recipient digest, group, message id, codec)
    key + object bytes ──index_row──> IndexRow (one row of the audit index; never a plaintext recipient)
    IndexRows ──index_file──> one Parquet file's bytes, and the key it goes under (index_file_key)
    --email / --phone / --push_token ──person_digests──> the digests that person's keys and rows hold

Both layouts are the seeds' (archive.profiles builds them; this reads them
back), so an archive CleverTap or Braze wrote themselves reads the same way as
ours:

    clevertap  sent_messages/<Email|Push|Sms|WhatsApp>/<yyyymm>/<campaign_id>/<md5>/<message_id>.json<.lz4|.gz|.zst|>
    braze      sent_messages/<email|push|sms>/<md5>/<campaign | canvas step | unassociated>/<dispatch_id>.json<...>

The recipient digest is computed the way the profile computes it, so a person
is found by what the key holds: the address lower-cased (IDNA domain) for
email, the number in country-code digits (CleverTap) or E.164 (Braze), the
push token lower-cased (Braze). CleverTap keys a push by the user's identity,
not the token, so its rows also carry the token's own digest (as archived,
case kept) in `push_token_md5`.

The index is Parquet under `<destination>/archive_index/`, hive-style
partitions by tenant, channel and date (of sent_at, UTC), each file named for
the run that wrote it, its rows sorted by recipient digest so that row-group
statistics let a search for one person skip the rest.

Nothing here does I/O: `retrieval` lists, reads and writes; the pipeline's
index sink (transforms.index) writes the same rows for what it has just archived.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
from dataclasses import dataclass, fields, replace
from typing import Any, Iterable, Mapping, NamedTuple

import pyarrow as pa
import pyarrow.parquet as pq

from archive import batches, encoding, frames, identity
from archive.eml import eml_fields
from archive.envelope import InvalidMessage
from archive.keys import KeyTemplate
from archive.profiles.braze import CHANNEL_FOLDERS as _BRAZE_FOLDERS
from archive.profiles.clevertap import CHANNEL_FOLDERS as _CLEVERTAP_FOLDERS

ROOT = "sent_messages"
_CLEVERTAP_CHANNELS = {folder: channel for channel, folder in _CLEVERTAP_FOLDERS.items()}
_BRAZE_CHANNELS = {"email": "email", "push": "push", "sms": "sms"}
assert set(_BRAZE_FOLDERS.values()) == set(_BRAZE_CHANNELS)
_FOLDER_CHANNELS = {"clevertap": _CLEVERTAP_CHANNELS, "braze": _BRAZE_CHANNELS}
_SUFFIXES = {codec.suffix: name for name, codec in encoding.CODECS.items()}
_HEX = frozenset("0123456789abcdef")


@dataclass(frozen=True)
class KeyFields:
    """One archive object's key, read back."""

    key: str
    profile: str            # clevertap | braze
    channel: str            # the channel its folder names (braze's sms folder holds mms too)
    recipient_md5: str
    group: str              # clevertap: campaign_id; braze: campaign, canvas step or "unassociated"
    message_id: str         # clevertap message_id, braze dispatch_id
    compression: str        # lz4 | gzip | zstd | none
    year_month: str | None  # clevertap's yyyymm
    format: str = "json"    # json | eml (`--email_format eml|both`)


class Layout(NamedTuple):
    """A tenant's own key template (archive.keys.KeyTemplate) and the profile of its payloads."""

    template: KeyTemplate
    profile: str


def parse_key(key: str, layouts: Iterable[Layout] = ()) -> KeyFields | None:
    """The fields of an archive object's key (relative to the destination), or
    None for anything else under the bucket (an index file, an outcome). A key
    in a seed's layout reads back alone; one a tenant's template made reads back
    with that tenant's Layout."""
    parts = key.split("/")
    if any(part in ("", ".", "..") for part in parts):
        return None
    split = _split_name(parts[-1])
    if split is None:
        return None
    stem, form, compression = split
    if parts[0] == ROOT and len(parts) == 6 and parts[1] in _CLEVERTAP_CHANNELS:
        _, folder, month, campaign, digest, _ = parts
        if len(month) == 6 and month.isdigit() and _is_md5(digest):
            return KeyFields(key, "clevertap", _CLEVERTAP_CHANNELS[folder], digest, campaign, stem,
                             compression, month, form)
    if parts[0] == ROOT and len(parts) == 5 and parts[1] in _BRAZE_CHANNELS:
        _, folder, digest, group, _ = parts
        if _is_md5(digest):
            return KeyFields(key, "braze", _BRAZE_CHANNELS[folder], digest, group, stem, compression, None, form)
    # a tenant's template (its prefix may be sent_messages/ too)
    return _parse_templated(key, parts[0], "/".join(parts[:-1] + [stem]), form, compression, layouts)


def _split_name(name: str) -> tuple[str, str, str] | None:
    """(stem, json | eml, compression) of an object's file name, else None."""
    for form in ("json", "eml"):
        for suffix, compression in _SUFFIXES.items():
            ending = f".{form}{suffix}"
            if name.endswith(ending) and len(name) > len(ending):
                return name[:-len(ending)], form, compression
    return None


def _parse_templated(key: str, prefix: str, stem: str, form: str, compression: str,
                     layouts: Iterable[Layout]) -> KeyFields | None:
    for layout in layouts:
        if layout.template.prefix != prefix:
            continue
        values = layout.template.parse(stem)
        if values is None:
            continue
        channel = values.get("channel") or _FOLDER_CHANNELS[layout.profile].get(values.get("channel_folder"))
        if channel is None:
            continue
        month = values.get("yyyymm") or (values.get("yyyymmdd") or "")[:6] or (
            values["yyyy"] + values["mm"] if "yyyy" in values and "mm" in values else None)
        return KeyFields(key, layout.profile, channel, values["recipient_md5"], values.get("campaign_id", ""),
                         values["message_id"], compression, month, form)
    return None


def layouts_of(tenants) -> tuple[Layout, ...]:
    """The templated layouts of a TenantDirectory's tenants (none: the seeds' only)."""
    if tenants is None:
        return ()
    return tuple(Layout(t.key_template, t.profile) for t in tenants.tenants.values() if t.key_template)


def _is_md5(text: str) -> bool:
    return len(text) == 32 and _HEX.issuperset(text)


# The audit index: one row per archived object. Strings and integers only (plus
# the two times), so the Parquet schema in `retrieval.index` is this list.
@dataclass(frozen=True)
class IndexRow:
    message_id: str
    tenant: str
    channel: str                  # email | push | sms | mms | whatsapp
    profile: str
    recipient_md5: str            # exactly as in the key
    push_token_md5: str | None    # clevertap push: the token's own digest (its key holds the user's)
    user_id: str | None
    external_id: str | None
    campaign_id: str | None
    journey_id: str | None
    canvas_id: str | None
    canvas_step_id: str | None
    sent_at_ms: int | None
    archived_at_ms: int | None
    date: str                     # yyyy-mm-dd of sent_at (UTC): the index's partition
    key: str
    bytes: int
    sha256: str
    compression: str
    byte_offset: int | None = None  # a batched object: where the message's frame (of `bytes`) starts

    def to_dict(self) -> dict[str, Any]:
        # Shallow on purpose: every field is a plain value (dataclasses.asdict deep-copies
        # each, a twentieth of an index file's cost).
        return {name: getattr(self, name) for name in INDEX_FIELDS}


INDEX_FIELDS = tuple(f.name for f in fields(IndexRow))
UNKNOWN_DATE = "unknown"


def index_row(parsed: KeyFields, data: bytes, tenant: str, archived_at_ms: int | None = None,
              payload: Mapping[str, Any] | None = None, sha256: str | None = None) -> IndexRow:
    """The index row of one stored object: its key's fields, its bytes' size and
    sha256, and the ids its payload holds (decompressed and read here when not
    given). InvalidMessage when the bytes are not an archive object's JSON."""
    if payload is None:
        payload = read_eml(data, parsed.compression) if parsed.format == "eml" else read_payload(
            data, parsed.compression)
    channel = parsed.channel
    if parsed.profile == "braze" and channel == "sms" and payload.get("media_urls"):
        channel = "mms"
    sent = _sent_at_ms(parsed.profile, payload.get("sent_at"))
    token_md5 = None
    if parsed.profile == "clevertap" and channel == "push" and isinstance(payload.get("to"), str):
        token_md5 = identity.md5_hex(payload["to"].strip(" "))
    return IndexRow(
        message_id=parsed.message_id, tenant=tenant, channel=channel, profile=parsed.profile,
        recipient_md5=parsed.recipient_md5, push_token_md5=token_md5,
        user_id=_text(payload.get("user_id")), external_id=_text(payload.get("external_id")),
        campaign_id=_text(payload.get("campaign_id")), journey_id=_text(payload.get("journey_id")),
        canvas_id=_text(payload.get("canvas_id")), canvas_step_id=_text(payload.get("canvas_step_id")),
        sent_at_ms=sent, archived_at_ms=archived_at_ms,
        date=_date(sent), key=parsed.key, bytes=len(data), sha256=sha256 or hashlib.sha256(data).hexdigest(),
        compression=parsed.compression)


# --- batched objects (archive.batches): one index row per frame ---------------------------
#
# A batched object's key names its tenant, channel and window, not its messages:
# each message's row is the row its per-message key would have had (recipient
# digest, group and id computed from the payload exactly as the profile keys
# them), with `key` the batch object's, `bytes` and `sha256` its frame's, and
# `byte_offset` where the frame starts.

BATCH_ROOT = batches.ROOT
_BATCH_SUFFIXES = {codec.suffix: name for name, codec in encoding.CODECS.items()}
_MESSAGE_ID_FIELDS = {"clevertap": "message_id", "braze": "dispatch_id"}


def parse_batch_key(key: str) -> batches.BatchKeyFields | None:
    """A batched object's key read back (archive.batches.parse_object_key), or None,
    also for a suffix that is no codec's."""
    fields_ = batches.parse_object_key(key)
    if fields_ is None or fields_.suffix not in _BATCH_SUFFIXES:
        return None
    return fields_


def batch_compression(fields_: batches.BatchKeyFields) -> str:
    return _BATCH_SUFFIXES[fields_.suffix]


def payload_profile(payload: Mapping[str, Any], profile: str | None = None) -> str:
    """The profile of one archived payload: the one given (a tenant's), else the one
    whose message id field it holds (CleverTap `message_id`, Braze `dispatch_id`).
    InvalidMessage when it holds neither, or both."""
    if profile is not None:
        if profile not in _MESSAGE_ID_FIELDS:
            raise InvalidMessage(f"unknown profile {profile!r}")
        return profile
    found = [name for name, field in _MESSAGE_ID_FIELDS.items() if field in payload]
    if len(found) != 1:
        raise InvalidMessage("the payload names neither a message_id (clevertap) nor a dispatch_id (braze)")
    return found[0]


def recipient_md5(profile: str, channel: str, payload: Mapping[str, Any]) -> str:
    """The recipient digest the profile keys this payload's message by (the digest its
    per-message key holds): email, the address (archive.identity); CleverTap sms and
    whatsapp, the number's country-code digits (as archived); Braze sms and mms, the
    E.164 number (as archived); Braze push, the token lower-cased; CleverTap push, the
    user's identity (`user_id`). InvalidMessage when the payload has no such value."""
    to = payload.get("to")
    if channel == "email":
        return identity.md5_hex(identity.email_address(to if isinstance(to, str) else ""))
    if channel == "push":
        if profile == "clevertap":
            return identity.md5_hex(identity.user_identity(payload.get("user_id"), "user_id"))
        return identity.md5_hex(identity.push_token(to if isinstance(to, str) else "").lower())
    if not isinstance(to, str) or not to:
        raise InvalidMessage("to is missing", "to")
    if profile == "clevertap":
        digits = identity.country_code_format(to)
        if not digits.isdigit():
            raise InvalidMessage("to is not a number in country-code format", "to")
        return identity.md5_hex(digits)
    if not (to.startswith("+") and to[1:].isdigit()):
        raise InvalidMessage("to is not an E.164 number", "to")
    return identity.md5_hex(to)


def _group(profile: str, payload: Mapping[str, Any]) -> str:
    if profile == "clevertap":
        return _text(payload.get("campaign_id")) or ""
    for name in ("campaign_id", "canvas_step_id"):
        if payload.get(name) is not None:
            return _text(payload.get(name)) or ""
    return "unassociated"


def read_line(line: bytes) -> dict[str, Any]:
    """One batched message's payload from its JSON line (strict, as read_payload)."""
    try:
        payload = json.loads(line, parse_constant=_no_constant, object_pairs_hook=_no_duplicates)
    except (ValueError, RecursionError) as exc:
        raise InvalidMessage(f"the line is not JSON ({type(exc).__name__})") from None
    if not isinstance(payload, dict):
        raise InvalidMessage("the line is not a JSON object")
    return payload


def batch_index_row(key: str, frame: bytes, offset: int, payload: Mapping[str, Any] | None = None,
                    profile: str | None = None, archived_at_ms: int | None = None,
                    line: bytes | None = None) -> IndexRow:
    """The index row of the frame at `offset` of the batched object at `key`: the row
    the pipeline writes for that message (transforms.batches). `payload` is the frame's
    JSON (read from `line`, or from the frame itself, when not given); `profile` the
    tenant's, else told by the payload. InvalidMessage when the key is no batched
    object's, or the payload is not one the profile archives."""
    fields_ = parse_batch_key(key)
    if fields_ is None:
        raise InvalidMessage("not a batched object's key")
    compression = batch_compression(fields_)
    if payload is None:
        if line is None:
            try:
                line = frames.read_frame(compression, frame)
            except frames.CorruptObject as exc:
                raise InvalidMessage(f"not one frame of one JSON line ({exc})") from None
        payload = read_line(line)
    profile = payload_profile(payload, profile)
    folders = _CLEVERTAP_FOLDERS if profile == "clevertap" else _BRAZE_FOLDERS
    if fields_.channel not in folders:
        raise InvalidMessage(f"the {profile} profile archives no {fields_.channel} channel")
    channel = _FOLDER_CHANNELS[profile][folders[fields_.channel]]  # braze: mms is the sms folder's
    message_id = payload.get(_MESSAGE_ID_FIELDS[profile])
    if isinstance(message_id, bool) or not isinstance(message_id, (str, int)) or message_id == "":
        raise InvalidMessage(f"{_MESSAGE_ID_FIELDS[profile]} is missing")
    parsed = KeyFields(key, profile, channel, recipient_md5(profile, fields_.channel, payload),
                       _group(profile, payload), str(message_id), compression, None)
    row = index_row(parsed, frame, fields_.tenant, archived_at_ms, payload)
    return replace(row, byte_offset=offset)


def row_ref(key: str, byte_offset: int | None) -> str:
    """How a finding names an index row's bytes: the key, or `key@offset` for a frame."""
    return key if byte_offset is None else f"{key}@{byte_offset}"


INDEX_PREFIX = "archive_index"
PARTITIONS = ("tenant", "channel", "date")
ROWS_PER_FILE = 50_000
_STRING = pa.string()
INDEX_SCHEMA = pa.schema([
    ("message_id", _STRING), ("tenant", _STRING), ("channel", _STRING), ("profile", _STRING),
    ("recipient_md5", _STRING), ("push_token_md5", _STRING), ("user_id", _STRING), ("external_id", _STRING),
    ("campaign_id", _STRING), ("journey_id", _STRING), ("canvas_id", _STRING), ("canvas_step_id", _STRING),
    ("sent_at_ms", pa.int64()), ("archived_at_ms", pa.int64()), ("date", _STRING), ("key", _STRING),
    ("bytes", pa.int64()), ("sha256", _STRING), ("compression", _STRING), ("byte_offset", pa.int64()),
])
assert tuple(INDEX_SCHEMA.names) == INDEX_FIELDS
FILE_COLUMNS = [name for name in INDEX_SCHEMA.names if name not in PARTITIONS]


def partition_of(row: IndexRow) -> tuple[str, str, str]:
    return row.tenant, row.channel, row.date


def index_file_key(partition: tuple[str, str, str], name: str, prefix: str = INDEX_PREFIX) -> str:
    """`<prefix>/tenant=T/channel=C/date=D/<name>.parquet`; the values are
    escaped as pyarrow's hive partitioning reads them back."""
    tenant, channel, date = (_escape(value) for value in partition)
    return f"{prefix}/tenant={tenant}/channel={channel}/date={date}/{name}.parquet"


def _escape(value: str) -> str:
    return value.replace("%", "%25").replace("/", "%2F").replace("=", "%3D")


def index_table(rows: Iterable[IndexRow]) -> pa.Table:
    """Rows of one partition as a file's table: the partition columns left to the
    folder names, sorted by recipient digest, then key."""
    ordered = sorted(rows, key=lambda r: (r.recipient_md5, r.key))
    return pa.Table.from_pylist([r.to_dict() for r in ordered], schema=INDEX_SCHEMA).select(FILE_COLUMNS)


# Rows sorted by recipient digest, in small row groups: each group's min and max digest
# span a narrow slice, so a search for one person reads one group of each file.
ROW_GROUP_ROWS = 4_096


def parquet_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, row_group_size=ROW_GROUP_ROWS, compression="zstd")
    return sink.getvalue().to_pybytes()


def read_payload(data: bytes, compression: str) -> dict[str, Any]:
    """The archived JSON object inside an object's bytes; InvalidMessage when
    they do not decompress to one strict JSON object (no NaN, no duplicate keys)."""
    try:
        text = encoding.get_codec(compression).decompress(data)
        payload = json.loads(text, parse_constant=_no_constant, object_pairs_hook=_no_duplicates)
    except (ValueError, RuntimeError, RecursionError, OSError, EOFError) as exc:
        raise InvalidMessage(f"the object is not {compression}-compressed JSON ({type(exc).__name__})") from None
    if not isinstance(payload, dict):
        raise InvalidMessage("the object is not a JSON object")
    return payload


def read_eml(data: bytes, compression: str) -> dict[str, Any]:
    """What an archived .eml's own headers say of its message (archive.eml.eml_fields);
    InvalidMessage when the bytes are not one."""
    try:
        return eml_fields(encoding.get_codec(compression).decompress(data))
    except (ValueError, RuntimeError, OSError, EOFError, LookupError, TypeError) as exc:
        raise InvalidMessage(f"the object is not a {compression}-compressed archived email "
                             f"({type(exc).__name__})") from None


def _no_duplicates(pairs: list) -> dict:
    found = dict(pairs)
    if len(found) != len(pairs):
        raise ValueError("duplicate keys")
    return found


def _no_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, (dict, list)):
        return None
    return value if isinstance(value, str) else json.dumps(value)


def _sent_at_ms(profile: str, value: Any) -> int | None:
    """CleverTap's sent_at is epoch milliseconds, Braze's unix seconds."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    millis = int(value) if profile == "clevertap" else int(value * 1000)
    return millis if 0 <= millis < 253402300800000 else None  # before year 10000


def _date(millis: int | None) -> str:
    if millis is None:
        return UNKNOWN_DATE
    return _dt.datetime.fromtimestamp(millis / 1000, _dt.timezone.utc).strftime("%Y-%m-%d")


@dataclass(frozen=True)
class Person:
    """Who a search is for, as the digests and ids the index holds. Built from
    what the user typed; the plaintext never leaves this object."""

    recipient_md5: frozenset[str] = frozenset()
    push_token_md5: frozenset[str] = frozenset()
    user_id: frozenset[str] = frozenset()
    external_id: frozenset[str] = frozenset()

    def __bool__(self) -> bool:
        return bool(self.recipient_md5 or self.push_token_md5 or self.user_id or self.external_id)


def person_digests(email: Iterable[str] = (), phone: Iterable[str] = (), push_token: Iterable[str] = (),
                   user_id: Iterable[str] = (), external_id: Iterable[str] = (),
                   default_region: str | None = None) -> Person:
    """The digests under which each profile archived this person's messages.

    email: both profiles hash the lower-cased address (IDNA domain). phone: the
    E.164 number (Braze) and its country-code digits (CleverTap). push token:
    Braze's key hashes it lower-cased; CleverTap's rows hold it as archived.
    Raises InvalidMessage (naming the kind, never the value) for a value the
    profiles would have refused.
    """
    recipients, tokens, users = set(), set(), set(user_id)
    for value in email:
        recipients.add(identity.md5_hex(identity.email_address(value, "email")))
    for value in phone:
        number = identity.e164(value, default_region, "phone")
        recipients.add(identity.md5_hex(number))
        recipients.add(identity.md5_hex(identity.country_code_format(number)))
    for value in push_token:
        token = identity.push_token(value, "push_token")
        recipients.add(identity.md5_hex(token.lower()))
        tokens.add(identity.md5_hex(token))
    if any(not value for value in users) or any(not value for value in external_id):
        raise InvalidMessage("an id to search for is empty")
    return Person(frozenset(recipients), frozenset(tokens), frozenset(users), frozenset(external_id))


# --- manifests: a hash chain per tenant ---------------------------------------------------
#
# Per tenant, the pipeline writes a manifest an hour (a stream), or per run (a
# backfill), or per MANIFEST_ENTRIES objects, whichever comes first: every key
# it archived with its object's sha256, the sequence number of the manifest in its
# tenant's chain, and the chain hash of the manifest before it. A manifest's
# chain hash covers its tenant, sequence, the previous chain hash and the
# hashes of its entries (sha256 of "key\nsha256"), so an erased entry can be
# replaced by its entry hash (a tombstone, without the key that names the
# recipient's digest) and the chain still verifies; a removed manifest leaves
# a gap in the sequence, an edited one no longer hashes to what its successor
# says, and an object re-written since shows another sha256 than its entry.

MANIFEST_PREFIX = "archive_manifests"
MANIFEST_ENTRIES = 100_000
MANIFEST_VERSION = 1
GENESIS = "0" * 64


def entry_hash(key: str, sha256: str) -> str:
    return hashlib.sha256(f"{key}\n{sha256}".encode("utf-8")).hexdigest()


def chain_hash(tenant: str, sequence: int, previous: str, entry_hashes: Iterable[str]) -> str:
    digest = hashlib.sha256(f"manifest v{MANIFEST_VERSION}\n{tenant}\n{sequence}\n{previous}\n".encode("utf-8"))
    for value in entry_hashes:
        digest.update(value.encode("ascii") + b"\n")
    return digest.hexdigest()


def manifest_key(tenant: str, sequence: int, prefix: str = MANIFEST_PREFIX) -> str:
    return f"{prefix}/tenant={_escape(tenant)}/{sequence:012d}.json"


def manifest_sequence(key: str) -> int | None:
    name = key.rsplit("/", 1)[-1]
    stem = name[:-len(".json")] if name.endswith(".json") else ""
    return int(stem) if len(stem) == 12 and stem.isdigit() else None


def manifest(tenant: str, sequence: int, previous: str, entries: Iterable[tuple[str, str]],
             created_at: str, run_id: str) -> bytes:
    """One manifest's bytes: strict JSON, entries sorted by key."""
    listed = [{"key": key, "sha256": sha} for key, sha in sorted(entries)]
    body = {"version": MANIFEST_VERSION, "tenant": tenant, "sequence": sequence, "previous": previous,
            "chain": chain_hash(tenant, sequence, previous, (entry_hash(e["key"], e["sha256"]) for e in listed)),
            "created_at": created_at, "run_id": run_id, "entries": listed}
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def tombstoned(manifest_bytes: bytes, erased_keys: set[str], erasure: str,
               erased_entries: Iterable[tuple[str, str]] = ()) -> bytes:
    """The manifest with each entry of `erased_keys` (every entry of that key), and each
    (key, sha256) entry of `erased_entries` (one frame of a batched object, whose other
    frames keep their entries), replaced by its entry hash and the erasure record's
    key: the chain hash is unchanged, the key is gone."""
    body = json.loads(manifest_bytes)
    pairs = set(erased_entries)
    entries = []
    for entry in body["entries"]:
        if entry.get("key") in erased_keys or (entry.get("key"), entry.get("sha256")) in pairs:
            entries.append({"erased": erasure, "entry": entry_hash(entry["key"], entry["sha256"])})
        else:
            entries.append(entry)
    body["entries"] = entries
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


@dataclass
class ChainReport:
    manifests: int = 0
    entries: dict[str, str] | None = None      # key -> sha256, from every manifest that verified
    erased: int = 0
    problems: list[str] | None = None           # what breaks the chain, one sentence each
    # every (key, sha256) entry: a batched object has one entry per frame, under one key
    pairs: set[tuple[str, str]] | None = None

    def __post_init__(self):
        self.entries = {} if self.entries is None else self.entries
        self.problems = [] if self.problems is None else self.problems
        self.pairs = set() if self.pairs is None else self.pairs


def check_chain(tenant: str, manifests: Iterable[tuple[str, bytes]]) -> ChainReport:
    """Verify one tenant's manifests, given as (key, bytes) in any order: each parses,
    names its own tenant and sequence, hashes to its `chain`, links to its
    predecessor's chain, and no sequence number is missing from 0 to the last."""
    report = ChainReport()
    by_sequence: dict[int, tuple[str, dict]] = {}
    for key, data in manifests:
        report.manifests += 1
        sequence = manifest_sequence(key)
        try:
            body = json.loads(data, parse_constant=_no_constant, object_pairs_hook=_no_duplicates)
            hashes = [entry["entry"] if "erased" in entry else entry_hash(entry["key"], entry["sha256"])
                      for entry in body["entries"]]
            valid = (body["version"] == MANIFEST_VERSION and body["tenant"] == tenant
                     and body["sequence"] == sequence
                     and body["chain"] == chain_hash(tenant, sequence, body["previous"], hashes))
        except (ValueError, KeyError, TypeError, AttributeError):
            valid = False
        if not valid:
            report.problems.append(f"{key}: does not hash to its own chain value (altered or not a manifest)")
            continue
        by_sequence[sequence] = (key, body)
    if not by_sequence:
        return report
    previous = GENESIS
    for sequence in range(max(by_sequence) + 1):
        if sequence not in by_sequence:
            report.problems.append(f"manifest {sequence} of tenant {tenant} is missing: the chain is broken")
            previous = None
            continue
        key, body = by_sequence[sequence]
        if previous is not None and body["previous"] != previous:
            report.problems.append(f"{key}: does not follow the manifest before it")
        previous = body["chain"]
        for entry in body["entries"]:
            if "erased" in entry:
                report.erased += 1
            else:
                report.entries[entry["key"]] = entry["sha256"]
                report.pairs.add((entry["key"], entry["sha256"]))
    return report
