"""The retry policy: budgets per error class, and full-jitter backoff."""

from __future__ import annotations

import random

import pytest

from archive.errors import ErrorClass
from archive.retry import RetryPolicy

TRANSIENT = [ErrorClass.THROTTLED, ErrorClass.SERVER, ErrorClass.TIMEOUT, ErrorClass.CONNECTION]
OTHER = [ErrorClass.AUTH, ErrorClass.NOT_FOUND, ErrorClass.CLIENT, ErrorClass.UNKNOWN]


def test_defaults():
    policy = RetryPolicy()
    assert (policy.transient_retries, policy.other_retries) == (8, 3)
    assert (policy.base_delay, policy.max_delay) == (0.1, 10.0)


@pytest.mark.parametrize("error_class, retries", [
    *[pytest.param(c, 8, id=c.value) for c in TRANSIENT],
    *[pytest.param(c, 3, id=c.value) for c in OTHER],
])
def test_retries_for(error_class, retries):
    assert RetryPolicy().retries_for(error_class) == retries


@pytest.mark.parametrize("error_class, retries", [
    *[pytest.param(c, 5, id=c.value) for c in TRANSIENT],
    *[pytest.param(c, 1, id=c.value) for c in OTHER],
])
def test_retries_for_custom(error_class, retries):
    assert RetryPolicy(transient_retries=5, other_retries=1).retries_for(error_class) == retries


SHOULD_RETRY = [
    # Both seeds: AccessDenied and the like are retried up to three times,
    # so a write is attempted at most 4 times.
    pytest.param(ErrorClass.AUTH, 0, True, id="auth-after-first-attempt"),
    pytest.param(ErrorClass.AUTH, 2, True, id="auth-third-retry-allowed"),
    pytest.param(ErrorClass.AUTH, 3, False, id="auth-no-fourth-retry"),
    pytest.param(ErrorClass.NOT_FOUND, 0, True, id="not_found-0"),
    pytest.param(ErrorClass.NOT_FOUND, 2, True, id="not_found-2"),
    pytest.param(ErrorClass.NOT_FOUND, 3, False, id="not_found-3"),
    pytest.param(ErrorClass.CLIENT, 3, False, id="client-3"),
    pytest.param(ErrorClass.UNKNOWN, 2, True, id="unknown-2"),
    pytest.param(ErrorClass.UNKNOWN, 3, False, id="unknown-3"),
    pytest.param(ErrorClass.THROTTLED, 3, True, id="throttled-beyond-3"),
    pytest.param(ErrorClass.THROTTLED, 7, True, id="throttled-7"),
    pytest.param(ErrorClass.THROTTLED, 8, False, id="throttled-8"),
    pytest.param(ErrorClass.SERVER, 7, True, id="server-7"),
    pytest.param(ErrorClass.SERVER, 8, False, id="server-8"),
    pytest.param(ErrorClass.TIMEOUT, 7, True, id="timeout-7"),
    pytest.param(ErrorClass.TIMEOUT, 8, False, id="timeout-8"),
    pytest.param(ErrorClass.CONNECTION, 7, True, id="connection-7"),
    pytest.param(ErrorClass.CONNECTION, 8, False, id="connection-8"),
    pytest.param(ErrorClass.CONNECTION, 100, False, id="connection-100"),
]


@pytest.mark.parametrize("error_class, retries_done, expected", SHOULD_RETRY)
def test_should_retry(error_class, retries_done, expected):
    assert RetryPolicy().should_retry(error_class, retries_done) is expected


@pytest.mark.parametrize("error_class, attempts", [
    pytest.param(ErrorClass.AUTH, 4, id="auth"),
    pytest.param(ErrorClass.NOT_FOUND, 4, id="not_found"),
    pytest.param(ErrorClass.THROTTLED, 9, id="throttled"),
    pytest.param(ErrorClass.CONNECTION, 9, id="connection"),
])
def test_attempts_until_given_up(error_class, attempts):
    policy, made = RetryPolicy(), 1
    while policy.should_retry(error_class, made - 1):
        made += 1
    assert made == attempts


def test_zero_retries_means_one_attempt():
    policy = RetryPolicy(transient_retries=0, other_retries=0)
    assert not policy.should_retry(ErrorClass.THROTTLED, 0)
    assert not policy.should_retry(ErrorClass.AUTH, 0)


