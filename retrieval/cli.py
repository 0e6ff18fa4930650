"""message-archiver's retrieval subcommands: find, show, verify, export, erase, index.

    argv ──parse──> destinations (--destination/--storage_options, or each tenant of --tenants)
         find     ── AuditIndex.find(person, campaign, dates) ──> table | --json
         show     ── index row (or the key listing) ── Bucket.read ── decompress ──> pretty JSON, the .eml
                     | --raw bytes
         verify   ── index rows ── read_many ── sha256 ──> missing / changed / not indexed, with counts
         export   ── one person's rows ── read ──> zip: the objects' JSON, and an .eml per email (the
                     archived .eml as it is, where the layout stored one)
         erase    ── one person's rows ──> (dry run) the plan | (--yes) objects removed (every version),
                     batched objects rewritten without their frames, index rows rewritten without them
                     (and with the moved frames' new offsets), manifest entries tombstoned, an erasure
                     record without PII; locked ones left, reported
         hold / release ── one person's rows ──> S3 Object Lock legal hold on / off
         reconcile ── every delivery record (file or Kafka topic) ──> its object there and intact
         serve    ── retrieval.web: the same searches, a message view, verification, downloads, in a browser
         index rebuild ── list + read every object ──> this run's index files
         index compact ── each partition's files ──> one file (one row per key), then the merged ones removed

Every layout the pipeline writes reads back: the seeds' per-message keys
(JSON or .eml), a tenant's key template (the tenant file's `key_template`, or
--key_template with --profile for one destination) and batched objects
(sent_batches/, one frame per message: an index row names its byte range, and
a message is read alone with a byte-range GET; `retrieval.content`).

A person is named by what a compliance officer has: --email, --phone,
--push_token, --user_id, --external_id (each may repeat); the plaintext is
turned into the digests the keys hold (archive.audit.person_digests) and
never printed, logged or written. Exit status: 0 done (found something, all
verified); 1 nothing found, or verify found a problem, or erase left objects
it could not remove; 2 a usage error (one line, no traceback); 3 the
destination could not be read.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import json
import random
import sys
import time
import zipfile
from dataclasses import dataclass, field
from typing import Any

from archive import audit, frames
from archive import tenants as tenant_files
from archive.audit import Layout, Person, parse_batch_key, parse_key, person_digests
from archive.envelope import InvalidMessage
from archive.keys import KeyTemplate, TemplateError
from archive.profiles import PROFILES
from archive.tenants import Destination, TenantConfigError
from retrieval import content, manifests, reconcile
from retrieval.bucket import Bucket
from archive.eml import eml
from archive.audit import parquet_bytes
from retrieval.index import (
    BATCH_READ_BYTES, SCHEMA, AuditIndex, batch_rows_of, by_size, compact, iso_day, new_run_id, rebuild, when,
)

EXIT_OK, EXIT_FINDINGS, EXIT_USAGE, EXIT_UNREADABLE = 0, 1, 2, 3
COMMANDS = ("find", "show", "verify", "export", "erase", "hold", "release", "index", "reconcile", "serve")
ERASURES = "archive_erasures"


class UsageError(ValueError):
    pass


class _Parser(argparse.ArgumentParser):
    """A usage error is one line (with where to read more), as the pipeline's are."""

    def error(self, message):
        self.exit(EXIT_USAGE, f"error: {message} (see {self.prog} --help)\n")


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # argparse printed its one line (or the help)
        return EXIT_OK if exit_.code == 0 else EXIT_USAGE
    try:
        targets = _targets(args)
        return args.run(args, targets)
    except (UsageError, TenantConfigError, InvalidMessage, reconcile.DeliveriesError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (OSError, PermissionError) as exc:
        print(f"error: the destination could not be read ({type(exc).__name__})", file=sys.stderr)
        return EXIT_UNREADABLE


# --- arguments -------------------------------------------------------------------------------

def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="message-archiver", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def command(name, run, help_, person=False, filters=False):
        sub = commands.add_parser(name, help=help_, description=help_)
        _destination_flags(sub)
        if person:
            _person_flags(sub)
        if filters:
            sub.add_argument("--campaign_id", help="only this campaign's messages")
            sub.add_argument("--channel", choices=("email", "push", "sms", "mms", "whatsapp"))
            sub.add_argument("--since", type=_date, help="from this date (yyyy-mm-dd, UTC, included)")
            sub.add_argument("--until", type=_date, help="up to this date (yyyy-mm-dd, UTC, included)")
        sub.add_argument("--json", action="store_true", help="machine-readable output")
        sub.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
        sub.set_defaults(run=run)
        return sub

    find = command("find", _find, "messages of one person, a campaign or a date range", True, True)
    find.add_argument("--limit", type=_positive, default=50, help="rows per page (default 50)")
    find.add_argument("--page", type=_positive, default=1, help="which page (default 1)")
    show = command("show", _show, "one message, decompressed and pretty-printed")
    show.add_argument("message_id")
    show.add_argument("--raw", metavar="PATH", help="write the object's original bytes to PATH ('-': stdout); "
                      "a batched message's: its frame")
    show.add_argument("--format", choices=("json", "eml"), default=None,
                      help="with email_format both (a JSON and an .eml of one email): which (default json)")
    verify = command("verify", _verify, "re-read objects and check them against the index", True, True)
    verify.add_argument("--sample", type=_positive, help="check this many objects, chosen at random")
    verify.add_argument("--workers", type=_positive, default=64, help="objects read at once (default 64)")
    export = command("export", _export, "one person's messages as a zip (JSON, and .eml for email)", True, True)
    export.add_argument("--output", required=True, help="the zip file to write (must not exist)")
    erase = command("erase", _erase, "remove one person's messages (a dry run unless --yes)", True, True)
    erase.add_argument("--yes", action="store_true", help="really remove them")
    command("hold", _hold, "place an S3 Object Lock legal hold on one person's messages", True, True)
    command("release", _release, "lift the legal hold from one person's messages", True, True)
    reconcile_ = command("reconcile", _reconcile, "check that every delivered message has its archived object")
    reconcile_.add_argument("--deliveries", required=True,
                            help="the stream's delivery records: a JSON Lines file, folder or glob, or kafka://TOPIC")
    reconcile_.add_argument("--kafka_bootstrap_servers", default="localhost:9092",
                            help="with kafka://TOPIC: the brokers (default localhost:9092)")
    serve = command("serve", _serve, "a read-only web page over the destination: search, view, verify, download")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1); any "
                       "other than loopback needs MESSAGE_ARCHIVER_TOKEN or MESSAGE_ARCHIVER_BASIC_AUTH")
    serve.add_argument("--port", type=_positive, default=8080, help="port (default 8080)")
    index = command("index", _index, "the audit index: rebuild it by reading the bucket")
    index.add_argument("action", choices=("rebuild", "compact"),
                       help="rebuild: index every object by reading it; compact: merge each partition's files")
    index.add_argument("--workers", type=_positive, default=32, help="objects read at once (default 32)")
    return parser


