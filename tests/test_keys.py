"""Object-key segments: which ids may sit between two slashes of a key."""

from __future__ import annotations

import pytest

from archive.envelope import InvalidMessage
from archive.keys import MAX_SEGMENT_LENGTH, join, segment

GOOD = [
    # (value, expected text)
    pytest.param("ee965cb2-8934-4b0a-acf1-91c899c2f915", "ee965cb2-8934-4b0a-acf1-91c899c2f915", id="uuid"),
    pytest.param("651fd10b282850b39e1169c13975234b", "651fd10b282850b39e1169c13975234b", id="hex-32"),
    pytest.param("49482d489b871510eeff7db9a8ab443248ad1ea596e5108e02d16ab5b2ea47db",
                 "49482d489b871510eeff7db9a8ab443248ad1ea596e5108e02d16ab5b2ea47db", id="hex-64"),
    pytest.param("1725435360", "1725435360", id="digits"),
    pytest.param(1722529032, "1722529032", id="int"),
    pytest.param(0, "0", id="zero"),
    pytest.param("_private", "_private", id="leading-underscore"),
    pytest.param("a.b", "a.b", id="inner-dot"),
    pytest.param("a..b", "a..b", id="inner-double-dot"),
    pytest.param("v1.2~x=y+z@w,q:r-s", "v1.2~x=y+z@w,q:r-s", id="every-allowed-punctuation"),
    pytest.param("unassociated", "unassociated", id="word"),
    pytest.param("A" * MAX_SEGMENT_LENGTH, "A" * MAX_SEGMENT_LENGTH, id="longest"),
]


@pytest.mark.parametrize("value, expected", GOOD)
def test_segment_accepts(value, expected):
    assert segment(value, "message_id") == expected


BAD = [
    # (value, reason substring)
    pytest.param(None, "message_id is missing", id="none"),
    pytest.param("", "message_id is empty", id="empty"),
    pytest.param(".", "would break the key layout", id="dot"),
    pytest.param("..", "would break the key layout", id="dot-dot"),
    pytest.param("../x", "would break the key layout", id="parent"),
    pytest.param("x/..", "would break the key layout", id="trailing-parent"),
    pytest.param("a/b", "would break the key layout", id="slash"),
    pytest.param("/abs", "would break the key layout", id="leading-slash"),
    pytest.param("a\\b", "would break the key layout", id="backslash"),
    pytest.param("a\x00b", "would break the key layout", id="nul"),
    pytest.param("a\nb", "would break the key layout", id="newline"),
    pytest.param("abc\n", "would break the key layout", id="trailing-newline"),
    pytest.param("a\tb", "would break the key layout", id="tab"),
    pytest.param("a\x7fb", "would break the key layout", id="del"),
    pytest.param("a\x1bb", "would break the key layout", id="escape"),
    pytest.param("a?b", "would break the key layout", id="question-mark"),
    pytest.param("a#b", "would break the key layout", id="hash"),
    pytest.param("a%2Fb", "would break the key layout", id="percent"),
    pytest.param("a b", "would break the key layout", id="space"),
    pytest.param(" ab", "would break the key layout", id="leading-space"),
    pytest.param("-5", "would break the key layout", id="leading-dash"),
    pytest.param(".hidden", "would break the key layout", id="leading-dot"),
    pytest.param("café", "would break the key layout", id="non-ascii"),
    pytest.param("a*b", "would break the key layout", id="star"),
    pytest.param("A" * (MAX_SEGMENT_LENGTH + 1), f"longer than {MAX_SEGMENT_LENGTH} characters", id="too-long"),
]


@pytest.mark.parametrize("value, reason", BAD)
@pytest.mark.parametrize("field", ["message_id", "campaign_id", "dispatch_id"])
def test_segment_rejects(value, reason, field):
    with pytest.raises(InvalidMessage) as caught:
        segment(value, field)
    assert caught.value.field == field
    assert caught.value.reason.startswith(field + " ")
    assert reason.replace("message_id", field) in caught.value.reason


@pytest.mark.parametrize("value", [
    pytest.param("../customer@example.com", id="email"),
    pytest.param("+1 555 555 5555", id="phone"),
])
def test_segment_reason_never_holds_the_value(value):
    with pytest.raises(InvalidMessage) as caught:
        segment(value, "campaign_id")
    assert value not in caught.value.reason
    assert "example" not in caught.value.reason and "555" not in caught.value.reason


@pytest.mark.parametrize("parts, key", [
    pytest.param(("sent_messages", "sms", "abc", "unassociated", "d1"), "sent_messages/sms/abc/unassociated/d1",
                 id="five"),
    pytest.param(("one",), "one", id="one"),
])
def test_join(parts, key):
    assert join(*parts) == key
