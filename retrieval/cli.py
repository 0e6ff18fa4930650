"""message-archiver's retrieval subcommands: find, show, verify, export, erase, index.

    argv ──parse──> destinations (--destination/--storage_options, or each tenant of --tenants)
         find     ── AuditIndex.find(person, campaign, dates) ──> table | --json
         show     ── index row (or the key listing) ── Bucket.read ── decompress ──> pretty JSON | --raw bytes
         verify   ── index rows ── read_many ── sha256 ──> missing / changed / not indexed, with counts
         export   ── one person's rows ── read ──> zip: the objects' JSON, and an .eml per email
         erase    ── one person's rows ──> (dry run) the plan | (--yes) objects removed (every version),
                     index rows rewritten without them, an erasure record without PII; locked ones left, reported
         hold / release ── one person's rows ──> S3 Object Lock legal hold on / off
         reconcile ── every delivery record (file or Kafka topic) ──> its object there and intact
         serve    ── retrieval.web: the same searches, a message view, verification, downloads, in a browser
         index rebuild ── list + read every object ──> this run's index files
         index compact ── each partition's files ──> one file (one row per key), then the merged ones removed

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
from typing import Any

from archive import tenants as tenant_files
from archive.audit import Person, parse_key, person_digests, read_payload
from archive.envelope import InvalidMessage
from archive.tenants import Destination, TenantConfigError
from retrieval import manifests, reconcile
from retrieval.bucket import Bucket
from archive.eml import eml
from archive.audit import parquet_bytes
from retrieval.index import SCHEMA, AuditIndex, compact, new_run_id, rebuild

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
    show.add_argument("--raw", metavar="PATH", help="write the object's original bytes to PATH ('-': stdout)")
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


def _person_flags(parser):
    for flag, help_ in (("--email", "an email address"), ("--phone", "a phone number"),
                        ("--push_token", "a push token"), ("--user_id", "a user id (CleverTap identity, Braze user)"),
                        ("--external_id", "Braze's external id")):
        parser.add_argument(flag, action="append", default=[], help=f"{help_} (may repeat)")


def _date(text: str) -> str:
    try:
        return _dt.date.fromisoformat(text).isoformat()
    except ValueError:
        raise argparse.ArgumentTypeError("expected a date as yyyy-mm-dd") from None


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError("expected a positive integer")
    return value


def _targets(args) -> list[tuple[str, Bucket]]:
    """(tenant, bucket) for each destination the command reads."""
    if bool(args.destination) == bool(args.tenants):
        raise UsageError("give exactly one of --destination and --tenants")
    if args.destination:
        try:
            options = json.loads(args.storage_options or "{}")
        except ValueError:
            raise UsageError("--storage_options is not valid JSON") from None
        if not isinstance(options, dict):
            raise UsageError("--storage_options must be a JSON object")
        destination = Destination(args.destination, options, True, args.allow_insecure_http)
        return [(args.tenant or "default", Bucket(args.destination, destination=destination))]
    directory = tenant_files.load(args.tenants)
    chosen = [name for name in directory.tenants if args.tenant in (None, name)]
    if not chosen:
        raise UsageError("--tenant names no tenant of the --tenants file")
    return [(name, Bucket(directory.tenants[name].destination.url,
                          destination=directory.tenants[name].destination)) for name in chosen]


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
        lines = [[_cell(_when(row["sent_at_ms"])), row["channel"], _cell(row["message_id"]),
                  _cell(row["campaign_id"] or row["canvas_step_id"] or ""), str(row["bytes"]), _cell(row["key"])]
                 for row in page]
        _print_table(_TABLE, lines)
        shown = f"{start + 1:,}-{start + len(page):,} of " if page else ""
        print(f"{shown}{len(rows):,} message(s)", file=sys.stderr)
    return EXIT_OK if rows else EXIT_FINDINGS


def _show(args, targets) -> int:
    for tenant, bucket in targets:
        row = _locate(bucket, tenant if args.tenants else None, args.message_id)
        if row is None:
            continue
        data = bucket.read(row["key"])
        if args.raw:
            if args.raw == "-":
                sys.stdout.buffer.write(data)
                sys.stdout.buffer.flush()
            else:
                with open(args.raw, "xb") as handle:
                    handle.write(data)
            return EXIT_OK
        payload = read_payload(data, row["compression"])
        if args.json:
            _print_json({"key": row["key"], "sha256": hashlib.sha256(data).hexdigest(), "payload": payload})
        else:
            print(f"# {bucket.url}/{row['key']}  sha256 {hashlib.sha256(data).hexdigest()}", file=sys.stderr)
            print(json.dumps(payload, indent=2, ensure_ascii=False))
        return EXIT_OK
    print("no message with that id", file=sys.stderr)
    return EXIT_FINDINGS


def _locate(bucket: Bucket, tenant: str | None, message_id: str) -> dict | None:
    """The index row of a message id, or, without an index, its key found by listing."""
    index = AuditIndex(bucket)
    rows = index.find(message_id=message_id, tenant=tenant).to_pylist()
    if rows:
        return rows[-1]
    if index.files():
        return None
    for key, _ in bucket.objects():
        parsed = parse_key(key)
        if parsed is not None and parsed.message_id == message_id:
            return {"key": key, "compression": parsed.compression}
    return None


_FINDINGS = ("missing", "changed", "unreadable", "not_indexed", "not_in_manifest", "chain")


def _verify(args, targets) -> int:
    """Re-read objects against their recorded sha256. Unfiltered, also: every archive
    object is in the index and in a manifest, and each tenant's manifests form an
    unbroken chain (a manifest removed, altered or out of order)."""
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
        expected = {row["key"]: row["sha256"] for row in rows}
        in_manifests: dict[str, str] | None = None
        if whole:
            chains = manifests.tenants_with_manifests(bucket)
            for name in sorted(chains) if not args.tenants else [tenant] if tenant in chains else []:
                chain = manifests.check(bucket, name, chains[name])
                report["manifests"] += chain.manifests
                report["erased_entries"] += chain.erased
                report["chain"].extend(chain.problems)
                in_manifests = {**(in_manifests or {}), **chain.entries}
            for key, sha in (in_manifests or {}).items():
                if expected.setdefault(key, sha) != sha:
                    report["chain"].append(f"{key}: the index and its manifest disagree on its sha256")
        for key, data in bucket.read_many(expected, args.workers,
                                          progress=_progress_for(args, "verify", len(expected))):
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
            indexed = set(index.column("key").to_pylist())
            if in_manifests is None and index.column("archived_at_ms").null_count < index.num_rows:
                # the pipeline indexed objects here (a rebuild leaves archived_at empty): it chained them too
                report["chain"].append(f"tenant {tenant}: no manifests, though the pipeline archived here")
                in_manifests = {}
            stored = [key for key, _ in bucket.objects() if parse_key(key) is not None]
            report["not_indexed"].extend(key for key in stored if key not in indexed)
            if in_manifests is not None:  # a bucket the pipeline never wrote has no chain to hold it to
                report["not_in_manifest"].extend(key for key in stored if key not in in_manifests)
    return _findings(args, report, _FINDINGS, (
        f"checked {report['checked']:,}: {report['ok']:,} ok, {len(report['missing']):,} missing, "
        f"{len(report['changed']):,} changed, {len(report['unreadable']):,} unreadable, "
        f"{len(report['not_indexed']):,} not in the index, {len(report['not_in_manifest']):,} in no "
        f"manifest; {report['manifests']:,} manifest(s), {len(report['chain']):,} chain problem(s)"))


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
    with handle, zipfile.ZipFile(handle, "w", zipfile.ZIP_DEFLATED) as archive:
        by_key = {row["key"]: (bucket, row) for bucket, row in rows}
        for index, (bucket, row) in enumerate(by_key.values()):
            try:
                data = bucket.read(row["key"])
            except FileNotFoundError:
                problems += 1
                manifest.append({"key": row["key"], "status": "missing"})
                continue
            status = "ok" if hashlib.sha256(data).hexdigest() == row["sha256"] else "changed"
            problems += status != "ok"
            payload = read_payload(data, row["compression"])
            stem = f"{row['channel']}/{row['date']}-{row['message_id']}"
            archive.writestr(f"{stem}.json", json.dumps(payload, indent=2, ensure_ascii=False))
            files = [f"{stem}.json"]
            if row["channel"] == "email":
                archive.writestr(f"{stem}.eml", eml(payload, row["profile"], row["key"], row["sha256"]))
                files.append(f"{stem}.eml")
            manifest.append({"key": row["key"], "sha256": row["sha256"], "status": status, "files": files})
            _Progress("export", args.quiet or args.json)(index + 1, len(by_key))
        archive.writestr("manifest.json", json.dumps({"exported_at": _now_iso(), "messages": manifest}, indent=2))
    summary = {"output": args.output, "messages": len(manifest), "problems": problems}
    _print_json(summary) if args.json else print(f"wrote {len(manifest):,} message(s) to {args.output}"
                                                 + (f"; {problems} missing or changed" if problems else ""))
    return EXIT_FINDINGS if problems else EXIT_OK


def _erase(args, targets) -> int:
    person = _person(args, required=True)
    plan = _rows(args, targets, person)
    outcome: dict[str, Any] = {"dry_run": not args.yes, "objects": len(plan), "removed": 0, "already_gone": 0,
                               "locked": [], "index_rows_removed": 0, "manifests_tombstoned": 0,
                               "erasure_records": []}
    if args.yes:
        for tenant, bucket in targets:
            mine = [row for b, row in plan if b is bucket]
            if not mine:
                continue
            removed_keys = set()
            for row in mine:
                versions, lock = bucket.erase(row["key"])
                if lock:
                    outcome["locked"].append({"key": row["key"], "lock": lock})
                    continue
                outcome["removed" if versions else "already_gone"] += 1
                removed_keys.add(row["key"])
            outcome["index_rows_removed"] += _drop_index_rows(bucket, person, removed_keys)
            record = f"{ERASURES}/{new_run_id()}.json"
            rewritten, kept = manifests.tombstone(bucket, removed_keys, record)
            outcome["manifests_tombstoned"] += rewritten
            outcome["locked"].extend({"key": key, "lock": f"manifest: {lock}"} for key, lock in kept)
            _record_erasure(bucket, record, tenant, removed_keys, outcome["locked"], rewritten)
            outcome["erasure_records"].append(record)
    if args.json:
        _print_json({**outcome, "keys": sorted(row["key"] for _, row in plan)})
    else:
        verb = "would remove" if not args.yes else "removed"
        count = len(plan) if not args.yes else outcome["removed"] + outcome["already_gone"]
        print(f"{verb} {count:,} object(s) and their index rows")
        for _, row in plan:
            print(f"  {row['key']}")
        for locked in outcome["locked"]:
            print(f"  left (locked: {locked['lock']}): {locked['key']}")
        if not args.yes:
            print("dry run: nothing was removed; run again with --yes to erase", file=sys.stderr)
    return EXIT_FINDINGS if outcome["locked"] or not plan else EXIT_OK


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


def _drop_index_rows(bucket: Bucket, person: Person, keys: set[str]) -> int:
    """Rewrite each index file holding these objects' rows without them: the new
    file is written first, the old one removed after, so a crash leaves a
    duplicate (which readers fold) and never a lost row."""
    if not keys:
        return 0
    import pyarrow as pa
    import pyarrow.compute as pc
    index, removed = AuditIndex(bucket), 0
    for file_key, _ in index.rows_by_file(person).items():
        dataset = index.dataset([file_key])
        table = dataset.to_table(columns=[n for n in SCHEMA.names if n not in ("tenant", "channel", "date")])
        keep = pc.invert(pc.is_in(table.column("key"), value_set=pa.array(sorted(keys))))
        kept = table.filter(keep)
        removed += table.num_rows - kept.num_rows
        if kept.num_rows == table.num_rows:
            continue
        if kept.num_rows:
            folder, _, name = file_key.rpartition("/")
            bucket.create(f"{folder}/erased-{new_run_id()}-{name}", parquet_bytes(kept))
        bucket.remove(file_key)
    return removed


def _record_erasure(bucket: Bucket, key: str, tenant: str, removed: set[str], locked: list,
                    manifests_rewritten: int) -> None:
    """An erasure record: when, how many, and a digest of the keys removed (the keys
    hold recipient digests, so they are not listed; each tombstone in a manifest
    names this record)."""
    record = {"erased_at": _now_iso(), "tenant": tenant, "objects_removed": len(removed),
              "objects_left_locked": len(locked), "manifests_tombstoned": manifests_rewritten,
              "removed_keys_sha256": hashlib.sha256("\n".join(sorted(removed)).encode()).hexdigest()}
    bucket.create(key, json.dumps(record, indent=2).encode())


_RECONCILED = ("without_archive", "missing", "changed", "not_indexed", "unreadable")


def _reconcile(args, targets) -> int:
    """Each delivery's archived object: there, intact (its sha256 as delivered, or as
    indexed), and in the index. Findings are listed by message id and key (never a
    recipient: delivery records hold the message, which is not printed)."""
    if args.deliveries.startswith("kafka://"):
        deliveries = reconcile.from_kafka(args.deliveries[len("kafka://"):], args.kafka_bootstrap_servers)
    else:
        deliveries = reconcile.from_files(args.deliveries)
    report: dict[str, Any] = {"delivered": 0, "ok": 0, **{name: [] for name in _RECONCILED}}
    expected: dict[str, tuple[str | None, str]] = {}  # key -> (sha256 as delivered, where)
    for delivery in deliveries:
        report["delivered"] += 1
        key = reconcile.archive_key(delivery.archive_url)
        if key is None:
            report["without_archive"].append(f"{delivery.message_id or '?'} ({delivery.where})")
        else:
            expected.setdefault(key, (delivery.archive_sha256, delivery.message_id or "?"))
    indexed: dict[str, str] = {}
    for _, bucket in targets:
        table = AuditIndex(bucket).find()
        indexed.update(zip(table.column("key").to_pylist(), table.column("sha256").to_pylist()))
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
    return _findings(args, report, _RECONCILED, (
        f"{report['delivered']:,} delivered: {report['ok']:,} archived and intact, "
        + ", ".join(f"{len(report[name]):,} {name.replace('_', ' ')}" for name in _RECONCILED)))


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
        bucket, tenant, workers=args.workers, progress=progress), lambda r: (
        f"{r['tenant']}: indexed {r['indexed']:,} of {r['objects']:,} objects in {r['seconds']:.1f} s "
        f"({r['objects'] / max(r['seconds'], 1e-9):,.0f}/s, {r['files']} file(s)); unreadable {r['unreadable']}, "
        f"not archive JSON {r['not_archive']}, other keys {r['other_keys']}"))
    return EXIT_FINDINGS if any(r["unreadable"] or r["not_archive"] for r in reports) else EXIT_OK


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


def _when(millis: int | None) -> str:
    if millis is None:
        return "?"
    return _dt.datetime.fromtimestamp(millis / 1000, _dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def _cell(text: str) -> str:
    """One table cell: printable characters only (an id from a hostile input cannot move the cursor)."""
    return "".join(c if c.isprintable() else "?" for c in str(text))


def _print_table(header: tuple[str, ...], lines: list[list[str]]) -> None:
    widths = [max([len(name)] + [len(line[i]) for line in lines]) for i, name in enumerate(header)]
    for line in [list(header)] + lines:
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip())


def _now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
