"""Properties of the archiver over generated hostile input (tests/hostile.py).

    generated record --Archiver.prepare--> ArchiveRequest | Outcome | InvalidMessage --rejected--> INVALID

For every record, whatever it is: exactly one outcome and nothing but
InvalidMessage raised; archived bytes are strict JSON at a key of the
profile's layout (at most 1024 bytes); a dead letter is the input's bytes;
no recipient in a reason. Run with both profiles, with and without tenants;
Parquet rows (mappings) get the same guarantees, their dead letter being the
row as JSON.
"""

from __future__ import annotations

import collections
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from archive.archiver import ArchiveRequest, Archiver, ArchiverConfig
from archive.encoding import get_codec
from archive.envelope import ENVELOPE_FIELDS, InvalidMessage
from archive.outcome import FAILED, INVALID, SKIPPED
from archive.tenants import Destination, Tenant, TenantDirectory
from tests.hostile import (
    MUTATIONS, RECIPIENTS, SEEDS, check_one, hostile_inputs, hostile_records, strict_loads,
)

MAX_BYTES = 64 * 1024

# acme archives email and sms only (push is SKIPPED); globex is braze; any other tenant is FAILED.
TENANTS = TenantDirectory({
    "acme": Tenant("acme", "clevertap", None, frozenset({"email", "sms"}), (Destination("memory://acme"),)),
    "globex": Tenant("globex", "braze", "zstd", frozenset({"email", "sms", "mms", "push"}),
                     (Destination("memory://globex"),)),
})
ARCHIVERS = {
    "clevertap": Archiver(ArchiverConfig(profile="clevertap", max_message_bytes=MAX_BYTES)),
    "braze": Archiver(ArchiverConfig(profile="braze", max_message_bytes=MAX_BYTES, default_region="US")),
    "tenants": Archiver(ArchiverConfig(max_message_bytes=MAX_BYTES, default_tenant="acme"), TENANTS),
}


@settings(max_examples=1000, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(hostile_inputs(MAX_BYTES))
def test_every_record_gets_exactly_one_outcome(generated):
    raw, name = generated
    statuses = {label: check_one(archiver, raw) for label, archiver in ARCHIVERS.items()}
    mutation, _, profile = name.partition(":")
    if mutation == "valid":  # a seed-shaped record is archived by its own profile
        assert statuses[profile.split(":")[0]] == "ARCHIVED", name


_ROW_TEXT = st.text(st.characters(categories=("Cs", "L", "N", "Cc", "Zs")), max_size=6)  # Cs: lone surrogates
ROW_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.integers(min_value=2 ** 63, max_value=10 ** 120) | st.floats()
    | _ROW_TEXT | st.binary(max_size=8) | st.sampled_from(RECIPIENTS),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(_ROW_TEXT, children, max_size=3)
    | st.tuples(children), max_leaves=12)


@st.composite
def parquet_rows(draw):
    """A seed-shaped row with one field replaced: an object field by an object
    of any values (so it passes the type check and its leaves are what is
    tested), or any field by any value."""
    record = SEEDS[draw(st.sampled_from(sorted(SEEDS)))](draw(st.randoms(use_true_random=False)))
    objects = sorted(k for k, v in record.items() if isinstance(v, dict))
    if objects and draw(st.booleans()):
        record[draw(st.sampled_from(objects))] = draw(st.dictionaries(_ROW_TEXT, ROW_VALUES, max_size=3))
    else:
        record[draw(st.sampled_from(sorted(ENVELOPE_FIELDS) + ["x", "+15555555555"]))] = draw(ROW_VALUES)
    return record


@settings(max_examples=500, deadline=None, database=None)
@given(parquet_rows())
def test_every_parquet_row_gets_exactly_one_outcome(row):
    # A Parquet row arrives as a mapping: NaN, bytes and tuples are possible, JSON text is not involved.
    for archiver in ARCHIVERS.values():
        try:
            result = archiver.prepare(row)
        except InvalidMessage as error:
            outcome, dead = archiver.rejected(row, error)
            assert outcome.status == INVALID and dead.input_sha256 == outcome.input_sha256
            assert dead.data and json.loads(dead.to_json())
            for value in RECIPIENTS:
                assert value not in outcome.reason
            continue
        if isinstance(result, ArchiveRequest):
            strict_loads(get_codec(result.metadata.compression).decompress(result.data))


def test_the_corpus_covers_every_class_and_every_outcome():
    statuses = collections.Counter()
    classes = collections.Counter()
    for raw, name in hostile_records(seed=9, count=3000, max_message_bytes=MAX_BYTES):
        mutation, profile, _ = name.split(":")
        classes[mutation] += 1
        for label, archiver in ARCHIVERS.items():
            status = check_one(archiver, raw)
            statuses[status] += 1
            if mutation == "valid" and label == profile:
                assert status == "ARCHIVED", name
    assert set(classes) == set(MUTATIONS)
    assert {"ARCHIVED", INVALID, SKIPPED, FAILED} <= set(statuses)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_corpus_is_deterministic(seed):
    first = list(hostile_records(seed, 200))
    assert first == list(hostile_records(seed, 200))
    assert len({raw for raw, _ in first}) > 150
