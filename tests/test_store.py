"""The object store, on real fsspec filesystems: local disk, memory, and one that fails on a schedule."""

from __future__ import annotations

import errno
import hashlib
import itertools
import json
import os
import shutil
import threading
import uuid

import botocore.exceptions
import fsspec
import pytest

from archive.archiver import Archiver, ArchiverConfig
from archive.errors import ErrorClass
from archive.outcome import ARCHIVED, FAILED
from archive.retry import RetryPolicy
from archive.store import ObjectMetadata, ObjectStore, StoreSpec, WriteResult
from tests.faultfs import FaultyFileSystem

FAST = RetryPolicy(base_delay=0.001, max_delay=0.01, hold_seconds=0)
KEY = "sent_messages/Sms/202407/1722529032/b3e2048d6e5378173713705fde6a93da/m-1.json.lz4"


@pytest.fixture
def open_store():
    stores = []

    def make(destination: str, **kwargs) -> ObjectStore:
        store = StoreSpec(destination, retry=kwargs.pop("retry", FAST), **kwargs).open()
        stores.append(store)
        return store
    yield make
    for store in stores:
        store.close()


def _files(root) -> list[str]:
    return sorted(os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs)


def _memory_root() -> str:
    return f"memory://archive-test-{uuid.uuid4().hex}"


# --- local disk and memory ---------------------------------------------------

@pytest.mark.parametrize("as_url", [pytest.param(True, id="file-url"), pytest.param(False, id="plain-path")])
def test_local_write_lands_with_exact_bytes(open_store, tmp_path, as_url):
    root = tmp_path / "bucket" / "archive"
    store = open_store(f"file://{root}" if as_url else str(root))
    data = os.urandom(4096)
    result = store.write(KEY, data)
    assert isinstance(result, WriteResult)
    assert result.ok and result.error is None and result.error_class is None
    assert result.attempts == 1
    assert result.latency_ms >= 0
    assert result.url == f"file://{root}/{KEY}"
    assert (root / KEY).read_bytes() == data
    assert _files(root) == [KEY]  # parents created, no temporary file left


def _create_only_destinations(tmp_path):
    return {"local": f"file://{tmp_path}/local", "memory": _memory_root()}


@pytest.mark.parametrize("backend", ["local", "memory"])
@pytest.mark.parametrize("second, expected", [
    pytest.param(b"first version, longer", "existed", id="same-bytes-is-archived-and-existed"),
    pytest.param(b"second", "conflict", id="other-bytes-is-a-conflict"),
    pytest.param(b"", "conflict", id="empty-is-a-conflict"),
    pytest.param(b"first version, longe", "conflict", id="a-prefix-is-a-conflict"),
])
def test_a_key_that_holds_an_object_is_never_replaced(open_store, tmp_path, backend, second, expected):
    store = open_store(_create_only_destinations(tmp_path)[backend])
    first = store.write(KEY, b"first version, longer")
    assert first.ok and not first.existed
    again = store.write(KEY, second)
    if expected == "existed":
        assert again.ok and again.existed and again.attempts == 1
    else:
        assert not again.ok and again.error_class is ErrorClass.CONFLICT and again.attempts == 1
        assert "different bytes already exists" in str(again.error)
    assert store.fs.cat_file(f"{store.root}/{KEY}") == b"first version, longer"
    if backend == "local":
        assert _files(tmp_path / "local") == [KEY]  # no temporary file left either way


@pytest.mark.parametrize("backend", ["local", "memory"])
def test_overwrite_replaces_the_object(open_store, tmp_path, backend):
    store = open_store(_create_only_destinations(tmp_path)[backend], overwrite=True)
    assert store.write(KEY, b"first version, longer").ok
    result = store.write(KEY, b"second")
    assert result.ok and not result.existed
    assert store.fs.cat_file(f"{store.root}/{KEY}") == b"second"


