"""The object store's circuit breaker, on the faulty:// filesystem: one per destination."""

from __future__ import annotations

import itertools
import threading
import time
import uuid

import pytest

from archive.archiver import Archiver
from archive.breaker import CircuitOpen
from archive.errors import ErrorClass
from archive.outcome import FAILED
from archive.retry import RetryPolicy
from archive.store import ObjectStore, StoreSpec
from tests.faultfs import FaultyFileSystem

FAST = RetryPolicy(base_delay=0.001, max_delay=0.01, hold_seconds=0)
AUTH_ATTEMPTS = FAST.other_retries + 1
COOLDOWN = 0.05


def _denied():
    return PermissionError("AccessDenied; AccountKey=s3cr3t-key")


def _forever(make):
    return (make() for _ in itertools.count())


@pytest.fixture
def open_store():
    stores = []

    def make(name: str, **kwargs) -> ObjectStore:
        root = f"faulty://{name}-{uuid.uuid4().hex}"
        store = StoreSpec(root, retry=kwargs.pop("retry", FAST), **kwargs).open()
        assert isinstance(store.fs, FaultyFileSystem)
        stores.append(store)
        return store
    yield make
    for store in stores:
        store.close()


def _path(store: ObjectStore, key: str) -> str:
    return f"{store.url('').rstrip('/')}/{key}"


def _deny_forever(store: ObjectStore, key: str) -> None:
    store.fs.fail(_path(store, key), _forever(_denied))


def _trip(store: ObjectStore, key: str = "denied.json"):
    _deny_forever(store, key)
    result = store.write(key, b"x")
    assert (result.ok, result.attempts, result.error_class) == (False, AUTH_ATTEMPTS, ErrorClass.AUTH)
    assert store.fs.attempts_at(_path(store, key)) == AUTH_ATTEMPTS
    return result


def _assert_failed_fast(store: ObjectStore, key: str) -> None:
    result = store.write(key, b"y")
    assert not result.ok
    assert result.attempts == 0
    assert result.error_class is ErrorClass.AUTH
    assert isinstance(result.error, CircuitOpen)
    assert result.url == store.url(key)
    assert store.fs.attempts_at(_path(store, key)) == 0  # no request
    assert not store.fs.exists(_path(store, key))


def test_auth_failure_opens_the_breaker_and_later_writes_fail_fast(open_store):
    store = open_store("tenant-a")
    assert store.write("before.json", b"ok").ok
    _trip(store)
    assert store.breaker.is_open
    for key in ("other.json", "deep/er/key.json", "before.json", "denied.json"):
        attempts_before = store.fs.attempts_at(_path(store, key))
        result = store.write(key, b"y")
        assert (result.ok, result.attempts, result.error_class) == (False, 0, ErrorClass.AUTH)
        assert isinstance(result.error, CircuitOpen)
        assert store.fs.attempts_at(_path(store, key)) == attempts_before
    _assert_failed_fast(store, "fresh.json")
    assert store.fs.cat_file(_path(store, "before.json")) == b"ok"  # not overwritten


def test_circuit_open_reason_names_the_failure_without_secrets(open_store):
    store = open_store("tenant-a")
    _trip(store)
    error = store.write("other.json", b"y").error
    assert isinstance(error, CircuitOpen)
    assert "AccessDenied" in error.reason and "PermissionError" in error.reason
    assert 0 < error.retry_in <= 30.0
    assert "s3cr3t-key" not in str(error)


def test_fast_failure_is_a_failed_outcome(open_store):
    store = open_store("tenant-a")
    _trip(store)
    archiver = Archiver()
    request = archiver.prepare({"channel": "sms", "to": "15555555555", "body": "b", "campaign_id": 1722529032,
                                "campaign_name": "c", "message_id": "m-1", "sent_at": 1722443282680})
    outcome = archiver.written(request, store.write(request.key, request.data, request.metadata))
    assert (outcome.status, outcome.attempts, outcome.error_class) == (FAILED, 0, "auth")
    assert "circuit open" in outcome.error and "s3cr3t-key" not in outcome.to_json()