@pytest.mark.parametrize("retry_number, cap", [
    pytest.param(1, 0.1, id="first"),
    pytest.param(2, 0.2, id="second"),
    pytest.param(3, 0.4, id="third"),
    pytest.param(7, 6.4, id="seventh"),
    pytest.param(8, 10.0, id="eighth-capped"),
    pytest.param(30, 10.0, id="thirtieth-capped"),
    pytest.param(0, 0.1, id="zero-is-first"),
])
def test_backoff_full_jitter_bounds(retry_number, cap):
    policy = RetryPolicy()
    rng = random.Random(1234)
    waits = [policy.backoff(retry_number, rng) for _ in range(2000)]
    assert all(0.0 <= w <= cap for w in waits)
    # Full jitter: uniform over [0, cap], so the samples reach both ends.
    assert min(waits) < cap * 0.02
    assert max(waits) > cap * 0.98
    assert abs(sum(waits) / len(waits) - cap / 2) < cap * 0.05


@pytest.mark.parametrize("seed", [0, 1, 42])
def test_backoff_is_reproducible_with_a_seeded_rng(seed):
    policy = RetryPolicy(base_delay=0.5, max_delay=3.0)
    first = [policy.backoff(n, random.Random(seed)) for n in range(1, 8)]
    second = [policy.backoff(n, random.Random(seed)) for n in range(1, 8)]
    assert first == second
    expected = [random.Random(seed).uniform(0.0, min(3.0, 0.5 * 2 ** (n - 1))) for n in range(1, 8)]
    assert first == expected


def test_backoff_without_rng_stays_in_bounds():
    policy = RetryPolicy(base_delay=0.001, max_delay=0.01)
    assert all(0.0 <= policy.backoff(n) <= 0.01 for n in range(1, 20))


def test_backoff_zero_base_never_waits():
    assert RetryPolicy(base_delay=0.0, max_delay=0.0).backoff(5, random.Random(1)) == 0.0


@pytest.mark.parametrize("kwargs", [
    pytest.param({"transient_retries": -1}, id="negative-transient"),
    pytest.param({"other_retries": -1}, id="negative-other"),
    pytest.param({"base_delay": -0.1}, id="negative-base"),
    pytest.param({"base_delay": 2.0, "max_delay": 1.0}, id="max-below-base"),
    pytest.param({"base_delay": 0.0, "max_delay": -1.0}, id="negative-max"),
])
def test_invalid_arguments(kwargs):
    with pytest.raises(ValueError):
        RetryPolicy(**kwargs)


def test_policy_is_frozen():
    with pytest.raises(AttributeError):
        RetryPolicy().other_retries = 10


@pytest.mark.parametrize("error_class, retries_done, outage_seconds, expected", [
    # within the hold, a transient error is retried whatever the count
    (ErrorClass.THROTTLED, 8, 0.0, True),
    (ErrorClass.CONNECTION, 1000, 299.9, True),
    (ErrorClass.SERVER, 50, 120.0, True),
    (ErrorClass.TIMEOUT, 8, 10.0, True),
    # past it, the ordinary budget again
    (ErrorClass.THROTTLED, 8, 300.0, False),
    (ErrorClass.CONNECTION, 7, 301.0, True),
    (ErrorClass.CONNECTION, 8, 301.0, False),
    # the hold is for outages only: credentials, requests and conflicts are not waited out
    (ErrorClass.AUTH, 3, 10.0, False),
    (ErrorClass.CLIENT, 3, 10.0, False),
    (ErrorClass.NOT_FOUND, 3, 10.0, False),
    (ErrorClass.CONFLICT, 0, 0.0, False),
    (ErrorClass.CONFLICT, 0, None, False),
    # no outage known (a caller without a clock): the budget alone
    (ErrorClass.THROTTLED, 8, None, False),
    (ErrorClass.THROTTLED, 7, None, True),
])
def test_an_outage_is_held_then_the_budget_applies(error_class, retries_done, outage_seconds, expected):
    assert RetryPolicy().should_retry(error_class, retries_done, outage_seconds) is expected


def test_a_hold_of_zero_is_the_budget_alone():
    policy = RetryPolicy(hold_seconds=0)
    assert policy.should_retry(ErrorClass.THROTTLED, 7, 0.0) is True
    assert policy.should_retry(ErrorClass.THROTTLED, 8, 0.0) is False


@pytest.mark.parametrize("retry_number", [1, 63, 64, 1000, 10**6])
def test_backoff_stays_finite_however_long_the_hold(retry_number):
    delay = RetryPolicy(base_delay=0.1, max_delay=10.0).backoff(retry_number, random.Random(7))
    assert 0.0 <= delay <= 10.0