def test_conflict_and_existed_reach_the_outcome(open_store, tmp_path):
    store = open_store(f"file://{tmp_path}")
    archiver = Archiver(ArchiverConfig())
    record = {"channel": "sms", "to": "+15555555555", "body": "hi", "campaign_id": 1, "campaign_name": "c",
              "message_id": "m-1", "sent_at": 1722443282680}
    request = archiver.prepare(json.dumps(record))
    assert archiver.written(request, store.write(request.key, request.data, request.metadata)).existed is None
    again = archiver.written(request, store.write(request.key, request.data, request.metadata))
    assert again.status == ARCHIVED and again.existed is True
    changed = archiver.prepare(json.dumps(dict(record, body="another text")))
    assert changed.key == request.key
    conflict = archiver.written(changed, store.write(changed.key, changed.data, changed.metadata))
    assert (conflict.status, conflict.error_class) == (FAILED, "conflict")
    assert "+15555555555" not in conflict.to_json()


def test_local_url(open_store, tmp_path):
    store = open_store(f"file://{tmp_path}/root/")
    assert store.url("a/b.json") == f"file://{tmp_path}/root/a/b.json"


def test_memory_write_lands_with_exact_bytes(open_store):
    root = _memory_root()
    store = open_store(root)
    data = b'{"version":1}'
    result = store.write(KEY, data)
    assert result.ok and result.attempts == 1
    assert result.url == f"memory:///{root.removeprefix('memory://')}/{KEY}"
    assert fsspec.filesystem("memory").cat_file(f"{root}/{KEY}") == data


def _keys(n: int) -> list[str]:
    return [f"sent_messages/sms/{hashlib.md5(str(i % 37).encode()).hexdigest()}/c{i % 5}/d-{i}.json.gz"
            for i in range(n)]


@pytest.mark.parametrize("max_in_flight", [pytest.param(64, id="64-in-flight"), pytest.param(1, id="serial")])
def test_local_many_concurrent_submits(open_store, tmp_path, max_in_flight):
    store = open_store(f"file://{tmp_path}", max_in_flight=max_in_flight)
    keys = _keys(500)
    futures = [store.submit(key, f"object {i}".encode()) for i, key in enumerate(keys)]
    results = [f.result(timeout=60) for f in futures]
    assert all(r.ok and r.attempts == 1 for r in results)
    assert [r.url for r in results] == [f"file://{tmp_path}/{k}" for k in keys]
    for i, key in enumerate(keys):
        assert (tmp_path / key).read_bytes() == f"object {i}".encode()
    assert _files(tmp_path) == sorted(keys)


def test_memory_many_concurrent_submits(open_store):
    root = _memory_root()
    store = open_store(root)
    keys = _keys(500)
    futures = [store.submit(key, f"object {i}".encode()) for i, key in enumerate(keys)]
    assert all(f.result(timeout=60).ok for f in futures)
    memory = fsspec.filesystem("memory")
    for i, key in enumerate(keys):
        assert memory.cat_file(f"{root}/{key}") == f"object {i}".encode()
    assert len(memory.find(root)) == 500


def test_invalid_max_in_flight(tmp_path):
    with pytest.raises(ValueError, match="max_in_flight"):
        StoreSpec(f"file://{tmp_path}", max_in_flight=0).open()


def test_archiver_request_through_the_store(open_store, tmp_path):
    archiver = Archiver(ArchiverConfig(profile="braze"))
    record = {"channel": "sms", "to": "+15555555555", "body": "Hi there!", "sent_at": 1722443282,
              "dispatch_id": "d-1"}
    request = archiver.prepare(json.dumps(record).encode())
    store = open_store(f"file://{tmp_path}")
    outcome = archiver.written(request, store.write(request.key, request.data, request.metadata))
    assert outcome.status == ARCHIVED
    written = (tmp_path / request.key).read_bytes()
    assert outcome.sha256 == hashlib.sha256(written).hexdigest() and outcome.bytes == len(written)
    assert json.loads(archiver.codec.decompress(written))["to"] == "+15555555555"


