"""No recipient and no credential leaves a run, except where it belongs: everything scanned.

    known recipients (every spelling) and credentials ─┬─ batch: both profiles, every channel, hostile
                                                       │  records (INVALID), SKIPPED, FAILED (unknown tenant,
                                                       │  a blocked store)
                                                       ├─ batch against moto with IAM auth and WRONG keys
                                                       │  (FAILED: auth; a refused sink spills)
                                                       ├─ credentials inside URLs (usage errors)
                                                       └─ streaming: Kafka in, a tenant with wrong keys
    ─> everything each run prints (stdout, stderr, logs) and writes (outcomes, summary, Beam's metric
       names, spill files, dead letters, delivery and failure records, Kafka keys and headers, object keys)
    ─> scan for each recipient (emails in any case, with the domain in Unicode and punycode; phone
       numbers as given, E.164 and digits only; push tokens) and each credential: the location of a hit

Where recipients belong, and are not scanned: the archived objects' contents, a dead letter's `input`
(`input_base64`), a folder delivery or failure record's `message` (`message_base64`), and a Kafka
delivery's value (the message as sent to us). Nothing else is excluded. A recipient value given as an
identifier (a tenant, a message or campaign id) is the sender's identifier, shown as such: the corpus
puts recipients everywhere else.
"""

import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import uuid

import phonenumbers
import pytest

from pipeline import run
from tests import hostile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SENT_MS = 1722443282680

# --- the known recipients and every spelling of them -------------------------------------------

EMAILS = ("Jane.Doe@Example.com", "O'Brien+tag@Mail.Example.org", "Anna Berg <anna.berg@Bücher.example>",
          "kim.lee@xn--mnchen-3ya.example")
PHONES = (("+44 7911 123456", None), ("+1 (650) 253-0000", None), ("07700 900123", "GB"),
          ("4915123456789", None))
TOKENS = ("fcm:APA91bHun4MxP5egoKMwt2KZFBaFUH-1RYqx7kzVq2f8Lm3nPz0Q",
          "a3f1c9e07b2d4f6a8c0e1b3d5f7a9c2e4b6d8f0a1c3e5b7d9f2a4c6e8b0d1f3a",  # an APNs device token
          "Web_Push_Token-9f8e7d6c5b")


def email_forms(given: str) -> set[str]:
    """The address as given, with its domain in Unicode and in punycode (case: the scan folds it)."""
    address = given.rsplit("<", 1)[-1].rstrip(">").strip()
    local, _, domain = address.rpartition("@")
    unicode_domain = ".".join(p.encode("ascii").decode("idna") if p.startswith("xn--") else p
                              for p in domain.split("."))
    return {address, f"{local}@{unicode_domain}", f"{local}@{unicode_domain.encode('idna').decode('ascii')}"}


def phone_forms(given: str, region: str | None) -> set[str]:
    number = phonenumbers.parse(given if given.startswith("+") or region else "+" + given, region)
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return {given, e164, e164[1:], re.sub(r"\D", "", given), str(number.national_number)}


def recipient_needles() -> dict[str, str]:
    """spelling -> label (the label, not the value, is what a failure shows)."""
    needles = {}
    for i, email in enumerate(EMAILS):
        needles.update({form: f"email #{i}" for form in email_forms(email)})
    for i, (phone, region) in enumerate(PHONES):
        needles.update({form: f"phone #{i}" for form in phone_forms(phone, region)})
    needles.update({token: f"push token #{i}" for i, token in enumerate(TOKENS)})
    # tests.hostile's recipients: its records are in the corpus too
    needles.update({value: f"hostile recipient #{i}" for i, value in enumerate(hostile.RECIPIENTS)})
    return needles


def spelled(needles: dict[str, str]) -> dict[str, str]:
    """Each needle also as JSON escapes it (ASCII) and as a URL percent-encodes it, case-folded."""
    found = {}
    for value, label in needles.items():
        for form in (value, json.dumps(value)[1:-1], urllib.parse.quote(value, safe=""),
                     urllib.parse.quote(value, safe="@+:")):
            found.setdefault(form.casefold(), label)
    return found