def _destination_flags(parser):
    parser.add_argument("--destination", help="the archive's URL: a folder, s3://, az://, gs://")
    parser.add_argument("--storage_options", default="{}", help="fsspec storage options as JSON")
    parser.add_argument("--tenants", help="a tenant file: every tenant's destination (instead of --destination)")
    parser.add_argument("--tenant", default=None, help="only this tenant (with --tenants), or the name "
                        "to index a --destination under (default: default)")
    parser.add_argument("--allow_insecure_http", action="store_true",
                        help="allow a plain-http endpoint off this machine")
    parser.add_argument("--default_region", help="region of phone numbers given without a country code")
    parser.add_argument("--key_template", help="with --destination: the key template the pipeline's "
                        "--key_template laid objects out by (with --profile); a tenant file gives each tenant's")
    parser.add_argument("--profile", choices=sorted(PROFILES), help="with --destination: the profile of "
                        "--key_template's objects, and of batched objects (else their payload tells)")


def _person_flags(parser):
    for flag, help_ in (("--email", "an email address"), ("--phone", "a phone number"),
                        ("--push_token", "a push token"), ("--user_id", "a user id (CleverTap identity, Braze user)"),
                        ("--external_id", "Braze's external id")):
        parser.add_argument(flag, action="append", default=[], help=f"{help_} (may repeat)")


