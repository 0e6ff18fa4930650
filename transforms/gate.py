"""GateDelivery: release a message for delivery only on its archive outcome.

    messages  (key, Deliverable) ─┐
                                  ├─ CoGroup per key in state ─> decide(policy, outcome) ─┬─> delivered
    outcomes  Outcome ──(key)─────┘        timeout timer                                 └─> failed_to_archive

A stateful DoFn keyed by the message's gate key holds whichever side came
first; the other side completes the join, the rule in `archive.gate` decides,
and the state and timer are cleared, so nothing is kept once a key is
decided. A message whose outcome has not come within `timeout` is decided as
"no outcome" (held under `strict`, delivered and recorded under
`best_effort`). The timer is in event time, so on a streaming runner it fires
when the watermark passes the message's time plus the timeout, and in a batch
run at the end of the input.
"""

from __future__ import annotations

from typing import NamedTuple

import apache_beam as beam
from apache_beam.coders import PickleCoder
from apache_beam.metrics import Metrics
from apache_beam.transforms import userstate
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.utils.timestamp import Duration

from archive.gate import DELIVER, STRICT, Decision, decide
from archive.outcome import Outcome

FAILED_TO_ARCHIVE = "failed_to_archive"


class Deliverable(NamedTuple):
    """A message on its way to delivery, as the archive transform saw it."""

    key: str                 # the gate key: "<tenant>/<message_id>", or "invalid/<input sha256>"
    message_id: str | None
    tenant: str | None
    channel: str | None
    data: bytes              # the input exactly as received
    source: str | None = None
    position: object = None  # where a replayable source can resume (see pipeline.kafka)
    attributes: dict | None = None  # a Pub/Sub message's attributes and id, passed on


class Released(NamedTuple):
    """The gate's verdict on one message, delivered or held."""

    message: Deliverable
    outcome: Outcome | None  # None: none came before the timeout
    decision: Decision


def outcome_key(outcome: Outcome) -> str:
    """The gate key of an outcome; `message_key` gives the same for its message."""
    if outcome.status == "INVALID":
        return invalid_key(outcome.input_sha256)
    return message_key(outcome.tenant, outcome.message_id)


def message_key(tenant: str | None, message_id: str | None) -> str:
    return f"{tenant}/{message_id}"


def invalid_key(input_sha256: str | None) -> str:
    return f"invalid/{input_sha256}"


class GateDelivery(beam.PTransform):
    """Join messages with their archive outcomes; release or hold each one.

    Input: a pair (messages, outcomes) of PCollections of Deliverable and Outcome.
    Output: {"delivered": Released, "failed_to_archive": Released}.
    """

    def __init__(self, policy: str = STRICT, timeout: float = 300.0):
        super().__init__()
        decide(policy, None)  # validates the policy name now, not on a worker
        self._policy = policy
        self._timeout = timeout

    def expand(self, inputs):
        messages, outcomes = inputs
        keyed_messages = messages | "KeyMessages" >> beam.Map(lambda m: (m.key, ("m", m)))
        keyed_outcomes = outcomes | "KeyOutcomes" >> beam.Map(lambda o: (outcome_key(o), ("o", o)))
        decided = (
            (keyed_messages, keyed_outcomes)
            | "Both" >> beam.Flatten()
            | "Decide" >> beam.ParDo(_GateFn(self._policy, self._timeout)).with_outputs(
                FAILED_TO_ARCHIVE, main="delivered"))
        return {"delivered": decided.delivered, FAILED_TO_ARCHIVE: decided[FAILED_TO_ARCHIVE]}


class _GateFn(beam.DoFn):
    MESSAGES = userstate.BagStateSpec("messages", PickleCoder())
    OUTCOME = userstate.ReadModifyWriteStateSpec("outcome", PickleCoder())
    TIMEOUT = userstate.TimerSpec("timeout", TimeDomain.WATERMARK)

    def __init__(self, policy: str, timeout: float):
        self._policy = policy
        self._timeout = Duration.of(timeout)
        self._delivered = Metrics.counter("gate", "delivered")
        self._held = Metrics.counter("gate", "held")
        self._unarchived = Metrics.counter("gate", "delivered_without_archive")
        self._timeouts = Metrics.counter("gate", "timeouts")

    def process(self, element, timestamp=beam.DoFn.TimestampParam,
                messages=beam.DoFn.StateParam(MESSAGES), outcome_state=beam.DoFn.StateParam(OUTCOME),
                timer=beam.DoFn.TimerParam(TIMEOUT)):
        _, (side, value) = element
        if side == "m":
            outcome = outcome_state.read()
            if outcome is not None:
                yield from self._release([value], outcome)
                outcome_state.clear()
                timer.clear()
                return
            messages.add(value)
            timer.set(timestamp + self._timeout)
        else:
            waiting = list(messages.read())
            if waiting:
                yield from self._release(waiting, value)
                messages.clear()
                timer.clear()
                return
            outcome_state.write(value)  # its message is still on the way
            timer.set(timestamp + self._timeout)

    @userstate.on_timer(TIMEOUT)
    def on_timeout(self, messages=beam.DoFn.StateParam(MESSAGES),
                   outcome_state=beam.DoFn.StateParam(OUTCOME)):
        waiting = list(messages.read())
        if waiting:
            self._timeouts.inc(len(waiting))
            yield from self._release(waiting, None)
        messages.clear()
        outcome_state.clear()  # an outcome whose message never came: nothing to deliver

    def _release(self, messages, outcome):
        decision = decide(self._policy, outcome)
        for message in messages:
            released = Released(message, outcome, decision)
            if decision.verdict == DELIVER:
                self._delivered.inc()
                if decision.archive_failed:
                    self._unarchived.inc()
                yield released
            else:
                self._held.inc()
                yield beam.pvalue.TaggedOutput(FAILED_TO_ARCHIVE, released)