def scan(items, needles: dict[str, str]) -> list[str]:
    """`items`: (location, text). Every hit as "location: label", the value masked."""
    folded = spelled(needles)
    hits = []
    for location, text in items:
        haystack = text.casefold()
        for needle, label in folded.items():
            at = haystack.find(needle)
            if at >= 0:
                context = text[max(0, at - 40):at] + "<" + label + ">" + text[at + len(needle):at + len(needle) + 40]
                hits.append(f"{location}: {label} in ...{context!r}...")
    return hits


def labels(hits: list[str]) -> set[str]:
    return {label for hit in hits for label in re.findall(r"<([^<>]+)>", hit)}


SCAN_CASES = [
    pytest.param("to jane.doe@example.com", "email #0", id="email-lower"),
    pytest.param("TO JANE.DOE@EXAMPLE.COM", "email #0", id="email-upper"),
    pytest.param('"anna.berg@b\\u00fccher.example"', "email #2", id="email-json-escaped-unicode-domain"),
    pytest.param("anna.berg@xn--bcher-kva.example", "email #2", id="email-punycode-domain"),
    pytest.param("kim.lee@münchen.example", "email #3", id="email-unicode-domain-of-punycode"),
    pytest.param("o%27brien%2Btag%40mail.example.org", "email #1", id="email-percent-encoded"),
    pytest.param("call +447911123456", "phone #0", id="phone-e164"),
    pytest.param("n=447911123456", "phone #0", id="phone-digits-only"),
    pytest.param("+1 (650) 253-0000", "phone #1", id="phone-as-given"),
    pytest.param("7700900123", "phone #2", id="phone-national-digits"),
    pytest.param("x" + TOKENS[1].upper(), "push token #1", id="token-upper"),
    pytest.param("SECRET-KEY-1", "secret", id="credential"),
]


@pytest.mark.parametrize("text, label", SCAN_CASES)
def test_the_scan_finds_every_spelling(text, label):
    needles = {**recipient_needles(), "secret-key-1": "secret"}
    assert [hit for hit in scan([("here", text)], needles) if f"<{label}>" in hit], text
    assert scan([("here", "nothing to see: 6f1ed002ab5595859014ebf0951522d9 1722443282680")], needles) == []


# --- the corpus: recipients in every place a record can hold them ---------------------------------

def _ct(channel: str, to, n: int, **extra) -> dict:
    record = {"channel": channel, "to": to, "sent_at": SENT_MS + n, "campaign_id": 1722529032,
              "campaign_name": "Leak Check", "user_id": 45142169, "message_id": f"leak-ct-{n}"}
    if channel == "email":
        record.update(subject="Hello", from_address="no-reply@clevertap.com", html_body="<p>Hi</p>")
    elif channel in ("push", "ios_push"):
        record.update(payload={"aps": {"alert": "hi"}}, platform="iOS")
    else:
        record.update(body="Hi there", provider="twilio")
    return {**record, **extra}


def _bz(channel: str, to, n: int, **extra) -> dict:
    record = {"channel": channel, "to": to, "sent_at": 1722443282 + n, "dispatch_id": f"leak-bz-{n}",
              "user_id": "5f9d3e2a1b0c4d5e6f7a8b9c", "campaign_id": "ee965cb2-8934-4b0a-acf1-91c899c2f915",
              "campaign_name": "Leak Check", "tenant": "bz"}
    if channel == "email":
        record.update(subject="Hello", from_address="no-reply@braze.com", html_body="<p>Hi</p>")
    elif channel == "push":
        record.update(payload={"aps": {"alert": "hi"}}, platform="ios_push", app_id="app-1")
    else:
        record.update(body="Hi there", subscription_group="sg-1")
        if channel == "mms":
            record["media_urls"] = ["https://cdn.example.com/c.png"]
    return {**record, **extra}


def _line(record: dict) -> bytes:
    return json.dumps(record, ensure_ascii=False).encode("utf-8")


def _splice(record: dict, field: str, literal: bytes) -> bytes:
    mark = "\u0001MARK\u0001"
    return _line({**record, field: mark}).replace(json.dumps(mark).encode(), literal)


