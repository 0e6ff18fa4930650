"""The delivery gate: the rule as a table, the join as a pipeline."""

import errno

import apache_beam as beam
import fsspec
import pytest
from apache_beam.testing.util import assert_that, equal_to

from archive.gate import BEST_EFFORT, DELIVER, HOLD, STRICT, decide
from archive.outcome import ARCHIVED, FAILED, INVALID, SKIPPED, Outcome
from archive.archiver import Archiver
from archive.retry import RetryPolicy
from archive.store import StoreSpec
from tests import faultfs  # noqa: F401  registers faulty://
from tests.test_pipeline import BAD_LINES, clevertap_records, jsonl
from transforms import ArchiveMessages
from transforms.gate import FAILED_TO_ARCHIVE, Deliverable, GateDelivery, outcome_key


def outcome(status, **kw):
    return Outcome(status, kw.pop("message_id", "m1"), kw.pop("tenant", "t"), "sms", "clevertap", **kw)


@pytest.mark.parametrize("policy, result, verdict, archive_failed", [
    (STRICT, outcome(ARCHIVED), DELIVER, False),
    (STRICT, outcome(SKIPPED, reason="not enabled"), DELIVER, False),
    (STRICT, outcome(FAILED, error="failed to archive: AccessDenied"), HOLD, True),
    (STRICT, outcome(INVALID, reason="malformed JSON"), HOLD, True),
    (STRICT, None, HOLD, True),
    (BEST_EFFORT, outcome(ARCHIVED), DELIVER, False),
    (BEST_EFFORT, outcome(FAILED, error="failed to archive: AccessDenied"), DELIVER, True),
    (BEST_EFFORT, outcome(INVALID, reason="malformed JSON"), HOLD, True),
    (BEST_EFFORT, None, DELIVER, True),
], ids=["strict-archived", "strict-skipped", "strict-failed", "strict-invalid", "strict-timeout",
        "best-archived", "best-failed", "best-invalid", "best-timeout"])
def test_decide(policy, result, verdict, archive_failed):
    decision = decide(policy, result)
    assert (decision.verdict, decision.archive_failed) == (verdict, archive_failed)
    if result is not None and result.status == FAILED:
        assert "AccessDenied" in decision.reason


def test_an_unknown_policy_is_refused_at_construction():
    with pytest.raises(ValueError, match="unknown gate policy"):
        GateDelivery("sometimes")


def message(key, message_id="m1"):
    return Deliverable(key, message_id, "t", "sms", b"{}", None)


@pytest.mark.parametrize("policy", [STRICT, BEST_EFFORT])
def test_the_join_releases_each_message_once_on_its_outcome_or_its_timeout(test_pipeline, policy):
    outcomes = [outcome(ARCHIVED, message_id="a"), outcome(FAILED, message_id="f", error="x"),
                outcome(SKIPPED, message_id="s", reason="off"), outcome(ARCHIVED, message_id="orphan")]
    messages = [message(outcome_key(o), o.message_id) for o in outcomes[:3]] + [message("t/late", "late")]
    with test_pipeline() as p:
        result = (p | "M" >> beam.Create(messages), p | "O" >> beam.Create(outcomes)) | GateDelivery(policy, 60)
        assert_that(result["delivered"] | "D" >> beam.Map(lambda r: r.message.message_id),
                    equal_to(["a", "s"] + (["f", "late"] if policy == BEST_EFFORT else [])), label="delivered")
        assert_that(result[FAILED_TO_ARCHIVE] | "H" >> beam.Map(lambda r: (r.message.message_id, r.decision.reason)),
                    equal_to([] if policy == BEST_EFFORT else [
                        ("f", "x"), ("late", "failed to archive: no archive outcome before the gate's timeout")]),
                    label="held")


@pytest.mark.parametrize("joined", [pytest.param(True, id="with-its-outcome"), pytest.param(False, id="join")])
@pytest.mark.parametrize("policy, delivered, held", [
    (STRICT, {"m-email-1", "m-sms-1"}, {"m-push-1"}),
    (BEST_EFFORT, {"m-email-1", "m-sms-1", "m-push-1"}, set()),
])
def test_a_message_whose_archive_failed_is_never_delivered_under_strict(test_pipeline, policy, delivered, held,
                                                                        joined):
    """Both inputs of the gate: each message with its own outcome (what the
    streaming job feeds it) and, taken apart, messages and outcomes to join."""
    lines = jsonl(clevertap_records()[:3])
    fs = fsspec.filesystem("faulty")
    root = f"faulty://gate-{policy}-{joined}"
    # not_found, not auth: an auth failure would also open the breaker for the others
    fs.fail(f"{root}/{Archiver().prepare(lines[1]).key}", [OSError(errno.ENOENT, "NoSuchKey")] * 9)
    spec = StoreSpec(root, retry=RetryPolicy(base_delay=0.001, max_delay=0.002, hold_seconds=0))
    with test_pipeline() as p:
        archived = p | beam.Create(lines + BAD_LINES[:1]) | ArchiveMessages(spec, emit_messages=True)
        if joined:
            gated = archived.messages | GateDelivery(policy)
        else:
            gated = (archived.messages | beam.Map(lambda a: a.message), archived.outcomes) | GateDelivery(policy)
        assert_that(gated["delivered"] | "D" >> beam.Map(lambda r: r.message.message_id),
                    equal_to(sorted(delivered)), label="delivered")
        assert_that(gated[FAILED_TO_ARCHIVE] | "H" >> beam.Map(lambda r: r.message.message_id),
                    equal_to(sorted(held) + [None]), label="held")  # the INVALID line: always held
        assert_that(gated["delivered"] | "Same" >> beam.Map(lambda r: r.outcome.message_id == r.message.message_id),
                    equal_to([True] * len(delivered)), label="each with its own outcome")


def test_each_message_leaves_the_archive_with_its_own_outcome(test_pipeline, tmp_path):
    lines = jsonl(clevertap_records())
    with test_pipeline() as p:
        archived = (p | beam.Create(lines + BAD_LINES)
                    | ArchiveMessages(StoreSpec(str(tmp_path / "archive")), emit_messages=True))
        assert_that(archived.messages | beam.Map(lambda a: (a.message.key == outcome_key(a.outcome),
                                                            a.message.message_id == a.outcome.message_id)),
                    equal_to([(True, True)] * (len(lines) + len(BAD_LINES))))
