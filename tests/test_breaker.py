"""The per-destination circuit breaker, on a clock the test moves."""

from __future__ import annotations

import random
import threading

import pytest

from archive.breaker import TRIPPING, CircuitBreaker, CircuitOpen
from archive.errors import ErrorClass

COOLDOWN = 30.0


class FakeClock:
    """A clock that reads the last value of its list; a test appends to move it."""

    def __init__(self, start: float = 1000.0):
        self.times = [start]

    def __call__(self) -> float:
        return self.times[-1]

    def advance(self, seconds: float) -> None:
        self.times.append(self.times[-1] + seconds)


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def breaker(clock):
    return CircuitBreaker(COOLDOWN, clock)


def _open(breaker: CircuitBreaker, description: str = "PermissionError: AccessDenied") -> None:
    breaker.admit()
    breaker.record(ErrorClass.AUTH, description)


def _refused(breaker: CircuitBreaker) -> CircuitOpen:
    with pytest.raises(CircuitOpen) as caught:
        breaker.admit()
    return caught.value


def test_closed_admits(breaker):
    assert not breaker.is_open
    for _ in range(100):
        breaker.admit()
        breaker.record(None)
    breaker.admit()
    assert not breaker.is_open


def test_only_auth_trips():
    assert TRIPPING == frozenset({ErrorClass.AUTH})


def test_auth_failure_opens(breaker, clock):
    _open(breaker)
    assert breaker.is_open
    refused = _refused(breaker)
    assert refused.retry_in == COOLDOWN
    assert refused.reason == "auth failure: PermissionError: AccessDenied"
    assert str(refused) == "circuit open after auth failure: PermissionError: AccessDenied; next probe in 30 s"


def test_reason_without_description(breaker):
    breaker.record(ErrorClass.AUTH)
    assert _refused(breaker).reason == "auth"


@pytest.mark.parametrize("elapsed, retry_in", [
    pytest.param(0.0, 30.0, id="at-once"),
    pytest.param(10.0, 20.0, id="after-10s"),
    pytest.param(29.5, 0.5, id="just-before"),
])
def test_open_refuses_until_the_cooldown_is_over(breaker, clock, elapsed, retry_in):
    _open(breaker)
    clock.advance(elapsed)
    for _ in range(3):  # every write refused, none becomes a probe early
        assert _refused(breaker).retry_in == pytest.approx(retry_in)
    assert breaker.is_open


def test_after_cooldown_exactly_one_probe(breaker, clock):
    _open(breaker)
    clock.advance(COOLDOWN)
    breaker.admit()                      # the probe
    assert breaker.is_open               # still open while it is in flight
    refused = _refused(breaker)          # a second write while the probe is out
    assert refused.retry_in == 0.0
    assert refused.reason == "auth failure: PermissionError: AccessDenied"
    clock.advance(1000.0)
    assert _refused(breaker).retry_in == 0.0  # however long the probe takes


def test_probe_success_closes(breaker, clock):
    _open(breaker)
    clock.advance(COOLDOWN + 5)
    breaker.admit()
    breaker.record(None)
    assert not breaker.is_open
    for _ in range(10):
        breaker.admit()


def test_probe_auth_failure_reopens_for_another_cooldown(breaker, clock):
    _open(breaker)
    clock.advance(COOLDOWN)
    breaker.admit()
    clock.advance(2.0)                   # the probe took two seconds
    breaker.record(ErrorClass.AUTH, "ClientAuthenticationError: expired")
    assert breaker.is_open
    refused = _refused(breaker)
    assert refused.retry_in == COOLDOWN  # counted from the probe's failure
    assert refused.reason == "auth failure: ClientAuthenticationError: expired"
    clock.advance(COOLDOWN - 0.001)
    _refused(breaker)
    clock.advance(0.001)
    breaker.admit()                      # the next probe
    _refused(breaker)


NON_TRIPPING = [pytest.param(c, id=c.value) for c in ErrorClass if c is not ErrorClass.AUTH]


@pytest.mark.parametrize("error_class", NON_TRIPPING)
def test_other_failures_do_not_open(breaker, error_class):
    for _ in range(20):
        breaker.record(error_class, "something else", probe=breaker.admit())
    assert not breaker.is_open
    breaker.admit()