def known_records() -> list[bytes]:
    """Valid records of every channel of both profiles, for every tenant's fate, and hostile
    ones with the recipients in every other place."""
    email, phone, token = EMAILS[0], PHONES[0][0], TOKENS[0]
    lines, n = [], iter(range(10_000))
    for given in EMAILS:
        lines += [_line(_ct("email", given, next(n))), _line(_bz("email", given, next(n)))]
    for given, _ in PHONES:
        lines += [_line(_ct(c, given, next(n))) for c in ("sms", "whatsapp")]
        lines += [_line(_bz(c, given, next(n))) for c in ("sms", "mms")]
    for given in TOKENS:
        lines += [_line(_ct("push", given, next(n))), _line(_bz("push", given, next(n)))]
    for tenant in ("acme", "globex", "initech"):  # SKIPPED (acme's push), FAILED (a blocked store, unknown)
        lines += [_line(_ct(c, to, next(n), tenant=tenant))
                  for c, to in (("email", EMAILS[2]), ("sms", PHONES[1][0]), ("push", TOKENS[1]))]
    base = _ct("email", email, next(n))
    sms = _ct("sms", phone, next(n))
    bad_to = [f"{email}.", f"<{email}", f"{email}, {EMAILS[3]}", f"{email}\u0000", f"{email} ",
              f"mailto:{email}", f"{phone} ext. 12", "+447911123456999999", f"{phone}\u00a0",
              f"{phone}; {PHONES[1][0]}", f"{token} extra", ""]
    lines += [_line({**base, "to": to, "message_id": f"bad-to-{i}"}) for i, to in enumerate(bad_to)]
    lines += [_line({**sms, "to": to, "message_id": f"bad-phone-{i}"}) for i, to in enumerate(bad_to)]
    lines += [
        _line({**base, "to": [email]}), _line({**base, "to": {"email": email}}), _line({**sms, "to": 447911123456}),
        _line({**base, email: 1}), _line({**base, "headers": {phone: "x"}}), _line({**base, "cc": email}),
        _line({**base, "channel": email}), _line({**base, "sent_at": phone}), _line({**base, "platform": token}),
        _line({**base, "from_address": email, "to": "nobody"}),
        b'{"to": "' + email.encode() + b'", "to": "' + EMAILS[3].encode() + b'", "channel": "email"}',
        _splice(base, "to", json.dumps(email + "\ud800").encode()),
        _splice(base, "to", b'"' + email.encode() + b'\xff"'),
        _splice(sms, "body", b"NaN"),
        _splice(base, "payload", b'{"' + email.encode() + b'": ' + b"[" * 100 + b"]" * 100 + b"}"),
        _line(base)[:-10], _line(sms)[:60],
        b"\xef\xbb\xbf" + _line(base), _line(sms) + b"\r",
        _line({**base, "html_body": "x" * 70_000}),  # over --max_message_bytes
        _line({**_bz("sms", phone, next(n)), "to": phone.replace(" ", "")[1:]}),  # country code first, no "+"
    ]
    # and tests.hostile's records, except those giving a recipient as an identifier
    ids = "|".join(re.escape(f) for f in (*hostile.ID_FIELDS, "tenant", "external_id", "app_id"))
    given_as_id = re.compile(rf'"({ids})"\s*:\s*"?(' + "|".join(re.escape(r) for r in hostile.RECIPIENTS) + ")")
    for raw, _ in hostile.hostile_records(11, 600, 64 * 1024):
        if not given_as_id.search(raw.decode("utf-8", "replace")):
            lines.append(raw)
    return lines


# --- running jobs and collecting everything they leave ------------------------------------------

# Runs the job exactly as `python -m pipeline.run` does, and writes the names of every
# metric of the finished pipeline (all namespaces and kinds) to argv[1].
JOB_WITH_METRIC_NAMES = """
import json, sys
import pipeline.run as run
results = []
counters = run.archive_counters
def spy(result, *args, **kwargs):
    results.append(result)
    return counters(result, *args, **kwargs)
run.archive_counters = spy
code = run.main(sys.argv[2:])
names = set()
for result in results[:1]:
    for kind, metrics in result.metrics().query().items():
        for metric in metrics:
            names.add(f"{kind} {metric.key.step} {metric.key.metric.namespace}:{metric.key.metric.name}")
with open(sys.argv[1], "w", encoding="utf-8") as handle:
    json.dump(sorted(names), handle, ensure_ascii=False)
sys.exit(code)
"""


