"""The delivery gate's rule: may a message be sent, given its archive outcome?

`strict` (CleverTap): a message is delivered only when it was archived, or when
its tenant does not archive that channel (SKIPPED); anything else goes to the
failed-to-archive output with the reason, never to the user.
`best_effort` (Braze): a message whose archive FAILED (or never came in time)
is delivered anyway and its failure recorded; only an INVALID message, which
no delivery system could read either, is held back.
"""

from __future__ import annotations

from dataclasses import dataclass

from archive.outcome import ARCHIVED, FAILED, INVALID, SKIPPED, Outcome

STRICT = "strict"
BEST_EFFORT = "best_effort"
POLICIES = (STRICT, BEST_EFFORT)

DELIVER = "deliver"
HOLD = "hold"


@dataclass(frozen=True)
class Decision:
    verdict: str            # DELIVER or HOLD
    reason: str             # why, for the failed-to-archive record and the logs
    archive_failed: bool    # delivered without an archive: record it


def decide(policy: str, outcome: Outcome | None) -> Decision:
    """The verdict for one message; `outcome` None means none came before the timeout."""
    if policy not in POLICIES:
        raise ValueError(f"unknown gate policy {policy!r} (expected {', '.join(POLICIES)})")
    if outcome is None:
        reason = "failed to archive: no archive outcome before the gate's timeout"
        return Decision(HOLD, reason, True) if policy == STRICT else Decision(DELIVER, reason, True)
    if outcome.status == ARCHIVED:
        return Decision(DELIVER, "archived", False)
    if outcome.status == SKIPPED:
        return Decision(DELIVER, outcome.reason or "archiving not enabled for this channel", False)
    if outcome.status == INVALID:
        return Decision(HOLD, f"invalid message: {outcome.reason}", True)
    if outcome.status == FAILED:
        reason = outcome.error or "failed to archive"
        return Decision(HOLD if policy == STRICT else DELIVER, reason, True)
    raise ValueError(f"unknown outcome status {outcome.status!r}")