def _date(text: str) -> str:
    try:
        return iso_day(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError("expected a positive integer")
    return value


def _targets(args) -> list[tuple[str, Bucket]]:
    """(tenant, bucket) for each destination the command reads; each bucket knows the
    key templates its objects may be laid out by and its tenants' profiles."""
    if bool(args.destination) == bool(args.tenants):
        raise UsageError("give exactly one of --destination and --tenants")
    if args.destination:
        try:
            options = json.loads(args.storage_options or "{}")
        except ValueError:
            raise UsageError("--storage_options is not valid JSON") from None
        if not isinstance(options, dict):
            raise UsageError("--storage_options must be a JSON object")
        layouts = ()
        if args.key_template is not None:
            if args.profile is None:
                raise UsageError("--key_template needs --profile: the profile of the payloads it laid out")
            try:
                layouts = (Layout(KeyTemplate(args.key_template), args.profile),)
            except TemplateError as exc:
                raise UsageError(f"--key_template: {exc}") from None
        destination = Destination(args.destination, options, True, args.allow_insecure_http)
        return [(args.tenant or "default", Bucket(args.destination, destination=destination, layouts=layouts,
                                                  profile=args.profile))]
    if args.key_template is not None or args.profile is not None:
        raise UsageError("--key_template and --profile go with --destination: the --tenants file gives each "
                         "tenant's key_template and profile")
    directory = tenant_files.load(args.tenants)
    chosen = [name for name in directory.tenants if args.tenant in (None, name)]
    if not chosen:
        raise UsageError("--tenant names no tenant of the --tenants file")
    layouts = audit.layouts_of(directory)
    profiles = {name: tenant.profile for name, tenant in directory.tenants.items()}
    targets = []
    for name in chosen:
        bucket = Bucket(directory.tenants[name].destination.url, destination=directory.tenants[name].destination,
                        layouts=layouts, profiles=profiles)
        bucket.tenant_layouts = {other: (Layout(tenant.key_template, tenant.profile),) if tenant.key_template else ()
                                 for other, tenant in directory.tenants.items()}
        targets.append((name, bucket))
    return targets


def _person(args, required: bool) -> Person:
    person = person_digests(args.email, args.phone, args.push_token, args.user_id, args.external_id,
                            args.default_region)
    if required and not person:
        raise UsageError("name the person: --email, --phone, --push_token, --user_id or --external_id")
    return person


def _rows(args, targets, person: Person) -> list[tuple[Bucket, dict]]:
    found = []
    for tenant, bucket in targets:
        table = AuditIndex(bucket).find(person or None, campaign_id=args.campaign_id, channel=args.channel,
                                        since=args.since, until=args.until,
                                        tenant=tenant if args.tenants else None)
        found.extend((bucket, row) for row in table.to_pylist())
    return found


class _Progress:
    def __init__(self, what: str, quiet: bool):
        self.what, self.quiet, self.last = what, quiet, 0.0

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if not self.quiet and (now - self.last >= 2 or done == total):
            self.last = now
            print(f"{self.what}: {done:,} of {total:,}", file=sys.stderr, flush=True)


# --- commands --------------------------------------------------------------------------------

_TABLE = ("sent_at (UTC)", "channel", "message_id", "campaign / step", "bytes", "key")


def _find(args, targets) -> int:
    person = _person(args, required=False)
    if not person and not (args.campaign_id or args.since or args.until or args.channel):
        raise UsageError("name a person, or give --campaign_id, --channel, --since or --until")
    rows = [row for _, row in _rows(args, targets, person)]
    start = (args.page - 1) * args.limit
    page = rows[start:start + args.limit]
    if args.json:
        _print_json({"count": len(rows), "page": args.page, "limit": args.limit,
                     "rows": [_public(row) for row in page]})
    else:
        lines = [[_cell(when(row["sent_at_ms"])), row["channel"], _cell(row["message_id"]),
                  _cell(row["campaign_id"] or row["canvas_step_id"] or ""), str(row["bytes"]), _cell(content.ref(row))]
                 for row in page]
        _print_table(_TABLE, lines)
        shown = f"{start + 1:,}-{start + len(page):,} of " if page else ""
        print(f"{shown}{len(rows):,} message(s)", file=sys.stderr)
    return EXIT_OK if rows else EXIT_FINDINGS


def _show(args, targets) -> int:
    for tenant, bucket in targets:
        row = _locate(bucket, tenant if args.tenants else None, args.message_id, args.format)
        if row is None:
            continue
        try:
            data = content.read_row(bucket, row)
        except FileNotFoundError:
            print(f"the object of that message is not in the store: {content.ref(row)}", file=sys.stderr)
            return EXIT_FINDINGS
        if args.raw:
            if args.raw == "-":
                sys.stdout.buffer.write(data)
                sys.stdout.buffer.flush()
            else:
                with open(args.raw, "xb") as handle:
                    handle.write(data)
            return EXIT_OK
        sha = hashlib.sha256(data).hexdigest()
        try:
            shown = content.read_content(row, data)
        except InvalidMessage as exc:
            print(f"{content.ref(row)} is not an archived message: {exc}", file=sys.stderr)
            return EXIT_FINDINGS
        where = {"key": row["key"], "sha256": sha}
        if content.is_frame(row):
            where.update(byte_offset=row["byte_offset"], bytes=len(data))
        if args.json:
            body = {"format": "json", "payload": shown.payload} if shown.format == "json" else {
                "format": "eml", "eml": shown.eml.decode("utf-8", "replace")}
            _print_json({**where, **body})
        else:
            print(f"# {bucket.url}/{content.ref(row)}  sha256 {sha}", file=sys.stderr)
            if shown.format == "json":
                print(json.dumps(shown.payload, indent=2, ensure_ascii=False))
            else:  # as text on a terminal: no control character of the message's reaches it
                text = shown.eml.decode("utf-8", "replace")
                sys.stdout.write("".join(c if c.isprintable() or c in "\r\n\t" else "?" for c in text))
                sys.stdout.flush()
        return EXIT_OK
    print("no message with that id", file=sys.stderr)
    return EXIT_FINDINGS


def _locate(bucket: Bucket, tenant: str | None, message_id: str, form: str | None = None) -> dict | None:
    """The index row of a message id, or, without an index, its key found by listing
    (a batched object's frames read to find it). With email_format both a message has a
    JSON and an .eml: `form` chooses, JSON by default."""
    index = AuditIndex(bucket)
    rows = index.find(message_id=message_id, tenant=tenant).to_pylist()
    if rows:
        return _choose(rows, form)
    if index.files():
        return None
    found, batched = [], []
    for key, _ in bucket.archive_objects():
        if key.startswith(audit.BATCH_ROOT + "/"):
            fields = parse_batch_key(key)
            if fields is not None and (tenant is None or fields.tenant == tenant):
                batched.append(key)
            continue
        parsed = parse_key(key, bucket.layouts)
        if parsed is not None and parsed.message_id == message_id:
            found.append({"key": key, "compression": parsed.compression, "byte_offset": None})
    if found:
        return _choose(found, form)
    for key, data in bucket.read_many(batched, 8, chunk=8):
        if not isinstance(data, BaseException):
            rows = [row.to_dict() for row in batch_rows_of(bucket, key, data) if row.message_id == message_id]
            if rows:
                return rows[-1]
    return None


def _choose(rows: list[dict], form: str | None) -> dict:
    wanted = [row for row in rows if ("eml" if content.is_eml(row["key"]) else "json") == (form or "json")]
    return (wanted or rows)[-1]


_FINDINGS = ("missing", "changed", "unreadable", "not_indexed", "not_in_manifest", "chain")


def _verify(args, targets) -> int:
    """Re-read objects against their recorded sha256 (a batched message: its frame, which
    must also be one complete frame). Unfiltered, also: every archive object (every frame
    of a batched one) is in the index and in a manifest, and each tenant's manifests form
    an unbroken chain (a manifest removed, altered or out of order). A finding names a
    key, or `key@offset` for a frame of a batched object."""
    person = _person(args, required=False)
    whole = not (person or args.sample or args.campaign_id or args.channel or args.since or args.until)
    report: dict[str, Any] = {"checked": 0, "ok": 0, **{name: [] for name in _FINDINGS}, "manifests": 0,
                              "erased_entries": 0}
    for tenant, bucket in targets:
        if whole:  # the whole index, read once: what to check, and what is indexed
            index = AuditIndex(bucket).find(tenant=tenant if args.tenants else None)
            rows = index.to_pylist()
        else:
            rows = [row for b, row in _rows(args, [(tenant, bucket)], person)]
        if args.sample and len(rows) > args.sample:
            rows = random.Random().sample(rows, args.sample)
        expected = {row["key"]: row["sha256"] for row in rows if not content.is_frame(row)}
        framed: dict[str, dict[int, dict]] = {}
        for row in rows:
            if content.is_frame(row):
                framed.setdefault(row["key"], {})[row["byte_offset"]] = row
        in_manifests: dict[str, str] | None = None
        pairs: set[tuple[str, str]] = set()
        if whole:
            chains = manifests.tenants_with_manifests(bucket)
            for name in sorted(chains) if not args.tenants else [tenant] if tenant in chains else []:
                chain = manifests.check(bucket, name, chains[name])
                report["manifests"] += chain.manifests
                report["erased_entries"] += chain.erased
                report["chain"].extend(chain.problems)
                in_manifests = {**(in_manifests or {}), **chain.entries}
                pairs |= chain.pairs
            for key, sha in (in_manifests or {}).items():
                if parse_batch_key(key) is not None:
                    continue  # a frame's entry: checked with its object below
                if expected.setdefault(key, sha) != sha:
                    report["chain"].append(f"{key}: the index and its manifest disagree on its sha256")
        total = len(expected) + sum(len(offsets) for offsets in framed.values())
        progress = _progress_for(args, "verify", total)
        for key, data in bucket.read_many(expected, args.workers, progress=progress):
            report["checked"] += 1
            if isinstance(data, FileNotFoundError):
                report["missing"].append(key)
            elif isinstance(data, BaseException):
                report["unreadable"].append(key)
            elif hashlib.sha256(data).hexdigest() != expected[key]:
                report["changed"].append(key)
            else:
                report["ok"] += 1
        if whole:
            stored = _stored(args, tenant, bucket)
            batched = {key for key in stored if parse_batch_key(key) is not None}
            listed = {key for key, _ in pairs if parse_batch_key(key) is not None}
            if in_manifests is None and index.column("archived_at_ms").null_count < index.num_rows:
                # the pipeline indexed objects here (a rebuild leaves archived_at empty): it chained them too
                report["chain"].append(f"tenant {tenant}: no manifests, though the pipeline archived here")
                in_manifests = {}
            _verify_batched(bucket, framed, {key: stored.get(key, 0) for key in batched | listed | set(framed)},
                            pairs, in_manifests is not None, args.workers, report)
            indexed = set(index.column("key").to_pylist())
            archived = [key for key in stored if key not in batched and parse_key(key, bucket.layouts) is not None]
            report["not_indexed"].extend(key for key in archived if key not in indexed)
            if in_manifests is not None:  # a bucket the pipeline never wrote has no chain to hold it to
                report["not_in_manifest"].extend(key for key in archived if key not in in_manifests)
        else:
            ranges = [(key, offset, row["bytes"]) for key, offsets in framed.items() for offset, row in offsets.items()]
            for (key, offset, _), data in bucket.read_ranges(ranges, args.workers):
                _frame_finding(framed[key][offset], data, report)
    return _findings(args, report, _FINDINGS, (
        f"checked {report['checked']:,}: {report['ok']:,} ok, {len(report['missing']):,} missing, "
        f"{len(report['changed']):,} changed, {len(report['unreadable']):,} unreadable, "
        f"{len(report['not_indexed']):,} not in the index, {len(report['not_in_manifest']):,} in no "
        f"manifest; {report['manifests']:,} manifest(s), {len(report['chain']):,} chain problem(s)"))


def _stored(args, tenant: str, bucket: Bucket) -> dict[str, int]:
    """The destination's archive objects that are this tenant's to account for: with a
    tenant file, not the batched objects another tenant's key names, nor the objects only
    another tenant's key template lays out (in a destination tenants share)."""
    found = dict(bucket.archive_objects())
    if not args.tenants:
        return found
    own = _own_layouts(args, tenant, bucket)["layouts"]
    foreign = tuple(layout for layout in bucket.layouts if layout not in own)
    for key in list(found):
        batch = parse_batch_key(key)
        if batch is not None:
            if batch.tenant != tenant:
                del found[key]
        elif foreign and parse_key(key, own) is None and parse_key(key, foreign) is not None:
            del found[key]
    return found


def _frame_finding(row: dict, data, report: dict) -> str:
    """One indexed frame checked (read alone, or cut from its object): counted and reported."""
    report["checked"] += 1
    ref = content.ref(row)
    if isinstance(data, FileNotFoundError):
        report["missing"].append(ref)
        return "missing"
    if isinstance(data, BaseException):
        report["unreadable"].append(ref)
        return "unreadable"
    found = content.status(row, data)
    if found == "ok":
        report["ok"] += 1
    else:
        report[found].append(ref)
    return found


def _verify_batched(bucket: Bucket, framed: dict[str, dict[int, dict]], sizes: dict[str, int],
                    pairs: set[tuple[str, str]], chained: bool, workers: int, report: dict) -> None:
    """Each batched object read whole (once, however many frames it holds): every indexed
    frame checked from its bytes; every byte range no index row names reported as not
    indexed (a frame, or bytes that are no frame: appended, or what is left of a cut);
    a frame no manifest lists, or a manifest's frame that is nowhere, reported too. An
    object no index row names at all is one finding, its key."""
    listed: dict[str, set[str]] = {}
    for key, sha in pairs:
        listed.setdefault(key, set()).add(sha)
    for group in by_size(dict(sorted(sizes.items())), BATCH_READ_BYTES):  # so many bytes held at once
        for key, data in bucket.read_many(group, min(workers, len(group)), chunk=len(group)):
            rows = framed.get(key, {})
            shas = listed.get(key, set())
            if isinstance(data, BaseException):
                if rows:
                    for row in rows.values():
                        _frame_finding(row, data, report)
                elif isinstance(data, FileNotFoundError):
                    report["missing"].append(key)  # in a manifest, in no index row, not in the store
                else:
                    report["unreadable"].append(key)
                continue
            if not rows:
                report["not_indexed"].append(key)
                if chained and not shas:
                    report["not_in_manifest"].append(key)
                continue
            compression = audit.batch_compression(parse_batch_key(key))
            covered, seen = [], set()
            for offset, row in sorted(rows.items()):
                frame = data[offset:offset + row["bytes"]]
                found = _frame_finding(row, frame, report)
                covered.append((offset, offset + row["bytes"]))
                actual = hashlib.sha256(frame).hexdigest()
                seen.update((row["sha256"], actual))
                if chained and (key, row["sha256"]) not in pairs:
                    if found != "ok" and actual in shas:
                        report["chain"].append(f"{content.ref(row)}: the index and its manifest disagree on "
                                               "its sha256")
                    else:
                        report["not_in_manifest"].append(content.ref(row))
            for start, end in _gaps(covered, len(data)):
                for offset, frame in _frames_in(compression, data, start, end, report, key):
                    sha = hashlib.sha256(frame).hexdigest()
                    seen.add(sha)
                    report["not_indexed"].append(audit.row_ref(key, offset))
                    if chained and sha not in shas:
                        report["not_in_manifest"].append(audit.row_ref(key, offset))
            if chained:
                for sha in sorted(shas - seen):
                    report["missing"].append(f"{key} (a frame its manifest lists, sha256 {sha})")


def _gaps(covered: list[tuple[int, int]], size: int) -> list[tuple[int, int]]:
    """The byte ranges of [0, size) that no (start, end) covers."""
    gaps, position = [], 0
    for start, end in sorted(covered):
        if start > position:
            gaps.append((position, min(start, size)))
        position = max(position, end)
    if position < size:
        gaps.append((position, size))
    return [(a, b) for a, b in gaps if b > a]


def _frames_in(compression: str, data: bytes, start: int, end: int, report: dict, key: str):
    """(offset, frame bytes) of each sound frame in data[start:end]; bytes there that are
    no frame are reported as not indexed, at the offset where they start."""
    part = data[start:end]
    try:
        for span, _ in frames.lines(compression, part):
            yield start + span.offset, part[span.offset:span.end]
    except frames.CorruptObject as exc:
        report["not_indexed"].append(f"{audit.row_ref(key, start + (exc.offset or 0))} (bytes that are no frame)")


def _findings(args, report: dict, names: tuple[str, ...], summary: str) -> int:
    """A check's report: JSON with the counts, or its summary line and each finding;
    exit 1 when there is any."""
    if args.json:
        _print_json({**{k: sorted(v) if isinstance(v, list) else v for k, v in report.items()},
                     "counts": {name: len(report[name]) for name in names}})
    else:
        print(summary)
        for name in names:
            for item in sorted(report[name]):
                print(f"  {name}: {item}")
    return EXIT_FINDINGS if any(report[name] for name in names) else EXIT_OK


def _progress_for(args, what: str, total: int):
    progress = _Progress(what, args.quiet or args.json)
    return lambda done: progress(done, total)


def _export(args, targets) -> int:
    person = _person(args, required=True)
    rows = _rows(args, targets, person)
    if not rows:
        print("no messages for that person", file=sys.stderr)
        return EXIT_FINDINGS
    manifest, problems = [], 0
    try:
        handle = open(args.output, "xb")
    except FileExistsError:
        raise UsageError("--output exists: choose a new file") from None
    # messages archived as an .eml too (email_format both): theirs goes in, not one made from the JSON
    stored_eml = {(row["tenant"], row["message_id"]) for _, row in rows if content.is_eml(row["key"])}
    with handle, zipfile.ZipFile(handle, "w", zipfile.ZIP_DEFLATED) as archive:
        by_ref = {content.ref(row): (bucket, row) for bucket, row in rows}
        for index, (ref, (bucket, row)) in enumerate(by_ref.items()):
            try:
                data = content.read_row(bucket, row)
            except FileNotFoundError:
                problems += 1
                manifest.append({"key": row["key"], "byte_offset": row.get("byte_offset"), "status": "missing"})
                continue
            status = content.status(row, data)
            entry = {"key": row["key"], "sha256": row["sha256"], "status": status}
            if content.is_frame(row):
                entry["byte_offset"] = row["byte_offset"]
            try:
                shown = content.read_content(row, data)
            except InvalidMessage:
                shown, entry["status"] = None, "unreadable"
            problems += entry["status"] != "ok"
            stem = f"{row['channel']}/{row['date']}-{row['message_id']}"
            files = []
            if shown is not None and shown.format == "eml":  # the archived .eml, as it is
                archive.writestr(f"{stem}.eml", shown.eml)
                files.append(f"{stem}.eml")
            elif shown is not None:
                archive.writestr(f"{stem}.json", json.dumps(shown.payload, indent=2, ensure_ascii=False))
                files.append(f"{stem}.json")
                if row["channel"] == "email" and (row["tenant"], row["message_id"]) not in stored_eml:
                    archive.writestr(f"{stem}.eml", eml(shown.payload, row["profile"], row["key"], row["sha256"]))
                    files.append(f"{stem}.eml")
            entry["files"] = files
            manifest.append(entry)
            _Progress("export", args.quiet or args.json)(index + 1, len(by_ref))
        archive.writestr("manifest.json", json.dumps({"exported_at": _now_iso(), "messages": manifest}, indent=2))
    summary = {"output": args.output, "messages": len(manifest), "problems": problems}
    _print_json(summary) if args.json else print(f"wrote {len(manifest):,} message(s) to {args.output}"
                                                 + (f"; {problems} missing or changed" if problems else ""))
    return EXIT_FINDINGS if problems else EXIT_OK


@dataclass
class _Erased:
    """What an erasure took from one destination, for its index, manifests and record."""

    keys: set[str] = field(default_factory=set)                     # per-message objects removed (or gone)
    refs: set[tuple[str, int]] = field(default_factory=set)         # frames whose index rows go
    entries: set[tuple[str, str]] = field(default_factory=set)      # frames' manifest entries (key, sha256)
    cuts: dict[str, list[tuple[int, int]]] = field(default_factory=dict)  # rewritten object -> ranges cut
    gone: set[str] = field(default_factory=set)                     # batched objects left without frames


def _erase(args, targets) -> int:
    person = _person(args, required=True)
    plan = _rows(args, targets, person)
    outcome: dict[str, Any] = {"dry_run": not args.yes, "objects": len(plan), "removed": 0, "already_gone": 0,
                               "locked": [], "index_rows_removed": 0, "manifests_tombstoned": 0,
                               "frames_removed": 0, "batched_objects_rewritten": 0, "erasure_records": []}
    if args.yes:
        matches = _matcher(args, person)
        for tenant, bucket in targets:
            mine = [row for b, row in plan if b is bucket]
            if not mine:
                continue
            erased = _Erased()
            framed: dict[str, list[dict]] = {}
            for row in mine:
                if content.is_frame(row):
                    framed.setdefault(row["key"], []).append(row)
                    continue
                versions, lock = bucket.erase(row["key"])
                if lock:
                    outcome["locked"].append({"key": row["key"], "lock": lock})
                    continue
                outcome["removed" if versions else "already_gone"] += 1
                erased.keys.add(row["key"])
            for key, rows in sorted(framed.items()):
                _erase_frames(bucket, key, rows, matches, erased, outcome)
            outcome["index_rows_removed"] += _drop_index_rows(bucket, person, erased)
            record = f"{ERASURES}/{new_run_id()}.json"
            rewritten, kept = manifests.tombstone(bucket, erased.keys, record, erased_entries=erased.entries)
            outcome["manifests_tombstoned"] += rewritten
            outcome["locked"].extend({"key": key, "lock": f"manifest: {lock}"} for key, lock in kept)
            _record_erasure(bucket, record, tenant, erased, outcome["locked"], rewritten)
            outcome["erasure_records"].append(record)
    refs = sorted(content.ref(row) for _, row in plan)
    if args.json:
        _print_json({**outcome, "keys": refs})
    else:
        verb = "would remove" if not args.yes else "removed"
        count = len(plan) if not args.yes else outcome["removed"] + outcome["already_gone"]
        print(f"{verb} {count:,} object(s) and their index rows")
        for ref in refs:
            print(f"  {ref}")
        for locked in outcome["locked"]:
            print(f"  left (locked: {locked['lock']}): {locked['key']}")
        if not args.yes:
            print("dry run: nothing was removed; run again with --yes to erase", file=sys.stderr)
    return EXIT_FINDINGS if outcome["locked"] or not plan else EXIT_OK


def _matcher(args, person: Person):
    """Whether an index row (a frame read from a batched object) is one the erasure
    names: the person's (as the index search matches), within the command's filters."""
    def matches(row: audit.IndexRow) -> bool:
        if not (row.recipient_md5 in person.recipient_md5 or row.push_token_md5 in person.push_token_md5
                or row.user_id in person.user_id or row.external_id in person.external_id):
            return False
        return ((args.campaign_id is None or row.campaign_id == args.campaign_id)
                and (args.channel is None or row.channel == args.channel)
                and (args.since is None or row.date >= args.since)
                and (args.until is None or row.date <= args.until))
    return matches


def _erase_frames(bucket: Bucket, key: str, rows: list[dict], matches, erased: _Erased, outcome: dict) -> None:
    """Rewrite one batched object without the person's frames: those its index rows name
    (when the bytes there are still what was indexed) and any other frame of theirs the
    object holds (read and keyed as the pipeline keys it). The other frames keep their
    bytes; the object is replaced whole (every older S3 version removed), or erased when
    nothing is left. A lock on any version leaves the object whole, and says so."""
    lock = bucket.lock_of(key)
    if lock:
        outcome["locked"].extend({"key": content.ref(row), "lock": lock} for row in rows)
        return
    try:
        data = bucket.read(key)
    except FileNotFoundError:
        outcome["already_gone"] += len(rows)
        erased.refs.update((key, row["byte_offset"]) for row in rows)
        erased.entries.update((key, row["sha256"]) for row in rows)
        return
    cut: dict[int, int] = {}
    for row in rows:
        offset, length = row["byte_offset"], row["bytes"]
        frame = data[offset:offset + length]
        if len(frame) == length and hashlib.sha256(frame).hexdigest() == row["sha256"]:
            cut[offset] = length
    fields = parse_batch_key(key)
    try:
        for span, line in frames.lines(audit.batch_compression(fields), data):
            if span.offset in cut:
                continue
            try:
                row = audit.batch_index_row(key, data[span.offset:span.end], span.offset,
                                            profile=bucket.profile_of(fields.tenant), line=line)
            except InvalidMessage:
                continue
            if matches(row):
                cut[span.offset] = span.length
    except frames.CorruptObject:
        pass  # the rest is no frame: the indexed ranges above are what can be cut
    ranges = _merged([(offset, offset + length) for offset, length in cut.items()])
    left = b"".join(data[start:end] for start, end in _gaps(ranges, len(data)))
    if cut:
        try:
            if left:
                lock = bucket.replace(key, left)
            else:
                _, lock = bucket.erase(key)
        except PermissionError:  # nothing was written
            outcome["locked"].extend({"key": content.ref(row), "lock": "refused by the store"} for row in rows)
            return
        if lock and not left:
            outcome["locked"].extend({"key": content.ref(row), "lock": lock} for row in rows)
            return
        if lock:  # the new bytes are in place; an older version the store kept still holds the old
            outcome["locked"].append({"key": key, "lock": f"an older version: {lock}"})
        if left:
            erased.cuts[key] = ranges
            outcome["batched_objects_rewritten"] += 1
        else:
            erased.gone.add(key)
    erased.refs.update((key, row["byte_offset"]) for row in rows)  # the person's rows go, wherever they pointed
    erased.refs.update((key, offset) for offset in cut)
    erased.entries.update((key, hashlib.sha256(data[offset:offset + length]).hexdigest())
                          for offset, length in cut.items())
    erased.entries.update((key, row["sha256"]) for row in rows)
    outcome["removed"] += len(cut)
    outcome["frames_removed"] += len(cut)
    outcome["already_gone"] += len([row for row in rows if row["byte_offset"] not in cut])


def _merged(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, end in sorted(ranges):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def _moved(offset: int, ranges: list[tuple[int, int]]) -> int | None:
    """Where a frame at `offset` starts once `ranges` are cut out (None: it was cut)."""
    shift = 0
    for start, end in ranges:
        if end <= offset:
            shift += end - start
        elif start <= offset:
            return None
        else:
            break
    return offset - shift


def _hold(args, targets) -> int:
    return _legal_hold(args, targets, True)


def _release(args, targets) -> int:
    return _legal_hold(args, targets, False)


def _legal_hold(args, targets, on: bool) -> int:
    """Legal hold on (or off) each of one person's objects: `erase` leaves held objects,
    and so does the store, whatever their retention."""
    rows = _rows(args, targets, _person(args, required=True))
    done, failed = 0, []
    for bucket, row in rows:
        try:
            bucket.hold(row["key"], on)
            done += 1
        except NotImplementedError as exc:
            raise UsageError(str(exc)) from None
        except (OSError, ValueError) as exc:  # the bucket has no Object Lock, or refused
            failed.append({"key": row["key"], "error": type(exc).__name__})
    if args.json:
        _print_json({"legal_hold": "ON" if on else "OFF", "objects": done, "failed": failed})
    else:
        print(f"legal hold {'placed on' if on else 'lifted from'} {done:,} object(s)")
        for item in failed:
            print(f"  not changed ({item['error']}; does the bucket have Object Lock?): {item['key']}")
    return EXIT_FINDINGS if failed or not rows else EXIT_OK


def _drop_index_rows(bucket: Bucket, person: Person, erased: _Erased) -> int:
    """Rewrite each index file holding an erased object's or frame's row without it, and
    with the new byte_offset of every other frame of a rewritten batched object (its
    bytes and sha256 unchanged): the new file is written first, the old one removed
    after, so a crash leaves a duplicate (which readers fold) and never a lost row."""
    if not (erased.keys or erased.refs or erased.cuts or erased.gone):
        return 0
    import pyarrow as pa
    index, removed = AuditIndex(bucket), 0
    columns = [n for n in SCHEMA.names if n not in ("tenant", "channel", "date")]
    touched = set(erased.cuts) | erased.gone | {key for key, _ in erased.refs}
    for file_key in index.rows_by_file(person, touched):
        table = index.dataset([file_key]).to_table(columns=columns)
        rows, kept, changed = table.to_pylist(), [], False
        for row in rows:
            key, offset = row["key"], row["byte_offset"]
            if offset is None:
                if key in erased.keys:
                    changed = True
                    continue
            elif (key, offset) in erased.refs or key in erased.gone:
                changed = True
                continue
            elif key in erased.cuts:
                moved = _moved(offset, erased.cuts[key])
                if moved is None:
                    changed = True
                    continue
                if moved != offset:
                    row, changed = {**row, "byte_offset": moved}, True
            kept.append(row)
        removed += len(rows) - len(kept)
        if not changed:
            continue
        if kept:
            folder, _, name = file_key.rpartition("/")
            bucket.create(f"{folder}/erased-{new_run_id()}-{name}",
                          parquet_bytes(pa.Table.from_pylist(kept, schema=table.schema)))
        bucket.remove(file_key)
    return removed


def _record_erasure(bucket: Bucket, key: str, tenant: str, erased: _Erased, locked: list,
                    manifests_rewritten: int) -> None:
    """An erasure record: when, how many, and a digest of the keys (and frames) removed
    (the keys hold recipient digests, so they are not listed; each tombstone in a
    manifest names this record)."""
    removed = sorted(erased.keys | erased.gone) + sorted(audit.row_ref(k, o) for k, o in erased.refs)
    record = {"erased_at": _now_iso(), "tenant": tenant, "objects_removed": len(erased.keys | erased.gone),
              "frames_removed": len(erased.refs), "batched_objects_rewritten": len(erased.cuts),
              "objects_left_locked": len(locked), "manifests_tombstoned": manifests_rewritten,
              "removed_keys_sha256": hashlib.sha256("\n".join(removed).encode()).hexdigest()}
    bucket.create(key, json.dumps(record, indent=2).encode())


_RECONCILED = ("without_archive", "missing", "changed", "not_indexed", "unreadable")


def _reconcile(args, targets) -> int:
    """Each delivery's archived object: there, intact (its sha256 as delivered, or as
    indexed), and in the index; a batched object's: the frame the delivery's outcome
    names (or the index's row of that message in that object), read alone. Findings are
    listed by message id and key (never a recipient: delivery records hold the message,
    which is not printed)."""
    if args.deliveries.startswith("kafka://"):
        deliveries = reconcile.from_kafka(args.deliveries[len("kafka://"):], args.kafka_bootstrap_servers)
    else:
        deliveries = reconcile.from_files(args.deliveries)
    layouts = tuple({layout for _, bucket in targets for layout in bucket.layouts})
    roots = [bucket.fs.unstrip_protocol(bucket.root) for _, bucket in targets if bucket.root]
    report: dict[str, Any] = {"delivered": 0, "ok": 0, **{name: [] for name in _RECONCILED}}
    expected: dict[str, tuple[str | None, str]] = {}  # key -> (sha256 as delivered, where)
    framed: list = []                                  # deliveries of batched messages
    for delivery in deliveries:
        report["delivered"] += 1
        key = reconcile.archive_key(delivery.archive_url, layouts, roots)
        if key is None:
            report["without_archive"].append(f"{delivery.message_id or '?'} ({delivery.where})")
        elif parse_batch_key(key) is not None:
            framed.append((key, delivery))
        else:
            expected.setdefault(key, (delivery.archive_sha256, delivery.message_id or "?"))
    indexed: dict[str, str] = {}
    frame_rows: dict[tuple[str, int], dict] = {}
    by_message: dict[tuple[str, str], dict] = {}
    for _, bucket in targets:
        table = AuditIndex(bucket).find()
        for row in table.to_pylist():
            if content.is_frame(row):
                frame_rows[row["key"], row["byte_offset"]] = row
                by_message[row["key"], row["message_id"]] = row
            else:
                indexed[row["key"]] = row["sha256"]
    remaining = dict(expected)
    for _, bucket in targets:
        present = [key for key in remaining if bucket.exists(key)] if len(targets) > 1 else list(remaining)
        for key, data in bucket.read_many(present, progress=_progress_for(args, "reconcile", len(present))):
            if isinstance(data, FileNotFoundError):
                continue
            delivered_sha, message_id = remaining.pop(key)
            if isinstance(data, BaseException):
                report["unreadable"].append(key)
                continue
            want = delivered_sha or indexed.get(key)
            if want is not None and hashlib.sha256(data).hexdigest() != want:
                report["changed"].append(key)
            else:
                report["ok"] += 1
            if key not in indexed:
                report["not_indexed"].append(key)
    report["missing"].extend(remaining)
    _reconcile_frames(targets, framed, frame_rows, by_message, report)
    return _findings(args, report, _RECONCILED, (
        f"{report['delivered']:,} delivered: {report['ok']:,} archived and intact, "
        + ", ".join(f"{len(report[name]):,} {name.replace('_', ' ')}" for name in _RECONCILED)))


def _reconcile_frames(targets, framed: list, frame_rows: dict, by_message: dict, report: dict) -> None:
    """The frame each delivered batched message's outcome names: its byte range (the
    delivery's, else its index row's), read alone, its sha256 (the delivery's, else the
    index's) and one whole frame."""
    checks: dict[tuple[str, int, int], tuple[str, dict]] = {}
    for key, delivery in framed:
        row = by_message.get((key, delivery.message_id)) if delivery.message_id else None
        offset = delivery.byte_offset if delivery.byte_offset is not None else row and row["byte_offset"]
        length = delivery.length if delivery.length is not None else row and row["bytes"]
        if offset is None or length is None:  # no outcome's range, and the index has no row of it
            report["not_indexed"].append(f"{key} ({delivery.message_id or '?'}: no frame to check)")
            continue
        indexed = frame_rows.get((key, offset))
        sha = delivery.archive_sha256 or (indexed or {}).get("sha256")
        compression = audit.batch_compression(parse_batch_key(key))
        checks.setdefault((key, offset, length), (delivery.message_id or "?", {
            "key": key, "byte_offset": offset, "bytes": length, "sha256": sha, "compression": compression,
            "indexed": indexed is not None}))
    remaining = dict(checks)
    for _, bucket in targets:
        wanted = [item for item in remaining if len(targets) == 1 or bucket.exists(item[0])]
        for item, data in bucket.read_ranges(wanted):
            if isinstance(data, FileNotFoundError):
                continue
            _, row = remaining.pop(item)
            ref = content.ref(row)
            if isinstance(data, BaseException):
                report["unreadable"].append(ref)
                continue
            if row["sha256"] is None:  # nothing says what it should hash to: one whole frame, at least
                found = "ok" if content.status({**row, "sha256": hashlib.sha256(data).hexdigest()}, data) == "ok" \
                    else "unreadable"
            else:
                found = content.status(row, data)
            if found == "ok":
                report["ok"] += 1
            else:
                report["changed" if found == "changed" else "unreadable"].append(ref)
            if not row["indexed"]:
                report["not_indexed"].append(ref)
    report["missing"].extend(content.ref(row) for _, row in remaining.values())


def _serve(args, targets) -> int:
    """The web page, until Ctrl-C. Credentials come from the environment (a flag's
    value would show in every process listing)."""
    import os

    import uvicorn

    from retrieval import web

    token = os.environ.get("MESSAGE_ARCHIVER_TOKEN") or None
    basic = os.environ.get("MESSAGE_ARCHIVER_BASIC_AUTH") or None
    try:
        web.check_exposure(args.host, token, basic)
    except web.Refused as exc:
        raise UsageError(str(exc)) from None
    app = web.create_app(targets, token=token, basic_auth=basic, default_region=args.default_region)
    print(f"serving {', '.join(b.url for _, b in targets)} on http://{args.host}:{args.port}/ (Ctrl-C stops)",
          file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", server_header=False)
    return EXIT_OK


def _index(args, targets) -> int:
    if args.action == "compact":
        _each_tenant(args, targets, "compacted", lambda tenant, bucket, progress: compact(
            bucket, progress=progress), lambda r: (
            f"{r['tenant']}: {r['files_merged']:,} file(s) of {r['partitions']:,} partition(s) merged into "
            f"{r['files_written']:,}; {r['rows']:,} rows kept, {r['duplicates_dropped']:,} duplicates dropped "
            f"in {r['seconds']:.1f} s"))
        return EXIT_OK
    reports = _each_tenant(args, targets, "rebuilt", lambda tenant, bucket, progress: rebuild(
        bucket, tenant, workers=args.workers, progress=progress, **_own_layouts(args, tenant, bucket)), lambda r: (
        f"{r['tenant']}: indexed {r['indexed']:,} of {r['objects']:,} objects in {r['seconds']:.1f} s "
        f"({r['objects'] / max(r['seconds'], 1e-9):,.0f}/s, {r['files']} file(s)); unreadable {r['unreadable']}, "
        f"not archive JSON {r['not_archive']}, other keys {r['other_keys']}"))
    return EXIT_FINDINGS if any(r["unreadable"] or r["not_archive"] for r in reports) else EXIT_OK


def _own_layouts(args, tenant: str, bucket: Bucket) -> dict:
    """With a tenant file, a tenant's rebuild indexes the objects its own layout made (and
    the seeds' layout, which names no tenant); another tenant's template and batched
    objects in a shared destination are that tenant's to index."""
    if not args.tenants:
        return {}
    own = tuple(layout for layout in bucket.layouts if layout in bucket.tenant_layouts.get(tenant, ()))
    return {"layouts": own, "foreign": bucket.layouts, "batch_tenants": [tenant]}


def _each_tenant(args, targets, name: str, action, line) -> list[dict]:
    """`action` on each destination, with progress; its reports printed (a line each, or --json)."""
    reports = []
    for tenant, bucket in targets:
        progress = _Progress(f"index {args.action} {tenant}", args.quiet or args.json)
        reports.append({"tenant": tenant, **action(tenant, bucket, progress).__dict__})
    if args.json:
        _print_json({name: reports})
    else:
        for report in reports:
            print(line(report))
    return reports


# --- output ----------------------------------------------------------------------------------

def _public(row: dict) -> dict:
    return {name: row[name] for name in SCHEMA.names if row.get(name) is not None}


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False, default=str))


def _cell(text: str) -> str:
    """One table cell: printable characters only (an id from a hostile input cannot move the cursor)."""
    return "".join(c if c.isprintable() else "?" for c in str(text))


def _print_table(header: tuple[str, ...], lines: list[list[str]]) -> None:
    widths = [max([len(name)] + [len(line[i]) for line in lines]) for i, name in enumerate(header)]
    for line in [list(header)] + lines:
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip())


def _now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