class BatchJob:
    """One batch run in its own folder: inputs, working directory and TMPDIR, outputs."""

    def __init__(self, work, name, records, tenants=None, *argv):
        self.folder = os.path.join(work, name)
        self.cwd, self.tmp = os.path.join(self.folder, "cwd"), os.path.join(self.folder, "tmp")
        for folder in (self.cwd, self.tmp):
            os.makedirs(folder)
        self.input = os.path.join(self.folder, "input.jsonl")
        with open(self.input, "wb") as handle:
            handle.write(b"\n".join(records) + b"\n")
        self.inputs = {self.input}
        self.metrics = os.path.join(self.folder, "metric-names.json")
        args = ["--input", self.input, "--spill_dir", os.path.join(self.folder, "spill"),
                "--retry_base_delay", "0.001", "--retry_max_delay", "0.005", "--hold_seconds", "0"]
        if tenants is not None:
            self.tenants = os.path.join(self.folder, "tenants.json")
            with open(self.tenants, "w") as handle:
                json.dump({"tenants": tenants}, handle)
            self.inputs.add(self.tenants)
            args += ["--tenants", self.tenants]
        self.process = subprocess.Popen(
            [sys.executable, "-c", JOB_WITH_METRIC_NAMES, self.metrics, *args, *argv], cwd=self.cwd,
            env={**os.environ, "PYTHONPATH": ROOT, "TMPDIR": self.tmp},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def finish(self, timeout=300):
        out, err = self.process.communicate(timeout=timeout)
        self.stdout, self.stderr = out.decode("utf-8", "replace"), err.decode("utf-8", "replace")
        return self.process.returncode


_DEAD_LETTER_FILE = re.compile(r"dead-letters-.*\.jsonl$")
_DELIVERY_FILE = re.compile(r"(deliveries|failures)-.*\.jsonl$")


def _without(line: str, fields: tuple[str, ...]) -> str:
    """A JSON line without the fields where recipients belong; a line that is not
    a JSON object is scanned whole."""
    try:
        record = json.loads(line)
    except ValueError:
        return line
    if not isinstance(record, dict):
        return line
    return json.dumps({k: v for k, v in record.items() if k not in fields}, ensure_ascii=False)


def written_texts(folder: str, skip: set[str], object_roots: tuple[str, ...] = ()):
    """(location, text) of every file under `folder` but the inputs: its path, and its content
    minus only the fields where recipients belong (an archived object's content is not read)."""
    for parent, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(parent, name)
            if path in skip:
                continue
            relative = os.path.relpath(path, folder)
            yield f"path {relative}", relative
            if any(path.startswith(root + os.sep) for root in object_roots):
                continue
            with open(path, "rb") as handle:
                text = handle.read().decode("utf-8", "replace")
            if _DEAD_LETTER_FILE.search(name):
                text = "\n".join(_without(line, ("input", "input_base64")) for line in text.splitlines())
            elif _DELIVERY_FILE.search(name):
                text = "\n".join(_without(line, ("message", "message_base64")) for line in text.splitlines())
            yield relative, text


def job_texts(job: BatchJob, object_roots=()):
    yield "stdout", job.stdout
    yield "stderr", job.stderr
    yield from written_texts(job.folder, job.inputs, object_roots)


def test_the_job_prints_its_warnings_and_progress(tmp_path):
    """What is scanned must be printed: a FAILED write's warning and the sinks' progress reach
    stderr at the level main() sets, although importing Beam installs a root handler first."""
    (tmp_path / "blocked").write_text("a file where the archive folder would be")
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps(_ct("sms", PHONES[0][0], 1)) + "\n")
    completed = subprocess.run(
        [sys.executable, "-m", "pipeline.run", "--input", str(source), "--destination", str(tmp_path / "blocked" / "a"),
         "--outcomes", str(tmp_path / "outcomes"), "--dead_letters", str(tmp_path / "dead"),
         "--retry_base_delay", "0.001", "--summary", "false"],
        cwd=tmp_path, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": ROOT}, timeout=120)
    assert completed.returncode == run.EXIT_FAILED_MESSAGES, completed.stderr
    assert "failed to archive message leak-ct-1" in completed.stderr
    assert "wrote 1 outcomes file(s)" in completed.stderr


# --- the runs -----------------------------------------------------------------------------------

def _tenants(folder):
    blocked = os.path.join(folder, "blocked")
    os.makedirs(folder, exist_ok=True)
    with open(blocked, "w") as handle:
        handle.write("a file where a folder would be")
    archive = os.path.join(folder, "archive")
    return {
        "ct": {"profile": "clevertap", "destinations": [{"url": os.path.join(archive, "ct")}]},
        "bz": {"profile": "braze", "destinations": [{"url": os.path.join(archive, "bz")}]},
        "acme": {"profile": "clevertap", "compression": "zstd", "channels": ["email", "sms"],
                 "destinations": [{"url": os.path.join(archive, "acme")}]},
        "globex": {"profile": "clevertap", "destinations": [{"url": os.path.join(blocked, "archive")}]},
    }, archive


def _s3_options(server, key, secret, token=None):
    options = {"key": key, "secret": secret,
               "client_kwargs": {"endpoint_url": server.endpoint_url, "region_name": server.region}}
    if token:
        options["token"] = token
    return options


def test_batch_runs_leak_no_recipient_and_no_credential(tmp_path, s3_auth_server):
    work = str(tmp_path)
    records = known_records()
    tenants, archive = _tenants(os.path.join(work, "hostile"))
    bucket = s3_auth_server.create_bucket(f"leaks-{uuid.uuid4().hex[:8]}")
    wrong_secret = "wrong-secret-" + uuid.uuid4().hex
    unknown_key, unknown_secret, token = "AKIA" + uuid.uuid4().hex[:16].upper(), uuid.uuid4().hex, \
        "session-token-" + uuid.uuid4().hex
    credentials = {s3_auth_server.access_key: "access key id", s3_auth_server.secret_key: "secret key",
                   wrong_secret: "wrong secret", unknown_key: "unknown access key id",
                   unknown_secret: "unknown key's secret", token: "session token"}
    sends = records[:40]  # every channel of both profiles (the braze-shaped ones are INVALID here)
    hostile_job = BatchJob(work, "hostile", records, tenants, "--tenant", "ct", "--default_region", "GB",
                           "--max_message_bytes", "65536", "--outcomes", os.path.join(work, "hostile", "outcomes"),
                           "--dead_letters", os.path.join(work, "hostile", "dead-letters"))
    # wrong secret for a real key; the outcomes folder is in the same refused bucket: it spills
    wrong_secret_job = BatchJob(
        work, "wrong-secret", sends + records[-40:], None, "--destination", f"s3://{bucket}",
        "--storage_options", json.dumps(_s3_options(s3_auth_server, s3_auth_server.access_key, wrong_secret)),
        "--outcomes", f"s3://{bucket}/outcomes", "--dead_letters", os.path.join(work, "wrong-secret", "dead"),
        "--max_in_flight", "2", "--breaker_cooldown", "0.05")
    # a key moto never issued, with a session token; the dead letters spill this time, and the
    # options travel to two worker processes
    unknown_key_job = BatchJob(
        work, "unknown-key", sends + records[-40:], None, "--destination", f"s3://{bucket}",
        "--storage_options", json.dumps(_s3_options(s3_auth_server, unknown_key, unknown_secret, token)),
        "--outcomes", os.path.join(work, "unknown-key", "outcomes"), "--dead_letters", f"s3://{bucket}/dead",
        "--direct_num_workers", "2", "--direct_running_mode", "multi_processing")
    codes = {job.folder: job.finish() for job in (hostile_job, wrong_secret_job, unknown_key_job)}
    assert codes[hostile_job.folder] == run.EXIT_FAILED_MESSAGES, hostile_job.stderr[-3000:]
    for job in (wrong_secret_job, unknown_key_job):
        assert codes[job.folder] == run.EXIT_SINK_SPILLED, job.stderr[-3000:]
        assert "Traceback" not in job.stderr

    # the runs did what they are here for: every outcome, auth errors, spilled sinks, metric names
    outcomes = [json.loads(line) for name in os.listdir(os.path.join(work, "hostile", "outcomes"))
                for line in open(os.path.join(work, "hostile", "outcomes", name), encoding="utf-8")]
    assert {o["status"] for o in outcomes} == {"ARCHIVED", "FAILED", "INVALID", "SKIPPED"}
    assert {o["profile"] for o in outcomes if o["status"] == "ARCHIVED"} == {"clevertap", "braze"}
    assert {o["channel"] for o in outcomes if o["status"] == "ARCHIVED"} >= {"email", "sms", "whatsapp", "push", "mms"}
    assert len(outcomes) == sum(1 for r in records if r)
    for job, sink in ((wrong_secret_job, "outcomes"), (unknown_key_job, "dead-letters")):
        spilled = os.path.join(job.folder, "spill")
        assert any(sink in os.path.relpath(os.path.join(p, n), spilled)
                   for p, _, names in os.walk(spilled) for n in names), job.stderr[-2000:]
        assert "auth" in job.stderr
    for job in (hostile_job, wrong_secret_job, unknown_key_job):
        names = json.load(open(job.metrics, encoding="utf-8"))
        assert any("archive:" in n for n in names) and any("FAILED" in n for n in names), names

    # the exclusions are what keeps the scan clean: the dead letters' inputs do hold recipients
    letters = [(name, open(os.path.join(parent, name), encoding="utf-8").read())
               for parent, _, names in os.walk(hostile_job.folder) for name in names if _DEAD_LETTER_FILE.search(name)]
    assert {"email #0", "email #3", "phone #0", "phone #1", "push token #0"} <= labels(
        scan(letters, recipient_needles()))

    texts = [*job_texts(hostile_job, (archive,)), *job_texts(wrong_secret_job), *job_texts(unknown_key_job)]
    hits = scan(texts, recipient_needles()) + scan(texts, credentials)
    assert hits == [], "\n".join(hits[:30])


# --- credentials inside a URL or a broken tenant file: refused, and not repeated -----------------

URL_KEY, URL_SECRET = "AKIAURLKEY7EXAMPLE99", "url/Secret+Value=42"
_K, _S = URL_KEY, urllib.parse.quote(URL_SECRET, safe="")
_OFF_LOOPBACK = "198.51.100.7"  # TEST-NET-2: never reached, the guard below fails the test first


def _tenant_yaml(storage_options: str) -> str:
    return f"tenants:\n  t:\n    destinations:\n      - url: s3://bucket\n        storage_options: {storage_options}\n"


# (arguments, the --tenants file's text or None)
REFUSED_CREDENTIALS = [
    pytest.param(["--input", f"s3://{_K}:{_S}@bucket/in.jsonl"], None, id="input-url"),
    pytest.param(["--destination", f"s3://{_K}:{_S}@bucket"], None, id="destination-url"),
    pytest.param(["--destination", f"s3://{_K}:{URL_SECRET}@bucket"], None, id="destination-url-unquoted"),
    pytest.param(["--outcomes", f"s3://{_K}:{_S}@bucket/outcomes"], None, id="outcomes-url"),
    pytest.param(["--dead_letters", f"abfs://{_K}:{_S}@container/dead"], None, id="dead-letters-url"),
    pytest.param(["--tenants", f"s3://{_K}:{_S}@bucket/tenants.yaml"], None, id="tenants-url"),
    pytest.param(["--destination", f"s3://bucket/x?X-Amz-Credential={_K}&X-Amz-Signature={_S}"], None,
                 id="presigned-url"),
    pytest.param(["--destination", f"abfs://c@acct.dfs.core.windows.net/p?sv=2024&sig={_S}"], None, id="sas-token"),
    pytest.param(["--destination", f"gs://bucket/p?access_token={_S}"], None, id="access-token"),
    pytest.param(["--destination", "s3://bucket", "--storage_options", json.dumps(
        {"key": URL_KEY, "secret": URL_SECRET, "client_kwargs": {"endpoint_url": f"http://{_OFF_LOOPBACK}:9000"}})],
        None, id="plain-http-endpoint-with-keys"),
    pytest.param(["--destination", "s3://bucket", "--storage_options",
                  json.dumps({"client_kwargs": {"endpoint_url": f"http://{_K}:{_S}@{_OFF_LOOPBACK}:9000"}})],
                 None, id="keys-in-the-endpoint-url"),
    pytest.param(["--storage_options", '{"key": "%s", "secret": "%s"' % (URL_KEY, URL_SECRET)], None,
                 id="storage-options-not-json"),
    pytest.param([], _tenant_yaml("{}").replace("s3://bucket", f"s3://{_K}:{_S}@bucket"), id="tenant-file-url"),
    pytest.param([], _tenant_yaml(json.dumps({"client_kwargs": {
        "endpoint_url": f"http://{_K}:{_S}@{_OFF_LOOPBACK}:9000"}})), id="tenant-file-endpoint"),
    pytest.param([], _tenant_yaml(f"{{key: {URL_KEY}, secret: {URL_SECRET}"), id="tenant-yaml-unclosed-mapping"),
    pytest.param([], _tenant_yaml(f'\n          key: {URL_KEY}\n          secret: "{URL_SECRET}'),
                 id="tenant-yaml-unclosed-quote"),
    pytest.param([], _tenant_yaml(f"\n          key: {URL_KEY}\n          secret: {URL_SECRET}\n\tbad: 1"),
                 id="tenant-yaml-tab"),
    pytest.param([], '{"tenants": {"t": {"destinations": [{"url": "s3://b", "storage_options": '
                     '{"key": "%s", "secret": "%s"}]}}}' % (URL_KEY, URL_SECRET), id="tenant-json-broken"),
    pytest.param(["--kafka_topic", "t", "--destination", f"s3://{_K}:{_S}@bucket"], None,
                 id="streaming-destination-url"),
    pytest.param(["--kafka_topic", "t", "--outcomes", f"s3://{_K}:{_S}@bucket/o"], None, id="streaming-outcomes-url"),
    pytest.param(["--kafka_topic", "t"], _tenant_yaml(f"{{key: {URL_KEY}, secret: {URL_SECRET}"),
                 id="streaming-tenant-yaml-broken"),
]


@pytest.fixture
def no_connection_off_loopback(monkeypatch):
    """Fails the test if anything tries to connect anywhere but loopback."""
    real_connect = socket.socket.connect

    def connect(sock, address):
        host = address[0] if isinstance(address, tuple) else address
        if isinstance(host, str) and host not in ("127.0.0.1", "::1", "localhost") and sock.family != socket.AF_UNIX:
            raise AssertionError(f"a connection to {host} was attempted")
        return real_connect(sock, address)

    def create_connection(address, *args, **kwargs):
        raise AssertionError(f"a connection to {address[0]} was attempted")
    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket, "create_connection", create_connection)


