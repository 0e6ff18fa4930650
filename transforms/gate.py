"""GateDelivery: release a message for delivery only on its archive outcome.

Two inputs, one rule (`archive.gate.decide`):

    ArchivedMessage (a message with its own outcome) ─────────── decide ─┬─> delivered
                                                                         └─> failed_to_archive
    (messages, outcomes) ─ per key in state, timeout timer ─ decide ─┘

- Each message with its own outcome, as ArchiveMessages(emit_messages=True)
  emits it the moment the outcome is known: nothing to wait for, so no
  shuffle and no state; the streaming job uses this.
- Messages and outcomes as two PCollections (outcomes from another job, a
  replayed topic): a stateful DoFn keyed by the message's gate key holds
  whichever side came first; the other side completes the join, and the state
  and timer are cleared, so nothing is kept once a key is decided. A message
  whose outcome has not come within `timeout` is decided as "no outcome"
  (held under `strict`, delivered and recorded under `best_effort`). The
  timer is in event time: on a streaming runner it fires when the watermark
  passes the message's time plus the timeout, in a batch run at the end.
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


class ArchivedMessage(NamedTuple):
    """A message together with its own archive outcome."""

    message: Deliverable
    outcome: Outcome


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
    """Release or hold each message on its archive outcome.

    Input: a PCollection of ArchivedMessage, or a pair (messages, outcomes) of
    PCollections of Deliverable and Outcome to join by gate key.
    Output: {"decided": every Released, "delivered": those to deliver,
    "failed_to_archive": those held}. "decided" carries each verdict in one
    PCollection, so that a sink of both fuses with the gate (a Flatten of the
    other two would be a stage of its own on some runners).
    """

    def __init__(self, policy: str = STRICT, timeout: float = 300.0):
        super().__init__()
        decide(policy, None)  # validates the policy name now, not on a worker
        self._policy = policy
        self._timeout = timeout

    def expand(self, inputs):
        if isinstance(inputs, beam.PCollection):
            decided = inputs | "Decide" >> beam.ParDo(_DecideFn(self._policy))
        else:
            messages, outcomes = inputs
            keyed_messages = messages | "KeyMessages" >> beam.Map(lambda m: (m.key, ("m", m)))
            keyed_outcomes = outcomes | "KeyOutcomes" >> beam.Map(lambda o: (outcome_key(o), ("o", o)))
            decided = (
                (keyed_messages, keyed_outcomes)
                | "Both" >> beam.Flatten()
                | "Join" >> beam.ParDo(_JoinFn(self._policy, self._timeout)))
        return {"decided": decided,
                "delivered": decided | "Delivered" >> beam.Filter(lambda r: r.decision.verdict == DELIVER),
                FAILED_TO_ARCHIVE: decided | "Held" >> beam.Filter(lambda r: r.decision.verdict != DELIVER)}


class _Verdicts:
    """The rule applied and counted."""

    def __init__(self, policy: str):
        self._policy = policy
        self._delivered = Metrics.counter("gate", "delivered")
        self._held = Metrics.counter("gate", "held")
        self._unarchived = Metrics.counter("gate", "delivered_without_archive")

    def release(self, messages, outcome):
        decision = decide(self._policy, outcome)
        for message in messages:
            if decision.verdict == DELIVER:
                self._delivered.inc()
                if decision.archive_failed:
                    self._unarchived.inc()
            else:
                self._held.inc()
            yield Released(message, outcome, decision)


class _DecideFn(beam.DoFn):
    def __init__(self, policy: str):
        self._verdicts = _Verdicts(policy)

    def process(self, archived: ArchivedMessage):
        yield from self._verdicts.release((archived.message,), archived.outcome)


class _JoinFn(beam.DoFn):
    MESSAGES = userstate.BagStateSpec("messages", PickleCoder())
    OUTCOME = userstate.ReadModifyWriteStateSpec("outcome", PickleCoder())
    TIMEOUT = userstate.TimerSpec("timeout", TimeDomain.WATERMARK)

    def __init__(self, policy: str, timeout: float):
        self._verdicts = _Verdicts(policy)
        self._timeout = Duration.of(timeout)
        self._timeouts = Metrics.counter("gate", "timeouts")

    def process(self, element, timestamp=beam.DoFn.TimestampParam,
                messages=beam.DoFn.StateParam(MESSAGES), outcome_state=beam.DoFn.StateParam(OUTCOME),
                timer=beam.DoFn.TimerParam(TIMEOUT)):
        _, (side, value) = element
        if side == "m":
            outcome = outcome_state.read()
            if outcome is not None:
                yield from self._verdicts.release([value], outcome)
                outcome_state.clear()
                timer.clear()
                return
            messages.add(value)
            timer.set(timestamp + self._timeout)
        else:
            waiting = list(messages.read())
            if waiting:
                yield from self._verdicts.release(waiting, value)
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
            yield from self._verdicts.release(waiting, None)
        messages.clear()
        outcome_state.clear()  # an outcome whose message never came: nothing to deliver