@pytest.mark.parametrize("make_error, error_class", [
    pytest.param(lambda: FileNotFoundError("NoSuchBucket"), ErrorClass.NOT_FOUND, id="not-found"),
    pytest.param(lambda: RuntimeError("?"), ErrorClass.UNKNOWN, id="unknown"),
    pytest.param(lambda: TimeoutError("timed out"), ErrorClass.TIMEOUT, id="timeout"),
])
def test_other_failures_leave_the_breaker_closed(open_store, make_error, error_class):
    store = open_store("tenant-a", retry=RetryPolicy(transient_retries=2, other_retries=1, base_delay=0.001, hold_seconds=0,
                                                       max_delay=0.01))
    store.fs.fail(_path(store, "bad.json"), _forever(make_error))
    result = store.write("bad.json", b"x")
    assert (result.ok, result.error_class) == (False, error_class)
    assert not store.breaker.is_open
    good = store.write("good.json", b"ok")
    assert good.ok and good.attempts == 1


def test_auth_failure_that_clears_within_the_retries_does_not_open(open_store):
    store = open_store("tenant-a")
    store.fs.fail(_path(store, "flaky.json"), [_denied() for _ in range(FAST.other_retries)])
    result = store.write("flaky.json", b"x")
    assert result.ok and result.attempts == AUTH_ATTEMPTS
    assert not store.breaker.is_open
    assert store.write("next.json", b"y").ok


def test_after_the_cooldown_a_good_write_probes_and_closes(open_store):
    store = open_store("tenant-a", breaker_cooldown=COOLDOWN)
    _trip(store)
    _assert_failed_fast(store, "early.json")
    time.sleep(COOLDOWN * 2)
    probe = store.write("probe.json", b"probe")
    assert probe.ok and probe.attempts == 1 and probe.error is None
    assert store.fs.cat_file(_path(store, "probe.json")) == b"probe"
    assert not store.breaker.is_open
    for i in range(5):
        assert store.write(f"after-{i}.json", b"z").ok
    early = store.write("early.json", b"again")  # refused before, written now
    assert early.ok and store.fs.attempts_at(_path(store, "early.json")) == 1


def test_a_failed_probe_reopens(open_store):
    store = open_store("tenant-a", breaker_cooldown=COOLDOWN)
    _trip(store)
    time.sleep(COOLDOWN * 2)
    probe = store.write("denied.json", b"x")  # still denied: the probe spends its retries and fails
    assert (probe.ok, probe.attempts, probe.error_class) == (False, AUTH_ATTEMPTS, ErrorClass.AUTH)
    assert store.fs.attempts_at(_path(store, "denied.json")) == 2 * AUTH_ATTEMPTS
    assert store.breaker.is_open
    _assert_failed_fast(store, "next.json")
    time.sleep(COOLDOWN * 2)
    assert store.write("next.json", b"y").ok
    assert not store.breaker.is_open


def _held(started: threading.Event, release: threading.Event):
    """A schedule whose first write waits until the test releases it, then succeeds."""
    started.set()
    assert release.wait(10)
    yield None


def test_only_one_probe_while_many_writes_wait(open_store):
    store = open_store("tenant-a", breaker_cooldown=COOLDOWN)
    _trip(store)
    time.sleep(COOLDOWN * 2)
    started, release = threading.Event(), threading.Event()
    store.fs.fail(_path(store, "probe.json"), _held(started, release))
    probe = store.submit("probe.json", b"p")
    assert started.wait(10)  # the probe is in its request
    waiting = [store.submit(f"w-{i}.json", b"w") for i in range(5)]
    try:
        others = [f.result(timeout=5) for f in waiting]  # refused at once, not queued behind the probe
    finally:
        release.set()
    assert all(r.attempts == 0 and isinstance(r.error, CircuitOpen) for r in others)
    assert all(r.error.retry_in == 0.0 for r in others)
    result = probe.result(timeout=10)
    assert result.ok and result.attempts == 1
    assert all(store.fs.attempts_at(_path(store, f"w-{i}.json")) == 0 for i in range(5))
    assert not store.breaker.is_open
    assert store.write("w-0.json", b"w").ok


def test_two_destinations_have_independent_breakers(open_store):
    a, b = open_store("tenant-a"), open_store("tenant-b")
    assert a.fs is b.fs  # one cached faulty filesystem, two destinations on it
    _trip(a)
    assert a.breaker.is_open and not b.breaker.is_open
    _assert_failed_fast(a, "a-next.json")
    for i in range(5):
        result = b.write(f"b-{i}.json", b"b")
        assert result.ok and result.attempts == 1
        assert b.fs.cat_file(_path(b, f"b-{i}.json")) == b"b"
    assert a.breaker.is_open
    _assert_failed_fast(a, "a-later.json")


def test_tripping_the_second_destination_leaves_the_first_working(open_store):
    a, b = open_store("tenant-a"), open_store("tenant-b")
    _trip(b, "b-denied.json")
    assert a.write("a.json", b"a").ok
    _assert_failed_fast(b, "b-next.json")