@pytest.mark.parametrize("argv, tenant_file", REFUSED_CREDENTIALS)
def test_credentials_in_a_url_or_a_broken_tenant_file_are_refused_without_being_repeated(
        tmp_path, capfd, caplog, argv, tenant_file, no_connection_off_loopback):
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps(_ct("sms", PHONES[0][0], 1)) + "\n")
    if tenant_file is not None:
        name = tmp_path / ("tenants.json" if tenant_file.startswith("{") else "tenants.yaml")
        name.write_text(tenant_file)
        argv = [*argv, "--tenants", str(name), "--dead_letters", str(tmp_path / "dead")]
    if "--input" not in argv and "--kafka_topic" not in argv:
        argv = ["--input", str(source), *argv]
    if "--outcomes" not in argv:
        argv = [*argv, "--outcomes", str(tmp_path / "o")]
    code = run.main(argv)
    out, err = capfd.readouterr()
    assert code == run.EXIT_USAGE, err
    lines = [line for line in err.splitlines() if line.strip() and "apitools" not in line]
    assert len(lines) == 1 and lines[0].startswith("error:"), err
    texts = [("stdout", out), ("stderr", err), ("logs", caplog.text)]
    hits = scan(texts, {URL_KEY: "access key id", URL_SECRET: "secret"})
    assert hits == [], hits