# --- a store that fails on a schedule --------------------------------------------

def _slowdown():
    return OSError(errno.EBUSY, "SlowDown: Please reduce your request rate.")


def _s3_error(code: str, status: int):
    return botocore.exceptions.ClientError(
        {"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "PutObject")


def _forever(make):
    return (make() for _ in itertools.count())


def _times(make, n: int):
    return [make() for _ in range(n)]


@pytest.fixture
def faulty(open_store):
    """A store on faulty://<fresh bucket>, and the path of KEY in it."""
    root = f"faulty://bucket-{uuid.uuid4().hex}"
    store = open_store(root)
    assert isinstance(store.fs, FaultyFileSystem)
    return store, f"{root}/{KEY}"


SCHEDULES = [
    # (schedule, ok, attempts, error class)
    pytest.param([], True, 1, None, id="no-failure"),
    pytest.param(_times(_slowdown, 2), True, 3, None, id="throttled-twice-then-ok"),
    pytest.param(_times(lambda: _s3_error("SlowDown", 503), 2), True, 3, None, id="s3-slowdown-twice-then-ok"),
    pytest.param(_times(lambda: ConnectionResetError(errno.ECONNRESET, "reset"), 8), True, 9, None,
                 id="transient-8-then-ok"),
    pytest.param(_times(_slowdown, 9), False, 9, ErrorClass.THROTTLED, id="transient-9-gives-up"),
    pytest.param(_forever(_slowdown), False, 9, ErrorClass.THROTTLED, id="throttled-forever"),
    pytest.param(_forever(lambda: TimeoutError("timed out")), False, 9, ErrorClass.TIMEOUT, id="timeout-forever"),
    pytest.param(_forever(lambda: ConnectionRefusedError(errno.ECONNREFUSED, "refused")), False, 9,
                 ErrorClass.CONNECTION, id="connection-forever"),
    pytest.param(_forever(lambda: _s3_error("InternalError", 500)), False, 9, ErrorClass.SERVER,
                 id="s3-500-forever"),
    pytest.param(_times(lambda: PermissionError("AccessDenied"), 3), True, 4, None, id="auth-3-then-ok"),
    pytest.param(_times(lambda: PermissionError("AccessDenied"), 4), False, 4, ErrorClass.AUTH,
                 id="auth-4-gives-up"),
    pytest.param(_forever(lambda: PermissionError("AccessDenied")), False, 4, ErrorClass.AUTH,
                 id="auth-forever"),
    pytest.param(_forever(lambda: _s3_error("AccessDenied", 403)), False, 4, ErrorClass.AUTH,
                 id="s3-accessdenied-forever"),
    pytest.param(_forever(lambda: FileNotFoundError("NoSuchBucket")), False, 4, ErrorClass.NOT_FOUND,
                 id="missing-bucket-forever"),
    pytest.param(_forever(lambda: RuntimeError("?")), False, 4, ErrorClass.UNKNOWN, id="unknown-forever"),
]


@pytest.mark.parametrize("schedule, ok, attempts, error_class", SCHEDULES)
def test_failing_store(faulty, schedule, ok, attempts, error_class):
    store, path = faulty
    store.fs.fail(path, schedule)
    data = b'{"version":1}'
    result = store.write(KEY, data)
    assert result.ok is ok
    assert result.attempts == attempts
    assert store.fs.attempts_at(path) == attempts
    assert result.error_class is error_class
    assert result.url == store.url(KEY)
    if ok:
        assert result.error is None
        assert store.fs.cat_file(path) == data
    else:
        assert isinstance(result.error, Exception)
        assert not store.fs.exists(path)


def test_transient_budget_follows_the_policy(open_store):
    root = f"faulty://bucket-{uuid.uuid4().hex}"
    policy = RetryPolicy(transient_retries=2, other_retries=1, base_delay=0.001, max_delay=0.01, hold_seconds=0)
    store = open_store(root, retry=policy)
    throttled, denied = f"{root}/a.json", f"{root}/b.json"
    store.fs.fail(throttled, _forever(_slowdown))
    store.fs.fail(denied, _forever(lambda: PermissionError("AccessDenied")))
    first, second = store.write("a.json", b"a"), store.write("b.json", b"b")
    assert (first.ok, first.attempts, first.error_class) == (False, policy.transient_retries + 1,
                                                             ErrorClass.THROTTLED)
    assert (second.ok, second.attempts, second.error_class) == (False, policy.other_retries + 1, ErrorClass.AUTH)


def test_failure_schedules_are_per_path(faulty):
    store, _ = faulty
    root = store.url("").rstrip("/")
    keys = [f"k/{i}.json" for i in range(200)]
    for i, key in enumerate(keys):
        store.fs.fail(f"{root}/{key}", _times(_slowdown, i % 3))
    futures = [store.submit(key, key.encode()) for key in keys]
    results = [f.result(timeout=60) for f in futures]
    assert [r.attempts for r in results] == [i % 3 + 1 for i in range(len(keys))]
    assert all(r.ok for r in results)
    assert all(store.fs.cat_file(f"{root}/{key}") == key.encode() for key in keys)


def test_failed_write_becomes_a_failed_outcome(faulty):
    store, path = faulty
    store.fs.fail(path, _forever(lambda: PermissionError("AccessDenied; AccountKey=s3cr3t")))
    archiver = Archiver()
    request = archiver.prepare({"channel": "sms", "to": "15555555555", "body": "b", "campaign_id": 1722529032,
                                "campaign_name": "c", "message_id": "m-1", "sent_at": 1722443282680})
    assert request.key == KEY
    outcome = archiver.written(request, store.write(request.key, request.data, request.metadata))
    assert outcome.status == FAILED
    assert (outcome.attempts, outcome.error_class) == (4, "auth")
    assert "s3cr3t" not in outcome.to_json() and "AccessDenied" in outcome.error


def test_local_folder_removed_between_writes_is_made_again(open_store, tmp_path):
    store = open_store(str(tmp_path / "archive"))
    assert store.write("sent_messages/Sms/a.json.lz4", b"a").ok
    shutil.rmtree(tmp_path / "archive" / "sent_messages")  # e.g. a retention job, or an operator
    result = store.write("sent_messages/Sms/b.json.lz4", b"b")
    assert result.ok and result.attempts == 1
    assert (tmp_path / "archive" / "sent_messages" / "Sms" / "b.json.lz4").read_bytes() == b"b"
    assert _files(tmp_path / "archive") == ["sent_messages/Sms/b.json.lz4"]  # nothing left aside


@pytest.mark.parametrize("destination", [pytest.param("memory", id="thread-pool"),
                                         pytest.param("local", id="inline"),
                                         pytest.param("s3", id="event-loop")])
def test_a_batch_larger_than_max_in_flight_is_written_not_deadlocked(open_store, tmp_path, destination, request):
    if destination == "s3":
        server = request.getfixturevalue("s3_server")  # moto on 127.0.0.1
        bucket = server.create_bucket(f"batch-{uuid.uuid4().hex[:8]}")
        store = StoreSpec(f"s3://{bucket}", server.storage_options(), max_in_flight=2, retry=FAST).open()
    else:
        root = _memory_root() if destination == "memory" else str(tmp_path / "archive")
        store = open_store(root, max_in_flight=2)
    writes = [(f"k/{i}.json", f"object {i}".encode(), ObjectMetadata()) for i in range(10)]
    done = []
    worker = threading.Thread(target=lambda: done.extend(f.result(10) for f in store.submit_many(writes)),
                              daemon=True)
    worker.start()
    worker.join(15)
    assert not worker.is_alive(), "submit_many blocked on slots held by writes it had not started"
    assert [r.ok for r in done] == [True] * 10
    assert all(store.fs.cat_file(f"{store.root}/{key}") == data for key, data, _ in writes)