@pytest.mark.parametrize("error_class", NON_TRIPPING)
def test_probe_failing_otherwise_lets_the_next_write_probe(breaker, clock, error_class):
    _open(breaker)
    clock.advance(COOLDOWN)
    assert breaker.admit() is True           # the probe
    breaker.record(error_class, "SlowDown", probe=True)
    assert breaker.is_open                   # not a credentials verdict: not closed
    assert _refused_or_none(breaker) is None  # but the next write is the new probe
    _refused(breaker)                        # and only that one
    breaker.record(None)
    assert not breaker.is_open


def _refused_or_none(breaker):
    try:
        breaker.admit()
    except CircuitOpen as exc:
        return exc
    return None


def test_breakers_are_independent(clock):
    a, b = CircuitBreaker(COOLDOWN, clock), CircuitBreaker(COOLDOWN, clock)
    _open(a)
    b.admit()
    b.record(None)
    assert a.is_open and not b.is_open
    _refused(a)


def test_default_clock_is_real_time():
    breaker = CircuitBreaker(cooldown=0.0)
    breaker.record(ErrorClass.AUTH)
    breaker.admit()                      # a zero cooldown is over at once: the probe
    _refused(breaker)


# --- threads -------------------------------------------------------------------------------

def _run(threads: int, target) -> list[BaseException]:
    errors: list[BaseException] = []
    barrier = threading.Barrier(threads)

    def body(i):
        try:
            barrier.wait()
            target(i)
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            errors.append(exc)
    workers = [threading.Thread(target=body, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=30)
    assert not any(w.is_alive() for w in workers)
    return errors


def test_concurrent_admits_after_cooldown_let_one_probe_through(breaker, clock):
    _open(breaker)
    clock.advance(COOLDOWN)
    admitted, refused = [], []
    lock = threading.Lock()

    def attempt(i):
        for _ in range(50):
            try:
                breaker.admit()
            except CircuitOpen:
                with lock:
                    refused.append(i)
            else:
                with lock:
                    admitted.append(i)
    assert _run(32, attempt) == []
    assert len(admitted) == 1 and len(refused) == 32 * 50 - 1


def test_many_threads_do_not_corrupt_state(clock):
    breaker = CircuitBreaker(0.5, clock)
    outcomes = [None, ErrorClass.AUTH, ErrorClass.THROTTLED, ErrorClass.SERVER, None, None]

    def hammer(i):
        rng = random.Random(i)
        for _ in range(2000):
            try:
                probe = breaker.admit()
            except CircuitOpen as exc:
                assert exc.retry_in >= 0.0
                continue
            breaker.record(rng.choice(outcomes), f"thread {i}", probe=probe)
    # The clock moves while they run, so the breaker opens, probes and closes many times.
    stop = threading.Event()

    def tick():
        while not stop.wait(0.0002):
            clock.advance(0.1)
    ticker = threading.Thread(target=tick)
    ticker.start()
    try:
        assert _run(16, hammer) == []
    finally:
        stop.set()
        ticker.join()
    # Whatever state it was left in, it still follows the rules.
    breaker.record(ErrorClass.AUTH, "final")
    assert breaker.is_open
    assert _refused(breaker).retry_in == pytest.approx(0.5)
    clock.advance(0.5)
    breaker.admit()
    _refused(breaker)
    breaker.record(None)
    assert not breaker.is_open
    breaker.admit()


def test_a_late_non_verdict_of_an_earlier_write_does_not_let_a_second_probe_in(breaker, clock):
    assert breaker.admit() is False          # W1: admitted while closed, still in flight
    _open(breaker)                           # another write's AUTH failure opens it
    clock.advance(COOLDOWN)
    assert breaker.admit() is True           # the probe P goes out
    breaker.record(ErrorClass.THROTTLED)     # W1 gives up late, not a probe
    _refused(breaker)                        # P is still the only probe out
    breaker.record(None, probe=True)
    assert not breaker.is_open


class _Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.mark.parametrize("answers, seconds", [
    ([], 0.0),
    ([(0, True)], 0.0),
    ([(0, True), (5, True), (5, True)], 10.0),      # the outage dates from its first failure
    ([(0, True), (5, False)], 0.0),                 # any answer that is not transient ends it
    ([(0, True), (5, False), (3, True)], 0.0),      # and the next failure starts a new one
    ([(0, True), (5, False), (3, True), (4, True)], 4.0),
    ([(0, False), (100, False)], 0.0),
])
def test_outage_clock(answers, seconds):
    from archive.breaker import OutageClock

    clock = _Clock()
    outage = OutageClock(clock)
    for advance, transient in answers:
        clock.now += advance
        outage.record(transient)
    assert outage.seconds() == pytest.approx(seconds)