# --- streaming: Kafka in, outcomes and deliveries on Kafka, failures in a folder -----------------

@pytest.fixture(scope="module")
def broker():
    from devservers import kafka

    with kafka.start() as server:
        yield server


def _kafka_texts(broker, topics: dict[str, str], wanted: int, timeout: float):
    """(location, text) of each record of the output topics: key, headers and, but for a
    failure's or delivery's value (the message as sent to us), the value."""
    from confluent_kafka import Consumer

    consumer = Consumer({"bootstrap.servers": broker.bootstrap_servers, "group.id": f"scan-{uuid.uuid4().hex}",
                         "auto.offset.reset": "earliest"})
    consumer.subscribe(list(topics.values()))
    names = {topic: name for name, topic in topics.items()}
    seen = {name: [] for name in topics}
    deadline, settled = time.monotonic() + timeout, None
    try:
        while time.monotonic() < (settled or deadline):
            for message in consumer.consume(100, 0.5):
                if message.error() is None:
                    seen[names[message.topic()]].append(message)
            if settled is None and len(seen["outcomes"]) >= wanted:
                settled = time.monotonic() + 3  # the same bundles' other records
    finally:
        consumer.close()
    texts = []
    for name, messages in seen.items():
        for i, message in enumerate(messages):
            where = f"kafka {name} #{i}"
            texts.append((f"{where} key", (message.key() or b"").decode("utf-8", "replace")))
            for header, value in message.headers() or []:
                texts.append((f"{where} header {header}", header + "=" + (value or b"").decode("utf-8", "replace")))
            if name == "outcomes":
                texts.append((f"{where} value", message.value().decode("utf-8", "replace")))
    return seen, texts


def test_a_streaming_run_leaks_no_recipient_and_no_credential(tmp_path, broker, s3_auth_server):
    from confluent_kafka import Producer

    topic = f"leaks-{uuid.uuid4().hex[:8]}"
    broker.create_topic(topic, partitions=2)
    topics = {name: broker.create_topic(f"{topic}-{name}", partitions=1) for name in ("outcomes", "failures")}
    bucket = s3_auth_server.create_bucket(f"stream-leaks-{uuid.uuid4().hex[:8]}")
    wrong_secret = "wrong-stream-secret-" + uuid.uuid4().hex
    folder = tmp_path / "job"
    (folder / "cwd").mkdir(parents=True)
    (folder / "tmp").mkdir()
    tenants = {
        "ct": {"profile": "clevertap", "destinations": [{"url": str(folder / "archive")}]},
        "locked": {"profile": "clevertap", "destinations": [{"url": f"s3://{bucket}", "storage_options":
                                                             _s3_options(s3_auth_server, s3_auth_server.access_key,
                                                                         wrong_secret)}]},
    }
    tenants_file = tmp_path / "tenants.json"
    tenants_file.write_text(json.dumps({"tenants": tenants}))
    rng = random.Random(5)
    corpus = [r for r in known_records() if r]
    values = corpus[:16] + [_line(_ct("sms", PHONES[0][0], 900 + i, tenant="locked", message_id=f"locked-{i}"))
                            for i in range(4)] + rng.sample(corpus[16:], 24)
    producer = Producer({"bootstrap.servers": broker.bootstrap_servers})
    for value in values:
        producer.produce(topic, value)
    assert producer.flush(30) == 0
    argv = [sys.executable, "-m", "pipeline.run", "--kafka_topic", topic,
            "--kafka_bootstrap_servers", broker.bootstrap_servers, "--kafka_group", f"{topic}-group",
            "--tenants", str(tenants_file), "--tenant", "ct", "--default_region", "GB",
            "--max_message_bytes", "65536", "--run_id", "leaks",
            "--outcomes", f"kafka://{topics['outcomes']}", "--failures", f"kafka://{topics['failures']}",
            "--deliveries", str(folder / "deliveries"),
            "--retry_base_delay", "0.001", "--retry_max_delay", "0.005", "--hold_seconds", "0"]
    log_path = tmp_path / "job.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(argv, cwd=folder / "cwd", stdout=log, stderr=subprocess.STDOUT,
                                   env={**os.environ, "PYTHONPATH": ROOT, "TMPDIR": str(folder / "tmp")},
                                   start_new_session=True)
        try:
            seen, texts = _kafka_texts(broker, topics, len(values), 150)
            deadline = time.monotonic() + 30  # the deliveries folder's last flush
            while time.monotonic() < deadline and not list(written_texts(str(folder / "deliveries"), set())):
                time.sleep(0.5)
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                pass
            try:
                os.killpg(process.pid, signal.SIGKILL)  # the runner left behind, if any
            except ProcessLookupError:
                pass
    outcomes = [json.loads(m.value()) for m in seen["outcomes"]]
    log_text = log_path.read_text(encoding="utf-8", errors="replace")
    assert len(outcomes) >= len(values), log_text[-3000:]
    statuses = {(o["status"], o.get("error_class")) for o in outcomes}
    assert {("ARCHIVED", None), ("FAILED", "auth"), ("INVALID", None)} <= statuses, statuses
    held = [dict(m.headers() or [])["archive_status"] for m in seen["failures"]]
    assert {b"FAILED", b"INVALID"} <= set(held), held
    assert list(written_texts(str(folder / "deliveries"), set())), "nothing was delivered"
    texts += [("job output", log_text), *written_texts(str(folder), set(), (str(folder / "archive"),))]
    credentials = {s3_auth_server.access_key: "access key id", s3_auth_server.secret_key: "secret key",
                   wrong_secret: "wrong secret"}
    hits = scan(texts, recipient_needles()) + scan(texts, credentials)
    assert hits == [], "\n".join(hits[:30])
